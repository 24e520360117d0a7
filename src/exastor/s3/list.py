"""ListObjects (v1), ListObjectsV2 and ListObjectVersions."""

from __future__ import annotations

import base64
import binascii
import re

from exastor.meta.records import ObjectVersion
from exastor.namespace.listing import resume_cursor
from exastor.s3.common import S3Call, url_encode_if
from exastor.s3.errors import S3Error
from exastor.s3.xml import el, iso8601, owner_xml


def _max_keys(call: S3Call, name: str = "max-keys") -> int:
    raw = call.q.get(name, "1000")
    try:
        value = int(raw)
    except ValueError as exc:
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer range",
                      ArgumentName=name, ArgumentValue=raw) from exc
    if value < 0:
        raise S3Error("InvalidArgument", f"{name} cannot be negative", ArgumentName=name, ArgumentValue=raw)
    return min(value, 1000)


def _encoding(call: S3Call) -> str | None:
    enc = call.q.get("encoding-type")
    if enc is not None and enc.lower() != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", ArgumentName="encoding-type")
    return enc.lower() if enc else None


def _storage_class(obj: ObjectVersion) -> str:
    return obj.attrs.get("storage-class", "STANDARD")


def _contents(obj: ObjectVersion, enc: str | None, owner: bool) -> str:
    parts = [el("Key", url_encode_if(obj.key, enc)), el("LastModified", iso8601(obj.mtime_ns)),
             el("ETag", f'"{obj.etag}"'), el("Size", obj.size), el("StorageClass", _storage_class(obj))]
    if owner:
        parts.append(owner_xml(obj.owner))
    return f"<Contents>{''.join(parts)}</Contents>"


def _prefixes(prefixes: list[str], enc: str | None) -> str:
    return "".join(f"<CommonPrefixes>{el('Prefix', url_encode_if(p, enc))}</CommonPrefixes>" for p in prefixes)


_VERSION_ID = re.compile(r"null|[0-9a-f]{16,64}")


def _check_unordered(call: S3Call, delimiter: str) -> None:
    """``allow-unordered`` (a radosgw extension) permits any order, which we meet by listing in
    order; like radosgw, it cannot be combined with a delimiter."""
    if call.q.get("allow-unordered", "").lower() == "true" and delimiter:
        raise S3Error("InvalidArgument", "allow-unordered cannot be used with a delimiter",
                      ArgumentName="allow-unordered")


async def list_objects_v1(call: S3Call) -> None:
    q = call.q
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    _check_unordered(call, delimiter)
    enc, max_keys = _encoding(call), _max_keys(call)
    res = call.ns.list_objects(call.grant, call.bucket_name, prefix=prefix, delimiter=delimiter,
                               cursor=resume_cursor(marker or None, prefix, delimiter), max_keys=max_keys)
    # v1 leaves Prefix as sent even with encoding-type=url (botocore decodes every other field)
    head = [el("Name", call.bucket), el("Prefix", prefix), el("Marker", url_encode_if(marker, enc)),
            el("MaxKeys", max_keys), el("IsTruncated", str(res.truncated).lower())]
    if delimiter:
        head.append(el("Delimiter", url_encode_if(delimiter, enc)))
    if enc:
        head.append(el("EncodingType", enc))
    if res.truncated and delimiter and res.next_marker:
        head.append(el("NextMarker", url_encode_if(res.next_marker, enc)))
    body = "".join(_contents(o, enc, True) for o in res.objects) + _prefixes(res.prefixes, enc)
    await call.reply_xml("ListBucketResult", "".join(head) + body)


def _token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode("utf-8", "surrogatepass")).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from exc


async def list_objects_v2(call: S3Call) -> None:
    q = call.q
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    enc, max_keys = _encoding(call), _max_keys(call)
    token = q.get("continuation-token")
    start_after = q.get("start-after", "")
    _check_unordered(call, delimiter)
    if token:
        cursor: str | None = _untoken(token)
    else:
        cursor = resume_cursor(start_after or None, prefix, delimiter)
    fetch_owner = q.get("fetch-owner", "false").lower() == "true"
    res = call.ns.list_objects(call.grant, call.bucket_name, prefix=prefix, delimiter=delimiter, cursor=cursor,
                               max_keys=max_keys)
    head = [el("Name", call.bucket), el("Prefix", url_encode_if(prefix, enc)), el("MaxKeys", max_keys),
            el("KeyCount", len(res.objects) + len(res.prefixes)), el("IsTruncated", str(res.truncated).lower())]
    if delimiter:
        head.append(el("Delimiter", url_encode_if(delimiter, enc)))
    if enc:
        head.append(el("EncodingType", enc))
    if token is not None:
        head.append(el("ContinuationToken", token))
    if start_after:
        head.append(el("StartAfter", url_encode_if(start_after, enc)))
    if res.truncated and res.next_cursor is not None:
        head.append(el("NextContinuationToken", _token(res.next_cursor)))
    body = "".join(_contents(o, enc, fetch_owner) for o in res.objects) + _prefixes(res.prefixes, enc)
    await call.reply_xml("ListBucketResult", "".join(head) + body)


async def list_object_versions(call: S3Call) -> None:
    q = call.q
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, version_marker = q.get("key-marker"), q.get("version-id-marker")
    enc, max_keys = _encoding(call), _max_keys(call)
    if version_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                      ArgumentName="version-id-marker")
    marker_seq = None
    if key_marker and version_marker:
        marker_obj = call.ns.version_row(call.grant, call.bucket_name, key_marker, version_marker)
        if marker_obj is not None:
            marker_seq = marker_obj.seq
        elif _VERSION_ID.fullmatch(version_marker):
            # The marker version was deleted since the last page (a client deleting as it lists):
            # resume with all of the marker key's versions; some may repeat, none are skipped.
            marker_seq = 1 << 62
        else:
            raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName="version-id-marker")
    res = call.ns.list_versions(call.grant, call.bucket_name, prefix=prefix, delimiter=delimiter,
                                key_marker=key_marker or None, version_marker_seq=marker_seq, max_keys=max_keys)
    head = [el("Name", call.bucket), el("Prefix", url_encode_if(prefix, enc)),
            el("KeyMarker", url_encode_if(key_marker or "", enc)), el("VersionIdMarker", version_marker or ""),
            el("MaxKeys", max_keys), el("IsTruncated", str(res.truncated).lower())]
    if delimiter:
        head.append(el("Delimiter", url_encode_if(delimiter, enc)))
    if enc:
        head.append(el("EncodingType", enc))
    if res.truncated:
        if res.next_key_marker is not None:
            head.append(el("NextKeyMarker", url_encode_if(res.next_key_marker, enc)))
        if res.next_version_marker is not None:
            head.append(el("NextVersionIdMarker", res.next_version_marker))
    body = []
    for v in res.versions:
        common = (el("Key", url_encode_if(v.key, enc)) + el("VersionId", v.version_id)
                  + el("IsLatest", str(v.is_latest).lower()) + el("LastModified", iso8601(v.mtime_ns)))
        if v.delete_marker:
            body.append(f"<DeleteMarker>{common}{owner_xml(v.owner)}</DeleteMarker>")
        else:
            body.append(f"<Version>{common}{el('ETag', chr(34) + v.etag + chr(34))}{el('Size', v.size)}"
                        f"{el('StorageClass', _storage_class(v))}{owner_xml(v.owner)}</Version>")
    await call.reply_xml("ListVersionsResult", "".join(head) + "".join(body) + _prefixes(res.prefixes, enc))
