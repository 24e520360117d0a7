"""Copies of the metadata database on the data drives, and restoring the newest good one.

Why: object names and manifests live only in the SQLite database under ``--data``, which is one
disk, while the chunks they point at are replicated and erasure-coded across the drives. A
consistent copy of the database (SQLite's online backup: one read snapshot, writers keep going) is
written every ``meta_backup_interval`` seconds onto m+1 drives, the failures an open segment
survives. Each copy is named by when it was taken and the BLAKE3 of its bytes, written under a
temporary name, fsynced, then renamed, so a crash leaves either a whole verified copy or none.

Restoring takes the newest copy that verifies (digest and SQLite's quick_check), keeps whatever
database was there aside, and then the chunk index and segment layout must be rebuilt from the
drives (``exastor fsck --restore-meta`` also runs ``--rebuild-index`` and ``--repair``): segments may have
been sealed, repaired or compacted after the copy was taken.

What a restore loses: nothing that was acknowledged, while the metadata journal is on
(``meta_journal``, the default): every commit after the copy is on m+1 drives before it is
acknowledged (meta/journal.py) and the restore re-executes them in order. Copies are its starting
points: each records the journal head it contains, the journal moves to a new file generation
after each copy, and files older than every kept copy are removed. Without the journal a restore
loses the changes after the copy, at most one interval; chunks of objects deleted after the copy
are still on the drives while the interval is shorter than ``gc_grace``, so every object the copy
names comes back whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from exastor import errors
from exastor.engine.drives import DriveSet
from exastor.engine.shards import fsync_dir
from exastor.meta import journal as jr
from exastor.meta.store import Metadata

BACKUP_DIR = "meta-backups"
KEEP = 3  # copies kept per drive: the newest can be the one a failing disk corrupted
FIRST_COPY_MIN_S = 10.0  # after a start: recovery has committed, clients have begun
PARTIAL_STALE_S = 3600.0
_CHUNK = 1 << 20
log = logging.getLogger("exastor.metabackup")


@dataclass(frozen=True)
class Backup:
    path: Path
    taken_ns: int
    digest: str  # BLAKE3 of the file, hex (also in its name)

    @staticmethod
    def parse(path: Path) -> Backup | None:
        """``meta-<taken_ns>-<blake3>.sqlite``; anything else (a partial copy) is not a backup."""
        parts = path.name.removesuffix(".sqlite").split("-")
        if len(parts) != 3 or parts[0] != "meta" or not path.name.endswith(".sqlite") or not parts[1].isdigit():
            return None
        return Backup(path, int(parts[1]), parts[2])

    def verify(self) -> str | None:
        """None if the copy is whole and a sound database, else why not."""
        if _digest(self.path) != self.digest:
            return "BLAKE3 mismatch"
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True) as con:
                result = con.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.Error as exc:
            return f"not a database: {exc}"
        return None if result == "ok" else f"quick_check: {result}"

    def head(self) -> tuple[int, ...] | None:
        """The journal head this copy holds (seq, record id, gen, gap, offset); None for a copy from before the
        journal, or one that cannot be read."""
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True) as con:
                rows = con.execute("SELECT COUNT(*) FROM counters WHERE name = 'journal_head'").fetchone()[0]
                return jr.read_head(con) if rows else None
        except sqlite3.Error:
            return None


def _digest(path: Path) -> str:
    h = blake3()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _publish(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it to ``final``, fsync the directory: whole or absent after a crash."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)


def _private_dir(folder: Path) -> None:
    """The copies' folder is 0700 and each copy 0600: a copy is the whole metadata (its secrets are
    sealed, docs/security.md, but names and layouts are nobody else's business either)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        os.chmod(folder, 0o700)


def _new_private(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))


def _copy_private(src: Path, dst: Path) -> None:
    _new_private(dst)  # shutil.copyfile would create it with the umask's mode
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)


def take(db: Path, drive_paths: list[Path], keep: int = KEEP) -> list[Backup]:
    """Copy the database ``db`` (online) onto each of ``drive_paths``; prune to ``keep`` per drive."""
    assert drive_paths, "a metadata copy needs at least one drive"
    taken_ns = time.time_ns()
    first_dir = drive_paths[0] / BACKUP_DIR
    _private_dir(first_dir)
    tmp = first_dir / f"meta-{taken_ns}.partial"
    _new_private(tmp)  # an empty file is an empty database to SQLite: the backup fills it
    src = sqlite3.connect(db, timeout=30.0)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)  # one read snapshot of the WAL database: writers are not blocked
            dst.execute("PRAGMA journal_mode=DELETE")  # everything in the one file, no -wal beside it
        finally:
            dst.close()
    finally:
        src.close()
    digest = _digest(tmp)
    name = f"meta-{taken_ns}-{digest}.sqlite"
    _publish(tmp, first_dir / name)
    made = [Backup(first_dir / name, taken_ns, digest)]
    for drive in drive_paths[1:]:
        folder = drive / BACKUP_DIR
        _private_dir(folder)
        part = folder / f"meta-{taken_ns}.partial"
        _copy_private(made[0].path, part)
        _publish(part, folder / name)
        made.append(Backup(folder / name, taken_ns, digest))
    for drive in drive_paths:
        prune(drive, keep)
    return made


def prune(drive: Path, keep: int = KEEP) -> None:
    """Keep the ``keep`` newest copies on ``drive``; remove older ones and partial leftovers."""
    folder = drive / BACKUP_DIR
    if not folder.is_dir():
        return
    for leftover in folder.glob("*.partial"):  # a crashed copy's; an hour old, so never one still being written
        with contextlib.suppress(FileNotFoundError):
            if time.time() - leftover.stat().st_mtime > PARTIAL_STALE_S:
                leftover.unlink()
    for old in sorted(found(folder), key=lambda b: b.taken_ns, reverse=True)[keep:]:
        old.path.unlink(missing_ok=True)


def retire_older(drive_paths: Iterable[Path], taken_ns: int) -> int:
    """Remove every copy older than ``taken_ns`` (a verified copy taken then superseding them), e.g.
    copies made before the secrets in the database were sealed, which hold them in the clear."""
    removed = 0
    for drive in set(drive_paths):
        folder = drive / BACKUP_DIR
        if folder.is_dir():
            for old in found(folder):
                if old.taken_ns < taken_ns:
                    old.path.unlink(missing_ok=True)
                    removed += 1
    if removed:
        log.warning("removed %d metadata copies taken before %d (superseded by a newer copy)", removed, taken_ns)
    return removed


def found(folder: Path) -> list[Backup]:
    return [b for p in folder.glob("meta-*.sqlite") if (b := Backup.parse(p))]


def backups(drive_paths: Iterable[Path]) -> list[Backup]:
    """Every copy on these drives, newest first (the same copy on several drives appears once each)."""
    out = [b for drive in drive_paths if (drive / BACKUP_DIR).is_dir() for b in found(drive / BACKUP_DIR)]
    return sorted(out, key=lambda b: b.taken_ns, reverse=True)


class NoBackup(RuntimeError):
    """No copy on the drives verifies."""


def newest_good(drive_paths: Iterable[Path]) -> tuple[Backup, list[tuple[Backup, str]]]:
    """The newest copy that verifies, and the newer ones that did not (with why)."""
    rejected: list[tuple[Backup, str]] = []
    for candidate in backups(drive_paths):
        problem = candidate.verify()
        if problem is None:
            return candidate, rejected
        rejected.append((candidate, problem))
    raise NoBackup("no metadata copy on the drives verifies"
                   + "".join(f"\n  {b.path}: {why}" for b, why in rejected))


def install(backup: Backup, db: Path) -> Path | None:
    """Put ``backup`` in place as the database ``db``. What was there (with its -wal and -shm) is
    moved aside, never deleted; returns where, or None if there was nothing."""
    aside = None
    olds = [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()]
    if olds:
        aside = db.parent / f"replaced-{time.time_ns()}"
        aside.mkdir(mode=0o700)
        for p in olds:
            os.replace(p, aside / p.name)
    _private_dir(db.parent)
    part = db.with_name(db.name + ".partial")
    _copy_private(backup.path, part)
    _publish(part, db)
    return aside


def newest_head(drive_paths: Iterable[Path]) -> tuple[int, ...] | None:
    """The journal head of the newest copy on the drives that has one (not verified: a cheap check)."""
    for b in backups(drive_paths):
        head = b.head()
        if head is not None:
            return head
    return None


def needs_copy(meta: Metadata, drive_paths: Iterable[Path]) -> bool:
    """True when the journal alone cannot bring the database back: there is no copy to start from
    that knows the journal, or commits were made without the journal since the newest one."""
    gap = meta.runner.head()[3]  # type: ignore[attr-defined]
    copy = newest_head(drive_paths)
    return copy is None or gap > copy[0]


def next_generation(meta: Metadata) -> None:
    """Move the journal to new files: those of older generations then hold only commits the copies
    taken since already contain."""
    def tx(cur: Any) -> None:
        cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'journal_gen'")
        cur.execute("UPDATE counters SET value = 0 WHERE name = 'journal_off'")

    meta.runner.write_sync(tx)


def prune_journal(drive_paths: Iterable[Path]) -> int:
    """Remove journal files no kept copy needs: a restore starts from a copy and replays the files
    of that copy's generation and later, so files older than the oldest kept copy's generation are
    proven garbage. Returns how many were removed; none while any copy predates the journal."""
    drive_paths = list(drive_paths)
    heads = [b.head() for b in backups(drive_paths)]
    if not heads or any(h is None for h in heads):
        return 0
    oldest_gen = min(h[2] for h in heads if h is not None)
    removed = 0
    for drive in drive_paths:
        for gen, path in jr.gens_on(drive):
            if gen < oldest_gen:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def attach_journal(meta: Metadata, drives: DriveSet) -> jr.Journal:
    """Journal every commit of ``meta`` onto the drives that take the copies (meta/journal.py)."""
    def failed(folder: Path, exc: OSError) -> None:
        for d in drives.all:
            if d.path == folder:
                drives.failed_io(d.id, exc, now=False)  # on the writer thread: queued, never waited for

    journal = jr.Journal(lambda: journal_targets(drives), failed)
    meta.runner.attach_journal(journal)  # type: ignore[attr-defined]
    return journal


def ensure_base_copy(meta: Metadata, drives: DriveSet) -> list[Backup]:
    """Take a copy now if the journal alone could not restore the database (``needs_copy``)."""
    paths = targets(drives)
    if not paths or not needs_copy(meta, paths):
        return []
    made = take(meta.runner.path, paths)  # type: ignore[attr-defined]
    next_generation(meta)
    return made


def replay_journal(db: Path, backup: Backup, drive_paths: Iterable[Path],
                   drives_of: Callable[[], list[Path]] | None = None) -> jr.Chain:
    """Re-execute on ``db`` (``backup`` just installed) every journaled commit made after it.

    The journal is read from ``drive_paths`` and from the drives the database lists
    (``drives_of()``); a replayed commit may add drives that hold more of it, so it reads again
    until no new drive appears."""
    head = backup.head()
    total = jr.Chain()
    if head is None:
        return total
    seq, rid = head[0], head[1]
    seen: set[Path] = set()
    wanted = list(drive_paths)
    for _ in range(64):  # bounded: each pass must find a new drive to go on
        wanted += [p for p in (drives_of() if drives_of else []) if p not in wanted]
        if set(wanted) <= seen:
            break
        seen |= set(wanted)
        records, skipped = jr.read_all(sorted(seen))
        chain = jr.committed_chain(records, seq, rid)
        jr.replay(db, chain.records)
        total.records += chain.records
        total.orphans = chain.orphans
        total.skipped_bytes = skipped
        if chain.records:
            seq, rid = chain.records[-1].seq, chain.records[-1].rid
    # New records go to a generation of their own: never over what this restore read.
    newest = max((g for folder in seen for g, _ in jr.gens_on(folder)), default=head[2])
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("UPDATE counters SET value = ? WHERE name = 'journal_gen'", (max(newest, head[2]) + 1,))
        con.execute("UPDATE counters SET value = 0 WHERE name = 'journal_off'")
    finally:
        con.close()
    return total


def journal_targets(drives: DriveSet) -> list[Path]:
    """Where journal records go: m+1 drives in service, full ones included - a full store must still
    commit the deletes that free it, and a record is small beside the space a drive keeps in reserve."""
    # Called on the metadata writer thread: no refresh here (a refresh may commit, which would wait on
    # this very thread); the process's view is kept fresh by its segment writes.
    live = sorted((d for d in drives.all if d.state in ("active", "full")), key=lambda d: d.id)
    return [d.path for d in live[:drives.geometry().m + 1]]


def targets(drives: DriveSet) -> list[Path]:
    """Where a copy goes: m+1 drives that take writes (the lowest ids, so copies stay findable)."""
    writable = sorted(drives.writable(), key=lambda d: d.id)
    return [d.path for d in writable[:drives.geometry().m + 1]]


class MetaBackupThread(threading.Thread):
    """Worker 0's copier: a copy every ``interval`` seconds while the database changed since the last,
    and at once when the journal alone could not restore it (``needs_copy``)."""

    POLL_S = 5.0  # how often a commit made without the journal is looked for

    def __init__(self, db: Path, drive_paths: Callable[[], list[Path]], interval: float, *,
                 meta: Metadata | None = None) -> None:
        super().__init__(name="exastor-meta-backup", daemon=True)
        self.db, self.drive_paths, self.interval = db, drive_paths, interval
        self.meta = meta  # given when its commits are journaled: copies then also move the journal on
        self.journaled = meta is not None and getattr(meta.runner, "journal", None) is not None
        self._halt = threading.Event()
        self._last_seen: tuple | None = None

    def _signature(self) -> tuple:
        """Sizes and mtimes of the database and its WAL: unchanged means no commit since."""
        sig = []
        for p in (self.db, self.db.with_name(self.db.name + "-wal")):
            try:
                st = p.stat()
                sig.append((st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                sig.append(None)
        return tuple(sig)

    def run_once(self) -> list[Backup]:
        signature = self._signature()
        if signature == self._last_seen:
            return []
        drive_paths = self.drive_paths()
        if not drive_paths:
            log.warning("metadata copy skipped: no drive takes writes")
            return []
        made = take(self.db, drive_paths)
        self._last_seen = signature
        if self.meta is not None and self.journaled:
            next_generation(self.meta)
            prune_journal(drive_paths)
        return made

    def first_delay(self) -> float:
        """Seconds until the first copy: the rest of the interval since the newest copy on the drives,
        at least ``FIRST_COPY_MIN_S`` (or the interval, if shorter). A server restarted more often than
        the interval still copies."""
        try:
            copies = backups(self.drive_paths())
        except OSError:
            copies = []
        age = (time.time_ns() - copies[0].taken_ns) / 1e9 if copies else float("inf")
        return max(min(FIRST_COPY_MIN_S, self.interval), min(self.interval, self.interval - age))

    def run(self) -> None:
        due = time.monotonic() + self.first_delay()
        while not self._halt.wait(min(self.POLL_S, max(0.0, due - time.monotonic()))):
            try:
                urgent = self.meta is not None and self.journaled and needs_copy(self.meta, self.drive_paths())
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
