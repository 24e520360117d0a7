"""uvicorn's httptools protocol with the limits a server on a hostile network needs.

uvicorn bounds none of these: a request head may grow without limit (1 MiB of headers was accepted),
a client may send its head or body one byte a second and hold a connection and a task for ever, and
a client that never reads its response parks the task that writes it. ``Guarded`` adds, per worker:

- ``max_header_bytes``: the request line and headers together; past it the client gets 431 in its
  protocol's error format and the connection closes (the head is counted as the parser sees it, so
  a head split over many packets is counted whole);
- ``header_timeout``: a connection's first request head, and each later one from its first byte,
  must arrive within this many seconds (408, close);
- ``body_timeout`` and ``body_min_rate``: while the server waits for body bytes (not while the app
  holds reading paused, and not before it asked for a 100-continue body) each window of
  ``body_timeout`` seconds must bring ``body_min_rate`` bytes a second on average, else the
  connection is cut: the app sees a disconnect and stores nothing. A response the client stops
  reading is cut the same way after ``body_timeout`` seconds without progress;
- ``max_connections`` and ``max_connections_per_client``: connections beyond them are answered 503
  (S3 ``SlowDown``, Blob ``ServerBusy``, with ``Retry-After``) by the gateway middleware, which reads
  the reason this protocol puts in the request's scope;
- at most ``MAX_PIPELINE`` pipelined requests queue behind the one in flight.

Between two requests a front-end's connection may move to another worker (gateway/handoff.py:
throttled tenants to one worker, the others away from it).

One timer per worker sweeps the connections once a second: no timer per connection or request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exastor.gateway.handoff import Handoff, dup_socket
from exastor.gateway.middleware import REFUSE, limit_error  # the error formats live with the middleware

log = logging.getLogger("exastor.limits")

MAX_PIPELINE = 16
SWEEP_S = 1.0


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 65536
    header_timeout: float = 30.0
    body_timeout: float = 30.0
    body_min_rate: int = 1024
    max_connections: int = 4096
    max_connections_per_client: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        return cls(cfg.max_header_bytes, cfg.header_timeout, cfg.body_timeout, cfg.body_min_rate,
                   cfg.max_connections, cfg.max_connections_per_client)


class Guard:
    """One worker's connections across its front-ends, and the sweep that enforces the timeouts."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.connections: set[Guarded] = set()
        self.per_client: dict[str, int] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self.cut = 0  # connections cut by a timeout (for tests and metrics)
        self.handoff: Handoff | None = None  # set by the worker when it has siblings to hand to

    def admit(self, conn: Guarded) -> str | None:
        self.connections.add(conn)
        host = conn.client[0] if conn.client else ""
        self.per_client[host] = self.per_client.get(host, 0) + 1
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(SWEEP_S, self._sweep, conn.loop)
        if len(self.connections) > self.limits.max_connections:
            return f"over max_connections ({self.limits.max_connections})"
        per_client = self.limits.max_connections_per_client
        if per_client and self.per_client[host] > per_client:
            return f"over max_connections_per_client ({per_client}) for {host}"
        return None

    def release(self, conn: Guarded) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            host = conn.client[0] if conn.client else ""
            left = self.per_client.get(host, 1) - 1
            if left:
                self.per_client[host] = left
            else:
                self.per_client.pop(host, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            try:
                conn.check(now)
            except Exception:  # noqa: BLE001 - one odd connection must not stop the sweep for all
                log.exception("limit check failed")
        self._sweeper = loop.call_later(SWEEP_S, self._sweep, loop) if self.connections else None


class Guarded(HttpToolsProtocol):
    """Mixed in before uvicorn's protocol (or a subclass of it) by ``guarded()``."""

    guard: Guard
    api: str = "s3"
    movable: bool = False  # a front-end's connection (S3, Blob) may move between workers; admin's not

    # As uvicorn's own (its ignore too): asyncio declares BaseTransport; a stream connection gets a Transport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        now = time.monotonic()
        self._head_since: float | None = now   # waiting for a request head since (None: not)
        self._head_bytes = 0
        self._too_large = False
        self._window_since = now
        self._window_bytes = 0
        self._in_body = False
        self._stalled_since: float | None = None
        self._refuse = self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    # -- parser callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = time.monotonic()
        self._head_bytes = 0
        if self._refuse:
            # uvicorn types the scope as its HTTPScope TypedDict; ASGI lets a server add keys of its own.
            self.scope[REFUSE] = self._refuse  # type: ignore[literal-required]

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.guard.limits.max_header_bytes:
            self._too_large = True
            raise OverflowError("request head too large")  # the parser stops; send_400_response answers 431

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_since = None
        self._in_body = True
        self._window_since, self._window_bytes = time.monotonic(), 0
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINE:
            log.warning("%s: more than %d pipelined requests; closing", self._peer(), MAX_PIPELINE)
            self.transport.close()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        if not self._hand_over():
            super().on_response_complete()

    def _hand_over(self) -> bool:
        """Move this connection to the worker gateway/handoff.py names for the request just answered:
        only when nothing of a next request has been read, reading paused before the move."""
        handoff = self.guard.handoff
        if handoff is None or not self.movable or not handoff.active or self.transport.is_closing():
            return False
        if self.pipeline or self._head_since is not None or self._in_body or self.cycle is None \
                or not self.cycle.keep_alive:
            return False
        target = handoff.target(self.scope)  # type: ignore[arg-type]
        if target is None:
            return False
        sock = dup_socket(self.transport)
        if sock is None:
            return False
        self.transport.pause_reading()
        try:
            sent = handoff.send(target, self.api, sock)
        finally:
            sock.close()
        if not sent:
            self.transport.resume_reading()
            return False
        self.server_state.total_requests += 1
        self.transport.abort()  # this worker's descriptor only: the connection lives on in the target's
        return True

    def data_received(self, data: bytes) -> None:
        if self._in_body:
            self._window_bytes += len(data)
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        """The parser gave up: uvicorn would answer a plain-text 400 no SDK parses."""
        if self._too_large:
            self._answer(431, "head")
        elif self._in_body:
            # The head was whole, so the request is already the app's, and a handler that reads no
            # body (DeleteObject, DeleteBlob, a copy) may have acted on it: a 400 now would tell the
            # client it did not. The body's framing broke (a bad chunk size): cut the connection as
            # for a body cut short, which leaves the outcome unknown to the client, as it is.
            self._cut("malformed request body framing")
        else:
            self._answer(400, "malformed")

    def shutdown(self) -> None:
        """The server drains: an idle connection goes now. (uvicorn closes it gracefully, and over
        TLS that waits up to 30 s for the client's close_notify, which idle clients never send.)"""
        if self.cycle is None or self.cycle.response_complete:
            reset(self.transport)
        else:
            super().shutdown()

    def finished(self) -> bool:
        """Answered and closing: only a TLS close_notify exchange, if anything, keeps it open."""
        return self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete)

    # -- the sweep -----------------------------------------------------------------------------
    def check(self, now: float) -> None:
        limits = self.guard.limits
        if self.transport is None or self.transport.is_closing():
            return
        if self._head_since is not None:
            if now - self._head_since > limits.header_timeout:
                log.warning("%s: request head not complete within %.0f s; closing", self._peer(),
                            limits.header_timeout)
                self.guard.cut += 1
                self._answer(408, "timeout")
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return
        if self.flow.write_paused:  # the client does not read what we send
            if self._stalled_since is None:
                self._stalled_since = now
            elif now - self._stalled_since > limits.body_timeout:
                self._cut(f"read none of the response for {limits.body_timeout:.0f} s")
            return
        self._stalled_since = None
        waiting_for_client = self._in_body and not self.flow.read_paused and not cycle.waiting_for_100_continue
        if not waiting_for_client:
            self._window_since, self._window_bytes = now, 0
            return
        elapsed = now - self._window_since
        if elapsed >= limits.body_timeout:
            if self._window_bytes < limits.body_min_rate * elapsed:
                self._cut(f"sent {self._window_bytes} body bytes in {elapsed:.0f} s "
                          f"(body_min_rate {limits.body_min_rate} B/s)")
                return
            self._window_since, self._window_bytes = now, 0

    def _cut(self, why: str) -> None:
        log.warning("%s: %s; closing", self._peer(), why)
        self.guard.cut += 1
        reset(self.transport)

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    def _answer(self, status: int, kind: str) -> None:
        """A whole response written straight to the transport (the request never reached the app)."""
        headers, body = limit_error(self.api, status, kind)
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        head += [f"{k}: {v}" for k, v in headers]
        head += [f"content-length: {len(body)}", "connection: close", "", ""]
        self.transport.write("\r\n".join(head).encode("latin-1") + body)
        self.transport.close()


def reset(transport: asyncio.Transport) -> None:
    """Close with a reset: not ``close()``, which waits to flush to a client that may never read, and
    not a bare ``abort()``, after which the kernel still keeps the unsent megabytes of an orphaned
    socket for minutes (SO_LINGER 0 makes it drop them)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def guarded(base: type[HttpToolsProtocol], guard: Guard, api: str, *, movable: bool = False
            ) -> type[HttpToolsProtocol]:
    """``base`` (uvicorn's protocol or a subclass) with the limits of ``guard`` for front-end ``api``;
    ``movable``: its connections may be handed to another worker (the S3 and Blob front-ends)."""
    return type(f"Guarded{base.__name__}", (Guarded, base), {"guard": guard, "api": api, "movable": movable})
