"""SQLite metadata backend: WAL mode, one writer thread with group commit.

Why a writer thread: SQLite allows one writer at a time, and each commit costs
an fsync. Queueing every write transaction to one thread lets concurrent
requests share a single COMMIT (group commit): 16 concurrent small PUTs cost
one fsync, not sixteen. Each queued unit runs inside its own SAVEPOINT, so one
unit failing rolls back only itself.

Reads use a connection per thread and never wait for the writer (WAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from exastor import errors
from exastor.meta import journal as jr
from exastor.meta import migrations
from exastor.meta.versions import SharedVersions

if TYPE_CHECKING:
    from exastor.meta.contract import Metadata

T = TypeVar("T")

_MAX_BATCH = 256
# Page cache per connection, in KiB. Every thread that reads has its own connection, and each
# cache fills with whatever pages that thread touched and keeps them: a 10 GiB object has
# 160,000 chunks with random fingerprints, and with 64 MiB caches its GET grew a worker by
# ~8 MiB per GiB read. The pages are in the OS page cache anyway (a miss is one pread), so
# readers keep only the hot upper levels of the B-trees; the writer keeps more, for the leaves a
# batch dirties, and empties its cache when idle. 64 MiB for the writer halved its reads per PUT
# at 1-5M objects in a bucket but not its CPU per PUT (docs/benchmarks.md, "A bucket of many objects").
READER_CACHE_KIB = 2048
WRITER_CACHE_KIB = 8192
_IDLE_SHRINK_S = 2.0  # the writer empties its cache after this long without work

log = logging.getLogger("exastor.keys")  # rewrite_securely: sealing secrets in place
meta_log = logging.getLogger("exastor.meta")


def _connect(path: Path, cache_kib: int = READER_CACHE_KIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss once acknowledged. Group commit amortises the fsync.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    return conn


def store_error(exc: sqlite3.OperationalError) -> errors.StoreError:
    """The protocol-neutral meaning of a database failure: a full disk (nothing was committed),
    or a transient condition the client should retry."""
    if "full" in str(exc):
        return errors.InsufficientStorage("the metadata disk is full")
    return errors.Unavailable("metadata database busy or failing")


def _translated(exc: BaseException) -> BaseException:
    """What a caller of the runner sees: a driver failure becomes the project's error (callers above
    meta/ never catch sqlite3's), logged here with the driver's words; anything else unchanged."""
    if not isinstance(exc, sqlite3.OperationalError):
        return exc
    failure = store_error(exc)
    if isinstance(failure, errors.Unavailable):
        meta_log.error("metadata database error: %s", exc)
    failure.__cause__ = exc
    return failure


class SqliteRunner:
    """Runs read functions on per-thread connections and write functions in batched transactions."""

    paramstyle = "?"
    backend = "sqlite"

    def __init__(self, path: str | Path, *, writer_cache_kib: int = WRITER_CACHE_KIB) -> None:
        self.path = Path(path)
        # The writer's page cache in KiB; assigning it takes effect before the writer's next batch
        # (bench/many_objects.py compares sizes in one run).
        self.writer_cache_kib = writer_cache_kib
        self._local = threading.local()
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        writer: sqlite3.Connection | None = None
        try:
            writer = _connect(self.path, writer_cache_kib)
            self.schema_versions = _migrate(writer)
        except errors.MetadataOpenError:  # _migrate refused the schema: close what _connect opened
            if writer is not None:
                writer.close()
            raise
        except sqlite3.OperationalError:
            raise  # locked, no permission, no such directory: the message says which
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise errors.MetadataUnreadable(f"{self.path}: {exc}") from exc
        for name in jr.HEAD_ROWS:  # the journal's head (meta/journal.py); created once, idempotent
            writer.execute("INSERT INTO counters (name, value) VALUES (?, 0) ON CONFLICT (name) DO NOTHING", (name,))
        self._writer_conn = writer
        self.journal: jr.Journal | None = None
        self._thread = threading.Thread(target=self._writer_loop, name="exastor-meta-writer", daemon=True)
        self._closed = False
        self._thread.start()

    # -- reads -------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
        return conn

    def read(self, fn: Callable[[sqlite3.Cursor], T], *, snapshot: bool = True) -> T:
        """Run ``fn(cursor)`` in a read transaction (a consistent snapshot). A function that runs
        a single statement needs no explicit transaction: ``snapshot=False`` saves two round trips
        through SQLite on the hottest paths."""
        try:
            conn = self._reader()
            cur = conn.cursor()
            if not snapshot:
                return fn(cur)
            cur.execute("BEGIN")
            try:
                return fn(cur)
            finally:
                cur.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from exc

    def data_version(self) -> int:
        """Changes whenever a transaction that changed a bucket or an account setting committed, in
        any process (``bucket_version``, bumped by meta/contract.py ``bucket_changed``): cached bucket rows
        are stale exactly when it moved. A point read on this thread's connection (microseconds)."""
        try:
            row = self._reader().execute("SELECT value FROM counters WHERE name = 'bucket_version'").fetchone()
        except sqlite3.OperationalError as exc:
            raise _translated(exc) from exc
        return row[0] if row else 0

    def share_versions(self, shared: SharedVersions, index: int) -> None:
        """Nothing to share: ``data_version`` reads the row every process writes (at once)."""

    async def offload(self, fn: Callable[[], T]) -> T:
        """Run a blocking read ``fn()`` for an async caller. SQLite reads are local page-cache reads
        (tens of microseconds), cheaper than a hop to a thread: run inline."""
        return fn()

    # -- writes ------------------------------------------------------------
    async def write(self, fn: Callable[[sqlite3.Cursor], T], *, durable: Callable[[], None] | None = None) -> T:
        """Run ``fn(cursor)`` in a write transaction; resolves once the transaction is durable.

        ``durable()``, if given, runs on the writer thread before the batch's transaction begins:
        it makes the data the unit's metadata points at durable (the ordering rule). If it fails,
        the unit fails and nothing of it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            def settle() -> None:
                if future.done():
                    return
                if error is not None:
                    future.set_exception(_translated(error))
                else:
                    future.set_result(result)

            loop.call_soon_threadsafe(settle)

        self._queue.put((fn, done, durable))
        return await future

    def write_sync(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        """Blocking variant for CLI tools and background threads."""
        event = threading.Event()
        box: dict[str, Any] = {}

        def done(result: Any, error: BaseException | None) -> None:
            box["result"], box["error"] = result, error
            event.set()

        self._queue.put((fn, done, None))
        event.wait()
        if box["error"] is not None:
            raise _translated(box["error"])
        return box["result"]

    def _writer_loop(self) -> None:
        conn = self._writer_conn
        shrunk = True
        cache_kib = self.writer_cache_kib
        while True:
            try:
                item = self._queue.get(timeout=None if shrunk else _IDLE_SHRINK_S)
            except queue.Empty:
                # Idle: give the page cache back (a burst of writes filled it; reads of other
                # threads do not use it).
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA shrink_memory")
                shrunk = True
                continue
            shrunk = False
            if item is None:
                return
            batch = [item]
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            if self.writer_cache_kib != cache_kib:
                cache_kib = self.writer_cache_kib
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
            self._run_batch(conn, batch)

    def attach_journal(self, journal: jr.Journal | None) -> None:
        """From now on every batch is journaled before it commits (meta/journal.py); None: not."""
        self.journal = journal

    def head(self) -> tuple[int, int, int, int, int]:
        """The journal head as committed: (seq, record id, gen, gap, offset)."""
        return jr.read_head(self._reader())

    def _run_batch(self, conn: sqlite3.Connection, batch: list) -> None:
        # Data first: every unit's records must be durable before its metadata can commit.
        ready = []
        for fn, done, durable in batch:
            if durable is not None:
                try:
                    durable()
                except BaseException as exc:  # noqa: BLE001 - reported to that unit's waiter only
                    done(None, exc)
                    continue
            ready.append((fn, done))
        batch = ready
        if not batch:
            return
        results: list[tuple[Any, BaseException | None]] = []
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except BaseException as exc:  # noqa: BLE001 - the database is unusable; fail every waiter
            for _, done in batch:
                done(None, exc)
            return
        statements: list[jr.Statement] = []
        for fn, _ in batch:
            cur.execute("SAVEPOINT unit")
            recorder = jr.RecordingCursor(cur)
            try:
                results.append((fn(recorder), None))
                cur.execute("RELEASE unit")
                statements += recorder.statements
            except BaseException as exc:  # noqa: BLE001 - reported to that unit's waiter only
                cur.execute("ROLLBACK TO unit")
                cur.execute("RELEASE unit")
                results.append((None, exc))
        written: tuple[int, int, int, int] | None = None
        if statements:
            try:
                written = self._journal_batch(cur, statements)
            except BaseException as exc:  # noqa: BLE001 - not journaled means not committed
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                for _, done in batch:
                    done(None, exc)
                return
        try:
            cur.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - nothing of this batch is durable
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if written is not None and self.journal is not None:
                self.journal.abort(*written)
            for _, done in batch:
                done(None, exc)
            return
        for (_, done), (result, error) in zip(batch, results, strict=True):
            done(result, error)

    def _journal_batch(self, cur: sqlite3.Cursor, statements: list[jr.Statement]
                       ) -> tuple[int, int, int, int] | None:
        """Move the head and write the batch's commit record ahead of its COMMIT (meta/journal.py).
        Returns (gen, offset, record id, time) of the record written, None when no journal is attached."""
        seq, prev, gen, _gap, offset = jr.read_head(cur)
        seq += 1
        rid = jr.new_record_id()
        if self.journal is None:  # e.g. a tool run without the drives: the next copy must come soon
            cur.execute("UPDATE counters SET value = ? WHERE name = 'journal_gap'", (seq,))
            cur.execute("UPDATE counters SET value = ? WHERE name = 'journal_seq'", (seq,))
            cur.execute("UPDATE counters SET value = ? WHERE name = 'journal_head'", (rid,))
            return None
        moves: list[jr.Statement] = [
            ("UPDATE counters SET value = ? WHERE name = 'journal_seq'", (seq,), False),
            ("UPDATE counters SET value = ? WHERE name = 'journal_head'", (rid,), False),
        ]
        for sql, params, _ in moves:
            cur.execute(sql, params)
        now = time.time_ns()
        record = jr.encode_record(jr.COMMIT, seq, rid, prev, now, jr.encode_statements(statements + moves))
        self.journal.write(gen, offset, record)
        # Where the next record goes: not part of the record (a restore starts a new generation).
        cur.execute("UPDATE counters SET value = ? WHERE name = 'journal_off'", (offset + len(record),))
        return gen, offset, rid, now

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._writer_conn.close()


def _migrate(conn: sqlite3.Connection) -> tuple[int, int]:
    """Bring the database to the newest schema version (meta/migrations/), holding the write lock:
    worker processes opening the store at once wait for each other, the first one migrates."""
    def execute(sql: str, params: tuple = ()) -> list[tuple]:
        return conn.execute(sql, params).fetchall()

    conn.execute("BEGIN IMMEDIATE")
    try:
        versions = migrations.migrate(execute, "sqlite")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return versions


def sqlite_runner(meta: Metadata) -> SqliteRunner:
    """``meta``'s runner, for what only SQLite's has (its file, its journal). Its callers run on a
    SQLite store only (config.py turns the copies and the journal off on PostgreSQL): another is a bug."""
    runner = meta.runner
    assert isinstance(runner, SqliteRunner), f"{type(runner).__name__}: this needs the SQLite backend"
    return runner


def rewrite_securely(path: Path | str, body: Callable[[sqlite3.Cursor], int]) -> int:
    """Run ``body`` in one write transaction on a connection of its own with ``secure_delete`` on (the
    bytes it frees are zeroed), and when it changed something (returns > 0), VACUUM the file (older
    free pages go too) and truncate the WAL. Returns what ``body`` returned."""
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # not a drive; not the runner: secure_delete
    try:
        con.execute("PRAGMA secure_delete=ON")
        con.execute("BEGIN IMMEDIATE")
        try:
            count = body(con.cursor())
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if count:
            try:  # secure_delete already zeroed what the rewrite freed; this also drops older free pages
                con.execute("VACUUM")
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:  # another process (a standalone reducer) is reading
                log.warning("could not VACUUM the metadata after sealing (%s): free pages may still hold "
                            "secrets from before; run `exastor serve` again with nothing else open", exc)
        return count
    finally:
        con.close()


def backup_to(db: Path | str, dest: Path | str) -> None:
    """Copy the database ``db`` into the new file ``dest`` online (one read snapshot of the WAL
    database: writers are not blocked), as a single file (journal_mode DELETE: no -wal beside it)."""
    src = sqlite3.connect(db, timeout=30.0)  # not a drive: the database in --data
    try:
        dst = sqlite3.connect(dest)  # not a drive
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()


def database_problem(path: Path | str) -> str | None:
    """None when the file is a sound SQLite database (its quick_check, opened read-only), else what is
    wrong with it."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as con:  # not a drive
            result = str(con.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.Error as exc:
        return f"not a database: {exc}"
    return None if result == "ok" else f"quick_check: {result}"


def stored_drive_paths(db: Path | str) -> list[str]:
    """The drive paths (as stored) of the database file ``db``, in id order, removed drives left out;
    read-only, before any runner opens it (fsck --restore-meta, the drive list of an offline tool).
    Empty for a store from before the drives table."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # not a drive: the database in --data
            rows = con.execute("SELECT path FROM drives WHERE state != 'removed' ORDER BY id").fetchall()
    except sqlite3.Error:
        return []  # an old store without the drives table yet
    return [str(r[0]) for r in rows]
