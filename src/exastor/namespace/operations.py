"""Protocol-neutral operations on buckets and objects.

Both front-ends call this layer: a bucket is an S3 bucket and a Blob
container, an object is an S3 object and a blob. It enforces ownership, name
rules and the ordering rule (bytes durable, then one metadata transaction),
and knows nothing of HTTP, XML or either protocol's error codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from exastor import errors
from exastor.engine.chunkstore import ChunkStore, Digester, ObjectWriter
from exastor.meta import manifest as mf
from exastor.meta.contract import Metadata, ObjectCheck, TxCheck, run_check
from exastor.meta.records import Bucket, ObjectVersion, User
from exastor.namespace import listing
from exastor.namespace.names import check_bucket_name, check_key

# Preconditions on a write, evaluated against the current version inside the commit transaction
# (a TxCheck may also read other rows of that transaction, e.g. a Blob lease).
Check = ObjectCheck
ANONYMOUS = "anonymous"  # who an unauthenticated caller's delete marker names
READ, WRITE = "read", "write"  # what a grant lets a request do with a bucket or an object
_DIGEST_BATCH = 8 << 20
# A user row is cached until data_version moves; this bounds it besides, should a change's
# notification be lost (a PostgreSQL listener reconnecting).
USER_CACHE_S = 5.0


class Grant(Protocol):
    """What one request was authorized to touch (made by exastor.auth before any handler runs).

    Every method here that reads or changes a bucket or an object takes one and asks it first:
    ``require`` raises errors.AuthorizationMissing for anything the request was not authorized
    for, so a handler cannot reach data its operation's decision does not name."""

    @property
    def principal(self) -> str | None:
        """The user the request acts as (new objects are theirs); None: anonymous."""

    def require(self, bucket: str | None, key: str | None, access: str | None, *,
                bucket_owner: str | None = None) -> None:
        """``key`` None: the bucket itself; ``access`` None: only the bucket's row; ``bucket`` None:
        account-wide settings."""

    def known_object(self, bucket: str, key: str, version_id: str | None) -> tuple[bool, ObjectVersion | None]:
        """The row the decision was made on, when it read one."""

    def create_only(self, bucket: str, key: str) -> bool:
        """Whether a write there may only create (never replace a live object)."""


@dataclass(frozen=True)
class SystemGrant:
    """Everything, as ``principal``: for tools and tests that run the namespace without a request.
    Front-ends never use it (tests/unit/test_auth_structure.py checks their imports)."""

    principal: str | None

    def require(self, bucket: str | None, key: str | None, access: str | None, *,
                bucket_owner: str | None = None) -> None:
        return None

    def known_object(self, bucket: str, key: str, version_id: str | None) -> tuple[bool, ObjectVersion | None]:
        return False, None

    def create_only(self, bucket: str, key: str) -> bool:
        return False


class _CreateOnly(TxCheck):
    """A write allowed only where nothing lives yet (a SAS with create but not write permission),
    checked in the write's transaction together with the request's own check."""

    def __init__(self, inner: Check | None) -> None:
        self.inner = inner

    def run(self, cur: Any, current: Any) -> None:
        self._refuse_overwrite(current)
        run_check(cur, self.inner, current)

    def precheck(self, cur: Any, current: Any) -> None:
        self._refuse_overwrite(current)
        run_check(cur, self.inner, current, early=True)

    @staticmethod
    def _refuse_overwrite(current: Any) -> None:
        if current is not None and not getattr(current, "delete_marker", False):
            raise errors.AccessDenied("a create-only grant cannot replace an existing object",
                                      code="AuthorizationPermissionMismatch")


def with_create_only(grant: Grant, bucket: str, key: str, check: Check | None) -> Check | None:
    """``check``, plus the refusal to overwrite when the grant only allows creating."""
    return _CreateOnly(check) if grant.create_only(bucket, key) else check


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
    owner: str | None = None                         # who owns the object (default: the writer)


class Namespace:
    def __init__(self, meta: Metadata, chunks: ChunkStore, *, region: str = "us-east-1") -> None:
        self.meta = meta
        self.chunks = chunks
        self.region = region
        self._users: dict[str, tuple[float, User | None]] = {}
        self._users_version = -1
        self._buckets: dict[str, Bucket] = {}
        self._buckets_version = -1

    def close(self) -> None:
        self.chunks.close()
        self.meta.close()

    @property
    def encrypted_at_rest(self) -> bool:
        """Every object's data is encrypted on the drives (the store encrypted every record it wrote):
        what SSE-S3 and Blob's ``x-ms-server-encrypted`` may claim (engine/encryption.py)."""
        return self.chunks.keys.all_encrypted

    # --- identities ------------------------------------------------------------
    def user_by_access_key(self, access_key: str) -> User | None:
        """Cached until a user, bucket or account setting changes (``data_version``: every user change
        bumps it, meta/contract.py ``bucket_changed``), so a removed user's key or a replaced key pair
        is refused on the next request (on PostgreSQL: at once through this gateway, within the
        notification's milliseconds through others); and for at most USER_CACHE_S in any case."""
        now = time.monotonic()
        version = self.meta.runner.data_version()
        if version != self._users_version or len(self._users) > 10_000:
            self._users.clear()
            self._users_version = version
        hit = self._users.get(access_key)
        if hit and now - hit[0] < USER_CACHE_S:
            return hit[1]
        user = self.meta.user_by_access_key(access_key)
        self._users[access_key] = (now, user)
        return user

    def user_exists(self, name: str) -> bool:
        """For ACL grantees: canonical ids are user names here."""
        return any(u.name == name for u in self.meta.list_users(secrets=False))

    def user_by_email(self, email: str) -> str | None:
        """For ACL grants by e-mail address: the user with that address."""
        return self.meta.user_by_email(email)

    def data_version(self) -> int:
        """Changes whenever anything commits: for caches of settings above this layer."""
        return self.meta.runner.data_version()

    # --- buckets ---------------------------------------------------------------
    def cached_bucket(self, name: str) -> Bucket | None:
        """Bucket rows are cached until the database changes (any commit, by any process), so a
        read-heavy load skips the lookup and nothing ever sees a stale bucket. For the authorizer
        (and this class): front-ends get buckets through ``bucket`` with their request's grant.

        A missing bucket is not cached: on PostgreSQL this process hears other gateways' commits a
        few milliseconds after they are acknowledged (meta/contract.py), and a cached "no such
        bucket" would refuse a write into a bucket just created through another gateway. Looking
        again costs one point read, for requests that are answered 404 anyway."""
        version = self.meta.runner.data_version()
        if version != self._buckets_version or len(self._buckets) > 10_000:
            self._buckets.clear()
            self._buckets_version = version
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self.meta.get_bucket(name)
            if bucket is not None:
                self._buckets[name] = bucket
        return bucket

    def forget_bucket(self, name: str) -> None:
        """Drop the cached bucket after changing it outside this class."""
        self._buckets.pop(name, None)

    def bucket(self, grant: Grant, name: str, access: str | None = None, key: str | None = None) -> Bucket:
        """The bucket's row, if ``grant`` covers ``access`` there (None: only seeing the row)."""
        bucket = self.cached_bucket(name)
        grant.require(name, key, access, bucket_owner=bucket.owner if bucket else None)
        if bucket is None:
            raise errors.BucketNotFound(name)
        return bucket

    async def create_bucket(self, grant: Grant, name: str, *, region: str | None = None,
                            attrs: dict[str, Any] | None = None) -> Bucket:
        grant.require(name, None, WRITE)
        principal = grant.principal
        if principal is None:
            raise errors.AccessDenied(name)
        check_bucket_name(name)
        bucket = Bucket(name, principal, time.time_ns(), region or self.region, "", attrs or {})
        self._buckets.pop(name, None)
        try:
            await self.meta.create_bucket(bucket)
        finally:
            self._buckets.pop(name, None)
        return bucket

    async def delete_bucket(self, grant: Grant, name: str) -> None:
        self.bucket(grant, name, WRITE)
        try:
            await self.meta.delete_bucket(name)
        finally:
            self._buckets.pop(name, None)

    def list_buckets(self, grant: Grant, prefix: str = "") -> list[Bucket]:
        """The buckets the grant's principal owns."""
        grant.require(None, None, READ)
        if grant.principal is None:
            return []
        return [b for b in self.meta.list_buckets(grant.principal) if b.name.startswith(prefix)]

    async def set_versioning(self, grant: Grant, name: str, state: str) -> Bucket:
        assert state in ("Enabled", "Suspended")
        self.bucket(grant, name, WRITE)
        try:
            return await self.meta.update_bucket(name, versioning=state)
        finally:
            self._buckets.pop(name, None)

    async def update_bucket_attrs(self, grant: Grant, name: str, patch: dict[str, Any], *,
                                  check: Callable[[Bucket], None] | TxCheck | None = None) -> Bucket:
        self.bucket(grant, name, WRITE)
        try:
            return await self.meta.update_bucket(name, attrs_patch=patch, check=check)
        finally:
            self._buckets.pop(name, None)

    # --- objects: write --------------------------------------------------------
    async def write_bytes(self, source: AsyncIterator[bytes | memoryview], spec: PutSpec, *,
                          defer_sync: bool = False) -> tuple[ObjectWriter, str, int, bytes, list]:
        """Stream ``source`` into the chunk store; verify; return what a commit needs.

        The bytes are durable on return, unless ``defer_sync``: then the caller passes
        ``writer.make_durable`` to the metadata commit, which runs it first. Nothing refers to
        them until a commit does, so this needs no grant; every commit does."""
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

    async def put_object(self, grant: Grant, bucket: str, key: str,
                         source: AsyncIterator[bytes | memoryview], spec: PutSpec) -> ObjectVersion:
        check_key(key)
        # What an anonymous caller writes (where the bucket lets them) belongs to the bucket's owner.
        target = self.bucket(grant, bucket, WRITE, key)
        owner = spec.owner or grant.principal or target.owner
        check = with_create_only(grant, bucket, key, spec.check)
        if check:  # fail fast before reading the body; re-checked atomically at commit
            self.meta.precheck(bucket, key, check)
        writer, etag, size, manifest, new_chunks = await self.write_bytes(source, spec, defer_sync=True)
        obj = ObjectVersion(bucket, key, "", 0, True, False, size, etag, time.time_ns(), owner,
                            spec.attrs, manifest)
        try:
            return await self.meta.put_object(obj, new_chunks=new_chunks, check=check,
                                              make_version_id=new_version_id, durable=writer.make_durable)
        finally:
            writer.done()

    async def copy_object(self, grant: Grant, src: ObjectVersion, bucket: str, key: str, *,
                          attrs: dict[str, Any], check: Check | None = None,
                          start: int | None = None, end: int | None = None,
                          owner: str | None = None) -> ObjectVersion:
        """Copy without moving bytes: the new manifest points at the source's chunks. ``owner``:
        who owns the copy (default: the writer)."""
        check_key(key)
        grant.require(src.bucket, src.key, READ)
        target = self.bucket(grant, bucket, WRITE, key)
        owner = owner or grant.principal or target.owner
        if start is None or end is None:
            manifest, size = src.manifest, src.size
        else:
            slices = mf.Layout(src.manifest).sub_manifest(start, end)
            manifest, size = mf.pack(slices), end - start + 1
        etag = src.etag if start is None else await self.md5_of(manifest, size)
        obj = ObjectVersion(bucket, key, "", 0, True, False, size, etag, time.time_ns(), owner,
                            attrs, manifest)
        return await self.meta.put_object(obj, check=with_create_only(grant, bucket, key, check),
                                          make_version_id=new_version_id)

    async def md5_of(self, manifest: bytes | None, size: int) -> str:
        """The MD5 of bytes already stored (an ETag for a slice of another object)."""
        md5 = hashlib.md5()
        async for piece in self.chunks.read_range(manifest, 0, size - 1):
            md5.update(piece)
        return md5.hexdigest()

    # --- objects: read ---------------------------------------------------------
    def get_object(self, grant: Grant, bucket: str, key: str, version_id: str | None = None,
                   *, access: str = READ) -> ObjectVersion:
        """The version to read (or, with ``access`` WRITE, to change). Raises
        ObjectNotFound/VersionNotFound, or MethodNotAllowed with ``info['delete_marker']`` when the
        version is a delete marker. The row is the one the request's decision was made on, when
        the authorizer read it."""
        b = self.cached_bucket(bucket)
        grant.require(bucket, key, access, bucket_owner=b.owner if b else None)
        if b is None:
            raise errors.BucketNotFound(bucket)
        known, obj = grant.known_object(bucket, key, version_id)
        if not known:
            obj = self.meta.get_object(bucket, key, version_id)
        if obj is None:
            if version_id is not None:
                raise errors.VersionNotFound(key)
            raise errors.ObjectNotFound(key)
        if obj.delete_marker:
            if version_id is None:
                raise errors.ObjectNotFound(key, delete_marker=obj)
            raise errors.MethodNotAllowed(key, delete_marker=obj)
        return obj

    def read(self, grant: Grant, obj: ObjectVersion | Any, start: int = 0, end: int | None = None
             ) -> AsyncIterator[bytes | memoryview]:
        grant.require(obj.bucket, obj.key, READ)
        last = obj.size - 1 if end is None else end
        return self.chunks.read_range(obj.manifest, start, last)

    async def digest(self, grant: Grant, obj: ObjectVersion, digesters: list[Digester], start: int = 0,
                     end: int | None = None) -> None:
        """Feed a stored object's bytes (or a range) to ``digesters`` (a copy asked for a checksum its
        source does not have), hashing on a worker thread a few MiB at a time."""
        last = obj.size - 1 if end is None else end
        if last < start:
            return
        batch: list[bytes | memoryview] = []
        size = 0

        def feed(pieces: list[bytes | memoryview]) -> None:
            for d in digesters:
                for piece in pieces:
                    d.update(piece)

        async for piece in self.read(grant, obj, start, last):
            batch.append(piece)
            size += len(piece)
            if size >= _DIGEST_BATCH:
                await asyncio.to_thread(feed, batch)
                batch, size = [], 0
        if batch:
            await asyncio.to_thread(feed, batch)

    # --- objects: delete and attributes ----------------------------------------
    async def delete_object(self, grant: Grant, bucket: str, key: str, version_id: str | None = None,
                            *, check: Check | None = None) -> tuple[ObjectVersion | None, bool]:
        self.bucket(grant, bucket, WRITE, key)
        return await self.meta.delete_object(bucket, key, version_id, make_version_id=new_version_id,
                                             owner=grant.principal or ANONYMOUS, check=check)

    async def update_object_attrs(self, grant: Grant, bucket: str, key: str, version_id: str | None,
                                  patch: dict[str, Any], *, check: Check | None = None) -> ObjectVersion:
        self.bucket(grant, bucket, WRITE, key)
        return await self.meta.update_object_attrs(bucket, key, version_id, patch, check=check)

    # --- listing ---------------------------------------------------------------
    def list_objects(self, grant: Grant, bucket: str, **kw: Any) -> listing.ListResult:
        self.bucket(grant, bucket, READ)
        return listing.list_objects(self.meta, bucket, **kw)

    def list_versions(self, grant: Grant, bucket: str, **kw: Any) -> listing.VersionListResult:
        self.bucket(grant, bucket, READ)
        return listing.list_versions(self.meta, bucket, **kw)

    def version_row(self, grant: Grant, bucket: str, key: str, version_id: str) -> ObjectVersion | None:
        """One version's row for a listing's marker (None if it is gone)."""
        self.bucket(grant, bucket, READ)
        return self.meta.get_object(bucket, key, version_id)

    def list_latest(self, grant: Grant, bucket: str, after: str | None, limit: int) -> list[ObjectVersion]:
        """Live objects after ``after`` in key order, with their attributes (no manifests)."""
        self.bucket(grant, bucket, READ)
        return self.meta.list_latest(bucket, "", after, limit)
