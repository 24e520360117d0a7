"""The S3 ASGI application: target resolution, authentication, dispatch, and errors.

Every failure becomes an S3 XML error with a request id; an unexpected
exception is logged with its traceback here and the client gets InternalError.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3

from exastor import errors
from exastor.http.asgi import REQUEST_ID, ClientDisconnected, Receive, Request, Scope, Send, respond
from exastor.meta.sqlite import store_error
from exastor.namespace.store import Namespace
from exastor.s3 import access, cors, sigv4
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.router import route

log = logging.getLogger("exastor.s3")

_SIMPLE: dict[type[errors.StoreError], str] = {
    errors.AccessDenied: "AccessDenied",
    errors.BucketNotFound: "NoSuchBucket",
    errors.BucketNotEmpty: "BucketNotEmpty",
    errors.InvalidBucketName: "InvalidBucketName",
    errors.InvalidKey: "InvalidArgument",
    errors.KeyTooLong: "KeyTooLongError",
    errors.VersionNotFound: "NoSuchVersion",
    errors.UploadNotFound: "NoSuchUpload",
    errors.InvalidPart: "InvalidPart",
    errors.InvalidPartOrder: "InvalidPartOrder",
    errors.PartTooSmall: "EntityTooSmall",
    errors.PreconditionFailed: "PreconditionFailed",
    errors.BadDigest: "BadDigest",
    errors.IncompleteBody: "IncompleteBody",
    errors.EntityTooLarge: "EntityTooLarge",
    errors.InvalidArgument: "InvalidArgument",
    errors.InvalidRange: "InvalidRange",
    errors.InsufficientStorage: "InsufficientStorage",
    errors.Unavailable: "ServiceUnavailable",
    errors.DataCorrupted: "InternalError",
}


def to_s3_error(exc: errors.StoreError, call: S3Call | None) -> S3Error:
    if isinstance(exc, errors.BucketExists):
        return S3Error("BucketAlreadyOwnedByYou" if exc.info.get("owned_by_caller") else "BucketAlreadyExists")
    if isinstance(exc, errors.ObjectNotFound | errors.MethodNotAllowed):
        marker = exc.info.get("delete_marker")
        headers = {}
        if marker is not None:
            headers = {"x-amz-delete-marker": "true", "x-amz-version-id": marker.version_id}
        if isinstance(exc, errors.MethodNotAllowed):
            return S3Error("MethodNotAllowed", headers=headers)
        return S3Error("NoSuchKey", headers=headers, Key=call.key if call and call.key else "")
    for cls in type(exc).__mro__:
        code = _SIMPLE.get(cls)  # type: ignore[arg-type]
        if code:
            return S3Error(code, exc.detail or None if code == "InvalidArgument" else None)
    return S3Error("InternalError")


class S3App:
    def __init__(self, ns: Namespace, *, domains: tuple[str, ...] = ("localhost",)) -> None:
        self.ns = ns
        ns.authorizer = access.authorize
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
        call = S3Call(req, send, self.ns, None, None, None, request_id, None)
        access.current_call.set(call)
        try:
            bucket, key = self._target(req)
            call.bucket, call.key = bucket, key
            if "origin" in req.headers and req.method != "OPTIONS":
                call.extra_headers.extend(cors.actual_request_headers(call))
            call.auth = sigv4.authenticate(req.method, req.raw_path, req.query_string, req.headers, self._secret)
            if call.auth is not None:
                user = self.ns.user_by_access_key(call.auth.access_key)
                call.principal = user.name if user else None
            handler = route(req.method, bucket, key, req.query, "x-amz-copy-source" in req.headers)
            await handler(call)
        except ClientDisconnected:
            return
        except S3Error as exc:
            await self._error(call, exc)
        except errors.StoreError as exc:
            await self._error(call, to_s3_error(exc, call))
        except sqlite3.OperationalError as exc:
            failure = store_error(exc)
            if isinstance(failure, errors.Unavailable):
                log.exception("metadata error on %s %s", req.method, req.raw_path)
            await self._error(call, to_s3_error(failure, call))
        except Exception:
            log.exception("internal error on %s %s (request %s)", req.method, req.raw_path, request_id)
            await self._error(call, S3Error("InternalError"))

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
