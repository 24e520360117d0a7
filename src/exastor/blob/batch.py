"""Blob Batch (SubmitBatch): up to 256 Delete Blob or Set Blob Tier sub-requests in one request, at
service scope (``POST /account?comp=batch``) or container scope (``...container?restype=container&
comp=batch``).

The body is ``multipart/mixed``: each part is ``Content-Type: application/http`` with a
``Content-ID`` and holds one HTTP request (request line, headers, no body) carrying its own
credentials (its own Shared Key signature, or the SAS in its URL). Each sub-request is served as if
it had arrived alone: through this same application, so it is authenticated, routed, decided by the
authorizer and answered exactly as the plain request would be. The answer is ``202`` with a
``multipart/mixed; boundary=batchresponse_GUID`` body of one HTTP response per sub-request, in order,
with its Content-ID. A batch that cannot be read as a whole (malformed, over 256, mixed operations,
a blob outside the container) is answered, as Azure does, with 202 and a single error part.
"""

from __future__ import annotations

import http
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from exastor.blob.common import BlobCall
from exastor.blob.errors import BlobError

MAX_SUBREQUESTS = 256
MAX_BATCH_BODY = 4 << 20        # Azure's limit on a batch request's body
BATCH_OPERATIONS = ("DeleteBlob", "SetBlobTier")
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,70})"|([^;\s"]{1,70}))""", re.IGNORECASE)


@dataclass
class SubRequest:
    content_id: str
    method: str
    target: str                  # path and query as written, e.g. /account/container/blob?comp=tier
    headers: list[tuple[str, str]] = field(default_factory=list)


class BatchRefused(Exception):
    """The batch as a whole cannot be served; answered as one error part."""

    def __init__(self, error: BlobError) -> None:
        super().__init__(error.code)
        self.error = error


def _invalid(why: str) -> BatchRefused:
    return BatchRefused(BlobError("InvalidInput", f"One of the request inputs is not valid: {why}", status=400))


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/mixed"):
        raise BlobError("InvalidHeaderValue", "A batch's Content-Type must be multipart/mixed with a boundary.",
                        HeaderName="Content-Type")
    m = _BOUNDARY.search(content_type)
    if m is None:
        raise BlobError("InvalidHeaderValue", "The multipart/mixed Content-Type names no boundary.",
                        HeaderName="Content-Type")
    return m.group(1) or m.group(2)


def _lines(block: bytes) -> list[str]:
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("a part is not UTF-8") from exc
    return text.replace("\r\n", "\n").split("\n")


def _header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t"):
        raise _invalid(f"a malformed header line {line[:64]!r}")
    return name.strip(), value.strip()


def parse_body(body: bytes, boundary: str) -> list[SubRequest]:
    """The sub-requests of a multipart/mixed batch body (BatchRefused if it is not one)."""
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise _invalid("the body is not multipart/mixed with the boundary given (or lacks its closing line)")
    subs: list[SubRequest] = []
    for piece in pieces[1:-1]:
        if len(subs) >= MAX_SUBREQUESTS:
            raise BatchRefused(BlobError("ExceedsMaxBatchRequestCount", "The batch operation exceeds the maximum "
                                         f"number of allowed subrequests ({MAX_SUBREQUESTS}).", status=400))
        lines = _lines(piece.strip(b"\r\n"))
        at = 0
        part_headers: dict[str, str] = {}
        while at < len(lines) and lines[at].strip():
            name, value = _header(lines[at])
            part_headers[name.lower()] = value
            at += 1
        if part_headers.get("content-type", "").lower() != "application/http":
            raise _invalid("each part must be Content-Type: application/http")
        content_id = part_headers.get("content-id")
        if content_id is None or not content_id.isdigit() or len(content_id) > 9:
            raise _invalid("each part needs a numeric Content-ID")
        at += 1
        if at >= len(lines):
            raise _invalid("a part holds no request")
        request_line = lines[at].split(" ")
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
            raise _invalid(f"a malformed request line {lines[at][:64]!r}")
        method, target = request_line[0], request_line[1]
        if not target.startswith("/"):
            raise _invalid("a sub-request's target must be a path")
        sub = SubRequest(content_id, method, target)
        at += 1
        while at < len(lines) and lines[at].strip():
            sub.headers.append(_header(lines[at]))
            at += 1
        if any(line.strip() for line in lines[at:]):
            raise _invalid("batch sub-requests carry no body")
        subs.append(sub)
    if not subs:
        raise _invalid("the batch holds no sub-request")
    return subs


SIGNED_PATH = "exastor.blob.signed_path"  # scope key: the path a sub-request's Shared Key signed


def _sub_scope(outer: dict[str, Any], sub: SubRequest, account: str) -> dict[str, Any]:
    """The ASGI scope of one sub-request: the batch's connection (client address, TLS), its own
    method, path, query and headers. The SDKs write a sub-request's path with the account first
    when they talk to a local emulator and without it otherwise (``/container/blob``, as on Azure's
    host-style endpoints); both name the same blob here, and the Shared Key check uses the path as
    written, which is what the client signed."""
    raw_path, _, query = sub.target.partition("?")
    scope = {k: v for k, v in outer.items() if k in ("type", "asgi", "http_version", "scheme", "server", "client",
                                                        "root_path")}
    if not raw_path.startswith(f"/{account}/"):
        scope[SIGNED_PATH] = raw_path
        raw_path = f"/{account}{raw_path}"
    scope.update(method=sub.method, path=unquote(raw_path), raw_path=raw_path.encode("latin-1", "replace"),
                 query_string=query.encode("latin-1", "replace"),
                 headers=[(k.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace"))
                          for k, v in sub.headers])
    return scope


async def _serve(call: BlobCall, sub: SubRequest) -> tuple[int, list[tuple[str, str]], bytes]:
    """One sub-request through the whole application, its response captured."""
    status = 500
    headers: list[tuple[str, str]] = []
    body: list[bytes] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers.extend((k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.append(bytes(message.get("body", b"")))

    await call.app(_sub_scope(call.req.scope, sub, call.app.account), receive, send)
    return status, headers, b"".join(body)


async def _no_body() -> dict[str, Any]:
    raise AssertionError("a sub-request's body is not read while routing it")


def _operation_of(call: BlobCall, sub: SubRequest, scope_container: str | None) -> str:
    """Which operation a sub-request is, checked against what a batch may hold."""
    from exastor.http.asgi import Request
    req = Request(_sub_scope(call.req.scope, sub, call.app.account), receive=_no_body)
    parts = req.path.lstrip("/").split("/", 2)
    if len(parts) < 3 or parts[0] != call.app.account or not parts[1] or not parts[2]:
        raise _invalid(f"a sub-request must name a blob of this account: {sub.target[:128]!r}")
    if scope_container is not None and parts[1] != scope_container:
        raise _invalid("a container batch may only hold requests for blobs in that container")
    try:
        name = call.app.route(req.method, parts[1], parts[2], req.query, req.headers).operation
    except BlobError as exc:
        raise _invalid(f"sub-request {sub.content_id}: {exc.message}") from exc
    if name not in BATCH_OPERATIONS:
        raise _invalid(f"a batch holds Delete Blob or Set Blob Tier requests only, not {name}")
    return name


def _part(content_id: str | None, status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    head = ["Content-Type: application/http"]
    if content_id is not None:
        head.append(f"Content-ID: {content_id}")
    lines = [*head, "", f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in ("connection", "date", "server")]
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
    return out + body + (b"\r\n" if body else b"")


async def submit_batch(call: BlobCall) -> None:
    boundary = boundary_of(call.h.get("content-type", ""))
    body = await call.read_small_body(MAX_BATCH_BODY)
    scope_container = call.container
    if scope_container is not None:
        call.ns.bucket(call.grant, scope_container)  # a missing container is 404 ContainerNotFound
    parts: list[bytes] = []
    try:
        subs = parse_body(body, boundary)
        kinds = {_operation_of(call, sub, scope_container) for sub in subs}
        if len(kinds) > 1:
            raise BatchRefused(BlobError("AllBatchSubRequestsShouldBeSameApi",
                                         "All batch subrequests should be the same api.", status=400))
    except BatchRefused as refused:
        err = refused.error
        xml = err.to_xml(call.request_id)
        parts.append(_part(None, err.status, [("x-ms-error-code", err.code), ("x-ms-request-id", call.request_id),
                                              ("x-ms-version", call.version), ("Content-Length", str(len(xml))),
                                              ("Content-Type", "application/xml")], xml))
    else:
        for sub in subs:  # in order: Azure runs them one by one and answers in the order asked
            status, headers, data = await _serve(call, sub)
            parts.append(_part(sub.content_id, status, headers, data))
    reply_boundary = f"batchresponse_{uuid.uuid4()}"
    delimiter = f"--{reply_boundary}\r\n".encode()
    out = b"".join(delimiter + p for p in parts) + f"--{reply_boundary}--\r\n".encode()
    await call.reply(202, out, content_type=f"multipart/mixed; boundary={reply_boundary}")
