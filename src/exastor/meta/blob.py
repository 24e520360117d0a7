"""SQL for the Azure Blob-only state: uncommitted blocks, snapshots, soft-deleted blobs, leases,
account settings (tables at the end of meta/migrations/*/0001_initial.sql).

Functions taking ``cur`` are the pieces of a transaction: they run inside a write opened here (or
by another module of meta/), so a blob change and its chunk reference counts commit together.
Every manifest stored here holds references: inserting adds them, deleting drops them. Above meta/
only the named operations at the end are called (reads, settings, and the Blob writes: blocks, block
list, append, seal, properties, snapshots, delete/undelete, Delete Container, the lease state
machine), each one transaction.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exastor import errors
from exastor.meta import manifest as mf
from exastor.meta.contract import (
    KEY_MAX,
    Metadata,
    ObjectCheck,
    TxCheck,
    _get_bucket,
    add_refs,
    bucket_changed,
    charge,
    drop_refs,
    ensure_usage,
    forget_bucket,
    put_version,
    register_chunks,
    run_check,
    version_usage,
)
from exastor.meta.records import OBJECT_COLUMNS, Bucket, ChunkLocation, ObjectVersion
from exastor.meta.sealing import Sealer, is_sealed

MAX_BLOCKS = 50_000  # committed blocks of a blob, and blocks of one Put Block List, as in Azure
NS = 10**9


class BlobStateError(errors.StoreError):
    """A Blob-specific state conflict; ``info['code']`` is the Azure error code."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code, code=code)


def _dumps(d: dict[str, Any]) -> str:
    return json.dumps(d, separators=(",", ":"), sort_keys=True)


@dataclass(slots=True)
class Block:
    block_id: str
    size: int
    md5: str
    created_ns: int
    manifest: bytes | None = None


@dataclass(slots=True)
class Snapshot:
    bucket: str
    key: str
    snapshot: str
    size: int
    etag: str
    mtime_ns: int
    attrs: dict[str, Any]
    manifest: bytes | None = None

    def as_version(self) -> ObjectVersion:
        return ObjectVersion(self.bucket, self.key, "null", 0, False, False, self.size, self.etag,
                             self.mtime_ns, "", self.attrs, self.manifest)


@dataclass(slots=True)
class Lease:
    lease_id: str
    duration: int
    expires_ns: int | None
    state: str
    break_ns: int | None


# --- objects (read inside a transaction) ---------------------------------------

def latest(cur: Any, bucket: str, key: str) -> ObjectVersion | None:
    cur.execute(f"SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ? AND key = ? AND is_latest = 1 "
                "AND delete_marker = 0", (bucket, key))
    row = cur.fetchone()
    return ObjectVersion.from_row(row) if row else None


def get_bucket(cur: Any, bucket: str) -> Bucket | None:
    return _get_bucket(cur, bucket)


def update_latest(cur: Any, obj: ObjectVersion) -> None:
    """Store a version's changed attributes, ETag and modification time (its bytes are unchanged)."""
    cur.execute("UPDATE objects SET attrs = ?, etag = ?, mtime_ns = ? WHERE bucket = ? AND key = ? AND version_id = ?",
                (_dumps(obj.attrs), obj.etag, obj.mtime_ns, obj.bucket, obj.key, obj.version_id))


def set_attrs(cur: Any, obj: ObjectVersion) -> None:
    """Store a version's changed attributes only (Seal Append Blob: its ETag and time stay)."""
    cur.execute("UPDATE objects SET attrs = ? WHERE bucket = ? AND key = ? AND version_id = ?",
                (_dumps(obj.attrs), obj.bucket, obj.key, obj.version_id))


def bucket_exists(cur: Any, bucket: str) -> bool:
    cur.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,))
    return cur.fetchone() is not None


def remove_latest(cur: Any, obj: ObjectVersion, *, keep_refs: bool = False) -> None:
    """Remove every version row of an unversioned blob (Blob has no versions of its own)."""
    ensure_usage(cur, obj.bucket)
    charge(cur, obj.bucket, *(-n for n in version_usage(obj.size, obj.delete_marker)))
    if not keep_refs:
        drop_refs(cur, mf.ref_counts(obj.manifest))
    cur.execute("DELETE FROM objects WHERE bucket = ? AND key = ? AND version_id = ?",
                (obj.bucket, obj.key, obj.version_id))
    cur.execute("SELECT version_id FROM objects WHERE bucket = ? AND key = ? ORDER BY seq DESC LIMIT 1",
                (obj.bucket, obj.key))
    row = cur.fetchone()
    if row:
        cur.execute("UPDATE objects SET is_latest = 1 WHERE bucket = ? AND key = ? AND version_id = ?",
                    (obj.bucket, obj.key, row[0]))


# --- uncommitted blocks --------------------------------------------------------

def put_block(cur: Any, bucket: str, key: str, block: Block, new_chunks: list[ChunkLocation]) -> None:
    register_chunks(cur, new_chunks)
    add_refs(cur, mf.ref_counts(block.manifest))
    cur.execute("SELECT manifest FROM blob_blocks WHERE bucket = ? AND key = ? AND block_id = ?",
                (bucket, key, block.block_id))
    old = cur.fetchone()
    if old:
        drop_refs(cur, mf.ref_counts(old[0]))
        cur.execute("DELETE FROM blob_blocks WHERE bucket = ? AND key = ? AND block_id = ?",
                    (bucket, key, block.block_id))
    cur.execute("INSERT INTO blob_blocks (bucket, key, block_id, size, md5, created_ns, manifest) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bucket, key, block.block_id, block.size, block.md5, block.created_ns, block.manifest))


def blocks(cur: Any, bucket: str, key: str, *, with_manifest: bool = False) -> list[Block]:
    cols = "block_id, size, md5, created_ns, " + ("manifest" if with_manifest else "NULL")
    cur.execute(f"SELECT {cols} FROM blob_blocks WHERE bucket = ? AND key = ? ORDER BY created_ns, block_id",
                (bucket, key))
    return [Block(*r) for r in cur.fetchall()]


def drop_blocks(cur: Any, bucket: str, key: str | None = None) -> None:
    """Discard the uncommitted blocks of one blob (or of a whole container)."""
    if key is None:
        cur.execute("SELECT manifest FROM blob_blocks WHERE bucket = ?", (bucket,))
    else:
        cur.execute("SELECT manifest FROM blob_blocks WHERE bucket = ? AND key = ?", (bucket, key))
    total: Counter[bytes] = Counter()
    for (manifest,) in cur.fetchall():
        total.update(mf.ref_counts(manifest))
    drop_refs(cur, total)
    if key is None:
        cur.execute("DELETE FROM blob_blocks WHERE bucket = ?", (bucket,))
    else:
        cur.execute("DELETE FROM blob_blocks WHERE bucket = ? AND key = ?", (bucket, key))


def purge_blocks_before(cur: Any, cutoff_ns: int) -> int:
    """Azure discards uncommitted blocks a week after they were staged."""
    cur.execute("SELECT bucket, key, block_id, manifest FROM blob_blocks WHERE created_ns < ?", (cutoff_ns,))
    rows = cur.fetchall()
    total: Counter[bytes] = Counter()
    for *_, manifest in rows:
        total.update(mf.ref_counts(manifest))
    drop_refs(cur, total)
    cur.executemany("DELETE FROM blob_blocks WHERE bucket = ? AND key = ? AND block_id = ?",
                    [(r[0], r[1], r[2]) for r in rows])
    return len(rows)


def keys_with_blocks(cur: Any, bucket: str, prefix: str) -> list[tuple[str, int, int]]:
    """(key, number of blocks, newest block time) for blobs with uncommitted blocks."""
    cur.execute("SELECT key, COUNT(*), MAX(created_ns) FROM blob_blocks WHERE bucket = ? AND key >= ? AND key < ? "
                "GROUP BY key ORDER BY key", (bucket, prefix, prefix + KEY_MAX))
    return [tuple(r) for r in cur.fetchall()]


# --- snapshots -----------------------------------------------------------------

_SNAP_COLS = "bucket, key, snapshot, size, etag, mtime_ns, attrs, manifest"


def _snap(row: tuple) -> Snapshot:
    return Snapshot(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7])


def add_snapshot(cur: Any, snap: Snapshot) -> None:
    add_refs(cur, mf.ref_counts(snap.manifest))
    cur.execute(f"INSERT INTO blob_snapshots ({_SNAP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (snap.bucket, snap.key, snap.snapshot, snap.size, snap.etag, snap.mtime_ns, _dumps(snap.attrs),
                 snap.manifest))


def get_snapshot(cur: Any, bucket: str, key: str, snapshot: str) -> Snapshot | None:
    cur.execute(f"SELECT {_SNAP_COLS} FROM blob_snapshots WHERE bucket = ? AND key = ? AND snapshot = ?",
                (bucket, key, snapshot))
    row = cur.fetchone()
    return _snap(row) if row else None


def snapshots(cur: Any, bucket: str, key: str | None = None, prefix: str = "", *,
              with_manifest: bool = False) -> list[Snapshot]:
    cols = _SNAP_COLS if with_manifest else _SNAP_COLS.replace("manifest", "NULL")
    if key is not None:
        cur.execute(f"SELECT {cols} FROM blob_snapshots WHERE bucket = ? AND key = ? ORDER BY snapshot",
                    (bucket, key))
    else:
        cur.execute(f"SELECT {cols} FROM blob_snapshots WHERE bucket = ? AND key >= ? AND key < ? "
                    "ORDER BY key, snapshot", (bucket, prefix, prefix + KEY_MAX))
    return [_snap(r) for r in cur.fetchall()]


def remove_snapshot(cur: Any, snap: Snapshot, *, keep_refs: bool = False) -> None:
    if not keep_refs:
        drop_refs(cur, mf.ref_counts(snap.manifest))
    cur.execute("DELETE FROM blob_snapshots WHERE bucket = ? AND key = ? AND snapshot = ?",
                (snap.bucket, snap.key, snap.snapshot))


def update_snapshot_attrs(cur: Any, snap: Snapshot) -> None:
    cur.execute("UPDATE blob_snapshots SET attrs = ? WHERE bucket = ? AND key = ? AND snapshot = ?",
                (_dumps(snap.attrs), snap.bucket, snap.key, snap.snapshot))


# --- soft delete ---------------------------------------------------------------

def soft_delete(cur: Any, snap: Snapshot, now_ns: int, purge_ns: int) -> None:
    """Keep a deleted blob (snapshot '') or snapshot restorable. The caller has removed the live row
    with ``keep_refs=True``: its references move here unchanged. An older deleted copy is replaced."""
    cur.execute("SELECT manifest FROM blob_deleted WHERE bucket = ? AND key = ? AND snapshot = ?",
                (snap.bucket, snap.key, snap.snapshot))
    old = cur.fetchone()
    if old:
        drop_refs(cur, mf.ref_counts(old[0]))
        cur.execute("DELETE FROM blob_deleted WHERE bucket = ? AND key = ? AND snapshot = ?",
                    (snap.bucket, snap.key, snap.snapshot))
    cur.execute("INSERT INTO blob_deleted (bucket, key, snapshot, deleted_ns, purge_ns, size, etag, mtime_ns, "
                "attrs, manifest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (snap.bucket, snap.key, snap.snapshot, now_ns, purge_ns, snap.size, snap.etag, snap.mtime_ns,
                 _dumps(snap.attrs), snap.manifest))


def deleted(cur: Any, bucket: str, key: str | None = None, prefix: str = "", *, with_manifest: bool = False
            ) -> list[tuple[Snapshot, int]]:
    """(deleted blob or snapshot, deleted_ns), in key order."""
    m = "manifest" if with_manifest else "NULL"
    cols = f"bucket, key, snapshot, size, etag, mtime_ns, attrs, {m}, deleted_ns"
    if key is not None:
        cur.execute(f"SELECT {cols} FROM blob_deleted WHERE bucket = ? AND key = ? ORDER BY snapshot", (bucket, key))
    else:
        cur.execute(f"SELECT {cols} FROM blob_deleted WHERE bucket = ? AND key >= ? AND key < ? "
                    "ORDER BY key, snapshot", (bucket, prefix, prefix + KEY_MAX))
    return [(_snap(r[:8]), r[8]) for r in cur.fetchall()]


def forget_deleted(cur: Any, bucket: str, key: str, snapshot: str, *, keep_refs: bool) -> None:
    if not keep_refs:
        cur.execute("SELECT manifest FROM blob_deleted WHERE bucket = ? AND key = ? AND snapshot = ?",
                    (bucket, key, snapshot))
        row = cur.fetchone()
        if row:
            drop_refs(cur, mf.ref_counts(row[0]))
    cur.execute("DELETE FROM blob_deleted WHERE bucket = ? AND key = ? AND snapshot = ?", (bucket, key, snapshot))


def purge_deleted_before(cur: Any, now_ns: int) -> int:
    cur.execute("SELECT bucket, key, snapshot, manifest FROM blob_deleted WHERE purge_ns < ?", (now_ns,))
    rows = cur.fetchall()
    total: Counter[bytes] = Counter()
    for *_, manifest in rows:
        total.update(mf.ref_counts(manifest))
    drop_refs(cur, total)
    cur.executemany("DELETE FROM blob_deleted WHERE bucket = ? AND key = ? AND snapshot = ?",
                    [(r[0], r[1], r[2]) for r in rows])
    return len(rows)


# --- leases --------------------------------------------------------------------

def get_lease(cur: Any, bucket: str, key: str) -> Lease | None:
    cur.execute("SELECT lease_id, duration, expires_ns, state, break_ns FROM blob_leases WHERE bucket = ? AND key = ?",
                (bucket, key))
    row = cur.fetchone()
    return Lease(*row) if row else None


def leases_between(cur: Any, bucket: str, first: str, last: str) -> dict[str, Lease]:
    """The lease rows of the blobs first..last (inclusive) of a container: one range read per listing page."""
    cur.execute("SELECT key, lease_id, duration, expires_ns, state, break_ns FROM blob_leases "
                "WHERE bucket = ? AND key >= ? AND key <= ?", (bucket, first, last))
    return {r[0]: Lease(*r[1:]) for r in cur.fetchall()}


def container_leases(cur: Any) -> dict[str, Lease]:
    cur.execute("SELECT bucket, lease_id, duration, expires_ns, state, break_ns FROM blob_leases WHERE key = ''")
    return {r[0]: Lease(*r[1:]) for r in cur.fetchall()}


def claim_lease_decision(cur: Any, bucket: str, key: str) -> None:
    """Make this transaction conflict with any other that changes the lease of ``bucket``/``key``
    (key '': the container) or writes against it: both sides call this before they read the lease.

    On SQLite the single writer already orders them. On PostgreSQL a write reads the lease row and
    writes the blob's rows, a lease change reads the blob and writes the lease row: at REPEATABLE
    READ two such transactions write different rows and both commit (write skew) - a write without
    the lease id landed after Acquire Lease had returned, and a Delete Container and a container
    lease both succeeded. So each also writes one row they share (a no-op update of the blob's
    latest row, or of the container's row): the later one fails with a serialization failure and is
    re-run on the committed state, where it sees the other."""
    if getattr(cur, "nextval", None) is None:  # SQLite: one writer at a time
        return
    if key == "":
        cur.execute("UPDATE buckets SET name = name WHERE name = ?", (bucket,))
    else:
        cur.execute("UPDATE objects SET is_latest = is_latest WHERE bucket = ? AND key = ? AND is_latest = 1",
                    (bucket, key))


def put_lease(cur: Any, bucket: str, key: str, lease: Lease) -> None:
    cur.execute("DELETE FROM blob_leases WHERE bucket = ? AND key = ?", (bucket, key))
    cur.execute("INSERT INTO blob_leases (bucket, key, lease_id, duration, expires_ns, state, break_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bucket, key, lease.lease_id, lease.duration, lease.expires_ns, lease.state, lease.break_ns))


def delete_lease(cur: Any, bucket: str, key: str) -> None:
    cur.execute("DELETE FROM blob_leases WHERE bucket = ? AND key = ?", (bucket, key))


# --- settings ------------------------------------------------------------------

def get_setting(cur: Any, name: str) -> str | None:
    cur.execute("SELECT value FROM blob_settings WHERE name = ?", (name,))
    row = cur.fetchone()
    return row[0] if row else None


def put_setting(cur: Any, name: str, value: str) -> None:
    cur.execute("DELETE FROM blob_settings WHERE name = ?", (name,))
    cur.execute("INSERT INTO blob_settings (name, value) VALUES (?, ?)", (name, value))
    bucket_changed(cur)  # the gateways' cached service properties (blob/service.py) follow it


def account_setting(meta: Metadata) -> tuple[str | None, str | None]:
    """The Blob account name and its key as stored (sealed), in one read."""
    return meta.runner.read(lambda cur: (get_setting(cur, "account_name"), get_setting(cur, "account_key")))


def record_account(meta: Metadata, name: str, key: str, sealer: Sealer, context: str) -> None:
    """Store the Blob account name and its key, sealed under ``context``, in one transaction; rows
    that already say so are left alone (no empty commit, no new sealing of the same key)."""
    def tx(cur: Any) -> None:
        if get_setting(cur, "account_name") != name:
            put_setting(cur, "account_name", name)
        current = get_setting(cur, "account_key")
        if current is None or sealer.open(current, context) != key or not is_sealed(current):  # not a drive: unsealing
            put_setting(cur, "account_key", sealer.seal(key, context))

    meta.runner.write_sync(tx)


# --- containers ----------------------------------------------------------------

def delete_container(cur: Any, bucket: str) -> None:
    """Azure's Delete Container removes everything in it: objects (all versions), pending S3
    multipart uploads, uncommitted blocks, snapshots, soft-deleted blobs and leases."""
    total: Counter[bytes] = Counter()
    cur.execute("SELECT manifest FROM objects WHERE bucket = ?", (bucket,))
    for (m,) in cur.fetchall():
        total.update(mf.ref_counts(m))
    cur.execute("SELECT manifest FROM blob_snapshots WHERE bucket = ?", (bucket,))
    for (m,) in cur.fetchall():
        total.update(mf.ref_counts(m))
    cur.execute("SELECT manifest FROM blob_deleted WHERE bucket = ?", (bucket,))
    for (m,) in cur.fetchall():
        total.update(mf.ref_counts(m))
    cur.execute("SELECT p.manifest FROM parts p JOIN uploads u ON p.upload_id = u.upload_id WHERE u.bucket = ?",
                (bucket,))
    for (m,) in cur.fetchall():
        total.update(mf.ref_counts(m))
    drop_refs(cur, total)
    drop_blocks(cur, bucket)
    cur.execute("DELETE FROM parts WHERE upload_id IN (SELECT upload_id FROM uploads WHERE bucket = ?)", (bucket,))
    for table in ("uploads", "objects"):
        cur.execute(f"DELETE FROM {table} WHERE bucket = ?", (bucket,))
    for table in ("blob_snapshots", "blob_deleted", "blob_leases"):
        cur.execute(f"DELETE FROM {table} WHERE bucket = ?", (bucket,))
    cur.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
    forget_bucket(cur, bucket)
    bucket_changed(cur)


# --- named operations over the helpers above (each one transaction) --------------------------------

def read_lease(meta: Metadata, bucket: str, key: str) -> Lease | None:
    """The committed lease row of a blob (key '': the container)."""
    return meta.runner.read(lambda cur: get_lease(cur, bucket, key), snapshot=False)


def read_leases_between(meta: Metadata, bucket: str, first: str, last: str) -> dict[str, Lease]:
    return meta.runner.read(lambda cur: leases_between(cur, bucket, first, last), snapshot=False)


def read_container_leases(meta: Metadata) -> dict[str, Lease]:
    return meta.runner.read(container_leases, snapshot=False)


def read_blob_and_blocks(meta: Metadata, bucket: str, key: str) -> tuple[ObjectVersion | None, list[Block]]:
    """The blob's current version and its uncommitted blocks, in one snapshot."""
    return meta.runner.read(lambda cur: (latest(cur, bucket, key), blocks(cur, bucket, key)))


def read_snapshot(meta: Metadata, bucket: str, key: str, snapshot: str) -> Snapshot | None:
    return meta.runner.read(lambda cur: get_snapshot(cur, bucket, key, snapshot))


def list_snapshots(meta: Metadata, bucket: str, prefix: str) -> list[Snapshot]:
    return meta.runner.read(lambda cur: snapshots(cur, bucket, None, prefix))


def list_deleted(meta: Metadata, bucket: str, prefix: str) -> list[tuple[Snapshot, int]]:
    return meta.runner.read(lambda cur: deleted(cur, bucket, None, prefix))


def list_keys_with_blocks(meta: Metadata, bucket: str, prefix: str) -> list[tuple[str, int, int]]:
    return meta.runner.read(lambda cur: keys_with_blocks(cur, bucket, prefix))


def read_setting(meta: Metadata, name: str) -> str | None:
    return meta.runner.read(lambda cur: get_setting(cur, name))


async def write_setting(meta: Metadata, name: str, value: str) -> None:
    await meta.runner.write(lambda cur: put_setting(cur, name, value))


async def purge_expired(meta: Metadata, blocks_before_ns: int, deleted_before_ns: int) -> None:
    """Discard uncommitted blocks staged before ``blocks_before_ns`` and soft-deleted blobs whose
    retention ended before ``deleted_before_ns``, in one transaction."""
    def tx(cur: Any) -> None:
        purge_blocks_before(cur, blocks_before_ns)
        purge_deleted_before(cur, deleted_before_ns)

    await meta.runner.write(tx)


# --- Blob writes: each a named operation, one transaction (``Metadata.commit`` and its crash points) ---
#
# They take plain values (the blob's names, the block or bytes already written and durable, the
# request's check) and return records. ``check`` (the request's lease and conditions) runs inside the
# transaction on the row the transaction then writes. ``make_version_id`` names a new version where
# the bucket is versioned (an S3 bucket seen over Blob). Azure's state conflicts raise BlobStateError.

def part_block_id(n: int) -> str:
    """The block id an S3 multipart part shows as over Blob (parts are blocks)."""
    return base64.b64encode(f"part-{n:05d}".encode()).decode()


def committed_blocks(obj: ObjectVersion | Snapshot) -> list[tuple[str, int, str]]:
    """(block id, size, md5 hex) of a blob's (or a snapshot's) committed blocks; S3 parts count as blocks."""
    found = obj.attrs.get("blocks")
    if found is not None:
        return [tuple(b) for b in found]
    parts = obj.attrs.get("parts")
    if parts:
        return [(part_block_id(i + 1), size, "") for i, size in enumerate(parts)]
    return []


def snapshot_id(ns: int) -> str:
    """Azure's snapshot timestamp form: 7 fractional digits."""
    secs, rem = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 100:07d}Z"


def changed_etag(old: str, now_ns: int) -> str:
    """A new ETag for a blob whose properties changed: unique, and in the ``hex-N`` form of an S3
    multipart ETag (never mistaken for the body's MD5). A multipart-shaped ETag keeps its part count."""
    _, _, parts = old.partition("-")
    return f"{hashlib.md5(f'{old}:{now_ns}'.encode()).hexdigest()}-{parts if parts.isdigit() else 1}"


def check_appendable(obj: ObjectVersion | None, append_pos: int | None, max_size: int | None, size: int) -> None:
    """Whether ``size`` bytes may be appended to ``obj`` under the request's conditions."""
    if obj is None or obj.delete_marker:
        raise errors.ObjectNotFound("")
    if obj.attrs.get("blob-type") != "AppendBlob":
        raise BlobStateError("InvalidBlobType")
    if obj.attrs.get("sealed"):
        raise BlobStateError("BlobIsSealed")
    if append_pos is not None and append_pos != obj.size:
        raise BlobStateError("AppendPositionConditionNotMet")
    if max_size is not None and obj.size + size > max_size:
        raise BlobStateError("MaxBlobSizeConditionNotMet")
    if obj.attrs.get("committed_blocks", 0) >= MAX_BLOCKS:
        raise BlobStateError("BlockCountExceedsLimit")


def _existing_checked(cur: Any, bucket: str, key: str, check: ObjectCheck | None) -> ObjectVersion:
    """The blob's current version, inside the write's transaction, after the request's lease and
    conditions passed on it; ObjectNotFound if there is none."""
    obj = latest(cur, bucket, key)
    if obj is None:
        raise errors.ObjectNotFound(key)
    run_check(cur, check, obj)
    return obj


def _patched(attrs: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            attrs.pop(k, None)
        else:
            attrs[k] = v


async def stage_block(meta: Metadata, bucket: str, key: str, block: Block, new_chunks: list[ChunkLocation],
                      check: ObjectCheck | None, *, bucket_must_exist: bool = True) -> None:
    """Put Block (and Put Block From URL, whose block is a slice of another blob: no new chunks).
    ``check`` runs against the committed blob; a block staged again under its id replaces the old one."""
    def tx(cur: Any) -> None:
        if bucket_must_exist and not bucket_exists(cur, bucket):
            raise errors.BucketNotFound(bucket)
        run_check(cur, check, latest(cur, bucket, key) if check else None)
        put_block(cur, bucket, key, block, new_chunks)

    await meta.commit(tx, "block")


async def commit_block_list(meta: Metadata, bucket: str, key: str, wanted: list[tuple[str, str]],
                            attrs: dict[str, Any], owner: str, check: ObjectCheck | None,
                            make_version_id: Callable[[], str]) -> ObjectVersion:
    """Put Block List: ``wanted`` is [(Committed|Uncommitted|Latest, block id)] in blob order. The new
    blob's manifest is the chosen blocks' slices (no bytes move); the uncommitted list is discarded."""
    def tx(cur: Any) -> ObjectVersion:
        current = latest(cur, bucket, key)
        run_check(cur, check, current)
        staged = {b.block_id: b for b in blocks(cur, bucket, key, with_manifest=True)}
        committed: dict[str, tuple[list[mf.Slice], int, str]] = {}
        if current is not None:
            layout = mf.Layout(current.manifest)
            pos = 0
            for bid, size, md5 in committed_blocks(current):
                committed.setdefault(bid, (layout.sub_manifest(pos, pos + size - 1) if size else [], size, md5))
                pos += size
        slices: list[mf.Slice] = []
        chosen: list[list[Any]] = []
        for kind, bid in wanted:
            got: tuple[list[mf.Slice], int, str] | None = None
            if kind in ("Uncommitted", "Latest") and bid in staged:
                b = staged[bid]
                got = (mf.unpack(b.manifest), b.size, b.md5)
            elif kind in ("Committed", "Latest") and bid in committed:
                got = committed[bid]
            if got is None:
                raise BlobStateError("InvalidBlockList")
            slices.extend(got[0])
            chosen.append([bid, got[1], got[2]])
        size = sum(b[1] for b in chosen)
        digest = hashlib.md5(b"".join(bytes.fromhex(b[2]) for b in chosen if b[2]))
        digest.update(str(time.time_ns()).encode())  # a new commit is a new ETag, as in Azure
        obj = ObjectVersion(bucket, key, "", 0, True, False, size, f"{digest.hexdigest()}-{len(chosen)}",
                            time.time_ns(), owner, {**attrs, "blocks": chosen}, mf.pack(slices))
        committed_obj = put_version(cur, obj, [], None, make_version_id)
        drop_blocks(cur, bucket, key)  # the uncommitted list is discarded at commit
        return committed_obj

    return await meta.commit(tx, "blocklist")


async def append_block(meta: Metadata, bucket: str, key: str, md5: str, size: int, manifest: bytes | None,
                       new_chunks: list[ChunkLocation], *, append_pos: int | None, max_size: int | None,
                       check: ObjectCheck | None, make_version_id: Callable[[], str]) -> tuple[ObjectVersion, int]:
    """Append Block: the written bytes' manifest goes on the end of the blob's. Returns the blob and
    the offset the block landed at."""
    def tx(cur: Any) -> tuple[ObjectVersion, int]:
        cur_obj = latest(cur, bucket, key)
        run_check(cur, check, cur_obj)
        check_appendable(cur_obj, append_pos, max_size, size)
        assert cur_obj is not None
        attrs = dict(cur_obj.attrs)
        attrs["committed_blocks"] = attrs.get("committed_blocks", 0) + 1
        # a new ETag per append, in the ``hex-N`` form: never mistaken for the body's MD5
        digest = hashlib.md5(f"{cur_obj.etag}:{md5}".encode()).hexdigest()
        etag = f"{digest}-{attrs['committed_blocks']}"
        obj = ObjectVersion(bucket, key, "", 0, True, False, cur_obj.size + size, etag, time.time_ns(),
                            cur_obj.owner, attrs, (cur_obj.manifest or b"") + (manifest or b""))
        return put_version(cur, obj, new_chunks, None, make_version_id), cur_obj.size

    return await meta.commit(tx, "append")


async def seal_append_blob(meta: Metadata, bucket: str, key: str, check: ObjectCheck | None) -> ObjectVersion:
    """Seal Append Blob: no more appends; its ETag and time stay."""
    def tx(cur: Any) -> ObjectVersion:
        obj = _existing_checked(cur, bucket, key, check)
        if obj.attrs.get("blob-type") != "AppendBlob":
            raise BlobStateError("InvalidBlobType")
        obj.attrs["sealed"] = True
        set_attrs(cur, obj)
        return obj

    return await meta.commit(tx, "props")


async def patch_blob_attrs(meta: Metadata, bucket: str, key: str, patch: dict[str, Any], check: ObjectCheck | None,
                           content_md5: Callable[[ObjectVersion], str | None]) -> ObjectVersion:
    """Set Blob Metadata / Properties: merge ``patch`` (None removes) into the attributes, with a new
    ETag and Last-Modified; ``content_md5(blob)`` (the Content-MD5 it shows) is kept as a property first."""
    def tx(cur: Any) -> ObjectVersion:
        obj = _existing_checked(cur, bucket, key, check)
        md5 = content_md5(obj)
        if md5 and "content-md5" not in obj.attrs:
            obj.attrs["content-md5"] = md5
        _patched(obj.attrs, patch)
        obj.mtime_ns = time.time_ns()
        obj.etag = changed_etag(obj.etag, obj.mtime_ns)
        update_latest(cur, obj)
        return obj

    return await meta.commit(tx, "props")


async def take_snapshot(meta: Metadata, bucket: str, key: str, snapshot_meta: dict[str, str] | None,
                        check: ObjectCheck | None) -> Snapshot:
    """Snapshot Blob: the snapshot holds the blob's manifest (references added, no bytes copied);
    ``snapshot_meta`` replaces its metadata when given."""
    def tx(cur: Any) -> Snapshot:
        obj = _existing_checked(cur, bucket, key, check)
        attrs = dict(obj.attrs)
        if snapshot_meta is not None:
            attrs["meta"] = snapshot_meta
        snap = Snapshot(bucket, key, snapshot_id(time.time_ns()), obj.size, obj.etag, obj.mtime_ns,
                        attrs, obj.manifest)
        add_snapshot(cur, snap)
        return snap

    return await meta.commit(tx, "snapshot")


async def patch_snapshot_attrs(meta: Metadata, bucket: str, key: str, snapshot: str,
                               patch: dict[str, Any]) -> Snapshot:
    """Merge ``patch`` (None removes) into a snapshot's attributes."""
    def tx(cur: Any) -> Snapshot:
        snap = get_snapshot(cur, bucket, key, snapshot)
        if snap is None:
            raise errors.ObjectNotFound(key)
        _patched(snap.attrs, patch)
        update_snapshot_attrs(cur, snap)
        return snap

    return await meta.commit(tx, "props")


async def delete_blob(meta: Metadata, bucket: str, key: str, *, snapshot: str | None, snapshots_mode: str | None,
                      soft_until_ns: int | None, now_ns: int, check: ObjectCheck | None) -> None:
    """Delete Blob: one snapshot, or the blob with its snapshots (``snapshots_mode`` 'include'; 'only':
    the snapshots alone; None: refused while it has any). ``soft_until_ns``: kept restorable (Undelete)
    with its references until then; None: gone. The blob's blocks and lease go with it."""
    def gone(cur: Any, snap: Snapshot) -> None:
        if soft_until_ns is not None:
            remove_snapshot(cur, snap, keep_refs=True)
            soft_delete(cur, snap, now_ns, soft_until_ns)
        else:
            remove_snapshot(cur, snap)

    def tx(cur: Any) -> None:
        if snapshot is not None:
            snap = get_snapshot(cur, bucket, key, snapshot)
            if snap is None:
                raise errors.ObjectNotFound(key)
            gone(cur, snap)
            return
        obj = _existing_checked(cur, bucket, key, check)
        snaps = snapshots(cur, bucket, key, with_manifest=True)
        if snaps and snapshots_mode is None:
            raise BlobStateError("SnapshotsPresent")
        for snap in snaps:
            gone(cur, snap)
        if snapshots_mode == "only":
            return
        if soft_until_ns is not None:
            remove_latest(cur, obj, keep_refs=True)
            base = Snapshot(bucket, key, "", obj.size, obj.etag, obj.mtime_ns, obj.attrs, obj.manifest)
            soft_delete(cur, base, now_ns, soft_until_ns)
        else:
            remove_latest(cur, obj)
        drop_blocks(cur, bucket, key)
        delete_lease(cur, bucket, key)

    await meta.commit(tx, "blobdelete")


async def undelete_blob(meta: Metadata, bucket: str, key: str, owner: str,
                        make_version_id: Callable[[], str]) -> None:
    """Undelete Blob: the soft-deleted blob (unless a live one took its name) and snapshots come back,
    their references moving with them."""
    def tx(cur: Any) -> None:
        live = latest(cur, bucket, key)
        for snap, _ in deleted(cur, bucket, key, with_manifest=True):
            if snap.snapshot == "":
                if live is not None:
                    continue
                obj = ObjectVersion(bucket, key, "", 0, True, False, snap.size, snap.etag, snap.mtime_ns,
                                    owner, snap.attrs, snap.manifest)
                put_version(cur, obj, [], None, make_version_id)
            else:
                add_snapshot(cur, snap)
            forget_deleted(cur, bucket, key, snap.snapshot, keep_refs=False)

    await meta.commit(tx, "undelete")


async def remove_container(meta: Metadata, bucket: str, check: Callable[[Bucket], None] | TxCheck | None) -> None:
    """Delete Container (see ``delete_container``) after ``check(container)`` (its lease and
    conditions) passed in the same transaction."""
    def tx(cur: Any) -> None:
        current = get_bucket(cur, bucket)
        if current is None:
            raise errors.BucketNotFound(bucket)
        run_check(cur, check, current)
        delete_container(cur, bucket)

    await meta.runner.write(tx)


# --- leases: the state machine of Lease Blob / Lease Container, one transaction per action ----------

LEASE_ACTIONS = ("acquire", "renew", "change", "release", "break")


def lease_state(lease: Lease | None, now_ns: int | None = None) -> str:
    """available | leased | expired | breaking | broken."""
    if lease is None or lease.state == "released":
        return "available"
    now = time.time_ns() if now_ns is None else now_ns
    if lease.state == "leased":
        if lease.expires_ns is not None and lease.expires_ns <= now:
            return "expired"
        return "leased"
    if lease.state == "breaking":
        return "breaking" if (lease.break_ns or 0) > now else "broken"
    return lease.state


@dataclass(slots=True)
class LeaseChange:
    """What a lease action did: the lease id it leaves (acquire, renew, change), or the seconds until a
    broken lease's break ends (break); neither for release."""
    lease_id: str | None = None
    break_seconds: int | None = None


def _lease_expires(now: int, duration: int) -> int | None:
    return None if duration < 0 else now + duration * NS


async def change_lease(meta: Metadata, bucket: str, key: str, action: str, *, lease_id: str | None,
                       proposed_id: str | None, duration: int, break_period: int | None,
                       condition: Callable[[Any], None] | None) -> LeaseChange:
    """One lease action (``LEASE_ACTIONS``) on a blob's lease (key '': the container's): the row is read
    and written in one transaction, so two clients racing to acquire cannot both win. ``condition``
    (the request's date/ETag conditions) runs on the container or blob as the transaction sees it;
    ``duration`` (acquire): seconds, -1 for infinite; ``break_period``: seconds, None for the lease's
    own remaining time. Azure's refusals raise BlobStateError with its code."""
    is_container = key == ""

    def same(lease: Lease | None, lid: str | None) -> bool:
        return lease is not None and lid is not None and lease.lease_id.lower() == lid.lower()

    def tx(cur: Any) -> LeaseChange:
        now = time.time_ns()
        claim_lease_decision(cur, bucket, key)
        current = get_bucket(cur, bucket) if is_container else latest(cur, bucket, key)
        if current is None:
            raise errors.BucketNotFound(bucket) if is_container else errors.ObjectNotFound(key)
        if condition is not None:
            condition(current)
        lease = get_lease(cur, bucket, key)
        state = lease_state(lease, now)
        if action == "acquire":
            if state == "breaking":
                raise BlobStateError("LeaseIsBreakingAndCannotBeAcquired")
            if state == "leased" and not same(lease, proposed_id):
                raise BlobStateError("LeaseAlreadyPresent")
            new = Lease(proposed_id or str(uuid.uuid4()), duration, _lease_expires(now, duration), "leased", None)
            put_lease(cur, bucket, key, new)
            return LeaseChange(lease_id=new.lease_id)
        if action == "break":
            if state in ("available", "expired") and lease is None or state == "available":
                raise BlobStateError("LeaseNotPresentWithLeaseOperation")
            assert lease is not None
            if state in ("broken", "expired"):
                lease.state, lease.break_ns = "breaking", now
                put_lease(cur, bucket, key, lease)
                return LeaseChange(break_seconds=0)
            remaining = (lease.break_ns or now) - now if state == "breaking" else (
                (lease.expires_ns - now) if lease.expires_ns is not None else None)
            wait = break_period if break_period is not None else (remaining if remaining is not None else 0) // NS
            if remaining is not None:
                wait = min(wait, max(remaining // NS, 0))
            lease.state, lease.break_ns = "breaking", now + wait * NS
            put_lease(cur, bucket, key, lease)
            return LeaseChange(break_seconds=wait)
        # renew / change / release need the lease id to match
        if lease is None or state == "available":
            raise BlobStateError("LeaseNotPresentWithLeaseOperation")
        if not same(lease, lease_id) and not (action == "change" and same(lease, proposed_id)):
            raise BlobStateError("LeaseIdMismatchWithLeaseOperation")
        if action == "renew":
            if state in ("breaking", "broken"):
                raise BlobStateError("LeaseIsBrokenAndCannotBeRenewed")
            lease.state, lease.expires_ns = "leased", _lease_expires(now, lease.duration)
            put_lease(cur, bucket, key, lease)
            return LeaseChange(lease_id=lease.lease_id)
        if action == "change":
            if state == "breaking":
                raise BlobStateError("LeaseIsBreakingAndCannotBeChanged")
            if state in ("broken", "expired"):
                raise BlobStateError("LeaseNotPresentWithLeaseOperation")
            lease.lease_id = proposed_id or lease.lease_id
            put_lease(cur, bucket, key, lease)
            return LeaseChange(lease_id=lease.lease_id)
        delete_lease(cur, bucket, key)  # release
        return LeaseChange()

    if action not in LEASE_ACTIONS:
        raise ValueError(f"not a lease action: {action!r}")
    return await meta.runner.write(tx)
