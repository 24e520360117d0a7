"""QoS: per-user and per-bucket limits on requests per second and bytes per second, shared by
every gateway worker, checked after authentication and before the handler.

Each limit is a token bucket (a rate and a burst). Its state lives in a small shared-memory file
(``DATA/qos/buckets``, mmap'ed by every worker, emptied when `serve` starts): one 32-byte slot per
limited user or bucket and kind, found by a 64-bit hash of its name, updated under a byte-range
lock (``fcntl.lockf``) on that slot, so the workers draw from one bucket and a tenant gets its
rate however many workers serve it. The time base is CLOCK_MONOTONIC, the same in every process.

Requests cost one token on admission. Bytes: a request body costs its Content-Length on admission,
and a response body its length once sent (gateway/metrics.py settles it): a bucket may go into
debt, and the next requests wait until it is paid back, so large GETs are limited too without
knowing their size beforehand.

A request whose tokens will be there within ``MAX_DELAY`` (0.5 s) waits for them (they are
reserved, so waiting requests are served in order); beyond that, the request is refused, no sooner
than ``MAX_DELAY`` either (so a client retrying at once is held to a few refusals per second per
connection): ``errors.SlowDown`` (S3 ``503 SlowDown``, Blob ``503 ServerBusy``) with the
seconds until a token is there (``Retry-After``). The limits are rows of ``qos_limits`` in the
database (`exastor qos set`), read by each worker at most once a second.

A noisy tenant must not slow a quiet one down through what the worker shares between them:

- **Refused before the expensive work.** A request whose claimed user (the access key named in its
  credential, read without checking the signature) or bucket is so far over its request rate that
  it would be refused anyway is refused before its signature is verified and before it is routed
  and authorized (``refuse_before_auth``). This only *peeks* at the buckets: a request whose
  signature has not been checked draws no token, so a forger who knows an access key cannot spend
  its owner's budget, and it is never admitted by this path, only refused (it learns that the
  named user or bucket is throttled, as S3's own SlowDown tells anyone). Tokens are drawn by
  ``admit``, after authentication, as before.
- **Waiting is not being in flight.** A request waiting for its tokens or held before its refusal
  costs no CPU, and leaves the worker's in-flight count (``max_requests``, which the server puts in
  the scope under ``IN_FLIGHT``) while it waits: a limited tenant with hundreds of connections
  cannot fill a worker's slots with parked requests and get every other tenant 503s. Parked
  requests stay bounded by the worker's ``max_connections`` (one request per connection runs at a
  time).
- **Apart.** Requests a limit made wait or refused are marked ``THROTTLED`` in the scope; the
  server moves such tenants' connections to a worker of their own (gateway/handoff.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exastor import errors, metrics

SLOT = struct.Struct("<Qdd8x")  # key hash, tokens, last refill (monotonic s)
SLOTS = 1 << 16                  # 2 MiB of shared memory
PROBES = 64
REFRESH_S = 1.0
# A request whose tokens will be there within this long waits for them (in order, costing no CPU)
# instead of being refused: a client a little over its rate is slowed, not failed, and one far over
# it gets 503s without each retry being handled again and again.
MAX_DELAY = 0.5
# Scope key under which the server puts its in-flight count (anything with an int ``count``): a
# request parked here (waiting for tokens, or held before a refusal) is taken out of it meanwhile.
IN_FLIGHT = "exastor.in_flight"
# Scope key set to True on a request a limit made wait for its tokens or refused: the server moves
# such tenants' connections to a worker of their own (gateway/handoff.py).
THROTTLED = "exastor.qos.throttled"


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str                  # 'user' or 'bucket'
    name: str
    requests_per_s: float | None
    requests_burst: float | None
    bytes_per_s: float | None
    bytes_burst: float | None


class SharedBuckets:
    """Token buckets in a shared file; safe across processes (one thread per process calls it)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not a drive: shared token buckets in --data
        if os.fstat(self.fd).st_size < SLOTS * SLOT.size:  # not a drive: shared token buckets in --data
            os.ftruncate(self.fd, SLOTS * SLOT.size)  # not a drive: shared token buckets in --data
        self.map = mmap.mmap(self.fd, SLOTS * SLOT.size)

    def _slot(self, key: str) -> tuple[int, int]:
        h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1
        return h, h % SLOTS

    @contextlib.contextmanager
    def _locked(self, key: str, lock: int) -> Iterator[_Slot | None]:
        """``key``'s slot (its own, or a free one on its probe path) under ``lock``, released on
        leaving; None when the table is full around the key."""
        h, start = self._slot(key)
        for probe in range(PROBES):
            offset = (start + probe) % SLOTS * SLOT.size
            fcntl.lockf(self.fd, lock, SLOT.size, offset)
            try:
                owner, tokens, last = SLOT.unpack_from(self.map, offset)
                if owner in (0, h):
                    yield _Slot(offset, h, owner, tokens, last)
                    return
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, SLOT.size, offset)
        yield None

    def take(self, key: str, rate: float, burst: float, cost: float, *, debt: bool = False,
             max_delay: float = 0.0) -> float:
        """Draw ``cost`` tokens. Returns 0.0 when drawn now; a negative number -w when drawn ahead of
        time (the tokens will be there in w <= ``max_delay`` seconds: the caller waits w first, so
        waiting callers are served in order); else the seconds until they will be there (nothing
        drawn). With ``debt``, always draws now (the bucket may go negative)."""
        with self._locked(key, fcntl.LOCK_EX) as slot:
            if slot is None:
                return 0.0  # table full around this key: admit (logged by the caller's metrics, never refused blindly)
            now = time.monotonic()
            tokens, last = (burst, now) if slot.owner == 0 else (slot.tokens, slot.last)  # a new bucket starts full
            tokens = min(burst, tokens + (now - last) * rate)
            if debt or tokens >= cost:
                SLOT.pack_into(self.map, slot.offset, slot.hash, tokens - cost, now)
                return 0.0
            wait = (cost - tokens) / rate if rate > 0 else 3600.0
            if wait <= max_delay:  # a reservation: the bucket goes negative by what is owed
                SLOT.pack_into(self.map, slot.offset, slot.hash, tokens - cost, now)
                return -wait
            SLOT.pack_into(self.map, slot.offset, slot.hash, tokens, now)
            return wait

    def peek(self, key: str, rate: float, burst: float, cost: float) -> float:
        """The seconds until ``cost`` tokens will be there (0.0: there now), drawing nothing and
        changing nothing: for a request whose sender is not yet known to be who it claims."""
        with self._locked(key, fcntl.LOCK_SH) as slot:
            if slot is None or slot.owner == 0:
                return 0.0  # table full, or never drawn from: full
            tokens = min(burst, slot.tokens + (time.monotonic() - slot.last) * rate)
        if tokens >= cost:
            return 0.0
        return (cost - tokens) / rate if rate > 0 else 3600.0


@dataclass
class _Slot:
    offset: int
    hash: int
    owner: int    # the hash, or 0: free (a new bucket)
    tokens: float
    last: float


_table: SharedBuckets | None = None
_path: Path | None = None
_limits: dict[tuple[str, str], Limit] = {}
_limits_at = -math.inf
_pid = 0


def enable(directory: Path) -> None:
    """Called by `serve` before forking: a fresh shared file (buckets start full after a restart)."""
    global _path, _table
    directory.mkdir(parents=True, exist_ok=True)  # not a drive: shared token buckets in --data
    path = directory / "buckets"
    path.unlink(missing_ok=True)  # not a drive: shared token buckets in --data
    _path, _table = path, None
    SharedBuckets(path)  # created at its full size before any worker maps it


def _shared() -> SharedBuckets | None:
    global _table, _pid
    if _path is None:
        return None
    if _table is None or _pid != os.getpid():  # each worker maps the file itself (fcntl locks are per process)
        _table, _pid = SharedBuckets(_path), os.getpid()
    return _table


def load_limits(meta: Any) -> dict[tuple[str, str], Limit]:
    return {(r[0], r[1]): Limit(*r) for r in meta.qos_limits()}


def _current_limits(meta: Any) -> dict[tuple[str, str], Limit]:
    global _limits, _limits_at
    now = time.monotonic()
    if now - _limits_at >= REFRESH_S:
        _limits, _limits_at = load_limits(meta), now
    return _limits


def _applied(meta: Any, principal: str | None, bucket: str | None) -> list[Limit]:
    """The limits on this user and this bucket (none when QoS is off or nothing is limited)."""
    limits = _current_limits(meta)
    if not limits:
        return []
    return [lim for lim in (limits.get(("user", principal)) if principal else None,
                            limits.get(("bucket", bucket)) if bucket else None) if lim is not None]


async def refuse_before_auth(scope: dict[str, Any], meta: Any, api: str, principal: str | None,
                             bucket: str | None) -> None:
    """Raise SlowDown (after the usual hold) when the user the request claims to be, or its bucket, is
    so far over its request rate that ``admit`` would refuse it: called before the signature is
    verified, so the flood of an over-limit tenant costs a header parse and a peek, not a SigV4
    check, a route and an authorization each. Draws nothing (see the module's docstring); a request
    it lets through is authenticated and admitted as any other."""
    table = _shared()
    if table is None:
        return
    for lim in _applied(meta, principal, bucket):
        if lim.requests_per_s:
            wait = table.peek(f"{lim.scope}\0{lim.name}\0r", lim.requests_per_s,
                              lim.requests_burst or lim.requests_per_s, 1.0)
            if wait > MAX_DELAY:
                await _refuse(scope, api, lim, wait)


async def admit(scope: dict[str, Any], meta: Any, api: str, principal: str | None, bucket: str | None,
                headers: dict[str, str]) -> None:
    """Admit the request (at once, or after waiting at most MAX_DELAY for its tokens) or raise
    SlowDown. Called once per request, after authentication."""
    table = _shared()
    if table is None:
        return
    applied = _applied(meta, principal, bucket)
    if not applied:
        return
    try:
        size = max(0, int(headers.get("content-length", "0") or 0))
    except ValueError:
        size = 0
    delay = 0.0
    for lim in applied:
        if lim.requests_per_s:
            burst = lim.requests_burst or lim.requests_per_s
            wait = table.take(f"{lim.scope}\0{lim.name}\0r", lim.requests_per_s, burst, 1.0, max_delay=MAX_DELAY)
            if wait > 0:
                await _refuse(scope, api, lim, wait)
            delay = max(delay, -wait)
        if lim.bytes_per_s:
            burst = lim.bytes_burst or lim.bytes_per_s
            # The body is drawn now, at most a burst of it against the tokens (a body larger than the
            # burst would otherwise never pass), the rest as debt that later requests wait out.
            wait = table.take(f"{lim.scope}\0{lim.name}\0b", lim.bytes_per_s, burst, min(size, burst) or 1e-9,
                              max_delay=MAX_DELAY)
            if wait > 0:
                await _refuse(scope, api, lim, wait)
            delay = max(delay, -wait)
            if size > burst:
                table.take(f"{lim.scope}\0{lim.name}\0b", lim.bytes_per_s, burst, size - burst, debt=True)
            scope.setdefault("exastor.qos", []).append(lim)
    if delay > 0:
        scope[THROTTLED] = True
        await _hold(scope, delay)  # its tokens are reserved: served in the order they were asked for


def settle(scope: dict[str, Any], sent: int) -> None:
    """After the response: draw the response body's bytes from the byte limits that admitted it."""
    table = _shared()
    if table is None or not sent:
        return
    for lim in scope.get("exastor.qos", ()):
        table.take(f"{lim.scope}\0{lim.name}\0b", lim.bytes_per_s or 0.0, lim.bytes_burst or lim.bytes_per_s or 0.0,
                   float(sent), debt=True)


async def _hold(scope: dict[str, Any], seconds: float) -> None:
    """Wait ``seconds`` (no CPU) out of the worker's in-flight count (``IN_FLIGHT``), back in it after."""
    slots = scope.get(IN_FLIGHT)
    if slots is not None:
        slots.count -= 1
    try:
        await asyncio.sleep(seconds)
    finally:
        if slots is not None:
            slots.count += 1


async def _refuse(scope: dict[str, Any], api: str, lim: Limit, wait: float) -> None:
    """Answer SlowDown, no sooner than MAX_DELAY: an over-limit request takes at least that long
    whether it waits or is refused, so a client that retries at once on each connection is held to
    a few refusals per second per connection instead of as many as the server can answer (the
    refusals' CPU would otherwise come out of every other tenant's share). Holding costs no CPU."""
    metrics.refused("qos", api, lim.scope)
    scope[THROTTLED] = True
    await _hold(scope, MAX_DELAY)
    raise errors.SlowDown(f"the {lim.scope} {lim.name!r} is over its rate limit", scope=lim.scope,
                          retry_after=max(1, math.ceil(wait)))
