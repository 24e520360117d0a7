"""The compact SigV4 signer agrees with botocore's, byte for byte."""

import datetime as dt
import hashlib
import types
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from exastor.tools.scaletest.s3client import EMPTY_SHA256, UNSIGNED_PAYLOAD, S3Client, SigV4Signer, _xml_text

NOW = dt.datetime(2026, 11, 27, 5, 30, 0, tzinfo=dt.UTC)


def _botocore_authorization(method, url, payload_hash, body=b"", region="us-east-1"):
    request = AWSRequest(method=method, url=url, data=body, headers={"x-amz-content-sha256": payload_hash})
    if payload_hash == UNSIGNED_PAYLOAD:
        # what boto3 sends with Config(s3={"payload_signing_enabled": False})
        request.context["client_config"] = types.SimpleNamespace(s3={"payload_signing_enabled": False})
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "s3", region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        auth.add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize(
    "method,path,query,body",
    [
        ("GET", "/scaletest/unet3d/train/img_0000001_of_0000168.npz", {}, b""),
        ("PUT", "/scaletest/a%20key/with%2Bplus", {}, b"hello"),
        ("PUT", "/b/k", {"partNumber": "3", "uploadId": "x/y+z=="}, b"part"),
        ("PUT", "/b/k", {}, None),  # UNSIGNED-PAYLOAD
        ("POST", "/b/k", {"uploads": ""}, b""),
        ("HEAD", "/b", {}, b""),
    ],
)
def test_signature_matches_botocore(method, path, query, body):
    payload_hash = UNSIGNED_PAYLOAD if body is None else hashlib.sha256(body).hexdigest()
    host = "127.0.0.1:9000"
    signer = SigV4Signer("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1")
    ours = signer.sign(method, host, path, query, payload_hash, now=NOW)
    from urllib.parse import quote

    query_text = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(query.items()))
    url = f"http://{host}{path}" + (f"?{query_text}" if query_text else "")
    assert ours["Authorization"] == _botocore_authorization(method, url, payload_hash, body or b"")
    assert ours["x-amz-date"] == "20261127T053000Z"


def test_signing_key_is_cached_per_day():
    signer = SigV4Signer("a", "b")
    signer.sign("GET", "h", "/b/k", {}, EMPTY_SHA256, now=NOW)
    key = signer._key
    signer.sign("GET", "h", "/b/k2", {}, EMPTY_SHA256, now=NOW + dt.timedelta(hours=1))
    assert signer._key is key
    signer.sign("GET", "h", "/b/k", {}, EMPTY_SHA256, now=NOW + dt.timedelta(days=1))
    assert signer._key != key


def test_paths_are_encoded_path_style():
    client = S3Client("http://127.0.0.1:9000", "bucket", "a", "b")
    assert client._path("dir/a b+c~d") == "/bucket/dir/a%20b%2Bc~d"
    assert client.host == "127.0.0.1:9000"
    with pytest.raises(ValueError):
        S3Client("127.0.0.1:9000", "bucket", "a", "b")


def test_xml_text_with_and_without_namespace():
    with_ns = b'<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><UploadId>u1</UploadId></InitiateMultipartUploadResult>'
    assert _xml_text(with_ns, "UploadId") == "u1"
    assert _xml_text(b"<R><UploadId>u2</UploadId></R>", "UploadId") == "u2"
