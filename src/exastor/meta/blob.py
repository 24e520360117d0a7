"""SQL for the Azure Blob-only state: uncommitted blocks, snapshots, soft-deleted blobs, leases,
account settings (tables at the end of meta/migrations/*/0001_initial.sql).

Functions taking ``cur`` run inside a write transaction the caller opened with
``meta.runner.write(fn)``, so a blob change and its chunk reference counts commit together.
Every manifest stored here holds references: inserting adds them, deleting drops them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from exastor.meta import manifest as mf
from exastor.meta.records import OBJECT_COLUMNS, Bucket, ChunkLocation, ObjectVersion
from exastor.meta.sealing import Sealer, is_sealed
from exastor.meta.store import (
    KEY_MAX,
    Metadata,
    _get_bucket,
    add_refs,
    bucket_changed,
    charge,
    drop_refs,
    ensure_usage,
    forget_bucket,
    register_chunks,
    version_usage,
)


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
