"""Multipart uploads: create, upload part (and part copy), complete, abort, list parts and uploads."""

from __future__ import annotations

import base64
from typing import Any

from exastor.http import checksums
from exastor.meta.records import ObjectVersion, Part, Upload
from exastor.namespace import multipart as mp
from exastor.namespace.operations import READ
from exastor.s3 import checksum, sse
from exastor.s3.common import MAX_PUT_SIZE, S3Call, attrs_from_headers, url_encode_if
from exastor.s3.errors import S3Error
from exastor.s3.list import _encoding, _max_keys
from exastor.s3.put import copy_range, copy_source, object_acl, write_check
from exastor.s3.xml import el, iso8601, owner_xml, parse, text


async def create_upload(call: S3Call) -> None:
    attrs = attrs_from_headers(call.h)
    settings = checksum.upload_settings(call.h)
    attrs.update(settings)
    owner = object_acl(call, attrs)
    sse.new_object_encryption(call.h, attrs, at_rest=call.ns.encrypted_at_rest)
    upload = await mp.create_upload(call.ns, call.grant, call.bucket_name, call.object_key, attrs, owner=owner)
    inner = el("Bucket", call.bucket) + el("Key", call.key) + el("UploadId", upload.upload_id)
    headers = sse.response_headers(attrs)
    if settings:
        headers += [("x-amz-checksum-algorithm", settings["checksum_algorithm"]),
                    ("x-amz-checksum-type", settings["checksum_type"])]
    await call.reply_xml("InitiateMultipartUploadResult", inner, headers)


def _part_number(call: S3Call) -> int:
    try:
        return int(call.q["partNumber"])
    except ValueError as exc:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive",
                      ArgumentName="partNumber") from exc


async def upload_part(call: S3Call) -> None:
    number = _part_number(call)
    if "x-amz-copy-source" in call.h:
        src = copy_source(call)
        upload = mp.get_upload(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"])
        if "sse_c" in src.attrs or "sse_c" in upload.attrs:
            # a part copy shares the source's stored bytes, which would be ciphertext under another counter
            raise S3Error("NotImplemented", "UploadPartCopy from or into an SSE-C object is not supported")
        start, end = copy_range(call, src)
        algorithms = checksum.part_algorithms(upload.attrs, checksum.Requested())
        values = await _copied_checksums(call, src, algorithms, start, end)
        part = await mp.upload_part_copy(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"],
                                         number, src, start, end, attrs={"checksums": values})
        inner = el("LastModified", iso8601(part.mtime_ns)) + el("ETag", f'"{part.etag}"')
        if upload.attrs.get("checksum_algorithm"):
            alg = upload.attrs["checksum_algorithm"]
            inner += el(f"Checksum{alg}", values[alg])
        await call.reply_xml("CopyPartResult", inner)
        return
    upload = mp.get_upload(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"])
    attrs: dict = {}
    algorithms = checksum.part_algorithms(upload.attrs, checksum.requested(call.h))
    spec = call.put_spec(attrs, algorithms=algorithms)
    body = call.body(MAX_PUT_SIZE, spec=spec)
    stored = upload.attrs.get("sse_c")
    ck = sse.customer_key(call.h)
    if stored is not None or ck is not None:
        if stored is None or ck is None or ck.key_md5 != stored["key_md5"]:
            raise S3Error("InvalidRequest", "The encryption parameters of a part must be those the multipart "
                          "upload was initiated with.")
        body = sse.encrypt_stream(body, ck.key, sse.part_iv(base64.b64decode(stored["iv"]), number), spec)
    part = await mp.upload_part(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"], number,
                                body, spec)
    headers = [("etag", f'"{part.etag}"')]
    shown = call.checksum_request.algorithm if call.checksum_request else None
    shown = shown or upload.attrs.get("checksum_algorithm")
    if shown:
        headers.append((checksums.header_name(shown), attrs["checksums"][shown]))
    await call.reply(200, b"", headers)


async def _copied_checksums(call: S3Call, src: ObjectVersion, algorithms: set[str], start: int | None,
                            end: int | None) -> dict[str, str]:
    """A copied part's checksums: the source's own when it is the whole source and the source's
    record is that algorithm's full-object value, else hashed from the stored bytes."""
    rec = checksum.record(src.attrs)
    whole = start is None or (start == 0 and end == src.size - 1)
    values: dict[str, str] = {}
    if whole and rec and rec["type"] == checksum.FULL_OBJECT and rec["algorithm"] in algorithms:
        values[rec["algorithm"]] = rec["value"]
    missing = {alg: checksums.new_checksum(alg) for alg in algorithms if alg not in values}
    if missing:
        await call.ns.digest(call.grant, src, list(missing.values()), start or 0, end)
        values.update({alg: ck.b64() for alg, ck in missing.items()})
    return values


async def complete_upload(call: S3Call) -> None:
    check = write_check(call)
    sums = checksum.complete_request(call.h)
    root = parse(await call.read_xml_body())
    if root.tag != "CompleteMultipartUpload":
        raise S3Error("MalformedXML")
    requested: list[tuple[int, str]] = []
    for part in root.findall("Part"):
        number, etag = text(part, "PartNumber"), text(part, "ETag")
        if number is None or etag is None:
            raise S3Error("MalformedXML")
        try:
            requested.append((int(number), etag))
        except ValueError as exc:
            raise S3Error("MalformedXML") from exc
        listed = checksum.part_checksum_elements(part, text)
        if listed is not None:
            sums.parts[int(number)] = listed
    if not requested:
        raise S3Error("MalformedXML")
    size_header = call.h.get("x-amz-mp-object-size")
    upload_id = call.q["uploadId"]

    def finish(upload: Upload, chosen: list[Part]) -> dict[str, Any]:
        if size_header is not None and str(sum(p.size for p in chosen)) != size_header.strip():
            raise S3Error("InvalidRequest", f"The provided 'x-amz-mp-object-size' header value {size_header} does "
                          f"not match what was computed: {sum(p.size for p in chosen)}")
        return checksum.completed_checksum(upload.attrs, sums,
                                           [(p.part_number, p.size, p.attrs.get("checksums", {})) for p in chosen],
                                           upload_id)

    obj, again = await mp.complete_upload(call.ns, call.grant, call.bucket_name, call.object_key, upload_id, requested,
                                          check=check, finish=finish)
    if "sse_c" in obj.attrs and not again:  # which part's counter each piece of the object was encrypted with
        numbers = [n for n, _ in requested]
        obj = await call.ns.update_object_attrs(call.grant, call.bucket_name, call.object_key, obj.version_id,
                                                {"sse_c": {**obj.attrs["sse_c"], "part_numbers": numbers}})
    rec = checksum.record(obj.attrs)
    inner = (el("Location", f"/{call.bucket}/{call.key}") + el("Bucket", call.bucket) + el("Key", call.key)
             + el("ETag", f'"{obj.etag}"') + checksum.xml_elements(rec))
    headers = [("x-amz-version-id", obj.version_id)] if obj.version_id != "null" else []
    await call.reply_xml("CompleteMultipartUploadResult", inner, headers + sse.response_headers(obj.attrs))


async def abort_upload(call: S3Call) -> None:
    await mp.abort_upload(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"])
    await call.reply(204)


async def list_parts(call: S3Call) -> None:
    upload = mp.get_upload(call.ns, call.grant, call.bucket_name, call.object_key, call.q["uploadId"], READ)
    max_parts = _max_keys(call, "max-parts")
    try:
        marker = int(call.q.get("part-number-marker", "0") or 0)
    except ValueError as exc:
        raise S3Error("InvalidArgument", "Invalid part-number-marker", ArgumentName="part-number-marker") from exc
    parts = mp.list_parts(call.ns, call.grant, upload, marker, max_parts + 1)
    truncated = len(parts) > max_parts
    parts = parts[:max_parts]
    head = [el("Bucket", call.bucket), el("Key", call.key), el("UploadId", upload.upload_id),
            owner_xml(upload.owner, "Initiator"), owner_xml(upload.owner), el("StorageClass", "STANDARD"),
            el("PartNumberMarker", marker), el("MaxParts", max_parts), el("IsTruncated", str(truncated).lower())]
    if parts:
        head.append(el("NextPartNumberMarker", parts[-1].part_number))
    algorithm = upload.attrs.get("checksum_algorithm")
    if algorithm:
        head += [el("ChecksumAlgorithm", algorithm), el("ChecksumType", upload.attrs.get("checksum_type"))]

    def part_checksum(p: Part) -> str:
        value = p.attrs.get("checksums", {}).get(algorithm) if algorithm else None
        return el(f"Checksum{algorithm}", value) if value else ""

    body = "".join(f"<Part>{el('PartNumber', p.part_number)}{el('LastModified', iso8601(p.mtime_ns))}"
                   f"{el('ETag', chr(34) + p.etag + chr(34))}{el('Size', p.size)}{part_checksum(p)}</Part>"
                   for p in parts)
    await call.reply_xml("ListPartsResult", "".join(head) + body)


async def list_uploads(call: S3Call) -> None:
    q = call.q
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker"), q.get("upload-id-marker")
    enc, max_uploads = _encoding(call), _max_keys(call, "max-uploads")
    uploads, prefixes, truncated = mp.list_uploads(call.ns, call.grant, call.bucket_name, prefix=prefix,
                                                   delimiter=delimiter, key_marker=key_marker or None,
                                                   upload_id_marker=id_marker, max_uploads=max_uploads)
    head = [el("Bucket", call.bucket), el("KeyMarker", url_encode_if(key_marker or "", enc)),
            el("UploadIdMarker", id_marker or ""), el("Prefix", url_encode_if(prefix, enc)),
            el("MaxUploads", max_uploads), el("IsTruncated", str(truncated).lower())]
    if delimiter:
        head.append(el("Delimiter", url_encode_if(delimiter, enc)))
    if enc:
        head.append(el("EncodingType", enc))
    if truncated and uploads:
        head += [el("NextKeyMarker", url_encode_if(uploads[-1].key, enc)), el("NextUploadIdMarker", uploads[-1].upload_id)]
    body = "".join(f"<Upload>{el('Key', url_encode_if(u.key, enc))}{el('UploadId', u.upload_id)}"
                   f"{owner_xml(u.owner, 'Initiator')}{owner_xml(u.owner)}{el('StorageClass', 'STANDARD')}"
                   f"{el('Initiated', iso8601(u.initiated_ns))}</Upload>" for u in uploads)
    pfx = "".join(f"<CommonPrefixes>{el('Prefix', url_encode_if(p, enc))}</CommonPrefixes>" for p in prefixes)
    await call.reply_xml("ListMultipartUploadsResult", "".join(head) + body + pfx)
