"""uvicorn's httptools protocol, keeping the original case of x-ms-meta-* header names both ways.

ASGI servers lower-case header names, in requests and in responses, but Azure Blob metadata names are
case-preserving (``x-ms-meta-CamelKey`` comes back as ``CamelKey``) and SDK users read them back by
that name. This subclass

- records request names as sent in ``scope["exastor.meta_names"]`` (lower -> original), and
- restores response names listed by the app in a private ``x-exastor-meta-case`` header, which it
  removes before the bytes leave (uvicorn writes a response's status line and headers in one write).

Everything else is uvicorn's, unchanged; responses without metadata pass through untouched.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

META_NAMES = "exastor.meta_names"
CASE_HEADER = "x-exastor-meta-case"
_PREFIX = b"x-ms-meta-"
_MARK = b"\r\n" + CASE_HEADER.encode() + b": "


class _CaseRestoringTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        if data[:5] == b"HTTP/":
            i = data.find(_MARK)
            if i >= 0:
                j = data.find(b"\r\n", i + 2)
                names = data[i + len(_MARK):j].split(b",")
                data = data[:i] + data[j:]
                for name in names:
                    data = data.replace(b"\r\n" + name.lower() + b": ", b"\r\n" + name + b": ", 1)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CasePreservingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The wrapper forwards every other attribute to the transport (__getattr__): one by duck typing.
        super().connection_made(_CaseRestoringTransport(transport))  # type: ignore[arg-type]

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > len(_PREFIX) and name[:len(_PREFIX)].lower() == _PREFIX and not name.islower():
            # uvicorn types the scope as its HTTPScope TypedDict; ASGI lets a server add keys of its own.
            names = self.scope.setdefault(META_NAMES, {})  # type: ignore[misc]
            names[name.lower().decode("latin-1")] = name.decode("latin-1")
        super().on_header(name, value)
