"""Minimal raw-ASGI request/response plumbing shared by the S3 and Blob front-ends.

Raw ASGI (no framework) because the data path is the product: uvicorn +
httptools hands us body pieces and we hand it response pieces, nothing in
between copies or buffers an object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Scope key: the request id the gateway middleware made for this request (exastor/gateway/middleware.py).
# The front-ends answer with it (headers, error bodies) so the logs and the client name one id.
REQUEST_ID = "exastor.request_id"


class ClientDisconnected(Exception):
    """The client went away before sending the whole body."""


class Request:
    __slots__ = ("scope", "receive", "method", "raw_path", "path", "query_string", "query", "headers",
                 "_consumed")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        self.raw_path: str = raw.decode("latin-1").split("?", 1)[0]
        self.path: str = unquote(self.raw_path, errors="surrogateescape")
        self.query_string: str = scope.get("query_string", b"").decode("latin-1")
        self.query: dict[str, str] = {}
        for name, value in parse_qsl(self.query_string, keep_blank_values=True):
            self.query.setdefault(name, value)
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            val = value.decode("latin-1")
            headers[key] = f"{headers[key]},{val}" if key in headers else val
        self.headers = headers
        self._consumed = False

    @property
    def client_host(self) -> str:
        client = self.scope.get("client")
        return client[0] if client else ""

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Raises ClientDisconnected if the client leaves early."""
        if self._consumed:
            return
        self._consumed = True
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected()
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return

    async def read(self, limit: int) -> bytes:
        """The whole body, for small XML/JSON documents. Raises OverflowError past ``limit``."""
        parts: list[bytes] = []
        size = 0
        async for piece in self.stream():
            size += len(piece)
            if size > limit:
                raise OverflowError(size)
            parts.append(piece)
        return b"".join(parts)

    async def drain_small_body(self, limit: int = 1 << 20) -> bool:
        """Before an early error reply: read and drop an unread body of up to ``limit`` bytes so the
        connection stays usable. Returns False when the body is larger (the caller should close)."""
        if self._consumed:
            return True
        try:
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            return False
        if length > limit or "chunked" in self.headers.get("transfer-encoding", "") \
                or self.headers.get("expect", "").lower() == "100-continue":
            return False
        if length == 0:
            return True
        try:
            async for _ in self.stream():
                pass
        except ClientDisconnected:
            return False
        return True


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), str(v).encode("latin-1", "replace")) for k, v in headers]


async def respond(send: Send, status: int, headers: Iterable[tuple[str, str]], body: bytes = b"",
                  *, head: bool = False) -> None:
    hdrs = list(headers)
    if not any(k.lower() == "content-length" for k, _ in hdrs):
        hdrs.append(("content-length", str(len(body))))
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(hdrs)})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def respond_stream(send: Send, status: int, headers: Iterable[tuple[str, str]],
                         pieces: AsyncIterator[bytes | memoryview]) -> None:
    """Stream ``pieces``; small pieces are coalesced so each send carries a useful amount.

    The first piece is read before the status line goes out, so a read that fails at once
    (a corrupt or missing chunk) still becomes a proper error response instead of a cut stream.
    """
    iterator = aiter(pieces)
    first = await anext(iterator, None)
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(headers)})
    pending: list[bytes | memoryview] = [first] if first is not None else []
    size = len(first) if first is not None else 0
    async for piece in iterator:
        pending.append(piece)
        size += len(piece)
        if size >= 1 << 20:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
            pending, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
