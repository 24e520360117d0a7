"""The Azure Blob ASGI application: path-style target resolution, authentication, dispatch, errors.

URLs are path-style as Azurite serves them: ``/{account}/{container}/{blob}``. The account maps to
the S3 admin principal, so containers and blobs are that user's buckets and objects.
Every failure becomes a Blob XML error with ``x-ms-error-code``; an unexpected exception is logged
with its traceback here and the client gets InternalError.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Sequence

from exastor import errors
from exastor.auth.authorizer import Authorizer, RequestFacts, Source, Target
from exastor.auth.operations import operation
from exastor.auth.principal import ACCOUNT, ANONYMOUS, AuthResult, Principal
from exastor.blob import auth
from exastor.blob.common import DEFAULT_VERSION, BlobCall, map_store_error
from exastor.blob.errors import BlobError
from exastor.blob.router import Route, route
from exastor.blob.service import ServiceSettings
from exastor.http import qos
from exastor.http.asgi import REQUEST_ID, ClientDisconnected, Receive, Request, Scope, Send, respond
from exastor.namespace.blobs import Blobs
from exastor.namespace.names import is_name_text
from exastor.namespace.operations import Namespace

log = logging.getLogger("exastor.blob")


class BlobApp:
    # The router, reachable from a handler through call.app: Blob batch names its sub-requests'
    # operations with it (blob/batch.py), and the router imports the handlers, so not the reverse.
    route = staticmethod(route)

    def __init__(self, ns: Namespace, *, account: str, key: str, key2: str = "", principal: str = "admin",
                 copy_source_networks: Sequence[str] = ()) -> None:
        self.ns = ns
        self.blobs = Blobs(ns)
        self.account = account
        self.key = key
        self.keys = (key, key2) if key2 else (key,)  # a request or SAS signed with either is the account's
        from exastor.blob.remote import parse_networks
        # Private networks a copy source outside the account may be fetched from (blob/remote.py).
        self.copy_source_networks = parse_networks(copy_source_networks)
        self.principal = principal
        self.authorizer = Authorizer(ns)
        # blob/service.py's parsed service properties and the data_version() they were read at
        self.service_settings: tuple[int, ServiceSettings] | None = None
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
        # What other layers (metrics, access log, QoS) may read about this request, filled in as it is known.
        call.info = scope["exastor"] = {"api": "blob", "operation": None, "principal": "anonymous",
                                        "bucket": None, "key": None, "allowed": False}
        try:
            await self._handle(call)
        except ClientDisconnected:
            return
        except BlobError as exc:
            await self._error(call, exc)
        except errors.StoreError as exc:
            await self._error(call, map_store_error(exc, call))
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
        if not is_name_text(req.path):
            raise BlobError("InvalidUri", "The URL is not valid UTF-8 or names a NUL (%00).", status=400)
        call.info.update(bucket=call.container, key=call.blob)
        if call.container is not None and req.method != "OPTIONS":
            from exastor.blob.container import check_container_name
            check_container_name(call.container)
        if req.method == "OPTIONS":
            # A preflight carries no credentials by design; it reads the account's CORS rules only.
            from exastor.blob.service import preflight
            call.info["operation"] = "CorsPreflight"
            call.decision = self.authorizer.decide(operation("blob", "CorsPreflight"), Principal.anonymous(),
                                                   self._facts(call), Target(call.container, call.blob))
            call.info["allowed"] = True
            await preflight(call)
            return
        route_error: BlobError | None = None
        try:
            r: Route = route(req.method, call.container, call.blob, call.q, call.h)
            call.info["operation"] = r.operation
        except BlobError as exc:
            route_error = exc
        # Signed (Shared Key or SAS): the account's user, whose limits may refuse it before the
        # signature is checked (http/qos.py refuse_before_auth: it peeks, draws nothing).
        signed = "authorization" in req.headers or "sig" in call.q
        await qos.refuse_before_auth(req.scope, self.ns.meta, "blob", self.principal if signed else None,
                                     call.container)
        principal = self._authenticate(call)
        call.info["principal"] = principal.label
        if route_error is not None:
            raise route_error
        if "x-ms-encryption-key" in req.headers:
            # A customer-provided key promises the bytes are unreadable without it; exastor encrypts with
            # the store's own keys only, so storing (or serving) under such a promise would be a lie.
            raise BlobError("FeatureNotSupported", "Customer-provided encryption keys (x-ms-encryption-key) are "
                            "not supported; data is encrypted at rest with the store's keys.", status=409)
        op = operation("blob", r.operation)
        if principal.kind == ANONYMOUS and not op.target.public:
            # Azure's answers to an anonymous request for something never public.
            raise BlobError("NoAuthenticationInformation", status=401) if req.method not in ("GET", "HEAD") \
                else BlobError("ResourceNotFound")
        source = self._copy_source(call, principal) if op.source is not None else None
        call.decision = self.authorizer.decide(op, principal, self._facts(call),
                                               Target(call.container, call.blob), source)
        call.info["allowed"] = True
        await qos.admit(req.scope, self.ns.meta, "blob", principal.name, call.container, req.headers)  # http/qos.py
        from exastor.blob.service import cors_headers
        call.extra_headers.extend(cors_headers(call))
        await r.handler(call)

    def _facts(self, call: BlobCall) -> RequestFacts:
        return RequestFacts.from_scope(call.req.scope, call.h, call.q)

    def _authenticate(self, call: BlobCall) -> Principal:
        req = call.req
        if "authorization" in req.headers:
            # A batch sub-request's path as its client wrote and signed it (blob/batch.py), else the path.
            signed_path = req.scope.get("exastor.blob.signed_path", req.raw_path)
            call.auth = auth.verify_shared_key(req.method, req.headers, self.account, self.keys, signed_path,
                                               req.query_string)
            principal = Principal.account(self.principal)
        elif "sig" in call.q:
            call.auth = self._verify_sas(call, call.q, call.container, call.blob)
            principal = Principal.from_sas(self.principal, call.auth)
        else:
            return Principal.anonymous()
        call.principal = self.principal
        return principal

    def _verify_sas(self, call: BlobCall, q: dict[str, str], container: str | None, blob: str | None) -> AuthResult:
        """A SAS checked against the resource it is used for; the client address is the ASGI scope's."""
        policies = None
        if container and "si" in q:
            bucket = self.ns.cached_bucket(container)  # the container's stored access policies sign with it
            policies = (bucket.attrs.get("blob_acl") or {}) if bucket else {}
        facts = self._facts(call)
        return auth.verify_sas(q, self.account, self.keys, container, blob, facts.client_ip, policies,
                               secure=facts.secure)

    def _copy_source(self, call: BlobCall, principal: Principal) -> Source:
        """The copy source, and whose credentials read it: the SAS in its URL if it has one; else the
        account itself only when the request is signed with the account key (Azure reads a source in
        the same account that way); else nobody, so only public access reaches it. Never the
        destination's SAS: a SAS for one blob must not read another."""
        from exastor.blob.copy import is_external, source_location
        if is_external(call.h, self.account):
            return Source(principal, "", "", external=True)  # read with the URL's own credentials, remotely
        container, blob, query = source_location(call.h, self.account)
        if "sig" in query:
            try:
                token = self._verify_sas(call, query, container, blob)
            except BlobError as exc:
                raise BlobError("CannotVerifyCopySource", f"The copy source's SAS was refused: {exc.message}",
                                status=403) from exc
            return Source(Principal.from_sas(self.principal, token), container, blob)
        if principal.kind == ACCOUNT:
            return Source(principal, container, blob)
        return Source(Principal.anonymous(), container, blob)

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
