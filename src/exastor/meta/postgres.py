"""PostgreSQL metadata backend: many gateways on many hosts share one namespace through it.

Chosen by a URL, ``--meta postgresql://user@host/db`` (any libpq URL or option: several hosts with
``target_session_attrs=read-write`` follow a Patroni failover). The same transaction bodies as on
SQLite run here (meta/contract.py, "The metadata contract"); what differs is in this module:

* Connections come from a pool (psycopg_pool): reads and writes each borrow one for the length of
  their transaction. Every write is its own transaction; several are in flight at once, and
  PostgreSQL's own group commit shares the WAL flushes among them - no batch for one conflict to
  fail. ``durable()`` (the data the metadata points at) runs before the transaction begins.
* Isolation: writes run at REPEATABLE READ. Two transactions that write one row, or insert one
  unique key, cannot both commit; the loser fails with a serialization failure (40001), a deadlock
  (40P01), a unique (23505) or foreign-key (23503) violation and the body is re-run from the start on the committed
  state, with jittered exponential backoff, for up to RETRY_BUDGET_S. Bodies are written to be
  re-run (no effect outside the database). A COMMIT whose outcome is unknown (the connection broke
  during it) is not re-run: the caller gets errors.Unavailable.
* The bodies' ``?`` placeholders become ``%s`` (each statement text translated once, cached);
  ``nextval`` on the cursor draws from a sequence (``meta.contract.next_seq``: no hot counter row).
* Timeouts: connecting (CONNECT_TIMEOUT_S), waiting for a pooled connection (POOL_TIMEOUT_S), each
  statement (STATEMENT_TIMEOUT_MS, set per connection), idle in transaction. A database that is
  down, unreachable, restarting or out of disk gives errors.Unavailable / InsufficientStorage (503
  / 507 to clients), logged as one line, never a traceback; broken pooled connections are dropped
  and the work retried on a fresh one when nothing had been sent.
* Failover (Patroni): the URL names every node and ``target_session_attrs=read-write``, so a new
  connection finds the primary. A server that answers "read-only" (SQLSTATE 25006: a demoted
  primary, or one an operator made read-only) refused the statement, so nothing committed: the
  connection is closed, the pool drained (its other connections lead to the same server) and the
  body re-run on a fresh connection; until a primary answers, the caller gets errors.Unavailable
  (503). A dead host (power, link) sends no RST: TCP keepalives and ``tcp_user_timeout``
  (TCP_USER_TIMEOUT_MS) break such a connection within seconds instead of the kernel's ~15 minutes,
  unless the URL sets them itself. A COMMIT whose wait for the synchronous standby was cancelled
  (PostgreSQL then reports success for a commit only the old primary has) is not acknowledged
  either: errors.Unavailable, as for any COMMIT of unknown outcome.
* ``data_version()``: a local number, moved by a listener thread that hears the NOTIFY which the
  ``bucket_version`` row's trigger sends on every bucket or setting change (schema
  migrations/postgres/0001), and by this process's own such commits at once. While the listener is
  not connected it returns a new number on every call, so nothing is served from a stale cache.
  The workers of one server also share their own commits' values at once (meta/versions.py): the
  notification delay is only ever between servers.
* Reads block the calling thread for a network round trip: async callers use ``offload``.

The schema is versioned (meta/migrations/): the first process to open an older database migrates
it, under a transaction-level advisory lock, while the others wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from exastor import errors
from exastor.meta import migrations
from exastor.meta.contract import DeferredRefs, apply_deferred_refs
from exastor.meta.versions import SharedVersions

T = TypeVar("T")
log = logging.getLogger("exastor.meta.postgres")

CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_MS = 30_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
# A host that vanished (power, link, partition) answers nothing, not even a reset: after
# TCP_USER_TIMEOUT_MS of unacknowledged data, or KEEPALIVE_* of silence on an idle connection, the
# kernel breaks the connection and the pool replaces it (libpq options; a URL may set its own).
TCP_USER_TIMEOUT_MS = 8_000
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT = 4, 1, 4
# Conflicts are re-run with full-jitter exponential backoff for up to RETRY_BUDGET_S: rows every
# writer touches (the reference count of a chunk that many concurrent objects share) make
# REPEATABLE READ writers take turns, like a randomized lock; the budget stays below clients' timeouts.
MAX_ATTEMPTS = 200
RETRY_BUDGET_S = 20.0
BACKOFF_FIRST_S = 0.002
BACKOFF_MAX_S = 0.1
POOL_MAX = 16
# Rows a bucket's usage is spread over (meta/contract.py, charge): with 16 writers in flight, a writer
# finds another on its row ~6% of the time (SQLite, one writer, uses shard 0 alone). The benchmark's
# before/after (bench/meta_backends.py) sets EXASTOR_PG_USAGE_SHARDS=1: every write on one row.
USAGE_SHARDS = max(1, int(os.environ.get("EXASTOR_PG_USAGE_SHARDS", "256")))
NOTIFY_CHANNEL = "exastor_bucket_version"
BUCKET_VERSION = "bucket_version"
_MIGRATION_LOCK = 0x65786173746F72  # pg_advisory_xact_lock key of schema migrations ("exastor")

# Conflicts between concurrent transactions: the body re-runs on the committed state, where its own
# reads see the winner (a key that now exists, a bucket now gone or no longer empty) and it decides
# as it would have serially. A unique or foreign-key violation can only come from such a race:
# every body checks what it inserts or deletes against the rows it read first.
_RETRYABLE = (pgerr.SerializationFailure, pgerr.DeadlockDetected, pgerr.UniqueViolation,
              pgerr.ForeignKeyViolation)


def is_url(meta: str | None) -> bool:
    return bool(meta) and str(meta).startswith(("postgresql://", "postgres://"))


def connection_options(url: str) -> dict[str, Any]:
    """psycopg.connect's keyword arguments for ``url``: timeouts, and the TCP settings that notice a
    dead host, each unless the URL chose its own (libpq ignores them on a Unix socket)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}
    options: dict[str, Any] = {"autocommit": True}
    defaults = {"connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE_S,
                "keepalives_interval": KEEPALIVE_INTERVAL_S, "keepalives_count": KEEPALIVE_COUNT,
                "tcp_user_timeout": TCP_USER_TIMEOUT_MS}
    options.update({name: value for name, value in defaults.items() if name not in given})
    return options


def describe(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    info.pop("password", None)
    host, db, user = info.get("host", "localhost"), info.get("dbname", ""), info.get("user", "")
    return f"postgresql://{f'{user}@' if user else ''}{host}/{db}"


def store_error(exc: BaseException) -> errors.StoreError:
    """The protocol-neutral meaning of a driver failure."""
    if isinstance(exc, pgerr.ReadOnlySqlTransaction):
        return errors.Unavailable("the metadata database is read-only (a failover may be under way); retry")
    if isinstance(exc, pgerr.DiskFull):
        return errors.InsufficientStorage("the metadata database is out of disk space")
    if isinstance(exc, pgerr.QueryCanceled):
        return errors.Unavailable("the metadata database did not answer in time")
    if isinstance(exc, _RETRYABLE):
        return errors.Unavailable("too many conflicting metadata writes; retry")
    return errors.Unavailable("the metadata database is unavailable")


# --- the cursor the bodies see ---------------------------------------------------------------

_translated: dict[str, tuple[str, bool]] = {}


def _translate(sql: str) -> tuple[str, bool]:
    """``?`` -> ``%s`` (and a literal ``%`` -> ``%%``), and whether the statement moves
    bucket_version. Statement texts are few and fixed: translated once each."""
    hit = _translated.get(sql)
    if hit is None:
        if len(_translated) > 10_000:  # texts built with IN (?, ?, ...) lists vary; bound the cache
            _translated.clear()
        hit = _translated[sql] = (sql.replace("%", "%%").replace("?", "%s"), "bucket_version" in sql
                                  and sql.lstrip().upper().startswith("UPDATE"))
    return hit


@contextlib.contextmanager
def _no_nul_in_text() -> Iterator[None]:
    """A name or value with a NUL character (a bucket or key from a malformed request: ``%00``) cannot
    be a PostgreSQL text parameter; psycopg refuses it before sending. No stored name holds one, so the
    request is answered as a bad name (400), never as a database failure (500)."""
    try:
        yield
    except psycopg.DataError as exc:
        if "NUL" not in str(exc):
            raise
        raise errors.InvalidKey("names and values cannot contain a NUL (0x00) character") from exc


class PgCursor:
    """A DB-API cursor over psycopg with the bodies' ``?`` placeholders."""

    __slots__ = ("_cur", "bumped", "deferred_refs", "sent")
    usage_shards = USAGE_SHARDS  # rows a bucket's usage is spread over (meta/contract.py, charge)

    def __init__(self, cur: psycopg.Cursor) -> None:
        self._cur = cur
        self.bumped: int | None = None  # bucket_version as this transaction set it
        self.sent = False               # a statement of the body was sent
        # reference counts change at the body's end, in one fingerprint order: no deadlocks between
        # writers that share chunks (meta/contract.py, DeferredRefs)
        self.deferred_refs = DeferredRefs()

    def execute(self, sql: str, params: Any = ()) -> PgCursor:
        text, bumps = _translate(sql)
        self.sent = True
        with _no_nul_in_text():
            self._cur.execute(text, params)
        if bumps:
            self._note_version()
        return self

    def executemany(self, sql: str, seq: Any) -> PgCursor:
        text, bumps = _translate(sql)
        self.sent = True
        with _no_nul_in_text():
            self._cur.executemany(text, list(seq))
        if bumps:
            self._note_version()
        return self

    def _note_version(self) -> None:
        """The value this transaction gave bucket_version (its row is locked by us until COMMIT):
        after the commit this process's data_version moves to it at once."""
        with self._cur.connection.cursor() as side:
            row = side.execute(f"SELECT value FROM counters WHERE name = '{BUCKET_VERSION}'").fetchone()
        self.bumped = int(row[0]) if row else None

    def fetchone(self) -> tuple | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cur.fetchall()

    def __iter__(self):
        return iter(self._cur)

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def nextval(self, sequence: str) -> int:
        self.sent = True
        self._cur.execute("SELECT nextval(%s)", (sequence,))
        row = self._cur.fetchone()
        assert row is not None
        return int(row[0])


# --- the runner ------------------------------------------------------------------------------

class PostgresRunner:
    """Reads and writes on pooled connections to one PostgreSQL database."""

    paramstyle = "?"
    backend = "postgres"

    def __init__(self, url: str, *, pool_max: int = POOL_MAX, listen: bool = True,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
        self.url = url
        self.where = describe(url)
        self._closed = False
        self._kwargs = connection_options(url)
        self._pool_check_lock = threading.Lock()
        self._pool_checking = False
        self._statement_timeout_ms = int(statement_timeout_ms)
        self.schema_versions = self._migrate()
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_max, kwargs=self._kwargs,
                                    configure=self._configure, timeout=POOL_TIMEOUT_S, open=False,
                                    name="exastor-meta", reconnect_timeout=60.0)
        self._pool.open(wait=False)  # not a drive: a connection pool
        self._executor = ThreadPoolExecutor(max_workers=pool_max, thread_name_prefix="exastor-pg")
        # data_version: (moved locally or by a notification) while the listener is connected
        self._version = 0
        self._version_lock = threading.Lock()
        self._listening = False
        self._unique = itertools.count(-1, -1)
        # the other workers of this server: their own commits, at once (meta/versions.py)
        self._shared: SharedVersions | None = None
        self._shared_index = 0
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        if listen:
            self._listener = threading.Thread(target=self._listen, name="exastor-pg-listen", daemon=True)
            self._listener.start()

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, **self._kwargs)
        except psycopg.Error as exc:
            raise errors.MetadataOpenError(f"cannot connect to the metadata database {self.where}: "
                                           f"{str(exc).strip()}") from exc
        self._configure(conn)
        return conn

    def _configure(self, conn: psycopg.Connection) -> None:
        conn.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
        conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_TIMEOUT_MS}")
        conn.add_notice_handler(_note_sync_wait_cancelled)

    def _replace_connections(self) -> None:
        """Every pooled connection leads to a server that just failed or stopped being the primary:
        close the idle ones and open new ones (the URL's target_session_attrs finds the primary).
        Without a network round trip, so the calling thread is not held by a dead host; connections
        out on loan are replaced when they come back."""
        try:
            self._pool.drain()
        except PoolClosed:
            pass  # the runner is closing: nothing to replace
        except psycopg.Error as exc:  # closing a broken connection; the request still answers 503
            log.warning("metadata pool drain: %s", exc)

    def _migrate(self) -> tuple[int, int]:
        with self._connect() as conn:
            cur = PgCursor(conn.cursor())

            def execute(sql: str, params: tuple = ()) -> list[tuple]:
                cur.execute(sql, params)
                return cur.fetchall() if cur._cur.description else []

            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                    return migrations.migrate(execute, "postgres")
            except psycopg.Error as exc:
                raise errors.MetadataOpenError(f"cannot prepare the metadata database {self.where}: "
                                               f"{str(exc).strip()}") from exc

    def _attempt(self, fn: Callable[[PgCursor], T], begin: str | None, idempotent: bool) -> tuple[T, int | None]:
        """One transaction (``begin`` ... COMMIT; None: autocommit) on a pooled connection. A broken
        connection is discarded by the pool when it comes back (psycopg marks it closed)."""
        with self._pool.connection() as conn:
            cur = PgCursor(conn.cursor())
            try:
                if begin is not None:
                    conn.execute(begin)
                result = fn(cur)
                apply_deferred_refs(cur, cur.deferred_refs)
            except pgerr.ReadOnlySqlTransaction as exc:
                # The server refused the statement (a demoted primary): nothing of this transaction
                # committed. Close the connection, so the pool never lends it again, and go again.
                conn.close()
                raise _NotSent(exc, stale_primary=True) from exc
            except BaseException as exc:
                if conn.broken or conn.closed:
                    # The connection is gone (the server restarted, the network failed): the server
                    # rolled back. A read may run again; a write only if none of its statements went.
                    if isinstance(exc, psycopg.Error) and (idempotent or not cur.sent):
                        raise _NotSent(exc) from exc
                else:
                    _rollback(conn)
                raise
            if begin is not None:
                _commit_notices.sync_wait_cancelled = False
                try:
                    conn.execute("COMMIT")
                except psycopg.Error as exc:
                    if not (conn.broken or conn.closed):
                        raise  # the server refused the commit: rolled back
                    if idempotent:
                        raise _NotSent(exc) from exc
                    raise _Unknown(exc) from exc
                if _commit_notices.sync_wait_cancelled and not idempotent:
                    # Committed on this server alone, never on its synchronous standby: a failover
                    # now would lose it. Not acknowledged (the client retries the whole request).
                    conn.close()
                    raise _Unknown(psycopg.OperationalError("the synchronous standby never confirmed the commit"))
            return result, cur.bumped

    def _run(self, fn: Callable[[PgCursor], T], begin: str | None, *, write: bool) -> T:
        delay = BACKOFF_FIRST_S
        deadline = time.monotonic() + RETRY_BUDGET_S
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                result, bumped = self._attempt(fn, begin, idempotent=not write)
                if bumped is not None:
                    self._seen(bumped, own=True)
                return result
            except _NotSent as wrapped:
                if wrapped.stale_primary:
                    self._replace_connections()  # the others lead to the same read-only server
                else:
                    self._check_pool()  # the database restarted: drop every broken idle connection
                if attempt >= 3:
                    log.warning("metadata database %s unreachable: %s", self.where, str(wrapped.error).strip())
                    raise store_error(wrapped.error) from wrapped.error
            except _Unknown as wrapped:
                log.warning("metadata database %s failed during a COMMIT (outcome unknown): %s",
                            self.where, str(wrapped.error).strip())
                raise errors.Unavailable("the metadata database failed during a commit") from wrapped.error
            except _RETRYABLE as exc:
                if not write or attempt == MAX_ATTEMPTS or time.monotonic() > deadline:
                    log.warning("metadata write gave up after %d conflicting attempts: %s", attempt,
                                str(exc).strip())
                    raise store_error(exc) from exc
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, BACKOFF_MAX_S)
            except PoolTimeout as exc:
                log.warning("metadata database %s: no connection within %.0f s", self.where, POOL_TIMEOUT_S)
                raise errors.Unavailable("the metadata database is unavailable") from exc
            except (psycopg.OperationalError, psycopg.InterfaceError, pgerr.QueryCanceled,
                    pgerr.DiskFull) as exc:
                log.warning("metadata database %s: %s", self.where, str(exc).strip())
                raise store_error(exc) from exc
        raise AssertionError("unreachable")

    def _check_pool(self) -> None:
        """Drop the pool's broken idle connections, on a thread of its own and one check at a time:
        checking is a round trip on each idle connection, which against a dead host lasts until
        TCP_USER_TIMEOUT_MS - never on the caller's thread (it may be the event loop's)."""
        with self._pool_check_lock:
            if self._pool_checking or self._closed:
                return
            self._pool_checking = True

        def check() -> None:
            try:
                self._pool.check()
            except PoolClosed:
                pass  # the runner is closing: nothing to check
            except psycopg.Error as exc:  # the check itself failed: the next one retries
                log.warning("metadata pool check: %s", exc)
            finally:
                with self._pool_check_lock:
                    self._pool_checking = False

        threading.Thread(target=check, name="exastor-pg-check", daemon=True).start()

    # -- reads ------------------------------------------------------------------------------
    def read(self, fn: Callable[[PgCursor], T], *, snapshot: bool = True) -> T:
        """``fn(cursor)`` in a read-only snapshot transaction (``snapshot=False``: one statement in
        autocommit, one round trip less)."""
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if snapshot else None
        return self._run(fn, begin, write=False)

    async def offload(self, fn: Callable[[], T]) -> T:
        """Run a blocking read for an async caller on a thread: a read here is a network round trip."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- writes -----------------------------------------------------------------------------
    async def write(self, fn: Callable[[PgCursor], T], *, durable: Callable[[], None] | None = None) -> T:
        """``fn(cursor)`` in its own transaction on a pool thread; resolves once committed.
        ``durable()`` first (the ordering rule); if it fails, nothing is written."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, fn, durable)

    def write_sync(self, fn: Callable[[PgCursor], T]) -> T:
        return self._write(fn, None)

    def _write(self, fn: Callable[[PgCursor], T], durable: Callable[[], None] | None) -> T:
        if durable is not None:
            durable()
        return self._run(fn, "BEGIN ISOLATION LEVEL REPEATABLE READ", write=True)

    # -- bucket cache invalidation ----------------------------------------------------------
    def data_version(self) -> int:
        """The ``bucket_version`` row as this process last heard it: its own commits at once, other
        gateways' through their notifications. While not listening, a new number on every call."""
        if not self._listening:
            return next(self._unique)  # not hearing changes: treat every cached row as stale
        if self._shared is not None:
            return max(self._version, self._shared.highest())
        return self._version

    def share_versions(self, shared: SharedVersions, index: int) -> None:
        """Be worker ``index`` of a server whose workers share ``shared``: publish this process's
        own bucket changes there, and follow the others' without waiting for their NOTIFY."""
        self._shared, self._shared_index = shared, index

    def _seen(self, value: int, *, reset: bool = False, own: bool = False) -> None:
        """``value`` of bucket_version heard (a notification, a reconnect's read: ``reset``) or
        committed by this process (``own``): published to this server's other workers before the
        caller answers, since the next request may reach one of them. Under the lock: pool threads
        publish too, and a slot must never move backwards."""
        with self._version_lock:
            self._version = value if reset else max(self._version, value)
            if own and self._shared is not None:
                self._shared.publish(self._shared_index, value)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, **self._kwargs) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    # after LISTEN: a change committed from now on is heard, one before it is read here
                    row = conn.execute(f"SELECT value FROM counters WHERE name = '{BUCKET_VERSION}'").fetchone()
                    self._seen(int(row[0]) if row else 0, reset=True)
                    self._listening = True
                    backoff = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._seen(int(note.payload))
                        conn.execute("SELECT 1")  # notices a dead connection within a second
            except (psycopg.Error, ValueError) as exc:
                if self._listening:
                    log.warning("metadata database %s: lost the change notifications (%s); "
                                "bucket caches are off until they are back", self.where, str(exc).strip())
            finally:
                self._listening = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout=10)
        self._executor.shutdown(wait=True)
        self._pool.close(timeout=10)


def _rollback(conn: psycopg.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass  # a broken connection: the pool discards it; the server rolls the transaction back


# A COMMIT whose wait for the synchronous standby was cancelled (statement_timeout, a cancel
# request) is reported committed by PostgreSQL, with a warning, though only this server has it. The
# warning reaches the notice handler on the thread that runs the COMMIT: a flag per thread, cleared
# before each COMMIT and read after it.
_commit_notices = threading.local()


def _note_sync_wait_cancelled(notice: psycopg.errors.Diagnostic) -> None:
    if "wait for synchronous replication" in (notice.message_primary or ""):
        _commit_notices.sync_wait_cancelled = True


class _NotSent(Exception):
    """The connection failed before the unit's first statement, or the server refused the statement
    as read-only (``stale_primary``): nothing committed, safe to try another connection."""

    def __init__(self, error: BaseException, *, stale_primary: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.stale_primary = stale_primary


class _Unknown(Exception):
    """The connection failed during COMMIT: the transaction may or may not have committed."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
