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

What a restore loses: metadata changes committed after the copy, so at most one interval. Chunks of
objects deleted after the copy are still on the drives while the interval is shorter than
``gc_grace``, so every object the copy names comes back whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from blake3 import blake3

from exastor.drives import DriveIO, age_s, open_drive
from exastor.engine.drives import DriveSet

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
    name: str        # BACKUP_DIR/meta-<taken_ns>-<blake3>.sqlite
    taken_ns: int
    digest: str      # BLAKE3 of the file, hex (also in its name)
    drive: DriveIO = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        """Where the copy is, for messages (and tests, on local drives)."""
        return Path(self.label) / self.name

    @staticmethod
    def parse(drive: DriveIO, name: str) -> Backup | None:
        """``meta-<taken_ns>-<blake3>.sqlite``; anything else (a partial copy) is not a backup."""
        base = name.rsplit("/", 1)[-1]
        parts = base.removesuffix(".sqlite").split("-")
        if len(parts) != 3 or parts[0] != "meta" or not base.endswith(".sqlite") or not parts[1].isdigit():
            return None
        return Backup(drive.label, f"{BACKUP_DIR}/{base}", int(parts[1]), parts[2], drive)

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
            try:
                with sqlite3.connect(f"file:{local}?mode=ro&immutable=1", uri=True) as con:  # not a drive
                    result = con.execute("PRAGMA quick_check").fetchone()[0]
            except sqlite3.Error as exc:
                return f"not a database: {exc}"
        return None if result == "ok" else f"quick_check: {result}"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:  # not a drive: the scratch copy in --data
        while block := f.read(_CHUNK):
            yield block


def _digest(path: Path) -> str:
    h = blake3()
    for block in _file_chunks(path):
        h.update(block)
    return h.hexdigest()


def take(db: Path, drives: list[DriveLike], keep: int = KEEP) -> list[Backup]:
    """Copy the database ``db`` (online) onto each of ``drives``; prune to ``keep`` per drive."""
    assert drives, "a metadata copy needs at least one drive"
    ios = [_io(d) for d in drives]
    taken_ns = time.time_ns()
    scratch = db.with_name(f"{db.name}.copy-{taken_ns}")  # beside the database: never on a drive
    try:
        src = sqlite3.connect(db, timeout=30.0)  # not a drive: the database in --data
        try:
            dst = sqlite3.connect(scratch)  # not a drive
            try:
                src.backup(dst)  # one read snapshot of the WAL database: writers are not blocked
                dst.execute("PRAGMA journal_mode=DELETE")  # everything in the one file, no -wal beside it
            finally:
                dst.close()
        finally:
            src.close()
        digest = _digest(scratch)
        name = f"{BACKUP_DIR}/meta-{taken_ns}-{digest}.sqlite"
        made = []
        for io in ios:
            io.put(name, _file_chunks(scratch))  # temporary file, fsync, rename, directory fsync
            made.append(Backup(io.label, name, taken_ns, digest, io))
    finally:
        scratch.unlink(missing_ok=True)  # not a drive
    for io in ios:
        prune(io, keep)
    return made


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
        aside.mkdir()  # not a drive
        for p in olds:
            os.replace(p, aside / p.name)  # not a drive
    db.parent.mkdir(parents=True, exist_ok=True)  # not a drive
    part = db.with_name(db.name + ".partial")
    with open(part, "wb") as out:  # not a drive
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


def targets(drives: DriveSet) -> list[DriveIO]:
    """Where a copy goes: m+1 drives that take writes (the lowest ids, so copies stay findable)."""
    writable = sorted(drives.writable(), key=lambda d: d.id)
    return [d.io for d in writable[:drives.geometry().m + 1]]


class MetaBackupThread(threading.Thread):
    """Worker 0's copier: a copy every ``interval`` seconds while the database changed since the last."""

    def __init__(self, db: Path, drives: Callable[[], list[DriveLike]], interval: float) -> None:
        super().__init__(name="exastor-meta-backup", daemon=True)
        self.db, self.drives, self.interval = db, drives, interval
        self._halt = threading.Event()
        self._last_seen: tuple | None = None

    def _signature(self) -> tuple:
        """Sizes and mtimes of the database and its WAL: unchanged means no commit since."""
        sig = []
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
        made = take(self.db, drives)
        self._last_seen = signature
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
        delay = self.first_delay()
        while not self._halt.wait(delay):
            delay = self.interval
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a failed copy must not stop the server; the next one retries
                log.exception("metadata copy failed")

    def stop(self) -> None:
        self._halt.set()
