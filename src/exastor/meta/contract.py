"""The metadata contract: every namespace change a client can observe is one transaction here.

Backends. A *runner* supplies transactions: meta/sqlite.py (embedded default: WAL, one writer
thread with group commit, the metadata journal) and meta/postgres.py (many gateways: psycopg 3, a
connection pool, each write its own transaction). Both run the same bodies: functions of a DB-API
cursor with ``?`` placeholders and portable SQL (standard types, ``ON CONFLICT``, no backend-only
functions). Where the backends must differ, the difference is in the backend, not in a body: ids
from sequences on PostgreSQL and from the single writer's counter row on SQLite (``next_seq``,
``next_segment_id``), ``?`` translated to the driver's style, driver errors translated to
``errors.Unavailable`` / ``errors.InsufficientStorage``. Schemas and their versions:
meta/migrations/. The tests of this contract, run against both: tests/meta/.

The runner interface (``Runner`` below):
  * ``read(fn, snapshot=True)``: ``fn(cur)`` on a consistent snapshot (``snapshot=False``: one
    statement, no transaction). Blocking; an async caller wraps it in ``await runner.offload(...)``
    (``Metadata.aread``), which runs it on a thread where a read is a network round trip.
  * ``await write(fn, durable=None)``, ``write_sync(fn)``: ``fn(cur)`` in one write transaction,
    resolved once it is durable. ``durable()`` runs first and makes the data the metadata points at
    durable (the ordering rule: data before the metadata commit); if it fails nothing commits.
  * ``data_version()``: a number that changes whenever a bucket row or an account setting changed
    (``bucket_changed``), in any process or gateway; caches of those rows live until it moves.
  * ``close()``.

Guarantees, per operation (one method of ``Metadata``, or one body passed to ``write``):
  * Atomic and durable: all of its changes or none; acknowledged only once committed.
  * Isolated: on SQLite, transactions run one at a time (serializable). On PostgreSQL, each runs
    at REPEATABLE READ (a snapshot); two transactions that write the same row, or insert the same
    unique key, cannot both commit: the later one fails with a serialization failure, a deadlock
    or a unique violation and is re-run from the start on the committed state. The invariants the
    bodies rely on are constraints of the database itself, on both: one latest version per key
    (unique index ``objects_one_latest``), unique upload ids (primary key), reference counts never
    negative (``CHECK (refs >= 0)``); on PostgreSQL also foreign keys object/upload -> bucket and
    part -> upload, so a concurrent delete cannot orphan a row. Hence, for concurrent writers:
    one key written by two writers ends with exactly one latest version; of writers racing with
    conditions (If-Match / If-None-Match, Blob leases: checks run *inside* the transaction, on the
    row the transaction then writes) exactly one wins and the others fail the check; multipart
    completion racing an abort: one of them (the other finds no upload); reference counts equal
    what fsck recomputes from the manifests (``MANIFEST_QUERIES``), whatever the interleaving.
    Snapshot isolation lets two transactions that read each other's rows but write different ones
    both commit (write skew); where a decision rests on a row the transaction does not write, both
    sides also write one shared row (Blob leases: ``blob.claim_lease_decision``). Reference counts
    change at the end of a body in one fingerprint order (``DeferredRefs``), so writers sharing
    chunks never deadlock.
  * Retries: a write body may run more than once (PostgreSQL re-runs it after a conflict, for up to
    ``postgres.RETRY_BUDGET_S``, then ``errors.Unavailable``). So a body has no effect outside
    the database except through its return value: it may compute (times, random version ids) but
    must not append to outside lists, send, or write files; ``durable()`` runs once, before the
    first attempt. A write whose COMMIT outcome is unknown (the connection broke during it) is
    never re-run: the caller gets ``errors.Unavailable`` and the ordering rule keeps the data safe
    either way. Reads are re-run freely.
  * Not guaranteed across gateways: bucket caches follow ``data_version``, which on PostgreSQL moves
    when a gateway hears the commit's notification (milliseconds; the workers of one gateway share
    their own commits at once, meta/versions.py, so a policy put through a gateway is enforced by
    all of its workers on the next request); every decision made inside a
    write transaction reads the committed row itself. The namespace caches only buckets that exist,
    so a bucket created through one gateway is served by every other at once; one deleted through
    another gateway may, for those milliseconds, still answer reads there (an empty listing,
    NoSuchKey), never a write.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from exastor import errors
from exastor.crashpoints import crash_point
from exastor.meta import manifest as mf
from exastor.meta.records import (
    OBJECT_COLUMNS,
    OBJECT_LIST_COLUMNS,
    Bucket,
    ChunkLocation,
    ObjectVersion,
    Part,
    Upload,
    User,
)
from exastor.meta.sealing import Sealer
from exastor.meta.versions import SharedVersions

T = TypeVar("T")
KEY_MAX = "\U0010ffff"  # sorts after every character a key can contain after a given prefix

# Every table column that holds a manifest, i.e. every holder of chunk references. fsck recomputes
# reference counts from exactly these; a new holder (snapshots, staged blocks...) must be listed here.
MANIFEST_QUERIES: list[str] = [
    "SELECT manifest FROM objects WHERE manifest IS NOT NULL",
    "SELECT manifest FROM parts WHERE manifest IS NOT NULL",
    # delta records' references to their base chunks (services/reducer.py)
    "SELECT manifest FROM reduced_chunks WHERE manifest IS NOT NULL",
    # the Blob front-end's own holders: uncommitted blocks, snapshots, soft-deleted blobs (meta/blob.py)
    "SELECT manifest FROM blob_blocks WHERE manifest IS NOT NULL",
    "SELECT manifest FROM blob_snapshots WHERE manifest IS NOT NULL",
    "SELECT manifest FROM blob_deleted WHERE manifest IS NOT NULL",
]


class Runner(Protocol):
    backend: str          # "sqlite" or "postgres"
    paramstyle: str       # what the bodies use: "?"

    def read(self, fn: Callable[[Any], T], *, snapshot: bool = True) -> T: ...
    async def write(self, fn: Callable[[Any], T], *, durable: Callable[[], None] | None = None) -> T: ...
    def write_sync(self, fn: Callable[[Any], T]) -> T: ...
    async def offload(self, fn: Callable[[], T]) -> T: ...
    def data_version(self) -> int: ...
    def share_versions(self, shared: SharedVersions, index: int) -> None: ...
    def close(self) -> None: ...


def _now_ns() -> int:
    return time.time_ns()


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


# --- reference counting (inside a write transaction) -------------------------

def register_chunks(cur: Any, new_chunks: Iterable[ChunkLocation]) -> None:
    """Make freshly written records known to the index. A record whose fingerprint is already
    indexed (a concurrent writer won) is simply left unreferenced for compaction."""
    rows = sorted((c.fp, c.segment, c.offset, c.stored_len, c.raw_len, c.codec) for c in new_chunks)
    if not rows:
        return
    segments = {r[1] for r in rows}
    for seg in sorted(segments):
        cur.execute("SELECT state FROM segments WHERE id = ?", (seg,))
        got = cur.fetchone()
        if got is None or got[0] == "deleted":
            # Compaction removed the segment between our write and this commit; retryable.
            raise errors.Unavailable("segment was compacted during the write; retry")
    cur.executemany(
        'INSERT INTO chunks (fp, segment, "offset", stored_len, raw_len, codec, refs, dead_since_ns) '
        "VALUES (?, ?, ?, ?, ?, ?, 0, NULL) ON CONFLICT (fp) DO NOTHING",
        rows,
    )


class DeferredRefs:
    """The reference-count changes of one transaction, applied at its end in one pass in fingerprint
    order (``apply_deferred_refs``). Where several writers run at once (PostgreSQL), a body that adds
    references (its new version) and then drops others (the version it replaces) would otherwise lock
    chunk rows in two sorted runs, not one order: two such writers sharing chunks each hold a row the
    other waits for - a deadlock, re-run and met again under contention until the write gives up.
    The runner gives such a cursor a ``deferred_refs`` (meta/postgres.py); SQLite has one writer."""

    __slots__ = ("added", "dropped")

    def __init__(self) -> None:
        self.added: Counter[bytes] = Counter()
        self.dropped: Counter[bytes] = Counter()

    def clear(self) -> None:
        self.added.clear()
        self.dropped.clear()


def apply_deferred_refs(cur: Any, deferred: DeferredRefs) -> None:
    """Apply ``deferred`` (see DeferredRefs): one UPDATE per fingerprint whose net change is not zero,
    in fingerprint order. An added reference to a chunk that is gone fails as add_refs does."""
    fps = sorted(set(deferred.added) | set(deferred.dropped))
    rows = [(fp, deferred.added[fp] - deferred.dropped[fp]) for fp in fps]
    rows = [(fp, delta) for fp, delta in rows if delta]
    deferred.clear()
    if not rows:
        return
    now = _now_ns()
    cur.executemany(
        "UPDATE chunks SET refs = refs + ?, dead_since_ns = CASE WHEN ? > 0 THEN NULL "
        "WHEN refs + ? <= 0 THEN ? ELSE dead_since_ns END WHERE fp = ?",
        [(delta, delta, delta, now, fp) for fp, delta in rows],
    )
    if cur.rowcount != len(rows):  # some row is missing: an added reference's chunk must not be
        for fp, delta in rows:
            if delta > 0:
                cur.execute("SELECT 1 FROM chunks WHERE fp = ?", (fp,))
                if cur.fetchone() is None:
                    raise errors.Unavailable("a referenced chunk was reclaimed concurrently; retry")


def add_refs(cur: Any, counts: Counter[bytes]) -> None:
    if not counts:
        return
    deferred: DeferredRefs | None = getattr(cur, "deferred_refs", None)
    if deferred is not None:
        deferred.added.update(counts)
        return
    cur.executemany(
        "UPDATE chunks SET refs = refs + ?, dead_since_ns = NULL WHERE fp = ?",
        [(n, fp) for fp, n in counts.items()],
    )
    # executemany's rowcount is the total across statements: every fingerprint must have matched.
    if cur.rowcount != len(counts):
        raise errors.Unavailable("a referenced chunk was reclaimed concurrently; retry")


def drop_refs(cur: Any, counts: Counter[bytes]) -> None:
    if not counts:
        return
    deferred: DeferredRefs | None = getattr(cur, "deferred_refs", None)
    if deferred is not None:
        deferred.dropped.update(counts)
        return
    now = _now_ns()
    cur.executemany(
        "UPDATE chunks SET refs = refs - ?, "
        "dead_since_ns = CASE WHEN refs - ? <= 0 THEN ? ELSE dead_since_ns END WHERE fp = ?",
        [(n, n, now, fp) for fp, n in sorted(counts.items())],  # one order for every writer: no deadlocks
    )


class TxCheck:
    """A conditional-write check that reads more of the transaction than the current row: ``run(cur,
    current)``. A plain check is a callable of the current row (an ObjectVersion, or a Bucket for
    bucket updates); both raise to abort the write. Blob leases are checked this way, so the lease
    row is read in the same transaction that makes the change (``run_check``).

    ``precheck`` is the same check against the committed state before a body is read (a cheap early
    failure, ``Metadata.precheck``); a check that answers differently when the state changed between
    the two (S3's 409 ConditionalRequestConflict) remembers what it saw there."""

    def run(self, cur: Any, current: Any) -> None:
        raise NotImplementedError

    def precheck(self, cur: Any, current: Any) -> None:
        self.run(cur, current)


ObjectCheck = Callable[[ObjectVersion | None], None] | TxCheck


def run_check(cur: Any, check: Callable[[Any], None] | TxCheck | None, current: Any, *,
              early: bool = False) -> None:
    """Evaluate a write's check inside its transaction (the one mechanism for conditional writes);
    ``early``: the precheck outside any write (see TxCheck.precheck)."""
    if check is None:
        return
    if isinstance(check, TxCheck):
        if early:
            check.precheck(cur, current)
        else:
            check.run(cur, current)
    else:
        check(current)


class AllOf(TxCheck):
    """Several checks of one write, in order (the first to raise decides)."""

    def __init__(self, checks: Iterable[Callable[[Any], None] | TxCheck]) -> None:
        self.checks = list(checks)

    def run(self, cur: Any, current: Any) -> None:
        for check in self.checks:
            run_check(cur, check, current)

    def precheck(self, cur: Any, current: Any) -> None:
        for check in self.checks:
            run_check(cur, check, current, early=True)


def all_of(*checks: Callable[[Any], None] | TxCheck | None) -> Callable[[Any], None] | TxCheck | None:
    """The checks that are given, as one check (None when there are none)."""
    present = [c for c in checks if c is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else AllOf(present)


def _crashing(tx: Callable[[Any], T], op: str) -> Callable[[Any], T]:
    """``tx``, then the crash point ``<op>.before_commit`` (exastor/crashpoints.py): on the metadata
    writer thread, inside the batch's transaction, after the data it points at was made durable."""
    def run(cur: Any) -> T:
        result = tx(cur)
        crash_point(op + ".before_commit")
        return result

    return run


def next_seq(cur: Any) -> int:
    """The next object write order number (``objects.seq``). A backend with sequences (its cursor
    has ``nextval``: PostgreSQL) draws one, so concurrent writers share no row; SQLite has one writer
    at a time and keeps a counter row (its journal replays the same statements)."""
    nextval = getattr(cur, "nextval", None)
    if nextval is not None:
        return int(nextval("object_seq"))
    cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
    if cur.rowcount == 0:
        cur.execute("INSERT INTO counters (name, value) VALUES ('seq', 1)")
        return 1
    cur.execute("SELECT value FROM counters WHERE name = 'seq'")
    return int(cur.fetchone()[0])


def next_segment_id(cur: Any) -> int:
    """A new segment id: a sequence where the backend has them, else MAX(id) + 1 (one writer)."""
    nextval = getattr(cur, "nextval", None)
    if nextval is not None:
        return int(nextval("segments_id_seq"))
    cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")
    return int(cur.fetchone()[0])


def bucket_changed(cur: Any) -> None:
    """Every transaction that changes a bucket row, an account setting or a user calls this: gateways
    cache those rows until ``bucket_version`` moves (``Runner.data_version``), so a removed user's
    key or a Deny policy is refused on the next request. Rare writes only (never per object), so the
    row is not a hot spot; on PostgreSQL its update notifies every gateway."""
    cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'bucket_version'")


def user_context(access_key: str) -> str:
    """What a user's sealed secret is bound to: it opens only in the row of this access key."""
    return f"users.secret_key:{access_key}"


class Metadata:
    """Typed operations over a runner. One method = one transaction."""

    def __init__(self, runner: Runner, sealer: Sealer | None = None) -> None:
        self.runner = runner
        # Users' secret keys are sealed in the database (meta/sealing.py); locked without a key.
        self.sealer = sealer or Sealer(None)
        # The data keys opened with it (engine/encryption.py ``of``), made on first use.
        self.data_keys: object | None = None

    def close(self) -> None:
        self.runner.close()

    async def aread(self, read: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``await meta.aread(meta.get_object, bucket, key)``: any read of this class from async code,
        without blocking the event loop where a read is a network round trip (``Runner.offload``)."""
        return await self.runner.offload(lambda: read(*args, **kwargs))

    # --- users -----------------------------------------------------------------
    def add_user(self, user: User) -> None:
        sealed = self.sealer.seal(user.secret_key, user_context(user.access_key))

        def tx(cur: Any) -> None:
            cur.execute("SELECT 1 FROM users WHERE name = ?", (user.name,))
            if cur.fetchone():
                raise errors.InvalidArgument(f"user {user.name!r} already exists")
            cur.execute(
                "INSERT INTO users (name, access_key, secret_key, created_ns) VALUES (?, ?, ?, ?)",
                (user.name, user.access_key, sealed, user.created_ns),
            )
            bucket_changed(cur)  # an access key a gateway cached as unknown works at once

        self.runner.write_sync(tx)

    def remove_user(self, name: str, *, transfer_to: str | None = None) -> list[str] | None:
        """Remove a user. None when there is no such user; else the buckets handed to ``transfer_to``.

        Refused (InvalidArgument) while the user owns buckets and ``transfer_to`` is not given: a
        bucket whose owner is gone is reachable by nobody, and a later user of the same name would
        inherit it. With ``transfer_to``, the buckets and the objects and uploads in them change
        owner in the same transaction that removes the user."""

        def tx(cur: Any) -> list[str] | None:
            cur.execute("SELECT 1 FROM users WHERE name = ?", (name,))
            if cur.fetchone() is None:
                return None
            cur.execute("SELECT name FROM buckets WHERE owner = ? ORDER BY name", (name,))
            owned = [r[0] for r in cur.fetchall()]
            if owned and transfer_to is None:
                shown = ", ".join(owned[:10]) + (f" and {len(owned) - 10} more" if len(owned) > 10 else "")
                raise errors.InvalidArgument(f"user {name!r} owns {len(owned)} bucket(s) ({shown}): delete them, "
                                             "or hand them over with --transfer-to USER")
            if transfer_to is not None:
                if transfer_to == name:
                    raise errors.InvalidArgument("--transfer-to must name another user")
                cur.execute("SELECT 1 FROM users WHERE name = ?", (transfer_to,))
                if cur.fetchone() is None:
                    raise errors.InvalidArgument(f"no user {transfer_to!r} to transfer the buckets to")
                for bucket in owned:
                    cur.execute("UPDATE buckets SET owner = ? WHERE name = ?", (transfer_to, bucket))
                    cur.execute("UPDATE objects SET owner = ? WHERE bucket = ? AND owner = ?",
                                (transfer_to, bucket, name))
                    cur.execute("UPDATE uploads SET owner = ? WHERE bucket = ? AND owner = ?",
                                (transfer_to, bucket, name))
            cur.execute("DELETE FROM users WHERE name = ?", (name,))
            cur.execute("DELETE FROM user_emails WHERE name = ?", (name,))
            cur.execute("DELETE FROM quotas WHERE scope = 'user' AND name = ?", (name,))
            cur.execute("DELETE FROM qos_limits WHERE scope = 'user' AND name = ?", (name,))
            bucket_changed(cur)  # the key is refused on the next request; buckets handed over change owner
            return owned

        return self.runner.write_sync(tx)

    # --- quotas ------------------------------------------------------------------
    def set_quota(self, scope: str, name: str, max_bytes: int | None, max_objects: int | None) -> None:
        """Set (replace) the quota of a bucket or a user. Existing data above it stays; only writes that
        would grow past it are refused."""
        assert scope in ("bucket", "user"), scope

        def tx(cur: Any) -> None:
            if scope == "bucket":
                cur.execute("SELECT 1 FROM buckets WHERE name = ?", (name,))
                if cur.fetchone() is None:
                    raise errors.BucketNotFound(name)
            else:
                cur.execute("SELECT 1 FROM users WHERE name = ?", (name,))
                if cur.fetchone() is None:
                    raise errors.InvalidArgument(f"no user {name!r}")
            cur.execute("INSERT INTO quotas (scope, name, max_bytes, max_objects) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (scope, name) DO UPDATE SET max_bytes = excluded.max_bytes, "
                        "max_objects = excluded.max_objects", (scope, name, max_bytes, max_objects))

        self.runner.write_sync(tx)

    def clear_quota(self, scope: str, name: str) -> bool:
        def tx(cur: Any) -> bool:
            cur.execute("DELETE FROM quotas WHERE scope = ? AND name = ?", (scope, name))
            return cur.rowcount > 0

        return self.runner.write_sync(tx)

    def quotas(self) -> list[dict[str, Any]]:
        """Every quota with what it bounds now: scope, name, max_bytes, max_objects, used_bytes, used_objects."""
        def q(cur: Any) -> list[dict[str, Any]]:
            cur.execute("SELECT scope, name, max_bytes, max_objects FROM quotas ORDER BY scope, name")
            out = []
            for scope, name, max_bytes, max_objects in cur.fetchall():
                used_bytes, used_objects = _usage_readonly(cur, scope, name)
                out.append({"scope": scope, "name": name, "max_bytes": max_bytes, "max_objects": max_objects,
                            "used_bytes": used_bytes, "used_objects": used_objects})
            return out

        return self.runner.read(q)

    # --- health and drives ------------------------------------------------------------
    def ping(self) -> None:
        """One trivial read outside any snapshot (gateway/health.py): returns when the database can
        serve a query now, raises (the backend's StoreError) when it cannot."""
        self.runner.read(lambda cur: cur.execute("SELECT 1 FROM drives LIMIT 1").fetchall(), snapshot=False)

    def drive_count(self) -> int:
        """How many drives the store has ever registered (removed ones included): none means a new store."""
        return int(self.runner.read(lambda cur: cur.execute("SELECT COUNT(*) FROM drives").fetchone()[0]))

    # --- QoS limits (http/qos.py) -------------------------------------------------
    def set_qos(self, scope: str, name: str, requests_per_s: float | None, requests_burst: float | None,
                bytes_per_s: float | None, bytes_burst: float | None) -> None:
        assert scope in ("bucket", "user"), scope

        def tx(cur: Any) -> None:
            table, column = ("buckets", "name") if scope == "bucket" else ("users", "name")
            cur.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (name,))
            if cur.fetchone() is None:
                raise errors.InvalidArgument(f"no {'bucket' if scope == 'bucket' else 'user'} {name!r}")
            cur.execute("INSERT INTO qos_limits (scope, name, requests_per_s, requests_burst, bytes_per_s, bytes_burst) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, name) DO UPDATE SET "
                        "requests_per_s = excluded.requests_per_s, requests_burst = excluded.requests_burst, "
                        "bytes_per_s = excluded.bytes_per_s, bytes_burst = excluded.bytes_burst",
                        (scope, name, requests_per_s, requests_burst, bytes_per_s, bytes_burst))

        self.runner.write_sync(tx)

    def qos_limits(self) -> list[tuple[str, str, float | None, float | None, float | None, float | None]]:
        """Every QoS limit row: (scope, name, requests/s, request burst, bytes/s, byte burst). Read
        outside a snapshot: the front-ends reload it every few seconds."""
        def q(cur: Any) -> list[tuple]:
            cur.execute("SELECT scope, name, requests_per_s, requests_burst, bytes_per_s, bytes_burst FROM qos_limits")
            return [tuple(r) for r in cur.fetchall()]

        return self.runner.read(q, snapshot=False)

    def clear_qos(self, scope: str, name: str) -> bool:
        def tx(cur: Any) -> bool:
            cur.execute("DELETE FROM qos_limits WHERE scope = ? AND name = ?", (scope, name))
            return cur.rowcount > 0

        return self.runner.write_sync(tx)

    def bucket_usage(self) -> dict[str, tuple[int, int]]:
        """(logical bytes, object versions) per bucket, as the write path keeps them."""
        def q(cur: Any) -> dict[str, tuple[int, int]]:
            cur.execute("SELECT name FROM buckets")
            return {name: _usage_readonly(cur, "bucket", name) for (name,) in cur.fetchall()}

        return self.runner.read(q)

    def set_user_keys(self, name: str, access_key: str, secret_key: str) -> None:
        """Replace a user's key pair (the admin's, when `serve` is given new ones): one transaction, and
        the user keeps what it owns. The secret is sealed like add_user's."""
        sealed = self.sealer.seal(secret_key, user_context(access_key))

        def tx(cur: Any) -> None:
            cur.execute("UPDATE users SET access_key = ?, secret_key = ? WHERE name = ?",
                        (access_key, sealed, name))
            if cur.rowcount != 1:
                raise errors.InvalidArgument(f"no user {name!r}")
            bucket_changed(cur)  # the old key is refused on the next request

        self.runner.write_sync(tx)

    def set_user_email(self, name: str, email: str | None) -> None:
        """Give a user an e-mail address (None: take it away); one user per address."""
        def tx(cur: Any) -> None:
            cur.execute("SELECT 1 FROM users WHERE name = ?", (name,))
            if cur.fetchone() is None:
                raise errors.InvalidArgument(f"no user {name!r}")
            cur.execute("DELETE FROM user_emails WHERE name = ?", (name,))
            if email is None:
                return
            cur.execute("SELECT name FROM user_emails WHERE email = ?", (email.lower(),))
            row = cur.fetchone()
            if row is not None:
                raise errors.InvalidArgument(f"{email} is already the address of user {row[0]!r}")
            cur.execute("INSERT INTO user_emails (email, name) VALUES (?, ?)", (email.lower(), name))

        self.runner.write_sync(tx)

    def user_by_email(self, email: str) -> str | None:
        """The user an e-mail address belongs to."""
        def q(cur: Any) -> str | None:
            cur.execute("SELECT name FROM user_emails WHERE email = ?", (email.strip().lower(),))
            row = cur.fetchone()
            return row[0] if row else None

        return self.runner.read(q, snapshot=False)

    def list_users(self, *, secrets: bool = True) -> list[User]:
        """Every user; with ``secrets=False`` their secret keys are left empty (and no key is needed)."""
        def q(cur: Any) -> list[Any]:
            cur.execute("SELECT name, access_key, secret_key, created_ns FROM users ORDER BY name")
            return cur.fetchall()

        return [User(name, access, self.sealer.open(secret, user_context(access)) if secrets else "", created)  # not a drive: a sealed value
                for name, access, secret, created in self.runner.read(q)]

    def user_by_access_key(self, access_key: str) -> User | None:
        def q(cur: Any) -> Any:
            cur.execute("SELECT name, access_key, secret_key, created_ns FROM users WHERE access_key = ?",
                        (access_key,))
            return cur.fetchone()

        row = self.runner.read(q, snapshot=False)
        if row is None:
            return None
        name, access, secret, created = row
        return User(name, access, self.sealer.open(secret, user_context(access)), created)  # not a drive: a sealed value

    # --- buckets ---------------------------------------------------------------
    async def create_bucket(self, bucket: Bucket) -> None:
        def tx(cur: Any) -> None:
            cur.execute("SELECT owner FROM buckets WHERE name = ?", (bucket.name,))
            row = cur.fetchone()
            if row:
                raise errors.BucketExists(bucket.name, owned_by_caller=row[0] == bucket.owner)
            cur.execute(
                "INSERT INTO buckets (name, owner, created_ns, region, versioning, attrs) VALUES (?, ?, ?, ?, ?, ?)",
                (bucket.name, bucket.owner, bucket.created_ns, bucket.region, bucket.versioning,
                 _dumps(bucket.attrs)),
            )
            bucket_changed(cur)

        await self.runner.write(tx)

    def get_bucket(self, name: str) -> Bucket | None:
        def q(cur: Any) -> Bucket | None:
            return _get_bucket(cur, name)

        return self.runner.read(q, snapshot=False)

    def list_buckets(self, owner: str | None = None) -> list[Bucket]:
        def q(cur: Any) -> list[Bucket]:
            if owner is None:
                cur.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets ORDER BY name")
            else:
                cur.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE owner = ? ORDER BY name", (owner,))
            return [_bucket_row(r) for r in cur.fetchall()]

        return self.runner.read(q)

    async def delete_bucket(self, name: str) -> None:
        def tx(cur: Any) -> None:
            cur.execute("SELECT 1 FROM buckets WHERE name = ?", (name,))
            if not cur.fetchone():
                raise errors.BucketNotFound(name)
            cur.execute("SELECT 1 FROM objects WHERE bucket = ? LIMIT 1", (name,))
            if cur.fetchone():
                raise errors.BucketNotEmpty(name)
            # Pending multipart uploads die with the bucket (as in S3); release their chunks.
            cur.execute("SELECT upload_id FROM uploads WHERE bucket = ?", (name,))
            for (upload_id,) in cur.fetchall():
                _delete_upload(cur, upload_id)
            cur.execute("DELETE FROM buckets WHERE name = ?", (name,))
            forget_bucket(cur, name)
            bucket_changed(cur)

        await self.runner.write(tx)

    async def update_bucket(self, name: str, *, versioning: str | None = None,
                            attrs_patch: dict[str, Any] | None = None,
                            check: Callable[[Bucket], None] | TxCheck | None = None) -> Bucket:
        """Set versioning and/or merge attributes (a value of None removes that attribute).
        ``check(bucket)`` runs inside the transaction and may raise to abort."""

        def tx(cur: Any) -> Bucket:
            bucket = _get_bucket(cur, name)
            if bucket is None:
                raise errors.BucketNotFound(name)
            run_check(cur, check, bucket)
            if versioning is not None:
                bucket.versioning = versioning
            for k, v in (attrs_patch or {}).items():
                if v is None:
                    bucket.attrs.pop(k, None)
                else:
                    bucket.attrs[k] = v
            cur.execute("UPDATE buckets SET versioning = ?, attrs = ? WHERE name = ?",
                        (bucket.versioning, _dumps(bucket.attrs), name))
            bucket_changed(cur)
            return bucket

        return await self.runner.write(tx)

    # --- objects ---------------------------------------------------------------
    def get_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectVersion | None:
        def q(cur: Any) -> ObjectVersion | None:
            if version_id is None:
                cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                            (bucket, key))
            else:
                cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                            (bucket, key, version_id))
            row = cur.fetchone()
            return ObjectVersion.from_row(row) if row else None

        return self.runner.read(q, snapshot=False)

    def precheck(self, bucket: str, key: str, check: ObjectCheck) -> None:
        """Run a write's check against the committed state, outside any write: a cheap early
        failure (before a body is read). Only the check inside the write's transaction decides."""

        def q(cur: Any) -> None:
            cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                        (bucket, key))
            row = cur.fetchone()
            run_check(cur, check, ObjectVersion.from_row(row) if row else None, early=True)

        self.runner.read(q, snapshot=False)

    async def commit(self, tx: Callable[[Any], T], op: str, *,
                     durable: Callable[[], None] | None = None) -> T:
        """``tx`` as one durable write between the crash points ``<op>.before_commit`` (inside the
        transaction, data already durable) and ``<op>.committed`` (durable, caller not answered)."""
        result = await self.runner.write(_crashing(tx, op), durable=durable)
        crash_point(op + ".committed")
        return result

    async def put_object(
        self,
        obj: ObjectVersion,
        *,
        new_chunks: Iterable[ChunkLocation] = (),
        check: ObjectCheck | None = None,
        make_version_id: Callable[[], str],
        durable: Callable[[], None] | None = None,
    ) -> ObjectVersion:
        """Commit a new object version atomically. ``check(current_latest)`` runs inside the
        transaction (conditional PUT) and may raise to abort. ``durable()`` makes the object's
        new records durable first (see the runner)."""
        new_chunks = list(new_chunks)

        def tx(cur: Any) -> ObjectVersion:
            return put_version(cur, obj, new_chunks, check, make_version_id)

        return await self.commit(tx, "put", durable=durable)

    async def delete_object(self, bucket: str, key: str, version_id: str | None, *,
                            make_version_id: Callable[[], str], owner: str,
                            check: ObjectCheck | None = None,
                            ) -> tuple[ObjectVersion | None, bool]:
        """Delete per the bucket's versioning state. Returns (affected version or new delete
        marker, whether a delete marker was created)."""

        def tx(cur: Any) -> tuple[ObjectVersion | None, bool]:
            versioning = _bucket_versioning(cur, bucket)
            if version_id is not None:
                cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                            (bucket, key, version_id))
                row = cur.fetchone()
                if not row:
                    run_check(cur, check, None)  # a conditional delete of a missing version fails
                    return None, False
                victim = ObjectVersion.from_row(row)
                run_check(cur, check, victim)
                _remove_version(cur, victim)
                return victim, False
            cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                        (bucket, key))
            row = cur.fetchone()
            current = ObjectVersion.from_row(row) if row else None
            run_check(cur, check, current)
            if versioning == "":
                if current is None:
                    return None, False
                _remove_version(cur, current)
                return current, False
            marker = ObjectVersion(bucket, key, "", 0, True, True, 0, "", _now_ns(), owner, {}, None)
            return put_version(cur, marker, [], None, make_version_id), True

        return await self.commit(tx, "delete")

    async def update_object_attrs(self, bucket: str, key: str, version_id: str | None,
                                  patch: dict[str, Any], *, check: ObjectCheck | None = None) -> ObjectVersion:
        """Merge attributes into a version (None removes one). ``check(version)`` runs inside the
        transaction, after the version is found, and may raise to abort."""

        def tx(cur: Any) -> ObjectVersion:
            if version_id is None:
                cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                            (bucket, key))
            else:
                cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                            (bucket, key, version_id))
            row = cur.fetchone()
            if not row:
                raise errors.VersionNotFound(key) if version_id else errors.ObjectNotFound(key)
            obj = ObjectVersion.from_row(row)
            if obj.delete_marker:
                raise errors.MethodNotAllowed("delete marker", delete_marker=obj)
            run_check(cur, check, obj)
            for k, v in patch.items():
                if v is None:
                    obj.attrs.pop(k, None)
                else:
                    obj.attrs[k] = v
            cur.execute("UPDATE objects SET attrs = ? WHERE bucket = ? AND key = ? AND version_id = ?",
                        (_dumps(obj.attrs), bucket, key, obj.version_id))
            return obj

        return await self.runner.write(tx)

    def list_latest(self, bucket: str, prefix: str, after: str | None, limit: int) -> list[ObjectVersion]:
        """Live latest versions with key > after (or >= prefix), in key order, without manifests."""

        def q(cur: Any) -> list[ObjectVersion]:
            low = after if after is not None and after >= prefix else None
            if low is not None:
                cur.execute(f"SELECT {OBJECT_LIST_COLUMNS} FROM objects WHERE bucket = ? AND is_latest = 1 "
                            "AND delete_marker = 0 AND key > ? AND key < ? ORDER BY key LIMIT ?",
                            (bucket, low, prefix + KEY_MAX, limit))
            else:
                cur.execute(f"SELECT {OBJECT_LIST_COLUMNS} FROM objects WHERE bucket = ? AND is_latest = 1 "
                            "AND delete_marker = 0 AND key >= ? AND key < ? ORDER BY key LIMIT ?",
                            (bucket, prefix, prefix + KEY_MAX, limit))
            return [ObjectVersion.from_row(r) for r in cur.fetchall()]

        return self.runner.read(q)

    def list_versions(self, bucket: str, prefix: str, after_key: str | None, after_seq: int | None,
                      limit: int) -> list[ObjectVersion]:
        """All versions (and delete markers), key ascending then newest first, after a marker."""

        def q(cur: Any) -> list[ObjectVersion]:
            hi = prefix + KEY_MAX
            if after_key is not None and after_seq is not None:
                cur.execute(f"SELECT {OBJECT_LIST_COLUMNS} FROM objects WHERE bucket = ? AND key >= ? AND key < ? "
                            "AND (key > ? OR (key = ? AND seq < ?)) ORDER BY key, seq DESC LIMIT ?",
                            (bucket, prefix, hi, after_key, after_key, after_seq, limit))
            elif after_key is not None:
                cur.execute(f"SELECT {OBJECT_LIST_COLUMNS} FROM objects WHERE bucket = ? AND key >= ? AND key < ? "
                            "AND key > ? ORDER BY key, seq DESC LIMIT ?", (bucket, prefix, hi, after_key, limit))
            else:
                cur.execute(f"SELECT {OBJECT_LIST_COLUMNS} FROM objects WHERE bucket = ? AND key >= ? AND key < ? "
                            "ORDER BY key, seq DESC LIMIT ?", (bucket, prefix, hi, limit))
            return [ObjectVersion.from_row(r) for r in cur.fetchall()]

        return self.runner.read(q)

    # --- multipart -------------------------------------------------------------
    async def create_upload(self, upload: Upload) -> None:
        def tx(cur: Any) -> None:
            _bucket_versioning(cur, upload.bucket)
            cur.execute("INSERT INTO uploads (upload_id, bucket, key, initiated_ns, owner, attrs) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (upload.upload_id, upload.bucket, upload.key, upload.initiated_ns, upload.owner,
                         _dumps(upload.attrs)))

        await self.runner.write(tx)

    def get_upload(self, upload_id: str) -> Upload | None:
        def q(cur: Any) -> Upload | None:
            return _get_upload(cur, upload_id)

        return self.runner.read(q)

    async def put_part(self, part: Part, new_chunks: Iterable[ChunkLocation],
                       durable: Callable[[], None] | None = None) -> None:
        new_chunks = list(new_chunks)

        def tx(cur: Any) -> None:
            if _get_upload(cur, part.upload_id) is None:
                raise errors.UploadNotFound(part.upload_id)
            register_chunks(cur, new_chunks)
            add_refs(cur, mf.ref_counts(part.manifest))
            cur.execute("SELECT manifest FROM parts WHERE upload_id = ? AND part_number = ?",
                        (part.upload_id, part.part_number))
            old = cur.fetchone()
            if old:
                drop_refs(cur, mf.ref_counts(old[0]))
                cur.execute("DELETE FROM parts WHERE upload_id = ? AND part_number = ?",
                            (part.upload_id, part.part_number))
            cur.execute("INSERT INTO parts (upload_id, part_number, size, etag, mtime_ns, attrs, manifest) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (part.upload_id, part.part_number, part.size, part.etag, part.mtime_ns,
                         _dumps(part.attrs), part.manifest))

        await self.commit(tx, "part", durable=durable)

    def list_parts(self, upload_id: str, after: int, limit: int, *, with_manifest: bool = False) -> list[Part]:
        def q(cur: Any) -> list[Part]:
            return _list_parts(cur, upload_id, after, limit, with_manifest)

        return self.runner.read(q)

    def list_uploads(self, bucket: str, prefix: str, after_key: str | None, after_id: str | None,
                     limit: int) -> list[Upload]:
        def q(cur: Any) -> list[Upload]:
            hi = prefix + KEY_MAX
            cols = "upload_id, bucket, key, initiated_ns, owner, attrs"
            if after_key is not None:
                cur.execute(f"SELECT {cols} FROM uploads WHERE bucket = ? AND key >= ? AND key < ? "
                            "AND (key > ? OR (key = ? AND upload_id > ?)) ORDER BY key, upload_id LIMIT ?",
                            (bucket, prefix, hi, after_key, after_key, after_id or "", limit))
            else:
                cur.execute(f"SELECT {cols} FROM uploads WHERE bucket = ? AND key >= ? AND key < ? "
                            "ORDER BY key, upload_id LIMIT ?", (bucket, prefix, hi, limit))
            return [Upload(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in cur.fetchall()]

        return self.runner.read(q)

    async def abort_upload(self, upload_id: str) -> None:
        def tx(cur: Any) -> None:
            if _get_upload(cur, upload_id) is None:
                raise errors.UploadNotFound(upload_id)
            _delete_upload(cur, upload_id)

        await self.runner.write(tx)

    async def complete_upload(
        self,
        upload_id: str,
        assemble: Callable[[Upload, dict[int, Part]], tuple[ObjectVersion, list[int]]],
        *,
        check: ObjectCheck | None = None,
        make_version_id: Callable[[], str],
    ) -> ObjectVersion:
        """``assemble(upload, parts)`` validates the client's part list and builds the object, whose
        manifest is the chosen parts' manifests end to end; it runs inside the transaction and
        returns the object and the chosen part numbers.

        The chosen parts hand their chunk references to the object (same entries, so the counts do
        not change); only the parts left out release theirs. Counting the object's references up
        and the parts' down again would be two updates per chunk, 320,000 for a 10 GiB upload, on
        the writer thread every other commit waits for."""

        def tx(cur: Any) -> ObjectVersion:
            upload = _get_upload(cur, upload_id)
            if upload is None:
                raise errors.UploadNotFound(upload_id)
            parts = {p.part_number: p for p in _list_parts(cur, upload_id, 0, 1_000_000, True)}
            obj, chosen = assemble(upload, parts)
            assert len(obj.manifest or b"") == sum(len(parts[n].manifest or b"") for n in chosen), \
                "a multipart object's manifest must be its chosen parts' manifests"
            committed = put_version(cur, obj, [], check, make_version_id, refs_held=True)
            _delete_upload(cur, upload_id, handed_over=set(chosen))
            return committed

        return await self.commit(tx, "multipart")

    # --- chunks and segments ---------------------------------------------------
    def lookup_chunks(self, fps: list[bytes]) -> dict[bytes, ChunkLocation]:
        def q(cur: Any) -> dict[bytes, ChunkLocation]:
            found: dict[bytes, ChunkLocation] = {}
            for i in range(0, len(fps), 500):
                batch = fps[i:i + 500]
                marks = ",".join("?" * len(batch))
                cur.execute('SELECT fp, segment, "offset", stored_len, raw_len, codec FROM chunks '
                            f"WHERE fp IN ({marks})", batch)
                for row in cur.fetchall():
                    found[bytes(row[0])] = ChunkLocation(bytes(row[0]), *row[1:])
            return found

        return self.runner.read(q, snapshot=len(fps) > 500)

    def new_segment_sync(self) -> int:
        def tx(cur: Any) -> int:
            seg = next_segment_id(cur)
            cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, 'open', 0, ?)",
                        (seg, _now_ns()))
            return seg

        return self.runner.write_sync(tx)

    def set_segment_state_sync(self, seg: int, state: str, size: int | None = None) -> None:
        def tx(cur: Any) -> None:
            if size is None:
                cur.execute("UPDATE segments SET state = ? WHERE id = ?", (state, seg))
            else:
                cur.execute("UPDATE segments SET state = ?, size = ? WHERE id = ?", (state, size, seg))
            if state != "open":  # sealed or deleted: nobody writes it again (meta/leases.py)
                cur.execute("DELETE FROM segment_leases WHERE segment = ?", (seg,))

        self.runner.write_sync(tx)

    def segments(self) -> list[tuple[int, str, int]]:
        def q(cur: Any) -> list[tuple[int, str, int]]:
            cur.execute("SELECT id, state, size FROM segments ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]

        return self.runner.read(q)


# --- transaction bodies shared by several operations ----------------------------

def forget_bucket(cur: Any, name: str) -> None:
    """A deleted bucket's usage row and quota go with it (a new bucket of that name starts afresh)."""
    cur.execute("DELETE FROM bucket_usage WHERE bucket = ?", (name,))
    cur.execute("DELETE FROM quotas WHERE scope = 'bucket' AND name = ?", (name,))
    cur.execute("DELETE FROM qos_limits WHERE scope = 'bucket' AND name = ?", (name,))


BUCKET_COLUMNS = "name, owner, created_ns, region, versioning, attrs"


def _bucket_row(row: tuple) -> Bucket:
    return Bucket(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))


def _get_bucket(cur: Any, name: str) -> Bucket | None:
    cur.execute(f"SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = ?", (name,))
    row = cur.fetchone()
    return _bucket_row(row) if row else None


def _bucket_versioning(cur: Any, bucket: str) -> str:
    cur.execute("SELECT versioning FROM buckets WHERE name = ?", (bucket,))
    row = cur.fetchone()
    if not row:
        raise errors.BucketNotFound(bucket)
    return row[0]


# --- usage and quotas (inside write transactions) --------------------------------

def ensure_usage(cur: Any, bucket: str) -> None:
    """Make sure the bucket's usage rows exist (shard 0 computed from its objects once, e.g. after an
    upgrade). Call before changing the bucket's versions in the transaction."""
    cur.execute("SELECT 1 FROM bucket_usage WHERE bucket = ? AND shard = 0", (bucket,))
    if cur.fetchone() is None:
        cur.execute("INSERT INTO bucket_usage (bucket, bytes, objects) SELECT ?, COALESCE(SUM(size), 0), COUNT(*) "
                    "FROM objects WHERE bucket = ? AND delete_marker = 0", (bucket, bucket))


def quotas_for(cur: Any, bucket: str) -> list[tuple[str, str, int | None, int | None]]:
    """(scope, name, max bytes, max objects) of the quotas that bound writes into ``bucket``."""
    cur.execute("SELECT scope, name, max_bytes, max_objects FROM quotas WHERE (scope = 'bucket' AND name = ?) "
                "OR (scope = 'user' AND name = (SELECT owner FROM buckets WHERE name = ?)) ORDER BY scope",
                (bucket, bucket))
    return [tuple(r) for r in cur.fetchall()]


def usage_of(cur: Any, scope: str, name: str) -> tuple[int, int]:
    """(logical bytes, object versions) a bucket holds, or all of a user's buckets together."""
    if scope == "bucket":
        ensure_usage(cur, name)
        cur.execute("SELECT SUM(bytes), SUM(objects) FROM bucket_usage WHERE bucket = ?", (name,))
        got = cur.fetchone()
        return int(got[0]), int(got[1])
    cur.execute("SELECT name FROM buckets WHERE owner = ?", (name,))
    for (bucket,) in cur.fetchall():
        ensure_usage(cur, bucket)
    cur.execute("SELECT COALESCE(SUM(u.bytes), 0), COALESCE(SUM(u.objects), 0) FROM bucket_usage u "
                "JOIN buckets b ON b.name = u.bucket WHERE b.owner = ?", (name,))
    got = cur.fetchone()
    return int(got[0]), int(got[1])


def _usage_readonly(cur: Any, scope: str, name: str) -> tuple[int, int]:
    """usage_of without writing: a bucket without a usage row yet is summed from its objects."""
    buckets = [name]
    if scope == "user":
        cur.execute("SELECT name FROM buckets WHERE owner = ?", (name,))
        buckets = [r[0] for r in cur.fetchall()]
    total_bytes = total_objects = 0
    for bucket in buckets:
        cur.execute("SELECT SUM(bytes), SUM(objects) FROM bucket_usage WHERE bucket = ?", (bucket,))
        row = cur.fetchone()
        if row is None or row[0] is None:
            cur.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM objects WHERE bucket = ? AND delete_marker = 0",
                        (bucket,))
            row = cur.fetchone()
        total_bytes, total_objects = total_bytes + int(row[0]), total_objects + int(row[1])
    return total_bytes, total_objects


def check_quotas(cur: Any, bucket: str, add_bytes: int, add_objects: int) -> bool:
    """Raise QuotaExceeded if growing ``bucket`` by this much passes a quota. Only growth is checked:
    an overwrite with a smaller object or a delete always goes through. Inside the write transaction,
    so concurrent writers are serialised (charge: they all update shard 0) and none can overshoot.
    Returns whether any quota bounds this growth."""
    if add_bytes <= 0 and add_objects <= 0:
        return False
    bounds = quotas_for(cur, bucket)
    for scope, name, max_bytes, max_objects in bounds:
        used_bytes, used_objects = usage_of(cur, scope, name)
        if add_bytes > 0 and max_bytes is not None and used_bytes + add_bytes > max_bytes:
            raise errors.QuotaExceeded(f"the {scope} quota of {name!r} ({max_bytes:,} bytes) would be exceeded: "
                                       f"{used_bytes:,} used, {add_bytes:,} more asked", scope=scope, name=name)
        if add_objects > 0 and max_objects is not None and used_objects + add_objects > max_objects:
            raise errors.QuotaExceeded(f"the {scope} quota of {name!r} ({max_objects:,} objects) would be exceeded",
                                       scope=scope, name=name)
    return bool(bounds)


def charge(cur: Any, bucket: str, add_bytes: int, add_objects: int) -> None:
    """Check the quotas for growth, then record the change in one of the bucket's usage rows.

    A bucket's usage is the sum of its rows. On a backend with concurrent writers (the cursor's
    ``usage_shards`` > 1: PostgreSQL) a change without a quota to check goes to a row chosen at
    random, so concurrent PUTs into one bucket do not all update one row (under REPEATABLE READ they
    would fail and re-run in turn). A change a quota bounds goes to shard 0, as every such change
    does: two writers that both checked the sum then conflict on that row, and the loser re-runs on
    the winner's usage, so no quota is overshot."""
    bounded = check_quotas(cur, bucket, add_bytes, add_objects)
    if add_bytes or add_objects:
        shards = getattr(cur, "usage_shards", 1)
        shard = 0 if bounded or shards <= 1 else random.randrange(shards)
        if shard == 0:
            cur.execute("UPDATE bucket_usage SET bytes = bytes + ?, objects = objects + ? WHERE bucket = ? AND shard = 0",
                        (add_bytes, add_objects, bucket))
            assert cur.rowcount == 1, f"usage row of {bucket} missing: ensure_usage first"
        else:
            cur.execute("INSERT INTO bucket_usage (bucket, shard, bytes, objects) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (bucket, shard) DO UPDATE SET bytes = bucket_usage.bytes + excluded.bytes, "
                        "objects = bucket_usage.objects + excluded.objects", (bucket, shard, add_bytes, add_objects))


def version_usage(size: int, delete_marker: bool | int) -> tuple[int, int]:
    """What one version row counts for: its bytes and one object, or nothing for a delete marker."""
    return (0, 0) if delete_marker else (int(size), 1)


def put_version(cur: Any, obj: ObjectVersion, new_chunks: list[ChunkLocation],
                check: ObjectCheck | None,
                make_version_id: Callable[[], str], *, refs_held: bool = False) -> ObjectVersion:
    """Insert ``obj`` as the latest version. ``refs_held``: its manifest's references are already
    counted by rows that hand them over in the same transaction (a multipart upload's chosen parts),
    so they are not added again."""
    versioning = _bucket_versioning(cur, obj.bucket)
    ensure_usage(cur, obj.bucket)
    cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                (obj.bucket, obj.key))
    row = cur.fetchone()
    current = ObjectVersion.from_row(row) if row else None
    run_check(cur, check, current)
    add_bytes, add_objects = version_usage(obj.size, obj.delete_marker)
    register_chunks(cur, new_chunks)
    if not refs_held:
        for counts in mf.ref_count_windows(obj.manifest):
            add_refs(cur, counts)
    obj.version_id = make_version_id() if versioning == "Enabled" else "null"
    if obj.version_id == "null":
        cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND version_id = 'null'",
                    (obj.bucket, obj.key))
        old = cur.fetchone()
        if old:
            old_bytes, old_objects = version_usage(old[6], old[5])
            add_bytes, add_objects = add_bytes - old_bytes, add_objects - old_objects
            for counts in mf.ref_count_windows(old[-1]):
                drop_refs(cur, counts)
            cur.execute("DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = 'null'",
                        (obj.bucket, obj.key))
    cur.execute("UPDATE objects SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1",
                (obj.bucket, obj.key))
    charge(cur, obj.bucket, add_bytes, add_objects)
    obj.seq = next_seq(cur)
    obj.is_latest = True
    cur.execute(f"INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (obj.bucket, obj.key, obj.version_id, obj.seq, 1, int(obj.delete_marker), obj.size, obj.etag,
                 obj.mtime_ns, obj.owner, _dumps(obj.attrs), obj.manifest))
    return obj


def _remove_version(cur: Any, victim: ObjectVersion) -> None:
    ensure_usage(cur, victim.bucket)
    charge(cur, victim.bucket, *(-n for n in version_usage(victim.size, victim.delete_marker)))
    for counts in mf.ref_count_windows(victim.manifest):
        drop_refs(cur, counts)
    cur.execute("DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                (victim.bucket, victim.key, victim.version_id))
    if victim.is_latest:
        cur.execute("SELECT version_id FROM objects WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1",
                    (victim.bucket, victim.key))
        row = cur.fetchone()
        if row:
            cur.execute("UPDATE objects SET is_latest = 1 WHERE bucket = ? AND key = ? AND version_id = ?",
                        (victim.bucket, victim.key, row[0]))


def _get_upload(cur: Any, upload_id: str) -> Upload | None:
    cur.execute("SELECT upload_id, bucket, key, initiated_ns, owner, attrs FROM uploads WHERE upload_id = ?",
                (upload_id,))
    row = cur.fetchone()
    return Upload(row[0], row[1], row[2], row[3], row[4], json.loads(row[5])) if row else None


def _list_parts(cur: Any, upload_id: str, after: int, limit: int, with_manifest: bool) -> list[Part]:
    cols = "upload_id, part_number, size, etag, mtime_ns, attrs, " + ("manifest" if with_manifest else "NULL")
    cur.execute(f"SELECT {cols} FROM parts WHERE upload_id = ? AND part_number > ? ORDER BY part_number LIMIT ?",
                (upload_id, after, limit))
    return [Part(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in cur.fetchall()]


def _delete_upload(cur: Any, upload_id: str, handed_over: Collection[int] = ()) -> None:
    """Remove an upload and its parts, releasing the references of every part except those
    ``handed_over`` to the completed object."""
    cur.execute("SELECT part_number, manifest FROM parts WHERE upload_id = ?", (upload_id,))
    for number, manifest in cur.fetchall():  # part by part: one Counter of a 10 GiB upload is ~25 MiB
        if number in handed_over:
            continue
        for counts in mf.ref_count_windows(manifest):
            drop_refs(cur, counts)
    cur.execute("DELETE FROM parts WHERE upload_id = ?", (upload_id,))
    cur.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
