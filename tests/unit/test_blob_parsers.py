"""Hostile input to the Blob parsers added for issue 17 (batch bodies, tag expressions, lease ids,
CORS origin patterns): whatever arrives, the answer is the protocol's error, never an exception a
client would see as a 500. Seeded by hypothesis's database; bounded example counts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exastor.blob.batch import BatchRefused, parse_body
from exastor.blob.common import lease_guid
from exastor.blob.errors import BlobError
from exastor.blob.service import origin_allowed
from exastor.blob.tagfilter import parse_filter, tags_match

_PIECES = st.sampled_from(["--b", "--b--", "\r\n", "Content-Type: application/http", "Content-ID: 0",
                           "Content-ID: x", "DELETE /a/c/b HTTP/1.1", "PUT /a/c/b?comp=tier HTTP/1.1",
                           "x-ms-access-tier: Cool", "Authorization: SharedKey a:b", ":", " ", "\xff", "body"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_batch_bodies_parse_or_refuse(text):
    try:
        subs = parse_body(text.encode("utf-8", "surrogateescape"), "b")
    except BatchRefused as refused:
        assert refused.error.status == 400
        return
    assert 1 <= len(subs) <= 256
    assert all(s.target.startswith("/") and s.content_id.isdigit() for s in subs)


def test_batch_body_limits():
    part = "--b\r\nContent-Type: application/http\r\nContent-ID: {i}\r\n\r\nDELETE /a/c/b{i} HTTP/1.1\r\n\r\n"
    body = "".join(part.format(i=i) for i in range(256)) + "--b--\r\n"
    assert len(parse_body(body.encode(), "b")) == 256
    with pytest.raises(BatchRefused) as ei:
        parse_body(("".join(part.format(i=i) for i in range(257)) + "--b--\r\n").encode(), "b")
    assert ei.value.error.code == "ExceedsMaxBatchRequestCount"


_EXPR = st.lists(st.sampled_from(['"a"', '"b c"', "@container", "x", "=", "<>", ">=", "<", "'1'", "'v w'", "'",
                                  '"', "AND", "and", "OR", "(", ")", " ", "''", '""', "\t", "é"]), max_size=20)


@settings(max_examples=400, deadline=None)
@given(_EXPR.map(" ".join) | st.text(max_size=80))
def test_tag_expressions_parse_or_refuse(expr):
    for parse in (parse_filter, lambda e: tags_match(e, {"a": "1", "b c": "v w"})):
        try:
            parse(expr)
        except BlobError as exc:
            assert exc.status == 400 and exc.code in ("InvalidQueryParameterValue", "InvalidHeaderValue")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF-{}()xz ", max_size=40))
def test_lease_ids_parse_or_refuse(value):
    try:
        normal = lease_guid(value)
    except BlobError as exc:
        assert (exc.status, exc.code) == (400, "InvalidHeaderValue")
        return
    assert normal is not None and len(normal) == 36 and normal == normal.lower()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_origin_patterns_never_raise(pattern, origin):
    assert origin_allowed(pattern, origin) in (True, False)


def test_origin_patterns():
    assert origin_allowed("*", "https://x.org")
    assert origin_allowed("https://*.Contoso.com", "https://A.b.contoso.COM")
    assert not origin_allowed("https://*.contoso.com", "https://contoso.com")
    assert not origin_allowed("https://*.contoso.com", "https://x.contoso.com.evil.org")
    assert not origin_allowed("https://*.contoso.com", "https://evil.org/.contoso.com")
    assert origin_allowed("*.contoso.com", "http://www.contoso.com")
    assert not origin_allowed("https://app.example", "https://app.example.evil")
