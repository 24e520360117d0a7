"""Copies of the metadata database on the data drives, and restoring the newest good one.

Why: object names and manifests live only in the SQLite database under ``--data``, which is one
disk, while the chunks they point at are replicated and erasure-coded across the drives. A
consistent copy of the database (SQLite's online backup: one read snapshot, writers keep going) is
written every ``meta_backup_interval`` seconds onto m+1 drives, the failures an open segment
survives. Each copy is named by when it was taken and the BLAKE3 of its bytes, written under a
temporary name, fsynced, then renamed, so a crash leaves either a whole verified copy or none.

Copies reach the drives through the drive I/O seam (``DriveIO.put``: whole or absent after a
crash); the database file and its scratch copies in ``--data`` are not drive paths.

Restoring takes the newest copy that verifies (digest and SQLite's quick_check), keeps whatever
database was there aside, and then the chunk index and segment layout must be rebuilt from the
drives (``exastor fsck --restore-meta`` also runs ``--rebuild-index`` and ``--repair``): segments may have
been sealed, repaired or compacted after the copy was taken.

What a restore loses: nothing that was acknowledged, while the metadata journal is on
(``meta_journal``, the default): every commit after the copy is on m+1 drives before it is
acknowledged (meta/journal.py) and the restore re-executes them in order. Copies are its starting
points: each copy's name carries the journal position it holds (seq, generation), the journal
moves to a new file generation after each copy, and generations older than every kept copy are
removed. Without the journal a restore loses the changes after the copy, at most one interval;
chunks of objects deleted after the copy are still on the drives while the interval is shorter
than ``gc_grace``, so every object the copy names comes back whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from blake3 import blake3

from exastor import errors
from exastor.drives import DriveIO, age_s, open_drive
from exastor.engine.drives import DriveSet
from exastor.meta import journal as jr
from exastor.meta.contract import Metadata
from exastor.meta.sqlite import backup_to, database_problem, sqlite_runner

BACKUP_DIR = "meta-backups"
KEEP = 3  # copies kept per drive: the newest can be the one a failing disk corrupted
FIRST_COPY_MIN_S = 10.0  # after a start: recovery has committed, clients have begun
PARTIAL_STALE_S = 3600.0
_CHUNK = 1 << 20
log = logging.getLogger("exastor.metabackup")

DriveLike = DriveIO | Path


def _io(drive: DriveLike) -> DriveIO:
    return drive if isinstance(drive, DriveIO) else open_drive(drive)


@dataclass(frozen=True)
class Backup:
    label: str       # the drive it is on
    name: str        # BACKUP_DIR/meta-<taken_ns>-<blake3>[-s<seq>-g<gen>].sqlite
    taken_ns: int
    digest: str      # BLAKE3 of the file, hex (also in its name)
    drive: DriveIO = field(compare=False, repr=False)
    seq: int | None = None   # the journal position the copy holds (None: a copy from before the journal)
    gen: int | None = None   # the journal generation in effect when it was taken

    @property
    def path(self) -> Path:
        """Where the copy is, for messages (and tests, on local drives)."""
        return Path(self.label) / self.name

    @staticmethod
    def parse(drive: DriveIO, name: str) -> Backup | None:
        """``meta-<taken_ns>-<blake3>[-s<seq>-g<gen>].sqlite``; anything else (a partial copy) is not a
        backup."""
        base = name.rsplit("/", 1)[-1]
        parts = base.removesuffix(".sqlite").split("-")
        if len(parts) not in (3, 5) or parts[0] != "meta" or not base.endswith(".sqlite") or not parts[1].isdigit():
            return None
        seq = gen = None
        if len(parts) == 5:
            if not (parts[3][:1] == "s" and parts[3][1:].isdigit() and parts[4][:1] == "g" and parts[4][1:].isdigit()):
                return None
            seq, gen = int(parts[3][1:]), int(parts[4][1:])
        return Backup(drive.label, f"{BACKUP_DIR}/{base}", int(parts[1]), parts[2], drive, seq, gen)

    def chunks(self) -> Iterator[bytes]:
        size = self.drive.stat(self.name).size
        for offset in range(0, size, _CHUNK):
            yield self.drive.pread(self.name, offset, min(_CHUNK, size - offset))

    def verify(self, scratch: Path | None = None) -> str | None:
        """None if the copy is whole and a sound database, else why not. SQLite's check needs a local
        file: the copy is fetched into ``scratch`` (a temporary directory by default) and removed."""
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            local = Path(tmp) / "candidate.sqlite"
            h = blake3()
            try:
                with open(local, "wb") as out:  # not a drive: a scratch file
                    for block in self.chunks():
                        h.update(block)
                        out.write(block)
            except OSError as exc:
                return f"unreadable: {exc}"
            if h.hexdigest() != self.digest:
                return "BLAKE3 mismatch"
            return database_problem(local)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:  # not a drive: the scratch copy in --data
        while block := f.read(_CHUNK):
            yield block


def _digest(path: Path) -> str:
    h = blake3()
    for block in _file_chunks(path):
        h.update(block)
    return h.hexdigest()


def take(db: Path, drives: Sequence[DriveLike], keep: int = KEEP) -> list[Backup]:
    """Copy the database ``db`` (online) onto each of ``drives``; prune to ``keep`` per drive."""
    assert drives, "a metadata copy needs at least one drive"
    ios = [_io(d) for d in drives]
    taken_ns = time.time_ns()
    scratch = db.with_name(f"{db.name}.copy-{taken_ns}")  # beside the database: never on a drive
    try:
        backup_to(db, scratch)  # one read snapshot: writers are not blocked
        digest = _digest(scratch)
        position = _journal_position(scratch)
        name = f"{BACKUP_DIR}/meta-{taken_ns}-{digest}" + (f"-s{position[0]}-g{position[1]}" if position else "") \
            + ".sqlite"
        made: list[Backup] = []
        for io in ios:
            io.put(name, _file_chunks(scratch))  # temporary file, fsync, rename, directory fsync
            backup = Backup.parse(io, name)
            assert backup is not None, f"{name} is not a backup's name"  # it was made just above
            made.append(backup)
    finally:
        scratch.unlink(missing_ok=True)  # not a drive
    for io in ios:
        prune(io, keep)
    return made


def _journal_position(copy: Path) -> tuple[int, int] | None:
    """(seq, gen) of the journal head a local copy holds; None if the database has no journal rows."""
    return jr.copy_position(copy)


def prune(drive: DriveLike, keep: int = KEEP) -> None:
    """Keep the ``keep`` newest copies on ``drive``; remove older ones and temporary leftovers."""
    io = _io(drive)
    try:
        names = io.list(BACKUP_DIR)
    except FileNotFoundError:
        return
    for leftover in names:  # a crashed copy's; an hour old, so never one still being written
        if ".tmp" in leftover or leftover.endswith(".partial"):
            with contextlib.suppress(FileNotFoundError):
                if age_s(io.stat(f"{BACKUP_DIR}/{leftover}")) > PARTIAL_STALE_S:
                    io.unlink(f"{BACKUP_DIR}/{leftover}")
    for old in sorted(found(io), key=lambda b: b.taken_ns, reverse=True)[keep:]:
        io.unlink(old.name)


def found(drive: DriveLike) -> list[Backup]:
    """The copies on ``drive`` (a drive, or for callers of the old form its ``meta-backups`` folder)."""
    if isinstance(drive, Path) and drive.name == BACKUP_DIR:
        drive = drive.parent
    io = _io(drive)
    try:
        names = io.list(BACKUP_DIR)
    except FileNotFoundError:
        return []
    return [b for n in names if (b := Backup.parse(io, n))]


def retire_older(drives: Iterable[DriveLike], taken_ns: int) -> int:
    """Remove every copy older than ``taken_ns`` (a verified copy taken then superseding them), e.g.
    copies made before the secrets in the database were sealed, which hold them in the clear."""
    removed = 0
    seen: set[str] = set()
    for drive in drives:
        io = _io(drive)
        if io.label in seen:
            continue
        seen.add(io.label)
        for old in found(io):
            if old.taken_ns < taken_ns:
                io.unlink(old.name)
                removed += 1
        if removed:
            with contextlib.suppress(FileNotFoundError):
                io.sync_dir(BACKUP_DIR)
    if removed:
        log.warning("removed %d metadata copies taken before %d (superseded by a newer copy)", removed, taken_ns)
    return removed


def backups(drives: Iterable[DriveLike]) -> list[Backup]:
    """Every copy on these drives, newest first (the same copy on several drives appears once each)."""
    out = [b for drive in drives for b in found(drive)]
    return sorted(out, key=lambda b: b.taken_ns, reverse=True)


class NoBackup(RuntimeError):
    """No copy on the drives verifies."""


def newest_good(drives: Iterable[DriveLike], scratch: Path | None = None) -> tuple[Backup, list[tuple[Backup, str]]]:
    """The newest copy that verifies, and the newer ones that did not (with why)."""
    rejected: list[tuple[Backup, str]] = []
    for candidate in backups(drives):
        problem = candidate.verify(scratch)
        if problem is None:
            return candidate, rejected
        rejected.append((candidate, problem))
    raise NoBackup("no metadata copy on the drives verifies"
                   + "".join(f"\n  {b.path}: {why}" for b, why in rejected))


def install(backup: Backup, db: Path) -> Path | None:
    """Put ``backup`` in place as the database ``db``. What was there (with its -wal and -shm) is
    moved aside, never deleted; returns where, or None if there was nothing. (``db`` and its
    directory are the metadata in --data, not a drive.)"""
    aside = None
    olds = [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"))
            if p.exists()]  # not a drive
    if olds:
        aside = db.parent / f"replaced-{time.time_ns()}"
        aside.mkdir(mode=0o700)  # not a drive
        for p in olds:
            os.replace(p, aside / p.name)  # not a drive
    db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # not a drive
    part = db.with_name(db.name + ".partial")
    with open(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:  # not a drive
        for block in backup.chunks():
            out.write(block)
        out.flush()
        os.fsync(out.fileno())  # not a drive
    os.replace(part, db)  # not a drive
    fd = os.open(db.parent, os.O_RDONLY)  # not a drive
    try:
        os.fsync(fd)  # not a drive
    finally:
        os.close(fd)
    return aside


def newest_seq(drives: Iterable[DriveLike]) -> int | None:
    """The journal position of the newest copy on the drives that has one (from its name: cheap)."""
    for b in backups(drives):
        if b.seq is not None:
            return b.seq
    return None


def needs_copy(meta: Metadata, drives: Iterable[DriveLike]) -> bool:
    """True when the journal alone cannot bring the database back: there is no copy to start from
    that knows the journal, or commits were made without the journal since the newest one."""
    gap = sqlite_runner(meta).head()[3]
    seq = newest_seq(drives)
    return seq is None or gap > seq


def next_generation(meta: Metadata) -> None:
    """Move the journal to new files: those of older generations then hold only commits the copies
    taken since already contain."""
    meta.runner.write_sync(jr.advance_generation)


def prune_journal(drives: Iterable[DriveLike]) -> int:
    """Remove journal files no kept copy needs: a restore starts from a copy and replays the files
    of that copy's generation and later, so files older than the oldest kept copy's generation are
    proven garbage. Returns how many were removed; none while any copy predates the journal."""
    ios = [_io(d) for d in drives]
    copies = backups(ios)
    if not copies or any(b.gen is None for b in copies):
        return 0
    oldest_gen = min(b.gen for b in copies if b.gen is not None)
    removed = 0
    for io in ios:
        gone = [name for gen, name in jr.gens_on(io) if gen < oldest_gen]
        for name in gone:
            io.unlink(name)
        if gone:
            io.sync_dir(jr.JOURNAL_DIR)
            removed += len(gone)
    return removed


def ensure_base_copy(meta: Metadata, drives: DriveSet) -> list[Backup]:
    """Take a copy now if the journal alone could not restore the database (``needs_copy``)."""
    ios = targets(drives)
    if not ios or not needs_copy(meta, ios):
        return []
    next_generation(meta)  # the copy then holds a generation of its own: older files become garbage
    return take(sqlite_runner(meta).path, ios)


def replay_journal(db: Path, drives: Iterable[DriveLike], drives_of: Callable[[], list[Path]] | None = None
                   ) -> jr.Chain:
    """Re-execute on ``db`` (a copy just installed) every journaled commit made after it.

    The journal is read from ``drives`` and from the drives the database lists (``drives_of()``);
    a replayed commit may add drives that hold more of it, so it reads again until no new drive
    appears."""
    head = jr.file_head(db)
    total = jr.Chain()
    if head is None:
        return total
    seq, rid = head[0], head[1]
    seen: dict[str, DriveIO] = {}
    wanted = [_io(d) for d in drives]
    for _ in range(64):  # bounded: each pass must find a new drive to go on
        wanted += [_io(p) for p in (drives_of() if drives_of else [])]
        fresh = {io.label: io for io in wanted if io.label not in seen}
        if not fresh:
            break
        seen.update(fresh)
        records, skipped = jr.read_all(seen.values())
        chain = jr.committed_chain(records, seq, rid)
        jr.replay(db, chain.records)
        total.records += chain.records
        total.orphans = chain.orphans
        total.skipped_bytes = skipped
        if chain.records:
            seq, rid = chain.records[-1].seq, chain.records[-1].rid
    # New records go to a generation of their own: never over what this restore read.
    newest = max((g for io in seen.values() for g, _ in jr.gens_on(io)), default=head[2])
    jr.start_generation(db, max(newest, head[2]) + 1)
    return total


def targets(drives: DriveSet) -> list[DriveIO]:
    """Where a copy goes: m+1 drives that take writes (the lowest ids, so copies stay findable)."""
    writable = sorted(drives.writable(), key=lambda d: d.id)
    return [d.io for d in writable[:drives.geometry().m + 1]]


class MetaBackupThread(threading.Thread):
    """Worker 0's copier: a copy every ``interval`` seconds while the database changed since the last,
    and at once when the journal alone could not restore it (``needs_copy``)."""

    POLL_S = 5.0  # how often a commit made without the journal is looked for

    def __init__(self, db: Path, drives: Callable[[], Sequence[DriveLike]], interval: float, *,
                 meta: Metadata | None = None) -> None:
        super().__init__(name="exastor-meta-backup", daemon=True)
        self.db, self.drives, self.interval = db, drives, interval
        self.meta = meta  # given when its commits are journaled: copies then also move the journal on
        self.journaled = meta is not None and getattr(meta.runner, "journal", None) is not None
        self._halt = threading.Event()
        self._last_seen: tuple | None = None

    def _signature(self) -> tuple:
        """Sizes and mtimes of the database and its WAL: unchanged means no commit since."""
        sig: list[tuple[int, int] | None] = []
        for p in (self.db, self.db.with_name(self.db.name + "-wal")):
            try:
                st = p.stat()  # not a drive: the database in --data
                sig.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def run_once(self) -> list[Backup]:
        signature = self._signature()
        if signature == self._last_seen:
            return []
        drives = self.drives()
        if not drives:
            log.warning("metadata copy skipped: no drive takes writes")
            return []
        if self.meta is not None and self.journaled:
            next_generation(self.meta)  # the copy holds a generation of its own: older files become garbage
        made = take(self.db, drives)
        self._last_seen = self._signature()
        if self.journaled:
            prune_journal(drives)
        return made

    def first_delay(self) -> float:
        """Seconds until the first copy: the rest of the interval since the newest copy on the drives,
        at least ``FIRST_COPY_MIN_S`` (or the interval, if shorter). A server restarted more often than
        the interval still copies."""
        try:
            copies = backups(self.drives())
        except OSError:
            copies = []
        age = (time.time_ns() - copies[0].taken_ns) / 1e9 if copies else float("inf")
        return max(min(FIRST_COPY_MIN_S, self.interval), min(self.interval, self.interval - age))

    def run(self) -> None:
        due = time.monotonic() + self.first_delay()
        while not self._halt.wait(min(self.POLL_S, max(0.0, due - time.monotonic()))):
            try:
                urgent = self.meta is not None and self.journaled and needs_copy(self.meta, self.drives())
                if urgent or time.monotonic() >= due:
                    due = time.monotonic() + self.interval
                    if urgent:
                        self._last_seen = None
                    self.run_once()
            except errors.Unavailable as exc:
                log.warning("metadata copy skipped: %s; will retry", exc.detail)
            except Exception:  # noqa: BLE001 - a failed copy must not stop the server; the next one retries
                log.exception("metadata copy failed")

    def stop(self) -> None:
        self._halt.set()
