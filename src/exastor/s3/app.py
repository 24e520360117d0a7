"""The S3 ASGI application: target resolution, authentication, dispatch, and errors.

Every failure becomes an S3 XML error with a request id; an unexpected
exception is logged with its traceback here and the client gets InternalError.
"""

from __future__ import annotations

import itertools
import logging
import os

from exastor import errors
from exastor.auth.authorizer import Authorizer, RequestFacts, Source, Target
from exastor.auth.decision import Decision
from exastor.auth.operations import operation
from exastor.auth.principal import Principal
from exastor.http import qos
from exastor.http.asgi import REQUEST_ID, ClientDisconnected, Receive, Request, Scope, Send, respond
from exastor.namespace.names import is_name_text
from exastor.namespace.operations import Namespace
from exastor.s3 import cors, sigv4
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error, to_s3_error
from exastor.s3.put import parse_copy_source
from exastor.s3.router import route

log = logging.getLogger("exastor.s3")

class S3App:
    def __init__(self, ns: Namespace, *, domains: tuple[str, ...] = ("localhost",),
                 regions: tuple[str, ...] | None = None) -> None:
        self.ns = ns
        # Credential-scope regions accepted: the store's own region unless configured otherwise.
        self.regions = tuple(regions) if regions else (ns.region,)
        self.authorizer = Authorizer(ns)
        self.domains = tuple(d.lower() for d in domains)
        self._ids = itertools.count(1)
        self._id_prefix = f"{os.getpid():X}".rjust(6, "0")

    def _target(self, req: Request) -> tuple[str | None, str | None]:
        host = req.headers.get("host", "").lower().rsplit(":", 1)[0] if req.headers.get("host") else ""
        for domain in self.domains:
            suffix = "." + domain
            if host.endswith(suffix) and len(host) > len(suffix):
                bucket = host[: -len(suffix)]
                key = req.path[1:] or None
                return bucket, key
        path = req.path[1:]
        if not path:
            return None, None
        bucket, sep, key = path.partition("/")
        return bucket, (key if sep and key else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        request_id = scope.get(REQUEST_ID) or f"{self._id_prefix}{next(self._ids):010X}"
        call = S3Call(req, send, self.ns, None, None, None, request_id, None, regions=self.regions)
        # What other layers (metrics, access log, QoS) may read about this request, filled in as it is known.
        call.info = scope["exastor"] = {"api": "s3", "operation": None, "principal": "anonymous",
                                        "bucket": None, "key": None, "allowed": False}
        try:
            await self._handle(call)
        except ClientDisconnected:
            return
        except S3Error as exc:
            await self._error(call, exc)
        except errors.StoreError as exc:
            await self._error(call, to_s3_error(exc, call))
        except Exception:
            log.exception("internal error on %s %s (request %s)", req.method, req.raw_path, request_id)
            await self._error(call, S3Error("InternalError"))

    async def _handle(self, call: S3Call) -> None:
        req = call.req
        bucket, key = self._target(req)
        if not is_name_text(bucket or "") or not is_name_text(key or ""):
            raise S3Error("InvalidURI")  # %FF, %00 and the like: nothing can be stored under it
        if bucket == "":
            raise S3Error("InvalidBucketName")  # "//key": an empty bucket segment names no bucket
        call.bucket, call.key = bucket, key
        call.info.update(bucket=bucket, key=key)
        if "origin" in req.headers and req.method != "OPTIONS":
            call.extra_headers.extend(cors.actual_request_headers(call))
        # The operation is named before the signature is checked (for the record), but a request that
        # names none answers as before: a bad signature first, then NotImplemented/MethodNotAllowed.
        route_error: S3Error | None = None
        try:
            r = route(req.method, bucket, key, req.query, "x-amz-copy-source" in req.headers)
            call.info["operation"] = r.operation
        except S3Error as exc:
            route_error = exc
        # A CORS preflight carries no credentials by design: a presigned URL's signature in its query
        # was made for the method it announces, not for OPTIONS, and is not checked here.
        if route_error is None and r.operation == "CorsPreflight":
            call.auth = None
        else:
            await self._refuse_over_limit_early(call)
            call.auth = sigv4.authenticate(req.method, req.raw_path, req.query_string, req.headers, self._secret,
                                           regions=self.regions)
        principal = Principal.anonymous()
        if call.auth is not None:
            user = self.ns.user_by_access_key(call.auth.access_key)
            principal = Principal.user(user.name) if user else principal
        call.principal = principal.name
        call.info["principal"] = principal.label
        if route_error is not None:
            raise route_error
        call.decision = self._decide(call, r.operation, principal)
        call.info["allowed"] = True
        await qos.admit(req.scope, self.ns.meta, "s3", principal.name, bucket, req.headers)  # http/qos.py
        await r.handler(call)

    async def _refuse_over_limit_early(self, call: S3Call) -> None:
        """A request of a user or bucket far over its request rate is refused before its signature is
        checked (http/qos.py ``refuse_before_auth``: it peeks, draws nothing)."""
        claimed = sigv4.claimed_access_key(call.req.query, call.req.headers)
        user = self.ns.user_by_access_key(claimed) if claimed else None
        await qos.refuse_before_auth(call.req.scope, self.ns.meta, "s3", user.name if user else None, call.bucket)

    def _decide(self, call: S3Call, name: str, principal: Principal) -> Decision:
        """The authorizer's decision for this request: before the handler, on every resource it names."""
        h, q = call.h, call.q
        facts = RequestFacts.from_scope(call.req.scope, h, q)
        source = None
        if "x-amz-copy-source" in h and name in ("CopyObject", "UploadPartCopy"):
            src_bucket, src_key, src_version = parse_copy_source(h["x-amz-copy-source"])
            source = Source(principal, src_bucket, src_key, src_version)
        target = Target(call.bucket, call.key, q.get("versionId"))
        return self.authorizer.decide(operation("s3", name), principal, facts, target, source)

    def _secret(self, access_key: str) -> str | None:
        user = self.ns.user_by_access_key(access_key)
        return user.secret_key if user else None

    async def _error(self, call: S3Call, exc: S3Error) -> None:
        if call.response_started:
            # Headers are gone: the only honest signal left is to cut the connection short.
            raise ConnectionAbortedError(exc.code)
        exc.resource = exc.resource or call.req.path
        body = b"" if exc.status == 304 else exc.to_xml(call.request_id)
        headers = call.base_headers() + list(exc.headers.items())
        if not await call.req.drain_small_body():
            headers.append(("connection", "close"))  # an unread large body must not be parsed as a request
        if body:
            headers.append(("content-type", "application/xml"))
        await respond(call.send, exc.status, headers, body, head=call.req.method == "HEAD")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
