"""Blob-shaped operations over the shared namespace: blocks, block lists, append, snapshots,
soft delete. A committed blob is an ordinary object (S3 sees it); the Blob-only state around it
lives in the tables of ``meta/blob.py``.

Nothing here moves bytes after they are written once: committing a block list, appending,
snapshotting and undeleting only compose manifests (lists of chunk slices), and every manifest
held anywhere is reference-counted in the same transaction that stores it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from exastor import errors
from exastor.meta import blob as bm
from exastor.meta import manifest as mf
from exastor.meta.blob import (  # re-exported: the front-ends and tests name them here
    MAX_BLOCKS,
    BlobStateError,
    committed_blocks,
    part_block_id,
)
from exastor.meta.contract import TxCheck
from exastor.meta.records import Bucket, ObjectVersion
from exastor.namespace.names import check_key
from exastor.namespace.operations import (
    READ,
    WRITE,
    Check,
    Grant,
    Namespace,
    PutSpec,
    new_version_id,
    with_create_only,
)

__all__ = ["MAX_BLOCKS", "BlobStateError", "Blobs", "committed_blocks", "part_block_id"]

BLOCK_TTL_NS = 7 * 24 * 3600 * 10**9   # uncommitted blocks live a week, as in Azure


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

    async def change_lease(self, grant: Grant, bucket: str, key: str, action: str, *, lease_id: str | None,
                           proposed_id: str | None, duration: int, break_period: int | None,
                           condition: Callable[[Any], None] | None) -> bm.LeaseChange:
        """A lease action (see ``meta.blob.change_lease``): it reads and writes the lease row in one
        transaction."""
        self.ns.bucket(grant, bucket, WRITE, key or None)
        return await bm.change_lease(self.meta, bucket, key, action, lease_id=lease_id, proposed_id=proposed_id,
                                     duration=duration, break_period=break_period, condition=condition)

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
            await bm.stage_block(self.meta, bucket, key, block, new_chunks, check)
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
        # the source blob's bucket and this one were checked above: no new chunks, no bucket re-read
        await bm.stage_block(self.meta, bucket, key, block, [], check, bucket_must_exist=False)
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
        return await bm.commit_block_list(self.meta, bucket, key, wanted, attrs, owner, check, new_version_id)

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
        bm.check_appendable(current, append_pos, max_size, spec.expected_size or 0)
        writer, md5, size, manifest, new_chunks = await self.ns.write_bytes(source, spec)
        try:
            return await bm.append_block(self.meta, bucket, key, md5, size, manifest, new_chunks,
                                         append_pos=append_pos, max_size=max_size, check=check,
                                         make_version_id=new_version_id)
        finally:
            writer.done()

    async def seal(self, grant: Grant, bucket: str, key: str, check: Check | None) -> ObjectVersion:
        self.ns.bucket(grant, bucket, WRITE, key)
        return await bm.seal_append_blob(self.meta, bucket, key, check)

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
        return await bm.patch_blob_attrs(self.meta, bucket, key, patch, check, content_md5)

    # --- snapshots ---------------------------------------------------------------
    async def snapshot(self, grant: Grant, bucket: str, key: str, meta: dict[str, str] | None,
                       check: Check | None) -> bm.Snapshot:
        self.ns.bucket(grant, bucket, WRITE, key)
        return await bm.take_snapshot(self.meta, bucket, key, meta, check)

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
        return await bm.patch_snapshot_attrs(self.meta, bucket, key, snapshot, patch)

    # --- delete / undelete -------------------------------------------------------
    async def delete(self, grant: Grant, bucket: str, key: str, *, snapshot: str | None,
                     snapshots: str | None, retention_days: int | None, check: Check | None) -> None:
        """Delete Blob. ``snapshots``: None, 'include' or 'only'. With a retention period the blob
        (and snapshots) move to the soft-deleted table with their references, restorable by Undelete."""
        self.ns.bucket(grant, bucket, WRITE, key)
        now = time.time_ns()
        purge = now + (retention_days or 0) * 86400 * 10**9

        await bm.delete_blob(self.meta, bucket, key, snapshot=snapshot, snapshots_mode=snapshots,
                             soft_until_ns=purge if retention_days else None, now_ns=now, check=check)

    async def undelete(self, grant: Grant, bucket: str, key: str) -> None:
        target = self.ns.bucket(grant, bucket, WRITE, key)
        owner = grant.principal or target.owner

        await bm.undelete_blob(self.meta, bucket, key, owner, new_version_id)

    async def delete_container(self, grant: Grant, bucket: str,
                               check: Callable[[Bucket], None] | TxCheck | None = None) -> None:
        """``check(container)`` (its lease and conditions) runs in the deleting transaction."""
        self.ns.bucket(grant, bucket, WRITE)
        try:
            await bm.remove_container(self.meta, bucket, check)
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
