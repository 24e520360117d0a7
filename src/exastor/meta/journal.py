"""The metadata journal: every commit of the embedded (SQLite) database, written ahead onto the drives.

Why: the database lives on one disk under ``--data`` while the chunks it points at are replicated and
erasure-coded across the drives. Periodic copies (services/metabackup.py) bound what losing that
disk costs to one copy interval; this journal brings it to zero. Every write batch of the runner
(meta/sqlite.py) appends one *commit record* - the write statements its units executed, with their
parameters - to a journal file on each of m+1 drives and fsyncs them *before* its COMMIT, while it
holds SQLite's write lock; clients are answered only after the COMMIT. A restore installs the newest
verified copy and re-executes, in order, every journaled commit after it: the database comes back
as it was at its last commit, so no acknowledged write is lost.

Why re-executing statements reproduces the database exactly: a batch's statements ran on the state
the previous commits left, and carry every value the code chose outside SQL (times, ids, versions)
as parameters; the SQL itself uses nothing non-deterministic. Applied in the same order to the same
starting state, they leave the same state.

Which commits happened, and in what order (the chain): the database keeps its *head* in ``counters``
(``journal_seq``, ``journal_head``: the id of the last commit record). Each record carries its own
random id and the id of the head it was written on (``prev``). All of a host's processes append to
the same file per drive, and only while holding the write lock, so a file's order is the order in
which batches tried to commit. A record whose batch crashed before its COMMIT (or whose COMMIT
failed) may be there; it is told apart because the next batch was written on the same ``prev``
(the head had not moved), later in the file, or because it has no successor and an *abort record*
names it. A restore follows the chain from the copy's head: among records on the same ``prev``, the
one that has a successor, else the later one in a file. A batch that crashed after writing its
record but before COMMIT, at the very end of the journal, is replayed: the client was never
answered, its data was durable before the record was written (the ordering rule), so it appears
whole, never half.

Files: ``<drive>/meta-journal/journal-<gen>.log``; ``gen`` (``counters.journal_gen``) moves on when a
copy is taken, so files older than every kept copy's ``gen`` hold nothing a restore needs and are
removed (services/metabackup.py). A journal write or fsync that fails is final for that file: the
batch fails (nothing committed, the client gets 503) and the drive is reported failed.

Commits made without a journal (tools run without the drives, the first start of a store) set
``counters.journal_gap``; a gap newer than the newest copy makes the next copy come at once.
Record layout: docs/format.md, "Metadata journal".
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from exastor import errors
from exastor.drives import DriveIO

log = logging.getLogger("exastor.journal")

JOURNAL_DIR = "meta-journal"
MAGIC = b"EXJ1"
COMMIT, ABORT = 1, 2
# magic kind pad seq id prev time_ns payload_len payload_xxh3 | header_xxh32
HEADER = struct.Struct("<4sB3xQQQQIQ")
HEADER_SIZE = HEADER.size + 4
assert HEADER_SIZE == 56
MAX_PAYLOAD = 1 << 30

# The head rows in ``counters`` (created by the runner at open).
HEAD_ROWS = ("journal_seq", "journal_head", "journal_gen", "journal_gap", "journal_off")

Statement = tuple[str, Any, bool]   # (sql, parameters, executemany?)


class JournalError(errors.Unavailable):
    """A journal write failed: the batch must not commit."""


# --- records -----------------------------------------------------------------------------------

def _default(obj: object) -> object:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(obj)).decode("ascii")}
    raise TypeError(f"cannot journal a parameter of type {type(obj).__name__}")


def _hook(d: dict[str, Any]) -> Any:
    if len(d) == 1 and "$b" in d:
        return base64.b64decode(d["$b"])
    return d


def encode_statements(statements: Sequence[Statement]) -> bytes:
    return json.dumps([[sql, params, many] for sql, params, many in statements], separators=(",", ":"),
                      default=_default).encode()


def decode_statements(payload: bytes) -> list[Statement]:
    out = []
    for sql, params, many in json.loads(payload, object_hook=_hook):
        if many:
            params = [tuple(p) if isinstance(p, list) else p for p in params]
        elif isinstance(params, list):
            params = tuple(params)
        out.append((sql, params, bool(many)))
    return out


def encode_record(kind: int, seq: int, rid: int, prev: int, time_ns: int, payload: bytes = b"") -> bytes:
    head = HEADER.pack(MAGIC, kind, seq, rid, prev, time_ns, len(payload), xxhash.xxh3_64_intdigest(payload))
    return head + struct.pack("<I", xxhash.xxh32_intdigest(head)) + payload


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    seq: int
    rid: int
    prev: int
    time_ns: int
    payload: bytes
    where: tuple[str, int, int] = ("", 0, 0)   # (drive folder, gen, offset): where it was read


def _parse_at(buf: memoryview, pos: int) -> Record | None:
    if pos + HEADER_SIZE > len(buf) or buf[pos:pos + 4] != MAGIC:
        return None
    head = bytes(buf[pos:pos + HEADER.size])
    (check,) = struct.unpack_from("<I", buf, pos + HEADER.size)
    if xxhash.xxh32_intdigest(head) != check:
        return None
    _, kind, seq, rid, prev, time_ns, length, digest = HEADER.unpack(head)
    end = pos + HEADER_SIZE + length
    if length > MAX_PAYLOAD or end > len(buf):
        return None
    payload = bytes(buf[pos + HEADER_SIZE:end])
    if xxhash.xxh3_64_intdigest(payload) != digest or kind not in (COMMIT, ABORT):
        return None
    return Record(kind, seq, rid, prev, time_ns, payload)


def parse(data: bytes, where: tuple[str, int] = ("", 0)) -> tuple[list[Record], int]:
    """Every whole record in one journal file, in file order, and how many bytes were skipped.

    Records sit back to back from offset 0; after the last one come zeros (filled ahead) and
    perhaps the rest of a longer record that never committed and was written over. A file that
    joined a generation late has zeros before its first record. The reader steps over bytes that do
    not start a record whose header and payload checksums hold, to the next that does; zeros are
    not counted as skipped."""
    view = memoryview(data)
    out: list[Record] = []
    pos = skipped = 0
    while pos < len(view):
        rec = _parse_at(view, pos)
        if rec is None:
            nxt = data.find(MAGIC, pos + 1)
            end = len(view) if nxt < 0 else nxt
            skipped += end - pos - data.count(0, pos, end)
            pos = end
            continue
        out.append(Record(rec.kind, rec.seq, rec.rid, rec.prev, rec.time_ns, rec.payload, (*where, pos)))
        pos += HEADER_SIZE + len(rec.payload)
    return out, skipped


def journal_name(gen: int) -> str:
    return f"{JOURNAL_DIR}/journal-{gen:010d}.log"


def file_gen(name: str) -> int | None:
    base = name.rsplit("/", 1)[-1]
    if not (base.startswith("journal-") and base.endswith(".log")):
        return None
    middle = base[len("journal-"):-len(".log")]
    return int(middle) if middle.isdigit() else None


def gens_on(io: DriveIO) -> list[tuple[int, str]]:
    """(gen, name) of every journal file on a drive."""
    try:
        names = io.list(JOURNAL_DIR)
    except FileNotFoundError:
        return []
    return sorted((g, f"{JOURNAL_DIR}/{n}") for n in names if (g := file_gen(n)) is not None)


def read_drive(io: DriveIO) -> tuple[list[Record], int]:
    """Every record in a drive's journal files (oldest file first)."""
    records: list[Record] = []
    skipped = 0
    for gen, name in gens_on(io):
        got, lost = parse(io.read(name), (io.label, gen))
        records += got
        skipped += lost
    return records, skipped


# --- the chain of committed records -------------------------------------------------------------

@dataclass
class Chain:
    records: list[Record] = field(default_factory=list)   # to replay, in order
    orphans: int = 0        # records of batches that never committed (superseded or aborted)
    ambiguous: int = 0      # forks decided by the fallback rule (should stay 0)
    skipped_bytes: int = 0  # torn bytes stepped over


def committed_chain(records: Iterable[Record], head_seq: int, head_id: int) -> Chain:
    """The commits after the head (``head_seq``, ``head_id``) in the order they were made."""
    chain = Chain()
    aborted: set[int] = set()
    by_id: dict[int, Record] = {}
    order: dict[int, list[tuple[str, int, int]]] = {}   # rid -> positions (drive, gen, offset)
    for rec in records:
        if rec.kind == ABORT:
            aborted.add(rec.rid)
            continue
        by_id.setdefault(rec.rid, rec)
        order.setdefault(rec.rid, []).append(rec.where)
    successors: dict[int, list[int]] = {}
    for rec in by_id.values():
        if rec.rid not in aborted:
            successors.setdefault(rec.prev, []).append(rec.rid)
    chain.orphans = len(aborted & by_id.keys())
    current, seq = head_id, head_seq
    for _ in range(len(by_id) + 1):
        candidates = successors.get(current, [])
        if not candidates:
            break
        pick = _decide(candidates, successors, order, by_id)
        if len(candidates) > 1:
            chain.orphans += len(candidates) - 1
        rec = by_id[pick]
        if rec.seq != seq + 1:
            raise errors.DataCorrupted(f"metadata journal: record {pick:x} has seq {rec.seq}, expected {seq + 1}")
        chain.records.append(rec)
        current, seq = pick, rec.seq
    return chain


def _decide(candidates: list[int], successors: dict[int, list[int]],
            order: dict[int, list[tuple[str, int, int]]], by_id: dict[int, Record]) -> int:
    """Which of several records written on the same head committed (see the module docstring)."""
    if len(candidates) == 1:
        return candidates[0]
    continued = [c for c in candidates if successors.get(c)]
    if len(continued) == 1:
        return continued[0]
    if len(continued) > 1:  # two committed successors of one head cannot happen
        raise errors.DataCorrupted("metadata journal: two committed records follow one head")
    # Leaves: the later one in a file that holds several of them was written after the others failed.
    best = candidates[0]
    for c in candidates[1:]:
        at = {(d, g): off for d, g, off in order[c]}
        c_later = [at[(d, g)] > off for d, g, off in order[best] if (d, g) in at]
        if c_later and all(c_later):
            best = c
        elif not c_later and by_id[c].time_ns > by_id[best].time_ns:
            log.warning("metadata journal: records %x and %x share no file; the later by clock wins", best, c)
            best = c
    return best


def replay(db: Path, chain: Sequence[Record]) -> int:
    """Re-execute ``chain`` on the database ``db`` (one transaction per record). Returns the head id."""
    con = sqlite3.connect(db, isolation_level=None)  # not a drive: the metadata database in --data
    try:
        head = 0
        for rec in chain:
            con.execute("BEGIN IMMEDIATE")
            try:
                for sql, params, many in decode_statements(rec.payload):
                    if many:
                        con.executemany(sql, params)
                    else:
                        con.execute(sql, params)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            head = rec.rid
        if chain:
            got = read_head(con)
            if got[1] != head:
                raise errors.DataCorrupted(f"metadata journal replay ended at head {got[1]:x}, expected {head:x}")
        return head
    finally:
        con.close()


def read_head(con: sqlite3.Connection | sqlite3.Cursor) -> tuple[int, int, int, int, int]:
    """(seq, head id, gen, gap, offset) from a database's counters (zeros where absent)."""
    rows = dict(con.execute("SELECT name, value FROM counters WHERE name IN (?, ?, ?, ?, ?)", HEAD_ROWS).fetchall())
    seq, head, gen, gap, offset = (int(rows.get(n, 0)) for n in HEAD_ROWS)
    return seq, head, gen, gap, offset


def advance_generation(cur: Any) -> None:
    """Inside a write transaction: new journal records go to files of the next generation, from their
    start (services/metabackup.py moves it on after each copy)."""
    cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'journal_gen'")
    cur.execute("UPDATE counters SET value = 0 WHERE name = 'journal_off'")


def file_head(db: Path) -> tuple[int, int, int, int, int] | None:
    """read_head of the database file ``db`` (a copy just installed), or None when it keeps no journal."""
    con = sqlite3.connect(db)  # not a drive: the database in --data
    try:
        has_journal = con.execute("SELECT COUNT(*) FROM counters WHERE name = 'journal_head'").fetchone()[0]
        return read_head(con) if has_journal else None
    finally:
        con.close()


def copy_position(copy: Path) -> tuple[int, int] | None:
    """(seq, gen) of the journal head a copy of the database holds; None if it has no journal rows (or
    is not an exastor database of this kind)."""
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)  # not a drive: a scratch copy in --data
    try:
        if not con.execute("SELECT COUNT(*) FROM counters WHERE name = 'journal_head'").fetchone()[0]:
            return None
        seq, _rid, gen, _gap, _off = read_head(con)
        return seq, gen
    except sqlite3.OperationalError:  # no counters table
        return None
    finally:
        con.close()


def start_generation(db: Path, gen: int) -> None:
    """On the database file ``db``: new journal records go to generation ``gen``, from its start."""
    con = sqlite3.connect(db, isolation_level=None)  # not a drive
    try:
        con.execute("UPDATE counters SET value = ? WHERE name = 'journal_gen'", (gen,))
        con.execute("UPDATE counters SET value = 0 WHERE name = 'journal_off'")
    finally:
        con.close()


# --- recording a batch's statements ------------------------------------------------------------

class RecordingCursor:
    """A cursor that notes every write statement a unit runs, honouring the unit's own savepoints
    (statements rolled back to a savepoint are forgotten, as the database forgets them)."""

    __slots__ = ("_cur", "statements", "_marks")

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur
        self.statements: list[Statement] = []
        self._marks: list[tuple[str, int]] = []

    def _note(self, sql: str, params: Any, many: bool) -> None:
        word = sql.lstrip()[:9].upper()
        if word.startswith("SELECT"):
            return
        if word.startswith("SAVEPOINT"):
            self._marks.append((_savepoint_name(sql), len(self.statements)))
            return
        if word.startswith("ROLLBACK"):
            name = _savepoint_name(sql)
            for mark_name, at in reversed(self._marks):
                if mark_name == name:
                    del self.statements[at:]
                    break
            return
        if word.startswith("RELEASE"):
            name = _savepoint_name(sql)
            while self._marks:
                if self._marks.pop()[0] == name:
                    break
            return
        self.statements.append((sql, params, many))

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._note(sql, params, False)
        return self._cur.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        rows = list(rows)
        self._note(sql, rows, True)
        return self._cur.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _savepoint_name(sql: str) -> str:
    return sql.split()[-1].strip('"').lower()


# --- writing -----------------------------------------------------------------------------------

Failure = Callable[[DriveIO, OSError], None]
# A journal file is zero-filled ahead of its writes by as much as it already holds, between these
# bounds: a generation that lives a second stays small, a busy one flushes its size rarely.
ZERO_MIN, ZERO_MAX = 256 << 10, 8 << 20
MAX_PARALLEL_FLUSHES = 8  # m+1 targets; more would only queue


class Journal:
    """This process's writer: one file per target drive for the current ``gen``, through the drive
    I/O seam (drives/).

    Records are written *in place* at the offset the database holds (``counters.journal_off``),
    into a part of the file that was filled with zeros and made durable beforehand: overwriting
    allocated blocks needs no file-system metadata change, so each write (``DriveIO.write_at``,
    O_DSYNC) costs a data flush and no journal commit of the file system (about half of an
    appending write plus fdatasync here). A batch that never committed left its record at the
    offset the next batch writes to, so it is overwritten.

    ``targets()`` names the drives (m+1 of them) each record must reach; ``on_failure`` is told
    which drive failed (the drive set marks it, so ``targets`` stops naming it). Writes are made
    only by the runner's writer thread while it holds SQLite's write lock."""

    TARGETS_TTL_S = 1.0  # asking the drive set costs a statvfs per drive: not once per batch

    def __init__(self, targets: Callable[[], list[DriveIO]], on_failure: Failure | None = None, *,
                 copies: Callable[[], int] | None = None) -> None:
        self.targets = targets
        self.copies = copies  # how many drives each record must reach (None: every target)
        self.on_failure = on_failure
        self._targets: list[DriveIO] = []
        self._targets_at = -1e9
        self._ready: dict[tuple[str, str], int] = {}   # (drive, file) -> bytes known zero-filled
        self._dead: set[tuple[str, int]] = set()       # (drive, gen): a write failed there, final
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self.appended = 0

    def _current_targets(self, gen: int) -> list[DriveIO]:
        now = time.monotonic()
        if now - self._targets_at > self.TARGETS_TTL_S:
            self._targets, self._targets_at = list(self.targets()), now
        # A drive whose file of this generation failed is never written again (until the next copy
        # moves the journal to new files); the next drive in order takes its place, so each record
        # still reaches ``copies`` drives while there are that many. A restore reads every drive's
        # records and follows the chain by their ids, whichever drives hold them. With fewer drives
        # in service the store is degraded (segment writes are refused: too few drives to place on),
        # and the commits it still makes - deletes, a restart's own - go to the drives there are:
        # refusing them too would stop even a server from starting beside swapped drives.
        want = self.copies() if self.copies is not None else len(self._targets)
        live = [io for io in self._targets if (io.label, gen) not in self._dead][:want]
        if not live:
            raise JournalError("metadata journal: no drive takes writes")
        return live

    def _prepare(self, io: DriveIO, name: str, end: int) -> None:
        """The file exists (created durably) and holds durable zeros up to at least ``end``."""
        key = (io.label, name)
        if self._ready.get(key, -1) >= end:
            return
        try:
            size = io.stat(name).size
        except FileNotFoundError:
            try:
                io.create(name)  # makes the folder too
            except FileExistsError:
                pass
            io.sync_dir(JOURNAL_DIR)  # a file created since the last directory fsync is gone after a power cut
            size = 0
        if size < end:
            step = min(ZERO_MAX, max(ZERO_MIN, size))
            target = -(-end // step) * step
            io.write_at(name, size, bytes(target - size))  # durable, size included (O_DSYNC)
            size = target
        self._ready[key] = size

    def _fail(self, io: DriveIO, gen: int, exc: OSError) -> None:
        self._dead.add((io.label, gen))
        self._targets_at = -1e9  # ask the drive set again: it is told about this drive now
        log.error("metadata journal on %s failed: %s; that file is never written again", io.label, exc)
        if self.on_failure is not None:
            self.on_failure(io, exc)

    def write(self, gen: int, offset: int, record: bytes) -> None:
        """Write ``record`` at ``offset`` of every target's file and make it durable there;
        JournalError if any failed (the batch must then not commit)."""
        name = journal_name(gen)

        def write_one(io: DriveIO) -> OSError | None:
            try:
                self._prepare(io, name, offset + len(record))
                io.write_at(name, offset, record)
            except OSError as exc:
                return exc
            return None

        with self._lock:
            targets = self._current_targets(gen)
            # The drives flush side by side: the batch (and every PUT in it) waits for the slowest
            # flush, not for their sum. The first target is written on this thread, so one drive
            # costs no hand-off.
            others = [self._pool().submit(write_one, io) for io in targets[1:]]
            outcomes = [write_one(targets[0])] + [f.result() for f in others]
            failed = [(io, exc) for io, exc in zip(targets, outcomes, strict=True) if exc is not None]
            for io, exc in failed:
                self._fail(io, gen, exc)
            if failed:
                raise JournalError(f"metadata journal write failed on {failed[0][0].label}: "
                                   f"{failed[0][1].strerror or failed[0][1]}")
            self.appended += 1

    def abort(self, gen: int, offset: int, rid: int, time_ns: int) -> None:
        """Best effort: void record ``rid`` (its batch's COMMIT failed) by writing over it."""
        try:
            self.write(gen, offset, encode_record(ABORT, 0, rid, 0, time_ns))
        except JournalError as exc:
            log.error("could not journal the abort of record %x: %s", rid, exc)

    def _pool(self) -> ThreadPoolExecutor:
        """Threads for the flushes beyond the first drive (made on first use: a process that never
        journals to several drives starts none)."""
        if self._executor is None or self._executor_pid != os.getpid():
            # A pool inherited through fork has no threads behind it: work queued there never runs.
            self._executor = ThreadPoolExecutor(max_workers=MAX_PARALLEL_FLUSHES, thread_name_prefix="journal")
            self._executor_pid = os.getpid()
        return self._executor

    def close(self) -> None:
        """The drives keep their own descriptors; only the flush threads go."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def new_record_id() -> int:
    return secrets.randbits(63) or 1


def read_all(drives: Iterable[DriveIO]) -> tuple[list[Record], int]:
    records: list[Record] = []
    skipped = 0
    for io in drives:
        got, lost = read_drive(io)
        records += got
        skipped += lost
    return records, skipped
