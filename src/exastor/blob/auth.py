"""Blob authentication: Shared Key, service SAS, account SAS (with stored access policies).

Shared Key string-to-sign (Authorize with Shared Key, version 2009-09-19 and later)::

    VERB \\n Content-Encoding \\n Content-Language \\n Content-Length (empty when 0) \\n Content-MD5 \\n
    Content-Type \\n Date \\n If-Modified-Since \\n If-Match \\n If-None-Match \\n If-Unmodified-Since \\n
    Range \\n CanonicalizedHeaders (x-ms-*: sorted "name:value\\n") CanonicalizedResource
    (/account/path then "\\nname:value" per query parameter, names lower-cased and sorted, values unescaped
    and comma-joined).

With path-style URLs (http://host:port/account/container/blob) the path itself starts with the account,
so the canonical resource is /account/account/container/blob, exactly what the SDKs and Azurite use.

SAS string-to-sign layouts are those of signed version 2020-12-06 and later (what current SDKs send).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote

from exastor.auth.authorizer import sas_denial
from exastor.auth.operations import READ, Need, Operation
from exastor.auth.principal import AuthResult
from exastor.blob.errors import BlobError
from exastor.http.conditions import parse_http_date

_STANDARD = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
             "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
SAS_PARAMS = frozenset({"sv", "ss", "srt", "sp", "se", "st", "sip", "spr", "sig", "sr", "si", "rscc", "rscd",
                        "rsce", "rscl", "rsct", "sdd", "ses", "snapshot"})
MAX_DATE_SKEW = timedelta(minutes=15)   # Azure refuses a Shared Key request dated further off than this
OLDEST_SAS_VERSION = "2015-04-05"       # sip/spr and the /blob/ canonical resource start here
__all__ = ["AuthResult", "authorize", "verify_sas", "verify_shared_key", "shared_key_strings", "sign"]


def sign(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()).decode()


Keys = str | Sequence[str]  # the account key, or both of its keys (Azure's key1 and key2)


def _keys(key: Keys) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else tuple(k for k in key if k)


def _signed_by_any(keys: Keys, text: str, signature: str) -> bool:
    """Whether ``signature`` is ``text`` signed with one of the account's keys (either may sign)."""
    return any(hmac.compare_digest(sign(k, text), signature) for k in _keys(keys))


def _azure_sort_key(name: str) -> tuple[str, str]:
    # The SDK sorts x-ms-* names with a culture table that ignores hyphens at the first level.
    return name.replace("-", ""), name


def shared_key_strings(method: str, headers: dict[str, str], account: str, raw_path: str, query_string: str
                       ) -> Iterator[str]:
    """Every string-to-sign a correct client may have signed (path and header-sort variants), the
    usual one first, so a normal request costs one HMAC."""
    std = []
    for name in _STANDARD:
        value = headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        std.append(value)
    xms = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-ms-"))
    header_form = "".join(f"{k}:{v}\n" for k, v in xms)
    params: dict[str, list[str]] = {}
    if query_string:
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            params.setdefault(name.lower(), []).append(value)
    query = "".join(f"\n{name}:{','.join(vals)}" for name, vals in sorted(params.items()))
    head = method + "\n" + "\n".join(std) + "\n"
    yield head + header_form + f"/{account}{raw_path}{query}"
    decoded = unquote(raw_path)
    paths = dict.fromkeys([raw_path, quote(decoded, safe="/~"), decoded, quote(decoded, safe="/~!$&'()*+,;=:@")])
    header_forms = dict.fromkeys([header_form, "".join(
        f"{k}:{v}\n" for k, v in sorted(xms, key=lambda kv: _azure_sort_key(kv[0])))])
    for hf in header_forms:
        for p in paths:
            if (hf, p) != (header_form, raw_path):
                yield head + hf + f"/{account}{p}{query}"


def verify_shared_key(method: str, headers: dict[str, str], account: str, key: Keys, raw_path: str,
                      query_string: str, *, now: datetime | None = None) -> AuthResult:
    """Shared Key or Shared Key Lite. The request's date (x-ms-date, else Date) must be readable and
    within 15 minutes of ours, as Azure requires: a captured request cannot be replayed later."""
    auth = headers.get("authorization", "")
    scheme, _, cred = auth.partition(" ")
    if scheme not in ("SharedKey", "SharedKeyLite"):
        raise BlobError("InvalidAuthenticationInfo", "Only SharedKey and SharedKeyLite authorization are supported.")
    name, _, signature = cred.strip().partition(":")
    if name != account:
        raise BlobError("AuthenticationFailed", "The account in the Authorization header is unknown.")
    _check_request_date(headers, now or datetime.now(UTC))
    strings = (shared_key_strings(method, headers, account, raw_path, query_string) if scheme == "SharedKey"
               else shared_key_lite_strings(method, headers, account, raw_path, query_string))
    for text in strings:
        if _signed_by_any(key, text, signature):
            return AuthResult("sharedkey")
    raise BlobError("AuthenticationFailed")


def _check_request_date(headers: dict[str, str], now: datetime) -> None:
    raw = headers.get("x-ms-date") or headers.get("date")
    if not raw:
        raise BlobError("AuthenticationFailed", "Request date header not specified.")
    when = parse_http_date(raw)
    if when is None:
        raise BlobError("AuthenticationFailed", f"The date header in the request is not valid: {raw[:64]!r}.")
    if abs(now - when) > MAX_DATE_SKEW:
        raise BlobError("AuthenticationFailed", f"Request date header too old or too far ahead: {raw[:64]!r}.")


def shared_key_lite_strings(method: str, headers: dict[str, str], account: str, raw_path: str, query_string: str
                            ) -> Iterator[str]:
    """Shared Key Lite (Blob, 2009-09-19 and later): VERB, Content-MD5, Content-Type, Date, the x-ms-*
    headers, then /account/path with only ``?comp=`` kept."""
    xms = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-ms-"))
    header_form = "".join(f"{k}:{v}\n" for k, v in xms)
    date = "" if "x-ms-date" in headers else headers.get("date", "")
    head = "\n".join((method, headers.get("content-md5", ""), headers.get("content-type", ""), date)) + "\n"
    comp = dict(parse_qsl(query_string, keep_blank_values=True)).get("comp")
    suffix = f"?comp={comp}" if comp is not None else ""
    decoded = unquote(raw_path)
    for p in dict.fromkeys([raw_path, quote(decoded, safe="/~"), decoded]):
        yield head + header_form + f"/{account}{p}{suffix}"


def parse_time(value: str) -> datetime:
    """SAS st/se: ISO 8601 UTC, with or without seconds/fraction, or a bare date."""
    v = value.strip().rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(v[:26] if "." in v else v, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise BlobError("AuthenticationFailed", f"Invalid SAS time {value[:64]!r}.")


def _in_ip_range(client_ip: str, sip: str) -> bool:
    """Whether the client is inside ``sip`` (one address, or ``low-high``; IPv4 or IPv6). An address of
    the other family is simply outside (never an error); an unreadable range refuses everyone."""
    lo_text, _, hi_text = sip.partition("-")
    try:
        lo = ipaddress.ip_address(lo_text.strip())
        hi = ipaddress.ip_address((hi_text or lo_text).strip())
    except ValueError as exc:
        raise BlobError("AuthenticationFailed", "The signed IP range (sip) is not valid.") from exc
    if lo.version != hi.version:
        raise BlobError("AuthenticationFailed", "The signed IP range (sip) mixes IPv4 and IPv6.")
    try:
        ip = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # an IPv4 client on a dual-stack socket
    if mapped is not None:
        ip = mapped
    return ip.version == lo.version and int(lo) <= int(ip) <= int(hi)  # an address's order is its number's


def _check_window_ip_protocol(q: dict[str, str], start: str, expiry: str, client_ip: str, *, secure: bool,
                              now: datetime) -> None:
    if start and parse_time(start) > now:
        raise BlobError("AuthenticationFailed", "Signed access not yet valid (st is in the future).")
    if not expiry:
        raise BlobError("AuthenticationFailed", "Signed expiry time (se) is required.")
    if parse_time(expiry) < now:
        raise BlobError("AuthenticationFailed", "Signed expiry time has passed.")
    sip = q.get("sip")
    if sip and not _in_ip_range(client_ip, sip):
        raise BlobError("AuthorizationSourceIPMismatch")
    spr = q.get("spr")
    if spr:
        allowed = {p.strip() for p in spr.split(",")}
        if not allowed <= {"https", "http"} or "https" not in allowed:
            raise BlobError("AuthenticationFailed", "The signed protocol (spr) must be https or https,http.")
        if not secure and "http" not in allowed:
            raise BlobError("AuthorizationProtocolMismatch")


def _check_version(q: dict[str, str]) -> str:
    version = q.get("sv", "")
    if len(version) != 10 or version < OLDEST_SAS_VERSION:
        raise BlobError("AuthenticationFailed", f"SAS version {version[:16]!r} is not supported "
                        f"({OLDEST_SAS_VERSION} and later are).")
    if q.get("skoid") or q.get("sduoid"):
        raise BlobError("AuthenticationFailed", "User delegation SAS is not supported.")
    if q.get("ses"):
        raise BlobError("AuthenticationFailed", "Encryption scopes are not supported.")
    return version


def verify_sas(q: dict[str, str], account: str, key: Keys, container: str | None, blob: str | None,
               client_ip: str, policies: dict[str, dict[str, str]] | None, *, secure: bool = False,
               now: datetime | None = None) -> AuthResult:
    """Check a SAS token in the query. ``policies``: the container's stored access policies.
    ``client_ip``: the ASGI scope's client address; ``secure``: whether the request came over TLS."""
    if "sv" not in q or "sig" not in q:
        raise BlobError("AuthenticationFailed", "Missing sv or sig in the SAS token.")
    version = _check_version(q)
    now = now or datetime.now(UTC)
    if "ss" in q or "srt" in q:
        return _verify_account_sas(q, account, key, client_ip, version, secure=secure, now=now)
    sr = q.get("sr", "")
    if sr not in ("c", "b", "bs", "bv"):
        raise BlobError("AuthenticationFailed", "Invalid signed resource (sr).")
    path = f"/{container or ''}" + (f"/{blob}" if sr != "c" else "")
    perms, start, expiry = q.get("sp", ""), q.get("st", ""), q.get("se", "")
    si = q.get("si", "")
    if si:
        policy = (policies or {}).get(si)
        if policy is None:
            raise BlobError("AuthenticationFailed", "The stored access policy named in si does not exist.")
        for field, given in (("permission", perms), ("start", start), ("expiry", expiry)):
            if given and policy.get(field):  # Azure: a field comes from the SAS or the policy, never both
                raise BlobError("AuthenticationFailed", f"The SAS and its stored access policy both set {field}.")
        perms = perms or policy.get("permission", "")
        start = start or policy.get("start", "")
        expiry = expiry or policy.get("expiry", "")
    fields = [q.get("sp", ""), q.get("st", ""), q.get("se", ""), f"/blob/{account}{path}", si, q.get("sip", ""),
              q.get("spr", ""), version]
    if version >= "2018-11-09":
        fields += [sr, q.get("snapshot", "")]
    if version >= "2020-12-06":
        fields.append(q.get("ses", ""))
    fields += [q.get("rscc", ""), q.get("rscd", ""), q.get("rsce", ""), q.get("rscl", ""), q.get("rsct", "")]
    if not _signed_by_any(key, "\n".join(fields), q["sig"]):
        raise BlobError("AuthenticationFailed", "Signature did not match.")
    _check_window_ip_protocol(q, start, expiry, client_ip, secure=secure, now=now)
    if sr == "bs" and not q.get("snapshot"):
        raise BlobError("AuthenticationFailed", "A snapshot SAS (sr=bs) names a snapshot.")
    return AuthResult("service-sas", permissions=perms, resource=sr, path=path, snapshot=q.get("snapshot", ""))


def _verify_account_sas(q: dict[str, str], account: str, key: Keys, client_ip: str, version: str, *, secure: bool,
                        now: datetime) -> AuthResult:
    names = ["sp", "ss", "srt", "st", "se", "sip", "spr", "sv"]
    if version >= "2020-12-06":
        names.append("ses")
    text = account + "\n" + "".join(q.get(n, "") + "\n" for n in names)
    if not _signed_by_any(key, text, q["sig"]):
        raise BlobError("AuthenticationFailed", "Signature did not match.")
    if "b" not in q.get("ss", ""):
        raise BlobError("AuthorizationServiceMismatch", "This SAS is not valid for the Blob service.", status=403)
    srt = q.get("srt", "")
    if not srt or set(srt) - set("sco"):
        raise BlobError("AuthenticationFailed", "Invalid signed resource types (srt).")
    _check_window_ip_protocol(q, q.get("st", ""), q.get("se", ""), client_ip, secure=secure, now=now)
    return AuthResult("account-sas", permissions=q.get("sp", ""), resource=srt, services=q.get("ss", ""))


def authorize(result: AuthResult, level: str, needs: str, container: str | None, blob: str | None) -> None:
    """Whether a SAS grants an operation at ``level`` (s/c/o) needing one of the ``needs`` letters; the
    authorizer's own rule (exastor.auth.authorizer.sas_denial), for callers outside a request."""
    if result.kind == "sharedkey":
        return
    op = Operation("blob", "?", Need(level, "", None, READ), sas=needs, sas_level=level, service_sas=level != "s")
    code = sas_denial(op, result, container, blob)
    if code is not None:
        raise BlobError(code, "The SAS does not cover this resource." if code == "AuthenticationFailed" else None)
