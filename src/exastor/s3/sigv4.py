"""S3 request authentication: AWS Signature Version 4 (header and presigned URL) and version 2.

The server recomputes what the client signed from the request exactly as it arrived, so every input
here is raw wire text: the percent-encoded path, the raw query string, and the header values.

Where clients legitimately differ in how they build the canonical request (query parameters sent
unencoded, '+' for a space, the Host port left off or added, a virtual-hosted bucket in V2's resource),
the verifier tries the few alternative canonical forms only after the primary one fails, so a valid
request costs one HMAC chain and a forged one a handful.

Secrets never leave this module except as the derived per-day signing key the aws-chunked decoder
needs; nothing here logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_to_bytes

from exastor.http.conditions import parse_http_date
from exastor.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_VALUES = frozenset({STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER})
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_EXPIRES = 604800  # one week, S3's limit for SigV4 presigned URLs
ISO8601_BASIC = "%Y%m%dT%H%M%SZ"

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_DIGITS = re.compile(r"-?[0-9]+")
_UNRESERVED = re.compile(r"[A-Za-z0-9\-_.~]*")

# Sub-resources that V2's CanonicalizedResource keeps: botocore's list (what boto3 signs) ...
_V2_SUBRESOURCES_BOTOCORE = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
    "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
    "response-content-type", "response-content-language", "response-expires", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging",
    "restore", "storageClass", "notification", "replication", "analytics", "metrics", "inventory",
    "select", "select-type", "object-lock",
})
# ... and the ones other clients (MinIO's list) add, tried only when the first form fails.
_V2_SUBRESOURCES_WIDE = _V2_SUBRESOURCES_BOTOCORE | {"encryption", "legal-hold", "retention", "ownershipControls",
                                                     "publicAccessBlock", "intelligent-tiering", "attributes"}


@dataclass(frozen=True)
class AuthContext:
    access_key: str
    content_sha256: str        # the x-amz-content-sha256 value, or "UNSIGNED-PAYLOAD" for presigned URLs
    signing_key: bytes         # derived key, needed to verify aws-chunked chunk signatures
    seed_signature: str        # the request's signature (first chunk's previous signature)
    scope: str                 # "20261127/us-east-1/s3/aws4_request"
    amz_date: str              # "20261127T050000Z"
    presigned: bool
    signature_version: int = 4

    def __repr__(self) -> str:  # keep the signing key out of logs and tracebacks
        return (f"AuthContext(access_key={self.access_key!r}, content_sha256={self.content_sha256!r}, "
                f"scope={self.scope!r}, amz_date={self.amz_date!r}, presigned={self.presigned}, "
                f"signature_version={self.signature_version})")


def payload_sha256_required(ctx: AuthContext) -> str | None:
    """The hex digest the body must hash to, or None when the payload is unsigned/streaming."""
    if _HEX64.fullmatch(ctx.content_sha256):
        return ctx.content_sha256.lower()
    return None


def is_streaming(ctx: AuthContext | None, headers: Mapping[str, str]) -> bool:
    """Whether the body is aws-chunked framed (decode it with AwsChunkedDecoder)."""
    value = ctx.content_sha256 if ctx is not None else headers.get("x-amz-content-sha256", "")
    return value in STREAMING_VALUES


@lru_cache(maxsize=1024)
def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """kSigning = HMAC chain over 'AWS4'+secret, date, region, service, 'aws4_request'."""
    key = _hmac(("AWS4" + secret).encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def authenticate(method: str, raw_path: str, query_string: str, headers: Mapping[str, str],
                 lookup_secret: Callable[[str], str | None], *, now: datetime | None = None,
                 max_skew_seconds: int = 900, region: str | None = None,
                 regions: Collection[str] | None = None) -> AuthContext | None:
    """Verify a request's signature; None for an anonymous request.

    headers: lower-cased names -> values (multiple values joined with ','). raw_path: the path exactly
    as sent (percent-encoded, no query). query_string: raw query string as sent. ``regions`` (or one
    ``region``), when given, are the credential-scope regions accepted (AuthorizationHeaderMalformed /
    AuthorizationQueryParametersError otherwise). Every x-amz-* header the request carries must be
    signed (and Content-Type too, for header auth), as S3 requires: an unsigned one could have been
    added by anyone on the path (an ``x-amz-acl: public-read`` after signing).
    Raises S3Error with the code S3 uses for each failure.
    """
    now = _as_utc(now or datetime.now(UTC))
    if regions is None and region is not None:
        regions = (region,)
    pairs = _split_query(query_string)
    params = _decoded_params(pairs)
    authorization = (headers.get("authorization") or "").strip()
    v4_query = "X-Amz-Signature" in params or "X-Amz-Credential" in params or "X-Amz-Algorithm" in params
    v2_query = "Signature" in params and "AWSAccessKeyId" in params
    if authorization and (v4_query or v2_query):
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
                      "parameter, Signature query string parameter or the Authorization header should be "
                      "specified", ArgumentName="Authorization")
    if authorization:
        if authorization.startswith(ALGORITHM + " ") or authorization == ALGORITHM:
            return _v4_header(method, raw_path, pairs, headers, authorization, lookup_secret, now,
                              max_skew_seconds, regions)
        if authorization.startswith("AWS "):
            return _v2_header(method, raw_path, query_string, headers, authorization, lookup_secret, now,
                              max_skew_seconds)
        raise S3Error("InvalidArgument", "Unsupported Authorization Type", ArgumentName="Authorization")
    if v4_query:
        return _v4_query(method, raw_path, pairs, params, headers, lookup_secret, now, max_skew_seconds,
                         regions)
    if v2_query:
        return _v2_query(method, raw_path, query_string, params, headers, lookup_secret, now, max_skew_seconds)
    return None


def claimed_access_key(query: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The access key a request names (V4 or V2, header or query), read without checking anything:
    only for what may be decided before the signature is (a refusal, never an admission)."""
    authorization = headers.get("authorization") or ""
    if authorization.startswith(ALGORITHM + " "):
        _, found, rest = authorization.partition("Credential=")
        return (rest.split("/", 1)[0].strip() or None) if found else None
    if authorization.startswith("AWS "):
        return authorization[4:].rsplit(":", 1)[0].strip() or None
    if "X-Amz-Credential" in query:
        return query["X-Amz-Credential"].split("/", 1)[0] or None
    return query.get("AWSAccessKeyId") or None


# ---------------------------------------------------------------------------------------------- V4

@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _parse_credential(value: str, code: str, regions: Collection[str] | None) -> _Credential:
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not parts[0] or parts[4] != "aws4_request" or not re.fullmatch(r"[0-9]{8}", parts[1]):
        raise S3Error(code, 'Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; '
                      'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".')
    cred = _Credential(*parts[:4])
    check_scope(cred.region, cred.service, code, regions)
    return cred


def check_scope(region: str, service: str, code: str, regions: Collection[str] | None) -> None:
    """The credential scope's service must be s3 and its region one this endpoint serves (the error
    names the expected region, which SDKs read to re-sign)."""
    if service != "s3":
        raise S3Error(code, f"Error parsing the X-Amz-Credential parameter; incorrect service "
                      f'"{service}". This endpoint belongs to "s3".')
    if regions is not None and region not in regions:
        expected = next(iter(regions), "")
        raise S3Error(code, f"Error parsing the X-Amz-Credential parameter; the region '{region}' is "
                      f"wrong; expecting '{expected}'", Region=expected)


def _check_all_signed(signed_headers: list[str], headers: Mapping[str, str], *, presigned: bool) -> None:
    """S3's rule: every x-amz-* header present is signed, and for header auth Content-Type too
    (a presigned URL is meant to be used by clients that pick their own Content-Type)."""
    signed = set(signed_headers)
    unsigned = sorted(name for name in headers if name not in signed and (
        name.startswith("x-amz-") or (name == "content-type" and not presigned)))
    if unsigned:
        raise S3Error("AccessDenied", "There were headers present in the request which were not signed",
                      HeadersNotSigned=", ".join(unsigned))


def _parse_authorization_v4(authorization: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in authorization[len(ALGORITHM):].split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise S3Error("AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; missing {required}.")
    return fields


def _v4_header(method: str, raw_path: str, pairs: list[tuple[str, str]], headers: Mapping[str, str],
               authorization: str, lookup_secret: Callable[[str], str | None], now: datetime,
               max_skew_seconds: int, regions: Collection[str] | None) -> AuthContext:
    fields = _parse_authorization_v4(authorization)
    cred = _parse_credential(fields["Credential"], "AuthorizationHeaderMalformed", regions)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], "AuthorizationHeaderMalformed")
    secret = _lookup(lookup_secret, cred.access_key)

    raw_date = headers.get("x-amz-date") or headers.get("date")
    when = _valid_request_date(_parse_request_date(raw_date))
    amz_date = when.strftime(ISO8601_BASIC)
    # Skew before the scope-date check: a far-off x-amz-date is RequestTimeTooSkewed (as s3-tests expect).
    if abs((now - when).total_seconds()) > max_skew_seconds:
        raise S3Error("RequestTimeTooSkewed", RequestTime=amz_date, ServerTime=now.strftime(ISO8601_BASIC),
                      MaxAllowedSkewMilliseconds=str(max_skew_seconds * 1000))
    if amz_date[:8] != cred.date:
        raise S3Error("AuthorizationHeaderMalformed",
                      f"Invalid credential date \"{cred.date}\". This date is not the same as X-Amz-Date: "
                      f"\"{amz_date[:8]}\".")

    content_sha256 = (headers.get("x-amz-content-sha256") or "").strip() or EMPTY_SHA256
    _check_content_sha256(content_sha256)
    signing_key = derive_signing_key(secret, cred.date, cred.region, cred.service)
    signature = fields["Signature"].lower()
    _verify_v4(method, raw_path, pairs, headers, signed_headers, content_sha256, amz_date, cred,
               signing_key, signature, exclude_signature_param=False)
    _check_all_signed(signed_headers, headers, presigned=False)
    return AuthContext(access_key=cred.access_key, content_sha256=content_sha256, signing_key=signing_key,
                       seed_signature=signature, scope=cred.scope, amz_date=amz_date, presigned=False)


def _v4_query(method: str, raw_path: str, pairs: list[tuple[str, str]], params: dict[str, str],
              headers: Mapping[str, str], lookup_secret: Callable[[str], str | None], now: datetime,
              max_skew_seconds: int, regions: Collection[str] | None) -> AuthContext:
    code = "AuthorizationQueryParametersError"
    if params.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error(code, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    for required in ("X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date",
                     "X-Amz-Expires"):
        if not params.get(required):
            raise S3Error(code, "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                          "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
                          "X-Amz-Expires parameters.")
    cred = _parse_credential(params["X-Amz-Credential"], code, regions)
    signed_headers = _parse_signed_headers(params["X-Amz-SignedHeaders"], code)
    amz_date = params["X-Amz-Date"]
    if not _AMZ_DATE.fullmatch(amz_date):
        raise S3Error(code, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    when = _parse_iso_basic(amz_date)
    if when is None:
        raise S3Error(code, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    expires_text = params["X-Amz-Expires"]
    if not _DIGITS.fullmatch(expires_text):
        raise S3Error(code, "X-Amz-Expires should be a number")
    expires = _bounded_seconds(expires_text)
    if expires < 0:
        raise S3Error(code, "X-Amz-Expires must be non-negative")
    if expires > MAX_PRESIGN_EXPIRES:
        raise S3Error(code, "X-Amz-Expires must be less than a week (in seconds) that is 604800")
    if amz_date[:8] != cred.date:
        raise S3Error(code, f"Invalid credential date \"{cred.date}\". This date is not the same as "
                      f"X-Amz-Date: \"{amz_date[:8]}\".")
    secret = _lookup(lookup_secret, cred.access_key)
    if (when - now).total_seconds() > max_skew_seconds:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > when + timedelta(seconds=expires):
        # An XML element whose name is no identifier; mypy matches the ** against every parameter.
        raise S3Error("AccessDenied", "Request has expired",
                      **{"X-Amz-Expires": expires_text},  # type: ignore[arg-type]
                      Expires=(when + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"))

    content_sha256 = params.get("X-Amz-Content-Sha256") or UNSIGNED_PAYLOAD
    _check_content_sha256(content_sha256)
    signing_key = derive_signing_key(secret, cred.date, cred.region, cred.service)
    signature = params["X-Amz-Signature"].lower()
    _verify_v4(method, raw_path, pairs, headers, signed_headers, content_sha256, amz_date, cred,
               signing_key, signature, exclude_signature_param=True)
    _check_all_signed(signed_headers, headers, presigned=True)
    return AuthContext(access_key=cred.access_key, content_sha256=content_sha256, signing_key=signing_key,
                       seed_signature=signature, scope=cred.scope, amz_date=amz_date, presigned=True)


def _verify_v4(method: str, raw_path: str, pairs: list[tuple[str, str]], headers: Mapping[str, str],
               signed_headers: list[str], content_sha256: str, amz_date: str, cred: _Credential,
               signing_key: bytes, signature: str, *, exclude_signature_param: bool) -> None:
    if exclude_signature_param:
        pairs = [(n, v) for n, v in pairs if n != "X-Amz-Signature"]
    first_attempt: tuple[str, str] | None = None
    for canonical_query in _canonical_query_candidates(pairs):
        for host in _host_candidates(headers):
            canonical = canonical_request(method, raw_path, canonical_query,
                                          _canonical_headers(signed_headers, headers, host),
                                          signed_headers, content_sha256)
            to_sign = string_to_sign(amz_date, cred.scope, canonical)
            expected = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature):
                return
            if first_attempt is None:
                first_attempt = (canonical, to_sign)
    assert first_attempt is not None
    canonical, to_sign = first_attempt
    # Like S3, show the client what we signed (no secret in it) so signing bugs can be found.
    raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=cred.access_key, StringToSign=to_sign,
                  SignatureProvided=signature, CanonicalRequest=canonical)


def canonical_request(method: str, raw_path: str, canonical_query: str, canonical_headers: str,
                      signed_headers: list[str], payload_hash: str) -> str:
    """SigV4 canonical request; S3's canonical URI is the path as sent (no normalising, no re-encoding)."""
    return "\n".join((method.upper(), raw_path or "/", canonical_query, canonical_headers,
                      ";".join(signed_headers), payload_hash))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))


def _canonical_headers(signed_headers: list[str], headers: Mapping[str, str], host: str | None) -> str:
    lines = []
    for name in signed_headers:
        if name == "host":
            value = host or ""
        else:
            value = _signed_text(headers.get(name, ""))
        lines.append(f"{name}:{' '.join(value.split())}\n")  # Trimall, as the spec and botocore do
    return "".join(lines)


def _signed_text(value: str) -> str:
    """Header values arrive decoded as latin-1; clients sign the text their bytes spell in UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _parse_signed_headers(value: str, code: str) -> list[str]:
    names = [n.strip().lower() for n in value.split(";")]
    if not names or any(not n for n in names):
        raise S3Error(code, "The SignedHeaders value is malformed.")
    if "host" not in names:
        raise S3Error("AccessDenied", "There were headers present in the request which were not signed",
                      HeadersNotSigned="host")
    return names


def _host_candidates(headers: Mapping[str, str]) -> Iterable[str | None]:
    """The Host as received, then with a default port dropped or added (proxies and clients differ)."""
    host = headers.get("host") or headers.get(":authority")
    yield host
    if not host:
        return
    if host.startswith("["):  # IPv6 literal: [::1]:9000
        end = host.find("]") + 1
        name, port = host[:end], host[end + 1:] if host[end:end + 1] == ":" else ""
    else:
        name, _, port = host.partition(":")
    if port in ("80", "443"):
        yield name
    elif not port:
        yield name + ":80"
        yield name + ":443"


def _canonical_query_candidates(pairs: list[tuple[str, str]]) -> Iterable[str]:
    """The spec's form first (decode, then encode all but -_.~), then the raw form, then '+' as space.
    Built lazily: a valid request only pays for the first."""
    spec = _canonical_query(pairs, plus_is_space=False)
    yield spec
    raw = "&".join(f"{n}={v}" for n, v in sorted(pairs))
    if raw != spec:
        yield raw
    if any("+" in n or "+" in v for n, v in pairs):
        yield _canonical_query(pairs, plus_is_space=True)


def _canonical_query(pairs: list[tuple[str, str]], *, plus_is_space: bool) -> str:
    encoded = sorted((_aws_encode(n, plus_is_space), _aws_encode(v, plus_is_space)) for n, v in pairs)
    return "&".join(f"{n}={v}" for n, v in encoded)


def _aws_encode(text: str, plus_is_space: bool) -> str:
    if _UNRESERVED.fullmatch(text):
        return text  # the common case (names, dates, algorithms): nothing to decode or encode
    if plus_is_space:
        text = text.replace("+", "%20")
    return quote(unquote_to_bytes(text), safe="-_.~")


def _check_content_sha256(value: str) -> None:
    if value in (UNSIGNED_PAYLOAD, *STREAMING_VALUES) or _HEX64.fullmatch(value):
        return
    if value.startswith("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"):
        raise S3Error("NotImplemented", "SigV4a (ECDSA) streaming signatures are not supported")
    raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
                  "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
                  ArgumentName="x-amz-content-sha256", ArgumentValue=value[:100])


# ---------------------------------------------------------------------------------------------- V2

def _v2_header(method: str, raw_path: str, query_string: str, headers: Mapping[str, str],
               authorization: str, lookup_secret: Callable[[str], str | None], now: datetime,
               max_skew_seconds: int) -> AuthContext:
    access_key, sep, signature = authorization[4:].strip().rpartition(":")
    if not sep or not access_key or not signature:
        raise S3Error("InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
                      ArgumentName="Authorization")
    secret = _lookup(lookup_secret, access_key)
    amz_date = headers.get("x-amz-date")
    if amz_date is not None and not amz_date.strip():
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    when = _valid_request_date(parse_http_date(amz_date) if amz_date else parse_http_date(headers.get("date")))
    if abs((now - when).total_seconds()) > max_skew_seconds:
        raise S3Error("RequestTimeTooSkewed", RequestTime=when.strftime(ISO8601_BASIC),
                      ServerTime=now.strftime(ISO8601_BASIC),
                      MaxAllowedSkewMilliseconds=str(max_skew_seconds * 1000))
    date_field = "" if amz_date else headers.get("date", "").strip()
    _verify_v2(method, raw_path, query_string, headers, date_field, secret, signature, access_key)
    return AuthContext(access_key=access_key, content_sha256=UNSIGNED_PAYLOAD, signing_key=b"",
                       seed_signature=signature, scope="", amz_date=when.strftime(ISO8601_BASIC),
                       presigned=False, signature_version=2)


def _v2_query(method: str, raw_path: str, query_string: str, params: dict[str, str],
              headers: Mapping[str, str], lookup_secret: Callable[[str], str | None],
              now: datetime, max_skew_seconds: int) -> AuthContext:
    access_key, signature, expires = params["AWSAccessKeyId"], params["Signature"], params.get("Expires", "")
    if not _DIGITS.fullmatch(expires):
        raise S3Error("AccessDenied", "Query-string authentication requires the Signature, Expires and "
                      "AWSAccessKeyId parameters")
    secret = _lookup(lookup_secret, access_key)
    expires_at = _bounded_seconds(expires)
    if now.timestamp() > expires_at:
        raise S3Error("AccessDenied", "Request has expired", Expires=expires)
    # V2 URLs carry an absolute expiry; cap them at a week like V4's X-Amz-Expires (with the
    # clock skew allowed elsewhere), or a leaked URL would open an object for decades.
    if expires_at - now.timestamp() > MAX_PRESIGN_EXPIRES + max_skew_seconds:
        raise S3Error("AccessDenied", "Query-string authentication version 2 requires an Expires no more "
                      "than a week (604800 seconds) from now", Expires=expires)
    # A V2 presigned URL carries the signed x-amz-*, Content-MD5 and Content-Type values as query
    # parameters (that is how botocore's HmacV1QueryAuth builds it); sign over them as headers.
    signing_headers = dict(headers)
    for name, value in params.items():
        lname = name.lower()
        if (lname.startswith("x-amz-") or lname in ("content-md5", "content-type")) and lname not in headers:
            signing_headers[lname] = value
    _verify_v2(method, raw_path, query_string, signing_headers, expires, secret, signature, access_key)
    return AuthContext(access_key=access_key, content_sha256=UNSIGNED_PAYLOAD, signing_key=b"",
                       seed_signature=signature, scope="",
                       amz_date=datetime.fromtimestamp(expires_at, UTC).strftime(ISO8601_BASIC),
                       presigned=True, signature_version=2)


def _verify_v2(method: str, raw_path: str, query_string: str, headers: Mapping[str, str],
               date_field: str, secret: str, signature: str, access_key: str) -> None:
    amz_lines = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers)
                        if name.startswith("x-amz-"))
    head = "\n".join((method.upper(), headers.get("content-md5", "").strip(),
                      headers.get("content-type", "").strip(), date_field)) + "\n" + amz_lines
    first: str | None = None
    for resource in _v2_resource_candidates(raw_path, query_string, headers):
        to_sign = head + resource
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        if hmac.compare_digest(expected, signature):
            return
        first = first or to_sign
    raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key, StringToSign=first or "",
                  SignatureProvided=signature)


def _v2_resource_candidates(raw_path: str, query_string: str, headers: Mapping[str, str]) -> Iterable[str]:
    """CanonicalizedResource forms: path-style first, then with the virtual-hosted bucket in front
    (the first Host label, or the whole Host for a CNAME bucket); sub-resources as botocore keeps them
    (value decoded; a bare name stays bare), then with the wider list."""
    path = raw_path or "/"
    # botocore signs a bucket-level request as "/bucket/" while sending "/bucket"
    paths = [path, path + "/"] if path.count("/") == 1 and len(path) > 1 else [path]
    prefixes = [""]
    host = headers.get("host", "")
    if host and not host.startswith("["):
        host = host.partition(":")[0]
        if not re.fullmatch(r"[0-9.]+|localhost", host):
            prefixes += ["/" + host.split(".", 1)[0], "/" + host]
    pieces = [piece.split("=", 1) for piece in query_string.split("&") if piece]
    seen: set[str] = set()
    for subresources in (_V2_SUBRESOURCES_BOTOCORE, _V2_SUBRESOURCES_WIDE):
        kept = sorted((p for p in pieces if p[0] in subresources), key=lambda p: p[0])
        query = "&".join(p[0] if len(p) == 1 else f"{p[0]}={unquote(p[1])}" for p in kept)
        for prefix in prefixes:
            for p in paths:
                resource = prefix + p + ("?" + query if query else "")
                if resource not in seen:
                    seen.add(resource)
                    yield resource


# ------------------------------------------------------------------------------------------ shared

def _split_query(query_string: str) -> list[tuple[str, str]]:
    """Raw (still percent-encoded) name/value pairs; a bare name gets the value ''."""
    pairs = []
    for piece in query_string.split("&"):
        if piece:
            name, _, value = piece.partition("=")
            pairs.append((name, value))
    return pairs


def _decoded_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(unquote(name), unquote(value))
    return params


def _bounded_seconds(digits: str) -> int:
    """An integer from at most a few hundred digits: int() of thousands would raise (a 500), and
    any value this long is already far outside every limit checked here."""
    negative = digits.startswith("-")
    body = digits.lstrip("-").lstrip("0") or "0"
    value = 10**15 if len(body) > 15 else int(body)
    return -value if negative else value


def _lookup(lookup_secret: Callable[[str], str | None], access_key: str) -> str:
    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return secret


def _parse_request_date(value: str | None) -> datetime | None:
    """x-amz-date / Date: ISO 8601 basic (what SigV4 clients send) or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if _AMZ_DATE.fullmatch(value):
        return _parse_iso_basic(value)
    return parse_http_date(value)


def _parse_iso_basic(value: str) -> datetime | None:
    """'20261127T050000Z' (already matched by _AMZ_DATE); strptime is several times slower."""
    try:
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]),
                        int(value[11:13]), int(value[13:15]), tzinfo=UTC)
    except ValueError:
        return None


def _valid_request_date(when: datetime | None) -> datetime:
    # S3 answers AccessDenied (not RequestTimeTooSkewed) for a missing, unreadable or pre-epoch date.
    if when is None or when.year < 1970:
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    return when


def _as_utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
