"""List Blobs, flat and hierarchical, with include=metadata,snapshots,uncommittedblobs,tags,copy,deleted.

Markers are opaque to clients (base64 of our resume cursor), as Azure's are.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from exastor.blob import xml as bx
from exastor.blob.common import BlobCall, content_md5_of, http_date, lease_headers
from exastor.blob.container import container_or_404
from exastor.blob.errors import BlobError
from exastor.blob.service import service_endpoint
from exastor.blob.xml import el, opt
from exastor.meta import blob as bm

_INCLUDES = {"snapshots", "metadata", "uncommittedblobs", "copy", "deleted", "tags", "versions",
             "immutabilitypolicy", "legalhold", "deletedwithversions", "permissions"}


def encode_marker(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode("utf-8", "surrogatepass")).decode()


def decode_marker(marker: str) -> str:
    try:
        return base64.urlsafe_b64decode(marker.encode()).decode("utf-8", "surrogatepass")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BlobError("InvalidQueryParameterValue", "The marker is not one this server issued.") from exc


def _tags_xml(tags: dict[str, str]) -> str:
    return "<Tags><TagSet>" + "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items()) \
           + "</TagSet></Tags>"


def blob_xml(name: str, size: int, etag: str, mtime_ns: int, attrs: dict[str, Any], include: set[str], *,
             lease: bm.Lease | None = None, snapshot: str | None = None, deleted_ns: int | None = None,
             md5: str | None = None, retention_days: int | None = None, encrypted: bool = False) -> str:
    """``encrypted``: the store's data is encrypted at rest (``ServerEncrypted`` says so, and only then)."""
    a = attrs
    p = [el("Creation-Time", http_date(a.get("created_ns", mtime_ns))), el("Last-Modified", http_date(mtime_ns)),
         el("Etag", f'"{etag}"'), el("Content-Length", size),
         el("Content-Type", a.get("content-type", "application/octet-stream")),
         opt("Content-Encoding", a.get("content-encoding")), opt("Content-Language", a.get("content-language")),
         "<Content-CRC64 />", opt("Content-MD5", md5), opt("Cache-Control", a.get("cache-control")),
         opt("Content-Disposition", a.get("content-disposition")), el("BlobType", a.get("blob-type", "BlockBlob"))]
    if a.get("blob-type", "BlockBlob") == "BlockBlob":
        p.append(el("AccessTier", a.get("tier", "Hot")))
        if "tier" not in a:
            p.append(el("AccessTierInferred", "true"))
        else:
            p.append(el("AccessTierChangeTime", http_date(a.get("tier_ns", mtime_ns))))
    if snapshot is None and deleted_ns is None:
        lh = dict(lease_headers(lease))
        p += [el("LeaseStatus", lh["x-ms-lease-status"]), el("LeaseState", lh["x-ms-lease-state"])]
        if "x-ms-lease-duration" in lh:
            p.append(el("LeaseDuration", lh["x-ms-lease-duration"]))
    p.append(el("ServerEncrypted", "true" if encrypted else "false"))
    if a.get("sealed"):
        p.append(el("Sealed", "true"))
    if "tags" in a and a["tags"]:
        p.append(el("TagCount", len(a["tags"])))
    copy = a.get("copy")
    if copy and "copy" in include:
        p += [el("CopyId", copy["id"]), el("CopyStatus", copy["status"]), el("CopySource", copy["source"]),
              el("CopyProgress", copy["progress"]), el("CopyCompletionTime", http_date(copy["completion_ns"]))]
    if deleted_ns is not None:
        p.append(el("DeletedTime", http_date(deleted_ns)))
        if retention_days:
            p.append(el("RemainingRetentionDays", retention_days))
    out = "<Blob>" + el("Name", name)
    if deleted_ns is not None:
        out += el("Deleted", "true")
    if snapshot:
        out += el("Snapshot", snapshot)
    out += "<Properties>" + "".join(p) + "</Properties>"
    if "metadata" in include:
        out += "<Metadata>" + "".join(el(k, v) for k, v in (a.get("meta") or {}).items()) + "</Metadata>"
    if "tags" in include and a.get("tags"):
        out += _tags_xml(a["tags"])
    return out + "</Blob>"


async def list_blobs(call: BlobCall) -> None:
    q = call.q
    if q.get("restype") != "container":
        raise BlobError("InvalidQueryParameterValue", "List Blobs needs restype=container.")
    container_or_404(call)
    prefix, delimiter, marker = q.get("prefix", ""), q.get("delimiter", ""), q.get("marker", "")
    try:
        max_results = int(q.get("maxresults", "5000"))
    except ValueError as exc:
        raise BlobError("InvalidQueryParameterValue") from exc
    if not 1 <= max_results <= 5000:
        raise BlobError("OutOfRangeQueryParameterValue")
    include = {i.strip().lower() for i in q.get("include", "").split(",") if i.strip()}
    if include - _INCLUDES:
        raise BlobError("InvalidQueryParameterValue", "Unknown include value.")
    cursor = decode_marker(marker) if marker else None
    result = call.ns.list_objects(call.grant, call.container_name, prefix=prefix, delimiter=delimiter,
                                  cursor=cursor, max_keys=max_results)
    hi = result.next_cursor if result.truncated else None

    def in_page(key: str) -> bool:
        """Snapshots, uncommitted and deleted blobs shown beside this page's live blobs."""
        if not key.startswith(prefix) or (cursor is not None and key <= cursor) or (hi is not None and key > hi):
            return False
        return not (delimiter and key.find(delimiter, len(prefix)) >= 0)

    entries: list[tuple[str, int, str]] = []   # (key, order within key, xml)
    enc = call.ns.encrypted_at_rest
    keys = [o.key for o in result.objects]
    leases = call.blobs.leases(call.grant, call.container_name, keys)
    for o in result.objects:
        entries.append((o.key, 1, blob_xml(o.key, o.size, o.etag, o.mtime_ns, o.attrs, include,
                                           lease=leases.get(o.key), md5=content_md5_of(o), encrypted=enc)))
    if "snapshots" in include:
        for s in call.blobs.snapshots_under(call.grant, call.container_name, prefix):
            if in_page(s.key):
                entries.append((s.key, 0, blob_xml(s.key, s.size, s.etag, s.mtime_ns, s.attrs, include,
                                                   snapshot=s.snapshot, md5=content_md5_of(s), encrypted=enc)))
    if "uncommittedblobs" in include:
        live = set(keys)
        for key, _, newest in call.blobs.uncommitted_under(call.grant, call.container_name, prefix):
            if key not in live and in_page(key):
                entries.append((key, 1, blob_xml(key, 0, "0x0", newest, {}, include, encrypted=enc)))
    if "deleted" in include:
        from exastor.blob.service import settings
        days = settings(call).delete_retention_days
        for s, deleted_ns in call.blobs.deleted_under(call.grant, call.container_name, prefix):
            if in_page(s.key):
                entries.append((s.key, 2, blob_xml(s.key, s.size, s.etag, s.mtime_ns, s.attrs, include,
                                                   snapshot=s.snapshot or None, deleted_ns=deleted_ns,
                                                   retention_days=days, encrypted=enc)))
    # Azure interleaves prefixes with blobs in name order.
    entries += [(p, 1, f"<BlobPrefix>{el('Name', p)}</BlobPrefix>") for p in result.prefixes]
    entries.sort(key=lambda e: (e[0], e[1]))
    items = [e[2] for e in entries]
    next_marker = encode_marker(result.next_cursor) if result.truncated and result.next_cursor else None
    body = (f'<EnumerationResults ServiceEndpoint="{service_endpoint(call)}" ContainerName="{call.container_name}">'
            + (el("Prefix", prefix) if prefix else "") + (el("Marker", marker) if marker else "")
            + (el("MaxResults", max_results) if "maxresults" in q else "")
            + (el("Delimiter", delimiter) if delimiter else "")
            + "<Blobs>" + "".join(items) + "</Blobs>" + opt("NextMarker", next_marker) + "</EnumerationResults>")
    await call.reply(200, bx.doc(body))
