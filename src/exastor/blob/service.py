"""Service-level operations: List Containers, Get/Set Service Properties (with CORS honoured),
Get Account Information, Get Service Stats, and CORS preflight."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from exastor.blob import xml as bx
from exastor.blob.common import BlobCall, http_date, lease_headers
from exastor.blob.errors import BlobError
from exastor.blob.xml import el, opt

PROPERTIES = "service_properties"
_DEFAULT_PROPERTIES = (
    "<StorageServiceProperties>"
    "<Logging><Version>1.0</Version><Delete>false</Delete><Read>false</Read><Write>false</Write>"
    "<RetentionPolicy><Enabled>false</Enabled></RetentionPolicy></Logging>"
    "<HourMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled>"
    "</RetentionPolicy></HourMetrics>"
    "<MinuteMetrics><Version>1.0</Version><Enabled>false</Enabled><RetentionPolicy><Enabled>false</Enabled>"
    "</RetentionPolicy></MinuteMetrics>"
    "<Cors />"
    "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>"
    "<StaticWebsite><Enabled>false</Enabled></StaticWebsite>"
    "</StorageServiceProperties>"
)


@dataclass
class CorsRule:
    origins: list[str]
    methods: list[str]
    allowed_headers: list[str]
    exposed_headers: list[str]
    max_age: int


@dataclass
class ServiceSettings:
    xml: str
    cors: list[CorsRule]
    delete_retention_days: int | None


def settings(call: BlobCall) -> ServiceSettings:
    """Parsed service properties, cached on the app until the database changes (any commit by any
    gateway worker, so a Set Service Properties served by another worker is seen at once)."""
    version = call.ns.data_version()
    cached = call.app.service_settings
    if cached is not None and cached[0] == version:
        return cached[1]
    raw = call.blobs.setting(PROPERTIES) or _DEFAULT_PROPERTIES
    root = bx.parse(raw.encode())
    rules = []
    for rule in root.iter("CorsRule"):
        def items(tag: str, rule: ET.Element = rule) -> list[str]:
            return [s.strip() for s in (bx.text(rule, tag, "") or "").split(",") if s.strip()]
        rules.append(CorsRule(items("AllowedOrigins"), [m.upper() for m in items("AllowedMethods")],
                              [h.lower() for h in items("AllowedHeaders")], items("ExposedHeaders"),
                              int(bx.text(rule, "MaxAgeInSeconds", "0") or 0)))
    days = None
    drp = root.find("DeleteRetentionPolicy")
    if drp is not None and (bx.text(drp, "Enabled", "false") or "").lower() == "true":
        days = int(bx.text(drp, "Days", "7") or 7)
    result = ServiceSettings(raw, rules, days)
    call.app.service_settings = (version, result)
    return result


async def get_properties(call: BlobCall) -> None:
    await call.reply(200, bx.doc(settings(call).xml))


async def set_properties(call: BlobCall) -> None:
    body = await call.read_small_body()
    new = bx.parse(body)
    if new.tag != "StorageServiceProperties":
        raise BlobError("InvalidXmlDocument")
    _validate(new)
    current = bx.parse(settings(call).xml.encode())
    for child in list(new):  # Azure merges: sections not sent keep their values
        old = current.find(child.tag)
        if old is not None:
            current.remove(old)
        current.append(child)
    await call.blobs.set_setting(call.grant, PROPERTIES, ET.tostring(current, encoding="unicode"))
    call.app.service_settings = None
    await call.reply(202)


def _validate(root: ET.Element) -> None:
    cors = root.find("Cors")
    if cors is not None and len(cors.findall("CorsRule")) > 5:
        raise BlobError("InvalidXmlNodeValue", "At most five CORS rules are allowed.")
    drp = root.find("DeleteRetentionPolicy")
    if drp is not None and (bx.text(drp, "Enabled", "false") or "").lower() == "true":
        try:
            days = int(bx.text(drp, "Days", "") or "")
        except ValueError as exc:
            raise BlobError("InvalidXmlDocument", "DeleteRetentionPolicy needs Days.") from exc
        if not 1 <= days <= 365:
            raise BlobError("InvalidXmlDocument", "DeleteRetentionPolicy Days must be 1-365.")


async def get_stats(call: BlobCall) -> None:
    body = ("<StorageServiceStats><GeoReplication><Status>live</Status>"
            f"<LastSyncTime>{http_date(0)}</LastSyncTime></GeoReplication></StorageServiceStats>")
    await call.reply(200, bx.doc(body))


async def account_info(call: BlobCall) -> None:
    await call.reply(200, b"", [("x-ms-sku-name", "Standard_LRS"), ("x-ms-account-kind", "StorageV2"),
                                ("x-ms-is-hns-enabled", "false")], head=call.req.method == "HEAD")


def service_endpoint(call: BlobCall) -> str:
    host = call.h.get("host", "127.0.0.1")
    return f"http://{host}/{call.app.account}/"


async def list_containers(call: BlobCall) -> None:
    q = call.q
    prefix, marker = q.get("prefix", ""), q.get("marker", "")
    try:
        max_results = int(q.get("maxresults", "5000"))
    except ValueError as exc:
        raise BlobError("InvalidQueryParameterValue") from exc
    if max_results <= 0:
        raise BlobError("OutOfRangeQueryParameterValue")
    include = {v.strip().lower() for v in q.get("include", "").split(",") if v.strip()}
    if include - {"metadata", "deleted", "system"}:
        raise BlobError("InvalidQueryParameterValue", "include may hold metadata, deleted and system.",
                        QueryParameterName="include")
    buckets = [b for b in call.ns.list_buckets(call.grant, prefix) if not marker or b.name >= marker]
    page, rest = buckets[:max_results], buckets[max_results:]
    leases = call.blobs.container_leases(call.grant) if page else {}
    items = []
    for b in page:
        props = (el("Last-Modified", http_date(b.attrs.get("blob_mtime_ns", b.created_ns)))
                 + el("Etag", container_etag(b.attrs, b.created_ns)))
        lh = dict(lease_headers(leases.get(b.name)))
        props += el("LeaseStatus", lh["x-ms-lease-status"]) + el("LeaseState", lh["x-ms-lease-state"])
        if "x-ms-lease-duration" in lh:
            props += el("LeaseDuration", lh["x-ms-lease-duration"])
        if b.attrs.get("public_access"):
            props += el("PublicAccess", b.attrs["public_access"])
        props += el("HasImmutabilityPolicy", "false") + el("HasLegalHold", "false")
        meta = ""
        if "metadata" in include:
            meta = "<Metadata>" + "".join(el(k, v) for k, v in (b.attrs.get("blob_meta") or {}).items()) \
                   + "</Metadata>"
        items.append(f"<Container>{el('Name', b.name)}<Properties>{props}</Properties>{meta}</Container>")
    body = (f'<EnumerationResults ServiceEndpoint="{service_endpoint(call)}">'
            + (el("Prefix", prefix) if prefix else "") + (el("Marker", marker) if marker else "")
            + (el("MaxResults", max_results) if "maxresults" in q else "")
            + "<Containers>" + "".join(items) + "</Containers>"
            + opt("NextMarker", rest[0].name if rest else None) + "</EnumerationResults>")
    await call.reply(200, bx.doc(body))


def container_etag(attrs: dict[str, Any], created_ns: int) -> str:
    return f'"0x{attrs.get("blob_etag_ns", created_ns):X}"'


# --- CORS ------------------------------------------------------------------------

def origin_allowed(pattern: str, origin: str) -> bool:
    """Whether a rule's allowed origin admits ``origin``, compared without regard to case: ``*``
    admits every origin; a pattern with ``*`` in its host (``https://*.contoso.com``, or
    ``*.contoso.com`` for any scheme) admits any non-empty run of host characters there, so
    ``https://www.contoso.com`` and ``https://a.b.contoso.com`` but not ``https://contoso.com``."""
    pattern, origin = pattern.strip().lower(), origin.strip().lower()
    if pattern == "*" or pattern == origin:
        return True
    if "*" not in pattern:
        return False
    if "://" not in pattern and "://" in origin:
        origin = origin.split("://", 1)[1]
    regex = "".join("[^/?#]+" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, origin) is not None


def _origin_rules(call: BlobCall) -> tuple[list[CorsRule], str | None]:
    """The account's CORS rules and the request's Origin (None when there is none)."""
    origin = call.h.get("origin")
    return (settings(call).cors, origin) if origin else ([], None)


def _match(call: BlobCall, method: str) -> CorsRule | None:
    """The first rule (in the order set) that admits the request's origin and method."""
    rules, origin = _origin_rules(call)
    if origin is None:
        return None
    for rule in rules:
        if any(origin_allowed(o, origin) for o in rule.origins) and method.upper() in rule.methods:
            return rule
    return None


def _allow_origin(rule: CorsRule, origin: str) -> str:
    # A rule that admits everyone answers "*" (and no credentials); otherwise the origin itself.
    return "*" if "*" in [o.strip() for o in rule.origins] else origin


def cors_headers(call: BlobCall) -> list[tuple[str, str]]:
    """The CORS headers of an actual request. As Azure does, ``Vary: Origin`` goes on GET and HEAD
    answers whenever CORS is on and the answer depends on the origin (no rule admits it, or the one
    that does names it), so a cache never serves one origin's answer to another; a rule admitting
    every origin makes the answer the same for all, and no Vary is sent."""
    vary = call.req.method in ("GET", "HEAD")
    origin = call.h.get("origin")
    if origin is None:
        # A cache may keep this answer and hand it to a later cross-origin request: say it varies,
        # unless a rule admits every origin for this method (then the answer is everyone's).
        if not vary or "origin" in call.h:
            return []
        rules = settings(call).cors
        if rules and not any("*" in [o.strip() for o in r.origins] and call.req.method in r.methods for r in rules):
            return [("vary", "Origin")]
        return []
    rules = settings(call).cors
    if not rules:
        return []
    rule = _match(call, call.req.method)
    if rule is None:
        return [("vary", "Origin")] if vary else []
    allow = _allow_origin(rule, origin)
    out = [("access-control-allow-origin", allow)]
    if rule.exposed_headers:
        out.append(("access-control-expose-headers", ",".join(rule.exposed_headers)))
    if allow != "*":
        out.append(("access-control-allow-credentials", "true"))
        if vary:
            out.append(("vary", "Origin"))
    return out


async def preflight(call: BlobCall) -> None:
    method = call.h.get("access-control-request-method")
    if not call.h.get("origin") or not method:
        raise BlobError("CorsPreflightFailure", "Missing Origin or Access-Control-Request-Method.", status=400)
    rule = _match(call, method)
    wanted = [h.strip().lower() for h in call.h.get("access-control-request-headers", "").split(",") if h.strip()]
    if rule is not None and wanted:
        for hdr in wanted:
            if not any(a == "*" or a == hdr or (a.endswith("*") and hdr.startswith(a[:-1]))
                       for a in (x.strip().lower() for x in rule.allowed_headers)):
                rule = None
                break
    if rule is None:
        raise BlobError("CorsPreflightFailure", "CORS not enabled or no matching rule found for this request.",
                        status=403)
    allow = _allow_origin(rule, call.h["origin"])
    headers = [("access-control-allow-origin", allow), ("access-control-allow-methods", method.upper()),
               ("access-control-max-age", str(rule.max_age))]
    if allow != "*":
        headers.append(("access-control-allow-credentials", "true"))
    if wanted:
        headers.append(("access-control-allow-headers", ",".join(wanted)))
    await call.reply(200, b"", headers)
