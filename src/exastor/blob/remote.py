"""Copy sources outside this account: the one place the Blob front-end makes an outbound request.

A copy source URL whose path does not start with this account's name (another account, another
host, Azure itself) is read over HTTP(S) with the credentials in its own URL (a SAS) or none
(public access), as Azure reads a cross-account source. The fetch is guarded against server-side
request forgery: only http and https; every address the host resolves to must be a public one
(not loopback, private, link-local - the cloud metadata address -, shared, multicast or reserved)
unless it lies in a network the operator listed (``copy_source_networks``); the connection goes to
exactly the addresses that were checked (no second lookup a rebinding DNS could answer
differently); no redirects, no proxy from the environment; bounded in time (10 s to connect, 60 s
per read, at least 64 KiB/s on average after the first minute) and in size.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from exastor.blob.errors import BlobError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CONNECT_TIMEOUT = 10.0     # seconds to reach the source
READ_TIMEOUT = 60.0        # seconds the source may stall between pieces
PIECE = 1 << 20
MIN_RATE = 64 << 10        # bytes/s a source must average once it has had GRACE seconds (no slow drip)
GRACE = 60.0


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip()]


def address_allowed(address: str, allowed: Sequence[Network]) -> bool:
    """Whether the server may connect to ``address``: a global unicast address, or one inside a
    network the operator allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if any(ip in net for net in allowed if net.version == ip.version):
        return True
    return ip.is_global and not ip.is_multicast


def _refused(why: str) -> BlobError:
    return BlobError("CannotVerifyCopySource", f"The copy source was not fetched: {why}", status=403)


class _CheckedResolver(AbstractResolver):
    """Resolves a source host once and hands aiohttp only addresses that passed the guard."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        self.allowed = allowed
        self.refusal: str | None = None

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_UNSPEC) -> list[ResolveResult]:
        import asyncio
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        out: list[ResolveResult] = []
        for fam, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            if not address_allowed(address, self.allowed):
                # One refused address refuses the host: a name must not reach inside by any of them.
                self.refusal = f"{host} resolves to {address}, which is not a public address " \
                               "(copy_source_networks may allow it)"
                raise OSError(self.refusal)
            out.append({"hostname": host, "host": address, "port": int(sockaddr[1]), "family": fam, "proto": proto,
                        "flags": socket.AI_NUMERICHOST})
        if not out:
            raise OSError(f"{host} has no address")
        return out

    async def close(self) -> None:
        return None


class RemoteSource:
    """One outbound read of a copy source: ``await open()`` checks the URL, connects and reads the
    status and headers; ``size`` is then known; ``body()`` streams the bytes; ``close()`` always."""

    def __init__(self, url: str, allowed: Sequence[Network], *, start: int | None = None, end: int | None = None,
                 limit: int, conditions: dict[str, str] | None = None) -> None:
        self.url, self.allowed, self.start, self.end, self.limit = url, allowed, start, end, limit
        self.conditions = conditions or {}
        self.size = 0
        self.headers: dict[str, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._response: aiohttp.ClientResponse | None = None

    async def open(self) -> RemoteSource:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("only http and https sources are fetched")
        if parts.username or parts.password:
            raise _refused("a source URL with user information is not fetched")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None and not address_allowed(str(literal), self.allowed):
            # aiohttp connects to a literal address without asking the resolver: check it here.
            raise _refused(f"{literal} is not a public address (copy_source_networks may allow it)")
        resolver = _CheckedResolver(self.allowed)
        connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=1)
        self._session = aiohttp.ClientSession(connector=connector, trust_env=False, timeout=aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT))
        headers = {"x-ms-version": "2025-11-05", **self.conditions}
        if self.start is not None:
            headers["Range"] = f"bytes={self.start}-{'' if self.end is None else self.end}"
        try:
            self._response = await self._session.get(self.url, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self.close()
            if resolver.refusal:
                raise _refused(resolver.refusal) from exc
            raise BlobError("CannotVerifyCopySource", f"The copy source could not be reached: {exc}"[:300],
                            status=404) from exc
        resp = self._response
        if resp.status not in (200, 206):
            code = resp.headers.get("x-ms-error-code", "")
            await self.close()
            status = resp.status if 400 <= resp.status < 500 else 409
            raise BlobError("CannotVerifyCopySource", f"The copy source answered {resp.status} {code}".strip() + ".",
                            status=status, headers={"x-ms-copy-source-status-code": str(resp.status),
                                                    **({"x-ms-copy-source-error-code": code} if code else {})})
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        if resp.content_length is None:
            await self.close()
            raise BlobError("CannotVerifyCopySource", "The copy source sent no Content-Length.", status=409)
        self.size = resp.content_length
        if self.size > self.limit:
            await self.close()
            raise BlobError("RequestBodyTooLarge", f"The copy source holds {self.size} bytes; at most {self.limit} "
                            "may be copied by this operation.")
        return self

    async def body(self) -> AsyncIterator[bytes]:
        assert self._response is not None
        got = 0
        started = time.monotonic()
        try:
            async for piece in self._response.content.iter_chunked(PIECE):
                got += len(piece)
                elapsed = time.monotonic() - started
                if elapsed > GRACE and got < MIN_RATE * elapsed:
                    # A source that drips bytes would hold this worker's connection for ever.
                    raise BlobError("CannotVerifyCopySource", f"The copy source sends slower than {MIN_RATE} "
                                    "bytes/s.", status=409)
                if got > self.size:
                    raise BlobError("CannotVerifyCopySource", "The copy source sent more than it announced.",
                                    status=409)
                yield piece
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise BlobError("CannotVerifyCopySource", f"Reading the copy source failed: {exc}"[:300],
                            status=409) from exc
        if got != self.size:
            raise BlobError("CannotVerifyCopySource", "The copy source ended early.", status=409)

    async def close(self) -> None:
        if self._response is not None:
            self._response.release()
        if self._session is not None:
            await self._session.close()
        self._response = self._session = None
