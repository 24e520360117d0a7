"""Small assertions shared by API tests."""

from __future__ import annotations

import pytest


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def status(exc: pytest.ExceptionInfo) -> int:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def signed_request(server, method: str, target: str, *, headers: dict | None = None, body: bytes = b"",
                   alt: bool = False, region: str = "us-east-1", presign: int | None = None,
                   after_signing: dict | None = None):
    """Send one request signed by botocore (SigV4 header auth, or a presigned URL for ``presign``
    seconds) exactly as written: ``target`` is the raw path and query. ``after_signing`` headers are
    added once the signature is made (what an attacker on the path could do). Returns
    (status, headers, body)."""
    import http.client

    from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(server.alt_access_key if alt else server.access_key,
                        server.alt_secret_key if alt else server.secret_key)
    # a presigned URL is signed without its body (botocore would try to move a body into the query)
    req = AWSRequest(method=method, url=f"{server.endpoint}{target}", data=b"" if presign is not None else body,
                     headers=dict(headers or {}))
    if presign is not None:
        S3SigV4QueryAuth(creds, "s3", region, expires=presign).add_auth(req)
    else:
        S3SigV4Auth(creds, "s3", region).add_auth(req)
    path = req.url[len(server.endpoint):]
    sent = {k: v for k, v in req.headers.items()}
    sent.update(after_signing or {})
    conn = http.client.HTTPConnection("127.0.0.1", server.s3_port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
