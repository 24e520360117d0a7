"""The S3 client against a tiny loopback server that misbehaves on purpose."""

import asyncio

import pytest
from aiohttp import web

from exastor.tools.scaletest.s3client import S3Client, S3Error


async def _with_server(handler, body):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with S3Client(f"http://127.0.0.1:{port}", "b", "ak", "sk", retries=3) as client:
            return await body(client), client
    finally:
        await runner.cleanup()


def test_busy_server_is_retried():
    calls = []

    async def handler(request):
        calls.append(request.headers.get("Range"))
        if len(calls) < 3:
            return web.Response(status=503, text="<Error><Code>SlowDown</Code><Message>busy</Message></Error>")
        return web.Response(status=206, body=b"x" * 10)

    got, client = asyncio.run(_with_server(handler, lambda c: c.get("k", 5, 10)))
    assert got == 10 and len(calls) == 3 and calls[0] == "bytes=5-14"
    assert client.errors == 2  # the two failed attempts are counted


def test_client_errors_are_not_retried():
    calls = []

    async def handler(request):
        calls.append(1)
        return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error>")

    with pytest.raises(S3Error) as info:
        asyncio.run(_with_server(handler, lambda c: c.get("k")))
    assert info.value.code == "SignatureDoesNotMatch" and len(calls) == 1


def test_requests_carry_sigv4_headers_and_path_style():
    seen = {}

    async def handler(request):
        seen.update(path=request.path_qs, auth=request.headers["Authorization"],
                    sha=request.headers["x-amz-content-sha256"], host=request.headers["Host"])
        return web.Response(status=200, body=b"")

    asyncio.run(_with_server(handler, lambda c: c.put("dir/a b", b"data")))
    assert seen["path"] == "/b/dir/a%20b"
    assert seen["auth"].startswith("AWS4-HMAC-SHA256 Credential=ak/")
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date" in seen["auth"]
    assert seen["sha"] == "UNSIGNED-PAYLOAD" and seen["host"].startswith("127.0.0.1:")
