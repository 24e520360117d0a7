"""Minimal raw-ASGI request/response plumbing shared by the S3 and Blob front-ends.

Raw ASGI (no framework) because the data path is the product: uvicorn +
httptools hands us body pieces and we hand it response pieces, nothing in
between copies or buffers an object.
"""

from __future__ import annotations

import re
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


# What HTTP forbids in a header value (uvicorn's own check, which raises once the handler is done):
# CR and LF would split the header, NUL and the other controls are refused by clients.
_FORBIDDEN_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def header_value_ok(value: str) -> bool:
    """Whether ``value`` can be sent as a header value as it is (for front-ends that echo a
    client-chosen value, such as S3's response-* overrides, and refuse it up front)."""
    return _FORBIDDEN_IN_VALUE.search(value) is None


def _escape_controls(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):02X}"


def _header_value(value: object) -> bytes:
    text = str(value)
    if _FORBIDDEN_IN_VALUE.search(text):
        # A stored value that reached here with a control character (a POST form field, say) is sent
        # percent-escaped: never a split header, and never a response that cannot be sent at all.
        text = _FORBIDDEN_IN_VALUE.sub(_escape_controls, text)
    return text.encode("latin-1", "replace")


def encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), _header_value(v)) for k, v in headers]


async def respond(send: Send, status: int, headers: Iterable[tuple[str, str]], body: bytes = b"",
                  *, head: bool = False) -> None:
    hdrs = list(headers)
    if not any(k.lower() == "content-length" for k, _ in hdrs):
        hdrs.append(("content-length", str(len(body))))
    await send({"type": "http.response.start", "status": status, "headers": encode_headers(hdrs)})
    await send({"type": "http.response.body", "body": b"" if head else body})


# Bytes coalesced into one send of a streamed body. Each send joins its pieces into one buffer, and
# a buffer this size plus one more piece (a chunk: at most 256 KiB) stays under malloc's mmap
# threshold (1 MiB, gateway/memory.py), so it is heap memory used again send after send. At 1 MiB
# every join could be a fresh mapping whose pages were faulted in, zeroed and unmapped again for
# each MiB sent (~0.6 CPU-s per GiB where it did, more than the rest of sending), and whether it did
# depended on the free space in each process's heap: GET through four gateways paid it more often
# per byte than through one (docs/benchmarks.md, bench/cluster_roles.py).
SEND_COALESCE = 512 << 10


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
        if size >= SEND_COALESCE:
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
            pending, size = [], 0
    await send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})
