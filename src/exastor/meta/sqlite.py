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
import queue
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from exastor import errors

T = TypeVar("T")

_MAX_BATCH = 256
# Page cache per connection, in KiB. Every thread that reads has its own connection, and each
# cache fills with whatever pages that thread touched and keeps them: a 10 GiB object has
# 160,000 chunks with random fingerprints, and with 64 MiB caches its GET grew a worker by
# ~8 MiB per GiB read. The pages are in the OS page cache anyway (a miss is one pread), so
# readers keep only the hot upper levels of the B-trees; the writer keeps more, for the leaves a
# batch dirties, and empties its cache when idle.
READER_CACHE_KIB = 2048
WRITER_CACHE_KIB = 8192
_IDLE_SHRINK_S = 2.0  # the writer empties its cache after this long without work


def _connect(path: Path, cache_kib: int = READER_CACHE_KIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit survives power loss once acknowledged. Group commit amortises the fsync.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    return conn


# Columns added to existing tables after their first release: (table, column, definition).
# CREATE TABLE IF NOT EXISTS leaves an older table as it was, so these are added here.
_ADDED_COLUMNS = [("shards", "gen", "BIGINT NOT NULL DEFAULT 0")]


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, definition in _ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def store_error(exc: sqlite3.OperationalError) -> errors.StoreError:
    """The protocol-neutral meaning of a database failure: a full disk (nothing was committed),
    or a transient condition the client should retry."""
    if "full" in str(exc):
        return errors.InsufficientStorage("the metadata disk is full")
    return errors.Unavailable("metadata database busy or failing")


class SqliteRunner:
    """Runs read functions on per-thread connections and write functions in batched transactions."""

    paramstyle = "?"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        schema = resources.files("exastor.meta").joinpath("schema.sql").read_text()
        try:
            writer = _connect(self.path, WRITER_CACHE_KIB)
            writer.executescript(schema)
            _migrate(writer)
        except sqlite3.OperationalError:
            raise  # locked, no permission, no such directory: the message says which
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            raise errors.MetadataUnreadable(f"{self.path}: {exc}") from exc
        self._writer_conn = writer
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
        conn = self._reader()
        cur = conn.cursor()
        if not snapshot:
            return fn(cur)
        cur.execute("BEGIN")
        try:
            return fn(cur)
        finally:
            cur.execute("COMMIT")

    def data_version(self) -> int:
        """Changes whenever any other connection (this process's writer, or another process)
        commits: a free way to know whether cached rows may be stale."""
        return self._reader().execute("PRAGMA data_version").fetchone()[0]

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
                    future.set_exception(error)
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
            raise box["error"]
        return box["result"]

    def _writer_loop(self) -> None:
        conn = self._writer_conn
        shrunk = True
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
            self._run_batch(conn, batch)

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list) -> None:
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
        for fn, _ in batch:
            cur.execute("SAVEPOINT unit")
            try:
                results.append((fn(cur), None))
                cur.execute("RELEASE unit")
            except BaseException as exc:  # noqa: BLE001 - reported to that unit's waiter only
                cur.execute("ROLLBACK TO unit")
                cur.execute("RELEASE unit")
                results.append((None, exc))
        try:
            cur.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - nothing of this batch is durable
            try:
                cur.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for _, done in batch:
                done(None, exc)
            return
        for (_, done), (result, error) in zip(batch, results, strict=True):
            done(result, error)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._writer_conn.close()
