"""Multipart uploads: parts are stored as their own manifests; completing an
upload concatenates the chosen parts' manifests (no bytes move).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from exastor import errors
from exastor.meta import manifest as mf
from exastor.meta.records import ObjectVersion, Part, Upload
from exastor.namespace import listing
from exastor.namespace.names import check_key
from exastor.namespace.operations import READ, WRITE, Check, Grant, Namespace, PutSpec, new_version_id

MIN_PART_SIZE = 5 << 20
MAX_PART_NUMBER = 10000


async def create_upload(ns: Namespace, grant: Grant, bucket: str, key: str,
                        attrs: dict[str, Any], *, owner: str | None = None) -> Upload:
    """Parts and completion are authorized like PutObject (bucket policy and ACL), each request.
    ``owner``: who will own the object (default: who starts the upload)."""
    check_key(key)
    target = ns.bucket(grant, bucket, WRITE, key)
    upload = Upload(secrets.token_urlsafe(24), bucket, key, time.time_ns(),
                    owner or grant.principal or target.owner, attrs)
    await ns.meta.create_upload(upload)
    return upload


def get_upload(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str, access: str = WRITE) -> Upload:
    ns.bucket(grant, bucket, access, key)
    upload = ns.meta.get_upload(upload_id)
    if upload is None or upload.bucket != bucket or upload.key != key:
        raise errors.UploadNotFound(upload_id)
    return upload


def list_parts(ns: Namespace, grant: Grant, upload: Upload, after: int, limit: int) -> list[Part]:
    ns.bucket(grant, upload.bucket, READ, upload.key)
    return ns.meta.list_parts(upload.upload_id, after, limit)


def list_uploads(ns: Namespace, grant: Grant, bucket: str, **kw: Any) -> tuple[list[Upload], list[str], bool]:
    ns.bucket(grant, bucket, READ)
    return listing.list_uploads(ns.meta, bucket, **kw)


def check_part_number(part_number: int) -> None:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise errors.InvalidArgument(f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive",
                                     argument="partNumber")


async def upload_part(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str,
                      part_number: int, source: AsyncIterator[bytes | memoryview], spec: PutSpec) -> Part:
    check_part_number(part_number)
    get_upload(ns, grant, bucket, key, upload_id)
    writer, etag, size, manifest, new_chunks = await ns.write_bytes(source, spec, defer_sync=True)
    part = Part(upload_id, part_number, size, etag, time.time_ns(), spec.attrs, manifest)
    try:
        await ns.meta.put_part(part, new_chunks, durable=writer.make_durable)
    finally:
        writer.done()
    return part


async def upload_part_copy(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str,
                           part_number: int, src: ObjectVersion, start: int | None, end: int | None,
                           *, attrs: dict[str, Any] | None = None) -> Part:
    """A part that reuses the source's chunks; a byte range becomes slices of them."""
    check_part_number(part_number)
    grant.require(src.bucket, src.key, READ)
    get_upload(ns, grant, bucket, key, upload_id)
    if start is None or end is None:
        manifest, size, etag = src.manifest, src.size, src.etag.split("-")[0]
        if "-" in src.etag:  # a multipart source's ETag is not an MD5 of the bytes: compute one
            etag = await ns.md5_of(manifest, size) if size else hashlib.md5().hexdigest()
    else:
        manifest = mf.pack(mf.Layout(src.manifest).sub_manifest(start, end))
        size = end - start + 1
        etag = await ns.md5_of(manifest, size)
    part = Part(upload_id, part_number, size, etag, time.time_ns(), attrs or {}, manifest)
    await ns.meta.put_part(part, [])
    return part


def _parts_digest(requested: list[tuple[int, str]]) -> str:
    """What identifies a completion's part list (kept on the object, for a repeated completion)."""
    listed = "\n".join(f"{n}:{etag.strip().strip(chr(34))}" for n, etag in requested)
    return hashlib.sha256(listed.encode()).hexdigest()


async def complete_upload(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str,
                          requested: list[tuple[int, str]], *, check: Check | None = None,
                          finish: Callable[[Upload, list[Part]], dict[str, Any]] | None = None
                          ) -> tuple[ObjectVersion, bool]:
    """Complete an upload; returns (the object, whether it was completed before). ``finish(upload,
    chosen parts)`` runs in the transaction and returns more attributes for the object (its
    checksum), or raises to refuse. Completing an upload that was already completed, with the same
    part list, answers with the object it made (as S3 does) while that object is still there."""
    ns.bucket(grant, bucket, WRITE, key)
    if not requested:
        raise errors.InvalidArgument("You must specify at least one part", malformed=True)
    digest = _parts_digest(requested)
    upload = ns.meta.get_upload(upload_id)
    if upload is None or upload.bucket != bucket or upload.key != key:
        done = _completed(ns, grant, bucket, key, upload_id, digest)
        if done is None:
            raise errors.UploadNotFound(upload_id)
        return done, True
    owner = upload.owner  # decided when the upload began (its Object Ownership)
    if check is not None:  # what the key was when the request arrived; decided again at the commit
        ns.meta.precheck(bucket, key, check)

    def assemble(upload: Upload, parts: dict[int, Part]) -> tuple[ObjectVersion, list[int]]:
        numbers = [n for n, _ in requested]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise errors.InvalidPartOrder("parts must be in ascending order")
        chosen: list[Part] = []
        for number, etag in requested:
            part = parts.get(number)
            if part is None or part.etag != etag.strip().strip('"'):
                raise errors.InvalidPart(f"part {number}", part=number)
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise errors.PartTooSmall(f"part {part.part_number}", part=part.part_number, size=part.size)
        etag_digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in chosen)).hexdigest()
        manifest = b"".join(p.manifest or b"" for p in chosen)
        attrs = dict(upload.attrs)
        attrs["parts"] = [p.size for p in chosen]
        attrs["upload"] = {"id": upload.upload_id, "parts": digest}
        if finish is not None:
            attrs.update(finish(upload, chosen))
        return ObjectVersion(bucket, key, "", 0, True, False, sum(p.size for p in chosen),
                             f"{etag_digest}-{len(chosen)}", time.time_ns(), owner, attrs, manifest), \
            [p.part_number for p in chosen]

    obj = await ns.meta.complete_upload(upload_id, assemble, check=check, make_version_id=new_version_id)
    return obj, False


_COMPLETED_LOOKBACK = 100  # versions of the key searched for an upload completed before


def _completed(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str, digest: str
               ) -> ObjectVersion | None:
    """The version an earlier completion of ``upload_id`` made with the same part list, if it is
    still among the key's latest versions."""
    for obj in ns.meta.list_versions(bucket, key, None, None, _COMPLETED_LOOKBACK):
        if obj.key != key:
            break
        made = obj.attrs.get("upload")
        if made and made.get("id") == upload_id:
            return ns.get_object(grant, bucket, key, obj.version_id, access=WRITE) \
                if made.get("parts") == digest else None
    return None


async def abort_upload(ns: Namespace, grant: Grant, bucket: str, key: str, upload_id: str) -> None:
    get_upload(ns, grant, bucket, key, upload_id)
    await ns.meta.abort_upload(upload_id)
