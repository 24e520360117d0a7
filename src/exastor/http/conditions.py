"""Conditional request headers (If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since).

Evaluated in RFC 9110 section 13.2.2 order, which is also what S3 documents for GetObject/HeadObject:

1. If-Match present: false -> failed (412). When present (and true) If-Unmodified-Since is *not*
   evaluated, so "If-Match true + If-Unmodified-Since false" -> ok.
2. Otherwise If-Unmodified-Since: last modified after the date -> failed (412).
3. If-None-Match present: an entity tag matches -> not_modified (304) for GET/HEAD, failed (412)
   otherwise. When present If-Modified-Since is *not* evaluated, so "If-None-Match false +
   If-Modified-Since true" -> not_modified.
4. Otherwise, for GET/HEAD only, If-Modified-Since: not modified since the date -> not_modified.

Details that follow S3:
- ETags compare with or without surrounding quotes (clients send both). If-Match uses the strong
  comparison (a ``W/`` tag never matches); If-None-Match the weak one. ``*`` matches any existing object.
- Dates compare at second granularity (HTTP dates have no fraction; Last-Modified is sent truncated).
- An unparsable date header is ignored, as S3 does.

What the caller must do around ``evaluate``:
- GET/HEAD of a missing key: S3 answers 404 NoSuchKey whatever the conditions, so check existence
  first and do not call ``evaluate`` (it would return "failed" for If-Match on a missing object).
- PUT/CompleteMultipartUpload with ``If-None-Match: *`` on an existing key -> "failed" (412
  PreconditionFailed). S3 accepts only ``*`` in If-None-Match on writes (anything else: 501
  NotImplemented) - the caller checks that. ``If-Match`` on a write to a missing key: AWS answers 404
  NoSuchKey; ``evaluate`` returns "failed", so map failed+not exists to NoSuchKey for writes.
- Copy-source conditions (``parse_preconditions(headers, "x-amz-copy-source-")``): use
  ``evaluate_copy_source``; S3 answers 412 for every failed copy-source condition, never 304.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Outcome = Literal["ok", "not_modified", "failed"]

_READ_METHODS = frozenset({"GET", "HEAD"})
# One entity-tag in a comma-separated list: optional W/, then a quoted string or a bare token.
_ETAG_ITEM = re.compile(r'\s*(W/)?("[^"]*"|[^,\s]+)\s*(?:,|$)')


@dataclass
class Preconditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.if_match, self.if_none_match,
                                           self.if_modified_since, self.if_unmodified_since))


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime) as an aware UTC datetime; None if unparsable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # asctime carries no zone; HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_http_date(when: datetime) -> str:
    """IMF-fixdate for Last-Modified headers: 'Fri, 27 Nov 2026 05:00:00 GMT'."""
    return _as_utc(when).strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_preconditions(headers: Mapping[str, str], prefix: str = "") -> Preconditions:
    """Read the four conditional headers (lower-cased names), e.g. prefix 'x-amz-copy-source-'."""
    return Preconditions(
        if_match=_non_empty(headers.get(prefix + "if-match")),
        if_none_match=_non_empty(headers.get(prefix + "if-none-match")),
        if_modified_since=parse_http_date(headers.get(prefix + "if-modified-since")),
        if_unmodified_since=parse_http_date(headers.get(prefix + "if-unmodified-since")),
    )


def evaluate(pre: Preconditions, *, exists: bool, etag: str | None, last_modified: datetime | None,
             method: str, dates_on_writes: bool = False) -> Outcome:
    """Decide a request's preconditions against the current object (see the module docstring).

    ``dates_on_writes``: evaluate If-Modified-Since on non-GET/HEAD methods too (Azure Blob does, with
    412; S3 and RFC 9110 ignore it there).
    """
    is_read = method.upper() in _READ_METHODS
    if pre.if_match is not None:
        if not exists or not etag_listed(pre.if_match, etag, weak=False):
            return "failed"
    elif pre.if_unmodified_since is not None and exists and last_modified is not None:
        if _seconds(last_modified) > _seconds(pre.if_unmodified_since):
            return "failed"

    if pre.if_none_match is not None:
        if exists and etag_listed(pre.if_none_match, etag, weak=True):
            return "not_modified" if is_read else "failed"
    elif pre.if_modified_since is not None and exists and last_modified is not None:
        if (is_read or dates_on_writes) and _seconds(last_modified) <= _seconds(pre.if_modified_since):
            return "not_modified" if is_read else "failed"
    return "ok"


def evaluate_copy_source(pre: Preconditions, *, etag: str | None, last_modified: datetime | None
                         ) -> Literal["ok", "failed"]:
    """x-amz-copy-source-if-* against an existing source: S3 answers 412 for every failure."""
    outcome = evaluate(pre, exists=True, etag=etag, last_modified=last_modified, method="GET")
    return "ok" if outcome == "ok" else "failed"


def normalize_etag(etag: str) -> str:
    """The opaque part of an ETag: without W/ and without surrounding quotes."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    if len(etag) >= 2 and etag[0] == '"' and etag[-1] == '"':
        etag = etag[1:-1]
    return etag


def etag_listed(header: str, etag: str | None, *, weak: bool) -> bool:
    """Whether the header's list (or ``*``) matches the current ETag (``weak``: W/ tags count too)."""
    if header.strip() == "*":
        return True
    if etag is None:
        return False
    current = normalize_etag(etag)
    for match in _ETAG_ITEM.finditer(header):
        is_weak, tag = match.group(1), match.group(2)
        if tag == "*":
            return True
        if is_weak and not weak:
            continue  # strong comparison: weak tags never match
        if normalize_etag(tag) == current:
            return True
    return False


def _non_empty(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _seconds(when: datetime) -> int:
    """Whole seconds since the epoch; naive datetimes are taken as UTC."""
    return int(_as_utc(when).timestamp() // 1)
