"""What every S3 operation handler shares: the call context, request bodies
(plain, signed or aws-chunked, with checksums), object headers both ways.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from exastor.auth.decision import Decision
from exastor.errors import AuthorizationMissing
from exastor.http import checksums
from exastor.http.asgi import Request, Send, respond, respond_stream
from exastor.http.conditions import format_http_date
from exastor.meta.records import ObjectVersion
from exastor.namespace.operations import Namespace, PutSpec
from exastor.s3 import checksum, sigv4
from exastor.s3.errors import S3Error
from exastor.s3.streaming import AwsChunkedDecoder
from exastor.s3.xml import doc

MAX_PUT_SIZE = 5 << 30           # S3's single-PUT limit
MAX_XML_BODY = 1 << 20
MAX_USER_METADATA = 2048          # bytes of x-amz-meta-* names and values, as S3 counts them
CONTENT_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language",
                   "cache-control", "expires")


@dataclass
class S3Call:
    req: Request
    send: Send
    ns: Namespace
    principal: str | None
    bucket: str | None
    key: str | None
    request_id: str
    auth: sigv4.AuthContext | None
    response_started: bool = False
    payload_hash_in_spec: bool = False  # this request's put spec verifies the signed payload's SHA-256
    regions: tuple[str, ...] = ()        # credential-scope regions this endpoint accepts (POST forms too)
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    decision: Decision | None = None     # the authorizer's, made before the handler runs
    info: dict[str, Any] = field(default_factory=dict)  # scope["exastor"]: what other layers may read
    checksum_request: checksum.Requested | None = None  # the body's checksum, as put_spec read it
    trailers: dict[str, str] = field(default_factory=dict)  # an aws-chunked body's, once it has been read

    @property
    def grant(self) -> Decision:
        """The request's decision, which every namespace call needs. There is none before the
        authorizer ran: asking then is a bug, and fails closed."""
        if self.decision is None:
            raise AuthorizationMissing("an S3 handler reached the namespace before any decision")
        return self.decision

    @property
    def bucket_name(self) -> str:
        """The bucket of a bucket or object operation: the router sends none here without one (a
        request that reaches a handler without it is refused, never a 500)."""
        if self.bucket is None:
            raise S3Error("InvalidRequest", "This operation needs a bucket.")
        return self.bucket

    @property
    def object_key(self) -> str:
        """The key of an object operation (as ``bucket_name``)."""
        if self.key is None:
            raise S3Error("InvalidRequest", "This operation needs an object key.")
        return self.key

    @property
    def q(self) -> dict[str, str]:
        return self.req.query

    @property
    def h(self) -> dict[str, str]:
        return self.req.headers

    def base_headers(self) -> list[tuple[str, str]]:
        return [("x-amz-request-id", self.request_id), ("server", "exastor"), *self.extra_headers]

    async def reply(self, status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                    *, content_type: str | None = "application/xml", head: bool = False) -> None:
        hdrs = self.base_headers()
        if body and content_type:
            hdrs.append(("content-type", content_type))
        hdrs.extend(headers or [])
        self.response_started = True
        await respond(self.send, status, hdrs, body, head=head)

    async def reply_xml(self, root: str, inner: str, headers: list[tuple[str, str]] | None = None) -> None:
        await self.reply(200, doc(root, inner), headers)

    async def reply_stream(self, status: int, headers: list[tuple[str, str]],
                           pieces: AsyncIterator[bytes | memoryview]) -> None:
        async def started() -> AsyncIterator[bytes | memoryview]:
            async for piece in pieces:
                yield piece
                self.response_started = True

        await respond_stream(self.send, status, self.base_headers() + headers, started())

    async def read_xml_body(self) -> bytes:
        try:
            return b"".join([p async for p in self.body()])
        except OverflowError as exc:
            raise S3Error("MaxMessageLengthExceeded") from exc

    # --- bodies ------------------------------------------------------------------
    def body(self, limit: int = MAX_XML_BODY, *, spec: PutSpec | None = None) -> AsyncIterator[bytes | memoryview]:
        """The decoded request body, verified against its signature as it streams. With the
        ``spec`` of an object/part write, a signed payload's SHA-256 is left to the spec's
        digesters (hashed on a worker thread beside the MD5, not on the event loop)."""
        return _decoded_body(self, limit, sha256_in_spec=spec is not None and self.payload_hash_in_spec)

    def put_spec(self, attrs: dict[str, Any], *, algorithms: set[str] | None = None) -> PutSpec:
        """Digesters and the verification step for an object (``algorithms`` None) or a part body
        (the algorithms its upload needs). Once the body is read and verified, ``attrs`` hold its
        checksums: an object's record (s3/checksum.py), a part's ``checksums`` by algorithm."""
        h = self.h
        size = _declared_size(self)
        request = checksum.requested(h)
        self.checksum_request = request
        if algorithms is None:
            # An object keeps one checksum: the client's, else the default (checksum.object_record);
            # the default beside the client's would be computed (~0.1 CPU-s/GiB) and dropped.
            algorithms = set() if request.algorithm else {checksum.DEFAULT_ALGORITHM}
            for_object = True
        else:
            for_object = False
        body_checksums = checksum.BodyChecksums.over(request, algorithms)
        md5_header = h.get("content-md5")
        want_md5: bytes | None = None
        if md5_header is not None:
            try:
                want_md5 = checksums.decode_b64_digest(md5_header, 16)
            except checksums.InvalidDigestValue as exc:
                raise S3Error("InvalidDigest") from exc
        call = self

        def verify(md5_hex: str, got_size: int) -> None:
            if want_md5 is not None and bytes.fromhex(md5_hex) != want_md5:
                raise S3Error("BadDigest")
            values = body_checksums.finish(call.trailers)
            attrs.pop("checksums", None)
            if for_object:
                attrs["checksum"] = checksum.object_record(values, request)
            else:
                attrs["checksums"] = values

        digesters: list[Any] = list(body_checksums.running.values())
        payload_sha256 = sigv4.payload_sha256_required(self.auth) if self.auth else None
        sha = hashlib.sha256() if payload_sha256 else None
        if sha is not None:
            digesters.append(sha)

        def verify_all(md5_hex: str, got_size: int) -> None:
            if sha is not None and sha.hexdigest() != payload_sha256:
                raise S3Error("XAmzContentSHA256Mismatch")
            verify(md5_hex, got_size)

        spec = PutSpec(attrs=attrs, digesters=digesters, verify=verify_all, expected_size=size)
        self.payload_hash_in_spec = sha is not None
        return spec


def _declared_size(call: S3Call) -> int | None:
    h = call.h
    decoded = h.get("x-amz-decoded-content-length")
    raw = decoded if decoded is not None else h.get("content-length")
    if raw is None:
        return None
    try:
        size = int(raw)
    except ValueError as exc:
        raise S3Error("InvalidArgument", "Invalid content length") from exc
    if size < 0:
        raise S3Error("InvalidArgument", "Invalid content length")
    return size


async def _decoded_body(call: S3Call, limit: int, *, sha256_in_spec: bool = False
                        ) -> AsyncIterator[bytes | memoryview]:
    h = call.h
    content_sha256 = h.get("x-amz-content-sha256", "")
    if call.auth is not None and not call.auth.presigned:
        content_sha256 = call.auth.content_sha256
    if "content-length" not in h and "chunked" not in h.get("transfer-encoding", "").lower():
        if call.req.method in ("PUT", "POST"):
            raise S3Error("MissingContentLength")
    size = _declared_size(call)
    if size is not None and size > limit:
        raise S3Error("EntityTooLarge" if limit >= MAX_PUT_SIZE else "MaxMessageLengthExceeded")
    received = 0
    if content_sha256 in sigv4.STREAMING_VALUES:
        decoder = AwsChunkedDecoder(content_sha256, decoded_length=size, ctx=call.auth)
        async for piece in call.req.stream():
            for out in decoder.feed(piece):
                received += len(out)
                if received > limit:
                    raise S3Error("EntityTooLarge")
                yield out
        decoder.finish()
        call.trailers = decoder.trailers
        return
    want = sigv4.payload_sha256_required(call.auth) if call.auth and not sha256_in_spec else None
    sha = hashlib.sha256() if want else None
    async for piece in call.req.stream():
        received += len(piece)
        if received > limit:
            raise S3Error("EntityTooLarge" if limit >= MAX_PUT_SIZE else "MaxMessageLengthExceeded")
        if sha is not None:
            sha.update(piece)
        yield piece
    if size is not None and received < size:
        raise S3Error("IncompleteBody")
    if sha is not None and sha.hexdigest() != want:
        raise S3Error("XAmzContentSHA256Mismatch")


# --- object attributes <-> headers ---------------------------------------------

def add_user_metadata(attrs: dict[str, Any], fields: Mapping[str, str]) -> None:
    """x-amz-meta-* from request headers or POST form fields into ``attrs["meta"]``, within S3's 2 KB."""
    meta = {k[len("x-amz-meta-"):]: v for k, v in fields.items() if k.startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge")
    if meta:
        attrs["meta"] = meta


def attrs_from_headers(h: dict[str, str]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for name in CONTENT_HEADERS:
        value = h.get(name)
        if value is not None:
            if name == "content-encoding":
                # aws-chunked describes this request's framing, not the object: drop it and keep the
                # rest exactly as sent ("deflate, gzip" stays "deflate, gzip").
                kept = [p for p in value.split(",") if p.strip() and p.strip().lower() != "aws-chunked"]
                value = ",".join(kept).strip()
                if not value:
                    continue
            attrs[name] = value
    attrs.setdefault("content-type", "binary/octet-stream")
    add_user_metadata(attrs, h)
    tagging = h.get("x-amz-tagging")
    if tagging:
        tags = dict(parse_qsl(tagging, keep_blank_values=True))
        if len(tags) > 10:
            raise S3Error("InvalidTag", "Object tags cannot be greater than 10")
        attrs["tags"] = tags
    storage_class = h.get("x-amz-storage-class")
    if storage_class:
        if storage_class not in ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA",
                                 "INTELLIGENT_TIERING", "GLACIER", "DEEP_ARCHIVE", "GLACIER_IR", "EXPRESS_ONEZONE"):
            raise S3Error("InvalidStorageClass")
        attrs["storage-class"] = storage_class
    return attrs


def http_date(ns: int) -> str:
    return _http_date(ns // 1_000_000_000)


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return format_http_date(datetime.fromtimestamp(seconds, UTC))


def mtime(obj: ObjectVersion) -> datetime:
    return datetime.fromtimestamp(obj.mtime_ns // 1_000_000_000, UTC)


def object_headers(obj: ObjectVersion, *, versioned: bool, checksum_mode: bool = False) -> list[tuple[str, str]]:
    a = obj.attrs
    out = [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)), ("accept-ranges", "bytes")]
    for name in CONTENT_HEADERS:
        if name in a:
            out.append((name, a[name]))
    for k, v in a.get("meta", {}).items():
        out.append((f"x-amz-meta-{k}", v))
    if versioned or obj.version_id != "null":
        out.append(("x-amz-version-id", obj.version_id))
    tags = a.get("tags")
    if tags:
        out.append(("x-amz-tagging-count", str(len(tags))))
    if a.get("storage-class") and a["storage-class"] != "STANDARD":
        out.append(("x-amz-storage-class", a["storage-class"]))
    if checksum_mode:
        out += checksum.headers(checksum.record(a))
    return out


def url_encode_if(value: str, encoding_type: str | None) -> str:
    return quote(value, safe="/") if encoding_type == "url" else value
