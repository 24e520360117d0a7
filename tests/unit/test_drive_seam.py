"""The drive I/O seam (src/exastor/drives): nothing else touches drive files, and the seam itself
keeps its promises: exact-offset appends, write-once puts, a failed fsync is final, descriptors never
escape or close under a reader, injected faults, and power cuts that drop or tear unsynced bytes."""

from __future__ import annotations

import ast
import errno
import itertools
import json
import os
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drive_servers import DriveServerProcess, cluster_key
from exastor.drives import DriveIO, FaultRules, FaultyDrive, Fenced, FsyncFailed, LocalDrive, power_cut
from exastor.drives import local as local_module
from exastor.drives.remote import RemoteDrive
from exastor.drives.wire import load_key

SRC = Path(__file__).resolve().parents[2] / "src" / "exastor"

# Modules that never touch a drive: their files are --data's (lock, credentials, the metadata
# database), configuration, the crash-point rules, a shared library lookup, or the client-side tools.
NOT_DRIVE_CODE = {
    "cli.py": "the command line: arguments only",
    "config.py": "reads the TOML config file",
    "crashpoints.py": "reads the test crash-point rules",
    "engine/gf.py": "finds ISA-L's shared library",
    "http/checksums.py": "finds ISA-L's shared library (its CRC32)",
    "datadir/gateway_id.py": "the gateway's identity file in --data",
    "datadir/lock.py": "the data directory's lock file",
    "datadir/opening.py": "credentials and the metadata database in --data",
    "meta/sqlite.py": "the metadata database in --data",
}
NOT_DRIVE_TREES = ("drives/", "tools/")  # the seam itself; estimate/plan/scaletest run beside a store, not in it

OS_FILE_CALLS = {"open", "pread", "preadv", "pwrite", "pwritev", "read", "write", "writev", "fsync", "fdatasync",
                 "replace", "rename", "renames", "unlink", "remove", "listdir", "scandir", "statvfs", "truncate",
                 "ftruncate", "stat", "lstat", "makedirs", "mkdir", "rmdir", "link", "symlink", "fstat", "sync"}
OS_PATH_CALLS = {"exists", "isdir", "isfile", "getsize", "getmtime"}
PATH_METHODS = {"unlink", "glob", "rglob", "iterdir", "mkdir", "read_bytes", "write_bytes", "read_text", "write_text",
                "exists", "is_dir", "is_file", "stat", "touch", "rmdir", "rename", "open", "truncate"}
# DriveIO objects by naming convention, and objects whose own methods share a name (Namespace.write_bytes)
SEAM_RECEIVER = ("io", "drive", "first", "inner", "self", "ns")


def _offenders(path: Path, rel: str) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        what = None
        if isinstance(f, ast.Name) and f.id == "open":
            what = "open()"
        elif isinstance(f, ast.Attribute):
            owner = ast.unparse(f.value)
            if owner == "os" and f.attr in OS_FILE_CALLS:
                what = f"os.{f.attr}"
            elif owner == "os.path" and f.attr in OS_PATH_CALLS:
                what = f"os.path.{f.attr}"
            elif owner in ("shutil", "glob") or (owner == "sqlite3" and f.attr == "connect"):
                what = f"{owner}.{f.attr}"
            elif f.attr in PATH_METHODS and owner.rsplit(".", 1)[-1] not in SEAM_RECEIVER \
                    and not owner.startswith(("self.drive", "d.io", "target.io", "old.io")):
                what = f"{owner}.{f.attr}()"
        if what is None:
            continue
        span = lines[node.lineno - 1:(node.end_lineno or node.lineno)]
        if any("# not a drive" in line for line in span):
            continue
        out.append(f"{rel}:{node.lineno}: {what}")
    return out


def test_nothing_outside_the_seam_touches_drive_files():
    """Engine, services, namespace and front-ends reach drives only through exastor.drives. A file
    that is not a drive's (the metadata database in --data) is marked ``# not a drive`` where used."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel in NOT_DRIVE_CODE or rel.startswith(NOT_DRIVE_TREES):
            continue
        offenders += _offenders(path, rel)
    assert not offenders, "file access outside src/exastor/drives:\n" + "\n".join(offenders)


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The grep above is only worth something if it catches the calls it is about."""
    sample = tmp_path / "x.py"
    sample.write_text("import os\nfrom pathlib import Path\nfd = os.open('a', 0)\nos.fsync(fd)\nopen('b')\n"
                      "Path('c').unlink()\nd.io.unlink('fine')\nos.replace('a', 'b')  # not a drive\n")
    found = _offenders(sample, "x.py")
    assert [f.split(": ", 1)[1] for f in found] == ["os.open", "os.fsync", "open()", "Path('c').unlink()"]


# --- the contract: LocalDrive and RemoteDrive alike ---------------------------------------------------
# One set of tests, run against a local directory and against the same kind of directory served by a
# real `exastor drive-server` process (as zarr's StoreTests run one suite over every store).

@dataclass
class Target:
    """Makes fresh drives of one kind: ``new()`` -> (drive, the directory it is on the serving host)."""

    base: Path
    server: DriveServerProcess | None = None
    names: Iterator[str] = field(default_factory=lambda: (f"local{i}" for i in itertools.count()))

    def new(self) -> tuple[DriveIO, Path]:
        name = next(self.names)
        if self.server is None:
            return LocalDrive(self.base / name), self.base / name
        return RemoteDrive(self.server.url(name), load_key(self.server.key_file)), self.server.drives[name]

    def formatted(self) -> tuple[DriveIO, Path]:
        drive, root = self.new()
        drive.format(b'{"test": 1}\n')
        return drive, root


@pytest.fixture(scope="module")
def drive_server(tmp_path_factory):
    """One drive server for the module, serving 64 drive directories (absent until a test makes one)."""
    base = tmp_path_factory.mktemp("served")
    (base / "faults.json").write_text("{}")
    server = DriveServerProcess({f"d{i}": base / f"d{i}" for i in range(64)}, cluster_key(base), base / "server.log",
                                env={"EXASTOR_FAULTS": str(base / "faults.json")})
    server.start()
    yield server, iter(list(server.drives))
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


@pytest.fixture(params=["local", "remote"])
def target(request, tmp_path):
    if request.param == "local":
        return Target(tmp_path)
    server, names = request.getfixturevalue("drive_server")
    return Target(tmp_path, server, names)


class TestDriveContract:
    def test_append_at_exact_offsets_and_pread(self, target):
        drive, _ = target.formatted()
        drive.create("segments/a", b"head")
        drive.append("segments/a", 4, [b"one", memoryview(b"two")])
        with pytest.raises(OSError) as wrong:
            drive.append("segments/a", 3, b"x")  # a retried or misordered append never writes twice
        assert wrong.value.errno == errno.EINVAL
        drive.fsync("segments/a")
        assert drive.pread("segments/a", 0, 100) == b"headonetwo" and drive.stat("segments/a").size == 10
        assert drive.pread("segments/a", 3, 4) == b"done" and drive.pread("segments/a", 10, 5) == b""
        drive.truncate("segments/a", 7)
        drive.append("segments/a", 7, b"!")
        assert drive.read("segments/a") == b"headone!"
        with pytest.raises(FileExistsError):
            drive.create("segments/a")
        assert drive.list("segments") == ["a"] and drive.unlink("segments/a") and not drive.unlink("segments/a")
        with pytest.raises(FileNotFoundError):
            drive.pread("segments/a", 0, 1)
        with pytest.raises(FileNotFoundError):
            drive.list("nothing-here")
        for bad in ("/etc/passwd", "../x", "segments/../../x"):
            with pytest.raises(OSError):
                drive.pread(bad, 0, 1)

    def test_block_digests_are_the_xxh3_of_each_block_where_the_bytes_are(self, target):
        import xxhash

        drive, _ = target.formatted()
        body = random.Random(7).randbytes(300_000)
        drive.put("shards/s", body)
        want = [xxhash.xxh3_64_intdigest(body[i:i + 65536]) for i in range(4096, 300_000, 65536)]
        assert drive.block_digests("shards/s", 4096, 300_000, 65536) == want  # the last block short: the end
        assert drive.block_digests("shards/s", 0, 8192, 4096) == [xxhash.xxh3_64_intdigest(body[:4096]),
                                                                  xxhash.xxh3_64_intdigest(body[4096:8192])]
        with pytest.raises(FileNotFoundError):
            drive.block_digests("shards/absent", 0, 4096, 4096)

    def test_writes_with_a_stale_lease_epoch_are_fenced(self, target):
        drive, root = target.formatted()
        head = bytes(64)
        drive.create("segments/s", head)
        drive.append("segments/s", 64, b"epoch-1 bytes", epoch=1)
        # A new holder fences the file at epoch 2 (durably, in bytes 32..39) before it reads it.
        drive.fence("segments/s", 2)
        assert int.from_bytes((root / "segments/s").read_bytes()[32:40], "little") == 2
        before = (root / "segments/s").read_bytes()
        for stale in (lambda: drive.append("segments/s", len(before), b"late", epoch=1),
                      lambda: drive.truncate("segments/s", 64, epoch=1)):
            with pytest.raises(Fenced) as refused:
                stale()
            assert refused.value.errno == errno.ESTALE and "took this segment over" in str(refused.value)
        assert (root / "segments/s").read_bytes() == before  # the stale writer changed nothing
        with pytest.raises(Fenced):
            drive.fence("segments/s", 1)  # epochs only go forward
        drive.fence("segments/s", 2)  # the same epoch again: idempotent (a retried fence)
        # The holder of epoch 2 writes on; a higher epoch in a write is recorded before the write.
        other, _ = (drive, root) if target.server is None else (RemoteDrive(drive.label, load_key(target.server.key_file)), root)
        other.append("segments/s", len(before), b"epoch-3", epoch=3)
        assert int.from_bytes((root / "segments/s").read_bytes()[32:40], "little") == 3
        with pytest.raises(Fenced):
            other.append("segments/s", len(before) + 7, b"x", epoch=2)
        # Unfenced writes (epoch 0: journals, files that are not replicas) are not checked.
        drive.create("segments/plain", b"x")
        drive.append("segments/plain", 1, b"y")
        with pytest.raises(FileNotFoundError):
            drive.fence("segments/absent", 1)
        for bad in (0, 1 << 64):  # a malformed epoch is refused (a drive server answers 400), never a crash
            with pytest.raises(OSError) as refused:
                drive.fence("segments/plain", bad)
            assert refused.value.errno == errno.EINVAL

    def test_write_at_rename_sync_and_space(self, target):
        drive, root = target.formatted()
        drive.create("segments/j", bytes(16))
        drive.fsync("segments/j")
        drive.write_at("segments/j", 4, b"DSYNC")  # durable when it returns
        drive.write_at("segments/j", 14, b"grow")
        assert drive.read("segments/j") == bytes(4) + b"DSYNC" + bytes(5) + b"grow"
        drive.rename("segments/j", "segments/k")
        drive.sync_dir("segments")
        assert drive.list("segments") == ["k"] and (root / "segments" / "k").stat().st_mode & 0o077 == 0
        space = drive.space()
        assert 0 < space.free <= space.total
        stat = drive.stat("")
        assert stat.mtime_ns > 0

    def test_put_is_write_once_and_leaves_no_temporary_file(self, target):
        drive, _ = target.formatted()
        drive.put("shards/s", iter([b"a" * 10, b"b" * 5]))
        assert drive.read("shards/s") == b"a" * 10 + b"b" * 5
        with pytest.raises(FileExistsError):
            drive.put("shards/s", b"other")
        assert drive.read("shards/s") == b"a" * 10 + b"b" * 5 and drive.list("shards") == ["s"]
        drive.put("meta-backups/m", b"x")  # a subdirectory is made on demand, never the root
        gone, gone_root = target.new()
        with pytest.raises(FileNotFoundError):
            gone.put("meta-backups/m", b"x")
        with pytest.raises(FileNotFoundError):
            gone.create("segments/a")
        assert not gone_root.exists(), "nothing but format() ever creates a drive's root"

    def test_format_only_an_absent_or_empty_directory(self, target):
        used, used_root = target.new()
        used_root.mkdir()
        (used_root / "something").write_text("x")
        with pytest.raises(FileExistsError):
            used.format(b"{}")
        fresh, fresh_root = target.new()
        (fresh_root / "lost+found").mkdir(parents=True)
        fresh.format(b"{}")  # a new ext4 file system counts as empty
        assert sorted(os.listdir(fresh_root)) == ["exastor-drive.json", "lost+found", "segments", "shards"]

    def test_a_failed_fsync_is_final_for_that_file(self, target, monkeypatch):
        """PostgreSQL's fsyncgate: after a failed fsync the kernel may have dropped the dirty pages; a
        second fsync would succeed and lie. The seam never writes or fsyncs that file again."""
        drive, root = target.formatted()
        drive.create("segments/a", b"data")
        calls: list[int] = []
        if target.server is None:
            def failing(fd: int) -> None:
                calls.append(fd)
                raise OSError(errno.EIO, "injected")

            monkeypatch.setattr(local_module.os, "fsync", failing)
        else:  # the fault is injected in the drive server's process (EXASTOR_FAULTS)
            rules = root.parent / "faults.json"
            rules.write_text(json.dumps({str(root): {"eio_fsync": True}}))
        with pytest.raises(OSError):
            drive.fsync("segments/a")
        monkeypatch.undo()
        if target.server is not None:
            rules.write_text("{}")
            os.utime(rules, ns=(1, 1))
        with pytest.raises(FsyncFailed):
            drive.fsync("segments/a")
        with pytest.raises(FsyncFailed):
            drive.append("segments/a", 4, b"more")
        if target.server is None:
            assert len(calls) == 1, "fsync reached the kernel once, never again"
        assert drive.read("segments/a") == b"data", "reads still work"
        drive.create("segments/b", b"x")  # other files are not affected
        drive.fsync("segments/b")

    def test_identity_is_read_afresh_so_a_disk_swapped_under_a_running_server_is_noticed(self, target):
        from exastor.drives import identity

        (a, a_root), (b, b_root) = target.new(), target.new()
        a.format(identity.Identity.new("11" * 16, 0).encode())
        b.format(identity.Identity.new("11" * 16, 1).encode())
        assert identity.verify(a, "11" * 16, 0).drive == 0
        a_root.rename(a_root.with_name("tmp-" + a_root.name))
        b_root.rename(a_root)   # the other disk now mounted where drive 0 was
        with pytest.raises(identity.Unidentified, match="drives swapped"):
            identity.verify(a, "11" * 16, 0)
        a_root.rename(b_root)
        with pytest.raises(identity.Unidentified) as gone:
            identity.verify(a, "11" * 16, 0)
        assert gone.value.root_missing


def _drive(tmp_path: Path) -> LocalDrive:
    drive = LocalDrive(tmp_path / "drive")
    drive.format(b'{"test": 1}\n')
    return drive


def test_release_never_closes_a_descriptor_a_reader_holds(tmp_path):
    drive = _drive(tmp_path)
    drive.create("segments/a", os.urandom(1 << 20))
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(2000):
                if stop.is_set():
                    return
                assert len(drive.pread("segments/a", 0, 4096)) == 4096
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(2000):
        drive.release(["segments/a"])
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_reader_descriptors_are_bounded_and_an_evicted_file_still_reads(tmp_path):
    drive = LocalDrive(tmp_path / "drive", max_readers=16)
    drive.format(b'{"test": 1}\n')
    names = [f"shards/seg-{i:04d}" for i in range(200)]
    for i, name in enumerate(names):
        drive.put(name, bytes([i % 256]) * 64)
    before = _open_fds()
    peak = before
    for _ in range(2):
        for i, name in enumerate(names):
            assert drive.pread(name, 0, 64) == bytes([i % 256]) * 64
            peak = max(peak, _open_fds())
    assert peak <= before + 16, (before, peak)  # unbounded: one per distinct file read (200)
    # Files another process deleted keep no descriptor past the bound either.
    for name in names[:100]:
        (tmp_path / "drive" / name).unlink()
    for name in names[100:]:
        drive.pread(name, 0, 1)
    assert _open_fds() <= before + 16
    drive.close()
    assert _open_fds() <= before


def test_the_reader_bound_follows_a_low_descriptor_limit(monkeypatch):
    import resource

    for soft, kept in [(1024, 32), (256, 16), (20000, 256), (resource.RLIM_INFINITY, 256)]:
        monkeypatch.setattr(local_module.resource, "getrlimit", lambda _which, soft=soft: (soft, soft))
        assert local_module._readers_kept() == kept


def test_a_recently_used_reader_is_kept(tmp_path):
    drive = LocalDrive(tmp_path / "drive", max_readers=4)
    drive.format(b'{"test": 1}\n')
    for i in range(8):
        drive.put(f"shards/f{i}", b"x" * 8)
    drive.pread("shards/f0", 0, 1)
    hot = drive._readers["shards/f0"]
    for i in range(1, 8):
        drive.pread(f"shards/f{i}", 0, 1)
        drive.pread("shards/f0", 0, 1)  # used again: the others go first
    assert drive._readers["shards/f0"] is hot
    assert len(drive._readers) == 4


def test_eviction_never_closes_a_descriptor_a_reader_holds(tmp_path):
    drive = LocalDrive(tmp_path / "drive", max_readers=2)
    drive.format(b'{"test": 1}\n')
    contents = {f"shards/f{i}": os.urandom(64 << 10) for i in range(12)}
    for name, data in contents.items():
        drive.put(name, data)
    names = sorted(contents)
    errors: list[BaseException] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(1500):
                name = rng.choice(names)
                offset = rng.randrange(0, 60 << 10)
                if rng.random() < 0.5:
                    assert drive.pread(name, offset, 4096) == contents[name][offset:offset + 4096]
                else:
                    buf = bytearray(4096)
                    assert drive.pread_into(name, offset, memoryview(buf)) == 4096
                    assert bytes(buf) == contents[name][offset:offset + 4096]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert len(drive._readers) <= 2


def test_out_of_descriptors_closes_idle_readers_and_tries_once_more(tmp_path, monkeypatch):
    drive = LocalDrive(tmp_path / "drive", max_readers=8)
    drive.format(b'{"test": 1}\n')
    for i in range(4):
        drive.put(f"shards/f{i}", b"y" * 8)
    for i in range(3):
        drive.pread(f"shards/f{i}", 0, 1)
    real_open, failed = os.open, []

    def open_once_emfile(path, flags, *args):  # noqa: ANN001, ANN002
        if str(path).endswith("f3") and not failed:
            failed.append(path)
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(local_module.os, "open", open_once_emfile)
    assert drive.pread("shards/f3", 0, 8) == b"y" * 8
    assert failed and list(drive._readers) == ["shards/f3"]


# --- FaultyDrive -----------------------------------------------------------------------------------

def _faulty(tmp_path: Path, rules: dict) -> tuple[FaultyDrive, Path]:
    inner = _drive(tmp_path)
    rule_file = tmp_path / "faults.json"
    rule_file.write_text(json.dumps({inner.label: rules}))
    return FaultyDrive(inner, FaultRules(rule_file)), rule_file


@pytest.mark.parametrize("rule,method,code", [
    ({"eio_fsync": True}, "fsync", errno.EIO), ({"eio_write": True}, "append", errno.EIO),
    ({"eio_read": True}, "pread", errno.EIO), ({"eio": True}, "pread", errno.EIO),
    ({"readonly": True}, "append", errno.EROFS), ({"readonly": True}, "unlink", errno.EROFS),
    ({"full": True}, "append", errno.ENOSPC)])
def test_fault_rules_inject_the_errno_a_broken_drive_gives(tmp_path, rule, method, code):
    drive, rule_file = _faulty(tmp_path, {})
    drive.create("segments/a", b"abc")
    rule_file.write_text(json.dumps({drive.label: rule}))
    os.utime(rule_file, ns=(1, 1))  # the file is re-read when it changes
    call = {"fsync": lambda: drive.fsync("segments/a"), "append": lambda: drive.append("segments/a", 3, b"d"),
            "pread": lambda: drive.pread("segments/a", 0, 3), "unlink": lambda: drive.unlink("segments/a")}[method]
    with pytest.raises(OSError) as err:
        call()
    assert err.value.errno == code
    if rule.get("full"):
        assert drive.space().free == 0
    assert drive.calls[(method, "segments/a" if method != "fsync" else "segments/a")] >= 1


# --- power cuts -----------------------------------------------------------------------------------

def test_power_cut_drops_what_no_fsync_covered(tmp_path):
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("segments/kept", b"H" * 64)
    drive.fsync("segments/kept")
    drive.sync_dir("segments")
    drive.append("segments/kept", 64, b"A" * 1000)
    drive.fsync("segments/kept")                       # durable: 1064 bytes
    drive.append("segments/kept", 1064, b"B" * 5000)   # never fsynced: lost
    drive.create("segments/new", b"N" * 100)
    drive.fsync("segments/new")                        # its data, but not its directory entry: gone
    drive.put("shards/published", b"P" * 10)          # put is durable when it returns
    cut = power_cut(tmp_path / "journal", random.Random(1), "drop")[drive.label]
    root = Path(drive.label)
    assert (root / "segments/kept").read_bytes() == b"H" * 64 + b"A" * 1000
    assert not (root / "segments/new").exists()
    assert (root / "shards/published").read_bytes() == b"P" * 10
    assert cut.files_cut == 1 and cut.bytes_dropped == 5000 and cut.entries_undone == 1


def test_power_cut_reads_a_journal_whose_line_a_killed_process_tore(tmp_path):
    """A process killed inside its write of a journal line leaves the line torn, and the next
    process's line lands right after it: the torn part is dropped, the line after it still counts
    (found by a long power-cut run: the harness stopped on a JSONDecodeError after 65 cuts)."""
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("segments/kept", b"H" * 64)
    drive.fsync("segments/kept")
    drive.sync_dir("segments")
    drive.append("segments/kept", 64, b"A" * 1000)
    (journal,) = (tmp_path / "journal").glob("journal-*")
    with journal.open("a") as f:
        f.write('["w", "segments/ke')  # torn by the kill: no end, no newline
    drive.fsync("segments/kept")                       # this line follows the torn one: durable
    drive.append("segments/kept", 1064, b"B" * 5000)   # never fsynced: lost
    cut = power_cut(tmp_path / "journal", random.Random(1), "drop")[drive.label]
    assert (Path(drive.label) / "segments/kept").read_bytes() == b"H" * 64 + b"A" * 1000
    assert cut.files_cut == 1 and cut.bytes_dropped == 5000


def test_power_cut_undoes_an_unsynced_unlink_and_tears_unsynced_tails(tmp_path):
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("shards/a", b"x" * 64)
    drive.fsync("shards/a")
    drive.sync_dir("shards")
    drive.unlink("shards/a")                             # no fsync of shards/ after: it comes back
    drive.create("segments/b", b"y" * 64)
    drive.fsync("segments/b")
    drive.sync_dir("segments")
    drive.append("segments/b", 64, os.urandom(8192))     # unsynced: torn somewhere, maybe a sector zeroed
    cuts = [power_cut(tmp_path / "journal", random.Random(seed), "tear")[drive.label] for seed in (3,)]
    root = Path(drive.label)
    assert (root / "shards/a").read_bytes() == b"x" * 64
    b = (root / "segments/b").read_bytes()
    assert b[:64] == b"y" * 64 and 64 <= len(b) <= 64 + 8192 and (len(b) - 64) % 512 == 0
    assert cuts[0].entries_undone == 1


def test_a_fresh_journal_after_each_cut(tmp_path):
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("segments/a", b"1" * 10)
    drive.fsync("segments/a")
    drive.sync_dir("segments")
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    drive.append("segments/a", 10, b"2" * 10)           # recorded in a new journal, against the new state
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    assert Path(drive.label, "segments/a").read_bytes() == b"1" * 10


def test_a_fence_from_another_process_stops_a_writer_holding_the_file_open(tmp_path):
    """The epoch is read from the file at every fenced write, not cached: a writer that has the file
    open (its descriptor cached) is refused as soon as another process fenced it."""
    import subprocess
    import sys

    writer = LocalDrive(tmp_path / "d")
    writer.format(b'{"test": 1}\n')
    writer.create("segments/s", bytes(64))
    writer.append("segments/s", 64, b"mine", epoch=1)
    code = ("import sys; from exastor.drives import LocalDrive; "
            "LocalDrive(sys.argv[1]).fence('segments/s', 2)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "d")], check=True, timeout=60)
    with pytest.raises(Fenced):
        writer.append("segments/s", 68, b"late", epoch=1)
    assert (tmp_path / "d/segments/s").read_bytes()[64:] == b"mine"


def test_an_unsynced_truncate_of_bytes_from_before_the_recording_may_be_undone(tmp_path):
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("segments/a", b"1" * 100)
    drive.fsync("segments/a")
    drive.sync_dir("segments")
    power_cut(tmp_path / "journal", random.Random(0), "drop")  # the next journal starts with the file there
    drive.truncate("segments/a", 40)                            # never fsynced
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    assert Path(drive.label, "segments/a").read_bytes() == b"1" * 100
    drive.truncate("segments/a", 40)
    drive.fsync("segments/a")                                   # now it holds
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    assert Path(drive.label, "segments/a").read_bytes() == b"1" * 40


def test_a_put_makes_the_earlier_changes_in_its_directory_durable(tmp_path):
    """LocalDrive.put fsyncs its directory after the link: the unlinks and creates that returned
    before it in that directory survive a power cut (no garbage comes back to be swept again);
    changes in other directories do not."""
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.put("shards/old", b"o" * 10)
    drive.create("segments/s", b"s" * 64)
    drive.fsync("segments/s")
    drive.sync_dir("segments")
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    drive.unlink("shards/old")
    drive.create("shards/made", b"m" * 10)
    drive.fsync("shards/made")
    drive.unlink("segments/s")                           # another directory: no put fsyncs it
    drive.put("shards/new", b"n" * 10)
    cut = power_cut(tmp_path / "journal", random.Random(0), "drop")[drive.label]
    root = Path(drive.label)
    assert not (root / "shards/old").exists()
    assert (root / "shards/made").read_bytes() == b"m" * 10
    assert (root / "shards/new").read_bytes() == b"n" * 10
    assert (root / "segments/s").read_bytes() == b"s" * 64
    assert cut.entries_undone == 1


def test_a_change_still_in_flight_when_a_directory_fsync_began_is_not_covered_by_it(tmp_path):
    """The journal's order is the order of the moments: an unlink whose call had not returned when
    another thread's directory fsync began may reach the directory after that fsync - undone."""
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.put("shards/a", b"a" * 10)
    drive.put("shards/b", b"b" * 10)
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    inner_unlink = drive.inner.unlink

    def unlink_while_another_thread_fsyncs(name: str) -> bool:
        drive.sync_dir("shards")       # begins and ends inside the unlink call, before the unlink itself
        return inner_unlink(name)

    drive.inner.unlink = unlink_while_another_thread_fsyncs  # type: ignore[method-assign]
    drive.unlink("shards/a")
    drive.inner.unlink = inner_unlink  # type: ignore[method-assign]
    drive.unlink("shards/b")
    drive.sync_dir("shards")           # began after both returned: covers both
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    assert not Path(drive.label, "shards/a").exists() and not Path(drive.label, "shards/b").exists()
    drive.put("shards/c", b"c" * 10)
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    drive.inner.unlink = unlink_while_another_thread_fsyncs  # type: ignore[method-assign]
    drive.unlink("shards/c")           # the only fsync began before it returned
    cut = power_cut(tmp_path / "journal", random.Random(0), "drop")[drive.label]
    assert Path(drive.label, "shards/c").read_bytes() == b"c" * 10
    assert cut.entries_undone == 1


def test_a_rename_or_put_whose_directory_fsync_failed_is_undone(tmp_path):
    """Durable only once the call returned: a rename or put that raised after the link or rename
    (its directory fsync failed, or the process died there) may be lost with the power."""
    drive, _ = _faulty(tmp_path, {"record": str(tmp_path / "journal")})
    drive.create("meta/x.tmp", b"x" * 20)
    drive.fsync("meta/x.tmp")
    drive.sync_dir("meta")
    drive.put("meta/old", b"old")
    power_cut(tmp_path / "journal", random.Random(0), "drop")

    def failing_sync_dir(directory: str = "") -> None:
        raise OSError(errno.EIO, "injected")

    inner_sync_dir = drive.inner.sync_dir
    drive.inner.sync_dir = failing_sync_dir  # type: ignore[method-assign]
    with pytest.raises(OSError):
        drive.rename("meta/x.tmp", "meta/old")
    with pytest.raises(OSError):
        drive.put("meta/y", b"y")
    drive.inner.sync_dir = inner_sync_dir  # type: ignore[method-assign]
    root = Path(drive.label)
    assert (root / "meta/old").read_bytes() == b"x" * 20 and (root / "meta/y").exists()
    cut = power_cut(tmp_path / "journal", random.Random(0), "drop")[drive.label]
    assert (root / "meta/x.tmp").read_bytes() == b"x" * 20
    assert (root / "meta/old").read_bytes() == b"old"
    assert not (root / "meta/y").exists()
    assert cut.entries_undone == 2
    drive.rename("meta/x.tmp", "meta/old")   # returned: both directories fsynced
    power_cut(tmp_path / "journal", random.Random(0), "drop")
    assert (root / "meta/old").read_bytes() == b"x" * 20 and not (root / "meta/x.tmp").exists()


# --- LocalDrive's own durability (what the power-cut recorder trusts) -----------------------------------
# The recorder sits above LocalDrive and takes a fsync, put, rename or write_at that returned as durable.
# These tests check the system calls beneath: the file and directory fsyncs each promise needs, in the
# order that makes it true. The mutation check (tests/faults/fsync_mutation.py) disables each fsync in
# drives/local.py in turn and expects one of them to fail.

@pytest.fixture
def syscalls(monkeypatch) -> list[tuple]:
    """Every os.fsync (with the path of its descriptor), os.pwritev (with its flags) and os.link."""
    seen: list[tuple] = []
    real_fsync, real_pwritev, real_link = os.fsync, os.pwritev, os.link

    def fsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def pwritev(fd: int, bufs, offset: int, flags: int = 0) -> int:
        seen.append(("pwritev", os.readlink(f"/proc/self/fd/{fd}"), flags))
        return real_pwritev(fd, bufs, offset, flags)

    def link(src, dst, *args, **kwargs) -> None:
        seen.append(("link", str(dst)))
        real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "pwritev", pwritev)
    monkeypatch.setattr(os, "link", link)
    return seen


def _after(seen: list[tuple], event: tuple) -> list[tuple]:
    return seen[seen.index(event) + 1:]


def test_local_fsync_reaches_the_file_with_and_without_an_open_writer(tmp_path, syscalls):
    drive = _drive(tmp_path)
    root = str(drive.root)
    drive.create("segments/a", b"x" * 100)
    drive.append("segments/a", 100, b"y" * 100)
    syscalls.clear()
    drive.fsync("segments/a")                      # through the writer's descriptor
    assert ("fsync", f"{root}/segments/a") in syscalls
    syscalls.clear()
    LocalDrive(drive.root).fsync("segments/a")     # no writer here: opened for the fsync
    assert ("fsync", f"{root}/segments/a") in syscalls


def test_local_sync_dir_fsyncs_the_directory(tmp_path, syscalls):
    drive = _drive(tmp_path)
    syscalls.clear()
    drive.sync_dir("segments")
    assert syscalls == [("fsync", f"{drive.root}/segments")]


def test_local_put_fsyncs_the_file_before_linking_it_and_the_directory_after(tmp_path, syscalls):
    drive = _drive(tmp_path)
    root = str(drive.root)
    syscalls.clear()
    drive.put("shards/s", [b"a" * 10, b"b" * 10])
    link = ("link", f"{root}/shards/s")
    before = syscalls[:syscalls.index(link)]
    assert any(e[0] == "fsync" and e[1].startswith(f"{root}/shards/s.tmp") for e in before), syscalls
    assert ("fsync", f"{root}/shards") in _after(syscalls, link), syscalls


def test_local_rename_fsyncs_both_directories(tmp_path, syscalls):
    drive = _drive(tmp_path)
    root = str(drive.root)
    drive.put("shards/a", b"a")
    syscalls.clear()
    drive.rename("shards/a", "shards/b")
    assert ("fsync", f"{root}/shards") in syscalls
    syscalls.clear()
    drive.rename("shards/b", "segments/b")
    assert ("fsync", f"{root}/segments") in syscalls and ("fsync", f"{root}/shards") in syscalls


def test_local_format_makes_the_identity_and_the_root_durable(tmp_path, syscalls):
    drive = LocalDrive(tmp_path / "drive")
    drive.format(b'{"test": 1}\n')
    root = str(drive.root)
    assert ("fsync", root) in syscalls and ("fsync", str(tmp_path)) in syscalls, syscalls
    assert ("fsync", f"{root}") in _after(syscalls, ("link", f"{root}/{local_module.IDENTITY_NAME}"))


def test_local_write_at_is_a_durable_write(tmp_path, syscalls):
    drive = _drive(tmp_path)
    drive.create("segments/j", bytes(4096))
    syscalls.clear()
    drive.write_at("segments/j", 100, b"record")
    writes = [e for e in syscalls if e[0] == "pwritev"]
    assert writes and all(e[2] & os.RWF_DSYNC for e in writes), syscalls


def test_local_lease_epoch_is_a_durable_write_before_the_write_it_admits(tmp_path, syscalls):
    """A fence (and the first append under a new epoch) records the epoch with RWF_DSYNC: a restart
    must not forget that a segment was taken over, or a stale writer could append after it."""
    drive = _drive(tmp_path)
    drive.create("segments/f", bytes(64))
    syscalls.clear()
    drive.fence("segments/f", 2)
    epoch_writes = [e for e in syscalls if e[0] == "pwritev"]
    assert epoch_writes and all(e[2] & os.RWF_DSYNC for e in epoch_writes), syscalls
    syscalls.clear()
    drive.append("segments/f", 64, b"data", epoch=3)
    writes = [e for e in syscalls if e[0] == "pwritev"]
    assert writes and writes[0][2] & os.RWF_DSYNC, "the new epoch is durable before the append it admits"
