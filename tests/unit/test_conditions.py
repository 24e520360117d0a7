"""Conditional headers: S3's documented precedence cases, ETag forms, dates, copy-source variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exastor.http.conditions import (
    Preconditions,
    evaluate,
    evaluate_copy_source,
    format_http_date,
    normalize_etag,
    parse_http_date,
    parse_preconditions,
)

ETAG = '"9b2cf535f27731c974343645a3985328"'
BARE = "9b2cf535f27731c974343645a3985328"
OTHER = '"0123456789abcdef0123456789abcdef"'
# Last-Modified with a fraction: comparisons must use whole seconds.
MODIFIED = datetime(2026, 11, 27, 5, 0, 0, 700_000, tzinfo=UTC)
BEFORE = datetime(2026, 11, 27, 4, 0, 0, tzinfo=UTC)
SAME_SECOND = datetime(2026, 11, 27, 5, 0, 0, tzinfo=UTC)
AFTER = datetime(2026, 11, 27, 6, 0, 0, tzinfo=UTC)


def _eval(method: str = "GET", exists: bool = True, **conditions) -> str:
    return evaluate(Preconditions(**conditions), exists=exists, etag=ETAG if exists else None,
                    last_modified=MODIFIED if exists else None, method=method)


CASES = [
    # (description, method, exists, conditions, expected)
    ("no conditions", "GET", True, {}, "ok"),
    ("if-match equal, quoted", "GET", True, {"if_match": ETAG}, "ok"),
    ("if-match equal, unquoted", "GET", True, {"if_match": BARE}, "ok"),
    ("if-match in a list", "GET", True, {"if_match": f"{OTHER}, {ETAG}"}, "ok"),
    ("if-match different", "GET", True, {"if_match": OTHER}, "failed"),
    ("if-match weak never matches", "GET", True, {"if_match": "W/" + ETAG}, "failed"),
    ("if-match star", "GET", True, {"if_match": "*"}, "ok"),
    ("if-match star, missing", "PUT", False, {"if_match": "*"}, "failed"),
    ("if-match, missing", "GET", False, {"if_match": ETAG}, "failed"),
    ("if-none-match equal: 304 on GET", "GET", True, {"if_none_match": ETAG}, "not_modified"),
    ("if-none-match equal: 304 on HEAD", "HEAD", True, {"if_none_match": BARE}, "not_modified"),
    ("if-none-match weak compares weakly", "GET", True, {"if_none_match": "W/" + ETAG}, "not_modified"),
    ("if-none-match different", "GET", True, {"if_none_match": OTHER}, "ok"),
    ("if-none-match star on PUT, exists", "PUT", True, {"if_none_match": "*"}, "failed"),
    ("if-none-match star on PUT, missing", "PUT", False, {"if_none_match": "*"}, "ok"),
    ("if-none-match star on GET, exists", "GET", True, {"if_none_match": "*"}, "not_modified"),
    ("if-modified-since before", "GET", True, {"if_modified_since": BEFORE}, "ok"),
    ("if-modified-since same second", "GET", True, {"if_modified_since": SAME_SECOND}, "not_modified"),
    ("if-modified-since after", "GET", True, {"if_modified_since": AFTER}, "not_modified"),
    ("if-modified-since ignored on PUT", "PUT", True, {"if_modified_since": AFTER}, "ok"),
    ("if-unmodified-since after", "GET", True, {"if_unmodified_since": AFTER}, "ok"),
    ("if-unmodified-since same second", "GET", True, {"if_unmodified_since": SAME_SECOND}, "ok"),
    ("if-unmodified-since before", "GET", True, {"if_unmodified_since": BEFORE}, "failed"),
    ("if-unmodified-since before, on PUT", "PUT", True, {"if_unmodified_since": BEFORE}, "failed"),
    # S3 GetObject docs: If-Match true + If-Unmodified-Since false -> 200
    ("match true + unmodified false", "GET", True, {"if_match": ETAG, "if_unmodified_since": BEFORE}, "ok"),
    ("match false + unmodified true", "GET", True, {"if_match": OTHER, "if_unmodified_since": AFTER}, "failed"),
    # S3 GetObject docs: If-None-Match false + If-Modified-Since true -> 304
    ("none-match false + modified true", "GET", True,
     {"if_none_match": ETAG, "if_modified_since": BEFORE}, "not_modified"),
    ("none-match true + modified false", "GET", True,
     {"if_none_match": OTHER, "if_modified_since": AFTER}, "ok"),
    ("match true + none-match false", "GET", True, {"if_match": ETAG, "if_none_match": ETAG}, "not_modified"),
    ("match false + none-match true", "GET", True, {"if_match": OTHER, "if_none_match": OTHER}, "failed"),
    ("unmodified false + modified true", "GET", True,
     {"if_unmodified_since": BEFORE, "if_modified_since": BEFORE}, "failed"),
    ("dates on a missing object are ignored", "PUT", False,
     {"if_unmodified_since": BEFORE, "if_modified_since": AFTER}, "ok"),
]


@pytest.mark.parametrize(("method", "exists", "conditions", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evaluate(method: str, exists: bool, conditions: dict, expected: str) -> None:
    assert _eval(method, exists, **conditions) == expected


def test_naive_datetimes_are_utc() -> None:
    pre = Preconditions(if_modified_since=SAME_SECOND.replace(tzinfo=None))
    assert evaluate(pre, exists=True, etag=ETAG, last_modified=MODIFIED.replace(tzinfo=None),
                    method="GET") == "not_modified"


def test_dates_on_writes_for_azure() -> None:
    pre = Preconditions(if_modified_since=AFTER)
    assert evaluate(pre, exists=True, etag=ETAG, last_modified=MODIFIED, method="PUT",
                    dates_on_writes=True) == "failed"
    pre = Preconditions(if_modified_since=BEFORE)
    assert evaluate(pre, exists=True, etag=ETAG, last_modified=MODIFIED, method="PUT",
                    dates_on_writes=True) == "ok"


@pytest.mark.parametrize(("text", "expected"), [
    ("Fri, 27 Nov 2026 05:00:00 GMT", SAME_SECOND),
    ("Friday, 27-Nov-26 05:00:00 GMT", SAME_SECOND),
    ("Fri Nov 27 05:00:00 2026", SAME_SECOND),
    ("Fri, 27 Nov 2026 07:00:00 +0200", SAME_SECOND),
    ("not a date", None),
    ("", None),
    (None, None),
])
def test_parse_http_date(text: str | None, expected: datetime | None) -> None:
    assert parse_http_date(text) == expected


def test_format_http_date_round_trips() -> None:
    text = format_http_date(MODIFIED)
    assert text == "Fri, 27 Nov 2026 05:00:00 GMT"
    assert parse_http_date(text) == SAME_SECOND


def test_parse_preconditions_and_unparsable_dates_ignored() -> None:
    headers = {"if-match": ETAG, "if-none-match": "", "if-modified-since": "garbage",
               "if-unmodified-since": format_http_date(AFTER)}
    pre = parse_preconditions(headers)
    assert pre == Preconditions(if_match=ETAG, if_none_match=None, if_modified_since=None,
                                if_unmodified_since=AFTER)
    assert parse_preconditions({}).any() is False


def test_copy_source_conditions() -> None:
    headers = {"x-amz-copy-source-if-none-match": ETAG, "x-amz-copy-source-if-modified-since":
               format_http_date(BEFORE), "if-match": OTHER}
    pre = parse_preconditions(headers, "x-amz-copy-source-")
    assert pre.if_match is None and pre.if_none_match == ETAG
    # S3 CopyObject: none-match false + modified-since true -> 412 (never 304)
    assert evaluate_copy_source(pre, etag=ETAG, last_modified=MODIFIED) == "failed"
    ok = parse_preconditions({"x-amz-copy-source-if-match": ETAG,
                              "x-amz-copy-source-if-unmodified-since": format_http_date(BEFORE)},
                             "x-amz-copy-source-")
    assert evaluate_copy_source(ok, etag=ETAG, last_modified=MODIFIED) == "ok"


@pytest.mark.parametrize(("raw", "expected"), [(ETAG, BARE), (BARE, BARE), ("W/" + ETAG, BARE),
                                               ('"abc-3"', "abc-3")])
def test_normalize_etag(raw: str, expected: str) -> None:
    assert normalize_etag(raw) == expected


def test_second_granularity_boundary() -> None:
    just_after = SAME_SECOND + timedelta(seconds=1)
    assert _eval(if_unmodified_since=SAME_SECOND) == "ok"
    assert _eval(if_modified_since=just_after) == "not_modified"
    assert _eval(if_modified_since=SAME_SECOND - timedelta(seconds=1)) == "ok"
