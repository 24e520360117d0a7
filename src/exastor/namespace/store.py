"""Protocol-neutral operations on buckets and objects.

Both front-ends call this layer: a bucket is an S3 bucket and a Blob
container, an object is an S3 object and a blob. It enforces ownership, name
rules and the ordering rule (bytes durable, then one metadata transaction),
and knows nothing of HTTP, XML or either protocol's error codes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from exastor import errors
from exastor.engine import manifest as mf
from exastor.engine.store import ChunkStore, Digester, ObjectWriter
from exastor.meta.records import Bucket, ObjectVersion, User
from exastor.meta.store import Metadata, ObjectCheck, TxCheck
from exastor.namespace import listing
from exastor.namespace.names import check_bucket_name, check_key

# Preconditions on a write, evaluated against the current version inside the commit transaction
# (a TxCheck may also read other rows of that transaction, e.g. a Blob lease).
Check = ObjectCheck
ANONYMOUS = "anonymous"  # who an unauthenticated caller's delete marker names
# Front-end access rules (S3 ACLs and bucket policies): (principal, bucket, action, object) ->
# True (granted), False (explicitly denied) or None (no grant: only the legacy rules may still allow).
Authorizer = Callable[[str | None, Bucket, str, ObjectVersion | None], bool | None]


def new_version_id() -> str:
    # Time-prefixed so ids sort roughly by creation, random so they cannot be guessed.
    return f"{time.time_ns():x}{secrets.token_hex(8)}"


@dataclass
class PutSpec:
    """What a front-end knows about an object it is writing, besides its bytes."""

    attrs: dict[str, Any] = field(default_factory=dict)
    digesters: list[Digester] = field(default_factory=list)
    # Called after the last byte, before the commit: raise BadDigest etc. to store nothing.
    verify: Callable[[str, int], None] | None = None  # (md5 hex, size)
    check: Check | None = None                       # preconditions against the current version
    expected_size: int | None = None


class Namespace:
    def __init__(self, meta: Metadata, chunks: ChunkStore, *, region: str = "us-east-1") -> None:
        self.meta = meta
        self.chunks = chunks
        self.region = region
        self._users: dict[str, tuple[float, User | None]] = {}
        self._buckets: dict[str, Bucket | None] = {}
        self._buckets_version = -1
        self.authorizer: Authorizer | None = None

    def close(self) -> None:
        self.chunks.close()
        self.meta.close()

    # --- identities ------------------------------------------------------------
    def user_by_access_key(self, access_key: str) -> User | None:
        """Cached for a few seconds: auth runs on every request, revocation takes effect quickly."""
        now = time.monotonic()
        hit = self._users.get(access_key)
        if hit and now - hit[0] < 5.0:
            return hit[1]
        user = self.meta.user_by_access_key(access_key)
        self._users[access_key] = (now, user)
        return user

    # --- buckets ---------------------------------------------------------------
    def cached_bucket(self, name: str) -> Bucket | None:
        """Bucket rows are cached until the database changes (any commit, by any process), so a
        read-heavy load skips the lookup and nothing ever sees a stale bucket."""
        version = self.meta.runner.data_version()
        if version != self._buckets_version or len(self._buckets) > 10_000:
            self._buckets.clear()
            self._buckets_version = version
        if name in self._buckets:
            return self._buckets[name]
        bucket = self._buckets[name] = self.meta.get_bucket(name)
        return bucket

    def forget_bucket(self, name: str) -> None:
        """Drop the cached bucket after changing it outside this class."""
        self._buckets.pop(name, None)

    def bucket(self, principal: str | None, name: str, *, public_read: bool = False, action: str | None = None,
               obj: ObjectVersion | None = None) -> Bucket:
        """The bucket, if ``principal`` may do ``action`` there (on ``obj`` for object-level actions).

        Without an action, or without an authorizer, only the owner may, and anonymous callers where
        ``public_read``. With both, the authorizer decides; only ``public_read`` may still allow what
        it did not grant."""
        bucket = self.cached_bucket(name)
        if bucket is None:
            raise errors.BucketNotFound(name)
        if action is not None and self.authorizer is not None:
            verdict = self.authorizer(principal, bucket, action, obj)
            if verdict:
                return bucket
            if verdict is None and public_read and bucket.attrs.get("public_access") in ("blob", "container"):
                return bucket
            raise errors.AccessDenied(name)
        if principal is not None and principal == bucket.owner:
            return bucket
        if public_read and bucket.attrs.get("public_access") in ("blob", "container"):
            return bucket
        raise errors.AccessDenied(name)

    async def create_bucket(self, principal: str, name: str, *, region: str | None = None,
                            attrs: dict[str, Any] | None = None) -> Bucket:
        check_bucket_name(name)
        bucket = Bucket(name, principal, time.time_ns(), region or self.region, "", attrs or {})
        self._buckets.pop(name, None)
        try:
            await self.meta.create_bucket(bucket)
        finally:
            self._buckets.pop(name, None)
        return bucket

    async def delete_bucket(self, principal: str, name: str) -> None:
        self.bucket(principal, name, action="s3:DeleteBucket")
        try:
            await self.meta.delete_bucket(name)
        finally:
            self._buckets.pop(name, None)

    def list_buckets(self, principal: str, prefix: str = "") -> list[Bucket]:
        return [b for b in self.meta.list_buckets(principal) if b.name.startswith(prefix)]

    async def set_versioning(self, principal: str, name: str, state: str) -> Bucket:
        assert state in ("Enabled", "Suspended")
        self.bucket(principal, name, action="s3:PutBucketVersioning")
        try:
            return await self.meta.update_bucket(name, versioning=state)
        finally:
            self._buckets.pop(name, None)

    async def update_bucket_attrs(self, principal: str, name: str, patch: dict[str, Any], *,
                                  action: str | None = None,
                                  check: Callable[[Bucket], None] | TxCheck | None = None) -> Bucket:
        self.bucket(principal, name, action=action)
        try:
            return await self.meta.update_bucket(name, attrs_patch=patch, check=check)
        finally:
            self._buckets.pop(name, None)

    # --- objects: write --------------------------------------------------------
    async def write_bytes(self, source: AsyncIterator[bytes | memoryview], spec: PutSpec, *,
                          defer_sync: bool = False) -> tuple[ObjectWriter, str, int, bytes, list]:
        """Stream ``source`` into the chunk store; verify; return what a commit needs.

        The bytes are durable on return, unless ``defer_sync``: then the caller passes
        ``writer.make_durable`` to the metadata commit, which runs it first."""
        md5 = hashlib.md5()
        writer = self.chunks.writer([md5, *spec.digesters])
        try:
            async for piece in source:
                await writer.write(piece)
            result = await writer.finish(sync=not defer_sync)
            if spec.expected_size is not None and result.size != spec.expected_size:
                raise errors.IncompleteBody(f"received {result.size} of {spec.expected_size} bytes")
            etag = md5.hexdigest()
            if spec.verify:
                spec.verify(etag, result.size)
        except BaseException:
            await writer.abort()
            raise
        return writer, etag, result.size, result.manifest, result.new_chunks

    async def put_object(self, principal: str, bucket: str, key: str,
                         source: AsyncIterator[bytes | memoryview], spec: PutSpec) -> ObjectVersion:
        check_key(key)
        # What an anonymous caller writes (where the bucket lets them) belongs to the bucket's owner.
        target = self.bucket(principal, bucket, action="s3:PutObject")
        owner = principal or target.owner
        if spec.check:  # fail fast before reading the body; re-checked atomically at commit
            self.meta.precheck(bucket, key, spec.check)
        writer, etag, size, manifest, new_chunks = await self.write_bytes(source, spec, defer_sync=True)
        obj = ObjectVersion(bucket, key, "", 0, True, False, size, etag, time.time_ns(), owner,
                            spec.attrs, manifest)
        try:
            return await self.meta.put_object(obj, new_chunks=new_chunks, check=spec.check,
                                              make_version_id=new_version_id, durable=writer.make_durable)
        finally:
            writer.done()

    async def copy_object(self, principal: str, src: ObjectVersion, bucket: str, key: str, *,
                          attrs: dict[str, Any], check: Check | None = None,
                          start: int | None = None, end: int | None = None) -> ObjectVersion:
        """Copy without moving bytes: the new manifest points at the source's chunks."""
        check_key(key)
        target = self.bucket(principal, bucket, action="s3:PutObject")
        owner = principal or target.owner
        if start is None or end is None:
            manifest, size = src.manifest, src.size
        else:
            slices = mf.Layout(src.manifest).sub_manifest(start, end)
            manifest, size = mf.pack(slices), end - start + 1
        etag = src.etag if start is None else await self._md5_of(manifest, size)
        obj = ObjectVersion(bucket, key, "", 0, True, False, size, etag, time.time_ns(), owner,
                            attrs, manifest)
        return await self.meta.put_object(obj, check=check, make_version_id=new_version_id)

    async def _md5_of(self, manifest: bytes | None, size: int) -> str:
        md5 = hashlib.md5()
        async for piece in self.chunks.read_range(manifest, 0, size - 1):
            md5.update(piece)
        return md5.hexdigest()

    # --- objects: read ---------------------------------------------------------
    def get_object(self, principal: str | None, bucket: str, key: str, version_id: str | None = None,
                   *, public_read: bool = False, action: str = "s3:GetObject") -> ObjectVersion:
        """The version to read. Raises ObjectNotFound/VersionNotFound, or MethodNotAllowed with
        ``info['delete_marker']`` when the version is a delete marker.

        A caller who may not list the bucket learns nothing: AccessDenied, not NotFound."""
        if self.authorizer is None:
            self.bucket(principal, bucket, public_read=public_read)
        elif self.cached_bucket(bucket) is None:
            raise errors.BucketNotFound(bucket)
        obj = self.meta.get_object(bucket, key, version_id)
        if self.authorizer is not None:
            if obj is None or obj.delete_marker:
                self.bucket(principal, bucket, public_read=public_read, action="s3:ListBucket")
            else:
                self.bucket(principal, bucket, public_read=public_read, action=action, obj=obj)
        if obj is None:
            if version_id is not None:
                raise errors.VersionNotFound(key)
            raise errors.ObjectNotFound(key)
        if obj.delete_marker:
            if version_id is None:
                raise errors.ObjectNotFound(key, delete_marker=obj)
            raise errors.MethodNotAllowed(key, delete_marker=obj)
        return obj

    def read(self, obj: ObjectVersion, start: int = 0, end: int | None = None
             ) -> AsyncIterator[bytes | memoryview]:
        last = obj.size - 1 if end is None else end
        return self.chunks.read_range(obj.manifest, start, last)

    # --- objects: delete and attributes ----------------------------------------
    async def delete_object(self, principal: str, bucket: str, key: str, version_id: str | None = None,
                            *, check: Check | None = None) -> tuple[ObjectVersion | None, bool]:
        self.bucket(principal, bucket, action="s3:DeleteObject")
        return await self.meta.delete_object(bucket, key, version_id, make_version_id=new_version_id,
                                             owner=principal or ANONYMOUS, check=check)

    async def update_object_attrs(self, principal: str, bucket: str, key: str, version_id: str | None,
                                  patch: dict[str, Any], *, action: str | None = None,
                                  check: Check | None = None) -> ObjectVersion:
        if action is not None and self.authorizer is not None:
            self.get_object(principal, bucket, key, version_id, action=action)
        else:
            self.bucket(principal, bucket)
        return await self.meta.update_object_attrs(bucket, key, version_id, patch, check=check)

    # --- listing ---------------------------------------------------------------
    def list_objects(self, principal: str | None, bucket: str, *, public_read: bool = False,
                     **kw: Any) -> listing.ListResult:
        self.bucket(principal, bucket, public_read=public_read, action="s3:ListBucket")
        return listing.list_objects(self.meta, bucket, **kw)

    def list_versions(self, principal: str, bucket: str, **kw: Any) -> listing.VersionListResult:
        self.bucket(principal, bucket, action="s3:ListBucketVersions")
        return listing.list_versions(self.meta, bucket, **kw)
