"""PutObject and CopyObject."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, unquote

from exastor import errors
from exastor.http import checksums
from exastor.http.conditions import etag_listed, evaluate_copy_source, parse_preconditions
from exastor.http.ranges import RangeNotSatisfiable, bounded_int, parse_range
from exastor.meta.records import ObjectVersion
from exastor.namespace.conditions import WriteCondition
from exastor.namespace.operations import Check
from exastor.s3 import access, checksum, objectlock, sse
from exastor.s3.acl import acl_from_headers
from exastor.s3.common import MAX_PUT_SIZE, S3Call, attrs_from_headers, mtime
from exastor.s3.errors import S3Error
from exastor.s3.xml import el, iso8601


def write_check(call: S3Call) -> Check | None:
    """If-Match / If-None-Match on a write (PutObject, CompleteMultipartUpload, CopyObject's
    destination), decided inside the write's transaction (namespace/conditions.py). As S3 does: only
    ``*`` in If-None-Match, and not both headers at once (501 NotImplemented otherwise)."""
    if_match, if_none_match = call.h.get("if-match"), call.h.get("if-none-match")
    if if_match is not None and not if_match.strip():
        if_match = None
    if if_none_match is not None and not if_none_match.strip():
        if_none_match = None
    if if_match is None and if_none_match is None:
        return None
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error("NotImplemented", "A header you provided implies functionality that is not implemented",
                      Header="If-None-Match")
    if if_match is not None and if_none_match is not None:
        raise S3Error("NotImplemented", "A header you provided implies functionality that is not implemented",
                      Header="If-Match")
    return WriteCondition(etag_matcher(if_match), if_none_match is not None)


def etag_matcher(header: str | None) -> Callable[[str], bool] | None:
    """If-Match's ETag list (or ``*``) as the predicate namespace conditions take."""
    if header is None or not header.strip():
        return None
    return partial(_listed, header)


def _listed(header: str, etag: str) -> bool:
    return etag_listed(header, etag, weak=False)


def object_acl(call: S3Call, attrs: dict[str, Any]) -> str | None:
    """The ACL and Object Lock settings a new object gets from the request's headers
    (x-amz-acl / x-amz-grant-*, x-amz-object-lock-*) and the bucket's defaults; returns who owns
    the object when that is not the writer (Object Ownership, s3/access.py)."""
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    access.refuse_acl_if_disabled(call, bucket, for_object=True)
    for name in ("retention", "legal_hold"):
        attrs.pop(name, None)
    attrs.update(objectlock.attrs_for_new_object(call, bucket))
    bucket_owner = bucket.owner  # ns.bucket() raises NoSuchBucket, never returns None
    owner = access.new_object_owner(call, bucket, call.h.get("x-amz-acl"))
    attrs.pop("acl", None)
    if access.acls_disabled(bucket):
        return owner
    acl = acl_from_headers(call.h, owner or call.principal or bucket_owner, bucket_owner, call.ns.user_exists,
                           for_object=True, user_by_email=call.ns.user_by_email)
    if acl is not None:
        attrs["acl"] = acl
    return owner


async def put_object(call: S3Call) -> None:
    attrs = attrs_from_headers(call.h)
    owner = object_acl(call, attrs)
    ck = sse.new_object_encryption(call.h, attrs, at_rest=call.ns.encrypted_at_rest)
    spec = call.put_spec(attrs)
    spec.check = write_check(call)
    spec.owner = owner
    body = sse.wrap_put(call.body(MAX_PUT_SIZE, spec=spec), ck, attrs, spec)
    obj = await call.ns.put_object(call.grant, call.bucket_name, call.object_key, body, spec)
    headers = [("etag", f'"{obj.etag}"'), *checksum.headers(checksum.record(obj.attrs)),
               *sse.response_headers(obj.attrs)]
    if obj.version_id != "null":
        headers.append(("x-amz-version-id", obj.version_id))
    await call.reply(200, b"", headers)


def parse_copy_source(header: str) -> tuple[str, str, str | None]:
    """x-amz-copy-source as (bucket, key, versionId): what the authorizer decides on, and what
    ``copy_source`` then reads."""
    # The header is URL-encoded: split off "?versionId=" before decoding, as a key may contain "?".
    raw_path, _, query = header.partition("?")
    path = unquote(raw_path).lstrip("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
    version_id = dict(parse_qsl(query, keep_blank_values=True)).get("versionId") if query else None
    return bucket, key, version_id


def copy_source(call: S3Call) -> ObjectVersion:
    """Resolve x-amz-copy-source (with its conditions) to the source version the request's decision
    authorized (s3:GetObject on it, with the caller's own rights)."""
    bucket, key, version_id = parse_copy_source(call.h["x-amz-copy-source"])
    try:
        src = call.ns.get_object(call.grant, bucket, key, version_id)
    except errors.MethodNotAllowed as exc:
        raise S3Error("InvalidRequest", "The source of a copy request may not specifically refer to a delete "
                      "marker by version id.") from exc
    sse.key_for_read(call.h, src, sse.COPY_PREFIX)
    pre = parse_preconditions(call.h, prefix="x-amz-copy-source-")
    if pre.any() and evaluate_copy_source(pre, etag=src.etag, last_modified=mtime(src)) == "failed":
        raise S3Error("PreconditionFailed")
    return src


async def copy_object(call: S3Call) -> None:
    src = copy_source(call)
    directive = call.h.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.")
    same = src.bucket == call.bucket and src.key == call.key
    if directive == "COPY":
        attrs = {k: v for k, v in src.attrs.items() if k not in _NOT_COPIED}
        if "x-amz-tagging" in call.h or call.h.get("x-amz-tagging-directive", "").upper() == "REPLACE":
            attrs["tags"] = attrs_from_headers(call.h).get("tags", {})
        if "x-amz-storage-class" in call.h:
            attrs["storage-class"] = call.h["x-amz-storage-class"]
        if same and "x-amz-storage-class" not in call.h and src.version_id == "null" \
                and not call.h.get("x-amz-copy-source", "").count("versionId="):
            raise S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to "
                          "itself without changing the object's metadata, storage class, website redirect "
                          "location or encryption attributes.")
    else:
        attrs = attrs_from_headers(call.h)
        if call.h.get("x-amz-tagging-directive", "COPY").upper() == "COPY" and "tags" in src.attrs:
            attrs["tags"] = src.attrs["tags"]
    owner = object_acl(call, attrs)
    _copy_encryption(call, src, attrs)
    check = write_check(call)
    await _copy_checksum(call, src, attrs)
    obj = await call.ns.copy_object(call.grant, src, call.bucket_name, call.object_key, attrs=attrs, check=check, owner=owner)
    headers = []
    if obj.version_id != "null":
        headers.append(("x-amz-version-id", obj.version_id))
    if src.version_id != "null":
        headers.append(("x-amz-copy-source-version-id", src.version_id))
    inner = (el("LastModified", iso8601(obj.mtime_ns)) + el("ETag", f'"{obj.etag}"')
             + checksum.xml_elements(checksum.record(obj.attrs)))
    await call.reply_xml("CopyObjectResult", inner, headers)


# What a copy does not take from its source: how the source was assembled (its parts), and the
# checksums, which _copy_checksum sets for the copy.
_NOT_COPIED = ("parts", "part_checksums", "upload", "checksum", "checksums")


async def _copy_checksum(call: S3Call, src: ObjectVersion, attrs: dict[str, Any]) -> None:
    """The copy's full-object checksum: x-amz-checksum-algorithm's, else the source's algorithm. The
    source's value serves when it is that algorithm's full-object checksum; otherwise (a composite
    source, another algorithm) the stored bytes are hashed, as S3 recomputes it."""
    for name in _NOT_COPIED:
        attrs.pop(name, None)
    rec = checksum.record(src.attrs)
    wanted = call.h.get("x-amz-checksum-algorithm")
    algorithm = checksum.algorithm_name(wanted) if wanted else (rec["algorithm"] if rec else None)
    algorithm = algorithm or checksum.DEFAULT_ALGORITHM
    if rec and rec["algorithm"] == algorithm and rec["type"] == checksum.FULL_OBJECT:
        attrs["checksum"] = dict(rec)
        return
    if "sse_c" in src.attrs:
        return  # the stored bytes are ciphertext; a checksum covers the plaintext
    running = checksums.new_checksum(algorithm)
    await call.ns.digest(call.grant, src, [running])
    attrs["checksum"] = {"algorithm": algorithm, "type": checksum.FULL_OBJECT, "value": running.b64()}


def _copy_encryption(call: S3Call, src: ObjectVersion, attrs: dict[str, Any]) -> None:
    """A copy shares the source's stored bytes, so it keeps the source's encryption: an SSE-C
    source can only be copied under the same key (re-encrypting would mean moving the bytes)."""
    ck = sse.customer_key(call.h)
    attrs.update(sse.check_sse_headers(call.h, at_rest=call.ns.encrypted_at_rest))
    stored = src.attrs.get("sse_c")
    if stored is None:
        attrs.pop("sse_c", None)
        if ck is not None:
            raise S3Error("NotImplemented", "encrypting an unencrypted object while copying it is not supported")
        return
    if ck is None or ck.key_md5 != stored["key_md5"]:
        raise S3Error("NotImplemented", "re-encrypting an SSE-C object under another key while copying it is not "
                      "supported")
    attrs["sse_c"] = stored


def copy_range(call: S3Call, src: ObjectVersion) -> tuple[int, int] | tuple[None, None]:
    header = call.h.get("x-amz-copy-source-range")
    if header is None:
        return None, None
    try:
        rng = parse_range(header, src.size)
    except RangeNotSatisfiable as exc:
        raise S3Error("InvalidRange") from exc
    if rng is None or not header.startswith("bytes=") or header.startswith("bytes=-") \
            or header.rstrip().endswith("-"):
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form "
                      "bytes=first-last where first and last are the zero-based offsets of the first and last bytes "
                      "to copy")
    start, end = rng
    if end >= src.size or bounded_int(header.split("-")[-1].strip()) >= src.size:
        raise S3Error("InvalidRange")
    return start, end
