"""Append Block (with appendpos / maxsize conditions), Append Block From URL, Seal."""

from __future__ import annotations

import base64
import hashlib

from exastor.blob.common import MAX_APPEND_BLOCK, BlobCall, http_date, server_encrypted, write_check
from exastor.blob.errors import BlobError
from exastor.namespace.operations import PutSpec


def _conditions(call: BlobCall) -> tuple[int | None, int | None]:
    try:
        pos = call.h.get("x-ms-blob-condition-appendpos")
        size = call.h.get("x-ms-blob-condition-maxsize")
        return (int(pos) if pos is not None else None, int(size) if size is not None else None)
    except ValueError as exc:
        raise BlobError("InvalidHeaderValue") from exc


async def _append(call: BlobCall, source, spec: PutSpec) -> None:  # noqa: ANN001 - async iterator
    call.lease_guard(call.blob_name, write=True)
    pos, max_size = _conditions(call)
    md5 = hashlib.md5()
    spec.digesters.append(md5)
    obj, offset = await call.blobs.append(call.grant, call.container_name, call.blob_name, source, spec,
                                          append_pos=pos, max_size=max_size,
                                          check=write_check(call, lease="write"))
    headers = [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)),
               ("x-ms-blob-append-offset", str(offset)),
               ("x-ms-blob-committed-block-count", str(obj.attrs.get("committed_blocks", 0))),
               ("content-md5", base64.b64encode(md5.digest()).decode()),
               ("x-ms-request-server-encrypted", server_encrypted(call))]
    if "x-ms-content-crc64" in call.h:
        headers.append(("x-ms-content-crc64", call.h["x-ms-content-crc64"]))
    await call.reply(201, b"", headers)


async def append_block(call: BlobCall) -> None:
    size = call.content_size()
    if size is not None and size > MAX_APPEND_BLOCK:
        raise BlobError("RequestBodyTooLarge")
    if size == 0:  # Azure: an append block holds at least one byte
        raise BlobError("InvalidHeaderValue", "An append block cannot be empty.", HeaderName="Content-Length",
                        HeaderValue="0")
    await _append(call, call.body(MAX_APPEND_BLOCK), call.put_spec({}))


async def append_block_from_url(call: BlobCall) -> None:
    from exastor.blob.copy import (
        check_source_md5,
        is_external,
        md5_verifier,
        open_external,
        resolve_source,
        source_range,
    )
    if is_external(call.h, call.app.account):
        remote = await open_external(call, MAX_APPEND_BLOCK, ranged=True)
        try:
            await _append(call, remote.body(), PutSpec(attrs={}, expected_size=remote.size, verify=md5_verifier(call)))
        finally:
            await remote.close()
        return
    src = resolve_source(call)
    start, end = source_range(call, src.size)
    await check_source_md5(call, src, start, end)
    if end - start + 1 > MAX_APPEND_BLOCK:
        raise BlobError("RequestBodyTooLarge")
    source = call.ns.read(call.grant, src, start, end) if end >= start else _empty()
    await _append(call, source, PutSpec(attrs={}, expected_size=end - start + 1))


async def _empty():  # noqa: ANN202
    return
    yield b""


async def seal(call: BlobCall) -> None:
    call.lease_guard(call.blob_name, write=True)
    obj = await call.blobs.seal(call.grant, call.container_name, call.blob_name, write_check(call, lease="write"))
    await call.reply(200, b"", [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)),
                                ("x-ms-blob-sealed", "true")])
