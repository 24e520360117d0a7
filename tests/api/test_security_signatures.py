"""Signatures cover what they must (issue 12): against a live server, with requests signed by botocore.

Each test here passed at the issue's main, where SigV4 only required ``host`` to be signed, the
credential scope's region was never checked and a V2 presigned URL could live for decades."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
import requests
from _s3util import signed_request
from botocore.exceptions import ClientError


def _code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code") if body else None


def _anonymous_status(server, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=30).status_code


def test_acl_header_added_after_signing_is_refused(exastor_server, s3, bucket):
    status, _, body = signed_request(exastor_server, "PUT", f"/{bucket}/k", body=b"secret",
                                     after_signing={"x-amz-acl": "public-read"})
    assert status == 403 and _code(body) == "AccessDenied"
    assert b"HeadersNotSigned" in body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    # the owner signing the same header is fine
    status, _, _ = signed_request(exastor_server, "PUT", f"/{bucket}/k", body=b"secret",
                                  headers={"x-amz-acl": "public-read"})
    assert status == 200 and _anonymous_status(exastor_server, bucket, "k") == 200


@pytest.mark.parametrize("added", [
    {"x-amz-acl": "public-read"},
    {"x-amz-grant-full-control": 'id="alt"'},
    {"x-amz-object-lock-mode": "COMPLIANCE", "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"},
])
def test_presigned_put_holder_cannot_add_headers(exastor_server, s3, added):
    name = f"lock-{time.time_ns()}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    status, _, body = signed_request(exastor_server, "PUT", f"/{name}/up", body=b"data", presign=300,
                                     after_signing=added)
    assert status == 403 and _code(body) == "AccessDenied", body
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    # without the additions, the URL works, and the object is private and deletable
    status, headers, _ = signed_request(exastor_server, "PUT", f"/{name}/up", body=b"data", presign=300)
    assert status == 200
    assert _anonymous_status(exastor_server, name, "up") == 403
    s3.delete_object(Bucket=name, Key="up", VersionId=headers["x-amz-version-id"])


def test_credential_scope_region_is_checked(exastor_server, bucket):
    status, _, body = signed_request(exastor_server, "GET", f"/{bucket}", region="eu-west-1")
    assert status == 400 and _code(body) == "AuthorizationHeaderMalformed"
    assert ET.fromstring(body).findtext("Region") == "us-east-1"
    status, _, body = signed_request(exastor_server, "GET", f"/{bucket}", region="eu-west-1", presign=60)
    assert status == 400 and _code(body) == "AuthorizationQueryParametersError"
    assert signed_request(exastor_server, "GET", f"/{bucket}")[0] == 200


def test_v2_presigned_url_is_capped_at_a_week(exastor_server, s3, bucket):
    from botocore.auth import HmacV1QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    s3.put_object(Bucket=bucket, Key="old", Body=b"v2")
    creds = Credentials(exastor_server.access_key, exastor_server.secret_key)
    for seconds, want in ((31 * 365 * 86400, 403), (3600, 200)):
        req = AWSRequest(method="GET", url=f"{exastor_server.endpoint}/{bucket}/old")
        HmacV1QueryAuth(creds, expires=seconds).add_auth(req)
        r = requests.get(req.url, timeout=30)
        assert r.status_code == want, (seconds, r.content)
