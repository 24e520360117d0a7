"""Tag filter expressions (Find Blobs by Tags, x-ms-if-tags): ``"key" op 'value'`` joined by AND, op
one of = > >= < <=, plus ``@container``. Below common.py, which evaluates x-ms-if-tags, and tags.py,
which serves the tag operations: both import it, it imports neither."""

from __future__ import annotations

import re

from exastor.blob.errors import BlobError

_TERM = re.compile(r"""\s*("(?:[^"]+)"|@container|[A-Za-z0-9_.\-]+)\s*(>=|<=|=|<|>)\s*'([^']*)'\s*""")


def parse_filter(expr: str) -> list[tuple[str, str, str]]:
    terms = []
    for part in re.split(r"\s+AND\s+", expr.strip(), flags=re.IGNORECASE):
        m = _TERM.fullmatch(part)
        if not m:
            raise BlobError("InvalidQueryParameterValue", "Invalid tag filter expression.")
        key = m.group(1).strip('"')
        terms.append((key, m.group(2), m.group(3)))
    return terms


def term_holds(value: str | None, op: str, want: str) -> bool:
    if value is None:
        return False
    return {"=": value == want, ">": value > want, ">=": value >= want, "<": value < want,
            "<=": value <= want}[op]


def tags_match(expr: str, tags: dict[str, str], container: str | None = None) -> bool:
    for key, op, want in parse_filter(expr):
        value = container if key == "@container" else tags.get(key)
        if not term_holds(value, op, want):
            return False
    return True
