"""POST Object (browser form uploads) and SSE-C (customer-provided keys)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os

import pytest
import requests
from _s3util import code, status
from botocore.exceptions import ClientError


def _form(server, bucket: str, conditions: list, fields: dict, *, expires_in: int = 600,
          secret: str | None = None) -> dict:
    expiration = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": conditions}).encode())
    signature = base64.b64encode(hmac.new((secret or server.secret_key).encode(), policy, hashlib.sha1).digest())
    return {"AWSAccessKeyId": server.access_key, "policy": policy, "signature": signature, **fields}


def _post(server, bucket: str, fields: dict, body: bytes | str) -> requests.Response:
    return requests.post(f"{server.endpoint}/{bucket}", files={**fields, "file": ("upload.txt", body)}, timeout=60)


def test_signed_form_upload_and_policy_checks(exastor_server, s3, bucket):
    conditions = [{"bucket": bucket}, ["starts-with", "$key", "up/"], ["content-length-range", 1, 1000],
                  ["starts-with", "$Content-Type", "text/"], ["eq", "$x-amz-meta-who", "me"]]
    fields = {"key": "up/${filename}", "Content-Type": "text/plain", "x-amz-meta-who": "me"}
    r = _post(exastor_server, bucket, _form(exastor_server, bucket, conditions, fields), b"form data")
    assert r.status_code == 204, r.text
    got = s3.get_object(Bucket=bucket, Key="up/upload.txt")
    assert got["Body"].read() == b"form data" and got["Metadata"] == {"who": "me"}
    assert got["ContentType"] == "text/plain"
    # each way a form can break its policy
    assert _post(exastor_server, bucket, _form(exastor_server, bucket, conditions,
                                               {**fields, "key": "elsewhere"}), b"x").status_code == 403
    assert _post(exastor_server, bucket, _form(exastor_server, bucket, conditions, fields),
                 b"y" * 1001).status_code == 400                                      # too large
    assert _post(exastor_server, bucket, _form(exastor_server, bucket, conditions, fields,
                                               expires_in=-60), b"x").status_code == 403  # expired
    assert _post(exastor_server, bucket, _form(exastor_server, bucket, conditions, fields,
                                               secret="wrong"), b"x").status_code == 403  # bad signature
    extra = _form(exastor_server, bucket, conditions, {**fields, "x-amz-meta-other": "1"})
    assert _post(exastor_server, bucket, extra, b"x").status_code == 403                  # field not in policy
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="elsewhere")


def test_anonymous_form_needs_a_writable_bucket(exastor_server, s3, bucket):
    fields = {"key": "anon.txt", "success_action_status": "201"}
    assert _post(exastor_server, bucket, fields, b"a").status_code == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    r = _post(exastor_server, bucket, fields, b"a" * 100_000)
    assert r.status_code == 201 and "<Key>anon.txt</Key>" in r.text
    assert s3.get_object(Bucket=bucket, Key="anon.txt")["Body"].read() == b"a" * 100_000


KEY = os.urandom(32)
SSE = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": KEY}


def test_sse_c_round_trip_ranges_and_wrong_keys(exastor_server, s3, bucket):
    data = os.urandom(100_003)
    s3.put_object(Bucket=bucket, Key="secret", Body=data, **SSE)
    got = s3.get_object(Bucket=bucket, Key="secret", **SSE)
    assert got["Body"].read() == data
    assert got["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY).digest()).decode()
    part = s3.get_object(Bucket=bucket, Key="secret", Range="bytes=17-50020", **SSE)["Body"].read()
    assert part == data[17:50021]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret")
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="secret", SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert status(e) == 400
    # the bytes at rest are not the plaintext
    stored = b"".join(p.read_bytes() for p in exastor_server.data_dir.rglob("*") if p.is_file()
                      and p.stat().st_size >= len(data))
    assert data[:4096] not in stored


def test_sse_c_multipart_parts_must_use_the_upload_key(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", **SSE)
    parts = []
    blobs = [os.urandom(5 << 20), os.urandom(1000)]
    for number in (2, 1):  # out of order: each part has its own counter
        etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=number,
                              Body=blobs[number - 1], **SSE)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=3, Body=b"x",
                       SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert status(e) == 400
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": sorted(parts, key=lambda p: p["PartNumber"])})
    whole = b"".join(blobs)
    assert s3.get_object(Bucket=bucket, Key="mp", **SSE)["Body"].read() == whole
    edge = (5 << 20) - 10
    assert s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={edge}-{edge + 19}",
                         **SSE)["Body"].read() == whole[edge:edge + 20]


def test_sse_header_validation(s3, bucket):
    with pytest.raises(ClientError) as e:  # key without algorithm
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerKey=KEY)
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    assert status(e) == 400
    out = s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256")
    assert out["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket)
    assert code(e) == "ServerSideEncryptionConfigurationNotFoundError"
