"""Put Blob (block and append blobs; page blobs are refused) and Put Blob From URL."""

from __future__ import annotations

from exastor.blob.common import (
    MAX_PUT_BLOB,
    BlobCall,
    content_md5_of,
    http_date,
    new_blob_attrs,
    server_encrypted,
    write_check,
)
from exastor.blob.errors import BlobError


def written_headers(call: BlobCall, obj, *, md5: bool = True) -> list[tuple[str, str]]:  # noqa: ANN001 - ObjectVersion
    out = [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)),
           ("x-ms-request-server-encrypted", server_encrypted(call))]
    value = content_md5_of(obj) if md5 else None
    if value:
        out.append(("content-md5", value))
    return out


async def put_blob(call: BlobCall) -> None:
    blob_type = call.h.get("x-ms-blob-type")
    if not blob_type:
        raise BlobError("MissingRequiredHeader", "x-ms-blob-type is required.")
    if blob_type not in ("BlockBlob", "AppendBlob"):
        raise BlobError("InvalidHeaderValue", "x-ms-blob-type must be BlockBlob or AppendBlob.")
    call.lease_guard(call.blob_name, write=True)
    attrs = new_blob_attrs(call.h, blob_type, names=call.meta_names)
    limit = MAX_PUT_BLOB
    if blob_type == "AppendBlob":
        attrs["committed_blocks"] = 0
        if int(call.h.get("content-length") or 0) != 0:
            raise BlobError("InvalidHeaderValue", "An append blob is created empty (Content-Length: 0).")
        limit = 0
    spec = call.put_spec(attrs)
    spec.check = write_check(call, create=True, lease="write")
    obj = await call.ns.put_object(call.grant, call.container_name, call.blob_name, call.body(limit), spec)
    headers = written_headers(call, obj, md5=blob_type == "BlockBlob")
    if "x-ms-content-crc64" in call.h:
        headers.append(("x-ms-content-crc64", call.h["x-ms-content-crc64"]))
    await call.reply(201, b"", headers)


async def put_blob_from_url(call: BlobCall) -> None:
    """Put Blob From URL: a synchronous, whole-blob copy inside the account (no bytes move)."""
    from exastor.blob.copy import copy_into
    if call.h.get("x-ms-blob-type") != "BlockBlob":
        raise BlobError("InvalidHeaderValue", "Put Blob From URL creates block blobs.")
    if int(call.h.get("content-length") or 0) != 0:
        raise BlobError("InvalidHeaderValue", "Put Blob From URL takes no body.")
    call.lease_guard(call.blob_name, write=True)
    obj = await copy_into(call, from_url=True)
    await call.reply(201, b"", written_headers(call, obj))
