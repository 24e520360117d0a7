"""What every Blob operation handler shares: the call context, request bodies with Content-MD5 /
x-ms-content-crc64 verification, conditions, leases, and blob properties as headers.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from exastor import errors, metrics
from exastor.auth.decision import Decision
from exastor.auth.principal import AuthResult
from exastor.blob.errors import BlobError
from exastor.blob.protocol import CASE_HEADER, META_NAMES
from exastor.errors import AuthorizationMissing
from exastor.http import checksums
from exastor.http.asgi import SEND_COALESCE, Request, Send, encode_headers
from exastor.http.conditions import evaluate, format_http_date, parse_preconditions
from exastor.meta import blob as bm
from exastor.meta.contract import TxCheck
from exastor.meta.records import ObjectVersion
from exastor.namespace.operations import Check, PutSpec

if TYPE_CHECKING:
    from exastor.blob.app import BlobApp
    from exastor.namespace.blobs import Blobs
    from exastor.namespace.operations import Namespace

DEFAULT_VERSION = "2025-11-05"
MAX_PUT_BLOB = 5000 << 20            # Put Blob: 5000 MiB (service version 2019-12-12+)
MAX_BLOCK = 4000 << 20               # Put Block: 4000 MiB
MAX_APPEND_BLOCK = 100 << 20         # Append Block: 100 MiB
MAX_XML_BODY = 4 << 20
CONTENT_PROPS = ("content-type", "content-encoding", "content-language", "cache-control", "content-disposition")
_META_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class BlobCall:
    req: Request
    send: Send
    app: BlobApp
    request_id: str
    version: str
    container: str | None = None
    blob: str | None = None
    principal: str | None = None
    auth: AuthResult | None = None
    response_started: bool = False
    structured: bool = False       # the body went as an XSM structured message (echoed in the reply)
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    decision: Decision | None = None     # the authorizer's, made before the handler runs
    info: dict[str, Any] = field(default_factory=dict)  # scope["exastor"]: what other layers may read

    @property
    def grant(self) -> Decision:
        """The request's decision, which every namespace call needs. There is none before the
        authorizer ran: asking then is a bug, and fails closed."""
        if self.decision is None:
            raise AuthorizationMissing("a Blob handler reached the namespace before any decision")
        return self.decision

    @property
    def container_name(self) -> str:
        """The container of a container or blob operation: the router sends none here without one (a
        request that reaches a handler without it is refused, never a 500)."""
        if self.container is None:
            raise BlobError("InvalidUri", "This operation needs a container.", status=400)
        return self.container

    @property
    def blob_name(self) -> str:
        """The blob of a blob operation (as ``container_name``)."""
        if self.blob is None:
            raise BlobError("InvalidUri", "This operation needs a blob name.", status=400)
        return self.blob

    @property
    def q(self) -> dict[str, str]:
        return self.req.query

    @property
    def h(self) -> dict[str, str]:
        return self.req.headers

    @property
    def ns(self) -> Namespace:
        return self.app.ns

    @property
    def blobs(self) -> Blobs:
        return self.app.blobs

    @property
    def meta_names(self) -> dict[str, str] | None:
        return self.req.scope.get(META_NAMES)

    @property
    def anonymous(self) -> bool:
        return self.principal is None

    def base_headers(self) -> list[tuple[str, str]]:
        out = [("x-ms-request-id", self.request_id), ("x-ms-version", self.version), ("server", "exastor"),
               *self.extra_headers]
        client_id = self.h.get("x-ms-client-request-id")
        if client_id:
            out.append(("x-ms-client-request-id", client_id))
        if self.structured:
            out.append(("x-ms-structured-body", self.h["x-ms-structured-body"]))
        return out

    def wants_structured(self) -> bool:
        value = self.h.get("x-ms-structured-body")
        if value is None:
            return False
        from exastor.blob.structured import HEADER_VALUE
        if value.replace(" ", "").lower() != HEADER_VALUE.replace(" ", "").lower():
            raise BlobError("InvalidHeaderValue", "Only XSM/1.0; properties=crc64 structured bodies are supported.")
        return True

    async def reply(self, status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                    *, content_type: str | None = "application/xml", head: bool = False) -> None:
        hdrs = self.base_headers()
        if body and content_type:
            hdrs.append(("content-type", content_type))
        hdrs.extend(headers or [])
        if not any(k == "content-length" for k, _ in hdrs):
            hdrs.append(("content-length", str(len(body))))
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": _encode(hdrs)})
        await self.send({"type": "http.response.body", "body": b"" if head else body})

    async def reply_stream(self, status: int, headers: list[tuple[str, str]],
                           pieces: AsyncIterator[bytes | memoryview]) -> None:
        # The first piece is read before the status line (as http/asgi.respond_stream does): a read
        # that fails at once - bytes on an offline drive (503 ServerBusy) - is still a proper answer.
        iterator = aiter(pieces)
        first = await anext(iterator, None)
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status,
                         "headers": _encode(self.base_headers() + headers)})
        pending: list[bytes | memoryview] = [first] if first is not None else []
        size = len(first) if first is not None else 0
        async for piece in iterator:  # coalesced so each send carries a useful amount
            pending.append(piece)
            size += len(piece)
            if size >= SEND_COALESCE:  # under malloc's mmap threshold: http/asgi.py
                await self.send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
                pending, size = [], 0
        await self.send({"type": "http.response.body", "body": b"".join(pending), "more_body": False})

    async def read_small_body(self, limit: int = MAX_XML_BODY) -> bytes:
        try:
            return await self.req.read(limit)
        except OverflowError as exc:
            raise BlobError("RequestBodyTooLarge") from exc

    # --- bodies ------------------------------------------------------------------
    def body(self, limit: int) -> AsyncIterator[bytes | memoryview]:
        if self.wants_structured():
            from exastor.blob.structured import decode, encoded_length
            self.structured = True
            size = self.content_size()
            assert size is not None  # content_size() raises for a structured body without its length
            return decode(_body(self, encoded_length(min(size, limit))), size)
        return _body(self, limit)

    def content_size(self) -> int | None:
        """The content's length: x-ms-structured-content-length for a structured body, else Content-Length."""
        raw = self.h.get("x-ms-structured-content-length") if self.wants_structured() else self.h.get("content-length")
        if raw is None:
            if self.wants_structured():
                raise BlobError("MissingRequiredHeader", "x-ms-structured-content-length is required.")
            return None
        try:
            return int(raw)
        except ValueError as exc:
            raise BlobError("InvalidHeaderValue", "Invalid content length.") from exc

    def put_spec(self, attrs: dict[str, Any]) -> PutSpec:
        """Digesters and verification for a blob/block body: Content-MD5 and x-ms-content-crc64."""
        h = self.h
        md5_header = h.get("content-md5")
        want_md5: bytes | None = None
        if md5_header:
            try:
                want_md5 = checksums.decode_b64_digest(md5_header, 16)
            except checksums.InvalidDigestValue as exc:
                raise BlobError("InvalidMd5") from exc
        crc_header = h.get("x-ms-content-crc64")
        crc = None
        if crc_header:
            try:
                want_crc = checksums.decode_b64_digest(crc_header, 8)
            except checksums.InvalidDigestValue as exc:
                raise BlobError("InvalidHeaderValue", "x-ms-content-crc64 is not a base64 CRC64.") from exc
            crc = checksums.new_azure_crc64()

        def verify(md5_hex: str, size: int) -> None:
            if want_md5 is not None and bytes.fromhex(md5_hex) != want_md5:
                raise BlobError("Md5Mismatch")
            if crc is not None:
                if crc.digest() != want_crc:
                    raise BlobError("Crc64Mismatch")

        return PutSpec(attrs=attrs, digesters=[crc] if crc is not None else [], verify=verify,
                       expected_size=self.content_size())

    # --- leases --------------------------------------------------------------------
    def lease_guard(self, key: str, *, write: bool, container_level: bool = False) -> None:
        """Enforce the blob's (or container's) lease for this request's x-ms-lease-id against the
        committed state. A write checks again inside its transaction (``write_check(lease=...)``);
        this early check only fails a request before its body is read."""
        enforce_lease(self.app.blobs.lease(self.grant, self.container or "", key), self.h.get("x-ms-lease-id"),
                      write=write, container_level=container_level)


def plaintext_readable(obj: Any) -> Any:
    """``obj``, unless its bytes are stored encrypted under a customer key the server never keeps
    (written over S3 with SSE-C): read over Blob they would be ciphertext, so refuse as Azure does
    for a blob read without its customer-provided key."""
    if "sse_c" in obj.attrs:
        raise BlobError("BlobUsesCustomerSpecifiedEncryption")
    return obj


# The GUID forms .NET's Guid.Parse reads, which Azure accepts for lease ids: 32 digits (N), hyphenated
# (D), and D in braces (B) or parentheses (P).
_D = r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
_GUID_FORMS = re.compile(rf"[0-9a-fA-F]{{32}}|{_D}|\{{{_D}\}}|\({_D}\)")


def lease_guid(value: str | None, header: str = "x-ms-lease-id") -> str | None:
    """A lease id in any GUID form Azure accepts, as the lower-case hyphenated form it is kept and
    answered in (so an id given as 32 digits matches the same id given hyphenated); 400
    InvalidHeaderValue for anything else."""
    if value is None:
        return None
    if _GUID_FORMS.fullmatch(value.strip()) is None:
        raise BlobError("InvalidHeaderValue", f"{header} must be a GUID.", HeaderName=header,
                        HeaderValue=value[:64])
    return str(uuid.UUID(value.strip().strip("{}()")))


def enforce_lease(lease: bm.Lease | None, given: str | None, *, write: bool, container_level: bool = False) -> None:
    """Azure's lease rules for an operation: with ``given`` (x-ms-lease-id) there must be an active
    lease with that id; without it, a ``write`` must not touch an actively leased blob/container."""
    state = bm.lease_state(lease)
    what = "Container" if container_level else "Blob"
    active = state in ("leased", "breaking")
    if given:
        given = lease_guid(given) or ""
        if not active:
            raise BlobError(f"LeaseNotPresentWith{what}Operation")
        if lease is None or given != lease.lease_id.lower():
            raise BlobError(f"LeaseIdMismatchWith{what}Operation")
    elif write and active:
        raise BlobError("LeaseIdMissing")


class BlobCheck(TxCheck):
    """A Blob write's preconditions, run inside the transaction that makes the write (so nothing can
    change between the check and the change): the lease, read from the lease table in that same
    transaction and enforced against x-ms-lease-id, then the request's conditions on the current row
    (an ObjectVersion, or the Bucket for container operations).

    ``lease``: None (leases do not matter), "write" (an active lease needs its id) or "read" (only an
    x-ms-lease-id that was sent is checked)."""

    def __init__(self, bucket: str, key: str, given: str | None, lease: str | None,
                 cond: Callable[[Any], None] | None, *, container_level: bool = False) -> None:
        self.bucket, self.key, self.given, self.lease = bucket, key, given, lease
        self.cond, self.container_level = cond, container_level

    def run(self, cur: Any, current: Any) -> None:
        if self.lease == "write":
            bm.claim_lease_decision(cur, self.bucket, self.key)  # no Acquire Lease commits beside this write
        self._enforce(cur, current)

    def precheck(self, cur: Any, current: Any) -> None:
        self._enforce(cur, current)  # before any write transaction: it claims nothing

    def _enforce(self, cur: Any, current: Any) -> None:
        if self.lease == "write" or (self.lease == "read" and self.given):
            enforce_lease(bm.get_lease(cur, self.bucket, self.key), self.given, write=self.lease == "write",
                          container_level=self.container_level)
        if self.cond is not None:
            self.cond(current)


def blob_check(call: BlobCall, cond: Callable[[Any], None] | None, *, lease: str | None,
               key: str | None = None, container_level: bool = False) -> BlobCheck | None:
    """``cond`` and the lease rule as one in-transaction check (None when there is nothing to check)."""
    given = call.h.get("x-ms-lease-id")
    if cond is None and (lease is None or (lease == "read" and not given)):
        return None
    return BlobCheck(call.container or "", (call.blob or "") if key is None else key, given, lease, cond,
                     container_level=container_level)


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """ASGI headers; x-ms-meta-* names with capitals are listed for the protocol to restore their case
    (Azure metadata names are case-preserving; ASGI servers lower-case every name)."""
    out = encode_headers(headers)
    cased = [k for k, _ in headers if k.startswith("x-ms-meta-") and not k.islower()]
    if cased:
        out.append((CASE_HEADER.encode(), ",".join(cased).encode("latin-1", "replace")))
    return out


def lease_headers(lease: bm.Lease | None) -> list[tuple[str, str]]:
    state = bm.lease_state(lease)
    status = "locked" if state in ("leased", "breaking") else "unlocked"
    out = [("x-ms-lease-status", status), ("x-ms-lease-state", state)]
    if state == "leased" and lease is not None:
        out.append(("x-ms-lease-duration", "infinite" if lease.duration < 0 else "fixed"))
    return out


async def _body(call: BlobCall, limit: int) -> AsyncIterator[bytes | memoryview]:
    h = call.h
    size = None
    if "content-length" in h:
        try:
            size = int(h["content-length"])
        except ValueError as exc:
            raise BlobError("InvalidHeaderValue", "Invalid Content-Length.") from exc
        if size > limit:
            raise BlobError("RequestBodyTooLarge")
    elif "chunked" not in h.get("transfer-encoding", "").lower():
        raise BlobError("MissingRequiredHeader", "Content-Length is required.", status=411)
    received = 0
    async for piece in call.req.stream():
        received += len(piece)
        if received > limit:
            raise BlobError("RequestBodyTooLarge")
        yield piece
    if size is not None and received < size:
        raise BlobError("InvalidInput", "The request body is shorter than Content-Length.")


# --- conditions ------------------------------------------------------------------

def mtime(obj: ObjectVersion | bm.Snapshot) -> datetime:
    return datetime.fromtimestamp(obj.mtime_ns // 1_000_000_000, UTC)


def http_date(ns: int) -> str:
    return format_http_date(datetime.fromtimestamp(ns // 1_000_000_000, UTC))


_CONDITION_HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def _has_conditions(h: dict[str, str]) -> bool:
    return any(name in h for name in _CONDITION_HEADERS)


def read_check(call: BlobCall, obj: ObjectVersion | bm.Snapshot) -> None:
    tags_cond = call.h.get("x-ms-if-tags")
    if tags_cond:
        from exastor.blob.tagfilter import tags_match
        if not tags_match(tags_cond, obj.attrs.get("tags") or {}):
            raise BlobError("ConditionNotMet")
    if not _has_conditions(call.h):
        return
    pre = parse_preconditions(call.h)
    if not pre.any():
        return
    outcome = evaluate(pre, exists=True, etag=obj.etag, last_modified=mtime(obj), method=call.req.method)
    if outcome == "failed":
        raise BlobError("ConditionNotMet")
    if outcome == "not_modified":
        raise BlobError("ConditionNotMet", status=304,
                        headers={"etag": f'"{obj.etag}"', "last-modified": http_date(obj.mtime_ns)})


def write_check(call: BlobCall, *, create: bool = False, lease: str | None = None) -> Check | None:
    """The four conditional headers (and x-ms-if-tags) on a write, and the blob's lease (``lease``:
    see BlobCheck), evaluated inside the commit transaction.
    ``create``: an If-None-Match: * failure is BlobAlreadyExists (Put Blob / Put Block List / Copy)."""
    return blob_check(call, write_conditions(call, create=create), lease=lease)


def write_conditions(call: BlobCall, *, create: bool = False) -> Callable[[ObjectVersion | None], None] | None:
    """The request's conditional headers as a check of the current blob (None: there are none)."""
    tags_cond = call.h.get("x-ms-if-tags")
    if not tags_cond and not _has_conditions(call.h):
        return None
    pre = parse_preconditions(call.h)
    if not pre.any() and not tags_cond:
        return None

    def check(current: ObjectVersion | None) -> None:
        live = current if current is not None and not current.delete_marker else None
        if tags_cond:
            from exastor.blob.tagfilter import tags_match
            if live is None or not tags_match(tags_cond, live.attrs.get("tags") or {}):
                raise BlobError("ConditionNotMet")
        if not pre.any():
            return
        if live is None:
            if pre.if_match is not None:
                raise BlobError("ConditionNotMet")
            return
        outcome = evaluate(pre, exists=True, etag=live.etag, last_modified=mtime(live), method="PUT",
                           dates_on_writes=True)
        if outcome != "ok":
            if create and pre.if_none_match is not None and pre.if_none_match.strip() == "*":
                raise BlobError("BlobAlreadyExists")
            raise BlobError("ConditionNotMet")

    return check


def run_check(call: BlobCall, obj: ObjectVersion | None) -> None:
    """The request's conditions against a blob read outside any transaction (reads only)."""
    check = write_conditions(call, create=False)
    if check:
        check(obj)


# --- properties <-> headers ----------------------------------------------------------

def metadata_from_headers(h: dict[str, str], names: dict[str, str] | None = None) -> dict[str, str]:
    """x-ms-meta-* as a dict, names in the case the client sent (``names``: lower -> original)."""
    names = names or {}
    meta = {names.get(k, k)[len("x-ms-meta-"):]: v for k, v in h.items() if k.startswith("x-ms-meta-")}
    for name in meta:
        if not _META_NAME.fullmatch(name):
            raise BlobError("InvalidMetadata")
    return meta


def parse_tags_header(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    tags = dict(parse_qsl(value, keep_blank_values=True))
    validate_tags(tags)
    return tags


def validate_tags(tags: dict[str, str]) -> None:
    if len(tags) > 10:
        raise BlobError("InvalidTag", "Blobs may have at most 10 tags.", status=400)
    allowed = re.compile(r"[A-Za-z0-9 +\-./:=_]*")
    for k, v in tags.items():
        if not 1 <= len(k) <= 128 or len(v) > 256 or not allowed.fullmatch(k) or not allowed.fullmatch(v):
            raise BlobError("InvalidTag", "The tags specified are invalid.", status=400)


def content_props_from_headers(h: dict[str, str], *, prefix: str = "x-ms-blob-", fallback: bool = True
                               ) -> dict[str, str]:
    """Content headers for a new blob: x-ms-blob-content-* first, the plain headers as a fallback."""
    out: dict[str, str] = {}
    for name in CONTENT_PROPS:
        value = h.get(prefix + name)
        if value is None and fallback and name != "content-type":
            value = h.get(name)
        if value is not None:
            out[name] = value
    if "content-type" not in out:
        out["content-type"] = (h.get("content-type") if fallback else None) or "application/octet-stream"
    return out


def new_blob_attrs(h: dict[str, str], blob_type: str, *, body_is_content: bool = True,
                   names: dict[str, str] | None = None) -> dict[str, Any]:
    """Attributes of a new blob from Put Blob / Put Block List / Copy headers. The plain Content-*
    headers describe the blob only when the request body is the blob (Put Blob)."""
    attrs: dict[str, Any] = dict(content_props_from_headers(h, fallback=body_is_content))
    meta = metadata_from_headers(h, names)
    if meta:
        attrs["meta"] = meta
    tags = parse_tags_header(h.get("x-ms-tags"))
    if tags:
        attrs["tags"] = tags
    md5 = h.get("x-ms-blob-content-md5")
    if md5:
        attrs["content-md5"] = md5
    tier = h.get("x-ms-access-tier")
    if tier:
        attrs["tier"] = check_tier(tier)
    attrs["blob-type"] = blob_type
    attrs["created_ns"] = time.time_ns()
    return attrs


ONLINE_TIERS = ("Hot", "Cool", "Cold")


def refuse_archived(obj: Any, what: str = "This operation") -> None:
    """Azure keeps an Archive-tier blob offline: its bytes cannot be read, copied by URL, snapshotted
    or have their properties changed until Set Blob Tier moves it to an online tier (here the bytes
    stay on flash, so that move completes at once; the refusal is the contract clients code against)."""
    attrs = getattr(obj, "attrs", None) or {}
    if attrs.get("tier") == "Archive":
        raise BlobError("BlobArchived", f"{what} is not permitted on an archived blob.", status=409)


def check_tier(tier: str) -> str:
    tiers = {"hot": "Hot", "cool": "Cool", "cold": "Cold", "archive": "Archive", "premium": "Premium"}
    if tier.lower() not in tiers:
        raise BlobError("InvalidHeaderValue", "Invalid access tier.")
    return tiers[tier.lower()]


def content_md5_of(obj: ObjectVersion | bm.Snapshot) -> str | None:
    """Azure's Content-MD5 property: as set, else the body MD5 of a single-PUT blob (its S3 ETag)."""
    md5 = obj.attrs.get("content-md5")
    if md5:
        return md5
    if obj.attrs.get("blob-type", "BlockBlob") == "BlockBlob" and "blocks" not in obj.attrs \
            and re.fullmatch(r"[0-9a-f]{32}", obj.etag):
        return base64.b64encode(bytes.fromhex(obj.etag)).decode()
    return None


def server_encrypted(call: BlobCall) -> str:
    """``x-ms-request-server-encrypted``: "true" only when the bytes are encrypted on the drives,
    i.e. the store has encrypted every record it holds (engine/encryption.py, docs/security.md)."""
    return "true" if call.ns.encrypted_at_rest else "false"


def blob_headers(obj: ObjectVersion | bm.Snapshot, lease: bm.Lease | None, *, with_md5: bool = True,
                 encrypted: bool = False) -> list[tuple[str, str]]:
    """``encrypted``: the store's data is encrypted at rest (``x-ms-server-encrypted`` says so, and
    only then)."""
    a = obj.attrs
    out = [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)),
           ("x-ms-creation-time", http_date(a.get("created_ns", obj.mtime_ns))),
           ("x-ms-blob-type", a.get("blob-type", "BlockBlob")), ("accept-ranges", "bytes"),
           ("x-ms-server-encrypted", "true" if encrypted else "false")]
    for name in CONTENT_PROPS:
        if name in a:
            out.append((name, a[name]))
    if "content-type" not in a:
        out.append(("content-type", "application/octet-stream"))
    md5 = content_md5_of(obj) if with_md5 else None
    if md5:
        out.append(("content-md5", md5))
    for k, v in (a.get("meta") or {}).items():
        out.append((f"x-ms-meta-{k}", v))
    if a.get("blob-type") == "AppendBlob":
        out.append(("x-ms-blob-committed-block-count", str(a.get("committed_blocks", 0))))
        out.append(("x-ms-blob-sealed", "true" if a.get("sealed") else "false"))
    tags = a.get("tags")
    if tags:
        out.append(("x-ms-tag-count", str(len(tags))))
    if a.get("blob-type", "BlockBlob") == "BlockBlob":
        out.append(("x-ms-access-tier", a.get("tier", "Hot")))
        if "tier" not in a:
            out.append(("x-ms-access-tier-inferred", "true"))
        else:
            out.append(("x-ms-access-tier-change-time", http_date(a.get("tier_ns", obj.mtime_ns))))
    copy = a.get("copy")
    if copy:
        out += [("x-ms-copy-id", copy["id"]), ("x-ms-copy-status", copy["status"]),
                ("x-ms-copy-source", copy["source"]), ("x-ms-copy-progress", copy["progress"]),
                ("x-ms-copy-completion-time", http_date(copy["completion_ns"]))]
    if not isinstance(obj, bm.Snapshot):
        out += lease_headers(lease)
    return out


def map_store_error(exc: errors.StoreError, call: BlobCall | None) -> BlobError:
    """Protocol-neutral errors -> Blob codes."""
    from exastor.namespace.blobs import BlobStateError
    if isinstance(exc, BlobStateError):
        return BlobError(str(exc.info.get("code")))
    if isinstance(exc, errors.QuotaExceeded):
        metrics.refused("quota", "blob", exc.info.get("scope"))
    if isinstance(exc, errors.SlowDown):
        return BlobError("ServerBusy", "The server is busy: this account's or container's rate limit is reached.",
                         headers={"Retry-After": str(exc.info.get("retry_after", 1))})
    table: list[tuple[type[errors.StoreError], str]] = [
        (errors.BucketNotFound, "ContainerNotFound"), (errors.BucketExists, "ContainerAlreadyExists"),
        (errors.ObjectNotFound, "BlobNotFound"), (errors.VersionNotFound, "BlobNotFound"),
        (errors.MethodNotAllowed, "BlobNotFound"), (errors.AccessDenied, "AuthorizationFailure"),
        (errors.InvalidBucketName, "InvalidResourceName"), (errors.InvalidKey, "InvalidResourceName"),
        (errors.KeyTooLong, "InvalidResourceName"), (errors.PreconditionFailed, "ConditionNotMet"),
        (errors.BadDigest, "Md5Mismatch"), (errors.IncompleteBody, "InvalidInput"),
        (errors.EntityTooLarge, "RequestBodyTooLarge"), (errors.InvalidRange, "InvalidRange"),
        (errors.InvalidArgument, "InvalidInput"), (errors.InsufficientStorage, "InsufficientStorage"),
        (errors.Unavailable, "ServerBusy"), (errors.DataCorrupted, "InternalError"),
        (errors.BucketNotEmpty, "ContainerBeingDeleted"), (errors.QuotaExceeded, "QuotaExceeded"),
    ]
    if isinstance(exc, errors.BucketNotFound) and exc.info.get("role") == "source":
        return BlobError("CannotVerifyCopySource", "The source container does not exist.", status=404)
    if isinstance(exc, errors.AccessDenied):
        if exc.info.get("role") == "source":  # the copy source's own credentials do not reach it
            return BlobError("CannotVerifyCopySource", "The copy source is not readable with its own credentials "
                             "(a SAS in its URL, or public access).", status=403)
        specific = exc.info.get("code")
        if specific:
            return BlobError(str(specific))
        if call is not None and call.anonymous:
            return BlobError("ResourceNotFound")  # an anonymous caller learns nothing of private data
        return BlobError("AuthorizationFailure")
    for cls, code in table:
        if isinstance(exc, cls):
            return BlobError(code)
    return BlobError("InternalError")
