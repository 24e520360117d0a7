"""The gateway middleware: what every request gets before and after the S3 or Blob front-end.

One ASGI wrapper around each front-end, so neither handles these itself:

- health probes, unauthenticated and cheap, on both ports (``/minio/health/live`` and
  ``/minio/health/ready``, the paths MinIO's load-balancer and Kubernetes examples already probe);
- a request id for every request: made here, put in the scope for the front-end (its error bodies
  carry the same id), in the response headers (``x-amz-request-id`` and ``x-amz-id-2`` for S3,
  ``x-ms-request-id`` for Blob, with the client's ``x-ms-client-request-id`` echoed), and in every
  log line written while the request is served;
- the refusals of the worker's limits (connections over ``max_connections``, requests in flight
  over ``max_requests``): 503 ``SlowDown`` / ``ServerBusy`` with ``Retry-After``;
- the access log line: time, request id, client, principal, api, operation, bucket, key, status,
  bytes in and out, latency. Principal, operation, bucket and key come from ``scope["exastor"]``
  when the front-end records them there, else from the request line.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from exastor.blob.errors import BlobError
from exastor.gateway.logs import AccessLog, current_request_id
from exastor.http import qos
from exastor.http.asgi import REQUEST_ID, Receive, Scope, Send, encode_headers
from exastor.s3.errors import S3Error

log = logging.getLogger("exastor.request")

LIVE_PATH = "/minio/health/live"
READY_PATH = "/minio/health/ready"
RETRY_AFTER_S = 1

REFUSE = "exastor.refuse"  # scope key set by gateway/protocol.py: why this connection is over a limit (503)


class RequestIds:
    """Request ids for one worker process: unique across workers (the pid, or a random base) and in
    the shapes clients expect (S3: 16 upper-case hex digits; Blob: a GUID)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._s3_prefix = f"{os.getpid() & 0xFFFFFF:06X}"
        self._blob_base = uuid.uuid4().hex[:20]
        self._host_token = os.urandom(12)

    def s3(self) -> str:
        return f"{self._s3_prefix}{next(self._counter) & 0xFFFFFFFFFF:010X}"

    def blob(self) -> str:
        b = self._blob_base
        return f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{next(self._counter) & 0xFFFFFFFFFFFF:012x}"

    def amz_id_2(self, request_id: str) -> str:
        """S3's extended request id: opaque to clients; names this worker and the request."""
        return base64.b64encode(self._host_token + bytes.fromhex(request_id)).decode()


IDS = RequestIds()  # re-made in each worker after the fork (see ``reset_ids``)


def reset_ids() -> None:
    global IDS
    IDS = RequestIds()


def id_headers(api: str, request_id: str, request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if api == "s3":
        return [(b"x-amz-request-id", request_id.encode()), (b"x-amz-id-2", IDS.amz_id_2(request_id).encode())]
    out = [(b"x-ms-request-id", request_id.encode())]
    for name, value in request_headers:
        if name == b"x-ms-client-request-id":
            out.append((name, value[:1024]))
            break
    return out


def _error(api: str, status: int, code: str, message: str, request_id: str) -> tuple[list[tuple[str, str]], bytes]:
    if api == "s3":
        return [("content-type", "application/xml")], S3Error(code, message, status=status).to_xml(request_id)
    return ([("content-type", "application/xml"), ("x-ms-error-code", code)],
            BlobError(code, message, status=status).to_xml(request_id))


def limit_error(api: str, status: int, kind: str) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body for a reply the protocol writes itself (request head too large, too slow, or
    not HTTP at all)."""
    request_id = IDS.s3() if api == "s3" else IDS.blob()
    if kind == "head":
        code = "RequestHeaderSectionTooLarge" if api == "s3" else "RequestHeaderFieldsTooLarge"
        message = "Your request header section exceeds the maximum allowed size."
    elif kind == "malformed":
        code = "InvalidRequest" if api == "s3" else "InvalidInput"
        message = "The request is not valid HTTP/1.1."
    else:
        code, message = "RequestTimeout", "The request head was not received within the timeout period."
    headers, body = _error(api, status, code, message, request_id)
    ids = [(k.decode(), v.decode()) for k, v in id_headers(api, request_id, [])]
    return ids + headers + [("date", formatdate(usegmt=True))], body


class InFlight:
    """Requests in flight in one worker, across its front-ends (``max_requests`` bounds the sum)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0


class Gateway:
    """Wraps one front-end (``api`` is ``s3`` or ``blob``)."""

    def __init__(self, app: Callable[..., Any], api: str, *, ready: Callable[[], Any],
                 in_flight: InFlight | None = None, access_log: AccessLog | None = None) -> None:
        self.app = app
        self.api = api
        self.ready = ready            # async () -> None when ready, else the reason
        self.load = in_flight or InFlight(1024)
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        # Probes are anonymous and plain; a signed request for that path is a request for an object
        # (bucket ``minio``, key ``health/...``) and goes to the front-end.
        if path.startswith("/minio/health/") and scope["method"] in ("GET", "HEAD") \
                and not scope.get("query_string") and not _has_authorization(scope["headers"]):
            await self._health(scope, send, path)
            return
        request_id = IDS.s3() if self.api == "s3" else IDS.blob()
        scope[REQUEST_ID] = request_id
        token = current_request_id.set(request_id)
        started = time.monotonic()
        state = {"status": 0, "in": 0, "out": 0}
        extra = id_headers(self.api, request_id, scope["headers"])

        async def counting_receive() -> dict[str, Any]:
            message = await receive()
            state["in"] += len(message.get("body", b""))
            return message

        async def tagged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                present = {name for name, _ in message.get("headers", ())}
                missing = [(k, v) for k, v in extra if k not in present]
                if missing:
                    message = {**message, "headers": [*message.get("headers", ()), *missing]}
            elif message["type"] == "http.response.body":
                state["out"] += len(message.get("body", b""))
            await send(message)

        load = self.load
        load.count += 1
        try:
            refused = scope.get(REFUSE) or (f"over max_requests ({load.limit})" if load.count > load.limit else None)
            if refused:
                log.warning("refused %s %s: %s", scope["method"], scope["path"], refused)
                await self._busy(scope, tagged_send, request_id, refused)
            else:
                scope[qos.IN_FLIGHT] = load  # a request parked by QoS leaves the count while it waits
                await self.app(scope, counting_receive, tagged_send)
        finally:
            load.count -= 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s %s -> %d (%d bytes in, %d out)", self.api, scope["method"], scope["path"],
                          state["status"], state["in"], state["out"])
            current_request_id.reset(token)
            if self.access_log is not None:
                self._log_access(scope, request_id, state, time.monotonic() - started)

    async def _busy(self, scope: Scope, send: Send, request_id: str, why: str) -> None:
        code = "SlowDown" if self.api == "s3" else "ServerBusy"
        headers, body = _error(self.api, 503, code, f"The server is busy ({why}). Please retry.", request_id)
        headers += [("retry-after", str(RETRY_AFTER_S)), ("content-length", str(len(body))), ("connection", "close")]
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.start", "status": 503, "headers": encode_headers(headers)})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _health(self, scope: Scope, send: Send, path: str) -> None:
        request_id = IDS.s3() if self.api == "s3" else IDS.blob()
        if path == LIVE_PATH:
            status, body = 200, b""
        elif path == READY_PATH:
            reason = await self.ready()
            status = 200 if reason is None else 503
            body = b"" if reason is None else f'{{"ready":false,"reason":"{reason}"}}'.encode()
        else:
            status, body = 404, b""
        headers = [(b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
                   *id_headers(self.api, request_id, scope["headers"])]
        if body:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _log_access(self, scope: Scope, request_id: str, state: dict[str, int], latency: float) -> None:
        info = scope.get("exastor") or {}
        bucket, key = info.get("bucket"), info.get("key")
        if bucket is None and key is None:
            bucket, key = _target(self.api, scope.get("path", ""))
        client = scope.get("client")
        assert self.access_log is not None
        self.access_log.write({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "request_id": request_id,
            "client": client[0] if client else None,
            "principal": info.get("principal"),
            "api": info.get("api", self.api),
            "operation": info.get("operation") or scope.get("method"),
            "method": scope.get("method"),
            "bucket": bucket,
            "key": key,
            "status": state["status"],
            "bytes_in": state["in"],
            "bytes_out": state["out"],
            "latency_ms": round(latency * 1000, 3),
        })


def _has_authorization(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"authorization" for name, _ in headers)


def _target(api: str, path: str) -> tuple[str | None, str | None]:
    """(bucket, key) from a path-style request line; the front-end's own answer is preferred."""
    parts = path.lstrip("/").split("/", 2 if api == "blob" else 1)
    if api == "blob":
        parts = parts[1:]  # /account/container/blob
    bucket = parts[0] if parts and parts[0] else None
    key = parts[1] if len(parts) > 1 and parts[1] else None
    return bucket, key
