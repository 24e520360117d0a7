"""The web console on the admin listener: one static page (gateway/static/, no build step, no CDN)
and a small JSON API behind an admin login.

Login: the admin access key and secret (the S3 admin user's). A session is a signed cookie
(``exastor_session``, HttpOnly, SameSite=Strict, Path=/, 12 hours): ``expiry.nonce.hmac`` under a
key derived from the admin secret, so every worker verifies it without shared state and a new
admin key ends every session. State-changing calls (POST, PUT, DELETE) must also carry
``X-Exastor-CSRF``, a second HMAC of the session's nonce that the page gets from /api/session: a
cross-site form cannot set that header, and SameSite=Strict keeps the cookie off cross-site
requests in the first place. A request whose Origin is another site is refused outright.

The operator acts on buckets as their owner (browse, upload, download, delete objects), and on
users, quotas and the reducer as `exastor user|quota|reduce` do.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any
from urllib.parse import quote

from exastor import errors, metrics
from exastor.datadir.opening import ADMIN, new_access_key, new_secret_key
from exastor.http.asgi import ClientDisconnected, Request, Send, respond, respond_stream
from exastor.meta.records import User
from exastor.namespace.operations import PutSpec, SystemGrant
from exastor.services import reduce_control
from exastor.services.store_metrics import backlog

log = logging.getLogger("exastor.console")

COOKIE = "exastor_session"
SESSION_S = 12 * 3600
JSON_LIMIT = 64 << 10
STATIC = {"/": ("console.html", "text/html; charset=utf-8"),
          "/console.js": ("console.js", "text/javascript; charset=utf-8"),
          "/console.css": ("console.css", "text/css; charset=utf-8")}
# The page loads nothing from elsewhere; inline scripts and styles are not allowed either.
SECURITY_HEADERS = [
    ("content-security-policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'"),
    ("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"), ("cache-control", "no-store"),
]


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _static(name: str) -> bytes:
    return resources.files("exastor.gateway").joinpath("static", name).read_bytes()  # not a drive: package files and the metrics folder in --data


class Console:
    def __init__(self, admin_app: Any) -> None:
        self.app = admin_app
        self.ns = admin_app.ns
        self.meta = admin_app.ns.meta
        self.figures = admin_app.figures
        self._pages = {path: (_static(name), kind) for path, (name, kind) in STATIC.items()}

    # --- sessions ------------------------------------------------------------------
    def _admin(self) -> User:
        admin = next((u for u in self.meta.list_users() if u.name == ADMIN), None)
        if admin is None:
            raise ApiError(503, "no admin user")
        return admin

    def _key(self) -> bytes:
        return hmac.new(self._admin().secret_key.encode(), b"exastor-console-session", hashlib.sha256).digest()

    def _sign(self, text: str, key: bytes) -> str:
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()

    def new_session(self) -> str:
        key = self._key()
        body = f"{int(time.time()) + SESSION_S}.{secrets.token_hex(16)}"
        return f"{body}.{self._sign(body, key)}"

    def session(self, req: Request) -> str | None:
        """The session's nonce when the request carries a valid, unexpired session cookie."""
        for part in req.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name != COOKIE:
                continue
            expiry, _, rest = value.partition(".")
            nonce, _, sig = rest.partition(".")
            if not (expiry.isdigit() and nonce and sig) or int(expiry) < time.time():
                return None
            if hmac.compare_digest(sig, self._sign(f"{expiry}.{nonce}", self._key())):
                return nonce
            return None
        return None

    def csrf(self, nonce: str) -> str:
        return self._sign(f"csrf.{nonce}", self._key())[:32]

    # --- dispatch ------------------------------------------------------------------
    async def __call__(self, req: Request, send: Send) -> None:
        try:
            if req.path in self._pages and req.method in ("GET", "HEAD"):
                body, kind = self._pages[req.path]
                await respond(send, 200, [("content-type", kind), *SECURITY_HEADERS], body,
                              head=req.method == "HEAD")
                return
            if not req.path.startswith("/api/"):
                raise ApiError(404, "not found")
            await self.api(req, send)
        except ApiError as exc:
            await self._json(send, exc.status, {"error": str(exc)})
        except errors.QuotaExceeded as exc:
            await self._json(send, 403, {"error": exc.detail or "quota exceeded"})
        except errors.StoreError as exc:
            status = 404 if isinstance(exc, errors.BucketNotFound | errors.ObjectNotFound) else 400
            await self._json(send, status, {"error": exc.detail or type(exc).__name__})
        except ClientDisconnected:
            return

    async def _json(self, send: Send, status: int, doc: Any, headers: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps(doc).encode()
        await respond(send, status, [("content-type", "application/json"), *SECURITY_HEADERS, *(headers or [])],
                      body)

    async def _body(self, req: Request) -> dict[str, Any]:
        try:
            doc = json.loads(await req.read(JSON_LIMIT) or b"{}")
        except (OverflowError, ValueError) as exc:
            raise ApiError(400, "expected a small JSON object") from exc
        if not isinstance(doc, dict):
            raise ApiError(400, "expected a JSON object")
        return doc

    def _same_origin(self, req: Request) -> bool:
        origin = req.headers.get("origin")
        if origin is None:  # not sent by browsers on same-origin GETs, nor by scripts
            return True
        return origin.split("://", 1)[-1] == req.headers.get("host", "")

    async def api(self, req: Request, send: Send) -> None:
        path, method = req.path[len("/api"):], req.method
        if not self._same_origin(req):
            raise ApiError(403, "cross-origin request refused")
        if path == "/login" and method == "POST":
            await self.login(req, send)
            return
        nonce = self.session(req)
        if nonce is None:
            raise ApiError(401, "log in first")
        if method not in ("GET", "HEAD") and not hmac.compare_digest(req.headers.get("x-exastor-csrf", ""),
                                                                       self.csrf(nonce)):
            raise ApiError(403, "missing or wrong X-Exastor-CSRF header")
        parts = path.strip("/").split("/", 3)  # Request.path is already percent-decoded
        route = (method, parts[0] if parts else "")
        if route == ("GET", "session"):
            await self._json(send, 200, {"user": ADMIN, "csrf": self.csrf(nonce)})
        elif route == ("POST", "logout"):
            await self._json(send, 200, {}, [("set-cookie", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; "
                                                            "Max-Age=0")])
        elif route == ("GET", "overview"):
            snap = await asyncio.to_thread(self.figures.current, fresh=True)
            await self._json(send, 200, snap.to_json())
        elif route == ("GET", "traffic"):
            await self._json(send, 200, await asyncio.to_thread(traffic, self.app))
        elif route == ("GET", "services"):
            await self._json(send, 200, await asyncio.to_thread(services, self.app))
        elif route[1] == "reducer":
            await self.reducer(req, send, parts)
        elif route[1] == "users":
            await self.users(req, send, parts)
        elif route[1] == "buckets":
            await self.buckets(req, send, parts)
        else:
            raise ApiError(404, "no such API")

    # --- login ---------------------------------------------------------------------
    async def login(self, req: Request, send: Send) -> None:
        doc = await self._body(req)
        admin = self._admin()
        given_key, given_secret = str(doc.get("access_key", "")), str(doc.get("secret_key", ""))
        ok = hmac.compare_digest(given_key.encode(), admin.access_key.encode())
        ok &= hmac.compare_digest(given_secret.encode(), admin.secret_key.encode())
        if not ok:
            await asyncio.sleep(0.5)  # slows guessing; the keys are 20 and 40 random characters anyway
            raise ApiError(401, "wrong access key or secret key")
        token = self.new_session()
        nonce = token.split(".")[1]
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_S}"
        await self._json(send, 200, {"user": ADMIN, "csrf": self.csrf(nonce)}, [("set-cookie", cookie)])

    # --- the reducer ---------------------------------------------------------------
    async def reducer(self, req: Request, send: Send, parts: list[str]) -> None:
        if req.method == "POST" and len(parts) == 2 and parts[1] in ("run", "pause", "resume"):
            action = {"run": reduce_control.request_run, "pause": reduce_control.pause,
                      "resume": reduce_control.resume}[parts[1]]
            await asyncio.to_thread(action, self.meta)
        elif req.method != "GET" or len(parts) != 1:
            raise ApiError(404, "no such API")
        objects, size = await asyncio.to_thread(backlog, self.meta)
        state = await asyncio.to_thread(reduce_control.state, self.meta)
        await self._json(send, 200, {**state.to_json(), "backlog_objects": objects, "backlog_bytes": size})

    # --- users ---------------------------------------------------------------------
    async def users(self, req: Request, send: Send, parts: list[str]) -> None:
        if req.method == "GET" and len(parts) == 1:
            users = await asyncio.to_thread(self.meta.list_users)
            await self._json(send, 200, [{"name": u.name, "access_key": u.access_key, "created_ns": u.created_ns}
                                         for u in users])
        elif req.method == "POST" and len(parts) == 1:
            name = str((await self._body(req)).get("name", "")).strip()
            if not (1 <= len(name) <= 64 and name.isprintable() and "/" not in name):
                raise ApiError(400, "a user name is 1-64 printable characters without '/'")
            user = User(name, new_access_key(), new_secret_key(), time.time_ns())
            await asyncio.to_thread(self.meta.add_user, user)
            await self._json(send, 201, {"name": name, "access_key": user.access_key, "secret_key": user.secret_key})
        elif req.method == "DELETE" and len(parts) == 2:
            if parts[1] == ADMIN:
                raise ApiError(400, "the admin user is managed by `exastor serve`")
            transfer = req.query.get("transfer_to") or None
            moved = await asyncio.to_thread(lambda: self.meta.remove_user(parts[1], transfer_to=transfer))
            if moved is None:
                raise ApiError(404, f"no user {parts[1]!r}")
            await self._json(send, 200, {"removed": parts[1], "buckets_transferred": moved})
        else:
            raise ApiError(404, "no such API")

    # --- buckets and objects -------------------------------------------------------
    async def buckets(self, req: Request, send: Send, parts: list[str]) -> None:
        if len(parts) == 1:
            if req.method == "GET":
                await self._json(send, 200, await asyncio.to_thread(bucket_rows, self.meta))
            elif req.method == "POST":
                name = str((await self._body(req)).get("name", ""))
                await self.ns.create_bucket(SystemGrant(ADMIN), name)
                await self._json(send, 201, {"name": name, "owner": ADMIN})
            else:
                raise ApiError(405, "GET or POST")
            return
        bucket = self.ns.cached_bucket(parts[1])
        if bucket is None:
            raise ApiError(404, f"no bucket {parts[1]!r}")
        owner = SystemGrant(bucket.owner)  # the operator (logged in as admin) acts as the bucket's owner
        if len(parts) == 3 and parts[2] == "objects" and req.method == "GET":
            prefix = req.query.get("prefix", "")
            listed = self.ns.list_objects(owner, bucket.name, prefix=prefix, delimiter="/",
                                          cursor=req.query.get("after") or None, max_keys=1000)
            await self._json(send, 200, {
                "prefix": prefix, "prefixes": listed.prefixes, "truncated": listed.truncated,
                "next": listed.next_cursor,
                "objects": [{"key": o.key, "size": o.size, "etag": o.etag, "modified_ns": o.mtime_ns}
                            for o in listed.objects]})
            return
        if len(parts) != 4 or parts[2] != "objects" or not parts[3]:
            raise ApiError(404, "no such API")
        key = parts[3]
        if req.method == "GET":
            obj = self.ns.get_object(owner, bucket.name, key)
            filename = quote(key.rsplit("/", 1)[-1])
            headers = [("content-type", obj.attrs.get("content-type") or "application/octet-stream"),
                       ("content-length", str(obj.size)), ("etag", f'"{obj.etag}"'),
                       ("content-disposition", f"attachment; filename*=UTF-8''{filename}"), *SECURITY_HEADERS]
            await respond_stream(send, 200, headers, self.ns.read(owner, obj))
        elif req.method == "PUT":
            spec = PutSpec(attrs={"content-type": req.headers.get("content-type") or "application/octet-stream"})
            obj = await self.ns.put_object(owner, bucket.name, key, _body_pieces(req), spec)
            await self._json(send, 201, {"key": key, "size": obj.size, "etag": obj.etag})
        elif req.method == "DELETE":
            await self.ns.delete_object(owner, bucket.name, key)
            await self._json(send, 200, {"deleted": key})
        else:
            raise ApiError(405, "GET, PUT or DELETE")


async def _body_pieces(req: Request) -> AsyncIterator[bytes | memoryview]:
    async for piece in req.stream():
        yield piece


def bucket_rows(meta: Any) -> list[dict[str, Any]]:
    usage = meta.bucket_usage()
    quotas = {(q["scope"], q["name"]): q for q in meta.quotas()}
    rows = []
    for b in meta.list_buckets():
        used_bytes, used_objects = usage.get(b.name, (0, 0))
        quota = quotas.get(("bucket", b.name))
        rows.append({"name": b.name, "owner": b.owner, "created_ns": b.created_ns, "versioning": b.versioning,
                     "bytes": used_bytes, "objects": used_objects,
                     "quota_bytes": quota["max_bytes"] if quota else None,
                     "quota_objects": quota["max_objects"] if quota else None})
    return rows


def _samples(app: Any) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of the per-request and background series, merged across the workers."""
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = metrics.directory()
    if directory is None:
        return []
    import glob
    import os

    files = glob.glob(os.path.join(str(directory), "*.db"))  # not a drive: package files and the metrics folder in --data
    return [(s.name, s.labels, s.value) for family in MultiProcessCollector.merge(files, accumulate=True)
            for s in family.samples]


def traffic(app: Any) -> dict[str, Any]:
    """Totals since the server started; the page turns two of them into rates and percentiles."""
    out: dict[str, Any] = {"t": time.time(), "requests": {}, "errors": 0, "received": 0, "sent": 0,
                           "latency_buckets": {}, "latency_count": 0, "latency_sum": 0.0}
    for name, labels, value in _samples(app):
        if name == "exastor_requests_total":
            api = labels.get("api", "")
            out["requests"][api] = out["requests"].get(api, 0) + value
            if labels.get("status", "").startswith("5") or labels.get("status") == "none":
                out["errors"] += value
        elif name == "exastor_received_bytes_total":
            out["received"] += value
        elif name == "exastor_sent_bytes_total":
            out["sent"] += value
        elif name == "exastor_request_seconds_bucket":
            le = labels["le"]
            out["latency_buckets"][le] = out["latency_buckets"].get(le, 0) + value
        elif name == "exastor_request_seconds_count":
            out["latency_count"] += value
        elif name == "exastor_request_seconds_sum":
            out["latency_sum"] += value
    return out


def services(app: Any) -> dict[str, Any]:
    """The background services' counters and last passes, as /metrics has them."""
    wanted = ("exastor_reducer_", "exastor_gc_", "exastor_scrub_", "exastor_repair_", "exastor_qos_",
              "exastor_quota_")
    out: dict[str, float] = {}
    for name, labels, value in _samples(app):
        if name.startswith(wanted):
            key = name + "".join(f"{{{k}={v}}}" for k, v in sorted(labels.items()))
            out[key] = out.get(key, 0) + value
    return {"series": out, "reducer": reduce_control.state(app.ns.meta).to_json()}
