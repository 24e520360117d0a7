"""CORS: the bucket's stored configuration, applied to preflight (OPTIONS) and actual requests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from exastor.auth.policy import like as _like
from exastor.meta.records import Bucket
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import parse, text

METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


@dataclass(frozen=True)
class Rule:
    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    expose: tuple[str, ...]
    max_age: str | None

    def allows_origin(self, origin: str) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None."""
        for pattern in self.origins:
            if pattern == "*":
                return "*"
            if _like(pattern, origin):
                return origin
        return None

    def allows_headers(self, requested: list[str]) -> bool:
        return all(any(_like(p.lower(), h) for p in self.headers) for h in requested)


def validate(body: bytes) -> None:
    _parse(body.decode("utf-8", "replace"))


@lru_cache(maxsize=256)
def _parse(document: str) -> tuple[Rule, ...]:
    root = parse(document.encode())
    if root.tag != "CORSConfiguration":
        raise S3Error("MalformedXML")
    rules = []
    for node in root.findall("CORSRule"):
        methods = tuple((m.text or "").strip() for m in node.findall("AllowedMethod"))
        origins = tuple((o.text or "").strip() for o in node.findall("AllowedOrigin"))
        if not methods or not origins:
            raise S3Error("MalformedXML")
        for m in methods:
            if m not in METHODS:
                raise S3Error("InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method "
                              f"is {m}")
        rules.append(Rule(origins, methods, tuple((h.text or "").strip() for h in node.findall("AllowedHeader")),
                          tuple((h.text or "").strip() for h in node.findall("ExposeHeader")),
                          text(node, "MaxAgeSeconds")))
    if not rules:
        raise S3Error("MalformedXML")
    return tuple(rules)


def _rules(bucket: Bucket | None) -> tuple[Rule, ...]:
    stored = bucket.attrs.get("cors") if bucket else None
    if not stored:
        return ()
    try:
        return _parse(stored)
    except S3Error:
        return ()


def _headers(rule: Rule, allow_origin: str, requested: list[str] | None = None) -> list[tuple[str, str]]:
    out = [("access-control-allow-origin", allow_origin), ("access-control-allow-methods", ", ".join(rule.methods))]
    if requested:
        out.append(("access-control-allow-headers", ", ".join(requested)))
    if rule.expose:
        out.append(("access-control-expose-headers", ", ".join(rule.expose)))
    if rule.max_age:
        out.append(("access-control-max-age", rule.max_age))
    if allow_origin != "*":
        out.append(("vary", "Origin"))
    return out


def _find(bucket: Bucket | None, origin: str, method: str, requested: list[str]) -> list[tuple[str, str]] | None:
    for rule in _rules(bucket):
        allow = rule.allows_origin(origin)
        if allow is not None and method in rule.methods and rule.allows_headers(requested):
            return _headers(rule, allow, requested)
    return None


def actual_request_headers(call: S3Call) -> list[tuple[str, str]]:
    """CORS headers for a non-preflight request that carries Origin (also sent on errors)."""
    origin = call.h.get("origin")
    if not origin or not call.bucket:
        return []
    bucket = call.ns.cached_bucket(call.bucket)
    method = call.h.get("access-control-request-method") or call.req.method
    return _find(bucket, origin, method, []) or []


def _requested_headers(call: S3Call) -> list[str]:
    raw = call.h.get("access-control-request-headers", "")
    return [h.strip().lower() for h in raw.split(",") if h.strip()]


async def preflight(call: S3Call) -> None:
    origin = call.h.get("origin")
    method = call.h.get("access-control-request-method")
    if not origin or not method:
        raise S3Error("BadRequest", "Insufficient information. Origin request header needed.", status=400)
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    headers = _find(bucket, origin, method, _requested_headers(call))
    if headers is None:
        raise S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed.", status=403)
    await call.reply(200, b"", headers, content_type=None)
