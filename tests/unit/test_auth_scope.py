"""scope["exastor"]: what the other layers (metrics, access log, QoS) read about each request's
decision, filled in as early as each part is known, denied requests included. Driven through the
ASGI apps themselves, as uvicorn would call them."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from exastor.blob.app import BlobApp
from exastor.datadir.opening import open_namespace
from exastor.namespace.operations import PutSpec, SystemGrant
from exastor.s3.app import S3App

KEY = base64.b64encode(bytes(range(64))).decode()


@pytest.fixture
def ns(tmp_path):
    namespace = open_namespace(tmp_path / "data")
    admin = SystemGrant("admin")

    async def body():
        yield b"bytes"

    async def setup() -> None:
        await namespace.create_bucket(admin, "bkt")
        await namespace.put_object(admin, "bkt", "k", body(), PutSpec())
    asyncio.run(setup())
    yield namespace
    namespace.close()


def _call(app: Any, method: str, path: str, query: str = "", headers: list | None = None) -> tuple[dict, int]:
    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                             "query_string": query.encode(), "headers": headers or [],
                             "client": ("127.0.0.1", 40000), "scheme": "http"}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return scope["exastor"], sent[0]["status"]


def test_s3_records_denied_and_allowed_requests(ns):
    app = S3App(ns)
    info, status = _call(app, "GET", "/bkt/k")
    assert status == 403
    assert info == {"api": "s3", "operation": "GetObject", "principal": "anonymous", "bucket": "bkt", "key": "k",
                    "allowed": False}
    info, status = _call(app, "PUT", "/bkt", "acl")
    assert status == 403 and info["operation"] == "PutBucketAcl" and info["key"] is None
    info, status = _call(app, "GET", "/bkt/k", "torrent")  # no operation: the name stays unknown
    assert info["operation"] is None and not info["allowed"]


def test_blob_records_the_operation_and_principal(ns):
    app = BlobApp(ns, account="acct", key=KEY)
    info, status = _call(app, "GET", "/acct/bkt/k")
    assert status == 404  # anonymous, private: Azure's ResourceNotFound
    assert info == {"api": "blob", "operation": "GetBlob", "principal": "anonymous", "bucket": "bkt", "key": "k",
                    "allowed": False}
    info, status = _call(app, "GET", "/acct/bkt/k", "sv=2025-11-05&sr=b&sp=r&se=2099-01-01&sig=AAAA")
    assert status == 403 and info["operation"] == "GetBlob" and not info["allowed"]
    info, _ = _call(app, "OPTIONS", "/acct/bkt/k", headers=[(b"origin", b"https://x"),
                                                            (b"access-control-request-method", b"GET")])
    assert info["operation"] == "CorsPreflight" and info["allowed"]
