"""Copy Blob (synchronous within the account: x-ms-copy-status is success on return), Abort Copy,
and the copy-source resolution Put Blob/Block From URL and Append Block From URL share.

A copy composes the destination's manifest from the source's chunk slices: no bytes move.
A source outside this account would need an outbound fetch, which this server does not make.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from exastor.blob.common import (
    ONLINE_TIERS,
    BlobCall,
    check_tier,
    content_props_from_headers,
    metadata_from_headers,
    mtime,
    parse_tags_header,
    plaintext_readable,
    refuse_archived,
    write_check,
)
from exastor.blob.errors import BlobError
from exastor.blob.remote import RemoteSource
from exastor.http.conditions import evaluate, parse_preconditions
from exastor.http.ranges import RangeNotSatisfiable, parse_range
from exastor.meta.records import ObjectVersion


def is_external(h: dict[str, str], account: str) -> bool:
    """Whether x-ms-copy-source names a blob outside this account: its path does not start with the
    account's name (path-style, as this server's URLs are). Such a source is fetched (blob/remote.py)."""
    url = h.get("x-ms-copy-source", "")
    path = unquote(urlsplit(url).path).lstrip("/").split("/", 1)
    return bool(url) and path[0] != account


def asked_range(call: BlobCall) -> tuple[int, int | None] | None:
    """x-ms-source-range as asked (an outside source's size is known only once it answers)."""
    header = call.h.get("x-ms-source-range")
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d{1,19})-(\d{0,19})\s*", header)
    if m is None or (m.group(2) and int(m.group(2)) < int(m.group(1))):
        raise BlobError("InvalidHeaderValue", "x-ms-source-range must be bytes=start-end.")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


async def open_external(call: BlobCall, limit: int, *, ranged: bool = False) -> RemoteSource:
    """The outside source, checked and connected (its status and size known), with the request's
    x-ms-source-if-* conditions sent along for the source's store to decide."""
    rng = asked_range(call) if ranged else None
    conditions = {name: call.h[f"x-ms-source-{name}"] for name in ("if-match", "if-none-match", "if-modified-since",
                                                                  "if-unmodified-since") if f"x-ms-source-{name}" in call.h}
    src = RemoteSource(call.h["x-ms-copy-source"], call.app.copy_source_networks,
                       start=rng[0] if rng else None, end=rng[1] if rng else None, limit=limit,
                       conditions=conditions)
    try:
        return await src.open()  # not a drive: an outbound HTTP fetch (blob/remote.py)
    except BlobError as exc:
        if exc.headers.get("x-ms-copy-source-status-code") in ("304", "412"):
            raise BlobError("SourceConditionNotMet", "The source condition specified is not met.",
                            status=412) from exc
        raise


async def _copy_external(call: BlobCall, *, from_url: bool) -> ObjectVersion:
    """Copy Blob / Put Blob From URL from outside the account: the bytes are fetched and stored."""
    from exastor.blob.common import CONTENT_PROPS, MAX_PUT_BLOB
    from exastor.namespace.operations import PutSpec
    src = await open_external(call, MAX_PUT_BLOB)
    try:
        sh = src.headers
        attrs: dict = {"blob-type": "BlockBlob"}
        source_type = sh.get("x-ms-blob-type", "BlockBlob")
        if source_type == "PageBlob":
            raise BlobError("PageBlobNotSupported")
        if source_type == "AppendBlob" and not from_url:  # Copy Blob keeps the source's type
            attrs["blob-type"] = "AppendBlob"
            count = sh.get("x-ms-blob-committed-block-count", "")
            attrs["committed_blocks"] = int(count) if count.isdigit() else int(src.size > 0)
        if not from_url or call.h.get("x-ms-copy-source-blob-properties", "true").lower() != "false":
            attrs.update({name: sh[name] for name in CONTENT_PROPS if name in sh})
        if from_url and any(k.startswith("x-ms-blob-content-") for k in call.h):
            attrs.update(content_props_from_headers(call.h, fallback=False))
        attrs.setdefault("content-type", "application/octet-stream")
        has_meta = any(k.startswith("x-ms-meta-") for k in call.h)
        meta = metadata_from_headers(call.h, call.meta_names) if has_meta else (
            {} if from_url else {k[len("x-ms-meta-"):]: v for k, v in sh.items() if k.startswith("x-ms-meta-")})
        if meta:
            attrs["meta"] = meta
        tags = parse_tags_header(call.h.get("x-ms-tags"))
        if tags:
            attrs["tags"] = tags
        if call.h.get("x-ms-access-tier"):
            attrs["tier"] = check_tier(call.h["x-ms-access-tier"])
        now = time.time_ns()
        attrs["created_ns"] = now
        if not from_url:
            attrs["copy"] = {"id": str(uuid.uuid4()), "status": "success", "source": call.h["x-ms-copy-source"],
                             "progress": f"{src.size}/{src.size}", "completion_ns": now}
        spec = PutSpec(attrs=attrs, expected_size=src.size, check=write_check(call, create=from_url, lease="write"),
                       verify=md5_verifier(call))
        return await call.ns.put_object(call.grant, call.container_name, call.blob_name, src.body(), spec)
    finally:
        await src.close()


def source_md5(call: BlobCall) -> bytes | None:
    """x-ms-source-content-md5: the MD5 the source's bytes (the range copied) must have."""
    value = call.h.get("x-ms-source-content-md5")
    if value is None:
        return None
    from exastor.http import checksums
    try:
        return checksums.decode_b64_digest(value, 16)
    except checksums.InvalidDigestValue as exc:
        raise BlobError("InvalidHeaderValue", "x-ms-source-content-md5 is not a base64 MD5.",
                        HeaderName="x-ms-source-content-md5") from exc


async def check_source_md5(call: BlobCall, src: ObjectVersion, start: int, end: int) -> None:
    """A local source's range against x-ms-source-content-md5 (read only when the header asks)."""
    want = source_md5(call)
    if want is None:
        return
    md5 = hashlib.md5()
    if end >= start:
        async for piece in call.ns.read(call.grant, src, start, end):
            md5.update(piece)
    if md5.digest() != want:
        raise BlobError("Md5Mismatch", "The MD5 of the copy source does not match x-ms-source-content-md5.")


def md5_verifier(call: BlobCall) -> Callable[[str, int], None] | None:
    """For an outside source, whose bytes are hashed as they are stored: the same check, at the end."""
    want = source_md5(call)
    if want is None:
        return None

    def verify(md5_hex: str, size: int) -> None:
        if bytes.fromhex(md5_hex) != want:
            raise BlobError("Md5Mismatch", "The MD5 of the copy source does not match x-ms-source-content-md5.")
    return verify


def source_location(h: dict[str, str], account: str) -> tuple[str, str, dict[str, str]]:
    """x-ms-copy-source as (container, blob, its query): what the authorizer decides on (with the
    URL's own SAS, if its query has one) and what ``resolve_source`` then reads."""
    url = h.get("x-ms-copy-source", "")
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/").split("/", 2)
    if len(path) < 3 or path[0] != account or not path[1] or not path[2]:
        raise BlobError("CannotVerifyCopySource", "Copy sources must be blobs in this account "
                        "(http://host/account/container/blob).", status=400)
    return path[1], path[2], dict(parse_qsl(parts.query, keep_blank_values=True))


def resolve_source(call: BlobCall, *, rehydrating: bool = False) -> ObjectVersion:
    """The source blob (or snapshot) the request's decision authorized for reading. An archived
    source is refused (409 BlobArchived) unless ``rehydrating``: a Copy Blob into an online tier,
    which is how Azure copies an archived blob."""
    container, blob, query = source_location(call.h, call.app.account)
    if query.get("snapshot"):
        src = call.blobs.get_snapshot(call.grant, container, blob, query["snapshot"]).as_version()
    else:
        from exastor import errors
        try:
            src = call.ns.get_object(call.grant, container, blob)
        except errors.ObjectNotFound as exc:
            raise BlobError("CannotVerifyCopySource", "The source blob does not exist.", status=404) from exc
        except errors.BucketNotFound as exc:
            raise BlobError("CannotVerifyCopySource", "The source container does not exist.", status=404) from exc
    pre = parse_preconditions(call.h, prefix="x-ms-source-")
    if pre.any():
        outcome = evaluate(pre, exists=True, etag=src.etag, last_modified=mtime(src), method="PUT",
                           dates_on_writes=True)
        if outcome != "ok":
            raise BlobError("SourceConditionNotMet", "The source condition specified is not met.", status=412)
    if not rehydrating:
        refuse_archived(src, "Reading the copy source")
    return plaintext_readable(src)


def source_range(call: BlobCall, size: int) -> tuple[int, int]:
    header = call.h.get("x-ms-source-range")
    if not header:
        return 0, size - 1
    try:
        rng = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        raise BlobError("InvalidRange") from exc
    if rng is None:
        raise BlobError("InvalidHeaderValue", "x-ms-source-range must be bytes=start-end.")
    return rng


async def copy_into(call: BlobCall, *, from_url: bool) -> ObjectVersion:
    if is_external(call.h, call.app.account):
        return await _copy_external(call, from_url=from_url)
    dest_tier = check_tier(call.h["x-ms-access-tier"]) if call.h.get("x-ms-access-tier") else None
    src = resolve_source(call, rehydrating=not from_url and dest_tier in ONLINE_TIERS)
    if from_url:
        await check_source_md5(call, src, 0, src.size - 1)
    blob_type = src.attrs.get("blob-type", "BlockBlob")
    if from_url and blob_type != "BlockBlob":
        raise BlobError("InvalidBlobType")
    has_meta = any(k.startswith("x-ms-meta-") for k in call.h)
    attrs = {k: v for k, v in src.attrs.items() if k not in ("tags", "tier", "tier_ns", "copy", "sealed")}
    if from_url and call.h.get("x-ms-copy-source-blob-properties", "true").lower() == "false":
        for k in ("content-type", "content-encoding", "content-language", "cache-control", "content-disposition",
                  "content-md5"):
            attrs.pop(k, None)
    if from_url and any(k.startswith("x-ms-blob-content-") for k in call.h):
        attrs.update(content_props_from_headers(call.h, fallback=False))
    if has_meta or from_url:
        attrs["meta"] = metadata_from_headers(call.h, call.meta_names) if has_meta else attrs.get("meta", {})
        if not attrs["meta"]:
            attrs.pop("meta")
    tags = parse_tags_header(call.h.get("x-ms-tags"))
    if call.h.get("x-ms-copy-source-tag-option", "").upper() == "COPY" and "tags" in src.attrs:
        tags = src.attrs["tags"]
    if tags:
        attrs["tags"] = tags
    if dest_tier:
        attrs["tier"] = dest_tier
    seal = call.h.get("x-ms-seal-blob", "").lower()
    if seal and seal not in ("true", "false"):
        raise BlobError("InvalidHeaderValue", "x-ms-seal-blob must be true or false.", HeaderName="x-ms-seal-blob")
    if seal == "true" and blob_type == "AppendBlob":
        attrs["sealed"] = True  # Azure seals a copied append blob only when asked (x-ms-seal-blob)
    now = time.time_ns()
    attrs["created_ns"] = now
    if not from_url:
        attrs["copy"] = {"id": str(uuid.uuid4()), "status": "success", "source": call.h["x-ms-copy-source"],
                         "progress": f"{src.size}/{src.size}", "completion_ns": now}
    return await call.ns.copy_object(call.grant, src, call.container_name, call.blob_name, attrs=attrs,
                                     check=write_check(call, create=from_url, lease="write"))


async def copy_blob(call: BlobCall) -> None:
    call.lease_guard(call.blob_name, write=True)
    obj = await copy_into(call, from_url=False)
    copy = obj.attrs["copy"]
    await call.reply(202, b"", [("etag", f'"{obj.etag}"'), ("last-modified", time_header(obj)),
                                ("x-ms-copy-id", copy["id"]), ("x-ms-copy-status", "success")])


def time_header(obj: ObjectVersion) -> str:
    from exastor.blob.common import http_date
    return http_date(obj.mtime_ns)


async def abort_copy(call: BlobCall) -> None:
    if call.h.get("x-ms-copy-action", "").lower() != "abort":
        raise BlobError("MissingRequiredHeader", "x-ms-copy-action: abort is required.")
    raise BlobError("NoPendingCopyOperation", "There is currently no pending copy operation (copies within the "
                    "account complete synchronously).", status=409)
