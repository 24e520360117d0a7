"""GetObjectAttributes: an object's ETag, checksum, parts (paginated), storage class and size in one
call, without its body."""

from __future__ import annotations

from exastor.s3 import checksum, sse
from exastor.s3.common import S3Call, http_date
from exastor.s3.errors import S3Error
from exastor.s3.xml import el

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def _wanted(call: S3Call) -> set[str]:
    raw = call.h.get("x-amz-object-attributes", "")
    names = {n.strip() for n in raw.split(",") if n.strip()}
    if not names:
        raise S3Error("InvalidRequest", "The x-amz-object-attributes header specifying the attributes to be "
                      "retrieved is either missing or empty")
    lowered = {a.lower(): a for a in ATTRIBUTES}
    unknown = [n for n in names if n.lower() not in lowered]
    if unknown:
        raise S3Error("InvalidArgument", "Invalid attribute name specified.", ArgumentName="x-amz-object-attributes",
                      ArgumentValue=unknown[0])
    return {lowered[n.lower()] for n in names}


def _int_header(call: S3Call, name: str, default: int) -> int:
    raw = call.h.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise S3Error("InvalidArgument", f"Invalid value for {name}", ArgumentName=name, ArgumentValue=raw)
    return value


async def get_object_attributes(call: S3Call) -> None:
    wanted = _wanted(call)
    max_parts = min(_int_header(call, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    marker = _int_header(call, "x-amz-part-number-marker", 0)
    obj = call.ns.get_object(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"))
    sse.key_for_read(call.h, obj)  # an SSE-C object's attributes need its key, as its body does
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    inner: list[str] = []
    if "ETag" in wanted:
        inner.append(el("ETag", obj.etag))
    rec = checksum.record(obj.attrs)
    if "Checksum" in wanted and rec:
        inner.append(f"<Checksum>{checksum.xml_elements(rec)}</Checksum>")
    sizes: list[int] | None = obj.attrs.get("parts")
    if "ObjectParts" in wanted and sizes:
        part_sums = obj.attrs.get("part_checksums") or []
        after = [n for n in range(marker + 1, len(sizes) + 1)]
        page, truncated = after[:max_parts], len(after) > max_parts
        parts = [el("PartsCount", len(sizes)), el("PartNumberMarker", marker), el("MaxParts", max_parts),
                 el("IsTruncated", str(truncated).lower())]
        if page:
            parts.append(el("NextPartNumberMarker", page[-1]))
        for n in page:
            value = part_sums[n - 1] if rec and n <= len(part_sums) else None
            sums = el(f"Checksum{rec['algorithm']}", value) if value and rec else ""
            parts.append(f"<Part>{el('PartNumber', n)}{el('Size', sizes[n - 1])}{sums}</Part>")
        inner.append(f"<ObjectParts>{''.join(parts)}</ObjectParts>")
    if "StorageClass" in wanted:
        inner.append(el("StorageClass", obj.attrs.get("storage-class", "STANDARD")))
    if "ObjectSize" in wanted:
        inner.append(el("ObjectSize", obj.size))
    headers = [("last-modified", http_date(obj.mtime_ns))]
    if (bucket and bucket.versioning) or obj.version_id != "null":
        headers.append(("x-amz-version-id", obj.version_id))
    await call.reply_xml("GetObjectAttributesResponse", "".join(inner), headers)
