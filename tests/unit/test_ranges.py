"""Range parsing, table-driven against S3's documented behaviour, plus a property check."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exastor.http.ranges import RangeNotSatisfiable, content_range, parse_range, unsatisfied_content_range

# (header, size, expected (start, end) or None for "whole object")
SERVED = [
    (None, 10, None),
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=0-9", 10, (0, 9)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=4-", 10, (4, 9)),          # open range
    ("bytes=9-", 10, (9, 9)),
    ("bytes=5-100", 10, (5, 9)),       # end clamped to size-1
    ("bytes=-3", 10, (7, 9)),          # suffix
    ("bytes=-10", 10, (0, 9)),
    ("bytes=-100", 10, (0, 9)),        # suffix longer than the object: whole object as 206
    ("bytes=0-1,3-4", 10, None),       # multi-range: S3 ignores it
    ("bytes=5-2", 10, None),           # reversed: invalid spec, ignored
    ("bytes=-", 10, None),
    ("bytes=", 10, None),
    ("bytes=abc", 10, None),
    ("bytes=+1-2", 10, None),
    ("bytes=1-+2", 10, None),
    ("bytes=1", 10, None),
    ("items=0-1", 10, None),           # unknown unit
    ("0-1", 10, None),
    ("bytes=1_0-20", 100, None),       # int() would accept this; the wire grammar does not
    ("bytes=\u0661-2", 10, None),      # non-ASCII digit
    (" bytes=1-2 ", 10, (1, 2)),
]

UNSATISFIABLE = [
    ("bytes=10-", 10),
    ("bytes=10-20", 10),
    ("bytes=40-50", 7),                # s3-tests test_ranged_request_invalid_range
    ("bytes=0-", 0),                   # zero-length object
    ("bytes=0-0", 0),
    ("bytes=40-50", 0),                # s3-tests test_ranged_request_empty_object
    ("bytes=-5", 0),
    ("bytes=-0", 10),
]


@pytest.mark.parametrize(("header", "size", "expected"), SERVED)
def test_served(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), UNSATISFIABLE)
def test_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert info.value.size == size


def test_content_range_headers() -> None:
    assert content_range(2, 5, 10) == "bytes 2-5/10"
    assert unsatisfied_content_range(7) == "bytes */7"


@given(size=st.integers(0, 1000), a=st.integers(0, 1200), b=st.integers(0, 1200))
def test_range_property(size: int, a: int, b: int) -> None:
    """The served slice equals Python's slicing semantics of the same request."""
    data = bytes(range(256)) * 5
    data = data[:size]
    header = f"bytes={a}-{b}"
    if b < a:
        assert parse_range(header, size) is None
        return
    if a >= size:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    start, end = parse_range(header, size)
    assert data[start:end + 1] == data[a:b + 1]
    if b > 0:
        suffix = parse_range(f"bytes=-{b}", size)
        assert suffix is not None
        assert data[suffix[0]:suffix[1] + 1] == data[-b:]
