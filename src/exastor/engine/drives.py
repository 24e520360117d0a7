"""The drive set: which drives a store has, their health, and where segments and shards go.

Drive state lives in the database (table ``drives``) because workers are separate processes:
a drive one worker saw fail is avoided by all of them. States:

- ``active``   takes new replicas and shards, serves reads;
- ``full``     serves reads, takes nothing new (ENOSPC seen, or free space under a reserve);
- ``readonly`` serves reads, takes nothing new (EROFS seen: a drive that went read-only, as SSDs do at end of life);
- ``draining`` serves reads while ``exastor drive remove`` moves its shards away;
- ``failed``   an I/O error was seen: nothing is read from or written to it; its shards are rebuilt;
- ``removed``  gone from the store.

Fault injection (tests/faults): when ``EXASTOR_FAULTS`` names a JSON file, every drive I/O first
consults it: ``{"<drive path>": {"readonly": true, "full": true, "slow_ms": 20, "eio": true}}``.
The file is re-read when it changes, so a running server can be broken from outside.

Crash points (tests/faults): ``crash_point`` (exastor/crashpoints.py, re-exported here) kills -9
the process group between two steps of sealing, repair, compaction or a metadata commit.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exastor import errors
from exastor.crashpoints import crash_point  # noqa: F401 - re-exported: engine and services import it here
from exastor.engine import erasure
from exastor.meta.store import Metadata

log = logging.getLogger("exastor.drives")

READABLE = ("active", "full", "readonly", "draining")
FREE_RESERVE = 256 << 20  # a drive with less free space than this takes no new segments


@dataclass(frozen=True, slots=True)
class Drive:
    id: int
    path: Path
    state: str

    @property
    def segments(self) -> Path:
        return self.path / "segments"

    @property
    def shards(self) -> Path:
        return self.path / "shards"


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a segment's bytes are. ``kind``: 'plain' (legacy file on drive 0), 'replicas', 'ec'."""

    segment: int
    state: str
    k: int
    m: int
    shard_len: int
    data_len: int
    replicas: tuple[int, ...] = ()                   # drive ids
    shards: tuple[tuple[int, int, str], ...] = ()    # (idx, drive id, state), by idx

    @property
    def kind(self) -> str:
        if self.k == 0:
            return "plain"
        return "ec" if self.shard_len else "replicas"


class Faults:
    """Injected drive faults, read from the JSON file named by EXASTOR_FAULTS (testing only)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._mtime = -1.0
        self._rules: dict[str, dict[str, Any]] = {}

    def rules(self, drive: Path) -> dict[str, Any]:
        if not self.path:
            return {}
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime:
                with open(self.path) as f:
                    self._rules = json.load(f)
                self._mtime = mtime
        except (OSError, ValueError):
            return {}
        return self._rules.get(str(drive), {})

    def check(self, drive: Path, op: str) -> None:
        """Raise the OSError a broken drive would raise for ``op`` ('read' or 'write')."""
        rule = self.rules(drive)
        if not rule:
            return
        if rule.get("slow_ms"):
            time.sleep(rule["slow_ms"] / 1000)
        if rule.get("eio"):
            raise OSError(errno.EIO, "injected I/O error")
        if op == "write" and rule.get("readonly"):
            raise OSError(errno.EROFS, "injected read-only drive")
        if op == "write" and rule.get("full"):
            raise OSError(errno.ENOSPC, "injected full drive")


class DriveSet:
    """The store's drives as the database records them, plus this process's view of their health."""

    def __init__(self, meta: Metadata, paths: list[Path] | None = None, *, ec: str | None = None) -> None:
        self.meta = meta
        self.faults = Faults(os.environ.get("EXASTOR_FAULTS"))
        if paths:
            self.register([Path(p) for p in paths])
        self._drives: dict[int, Drive] = {}
        self._loaded = 0.0
        self.refresh()
        self.explicit = erasure.parse(ec) if ec else None
        self._persist_geometry()
        self._reports: queue.SimpleQueue[tuple[str, tuple[Any, ...]]] = queue.SimpleQueue()
        self._reporter: threading.Thread | None = None

    def _persist_geometry(self) -> None:
        """An explicit geometry (--ec) is stored, so every tool and later start agrees on it."""
        def tx(cur: Any) -> None:
            for name, value in (("ec_k", self.explicit.k), ("ec_m", self.explicit.m)):  # type: ignore[union-attr]
                cur.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
                if cur.rowcount == 0:
                    cur.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))

        def q(cur: Any) -> dict[str, int]:
            cur.execute("SELECT name, value FROM counters WHERE name IN ('ec_k', 'ec_m')")
            return {n: int(v) for n, v in cur.fetchall()}

        stored = self.meta.runner.read(q, snapshot=False)
        if self.explicit is not None:
            if stored != {"ec_k": self.explicit.k, "ec_m": self.explicit.m}:  # no empty commit at every start
                self.meta.runner.write_sync(tx)
        else:
            if "ec_k" in stored and "ec_m" in stored:
                self.explicit = erasure.Geometry(stored["ec_k"], stored["ec_m"])

    # --- the drives table -------------------------------------------------------
    def register(self, paths: list[Path], state: str = "active") -> list[int]:
        """Add drives not yet known (idempotent). Returns their ids, in order."""
        now = time.time_ns()

        def tx(cur: Any) -> list[int]:
            ids = []
            for p in paths:
                cur.execute("SELECT id FROM drives WHERE path = ?", (str(p.resolve()),))
                row = cur.fetchone()
                if row is None:
                    cur.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM drives")
                    new = int(cur.fetchone()[0])
                    cur.execute("INSERT INTO drives (id, path, state, reason, changed_ns) VALUES (?, ?, ?, '', ?)",
                                (new, str(p.resolve()), state, now))
                    ids.append(new)
                else:
                    ids.append(int(row[0]))
            return ids

        for p in paths:
            _prepare(p)
        return self.meta.runner.write_sync(tx)

    def refresh(self) -> None:
        def q(cur: Any) -> list[tuple[int, str, str]]:
            cur.execute("SELECT id, path, state FROM drives ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]

        self._drives = {i: Drive(i, Path(p), s) for i, p, s in self.meta.runner.read(q, snapshot=False)}
        self._loaded = time.monotonic()
        for d in [d for d in self._drives.values() if d.state == "full"]:
            if self._has_room(d):  # space came back (gc, an operator): take new segments again
                self.set_state(d.id, "active", "space available again", refresh=False)
                self._drives[d.id] = Drive(d.id, d.path, "active")
        gone = [d for d in self._drives.values() if d.state in READABLE and not (d.path / "segments").is_dir()]
        for d in gone:  # a drive directory that vanished is a dead drive
            self.set_state(d.id, "failed", "drive directory missing", refresh=False)
            self._drives[d.id] = Drive(d.id, d.path, "failed")

    def _has_room(self, d: Drive) -> bool:
        if self.faults.rules(d.path).get("full"):
            return False
        try:
            st = os.statvfs(d.path)
        except OSError:
            return False
        total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        return free >= 2 * FREE_RESERVE or total <= 4 * FREE_RESERVE

    def maybe_refresh(self, max_age: float = 2.0) -> None:
        if time.monotonic() - self._loaded > max_age:
            self.refresh()

    def set_state(self, drive: int, state: str, reason: str = "", *, refresh: bool = True) -> None:
        def tx(cur: Any) -> None:
            cur.execute("UPDATE drives SET state = ?, reason = ?, changed_ns = ? WHERE id = ?",
                        (state, reason, time.time_ns(), drive))

        self.meta.runner.write_sync(tx)
        if state != "active":
            log.warning("drive %d is now %s: %s", drive, state, reason)
        if refresh:
            self.refresh()

    @property
    def all(self) -> list[Drive]:
        return list(self._drives.values())

    def get(self, drive: int) -> Drive | None:
        return self._drives.get(drive)

    def readable(self, drive: int) -> bool:
        d = self._drives.get(drive)
        return d is not None and d.state in READABLE

    def writable(self) -> list[Drive]:
        out = []
        for d in self._drives.values():
            if d.state != "active":
                continue
            if self.faults.rules(d.path).get("full"):
                continue
            try:
                st = os.statvfs(d.path)
                if st.f_bavail * st.f_frsize < FREE_RESERVE and st.f_blocks * st.f_frsize > 4 * FREE_RESERVE:
                    continue  # nearly full (the reserve is ignored on tiny test filesystems)
            except OSError:
                continue
            out.append(d)
        return out

    @property
    def first(self) -> Drive:
        """Drive 0: where segments from before drives existed live."""
        return self._drives.get(0) or next(iter(self._drives.values()))

    # --- geometry and placement --------------------------------------------------
    def geometry(self) -> erasure.Geometry:
        """The store's target geometry: explicit (--ec) or by the number of drives in service."""
        if self.explicit is not None:
            return self.explicit
        return erasure.auto(max(1, sum(d.state != "removed" for d in self._drives.values())))

    def seal_geometry(self) -> erasure.Geometry | None:
        """The geometry a segment sealed now gets: the target, with k reduced to fit the drives that can
        take shards (parity never reduced). None: fewer than m+1 drives can write."""
        g = self.geometry()
        n = len(self.writable())
        if n < g.m + 1:
            return None
        return erasure.Geometry(min(g.k, n - g.m), g.m)

    def place(self, count: int, salt: int, exclude: set[int] = frozenset()) -> list[Drive]:  # type: ignore[assignment]
        """``count`` distinct writable drives, fewest shards first, rotated by ``salt`` to spread load."""
        cands = [d for d in self.writable() if d.id not in exclude]
        if len(cands) < count:
            out_of_space = [d for d in self._drives.values() if d.state == "full" and d.id not in exclude]
            if len(cands) + len(out_of_space) >= count:  # healthy but full: the store is out of space
                raise errors.InsufficientStorage(
                    f"no space left: need {count} drives with room, have {len(cands)}")
            raise errors.Unavailable(
                f"too few healthy drives to write safely: need {count}, have {len(cands)} "
                f"(see `exastor drive status`)")
        load = self.shard_counts()
        n = len(cands)
        cands.sort(key=lambda d: (load.get(d.id, 0), (d.id - salt) % max(n, 1)))
        return cands[:count]

    def shard_counts(self) -> dict[int, int]:
        def q(cur: Any) -> dict[int, int]:
            cur.execute("SELECT drive, COUNT(*) FROM shards GROUP BY drive")
            return {int(a): int(b) for a, b in cur.fetchall()}

        return self.meta.runner.read(q, snapshot=False)

    # --- errors ------------------------------------------------------------------
    def check(self, drive: Drive, op: str) -> None:
        self.faults.check(drive.path, op)

    def failed_io(self, drive: int, exc: OSError, *, now: bool = True) -> None:
        """Record an I/O error on ``drive``: ENOSPC makes it full, anything else failed.
        ``now=False`` queues the database write (callers that may be on an event loop or hold locks)."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            state, reason = "full", "no space left"
        elif exc.errno == errno.EROFS:
            state, reason = "readonly", "read-only file system"
        else:
            state, reason = "failed", f"{errno.errorcode.get(exc.errno or 0, 'error')}: {exc.strerror or exc}"
        d = self._drives.get(drive)
        if d is not None:  # this process stops using it at once
            self._drives[drive] = Drive(d.id, d.path, state)
        if now:
            self.set_state(drive, state, reason)
        else:
            self._report("state", (drive, state, reason))

    def shard_bad(self, segment: int, idx: int) -> None:
        """Queue a shard for repair (its checksum failed on a read)."""
        self._report("bad", (segment, idx))

    def _report(self, kind: str, args: tuple[Any, ...]) -> None:
        self._reports.put((kind, args))
        if self._reporter is None or not self._reporter.is_alive():
            self._reporter = threading.Thread(target=self._drain_reports, name="exastor-drive-reports",
                                              daemon=True)
            self._reporter.start()

    def _drain_reports(self) -> None:
        while True:
            try:
                kind, args = self._reports.get(timeout=1.0)
            except queue.Empty:
                return
            try:
                if kind == "state":
                    self.set_state(*args)
                else:
                    mark_shard(self.meta, *args, state="bad")
            except Exception as exc:  # noqa: BLE001 - a report must never kill the reporter
                log.error("could not record drive report %s %s: %s", kind, args, exc)

    def flush_reports(self, timeout: float = 5.0) -> None:
        t = self._reporter
        if t is not None:
            t.join(timeout)


def _prepare(path: Path) -> None:
    (path / "segments").mkdir(parents=True, exist_ok=True)
    (path / "shards").mkdir(parents=True, exist_ok=True)


# --- segment layouts in the database ----------------------------------------------

def new_segment(meta: Metadata, m: int, drives: list[Drive]) -> int:
    """Allocate a segment id, open, replicated on ``drives`` (m+1 of them): one transaction."""
    now = time.time_ns()

    def tx(cur: Any) -> int:
        cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")
        seg = int(cur.fetchone()[0])
        cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, 'open', 0, ?)", (seg, now))
        cur.execute("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (?, 1, ?, 0, 0)",
                    (seg, m))
        cur.executemany("INSERT INTO replicas (segment, drive) VALUES (?, ?)", [(seg, d.id) for d in drives])
        return seg

    return meta.runner.write_sync(tx)


def load_layout(meta: Metadata, segment: int) -> Layout | None:
    def q(cur: Any) -> Layout | None:
        cur.execute("SELECT state, size FROM segments WHERE id = ?", (segment,))
        row = cur.fetchone()
        if row is None:
            return None
        state, size = row
        cur.execute("SELECT k, m, shard_len, data_len FROM segment_layout WHERE segment = ?", (segment,))
        lay = cur.fetchone()
        if lay is None:
            return Layout(segment, state, 0, 0, 0, int(size))
        cur.execute("SELECT drive FROM replicas WHERE segment = ? ORDER BY drive", (segment,))
        reps = tuple(int(r[0]) for r in cur.fetchall())
        cur.execute("SELECT idx, drive, state FROM shards WHERE segment = ? ORDER BY idx", (segment,))
        shs = tuple((int(a), int(b), c) for a, b, c in cur.fetchall())
        return Layout(segment, state, int(lay[0]), int(lay[1]), int(lay[2]), int(lay[3]), reps, shs)

    return meta.runner.read(q, snapshot=True)


def commit_seal(meta: Metadata, segment: int, k: int, m: int, shard_len: int, data_len: int,
                placed: list[int], *, expect_state: str = "open") -> bool:
    """Point the database at the shards (all fsynced already) and forget the replicas, in one transaction.
    False when the segment is no longer in ``expect_state`` (deleted meanwhile)."""
    def tx(cur: Any) -> bool:
        cur.execute("SELECT state FROM segments WHERE id = ?", (segment,))
        row = cur.fetchone()
        if row is None or row[0] != expect_state:
            return False
        cur.execute("DELETE FROM segment_layout WHERE segment = ?", (segment,))
        cur.execute("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (?, ?, ?, ?, ?)",
                    (segment, k, m, shard_len, data_len))
        cur.execute("DELETE FROM shards WHERE segment = ?", (segment,))
        cur.executemany("INSERT INTO shards (segment, idx, drive, state) VALUES (?, ?, ?, 'ok')",
                        [(segment, i, d) for i, d in enumerate(placed)])
        if shard_len:
            cur.execute("DELETE FROM replicas WHERE segment = ?", (segment,))
        cur.execute("UPDATE segments SET state = 'sealed', size = ? WHERE id = ?", (data_len, segment))
        return True

    return meta.runner.write_sync(tx)


def mark_shard(meta: Metadata, segment: int, idx: int, *, state: str, drive: int | None = None,
               expect_drive: int | None = None) -> bool:
    """Set a shard's state (and move it to ``drive``). With ``expect_drive``, only if it is still there."""
    def tx(cur: Any) -> bool:
        sql = "UPDATE shards SET state = ?" + (", drive = ?" if drive is not None else "") + \
              " WHERE segment = ? AND idx = ?" + (" AND drive = ?" if expect_drive is not None else "")
        params: list[Any] = [state] + ([drive] if drive is not None else []) + [segment, idx] + \
            ([expect_drive] if expect_drive is not None else [])
        cur.execute(sql, params)
        return cur.rowcount == 1

    return meta.runner.write_sync(tx)
