"""HTTP ``Range: bytes=...`` parsing with S3's (and Azure's x-ms-range) semantics.

S3 serves exactly one byte range. Anything it cannot use as one range is ignored and the whole
object is returned with 200 (RFC 9110 lets a server ignore Range): a missing ``bytes=`` unit,
multiple ranges (``bytes=0-1,3-4``), reversed ranges (``bytes=5-2``), signs, spaces or junk.
Only a well-formed single range that selects no byte is an error (416 InvalidRange):

- ``bytes=N-`` / ``bytes=N-M`` with N >= size (so every range on a zero-length object),
- ``bytes=-0`` (an empty suffix).

MinIO differs on one point: it answers 416 for a reversed ``bytes=5-2``; we follow AWS/RFC and ignore it.
A suffix ``bytes=-N`` on a zero-length object selects nothing either; AWS answers 416 and so do we,
which also keeps the return type an inclusive (start, end) pair.
"""

from __future__ import annotations

import re


class RangeNotSatisfiable(ValueError):
    """The range selects no byte of the object (S3: 416 InvalidRange; Azure: 416 InvalidRange).

    ``size`` is the object's length, for ``Content-Range: bytes */size`` and S3's ActualObjectSize.
    """

    def __init__(self, header: str, size: int) -> None:
        self.header = header
        self.size = size
        super().__init__(f"range {header!r} not satisfiable for a {size}-byte object")


# ASCII digits only: int() alone would accept '+5', ' 5', '1_0' and non-ASCII digits.
_SINGLE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
# Past any object's size; offsets with more digits are read as this (int() refuses > 4300 digits,
# and a 5,000-digit offset must be a 416 or a clamp like any other large one, never a 500).
BEYOND_ANY_SIZE = 10**19


def bounded_int(digits: str) -> int:
    """A non-negative decimal offset, saturating at BEYOND_ANY_SIZE (``digits`` is ASCII digits)."""
    digits = digits.lstrip("0") or "0"
    return BEYOND_ANY_SIZE if len(digits) > 19 else min(int(digits), BEYOND_ANY_SIZE)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of the single range to serve, or None to serve the whole object.

    Raises RangeNotSatisfiable when a valid single range selects no byte.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None  # not a single byte range S3 understands: ignored
    first, last = match.group(1), match.group(2)
    if first:
        start = bounded_int(first)
        end = bounded_int(last) if last else size - 1
        if last and end < start:
            return None  # invalid byte-range-spec: the header is ignored
        if start >= size:
            raise RangeNotSatisfiable(header, size)
        return start, min(end, size - 1)
    if not last:
        return None  # 'bytes=-' names no range
    suffix = bounded_int(last)
    if suffix == 0 or size == 0:
        raise RangeNotSatisfiable(header, size)
    return max(size - suffix, 0), size - 1


def content_range(start: int, end: int, size: int) -> str:
    """The Content-Range of a 206 response."""
    return f"bytes {start}-{end}/{size}"


def unsatisfied_content_range(size: int) -> str:
    """The Content-Range of a 416 response."""
    return f"bytes */{size}"
