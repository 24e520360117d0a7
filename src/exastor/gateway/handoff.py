"""Hands a connection from one worker to another between two requests, so that tenants a QoS limit
throttles are served by one worker and the other tenants by the others.

Why: a throttled tenant still costs the worker that serves it CPU for every request it is admitted
or refused. A quiet tenant whose connection shares that worker's event loop queues behind its
callbacks, and on a busy machine the busier process is the one the kernel preempts with the quiet
request inside (docs/benchmarks.md, QoS: 0.1 ms against 30-130 ms p99 from a parsed head to the
request's start, apart and together). Which worker accepts a connection is the kernel's choice,
and closing connections until they land elsewhere does not work: the idle worker wins the accept.
So the socket itself moves.

How: with two or more workers, the last one is the *throttled worker*. A principal is throttled
for ``WINDOW_S`` seconds after a request of theirs that a limit made wait or refused
(``qos.THROTTLED`` in its scope), as the worker that served it saw. After a response on another
worker to a throttled principal, the connection is handed to the throttled worker; after a response
on the throttled worker to a principal not throttled, while the throttled worker is serving
throttled principals, the connection is handed to one of the others. (Per principal, not per
request: a tenant near its limit has some requests wait and some not, and must not bounce.) Only between requests: the response is complete, no byte of a next request has been
parsed, and reading is paused first, so what the client sends next waits in the kernel for the new
worker. The descriptor travels over a Unix datagram socket (``SCM_RIGHTS``) with the front-end's
name; the receiving worker adopts it into the same uvicorn server (its limits and timeouts apply as
to any connection it accepted). TLS connections never move (their session state cannot), nor does
anything while the server drains; a send that would block keeps the connection where it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from exastor.http import qos

log = logging.getLogger("exastor.handoff")

WINDOW_S = 2.0        # how long a principal counts as throttled after a throttled request of theirs
MAX_PRINCIPALS = 4096  # throttled principals remembered per worker before the stale ones are dropped


class Handoff:
    """Made before the workers fork (one datagram channel per worker); ``start`` in each worker."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.channels = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(workers)] \
            if workers >= 2 else []
        self.index = 0
        self.throttled_worker = workers - 1
        self.throttled_at = -float("inf")
        self.principals: dict[str, float] = {}  # principal -> when last throttled (as seen here)
        self.stopping = False
        self.moved_out = 0
        self._next_other = 0
        self._adopt: Callable[[str, socket.socket], None] | None = None

    @property
    def active(self) -> bool:
        return bool(self.channels)

    def start(self, index: int, loop: Any, adopt: Callable[[str, socket.socket], None]) -> None:
        """In worker ``index``: read its own channel; keep the other channels' sending ends only."""
        if not self.active:
            return
        self.index, self._adopt = index, adopt
        for i, (send_end, receive_end) in enumerate(self.channels):
            if i != index:
                receive_end.close()
            send_end.setblocking(False)
        mine = self.channels[index][1]
        mine.setblocking(False)
        loop.add_reader(mine.fileno(), self._receive)

    def target(self, scope: dict[str, Any]) -> int | None:
        """The worker this request's connection should move to after its response, or None."""
        if not self.active or self.stopping:
            return None
        now = time.monotonic()
        principal = (scope.get("exastor") or {}).get("principal")
        if principal in (None, "anonymous"):
            # Not known to be anyone (a request refused before its signature was checked, or one
            # without credentials): only this request's own answer counts, no one is remembered.
            principal = None
        if scope.get(qos.THROTTLED):
            self.throttled_at = now
            if principal is not None:
                self.principals[principal] = now
            if len(self.principals) > MAX_PRINCIPALS:  # bounded: forget those not throttled lately
                self.principals = {p: t for p, t in self.principals.items() if now - t < WINDOW_S}
        throttled = bool(scope.get(qos.THROTTLED)) or (
            principal is not None and now - self.principals.get(principal, -WINDOW_S) < WINDOW_S)
        if self.index != self.throttled_worker:
            return self.throttled_worker if throttled else None
        if throttled or now - self.throttled_at >= WINDOW_S:
            return None
        self._next_other = (self._next_other + 1) % (self.workers - 1)  # the others, in turn
        return self._next_other

    def send(self, target: int, api: str, sock: socket.socket) -> bool:
        """Pass ``sock``'s descriptor to worker ``target``; False (nothing sent) if it cannot now."""
        try:
            socket.send_fds(self.channels[target][0], [api.encode()], [sock.fileno()])
        except OSError as exc:  # a full channel (BlockingIOError) or a worker gone: keep the connection
            log.debug("hand-off to worker %d not sent: %s", target, exc)
            return False
        self.moved_out += 1
        return True

    def _receive(self) -> None:
        mine = self.channels[self.index][1]
        for _ in range(64):  # bounded: the loop's other callbacks run between batches
            try:
                message, fds, _flags, _addr = socket.recv_fds(mine, 64, 1)
            except (BlockingIOError, InterruptedError):
                return
            if not fds:
                continue
            sock = socket.socket(fileno=fds[0])
            if self.stopping or self._adopt is None:
                sock.close()  # draining: the client reconnects, as after any close
                continue
            try:
                self._adopt(message.decode(), sock)
            except Exception:  # noqa: BLE001 - a connection we cannot adopt is closed, never the worker
                log.exception("could not adopt a handed-over connection")
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        for pair in self.channels:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.close()


def dup_socket(transport: Any) -> socket.socket | None:
    """A socket of its own over the transport's connection (plain TCP only), or None."""
    if transport.get_extra_info("sslcontext") is not None or transport.get_extra_info("ssl_object") is not None:
        return None
    raw = transport.get_extra_info("socket")
    if raw is None:
        return None
    try:
        return socket.socket(fileno=os.dup(raw.fileno()))
    except OSError:
        return None
