"""A fault-injecting drive, wrapped around any ``DriveIO`` (testing only).

Rules come from the JSON file named by ``EXASTOR_FAULTS``, so tests configure a running server
from outside the process; the file is re-read when it changes. Keys are drive labels (the drive's
absolute directory), values a rule set:

=================  ============================================================================
``eio``            EIO on every read, write and fsync
``eio_read``       EIO on ``pread``/``read``
``eio_write``      EIO on ``create``, ``append``, ``truncate`` and ``put``
``eio_fsync``      EIO on ``fsync`` (and ``sync_dir``)
``readonly``       EROFS on every call that changes the drive (as an SSD that went read-only)
``full``           ENOSPC on ``create``, ``append`` and ``put``; ``space()`` reports 0 free
``errno``          an errno's name (e.g. ``"EMFILE"``): that error on every read, write and fsync
                   (a process out of descriptors or memory, which is no fault of the drive's)
``slow_ms``        every call sleeps this many milliseconds first
``record``         power-cut recording: a directory for the journal (see below)
``hold_fsync``     ``{"dir": D, "prefix": P}``: the first ``fsync`` of a file whose name starts
                   with P (of any drive whose rule names this D) writes ``D/held`` (the drive's
                   label and the file's name, a JSON list) and waits until ``D/release`` exists
                   (at most ``HOLD_MAX_S``), then goes on; one hold per ``D``. A test kills -9 and
                   restarts a drive server exactly between a write and the fsync covering it.
=================  ============================================================================

Power cuts. With ``record``, every change is journaled (one JSON line per event, appended by every
process using the drive): file writes, fsyncs with the file length when the fsync began, truncates,
and the directory changes (create, ``put``, rename, unlink) each as an intent line before the call
(the unlinked file and any bytes a truncate or rename would lose are kept in a stash) and a done line
after it returned; directory fsyncs as a begin line before the call and an end line after it. The
order of lines in the journal is the order of those moments across processes, so a directory fsync
covers exactly the changes whose done line precedes its begin line - a change still in flight when
the fsync began is not covered, however the lines of other threads interleave. ``put`` (write a
temporary file, fsync it, link it, fsync the directory) and ``rename`` (fsyncs of both directories)
journal the directory fsyncs they make as such. ``power_cut`` then, once every process using the
drives has stopped (kill -9), makes each drive look as it would after a power failure at that
moment:

- every file is cut back to its length at its last successful fsync (``drop``), or to a random
  point between that and its current length with a random 512-byte sector of the unsynced part
  possibly zeroed, as a disk that wrote some unsynced sectors and not others would (``tear``);
- a create, put, rename or unlink survives only if a fsync of its directory (of both directories,
  for a rename across two) began after it returned; every other one is undone, newest first
  (one whose done line is missing, the process killed inside the call, is undone as far as it
  happened).

What it trusts: the journal lines reach the page cache before the process dies (kill -9 keeps
the page cache) and that a fsync that returned made everything written before it began durable,
and a directory fsync every entry change in that directory that returned before it began.
``put``'s temporary file is not modelled (its name is never read: swept as a leftover). It does not
model the metadata database (not a drive; SQLite with ``synchronous=FULL``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exastor.drives.base import Buffers, DriveIO, Piece, Space, Stat, parent, pieces

READ, WRITE, FSYNC, CHANGE = "read", "write", "fsync", "change"
SECTOR = 512
HOLD_MAX_S = 120.0   # a held fsync goes on after this long even if the test never releases it


class FaultRules:
    """The rule file named by ``EXASTOR_FAULTS`` (re-read when its modification time changes)."""

    def __init__(self, path: str | os.PathLike | None) -> None:
        self.path = str(path) if path else None
        self._mtime = -1
        self._rules: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def for_drive(self, label: str) -> dict[str, Any]:
        if not self.path:
            return {}
        try:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self._mtime:
                with open(self.path) as f:
                    rules = json.load(f)
                with self._lock:
                    self._rules, self._mtime = rules, mtime
        except (OSError, ValueError):
            return {}
        return self._rules.get(label, {})


class FaultyDrive(DriveIO):
    """``inner`` with the faults its rules name injected, and every call counted in ``calls``."""

    def __init__(self, inner: DriveIO, rules: FaultRules) -> None:
        self.inner = inner
        self.label = inner.label
        self.rules = rules
        self.calls: Counter[tuple[str, str]] = Counter()   # (method, name) that reached this drive
        self._journal: Journal | None = None
        self._journal_dir: str | None = None

    def __repr__(self) -> str:
        return f"FaultyDrive({self.inner!r})"

    def _check(self, method: str, name: str, kind: str) -> dict[str, Any]:
        self.calls[(method, name)] += 1
        rule = self.rules.for_drive(self.label)
        if not rule:
            return rule
        if rule.get("slow_ms"):
            time.sleep(rule["slow_ms"] / 1000)
        if rule.get("errno") and kind in (READ, WRITE, FSYNC):
            code = getattr(errno, str(rule["errno"]))
            raise OSError(code, f"injected {rule['errno']}: {os.strerror(code)} ({method} {name})")
        if rule.get("eio") and kind in (READ, WRITE, FSYNC):
            raise OSError(errno.EIO, f"injected I/O error ({method} {name})")
        if rule.get(f"eio_{kind}"):
            raise OSError(errno.EIO, f"injected I/O error ({method} {name})")
        if kind in (WRITE, CHANGE) and rule.get("readonly"):
            raise OSError(errno.EROFS, "injected read-only drive")
        if kind == WRITE and method not in ("truncate", "fence") and rule.get("full"):  # allocate nothing
            raise OSError(errno.ENOSPC, "injected full drive")
        return rule

    def _recorder(self, rule: dict[str, Any]) -> Journal | None:
        where = rule.get("record")
        if not where:
            return None
        if self._journal is None or self._journal_dir != where:
            self._journal, self._journal_dir = Journal(Path(where), self.label), where
        return self._journal

    # --- files that grow -----------------------------------------------------------------
    def create(self, name: str, data: Buffers = b"") -> None:
        rec = self._recorder(self._check("create", name, WRITE))
        token = rec.intent("C", name) if rec else ""
        try:
            self.inner.create(name, data)
        except FileExistsError:
            if rec:  # the name was someone else's: this create changed nothing
                rec.event("X", token)
            raise
        if rec:
            rec.event("W", name, 0, sum(len(p) for p in pieces(data)))
            rec.event("K", token)

    def append(self, name: str, offset: int, data: Buffers, *, epoch: int = 0) -> None:
        rec = self._recorder(self._check("append", name, WRITE))
        self.inner.append(name, offset, data, epoch=epoch)
        if rec:
            rec.event("W", name, offset, sum(len(p) for p in pieces(data)))

    def write_at(self, name: str, offset: int, data: Buffers) -> None:
        rule = self._check("write_at", name, WRITE)
        self._check("write_at", name, FSYNC)  # the flush is part of the request
        rec = self._recorder(rule)
        self.inner.write_at(name, offset, data)
        if rec:  # durable on return: the whole file is as written (O_DSYNC)
            rec.event("W", name, offset, sum(len(p) for p in pieces(data)))
            rec.event("F", name, self.inner.stat(name).size)

    def truncate(self, name: str, size: int, *, epoch: int = 0) -> None:
        rec = self._recorder(self._check("truncate", name, WRITE))
        if rec:
            rec.event("T", name, size, rec.stash(self.inner, name, size))
        self.inner.truncate(name, size, epoch=epoch)

    def fence(self, name: str, epoch: int) -> None:
        # Not journaled: the epoch's 8 bytes lie in the segment header, fsynced when the file was made,
        # and are written with O_DSYNC (durable at once), so no power cut can undo them.
        self._check("fence", name, WRITE)
        self.inner.fence(name, epoch)

    def _hold(self, rule: dict[str, Any], name: str) -> None:
        """``hold_fsync``: once per hold directory, say what is held and wait (bounded) for the release."""
        hold = rule.get("hold_fsync")
        if not hold or not name.startswith(hold.get("prefix", "")):
            return
        where = Path(hold["dir"])
        try:
            fd = os.open(where / "held", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # the first one only
        except FileExistsError:
            return
        with os.fdopen(fd, "w") as f:
            json.dump([self.label, name], f)
        deadline = time.monotonic() + HOLD_MAX_S
        while not (where / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def fsync(self, name: str) -> None:
        rule = self._check("fsync", name, FSYNC)
        self._hold(rule, name)
        rec = self._recorder(rule)
        size = self.inner.stat(name).size if rec else 0
        self.inner.fsync(name)
        if rec:
            rec.event("F", name, size)

    def sync_dir(self, directory: str = "") -> None:
        rec = self._recorder(self._check("sync_dir", directory, FSYNC))
        began = rec.intent("B", directory) if rec else ""
        self.inner.sync_dir(directory)
        if rec:
            rec.event("D", began)

    def put(self, name: str, data: Buffers | Iterable[Piece]) -> None:
        rec = self._recorder(self._check("put", name, WRITE))
        token = began = ""
        if rec:
            token = rec.intent("p", name, _exists(self.inner, name))
            began = rec.intent("B", parent(name))  # put's own fsync of the directory starts after this line
        try:
            self.inner.put(name, data)
        except FileExistsError:
            if rec:
                rec.event("X", token)
            raise
        if rec:  # the file fsynced, linked, and its directory fsynced: durable with what preceded `began`
            rec.event("P", name, token, began)

    # --- reading ------------------------------------------------------------------------------
    def pread(self, name: str, offset: int, length: int) -> bytes:
        self._check("pread", name, READ)
        return self.inner.pread(name, offset, length)

    def pread_into(self, name: str, offset: int, buffer: memoryview) -> int:
        self._check("pread", name, READ)  # the same rules as pread: a read is a read
        return self.inner.pread_into(name, offset, buffer)

    def block_digests(self, name: str, offset: int, length: int, block: int) -> list[int]:
        self._check("pread", name, READ)  # a scrub's read is a read too
        return self.inner.block_digests(name, offset, length, block)

    def stat(self, name: str = "") -> Stat:
        self._check("stat", name, "meta")
        return self.inner.stat(name)

    def list(self, directory: str = "") -> list[str]:
        self._check("list", directory, "meta")
        return self.inner.list(directory)

    # --- the namespace -------------------------------------------------------------------------
    def rename(self, src: str, dst: str) -> None:
        rec = self._recorder(self._check("rename", src, CHANGE))
        token, began = "", []
        if rec:
            token = rec.intent("R", src, dst, rec.stash(self.inner, dst, 0))
            began = [rec.intent("B", d) for d in dict.fromkeys((parent(dst), parent(src)))]
        self.inner.rename(src, dst)
        if rec:  # renamed, and both directories fsynced after it (LocalDrive.rename)
            rec.event("RD", token, *began)

    def unlink(self, name: str) -> bool:
        rec = self._recorder(self._check("unlink", name, CHANGE))
        token = rec.intent("U", name, rec.stash(self.inner, name, 0)) if rec else ""
        gone = self.inner.unlink(name)
        if rec:
            rec.event("K", token)
        return gone

    # --- the drive -------------------------------------------------------------------------------
    def space(self) -> Space:
        rule = self._check("space", "", "meta")
        got = self.inner.space()
        return Space(0, got.total) if rule.get("full") else got

    def format(self, identity: bytes) -> None:
        self._check("format", "", CHANGE)
        self.inner.format(identity)

    def release(self, names: Iterable[str]) -> None:
        self.inner.release(names)

    def close(self) -> None:
        self.inner.close()

    def reachable(self) -> bool:
        return self.inner.reachable()

    def power_cut(self, rng: random.Random, mode: str = "drop") -> PowerCut:
        """Apply a power cut to this drive from its journal (every process using it has stopped)."""
        rule = self.rules.for_drive(self.label)
        if not rule.get("record"):
            raise RuntimeError(f"{self.label}: not recording (no 'record' rule)")
        return power_cut(Path(rule["record"]), rng, mode, drives={self.label: self.inner}).get(
            self.label, PowerCut(self.label))


# --- the journal -----------------------------------------------------------------------------------

def _journal_name(label: str) -> str:
    return "journal-" + hashlib.sha256(label.encode()).hexdigest()[:16]


class Journal:
    """Append-only event lines for one drive, shared by every process that writes it."""

    def __init__(self, directory: Path, label: str) -> None:
        self.dir = directory
        self.label = label
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "stash").mkdir(exist_ok=True)
        self.path = directory / _journal_name(label)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._count = 0  # tokens are pid.thread.count: unique even if two threads read one count
        if os.fstat(self._fd).st_size == 0:
            self.event("L", label)

    def event(self, *fields: Any) -> None:
        os.write(self._fd, (json.dumps(fields) + "\n").encode())  # one write: lines never interleave

    def intent(self, op: str, *fields: Any) -> str:
        """Journal the start of ``op``; returns the token its done line (or end line) names."""
        self._count += 1
        token = f"{os.getpid()}.{threading.get_ident()}.{self._count}"
        self.event(op, *fields, token)
        return token

    def stash(self, drive: DriveIO, name: str, keep_from: int) -> str:
        """Keep ``name``'s bytes from ``keep_from`` on (what an unsynced truncate/unlink/rename may lose)."""
        try:
            data = drive.pread(name, keep_from, max(0, drive.stat(name).size - keep_from))
        except FileNotFoundError:
            return ""
        key = f"{time.time_ns()}-{os.getpid()}-{threading.get_ident()}"
        (self.dir / "stash" / key).write_bytes(data)
        return key


@dataclass
class _File:
    durable: int | None = None          # length at the last fsync (None: unknown, left as it is)
    new: bool = False                   # created while recording
    lost_tail: list[tuple[int, str]] = field(default_factory=list)  # (offset, stash) an unsynced truncate cut


@dataclass
class PowerCut:
    """What one power cut did to one drive."""

    label: str
    files_cut: int = 0
    bytes_dropped: int = 0
    sectors_zeroed: int = 0
    entries_undone: int = 0


def _journal_lines(text: str) -> list[Any]:
    """The journal's events. A process killed inside its ``os.write`` of a line can leave the line
    torn (a write to a file may stop at a page boundary on a fatal signal), and the next process's
    line is then appended to the torn one. A torn line is dropped: its intent line was written
    before its call (which therefore never ran), and a lost done or end line only makes the cut
    undo more (a change whose done line is missing is undone as far as it happened)."""
    decoder = json.JSONDecoder()
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
            continue
        except json.JSONDecodeError:
            pass
        for start in range(1, len(line)):  # the whole line that follows the torn prefix, if any
            if line[start] != "[":
                continue
            try:
                event, end = decoder.raw_decode(line, start)
            except json.JSONDecodeError:
                continue
            if end == len(line):
                events.append(event)
                break
    return events


def power_cut(record_dir: Path, rng: random.Random, mode: str = "drop",
              drives: dict[str, DriveIO] | None = None) -> dict[str, PowerCut]:
    """Apply a power cut to every drive journaled under ``record_dir`` and start fresh journals.
    ``mode``: 'drop' (unsynced bytes lost), 'tear' (some of them kept, a sector maybe zeroed) or
    'mixed' (each file one or the other)."""
    from exastor.drives.local import LocalDrive

    assert mode in ("drop", "tear", "mixed"), mode
    out: dict[str, PowerCut] = {}
    for journal in sorted(record_dir.glob("journal-*")):
        lines = _journal_lines(journal.read_text())
        if not lines or lines[0][0] != "L":
            continue
        label = lines[0][1]
        drive = (drives or {}).get(label) or LocalDrive(label)
        out[label] = _cut_one(drive, lines[1:], record_dir / "stash", rng, mode)
        journal.write_text(json.dumps(["L", label]) + "\n")  # the next run records afresh from here
    for leftover in (record_dir / "stash").glob("*"):
        leftover.unlink()
    return out


@dataclass
class _Change:
    """One directory change (create, put, rename, unlink) as journaled: durable once a fsync of each
    of its directories began after it returned."""

    kind: str
    name: str
    dirs: tuple[str, ...]
    dst: str = ""
    stash: str = ""
    state: _File | None = None      # unlink: the file's state; rename: the state of what dst held before
    existed: bool = False           # put: the name existed when it began (the put cannot have made it)
    done: bool = False              # its done line was journaled: it returned
    covered: set[str] = field(default_factory=set)   # directories fsynced since it returned

    @property
    def durable(self) -> bool:
        return self.covered >= set(self.dirs)


def _cut_one(drive: DriveIO, events: list[list[Any]], stash: Path, rng: random.Random, mode: str) -> PowerCut:
    report = PowerCut(drive.label)
    files: dict[str, _File] = {}
    changes: dict[str, _Change] = {}                 # token -> change, in journal order
    fsyncs: dict[str, list[tuple[str, str]]] = {}    # a directory fsync begun -> the changes it covers
    for ev in events:
        op = ev[0]
        f = files.setdefault(ev[1], _File()) if op in ("W", "F", "T") else None
        if op == "C":
            files[ev[1]] = _File(durable=0, new=True)
            changes[ev[2]] = _Change("create", ev[1], (parent(ev[1]),))
        elif op == "p":
            changes[ev[3]] = _Change("put", ev[1], (parent(ev[1]),), existed=ev[2])
        elif op == "X":  # the create or put found the name taken: it changed nothing
            failed = changes.pop(ev[1], None)
            if failed is not None and failed.kind == "create":
                files.pop(failed.name, None)
        elif op == "K":
            if ev[1] in changes:
                changes[ev[1]].done = True
        elif op == "W":
            if f is not None and f.durable is None:
                f.durable = ev[2]  # it existed before recording began, this long
        elif op == "F":
            assert f is not None
            f.durable, f.lost_tail = ev[2], []
        elif op == "T":
            assert f is not None
            if f.durable is None and ev[3]:
                # it existed before recording began, this long (what the truncate cut was kept aside)
                f.durable = ev[2] + (stash / ev[3]).stat().st_size
            if f.durable is not None and ev[2] < f.durable and ev[3]:
                f.lost_tail.append((ev[2], ev[3]))  # durable bytes an unsynced truncate cut
        elif op == "R":
            src, dst, kept, token = ev[1:5]
            moved = files.pop(src, _File())
            changes[token] = _Change("rename", src, tuple(dict.fromkeys((parent(dst), parent(src)))), dst=dst,
                                     stash=kept, state=files.get(dst))
            files[dst] = moved
        elif op == "U":
            changes[ev[3]] = _Change("unlink", ev[1], (parent(ev[1]),), stash=ev[2], state=files.pop(ev[1], _File()))
        elif op == "B":  # a directory fsync begins: it covers the changes in it that returned before now
            directory, began = ev[1], ev[2]
            fsyncs[began] = [(t, directory) for t, c in changes.items() if c.done and directory in c.dirs]
        elif op == "D":
            _covered(changes, fsyncs.pop(ev[1], []))
        elif op == "P":  # put returned: its file durable, linked, and its directory fsynced after the link
            name, token, began = ev[1:4]
            files[name] = _File()
            if token in changes:
                changes[token].done = True
                changes[token].covered.add(parent(name))
            _covered(changes, fsyncs.pop(began, []))
        elif op == "RD":  # rename returned: renamed, then both directories fsynced
            token, began = ev[1], ev[2:]
            if token in changes:
                changes[token].done = True
                changes[token].covered.update(changes[token].dirs)
            for b in began:
                _covered(changes, fsyncs.pop(b, []))
    # Undo the directory changes no directory fsync made durable, newest first.
    for change in reversed(list(changes.values())):
        if change.durable:
            continue
        report.entries_undone += 1
        if change.kind in ("create", "put"):
            if not change.existed:
                drive.unlink(change.name)
                files.pop(change.name, None)
        elif change.kind == "rename":
            src, dst = change.name, change.dst
            if change.done or not _exists(drive, src):  # killed inside the call: undo what happened
                try:
                    drive.rename(dst, src)
                except FileNotFoundError:
                    pass  # it failed, or never began: neither name changed
                else:
                    if change.stash:
                        _restore(drive, dst, stash / change.stash)
            files[src] = files.pop(dst, _File())
            if change.state is not None:
                files[dst] = change.state
        else:
            if change.stash:
                _restore(drive, change.name, stash / change.stash)
                files[change.name] = change.state or _File()
    # Cut every file back to what its last fsync made durable.
    for name, f in files.items():
        if f.durable is None:
            continue
        try:
            size = drive.stat(name).size
        except FileNotFoundError:
            continue
        for offset, key in f.lost_tail:  # an unsynced truncate may not have happened
            extra = (stash / key).read_bytes()
            if size == offset and extra:
                drive.append(name, offset, extra[:f.durable - offset])
                size = offset + len(extra[:f.durable - offset])
        if size <= f.durable:
            continue
        keep = f.durable
        tear = mode == "tear" or (mode == "mixed" and rng.random() < 0.5)
        if tear:
            keep = f.durable + rng.randrange(0, size - f.durable + 1) // SECTOR * SECTOR
        drive.truncate(name, keep)
        report.files_cut += 1
        report.bytes_dropped += size - keep
        if tear and keep - f.durable >= SECTOR and rng.random() < 0.5:
            sector = f.durable + rng.randrange(0, (keep - f.durable) // SECTOR) * SECTOR
            _zero(drive, name, sector, keep)
            report.sectors_zeroed += 1
    for d in ("", *sorted({parent(n) for n in files})):
        try:
            drive.sync_dir(d)
        except FileNotFoundError:
            pass
    drive.release(list(files))
    return report


def _covered(changes: dict[str, _Change], covers: list[tuple[str, str]]) -> None:
    """A directory fsync returned: the changes that had returned before it began are durable there."""
    for token, directory in covers:
        if token in changes:
            changes[token].covered.add(directory)


def _exists(drive: DriveIO, name: str) -> bool:
    try:
        drive.stat(name)
        return True
    except FileNotFoundError:
        return False


def _restore(drive: DriveIO, name: str, kept: Path) -> None:
    data = kept.read_bytes()
    drive.unlink(name)
    drive.create(name, data)
    drive.fsync(name)


def _zero(drive: DriveIO, name: str, sector: int, keep: int) -> None:
    """Zero one sector inside the kept unsynced part: cut there, write zeros, put the rest back."""
    rest = drive.pread(name, sector + SECTOR, keep - sector - SECTOR)
    drive.truncate(name, sector)
    drive.append(name, sector, [bytes(SECTOR), rest])
    drive.fsync(name)
