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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, unquote

from exastor.blob.errors import BlobError

_STANDARD = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
             "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
SAS_PARAMS = frozenset({"sv", "ss", "srt", "sp", "se", "st", "sip", "spr", "sig", "sr", "si", "rscc", "rscd",
                        "rsce", "rscl", "rsct", "sdd", "ses", "snapshot"})


@dataclass
class AuthResult:
    """Who is calling. ``sas`` is None for Shared Key (full access)."""

    kind: str                           # 'sharedkey', 'service-sas', 'account-sas'
    permissions: str = ""
    resource: str = ""                  # service SAS 'sr' (c, b, bs, bv) / account SAS resource types
    services: str = ""
    path: str = ""                      # service SAS: the container or container/blob it names


def sign(key: str, text: str) -> str:
    return base64.b64encode(hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()).decode()


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


def verify_shared_key(method: str, headers: dict[str, str], account: str, key: str, raw_path: str,
                      query_string: str) -> AuthResult:
    auth = headers.get("authorization", "")
    scheme, _, cred = auth.partition(" ")
    if scheme != "SharedKey":
        raise BlobError("InvalidAuthenticationInfo", "Only SharedKey authorization is supported.")
    name, _, signature = cred.strip().partition(":")
    if name != account:
        raise BlobError("AuthenticationFailed", "The account in the Authorization header is unknown.")
    if "x-ms-date" not in headers and "date" not in headers:
        raise BlobError("AuthenticationFailed", "Request date header not specified.")
    for text in shared_key_strings(method, headers, account, raw_path, query_string):
        if hmac.compare_digest(sign(key, text), signature):
            return AuthResult("sharedkey")
    raise BlobError("AuthenticationFailed")


def parse_time(value: str) -> datetime:
    """SAS st/se: ISO 8601 UTC, with or without seconds/fraction, or a bare date."""
    v = value.strip().rstrip("Z")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(v[:26] if "." in v else v, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise BlobError("AuthenticationFailed", f"Invalid SAS time {value!r}.")


def _check_window_ip_protocol(q: dict[str, str], start: str, expiry: str, client_ip: str) -> None:
    now = datetime.now(UTC)
    if start and parse_time(start) > now:
        raise BlobError("AuthenticationFailed", "Signed access not yet valid (st is in the future).")
    if not expiry:
        raise BlobError("AuthenticationFailed", "Signed expiry time (se) is required.")
    if parse_time(expiry) < now:
        raise BlobError("AuthenticationFailed", "Signed expiry time has passed.")
    sip = q.get("sip")
    if sip:
        lo, _, hi = sip.partition("-")
        try:
            ip = ipaddress.ip_address(client_ip)
            if not ipaddress.ip_address(lo) <= ip <= ipaddress.ip_address(hi or lo):
                raise BlobError("AuthorizationSourceIPMismatch")
        except ValueError as exc:
            raise BlobError("AuthorizationSourceIPMismatch") from exc
    spr = q.get("spr")
    if spr and "http" not in [p.strip() for p in spr.split(",")]:
        raise BlobError("AuthorizationProtocolMismatch")


def verify_sas(q: dict[str, str], account: str, key: str, container: str | None, blob: str | None,
               client_ip: str, policies: dict[str, dict[str, str]] | None) -> AuthResult:
    """Check a SAS token in the query. ``policies``: the container's stored access policies."""
    if "sv" not in q or "sig" not in q:
        raise BlobError("AuthenticationFailed", "Missing sv or sig in the SAS token.")
    if "ss" in q or "srt" in q:
        return _verify_account_sas(q, account, key, client_ip)
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
        perms = perms or policy.get("permission", "")
        start = start or policy.get("start", "")
        expiry = expiry or policy.get("expiry", "")
    fields = [q.get("sp", ""), q.get("st", ""), q.get("se", ""), f"/blob/{account}{path}", si, q.get("sip", ""),
              q.get("spr", ""), q.get("sv", ""), sr, q.get("snapshot", ""), q.get("ses", ""), q.get("rscc", ""),
              q.get("rscd", ""), q.get("rsce", ""), q.get("rscl", ""), q.get("rsct", "")]
    if not hmac.compare_digest(sign(key, "\n".join(fields)), q["sig"]):
        raise BlobError("AuthenticationFailed", "Signature did not match.")
    _check_window_ip_protocol(q, start, expiry, client_ip)
    return AuthResult("service-sas", permissions=perms, resource=sr, path=path)


def _verify_account_sas(q: dict[str, str], account: str, key: str, client_ip: str) -> AuthResult:
    names = ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv", "ses")
    text = account + "\n" + "".join(q.get(n, "") + "\n" for n in names)
    if not hmac.compare_digest(sign(key, text), q["sig"]):
        raise BlobError("AuthenticationFailed", "Signature did not match.")
    if "b" not in q.get("ss", ""):
        raise BlobError("AuthorizationServiceMismatch", "This SAS is not valid for the Blob service.", status=403)
    _check_window_ip_protocol(q, q.get("st", ""), q.get("se", ""), client_ip)
    return AuthResult("account-sas", permissions=q.get("sp", ""), resource=q.get("srt", ""),
                      services=q.get("ss", ""))


def authorize(result: AuthResult, level: str, needs: str, container: str | None, blob: str | None) -> None:
    """Check a SAS grants an operation: ``level`` is s(ervice), c(ontainer) or o(bject); ``needs`` the
    permission letters of which one suffices."""
    if result.kind == "sharedkey":
        return
    if result.kind == "account-sas":
        if level not in result.resource:
            raise BlobError("AuthorizationResourceTypeMismatch")
    else:
        if level == "s":
            raise BlobError("AuthorizationResourceTypeMismatch")
        want = f"/{container or ''}" + (f"/{blob}" if result.resource != "c" else "")
        if level == "c" and result.resource != "c" or want != result.path:
            raise BlobError("AuthorizationResourceTypeMismatch" if level == "c" else "AuthenticationFailed",
                            "The SAS does not cover this resource.")
    if needs and not any(p in result.permissions for p in needs):
        raise BlobError("AuthorizationPermissionMismatch")
