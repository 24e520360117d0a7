"""The Azure Blob ASGI application: path-style target resolution, authentication, dispatch, errors.

URLs are path-style as Azurite serves them: ``/{account}/{container}/{blob}``. The account maps to
the S3 admin principal, so containers and blobs are that user's buckets and objects.
Every failure becomes a Blob XML error with ``x-ms-error-code``; an unexpected exception is logged
with its traceback here and the client gets InternalError.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import uuid

from exastor import errors
from exastor.blob import auth
from exastor.blob.common import DEFAULT_VERSION, BlobCall, map_store_error
from exastor.blob.errors import BlobError
from exastor.blob.router import Route, route
from exastor.http.asgi import REQUEST_ID, ClientDisconnected, Receive, Request, Scope, Send, respond
from exastor.meta.sqlite import store_error
from exastor.namespace.blobs import Blobs
from exastor.namespace.store import Namespace

log = logging.getLogger("exastor.blob")


class BlobApp:
    def __init__(self, ns: Namespace, *, account: str, key: str, principal: str = "admin") -> None:
        self.ns = ns
        self.blobs = Blobs(ns)
        self.account = account
        self.key = key
        self.principal = principal
        self._ids = itertools.count(1)
        self._id_base = uuid.uuid4().hex[:20]

    def _request_id(self) -> str:
        n = next(self._ids)
        b = self._id_base
        return f"{b[:8]}-{b[8:12]}-{b[12:16]}-{b[16:20]}-{n:012x}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        version = req.headers.get("x-ms-version") or DEFAULT_VERSION
        call = BlobCall(req, send, self, scope.get(REQUEST_ID) or self._request_id(), version)
        try:
            await self._handle(call)
        except ClientDisconnected:
            return
        except BlobError as exc:
            await self._error(call, exc)
        except errors.StoreError as exc:
            await self._error(call, map_store_error(exc, call))
        except sqlite3.OperationalError as exc:
            failure = store_error(exc)
            if isinstance(failure, errors.Unavailable):
                log.exception("metadata error on %s %s", req.method, req.raw_path)
            await self._error(call, map_store_error(failure, call))
        except Exception:
            log.exception("internal error on %s %s (request %s)", req.method, req.raw_path, call.request_id)
            await self._error(call, BlobError("InternalError"))

    async def _handle(self, call: BlobCall) -> None:
        req = call.req
        parts = req.path.lstrip("/").split("/", 2)
        if parts[0] != self.account:
            raise BlobError("InvalidUri", f"The URL must start with the account name /{self.account}/.",
                            status=400)
        call.container = parts[1] if len(parts) > 1 and parts[1] else None
        call.blob = parts[2] if len(parts) > 2 and parts[2] else None
        if req.method == "OPTIONS":
            from exastor.blob.service import preflight
            await preflight(call)
            return
        r: Route = route(req.method, call.container, call.blob, call.q, call.h)
        self._authenticate(call, r)
        from exastor.blob.service import cors_headers
        call.extra_headers.extend(cors_headers(call))
        await r.handler(call)

    def _authenticate(self, call: BlobCall, r: Route) -> None:
        req = call.req
        if "authorization" in req.headers:
            call.auth = auth.verify_shared_key(req.method, req.headers, self.account, self.key, req.raw_path,
                                               req.query_string)
        elif "sig" in call.q:
            policies = None
            if call.container and "si" in call.q:
                bucket = self.ns.meta.get_bucket(call.container)
                policies = (bucket.attrs.get("blob_acl") or {}) if bucket else {}
            call.auth = auth.verify_sas(call.q, self.account, self.key, call.container, call.blob,
                                        req.client_host, policies)
            auth.authorize(call.auth, r.level, r.perms, call.container, call.blob)
        else:
            # Anonymous: only reads the container's public access level allows (checked by handlers).
            if not r.anonymous:
                raise BlobError("NoAuthenticationInformation", status=401) if req.method not in ("GET", "HEAD") \
                    else BlobError("ResourceNotFound")
            return
        call.principal = self.principal

    async def _error(self, call: BlobCall, exc: BlobError) -> None:
        if call.response_started:
            raise ConnectionAbortedError(exc.code)
        head = call.req.method == "HEAD" or exc.status == 304
        body = b"" if head else exc.to_xml(call.request_id)
        headers = call.base_headers() + list(exc.headers.items())
        if exc.status != 304:
            headers.append(("x-ms-error-code", exc.code))
        if body:
            headers.append(("content-type", "application/xml"))
        if not await call.req.drain_small_body(8 << 20):
            headers.append(("connection", "close"))  # an unread large body must not be parsed as a request
        await respond(call.send, exc.status, headers, body, head=head)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
