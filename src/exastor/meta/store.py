"""The metadata interface: every namespace change a client can observe is one transaction here.

SQL is kept portable (SQLite now, PostgreSQL behind the same class later):
standard types, ``ON CONFLICT``, no SQLite-only functions. The runner
supplies connections, the parameter style and group commit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from typing import Any, Protocol, TypeVar

from exastor import errors
from exastor.crashpoints import crash_point
from exastor.engine import manifest as mf
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
    def read(self, fn: Callable[[Any], T], *, snapshot: bool = True) -> T: ...
    async def write(self, fn: Callable[[Any], T], *, durable: Callable[[], None] | None = None) -> T: ...
    def write_sync(self, fn: Callable[[Any], T]) -> T: ...
    def data_version(self) -> int: ...
    def close(self) -> None: ...


def _now_ns() -> int:
    return time.time_ns()


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


# --- reference counting (inside a write transaction) -------------------------

def register_chunks(cur: Any, new_chunks: Iterable[ChunkLocation]) -> None:
    """Make freshly written records known to the index. A record whose fingerprint is already
    indexed (a concurrent writer won) is simply left unreferenced for compaction."""
    rows = [(c.fp, c.segment, c.offset, c.stored_len, c.raw_len, c.codec) for c in new_chunks]
    if not rows:
        return
    segments = {r[1] for r in rows}
    for seg in segments:
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


def add_refs(cur: Any, counts: Counter[bytes]) -> None:
    if not counts:
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
    now = _now_ns()
    cur.executemany(
        "UPDATE chunks SET refs = refs - ?, "
        "dead_since_ns = CASE WHEN refs - ? <= 0 THEN ? ELSE dead_since_ns END WHERE fp = ?",
        [(n, n, now, fp) for fp, n in counts.items()],
    )


class TxCheck:
    """A conditional-write check that reads more of the transaction than the current row: ``run(cur,
    current)``. A plain check is a callable of the current row (an ObjectVersion, or a Bucket for
    bucket updates); both raise to abort the write. Blob leases are checked this way, so the lease
    row is read in the same transaction that makes the change (``run_check``)."""

    def run(self, cur: Any, current: Any) -> None:
        raise NotImplementedError


ObjectCheck = Callable[[ObjectVersion | None], None] | TxCheck


def run_check(cur: Any, check: Callable[[Any], None] | TxCheck | None, current: Any) -> None:
    """Evaluate a write's check inside its transaction (the one mechanism for conditional writes)."""
    if check is None:
        return
    if isinstance(check, TxCheck):
        check.run(cur, current)
    else:
        check(current)


def _crashing(tx: Callable[[Any], T], op: str) -> Callable[[Any], T]:
    """``tx``, then the crash point ``<op>.before_commit`` (exastor/crashpoints.py): on the metadata
    writer thread, inside the batch's transaction, after the data it points at was made durable."""
    def run(cur: Any) -> T:
        result = tx(cur)
        crash_point(op + ".before_commit")
        return result

    return run


def next_seq(cur: Any) -> int:
    cur.execute("UPDATE counters SET value = value + 1 WHERE name = 'seq'")
    if cur.rowcount == 0:
        cur.execute("INSERT INTO counters (name, value) VALUES ('seq', 1)")
        return 1
    cur.execute("SELECT value FROM counters WHERE name = 'seq'")
    return int(cur.fetchone()[0])


def user_context(access_key: str) -> str:
    """What a user's sealed secret is bound to: it opens only in the row of this access key."""
    return f"users.secret_key:{access_key}"


class Metadata:
    """Typed operations over a runner. One method = one transaction."""

    def __init__(self, runner: Runner, sealer: Sealer | None = None) -> None:
        self.runner = runner
        # Users' secret keys are sealed in the database (meta/sealing.py); locked without a key.
        self.sealer = sealer or Sealer(None)

    def close(self) -> None:
        self.runner.close()

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

        self.runner.write_sync(tx)

    def remove_user(self, name: str) -> bool:
        def tx(cur: Any) -> bool:
            cur.execute("DELETE FROM users WHERE name = ?", (name,))
            return cur.rowcount > 0

        return self.runner.write_sync(tx)

    def list_users(self, *, secrets: bool = True) -> list[User]:
        """Every user; with ``secrets=False`` their secret keys are left empty (and no key is needed)."""
        def q(cur: Any) -> list[Any]:
            cur.execute("SELECT name, access_key, secret_key, created_ns FROM users ORDER BY name")
            return cur.fetchall()

        return [User(name, access, self.sealer.open(secret, user_context(access)) if secrets else "", created)
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
        return User(name, access, self.sealer.open(secret, user_context(access)), created)

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
            run_check(cur, check, ObjectVersion.from_row(row) if row else None)

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
            return [Upload(*r[:5], json.loads(r[5])) for r in cur.fetchall()]

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
            cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")
            seg = int(cur.fetchone()[0])
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

        self.runner.write_sync(tx)

    def segments(self) -> list[tuple[int, str, int]]:
        def q(cur: Any) -> list[tuple[int, str, int]]:
            cur.execute("SELECT id, state, size FROM segments ORDER BY id")
            return [tuple(r) for r in cur.fetchall()]

        return self.runner.read(q)


# --- transaction bodies shared by several operations ----------------------------

BUCKET_COLUMNS = "name, owner, created_ns, region, versioning, attrs"


def _bucket_row(row: tuple) -> Bucket:
    return Bucket(*row[:5], json.loads(row[5]))


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


def put_version(cur: Any, obj: ObjectVersion, new_chunks: list[ChunkLocation],
                check: ObjectCheck | None,
                make_version_id: Callable[[], str], *, refs_held: bool = False) -> ObjectVersion:
    """Insert ``obj`` as the latest version. ``refs_held``: its manifest's references are already
    counted by rows that hand them over in the same transaction (a multipart upload's chosen parts),
    so they are not added again."""
    versioning = _bucket_versioning(cur, obj.bucket)
    cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1",
                (obj.bucket, obj.key))
    row = cur.fetchone()
    current = ObjectVersion.from_row(row) if row else None
    run_check(cur, check, current)
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
            for counts in mf.ref_count_windows(old[-1]):
                drop_refs(cur, counts)
            cur.execute("DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = 'null'",
                        (obj.bucket, obj.key))
    cur.execute("UPDATE objects SET is_latest = 0 WHERE bucket = ? AND key = ? AND is_latest = 1",
                (obj.bucket, obj.key))
    obj.seq = next_seq(cur)
    obj.is_latest = True
    cur.execute(f"INSERT INTO objects ({OBJECT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (obj.bucket, obj.key, obj.version_id, obj.seq, 1, int(obj.delete_marker), obj.size, obj.etag,
                 obj.mtime_ns, obj.owner, _dumps(obj.attrs), obj.manifest))
    return obj


def _remove_version(cur: Any, victim: ObjectVersion) -> None:
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
    return Upload(*row[:5], json.loads(row[5])) if row else None


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
