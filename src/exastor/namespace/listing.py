"""Listing with prefix/delimiter/marker semantics shared by S3 (v1, v2, versions) and Blob.

Keys under one common prefix are skipped with one index seek (cursor = prefix +
U+10FFFF), never read one by one, so a directory with a million objects costs
one row to roll up. The read after such a seek asks for a few rows (_SEEK_PAGE),
not a full page: the next row is often another common prefix, and a full page
there would read ~1,000 rows to use one. The page grows again while rows are
plain keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exastor.meta.contract import KEY_MAX, Metadata
from exastor.meta.records import ObjectVersion, Upload

_PAGE = 1000
_SEEK_PAGE = 8  # rows read after skipping a common prefix (grows x8 per full page of plain keys)


@dataclass
class ListResult:
    objects: list[ObjectVersion] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_marker: str | None = None   # last key or common prefix returned (S3 v1 NextMarker)
    next_cursor: str | None = None   # where to resume exactly (v2 continuation token)


def _common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    i = key.find(delimiter, len(prefix))
    return key[: i + len(delimiter)] if i >= 0 else None


def resume_cursor(marker: str | None, prefix: str, delimiter: str) -> str | None:
    """A marker that is itself a common prefix resumes after everything under it."""
    if marker and delimiter and marker.startswith(prefix) and marker.endswith(delimiter) \
            and _common_prefix(marker, prefix, delimiter) == marker:
        return marker + KEY_MAX
    return marker


def list_objects(meta: Metadata, bucket: str, *, prefix: str = "", delimiter: str = "",
                 cursor: str | None = None, max_keys: int = 1000) -> ListResult:
    result = ListResult()
    if max_keys <= 0:
        return result
    count = 0
    page = _PAGE
    while True:
        rows = meta.list_latest(bucket, prefix, cursor, page)
        if not rows:
            return result
        for row in rows:
            cp = _common_prefix(row.key, prefix, delimiter)
            if count == max_keys:
                result.truncated = True
                return result
            if cp is not None:
                result.prefixes.append(cp)
                result.next_marker, cursor = cp, cp + KEY_MAX
                result.next_cursor = cursor
                count += 1
                page = _SEEK_PAGE
                break  # seek past everything under this prefix
            result.objects.append(row)
            result.next_marker = cursor = result.next_cursor = row.key
            count += 1
        else:
            if len(rows) < page:
                return result
            page = min(_PAGE, page * 8)


@dataclass
class VersionListResult:
    versions: list[ObjectVersion] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key_marker: str | None = None
    next_version_marker: str | None = None


def list_versions(meta: Metadata, bucket: str, *, prefix: str = "", delimiter: str = "",
                  key_marker: str | None = None, version_marker_seq: int | None = None,
                  max_keys: int = 1000) -> VersionListResult:
    result = VersionListResult()
    if max_keys <= 0:
        return result
    after_key = resume_cursor(key_marker, prefix, delimiter)
    after_seq = version_marker_seq if key_marker is not None and after_key == key_marker else None
    count = 0
    page = _PAGE
    while True:
        rows = meta.list_versions(bucket, prefix, after_key, after_seq, page)
        if not rows:
            return result
        for row in rows:
            cp = _common_prefix(row.key, prefix, delimiter)
            if count == max_keys:
                result.truncated = True
                return result
            if cp is not None:
                result.prefixes.append(cp)
                result.next_key_marker, result.next_version_marker = cp, None
                after_key, after_seq = cp + KEY_MAX, None
                count += 1
                page = _SEEK_PAGE
                break
            result.versions.append(row)
            result.next_key_marker, result.next_version_marker = row.key, row.version_id
            after_key, after_seq = row.key, row.seq
            count += 1
        else:
            if len(rows) < page:
                return result
            page = min(_PAGE, page * 8)


def list_uploads(meta: Metadata, bucket: str, *, prefix: str = "", delimiter: str = "",
                 key_marker: str | None = None, upload_id_marker: str | None = None,
                 max_uploads: int = 1000) -> tuple[list[Upload], list[str], bool]:
    uploads: list[Upload] = []
    prefixes: list[str] = []
    after_key = resume_cursor(key_marker, prefix, delimiter)
    after_id = upload_id_marker if after_key == key_marker else None
    if key_marker is not None and after_id is None and after_key == key_marker:
        after_id = "\U0010ffff"  # a key marker alone skips every upload of that key
    count = 0
    while True:
        rows = meta.list_uploads(bucket, prefix, after_key, after_id, _PAGE)
        if not rows:
            return uploads, prefixes, False
        for row in rows:
            if count == max_uploads:
                return uploads, prefixes, True
            cp = _common_prefix(row.key, prefix, delimiter)
            if cp is not None:
                prefixes.append(cp)
                after_key, after_id = cp + KEY_MAX, None
                count += 1
                break
            uploads.append(row)
            after_key, after_id = row.key, row.upload_id
            count += 1
        else:
            if len(rows) < _PAGE:
                return uploads, prefixes, False
