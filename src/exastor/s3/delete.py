"""DeleteObject and DeleteObjects (multi-object delete), conditional deletes included."""

from __future__ import annotations

from datetime import UTC, datetime

from exastor import errors
from exastor.http.conditions import parse_http_date
from exastor.meta.contract import all_of
from exastor.namespace.conditions import DeleteCondition
from exastor.namespace.operations import Check
from exastor.s3 import objectlock
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error, to_s3_error
from exastor.s3.put import etag_matcher
from exastor.s3.xml import el, parse, text

MAX_DELETE_KEYS = 1000


def _lock_check(call: S3Call, version_id: str | None, bypass: bool | None = None) -> Check | None:
    """Only removing a version can break Object Lock; a delete marker never does."""
    if version_id is None or not objectlock.enabled(call.ns.bucket(call.grant, call.bucket or "")):
        return None
    return objectlock.deletion_check(call, bypass)


def _size(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    try:
        size = int(raw.strip())
    except ValueError as exc:
        raise S3Error("InvalidArgument", f"Invalid value for {name}", ArgumentName=name, ArgumentValue=raw) from exc
    if size < 0:
        raise S3Error("InvalidArgument", f"Invalid value for {name}", ArgumentName=name, ArgumentValue=raw)
    return size


def _iso_time(raw: str | None, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise S3Error("InvalidArgument", f"Invalid value for {name}", ArgumentName=name, ArgumentValue=raw) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def delete_condition(call: S3Call) -> DeleteCondition | None:
    """If-Match, x-amz-if-match-last-modified-time and x-amz-if-match-size on DeleteObject."""
    h = call.h
    when = None
    raw_time = h.get("x-amz-if-match-last-modified-time")
    if raw_time is not None:
        when = parse_http_date(raw_time) or _iso_time(raw_time, "x-amz-if-match-last-modified-time")
    cond = DeleteCondition(etag_matcher(h.get("if-match")), when,
                           _size(h.get("x-amz-if-match-size"), "x-amz-if-match-size"))
    return cond if cond.any() else None


async def delete_object(call: S3Call) -> None:
    version_id = call.q.get("versionId")
    check = all_of(delete_condition(call), _lock_check(call, version_id))
    victim, marker = await call.ns.delete_object(call.grant, call.bucket_name, call.object_key, version_id, check=check)
    headers: list[tuple[str, str]] = []
    if marker and victim is not None:
        headers += [("x-amz-delete-marker", "true"), ("x-amz-version-id", victim.version_id)]
    elif victim is not None and version_id is not None:
        headers.append(("x-amz-version-id", victim.version_id))
        if victim.delete_marker:
            headers.append(("x-amz-delete-marker", "true"))
    await call.reply(204, b"", headers)


async def delete_objects(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    if root.tag != "Delete":
        raise S3Error("MalformedXML")
    quiet = (text(root, "Quiet", "false") or "").lower() == "true"
    items = root.findall("Object")
    if not items or len(items) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML")
    call.ns.bucket(call.grant, call.bucket_name)  # NoSuchBucket before anything else
    out: list[str] = []
    for item in items:
        key = text(item, "Key")
        version_id = text(item, "VersionId")
        if key is None:
            raise S3Error("MalformedXML")
        try:
            cond = DeleteCondition(etag_matcher(text(item, "ETag")), _iso_time(text(item, "LastModifiedTime"), "LastModifiedTime"),
                                   _size(text(item, "Size"), "Size"))
            call.grant.extend(key, version_id)  # s3:DeleteObject(Version) for this key, as S3 asks
            victim, marker = await call.ns.delete_object(
                call.grant, call.bucket_name, key, version_id,
                check=all_of(cond if cond.any() else None, _lock_check(call, version_id)))
        except (errors.StoreError, S3Error) as exc:
            failure = exc if isinstance(exc, S3Error) else to_s3_error(exc)
            code, message = failure.code, failure.message
            version = el("VersionId", version_id) if version_id is not None else ""
            out.append(f"<Error>{el('Key', key)}{version}{el('Code', code)}{el('Message', message)}</Error>")
            continue
        if quiet:
            continue
        parts = [el("Key", key)]
        if version_id is not None:
            parts.append(el("VersionId", version_id))
        if marker and victim is not None:
            parts += [el("DeleteMarker", "true"), el("DeleteMarkerVersionId", victim.version_id)]
        elif victim is not None and victim.delete_marker:
            parts += [el("DeleteMarker", "true"), el("DeleteMarkerVersionId", victim.version_id)]
        out.append(f"<Deleted>{''.join(parts)}</Deleted>")
    await call.reply_xml("DeleteResult", "".join(out))
