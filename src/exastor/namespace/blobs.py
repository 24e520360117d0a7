"""Blob-shaped operations over the shared namespace: blocks, block lists, append, snapshots,
soft delete. A committed blob is an ordinary object (S3 sees it); the Blob-only state around it
lives in the tables of ``meta/blob.py``.

Nothing here moves bytes after they are written once: committing a block list, appending,
snapshotting and undeleting only compose manifests (lists of chunk slices), and every manifest
held anywhere is reference-counted in the same transaction that stores it.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from exastor import errors
from exastor.meta import blob as bm
from exastor.meta import manifest as mf
from exastor.meta.records import Bucket, ObjectVersion
from exastor.meta.store import TxCheck, put_version, run_check
from exastor.namespace.names import check_key
from exastor.namespace.store import (
    READ,
    WRITE,
    Check,
    Grant,
    Namespace,
    PutSpec,
    new_version_id,
    with_create_only,
)

BLOCK_TTL_NS = 7 * 24 * 3600 * 10**9   # uncommitted blocks live a week, as in Azure
MAX_BLOCKS = 50_000


class BlobStateError(errors.StoreError):
    """A Blob-specific state conflict; ``info['code']`` is the Azure error code."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(detail or code, code=code)


def part_block_id(n: int) -> str:
    """The block id an S3 multipart part shows as over Blob (parts are blocks)."""
    return base64.b64encode(f"part-{n:05d}".encode()).decode()


def committed_blocks(obj: ObjectVersion) -> list[tuple[str, int, str]]:
    """(block id, size, md5 hex) of a blob's committed blocks; S3 parts count as blocks."""
    blocks = obj.attrs.get("blocks")
    if blocks is not None:
        return [tuple(b) for b in blocks]  # type: ignore[misc]
    parts = obj.attrs.get("parts")
    if parts:
        return [(part_block_id(i + 1), size, "") for i, size in enumerate(parts)]
    return []


def snapshot_id(ns: int) -> str:
    """Azure's snapshot timestamp form: 7 fractional digits."""
    secs, rem = divmod(ns, 10**9)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 100:07d}Z"


class Blobs:
    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.meta = ns.meta
        self._last_purge = 0.0

    def lease(self, grant: Grant, bucket: str, key: str) -> bm.Lease | None:
        """The committed lease row of a blob (key '' : the container). Every gateway worker changes
        leases, so nothing here caches them; a write checks its lease inside its own transaction."""
        self.ns.bucket(grant, bucket, None, key or None)
        return bm.read_lease(self.meta, bucket, key)

    def leases(self, grant: Grant, bucket: str, keys: list[str]) -> dict[str, bm.Lease]:
        """The lease rows of some blobs of a container (a listing page)."""
        self.ns.bucket(grant, bucket, READ)
        if not keys:
            return {}
        found = bm.read_leases_between(self.meta, bucket, min(keys), max(keys))
        return {k: found[k] for k in keys if k in found}

    def container_leases(self, grant: Grant) -> dict[str, bm.Lease]:
        """The lease rows of every container (Get Containers lists them with the caller's own)."""
        grant.require(None, None, READ)
        return bm.read_container_leases(self.meta)

    async def change_lease(self, grant: Grant, bucket: str, key: str, tx: Callable[[Any], Any]) -> Any:
        """A lease operation: ``tx`` reads and writes the lease row in one transaction."""
        self.ns.bucket(grant, bucket, WRITE, key or None)
        return await self.meta.runner.write(tx)

    # --- blocks ------------------------------------------------------------------
    async def stage_block(self, grant: Grant, bucket: str, key: str, block_id: str,
                          source: AsyncIterator[bytes | memoryview], spec: PutSpec,
                          check: Check | None = None) -> bm.Block:
        """Put Block. ``check`` (the blob's lease) runs in the transaction against the committed blob."""
        check_key(key)
        self.ns.bucket(grant, bucket, WRITE, key)
        await self.purge_expired()
        writer, md5, size, manifest, new_chunks = await self.ns.write_bytes(source, spec)
        block = bm.Block(block_id, size, md5, time.time_ns(), manifest)
        try:
            def tx(cur: Any) -> None:
                if not bm.bucket_exists(cur, bucket):
                    raise errors.BucketNotFound(bucket)
                run_check(cur, check, bm.latest(cur, bucket, key) if check else None)
                bm.put_block(cur, bucket, key, block, new_chunks)
            await self.meta.commit(tx, "block")
        finally:
            writer.done()
        return block

    async def stage_block_from(self, grant: Grant, bucket: str, key: str, block_id: str,
                               src: ObjectVersion, start: int, end: int, check: Check | None = None) -> bm.Block:
        """Put Block From URL within the account: a slice of another blob, no bytes copied."""
        check_key(key)
        grant.require(src.bucket, src.key, READ)
        self.ns.bucket(grant, bucket, WRITE, key)
        slices = mf.Layout(src.manifest).sub_manifest(start, end) if end >= start else []
        manifest = mf.pack(slices)
        md5 = await self.ns.md5_of(manifest, end - start + 1) if slices else hashlib.md5().hexdigest()
        block = bm.Block(block_id, max(end - start + 1, 0), md5, time.time_ns(), manifest)

        def tx(cur: Any) -> None:
            run_check(cur, check, bm.latest(cur, bucket, key) if check else None)
            bm.put_block(cur, bucket, key, block, [])
        await self.meta.commit(tx, "block")
        return block

    def block_lists(self, grant: Grant, bucket: str, key: str) -> tuple[ObjectVersion | None, list[bm.Block]]:
        self.ns.bucket(grant, bucket, READ, key)

        return bm.read_blob_and_blocks(self.meta, bucket, key)

    async def commit_blocks(self, grant: Grant, bucket: str, key: str, wanted: list[tuple[str, str]],
                            attrs: dict[str, Any], check: Check | None) -> ObjectVersion:
        """Put Block List: ``wanted`` is [(Committed|Uncommitted|Latest, block id)] in blob order."""
        check_key(key)
        target = self.ns.bucket(grant, bucket, WRITE, key)
        owner = grant.principal or target.owner
        check = with_create_only(grant, bucket, key, check)
        if len(wanted) > MAX_BLOCKS:
            raise BlobStateError("InvalidBlockList", "too many blocks")

        def tx(cur: Any) -> ObjectVersion:
            current = bm.latest(cur, bucket, key)
            run_check(cur, check, current)
            staged = {b.block_id: b for b in bm.blocks(cur, bucket, key, with_manifest=True)}
            committed: dict[str, tuple[list[mf.Slice], int, str]] = {}
            if current is not None:
                layout = mf.Layout(current.manifest)
                pos = 0
                for bid, size, md5 in committed_blocks(current):
                    committed.setdefault(bid, (layout.sub_manifest(pos, pos + size - 1) if size else [], size, md5))
                    pos += size
            slices: list[mf.Slice] = []
            blocks: list[list[Any]] = []
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
                blocks.append([bid, got[1], got[2]])
            size = sum(b[1] for b in blocks)
            digest = hashlib.md5(b"".join(bytes.fromhex(b[2]) for b in blocks if b[2]))
            digest.update(str(time.time_ns()).encode())  # a new commit is a new ETag, as in Azure
            obj = ObjectVersion(bucket, key, "", 0, True, False, size, f"{digest.hexdigest()}-{len(blocks)}",
                                time.time_ns(), owner, {**attrs, "blocks": blocks}, mf.pack(slices))
            committed_obj = put_version(cur, obj, [], None, new_version_id)
            bm.drop_blocks(cur, bucket, key)  # the uncommitted list is discarded at commit
            return committed_obj

        return await self.meta.commit(tx, "blocklist")

    async def purge_expired(self, *, force: bool = False) -> None:
        """Discard week-old uncommitted blocks and expired soft-deleted blobs (at most once a minute)."""
        now = time.monotonic()
        if not force and now - self._last_purge < 60:
            return
        self._last_purge = now
        wall = time.time_ns()

        await bm.purge_expired(self.meta, wall - BLOCK_TTL_NS, wall)

    # --- append blobs ------------------------------------------------------------
    async def append(self, grant: Grant, bucket: str, key: str, source: AsyncIterator[bytes | memoryview],
                     spec: PutSpec, *, append_pos: int | None, max_size: int | None, check: Check | None
                     ) -> tuple[ObjectVersion, int]:
        """Append Block: returns the blob and the offset the block landed at."""
        self.ns.bucket(grant, bucket, WRITE, key)
        current = self.meta.get_object(bucket, key)
        _check_appendable(current, append_pos, max_size, spec.expected_size or 0)
        writer, md5, size, manifest, new_chunks = await self.ns.write_bytes(source, spec)
        try:
            def tx(cur: Any) -> tuple[ObjectVersion, int]:
                cur_obj = bm.latest(cur, bucket, key)
                run_check(cur, check, cur_obj)
                _check_appendable(cur_obj, append_pos, max_size, size)
                assert cur_obj is not None
                attrs = dict(cur_obj.attrs)
                attrs["committed_blocks"] = attrs.get("committed_blocks", 0) + 1
                # a new ETag per append, in the ``hex-N`` form: never mistaken for the body's MD5
                digest = hashlib.md5(f"{cur_obj.etag}:{md5}".encode()).hexdigest()
                etag = f"{digest}-{attrs['committed_blocks']}"
                obj = ObjectVersion(bucket, key, "", 0, True, False, cur_obj.size + size, etag, time.time_ns(),
                                    cur_obj.owner, attrs, (cur_obj.manifest or b"") + (manifest or b""))
                return put_version(cur, obj, new_chunks, None, new_version_id), cur_obj.size
            return await self.meta.commit(tx, "append")
        finally:
            writer.done()

    async def seal(self, grant: Grant, bucket: str, key: str, check: Check | None) -> ObjectVersion:
        self.ns.bucket(grant, bucket, WRITE, key)

        def tx(cur: Any) -> ObjectVersion:
            obj = _existing_checked(cur, bucket, key, check)
            if obj.attrs.get("blob-type") != "AppendBlob":
                raise BlobStateError("InvalidBlobType")
            obj.attrs["sealed"] = True
            bm.set_attrs(cur, obj)
            return obj
        return await self.meta.commit(tx, "props")

    # --- properties --------------------------------------------------------------
    async def set_blob_attrs(self, grant: Grant, bucket: str, key: str, patch: dict[str, Any],
                             check: Check | None, *, content_md5: Callable[[ObjectVersion], str | None]
                             ) -> ObjectVersion:
        """Set Blob Metadata / Set Blob Properties: merge ``patch`` (None removes) into the blob's
        attributes and, as Azure does, give it a new ETag and Last-Modified, so a writer that read the
        old ETag cannot overwrite this change with If-Match. The new ETag has a part-count suffix, so S3
        clients never take it for the body's MD5; ``content_md5(blob)`` (the Content-MD5 the blob
        shows, which may be derived from its old ETag) is kept as a property first."""
        self.ns.bucket(grant, bucket, WRITE, key)

        def tx(cur: Any) -> ObjectVersion:
            obj = _existing_checked(cur, bucket, key, check)
            md5 = content_md5(obj)
            if md5 and "content-md5" not in obj.attrs:
                obj.attrs["content-md5"] = md5
            for k, v in patch.items():
                if v is None:
                    obj.attrs.pop(k, None)
                else:
                    obj.attrs[k] = v
            obj.mtime_ns = time.time_ns()
            obj.etag = changed_etag(obj.etag, obj.mtime_ns)
            bm.update_latest(cur, obj)
            return obj
        return await self.meta.commit(tx, "props")

    # --- snapshots ---------------------------------------------------------------
    async def snapshot(self, grant: Grant, bucket: str, key: str, meta: dict[str, str] | None,
                       check: Check | None) -> bm.Snapshot:
        self.ns.bucket(grant, bucket, WRITE, key)

        def tx(cur: Any) -> bm.Snapshot:
            obj = _existing_checked(cur, bucket, key, check)
            attrs = dict(obj.attrs)
            if meta is not None:
                attrs["meta"] = meta
            snap = bm.Snapshot(bucket, key, snapshot_id(time.time_ns()), obj.size, obj.etag, obj.mtime_ns,
                               attrs, obj.manifest)
            bm.add_snapshot(cur, snap)
            return snap
        return await self.meta.commit(tx, "snapshot")

    def get_snapshot(self, grant: Grant, bucket: str, key: str, snapshot: str, *, access: str = READ
                     ) -> bm.Snapshot:
        self.ns.bucket(grant, bucket, access, key)
        snap = bm.read_snapshot(self.meta, bucket, key, snapshot)
        if snap is None:
            raise errors.ObjectNotFound(key)
        return snap

    async def update_snapshot_attrs(self, grant: Grant, bucket: str, key: str, snapshot: str,
                                    patch: dict[str, Any]) -> bm.Snapshot:
        self.ns.bucket(grant, bucket, WRITE, key)

        def tx(cur: Any) -> bm.Snapshot:
            snap = bm.get_snapshot(cur, bucket, key, snapshot)
            if snap is None:
                raise errors.ObjectNotFound(key)
            for k, v in patch.items():
                if v is None:
                    snap.attrs.pop(k, None)
                else:
                    snap.attrs[k] = v
            bm.update_snapshot_attrs(cur, snap)
            return snap
        return await self.meta.commit(tx, "props")

    # --- delete / undelete -------------------------------------------------------
    async def delete(self, grant: Grant, bucket: str, key: str, *, snapshot: str | None,
                     snapshots: str | None, retention_days: int | None, check: Check | None) -> None:
        """Delete Blob. ``snapshots``: None, 'include' or 'only'. With a retention period the blob
        (and snapshots) move to the soft-deleted table with their references, restorable by Undelete."""
        self.ns.bucket(grant, bucket, WRITE, key)
        now = time.time_ns()
        purge = now + (retention_days or 0) * 86400 * 10**9

        def gone(cur: Any, snap: bm.Snapshot) -> None:
            if retention_days:
                bm.remove_snapshot(cur, snap, keep_refs=True)
                bm.soft_delete(cur, snap, now, purge)
            else:
                bm.remove_snapshot(cur, snap)

        def tx(cur: Any) -> None:
            if snapshot is not None:
                snap = bm.get_snapshot(cur, bucket, key, snapshot)
                if snap is None:
                    raise errors.ObjectNotFound(key)
                gone(cur, snap)
                return
            obj = _existing_checked(cur, bucket, key, check)
            snaps = bm.snapshots(cur, bucket, key, with_manifest=True)
            if snaps and snapshots is None:
                raise BlobStateError("SnapshotsPresent")
            for snap in snaps:
                gone(cur, snap)
            if snapshots == "only":
                return
            if retention_days:
                bm.remove_latest(cur, obj, keep_refs=True)
                base = bm.Snapshot(bucket, key, "", obj.size, obj.etag, obj.mtime_ns, obj.attrs, obj.manifest)
                bm.soft_delete(cur, base, now, purge)
            else:
                bm.remove_latest(cur, obj)
            bm.drop_blocks(cur, bucket, key)
            bm.delete_lease(cur, bucket, key)

        await self.meta.commit(tx, "blobdelete")

    async def undelete(self, grant: Grant, bucket: str, key: str) -> None:
        target = self.ns.bucket(grant, bucket, WRITE, key)
        owner = grant.principal or target.owner

        def tx(cur: Any) -> None:
            live = bm.latest(cur, bucket, key)
            for snap, _ in bm.deleted(cur, bucket, key, with_manifest=True):
                if snap.snapshot == "":
                    if live is not None:
                        continue
                    obj = ObjectVersion(bucket, key, "", 0, True, False, snap.size, snap.etag, snap.mtime_ns,
                                        owner, snap.attrs, snap.manifest)
                    put_version(cur, obj, [], None, new_version_id)
                else:
                    bm.add_snapshot(cur, snap)
                bm.forget_deleted(cur, bucket, key, snap.snapshot, keep_refs=False)
        await self.meta.commit(tx, "undelete")

    async def delete_container(self, grant: Grant, bucket: str,
                               check: Callable[[Bucket], None] | TxCheck | None = None) -> None:
        """``check(container)`` (its lease and conditions) runs in the deleting transaction."""
        self.ns.bucket(grant, bucket, WRITE)

        def tx(cur: Any) -> None:
            current = bm.get_bucket(cur, bucket)
            if current is None:
                raise errors.BucketNotFound(bucket)
            run_check(cur, check, current)
            bm.delete_container(cur, bucket)
        try:
            await self.meta.runner.write(tx)
        finally:
            self.ns.forget_bucket(bucket)

    # --- listing helpers ---------------------------------------------------------
    def snapshots_under(self, grant: Grant, bucket: str, prefix: str) -> list[bm.Snapshot]:
        self.ns.bucket(grant, bucket, READ)
        return bm.list_snapshots(self.meta, bucket, prefix)

    def deleted_under(self, grant: Grant, bucket: str, prefix: str) -> list[tuple[bm.Snapshot, int]]:
        self.ns.bucket(grant, bucket, READ)
        return bm.list_deleted(self.meta, bucket, prefix)

    def uncommitted_under(self, grant: Grant, bucket: str, prefix: str) -> list[tuple[str, int, int]]:
        self.ns.bucket(grant, bucket, READ)
        return bm.list_keys_with_blocks(self.meta, bucket, prefix)

    # --- settings ----------------------------------------------------------------
    def setting(self, name: str) -> str | None:
        """Account settings (service properties: CORS rules, soft-delete retention). Every request
        is served under them, so reading them needs no grant; changing them does."""
        return bm.read_setting(self.meta, name)

    async def set_setting(self, grant: Grant, name: str, value: str) -> None:
        grant.require(None, None, WRITE)
        await bm.write_setting(self.meta, name, value)


def changed_etag(old: str, now_ns: int) -> str:
    """A new ETag for a blob whose properties changed: unique, and in the ``hex-N`` form of an S3
    multipart ETag (never mistaken for the body's MD5). A multipart-shaped ETag keeps its part count."""
    _, _, parts = old.partition("-")
    return f"{hashlib.md5(f'{old}:{now_ns}'.encode()).hexdigest()}-{parts if parts.isdigit() else 1}"


def _existing_checked(cur: Any, bucket: str, key: str, check: Check | None) -> ObjectVersion:
    """The blob's current version, inside the write's transaction, after the request's lease and
    conditions passed on it; ObjectNotFound if there is none."""
    obj = bm.latest(cur, bucket, key)
    if obj is None:
        raise errors.ObjectNotFound(key)
    run_check(cur, check, obj)
    return obj


def _check_appendable(obj: ObjectVersion | None, append_pos: int | None, max_size: int | None, size: int) -> None:
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


Checker = Callable[[ObjectVersion | None], None]
