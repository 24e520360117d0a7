"""Hostile names and ranges get the protocol's 4xx, never a 500 (issue 12's "smaller holes").

Each of these answered 500 or stored something it must not before the fix: a bucket named with a
trailing newline (``re.match`` with ``$``), a key with an invalid UTF-8 byte (%FF), and a Range with
5,000 digits (``int()`` refuses more than 4,300)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from _blobutil import blob_signed
from _s3util import signed_request
from azure.storage.blob import BlobServiceClient


def _code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code") if body else None


def test_bucket_name_with_trailing_newline_is_invalid(exastor_server, s3):
    status, _, body = signed_request(exastor_server, "PUT", "/abcd%0A")
    assert status == 400 and _code(body) == "InvalidBucketName"
    assert "abcd\n" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_key_with_invalid_utf8_is_a_400(exastor_server, s3, bucket):
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        status, _, body = signed_request(exastor_server, method, f"/{bucket}/bad%FFkey", body=b"x" * (method == "PUT"))
        assert status == 400, (method, status, body)
        if method != "HEAD":
            assert _code(body) == "InvalidURI"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("name", ["k%00x", "%00%2A"])
def test_key_with_a_nul_is_a_400_on_every_backend(exastor_server, s3, bucket, name):
    """A NUL names nothing: PostgreSQL cannot store it (the embedded SQLite could, so the two backends
    disagreed), and ``%00*`` spells the authorizer's every-key grant (auth/decision.py ANY_KEY): a
    request that could name it could be granted a key that covers the whole bucket."""
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        status, _, body = signed_request(exastor_server, method, f"/{bucket}/{name}", body=b"x" * (method == "PUT"))
        assert status == 400, (method, status, body)
        if method != "HEAD":
            assert _code(body) == "InvalidURI"
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}/{name}?acl",
                                     headers={"x-amz-acl": "public-read"})
    assert status == 400, (status, body)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    account = exastor_server.account_name
    svc = BlobServiceClient.from_connection_string(exastor_server.connection_string)
    svc.create_container("nulctr")
    try:
        status, headers, _ = blob_signed(exastor_server, "PUT", f"/{account}/nulctr/{name}",
                                         {"x-ms-blob-type": "BlockBlob", "Content-Length": "0"})
        assert status == 400 and headers.get("x-ms-error-code") == "InvalidUri", status
        assert list(svc.get_container_client("nulctr").list_blobs()) == []
    finally:
        svc.delete_container("nulctr")


@pytest.mark.parametrize("rng", ["bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000,
                                 "bytes=" + "0" * 4999 + "1-"])
def test_five_thousand_digit_range(exastor_server, s3, bucket, rng):
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    status, headers, body = signed_request(exastor_server, "GET", f"/{bucket}/r", headers={"Range": rng})
    assert status in (200, 206, 416), (status, body[:200])
    if rng.startswith("bytes=9"):
        assert status == 416 and _code(body) == "InvalidRange"
    elif status == 206:
        assert body in (b"0123456789", b"123456789")
    # and as a copy source range: InvalidRange / InvalidArgument, never a 500
    s3.create_multipart_upload(Bucket=bucket, Key="mp")
    upload = s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["UploadId"]
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}/mp?partNumber=1&uploadId={upload}",
                                     headers={"x-amz-copy-source": f"{bucket}/r", "x-amz-copy-source-range": rng})
    assert 400 <= status < 500, (status, body[:200])
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_blob_names_and_ranges(exastor_server):
    account = exastor_server.account_name
    status, headers, _ = blob_signed(exastor_server, "PUT", f"/{account}/abcd%0A?restype=container")
    assert status == 400 and headers.get("x-ms-error-code") == "InvalidResourceName"
    svc = BlobServiceClient.from_connection_string(exastor_server.connection_string)
    assert "abcd\n" not in [c.name for c in svc.list_containers()]
    cc = svc.create_container("rangectr")
    try:
        cc.upload_blob("r", b"0123456789")
        status, headers, _ = blob_signed(exastor_server, "GET", f"/{account}/rangectr/bad%FFname")
        assert status == 400 and headers.get("x-ms-error-code") == "InvalidUri"
        status, headers, _ = blob_signed(exastor_server, "PUT", f"/{account}/rangectr/bad%FFname",
                                         {"x-ms-blob-type": "BlockBlob", "Content-Length": "0"})
        assert status == 400, status
        for rng in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000):
            status, _, body = blob_signed(exastor_server, "GET", f"/{account}/rangectr/r", {"x-ms-range": rng})
            assert status in (200, 206, 416), (status, body[:200])
    finally:
        cc.delete_container()


# --- found by the fuzzer (bench/fuzz.py, tests/api/test_fuzz.py): each answered 500 before its fix ---


def test_empty_bucket_segment_is_an_invalid_bucket_name(exastor_server):
    """``PUT //`` reached CreateBucket with the bucket name "" (an assertion: 500)."""
    for method, target in (("PUT", "//"), ("PUT", "//?partNumber=3&uploadId=x"), ("GET", "//key"),
                           ("DELETE", "//")):
        status, _, body = signed_request(exastor_server, method, target)
        assert status == 400 and _code(body) == "InvalidBucketName", (method, target, status, body[:300])


def test_xml_declaring_an_unknown_encoding_is_malformed(exastor_server, bucket):
    """``<?xml version="1.0" encoding="ebcdic"?>``: the parser's LookupError was a 500."""
    doc = b'<?xml version="1.0" encoding="ebcdic"?><Tagging><TagSet/></Tagging>'
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}?tagging", body=doc)
    assert status == 400 and _code(body) == "MalformedXML", (status, body[:300])
    status, _, body = signed_request(exastor_server, "PUT", "/fz-ebcdic-bucket", body=doc)
    assert status == 400 and _code(body) == "MalformedXML", (status, body[:300])
    account = exastor_server.account_name
    status, _, _ = blob_signed(exastor_server, "PUT", f"/{account}/ctr-ebcdic?restype=container")
    assert status == 201
    status, headers, _ = blob_signed(exastor_server, "PUT", f"/{account}/ctr-ebcdic/b?comp=blocklist",
                                     {"Content-Length": str(len(doc))}, body=doc)
    assert status == 400 and headers.get("x-ms-error-code") == "InvalidXmlDocument", (status, headers)


@pytest.mark.parametrize("doc", [
    # external entity (XXE) and entity expansion (billion laughs): no request document has a DTD
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;'
    b"</Key></Object></Delete>",
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><Delete><Object><Key>&c;</Key></Object></Delete>',
])
def test_xml_with_a_document_type_declaration_is_refused(exastor_server, s3, bucket, doc):
    import base64
    import hashlib

    s3.put_object(Bucket=bucket, Key="aaaaaaaaaa" * 100, Body=b"x")
    md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
    status, _, body = signed_request(exastor_server, "POST", f"/{bucket}?delete", body=doc,
                                     headers={"Content-MD5": md5})
    assert status == 400 and _code(body) == "MalformedXML", (status, body[:300])
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


@pytest.mark.parametrize("subresource", ["policy", "cors", "lifecycle", "encryption"])
def test_bucket_document_that_is_not_utf8_is_malformed(exastor_server, bucket, subresource):
    """A stored bucket document is kept as text: bytes that are not UTF-8 were a UnicodeDecodeError."""
    import base64
    import hashlib

    doc = b"\xa5\xff<x/>"
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}?{subresource}", body=doc,
                                     headers={"Content-MD5": base64.b64encode(hashlib.md5(doc).digest()).decode()})
    assert status == 400, (status, body[:300])
    assert _code(body) == ("MalformedPolicy" if subresource == "policy" else "MalformedXML"), body[:300]


def test_bucket_policy_nested_thousands_deep_is_malformed(exastor_server, bucket):
    """json.loads raises RecursionError (not ValueError) on deep nesting: it was a 500."""
    doc = b'{"Statement":' * 5000 + b"1" + b"}" * 5000
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}?policy", body=doc)
    assert status == 400 and _code(body) == "MalformedPolicy", (status, body[:300])


def test_response_header_overrides_with_control_characters_are_refused(exastor_server, s3, bucket):
    """``response-content-type=a%0D%0ASet-Cookie:...`` made a response uvicorn refused to send: the
    handler's traceback, the connection cut (no answer at all)."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    for param in ("response-content-type", "response-content-disposition", "response-cache-control"):
        for method in ("GET", "HEAD"):
            status, headers, body = signed_request(exastor_server, method, f"/{bucket}/o?{param}=a%0D%0ASet-Cookie:%20x")
            assert status == 400 and "set-cookie" not in headers, (param, method, status, headers)
            if method == "GET":
                assert _code(body) == "InvalidArgument"
    account = exastor_server.account_name
    svc = BlobServiceClient.from_connection_string(exastor_server.connection_string)
    cc = svc.create_container("rsctctr")
    try:
        cc.upload_blob("b", b"x")
        from datetime import UTC, datetime, timedelta

        from azure.storage.blob import BlobSasPermissions, generate_blob_sas
        sas = generate_blob_sas(account, "rsctctr", "b", account_key=exastor_server.account_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(UTC) + timedelta(hours=1), content_type="a\r\nSet-Cookie: x")
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", exastor_server.blob_port, timeout=30)
        conn.request("GET", f"/{account}/rsctctr/b?{sas}")
        resp = conn.getresponse()
        assert resp.status == 400 and resp.getheader("x-ms-error-code") == "InvalidQueryParameterValue"
        assert resp.getheader("set-cookie") is None
        conn.close()
    finally:
        cc.delete_container()


def test_stored_value_with_control_characters_is_sent_escaped(exastor_server, s3, bucket):
    """A POST form field may carry CR/LF into a stored Content-Type or metadata value (a header can
    not); every later GET of the object then failed to send its answer. It is sent percent-escaped."""
    import requests

    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    fields = {"key": "crlf", "Content-Type": "text/plain\r\nSet-Cookie: x=1", "x-amz-meta-a": "b\nc"}
    r = requests.post(f"{exastor_server.endpoint}/{bucket}", files={**fields, "file": ("f", b"data")}, timeout=60)
    assert r.status_code in (200, 201, 204, 400), r.text
    if r.status_code == 400:
        return  # refusing the field up front is as good
    for method in ("GET", "HEAD"):
        status, headers, body = signed_request(exastor_server, method, f"/{bucket}/crlf")
        assert status == 200 and "set-cookie" not in headers, (method, status, headers)
        assert headers["content-type"] == "text/plain%0D%0ASet-Cookie: x=1"
        assert headers["x-amz-meta-a"] == "b%0Ac"
        assert body == (b"data" if method == "GET" else b"")


def test_post_form_policy_nested_thousands_deep_is_invalid(exastor_server, bucket):
    """The same RecursionError in a signed POST form's policy document."""
    import base64
    import hashlib
    import hmac

    import requests

    policy = base64.b64encode(b'{"conditions":' * 5000 + b"1" + b"}" * 5000)
    signature = base64.b64encode(hmac.new(exastor_server.secret_key.encode(), policy, hashlib.sha1).digest())
    fields = {"key": "deep", "AWSAccessKeyId": exastor_server.access_key, "policy": policy, "signature": signature}
    r = requests.post(f"{exastor_server.endpoint}/{bucket}", files={**fields, "file": ("f", b"x")}, timeout=60)
    assert r.status_code == 400 and "<Code>InvalidPolicyDocument</Code>" in r.text, (r.status_code, r.text[:300])


def test_xml_nested_deeper_than_any_request_document_is_malformed(exastor_server, bucket):
    """Blob Set Service Properties merges the document into the stored one and serialises it again:
    a document nested 1,000 deep made ElementTree recurse past Python's limit (a 500)."""
    deep = b"<Part>" * 1000 + b"</Part>" * 1000
    account = exastor_server.account_name
    doc = b'<?xml version="1.0" encoding="utf-8"?><StorageServiceProperties>' + deep + b"</StorageServiceProperties>"
    status, headers, _ = blob_signed(exastor_server, "PUT", f"/{account}?restype=service&comp=properties",
                                     {"Content-Length": str(len(doc))}, body=doc)
    assert status == 400 and headers.get("x-ms-error-code") == "InvalidXmlDocument", (status, headers)
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}?tagging",
                                     body=b"<Tagging><TagSet>" + deep + b"</TagSet></Tagging>")
    assert status == 400 and _code(body) == "MalformedXML", (status, body[:300])
