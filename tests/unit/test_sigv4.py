"""SigV4 / SigV2 verification against AWS's published examples and requests signed by botocore itself."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from types import SimpleNamespace
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from exastor.s3.errors import S3Error
from exastor.s3.sigv4 import (
    EMPTY_SHA256,
    UNSIGNED_PAYLOAD,
    AuthContext,
    authenticate,
    derive_signing_key,
    payload_sha256_required,
)

# The example credentials of the AWS Signature V4 documentation.
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
USERS = {AK: SK, "alice": "alice-secret-0123456789"}
DOC_NOW = datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)
CREDS = Credentials(AK, SK)


def lookup(access_key: str) -> str | None:
    return USERS.get(access_key)


def _auth(method: str, path: str, query: str, headers: dict[str, str], **kw) -> AuthContext | None:
    return authenticate(method, path, query, headers, lookup, **kw)


def _expect(code: str, *args, message: str | None = None, **kw) -> S3Error:
    with pytest.raises(S3Error) as info:
        _auth(*args, **kw)
    assert info.value.code == code, info.value
    if message is not None:
        assert info.value.message == message
    return info.value


# ------------------------------------------------------------------ AWS documentation test vectors

def _doc_header(signed: str, signature: str) -> str:
    return (f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
            f"SignedHeaders={signed},Signature={signature}")


def test_doc_example_get_object() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
               "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": "20130524T000000Z",
               "authorization": _doc_header("host;range;x-amz-content-sha256;x-amz-date",
                                            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")}
    ctx = _auth("GET", "/test.txt", "", headers, now=DOC_NOW)
    assert ctx is not None and ctx.access_key == AK and not ctx.presigned
    assert ctx.scope == "20130524/us-east-1/s3/aws4_request" and ctx.amz_date == "20130524T000000Z"
    assert ctx.signing_key == derive_signing_key(SK, "20130524", "us-east-1", "s3")
    assert payload_sha256_required(ctx) == EMPTY_SHA256
    headers["range"] = "bytes=0-10"
    _expect("SignatureDoesNotMatch", "GET", "/test.txt", "", headers, now=DOC_NOW)


def test_doc_example_put_object() -> None:
    body = b"Welcome to Amazon S3."
    digest = hashlib.sha256(body).hexdigest()
    assert digest == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
    headers = {"host": "examplebucket.s3.amazonaws.com", "date": "Fri, 24 May 2013 00:00:00 GMT",
               "x-amz-date": "20130524T000000Z", "x-amz-storage-class": "REDUCED_REDUNDANCY",
               "x-amz-content-sha256": digest,
               "authorization": _doc_header("date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                                            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")}
    ctx = _auth("PUT", "/test%24file.text", "", headers, now=DOC_NOW)
    assert payload_sha256_required(ctx) == digest
    # the canonical URI is the path as sent: the decoded form is a different request
    _expect("SignatureDoesNotMatch", "PUT", "/test$file.text", "", headers, now=DOC_NOW)


def test_doc_example_get_lifecycle_and_list() -> None:
    base = {"host": "examplebucket.s3.amazonaws.com", "x-amz-date": "20130524T000000Z",
            "x-amz-content-sha256": EMPTY_SHA256}
    lifecycle = dict(base, authorization=_doc_header(
        "host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"))
    assert _auth("GET", "/", "lifecycle", lifecycle, now=DOC_NOW) is not None
    listing = dict(base, authorization=_doc_header(
        "host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))
    assert _auth("GET", "/", "max-keys=2&prefix=J", listing, now=DOC_NOW) is not None
    assert _auth("GET", "/", "prefix=J&max-keys=2", listing, now=DOC_NOW) is not None  # order-free
    _expect("SignatureDoesNotMatch", "GET", "/", "max-keys=3&prefix=J", listing, now=DOC_NOW)


DOC_PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2F"
    "aws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404")


def test_doc_example_presigned() -> None:
    headers = {"host": "examplebucket.s3.amazonaws.com"}
    ctx = _auth("GET", "/test.txt", DOC_PRESIGNED_QUERY, headers, now=DOC_NOW + timedelta(hours=23))
    assert ctx is not None and ctx.presigned and ctx.content_sha256 == UNSIGNED_PAYLOAD
    assert payload_sha256_required(ctx) is None
    _expect("AccessDenied", "GET", "/test.txt", DOC_PRESIGNED_QUERY, headers,
            now=DOC_NOW + timedelta(hours=24, seconds=1), message="Request has expired")
    _expect("AccessDenied", "GET", "/test.txt", DOC_PRESIGNED_QUERY, headers,
            now=DOC_NOW - timedelta(hours=1), message="Request is not valid yet")
    _expect("SignatureDoesNotMatch", "GET", "/test.txt", DOC_PRESIGNED_QUERY + "&extra=1", headers,
            now=DOC_NOW)


# ------------------------------------------------------------------ botocore-signed requests

def _wire(req: AWSRequest) -> tuple[str, str, str, dict[str, str]]:
    """What the server sees: raw path, raw query and lower-cased headers (Host added by the HTTP client)."""
    split = urlsplit(req.url)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers.setdefault("host", split.netloc)
    return req.method, split.path, split.query, headers


def sign_v4(method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b"",
            creds: Credentials = CREDS, unsigned_payload: bool = False) -> tuple:
    req = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    if unsigned_payload:
        req.context["client_config"] = SimpleNamespace(s3={"payload_signing_enabled": False})
    S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    return _wire(req)


def presign_v4(method: str, url: str, expires: int = 3600, headers: dict[str, str] | None = None) -> tuple:
    req = AWSRequest(method=method, url=url, headers=headers or {})
    S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=expires).add_auth(req)
    return _wire(req)


URL = "http://127.0.0.1:9000/bucket/some%20dir/k%C3%A9y%2B1.txt"


def test_botocore_header_signed_put() -> None:
    body = b"hello world"
    method, path, query, headers = sign_v4("PUT", URL, {"Content-Type": "text/plain",
                                                         "x-amz-meta-a": "  two   spaces "}, body)
    ctx = _auth(method, path, query, headers)
    assert ctx is not None and ctx.access_key == AK
    assert payload_sha256_required(ctx) == hashlib.sha256(body).hexdigest()
    assert ctx.seed_signature in headers["authorization"]


@pytest.mark.parametrize("tamper", ["header", "query", "path", "method", "payload-hash", "signature"])
def test_botocore_tampered(tamper: str) -> None:
    method, path, query, headers = sign_v4("PUT", URL + "?tagging", {"x-amz-meta-a": "1"}, b"data")
    if tamper == "header":
        headers["x-amz-meta-a"] = "2"
    elif tamper == "query":
        query = "tagging&versionId=1"
    elif tamper == "path":
        path = path.replace("1.txt", "2.txt")
    elif tamper == "method":
        method = "POST"
    elif tamper == "payload-hash":
        headers["x-amz-content-sha256"] = hashlib.sha256(b"other").hexdigest()
    else:
        headers["authorization"] = headers["authorization"][:-4] + "0000"
    err = _expect("SignatureDoesNotMatch", method, path, query, headers)
    assert SK not in err.to_xml("r").decode()


def test_wrong_secret_and_unknown_key() -> None:
    args = sign_v4("GET", URL, creds=Credentials(AK, "not-the-secret"))
    _expect("SignatureDoesNotMatch", *args)
    args = sign_v4("GET", URL, creds=Credentials("nobody", SK))
    _expect("InvalidAccessKeyId", *args)


def test_skewed_clock() -> None:
    args = sign_v4("GET", URL)
    assert _auth(*args, now=datetime.now(UTC) + timedelta(minutes=14)) is not None
    _expect("RequestTimeTooSkewed", *args, now=datetime.now(UTC) + timedelta(minutes=16))
    _expect("RequestTimeTooSkewed", *args, now=datetime.now(UTC) - timedelta(minutes=16))


def test_unsigned_payload_and_date_header() -> None:
    method, path, query, headers = sign_v4("PUT", "https://s3.example.com/b/k", {"Content-MD5": "x"},
                                           b"body", unsigned_payload=True)
    assert headers["x-amz-content-sha256"] == UNSIGNED_PAYLOAD
    ctx = _auth(method, path, query, headers)
    assert ctx is not None and payload_sha256_required(ctx) is None
    # botocore signs with the Date header instead of x-amz-date when the request has one
    method, path, query, headers = sign_v4("GET", URL, {"Date": formatdate(usegmt=True)})
    assert "x-amz-date" not in headers
    assert _auth(method, path, query, headers) is not None


def test_host_forms() -> None:
    method, path, query, headers = sign_v4("GET", "http://s3.example.com/b/k")
    assert headers["host"] == "s3.example.com"
    headers["host"] = "s3.example.com:80"  # a proxy added the default port
    assert _auth(method, path, query, headers) is not None
    headers["host"] = "s3.example.com:9000"
    _expect("SignatureDoesNotMatch", method, path, query, headers)


def test_query_encodings_clients_use() -> None:
    """A client may send '/' unencoded in a query value but sign it encoded (the spec form)."""
    method, path, query, headers = sign_v4("GET", "http://127.0.0.1:9000/b?list-type=2&prefix=a%2Fb%20c")
    assert _auth(method, path, "list-type=2&prefix=a/b%20c", headers) is not None
    assert _auth(method, path, "prefix=a%2Fb%20c&list-type=2", headers) is not None


def test_malformed_authorization() -> None:
    method, path, query, headers = sign_v4("GET", URL)
    good = headers["authorization"]
    cases = {
        "AWS4-HMAC-SHA256 SignedHeaders=host,Signature=00": "AuthorizationHeaderMalformed",
        good.replace("/s3/aws4_request", "/s3/aws5_request"): "AuthorizationHeaderMalformed",
        good.replace("/s3/", "/ec2/"): "AuthorizationHeaderMalformed",
        good.replace("SignedHeaders=host;", "SignedHeaders="): "AccessDenied",  # host not signed
        "Bearer abc": "InvalidArgument",
        "AWS4-ECDSA-P256-SHA256 Credential=x": "InvalidArgument",
        "AWS HAHAHA": "InvalidArgument",  # s3-tests test_bucket_create_bad_authorization_invalid_aws2
    }
    for value, code in cases.items():
        _expect(code, method, path, query, dict(headers, authorization=value))
    no_date = {k: v for k, v in headers.items() if k != "x-amz-date"}
    _expect("AccessDenied", method, path, query, no_date)
    _expect("InvalidArgument", method, path, query, dict(headers, **{"x-amz-content-sha256": "bogus"}))


@pytest.mark.parametrize(("amz_date", "code"), [
    ("Bad Date", "AccessDenied"),
    ("19500707T215304Z", "AccessDenied"),
    ("99990707T215304Z", "RequestTimeTooSkewed"),
    ("20100707T215304Z", "RequestTimeTooSkewed"),
])
def test_v4_bad_amz_dates_like_s3_tests(amz_date: str, code: str) -> None:
    """s3-tests' test_object_create_bad_amz_date_*_aws4: x-amz-date replaced after signing."""
    method, path, query, headers = sign_v4("PUT", URL, body=b"x")
    _expect(code, method, path, query, dict(headers, **{"x-amz-date": amz_date}))


def test_region_enforced_when_configured() -> None:
    args = sign_v4("GET", URL)
    assert _auth(*args, region="us-east-1") is not None
    err = _expect("AuthorizationHeaderMalformed", *args, region="eu-west-1")
    assert "us-east-1" in err.message


def test_anonymous() -> None:
    assert _auth("GET", "/b/k", "", {"host": "x"}) is None
    assert _auth("GET", "/b/k", "prefix=a", {"host": "x"}) is None


def test_botocore_presigned() -> None:
    method, path, query, headers = presign_v4("GET", URL + "?versionId=abc", expires=60)
    ctx = _auth(method, path, query, headers)
    assert ctx is not None and ctx.presigned and ctx.content_sha256 == UNSIGNED_PAYLOAD
    _expect("AccessDenied", method, path, query, headers, now=datetime.now(UTC) + timedelta(seconds=120),
            message="Request has expired")
    _expect("SignatureDoesNotMatch", method, path, query.replace("versionId=abc", "versionId=abd"), headers)
    _expect("InvalidArgument", method, path, query, dict(headers, authorization="AWS4-HMAC-SHA256 x"))


def test_presigned_expires_limits() -> None:
    method, path, query, headers = presign_v4("GET", URL, expires=604800)
    assert _auth(method, path, query, headers) is not None
    method, path, query, headers = presign_v4("GET", URL, expires=604801)
    _expect("AuthorizationQueryParametersError", method, path, query, headers)
    bad = query.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=AWS4-HMAC-SHA1")
    _expect("AuthorizationQueryParametersError", method, path, bad, headers)
    missing = "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Date="))
    _expect("AuthorizationQueryParametersError", method, path, missing, headers)


def test_presigned_put_with_content_sha256_in_query() -> None:
    method, path, query, headers = presign_v4("PUT", URL)
    digest = hashlib.sha256(b"x").hexdigest()
    # a client that signs the payload puts X-Amz-Content-Sha256 in the signed query; rebuild that by hand
    req = AWSRequest(method="PUT", url=URL + f"?X-Amz-Content-Sha256={digest}")
    signer = S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=60)
    signer.payload = lambda request: digest  # type: ignore[method-assign]
    signer.add_auth(req)
    method, path, query, headers = _wire(req)
    ctx = _auth(method, path, query, headers)
    assert ctx is not None and payload_sha256_required(ctx) == digest


# ------------------------------------------------------------------ a real boto3 client, end to end

class _Captured(Exception):
    pass


@functools.cache
def _client(addressing: str):
    return boto3.client("s3", endpoint_url="http://s3.local:9000", region_name="us-east-1",
                        aws_access_key_id="alice", aws_secret_access_key=USERS["alice"],
                        config=Config(s3={"addressing_style": addressing}, signature_version="s3v4"))


@pytest.mark.parametrize("addressing", ["path", "virtual"])
@pytest.mark.parametrize("key", ["plain.txt", "dir/with space/ü+~=&;.bin", "a%2Fb", "x?y#z"])
def test_boto3_client_requests_verify(key: str, addressing: str) -> None:
    client = _client(addressing)
    seen: list = []

    def before_send(request, **_):
        seen.append(request)
        raise _Captured()

    client.meta.events.register("before-send.s3", before_send, unique_id="capture")
    try:
        _verify_calls(client, key, seen)
    finally:
        client.meta.events.unregister("before-send.s3", unique_id="capture")


def _verify_calls(client, key: str, seen: list) -> None:
    calls = [
        lambda: client.put_object(Bucket="bkt", Key=key, Body=b"0123456789", Metadata={"k": "v v"}),
        lambda: client.get_object(Bucket="bkt", Key=key, Range="bytes=0-3"),
        lambda: client.list_objects_v2(Bucket="bkt", Prefix=key, Delimiter="/"),
        lambda: client.put_object_tagging(Bucket="bkt", Key=key, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
    ]
    for call in calls:
        with pytest.raises(_Captured):
            call()
        request = seen[-1]
        split = urlsplit(request.url)
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        headers.setdefault("host", split.netloc)
        ctx = authenticate(request.method, split.path, split.query, headers, lookup)
        assert ctx is not None and ctx.access_key == "alice"
        assert request.headers["Authorization"].startswith(b"AWS4-HMAC-SHA256" if isinstance(
            request.headers["Authorization"], bytes) else "AWS4-HMAC-SHA256")
        digest = payload_sha256_required(ctx)
        if digest is not None:
            body = request.body or b""
            body = body if isinstance(body, bytes) else body.read()
            assert hashlib.sha256(body).hexdigest() == digest


def test_boto3_presigned_url() -> None:
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                          aws_access_key_id="alice", aws_secret_access_key=USERS["alice"],
                          config=Config(signature_version="s3v4"))
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k é/x+y",
                                                               "ResponseContentType": "text/plain"},
                                        ExpiresIn=300)
    split = urlsplit(url)
    ctx = _auth("GET", split.path, split.query, {"host": split.netloc})
    assert ctx is not None and ctx.presigned and ctx.access_key == "alice"


# ------------------------------------------------------------------ signature version 2

def sign_v2(method: str, url: str, headers: dict[str, str] | None = None, auth_path: str | None = None):
    req = AWSRequest(method=method, url=url, headers=headers or {})
    req.auth_path = auth_path
    HmacV1Auth(CREDS).add_auth(req)
    return _wire(req)


def test_v2_header() -> None:
    args = sign_v2("PUT", URL + "?acl", {"Content-Type": "text/plain", "x-amz-acl": "private",
                                          "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="})
    ctx = _auth(*args)
    assert ctx is not None and ctx.signature_version == 2 and ctx.access_key == AK
    assert payload_sha256_required(ctx) is None
    method, path, query, headers = args
    _expect("SignatureDoesNotMatch", method, path, query, dict(headers, **{"x-amz-acl": "public-read"}))
    _expect("SignatureDoesNotMatch", method, path, "", headers)
    _expect("RequestTimeTooSkewed", *args, now=datetime.now(UTC) + timedelta(hours=1))
    _expect("InvalidAccessKeyId", method, path, query,
            dict(headers, authorization=headers["authorization"].replace(AK, "nobody")))


@pytest.mark.parametrize(("date", "code"), [
    ("", "AccessDenied"),
    ("Bad Date", "AccessDenied"),
    ("Tue, 07 Jul 1950 21:53:51 GMT", "AccessDenied"),
    ("Tue, 07 Jul 9999 21:53:51 GMT", "RequestTimeTooSkewed"),
    ("Tue, 07 Jul 2010 21:53:51 GMT", "RequestTimeTooSkewed"),
])
def test_v2_bad_dates_like_s3_tests(date: str, code: str) -> None:
    """s3-tests' test_object_create_bad_date_*_aws2 expectations."""
    method, path, query, headers = sign_v2("PUT", URL, {"Date": date} if date else {})
    headers["date"] = date
    _expect(code, method, path, query, headers)


def test_v2_virtual_hosted() -> None:
    args = sign_v2("GET", "http://bkt.s3.example.com/key.txt", auth_path="/bkt/key.txt")
    assert _auth(*args) is not None


def test_v2_presigned() -> None:
    req = AWSRequest(method="GET", url=URL)
    HmacV1QueryAuth(CREDS, expires=60).add_auth(req)
    method, path, query, headers = _wire(req)
    ctx = _auth(method, path, query, headers)
    assert ctx is not None and ctx.presigned and ctx.signature_version == 2
    _expect("AccessDenied", method, path, query, headers, now=datetime.now(UTC) + timedelta(seconds=120),
            message="Request has expired")


def test_v2_presigned_put_with_signed_headers_in_query() -> None:
    req = AWSRequest(method="PUT", url=URL, headers={"Content-Type": "text/plain", "x-amz-meta-color": "blue"})
    HmacV1QueryAuth(CREDS, expires=60).add_auth(req)
    split = urlsplit(req.url)
    assert "x-amz-meta-color=blue" in split.query
    ctx = _auth("PUT", split.path, split.query, {"host": split.netloc})
    assert ctx is not None and ctx.presigned
    _expect("SignatureDoesNotMatch", "PUT", split.path, split.query.replace("blue", "red"),
            {"host": split.netloc})


def test_auth_context_repr_hides_key() -> None:
    args = sign_v4("GET", URL)
    ctx = _auth(*args)
    assert repr(ctx.signing_key) not in repr(ctx)


# ------------------------------------------------------------------ issue 12: what must be signed

@pytest.mark.parametrize("added", [{"x-amz-acl": "public-read"}, {"x-amz-grant-full-control": 'id="mallory"'},
                                   {"x-amz-object-lock-mode": "COMPLIANCE",
                                    "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"}])
def test_unsigned_amz_headers_are_refused(added: dict[str, str]) -> None:
    """An x-amz-* header added after signing (by anyone on the path, or by the holder of a presigned
    URL) must not ride on someone else's signature."""
    method, path, query, headers = sign_v4("PUT", URL, body=b"x")
    err = _expect("AccessDenied", method, path, query, dict(headers, **added))
    assert err.message == "There were headers present in the request which were not signed"
    method, path, query, headers = presign_v4("PUT", URL)
    _expect("AccessDenied", method, path, query, dict(headers, **added))
    # signed, the same headers are fine
    assert _auth(*sign_v4("PUT", URL, dict(added), body=b"x")) is not None
    assert _auth(*presign_v4("PUT", URL, headers=dict(added))) is not None


def test_content_type_must_be_signed_for_header_auth_only() -> None:
    method, path, query, headers = sign_v4("PUT", URL, body=b"x")
    _expect("AccessDenied", method, path, query, dict(headers, **{"content-type": "text/html"}))
    method, path, query, headers = presign_v4("PUT", URL)  # a browser picks its own Content-Type
    assert _auth(method, path, query, dict(headers, **{"content-type": "text/html"})) is not None


def test_credential_scope_regions() -> None:
    args = sign_v4("GET", URL)
    assert _auth(*args, regions=("eu-west-1", "us-east-1")) is not None
    err = _expect("AuthorizationHeaderMalformed", *args, regions=("eu-west-1",))
    assert err.extra["Region"] == "eu-west-1"
    _expect("AuthorizationQueryParametersError", *presign_v4("GET", URL), regions=("eu-west-1",))


@pytest.mark.parametrize("expires", ["9" * 5000, "-" + "9" * 5000, "-1", "604801", "abc", ""])
def test_presigned_expires_values(expires: str) -> None:
    method, path, query, headers = presign_v4("GET", URL)
    query = "&".join(f"X-Amz-Expires={expires}" if p.startswith("X-Amz-Expires=") else p for p in query.split("&"))
    _expect("AuthorizationQueryParametersError", method, path, query, headers)


def test_v2_presigned_capped_at_a_week() -> None:
    for seconds, ok in ((6 * 86400, True), (31 * 365 * 86400, False)):
        req = AWSRequest(method="GET", url=URL)
        HmacV1QueryAuth(CREDS, expires=seconds).add_auth(req)
        args = _wire(req)
        if ok:
            assert _auth(*args) is not None
        else:
            _expect("AccessDenied", *args)
    req = AWSRequest(method="GET", url=URL)
    HmacV1QueryAuth(CREDS, expires=60).add_auth(req)
    method, path, query, headers = _wire(req)
    huge = "&".join("Expires=" + "9" * 5000 if p.startswith("Expires=") else p for p in query.split("&"))
    _expect("AccessDenied", method, path, huge, headers)


def test_the_claimed_access_key_is_read_from_every_credential_form():
    from exastor.s3.sigv4 import claimed_access_key

    v4 = "AWS4-HMAC-SHA256 Credential=AKIDV4/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"
    assert claimed_access_key({}, {"authorization": v4}) == "AKIDV4"
    assert claimed_access_key({}, {"authorization": "AWS AKIDV2:c2lnbmF0dXJl"}) == "AKIDV2"
    assert claimed_access_key({"X-Amz-Credential": "AKIDQ/20260101/us-east-1/s3/aws4_request"}, {}) == "AKIDQ"
    assert claimed_access_key({"AWSAccessKeyId": "AKIDQ2", "Signature": "x"}, {}) == "AKIDQ2"
    assert claimed_access_key({}, {}) is None
    assert claimed_access_key({}, {"authorization": "AWS4-HMAC-SHA256 SignedHeaders=host"}) is None
