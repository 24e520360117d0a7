"""Authentication and malformed requests: the S3 error every time, never a 500, nothing stored."""

from __future__ import annotations

import http.client
import time
import xml.etree.ElementTree as ET

import boto3
import pytest
import requests
from _s3util import code
from botocore.config import Config
from botocore.exceptions import ClientError


def raw(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.s3_port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def error_code(data: bytes) -> str:
    return ET.fromstring(data).findtext("Code")


def test_wrong_secret(exastor_server, bucket):
    bad = boto3.client("s3", endpoint_url=exastor_server.endpoint, region_name="us-east-1",
                       aws_access_key_id=exastor_server.access_key, aws_secret_access_key="wrong-secret-123",
                       config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert code(e) == "SignatureDoesNotMatch"


def test_unknown_access_key(exastor_server):
    bad = boto3.client("s3", endpoint_url=exastor_server.endpoint, region_name="us-east-1",
                       aws_access_key_id="NOSUCHKEY", aws_secret_access_key="whatever-secret",
                       config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert code(e) == "InvalidAccessKeyId"


def test_anonymous_is_denied(exastor_server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    resp, data = raw(exastor_server, "GET", "/", b"")  # an anonymous caller owns no buckets
    assert resp.status == 200 and b"<Bucket>" not in data
    for method, path in (("GET", f"/{bucket}/k"), ("PUT", f"/{bucket}/k2"), ("GET", f"/{bucket}"),
                         ("PUT", "/anonymous-bucket")):
        resp, data = raw(exastor_server, method, path, b"data" if path.endswith("k2") else b"")
        assert resp.status == 403 and error_code(data) == "AccessDenied", (method, path)
        assert resp.getheader("x-amz-request-id")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k2")


def test_presigned_get_and_expiry(exastor_server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="p", Body=b"presigned!")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"presigned!"
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=1)
    time.sleep(2.1)
    r = requests.get(url, timeout=30)
    assert r.status_code == 403 and error_code(r.content) == "AccessDenied"
    tampered = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=60)
    r = requests.get(tampered.replace("/p?", "/q?"), timeout=30)
    assert r.status_code == 403 and error_code(r.content) == "SignatureDoesNotMatch"


def test_presigned_put(exastor_server, s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=60)
    assert requests.put(url, data=b"uploaded", timeout=30).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"uploaded"


def test_truncated_body_stores_nothing(exastor_server, s3, bucket):
    """A client that dies mid-body: the object must not appear, the server must stay healthy."""
    import socket

    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "trunc"}, ExpiresIn=60)
    path = url.split(str(exastor_server.s3_port), 1)[1]
    with socket.create_connection(("127.0.0.1", exastor_server.s3_port)) as sock:
        sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n".encode()
                     + b"x" * 5000)
    time.sleep(0.5)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="trunc")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.put_object(Bucket=bucket, Key="after", Body=b"ok")


def test_malformed_xml(exastor_server, s3, bucket):
    url = s3.generate_presigned_url("delete_objects", Params={"Bucket": bucket, "Delete": {"Objects": [{"Key": "a"}]}},
                                    ExpiresIn=60)
    r = requests.post(url, data=b"<Delete><Object><Key>a</Key></Obj", timeout=30)
    assert r.status_code in (400, 403)
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Maybe"})
    assert code(e) in ("IllegalVersioningConfigurationException", "MalformedXML")


def test_unsupported_operation_is_not_implemented(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_website(Bucket=bucket)
    assert code(e) == "NotImplemented"


def test_no_such_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert code(e) == "NoSuchBucket"


def test_virtual_host_style(exastor_server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="vh", Body=b"virtual")
    vh = boto3.client("s3", endpoint_url=f"http://localhost:{exastor_server.s3_port}", region_name="us-east-1",
                      aws_access_key_id=exastor_server.access_key, aws_secret_access_key=exastor_server.secret_key,
                      config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
    # bucket.localhost resolves to loopback on glibc; pin it so the test never depends on a resolver.
    def pin(request, **kwargs):
        request.headers["Host"] = f"{bucket}.localhost:{exastor_server.s3_port}"
    vh.meta.events.register("before-sign.s3", pin)
    orig = vh._endpoint.http_session.send

    def send(request):
        request.url = request.url.replace(f"//{bucket}.localhost", "//127.0.0.1")
        return orig(request)

    vh._endpoint.http_session.send = send
    assert vh.get_object(Bucket=bucket, Key="vh")["Body"].read() == b"virtual"
    assert [o["Key"] for o in vh.list_objects_v2(Bucket=bucket)["Contents"]] == ["vh"]


def test_signed_payload_hash_mismatch_stores_nothing(exastor_server, s3, bucket):
    """A body that does not hash to the signed x-amz-content-sha256 is refused, for small and large bodies."""
    import hashlib

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    for size in (100, 9 << 20):
        url = f"{exastor_server.endpoint}/{bucket}/sha-{size}"
        signed_for = b"a" * size
        req = AWSRequest(method="PUT", url=url, data=signed_for,
                         headers={"x-amz-content-sha256": hashlib.sha256(signed_for).hexdigest()})
        S3SigV4Auth(Credentials(exastor_server.access_key, exastor_server.secret_key), "s3", "us-east-1").add_auth(req)
        sent = b"b" * size
        r = requests.put(url, data=sent, headers=dict(req.headers.items()), timeout=60)
        assert r.status_code == 400 and error_code(r.content) == "XAmzContentSHA256Mismatch"
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=f"sha-{size}")
