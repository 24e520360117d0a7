"""Put Block, Put Block From URL, Put Block List, Get Block List."""

from __future__ import annotations

import base64
import binascii

from exastor import errors
from exastor.blob import xml as bx
from exastor.blob.common import (
    MAX_BLOCK,
    BlobCall,
    blob_check,
    blob_headers,
    http_date,
    new_blob_attrs,
    server_encrypted,
    write_check,
)
from exastor.blob.errors import BlobError
from exastor.blob.xml import el
from exastor.meta.blob import Block, Snapshot
from exastor.meta.records import ObjectVersion
from exastor.namespace.blobs import committed_blocks
from exastor.namespace.operations import PutSpec


def check_block_id(call: BlobCall) -> str:
    block_id = call.q.get("blockid")
    if block_id is None:
        raise BlobError("MissingRequiredQueryParameter", "blockid is required.")
    try:
        raw = base64.b64decode(block_id, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BlobError("InvalidBlockId") from exc
    if not raw or len(raw) > 64:
        raise BlobError("InvalidBlockId")
    return block_id


def _block_headers(md5_hex: str, call: BlobCall) -> list[tuple[str, str]]:
    out = [("content-md5", base64.b64encode(bytes.fromhex(md5_hex)).decode()),
           ("x-ms-request-server-encrypted", server_encrypted(call))]
    if "x-ms-content-crc64" in call.h:
        out.append(("x-ms-content-crc64", call.h["x-ms-content-crc64"]))
    return out


async def put_block(call: BlobCall) -> None:
    block_id = check_block_id(call)
    call.lease_guard(call.blob_name, write=True)  # as Azure: an active lease needs its id to stage a block
    spec = call.put_spec({})
    block = await call.blobs.stage_block(call.grant, call.container_name, call.blob_name, block_id,
                                         call.body(MAX_BLOCK), spec, blob_check(call, None, lease="write"))
    await call.reply(201, b"", _block_headers(block.md5, call))


async def put_block_from_url(call: BlobCall) -> None:
    from exastor.blob.copy import (
        check_source_md5,
        is_external,
        md5_verifier,
        open_external,
        resolve_source,
        source_range,
    )
    block_id = check_block_id(call)
    call.lease_guard(call.blob_name, write=True)
    if is_external(call.h, call.app.account):
        remote = await open_external(call, MAX_BLOCK, ranged=True)
        try:
            block = await call.blobs.stage_block(call.grant, call.container_name, call.blob_name, block_id, remote.body(),
                                                 PutSpec(expected_size=remote.size, verify=md5_verifier(call)),
                                                 blob_check(call, None, lease="write"))
        finally:
            await remote.close()
        await call.reply(201, b"", _block_headers(block.md5, call))
        return
    src = resolve_source(call)
    start, end = source_range(call, src.size)
    await check_source_md5(call, src, start, end)
    block = await call.blobs.stage_block_from(call.grant, call.container_name, call.blob_name, block_id,
                                              src, start, end, blob_check(call, None, lease="write"))
    await call.reply(201, b"", _block_headers(block.md5, call))


async def put_block_list(call: BlobCall) -> None:
    call.lease_guard(call.blob_name, write=True)
    root = bx.parse(await call.read_small_body(8 << 20))
    if root.tag != "BlockList":
        raise BlobError("InvalidXmlDocument")
    wanted: list[tuple[str, str]] = []
    for node in root:
        if node.tag not in ("Committed", "Uncommitted", "Latest") or not node.text:
            raise BlobError("InvalidXmlNodeValue")
        wanted.append((node.tag, node.text.strip()))
    attrs = new_blob_attrs(call.h, "BlockBlob", body_is_content=False, names=call.meta_names)
    obj = await call.blobs.commit_blocks(call.grant, call.container_name, call.blob_name, wanted, attrs,
                                         write_check(call, create=True, lease="write"))
    await call.reply(201, b"", [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns)),
                                ("x-ms-request-server-encrypted", server_encrypted(call))])


async def get_block_list(call: BlobCall) -> None:
    kind = call.q.get("blocklisttype", "committed").lower()
    if kind not in ("committed", "uncommitted", "all"):
        raise BlobError("InvalidQueryParameterValue", "blocklisttype must be committed, uncommitted or all.")
    snapshot = call.q.get("snapshot")
    obj: ObjectVersion | Snapshot | None
    staged: list[Block]
    if snapshot:
        obj, staged = call.blobs.get_snapshot(call.grant, call.container_name, call.blob_name, snapshot), []
    else:
        obj, staged = call.blobs.block_lists(call.grant, call.container_name, call.blob_name)
    if obj is None and not staged:
        raise errors.ObjectNotFound(call.blob_name)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard(call.blob_name, write=False)
    headers: list[tuple[str, str]] = []
    committed = ""
    if obj is not None:
        if obj.attrs.get("blob-type", "BlockBlob") != "BlockBlob":
            raise BlobError("InvalidBlobType")
        headers = [h for h in blob_headers(obj, None, with_md5=False) if h[0] in ("etag", "last-modified")]
        headers.append(("x-ms-blob-content-length", str(obj.size)))
        committed = "".join(f"<Block>{el('Name', b)}{el('Size', s)}</Block>" for b, s, _ in committed_blocks(obj))
    uncommitted = "".join(f"<Block>{el('Name', b.block_id)}{el('Size', b.size)}</Block>" for b in staged)
    body = "<BlockList>"
    if kind in ("committed", "all"):
        body += f"<CommittedBlocks>{committed}</CommittedBlocks>"
    if kind in ("uncommitted", "all"):
        body += f"<UncommittedBlocks>{uncommitted}</UncommittedBlocks>"
    await call.reply(200, bx.doc(body + "</BlockList>"), headers)
