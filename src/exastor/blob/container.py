"""Container operations: create, delete, properties, metadata, ACL (public access and stored
access policies). A container is a bucket of the account's principal."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from exastor.blob import xml as bx
from exastor.blob.common import (
    BlobCall,
    BlobCheck,
    blob_check,
    http_date,
    lease_headers,
    metadata_from_headers,
)
from exastor.blob.errors import BlobError
from exastor.blob.service import container_etag
from exastor.blob.xml import el
from exastor.http.conditions import evaluate, parse_preconditions
from exastor.meta.records import Bucket
from exastor.namespace.operations import READ

_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_PUBLIC = ("container", "blob")
# What any container name reaching this account can be: Azure's rule, widened by the dots S3 bucket
# names may hold (a bucket made over S3 is a container here too). Azure's own names ($root, $logs,
# $web) pass and are simply not found.
_REACHABLE = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]|\$root|\$logs|\$web")


def check_container_name(name: str, *, creating: bool = False) -> None:
    """Azure's answers to a container name no container can have: 400 OutOfRangeInput for a length
    outside 3-63, 400 InvalidResourceName for characters (Create Container: Azure's full rule)."""
    if not 3 <= len(name) <= 63 and not name.startswith("$"):
        raise BlobError("OutOfRangeInput", "The specified resource name length is not within the permissible "
                        "limits.")
    if not (_NAME if creating else _REACHABLE).fullmatch(name):
        raise BlobError("InvalidResourceName")


def container_or_404(call: BlobCall) -> Bucket:
    """The container (anonymous callers got here only through its public access 'container')."""
    return call.ns.bucket(call.grant, call.container_name, READ)


def _headers(bucket: Bucket) -> list[tuple[str, str]]:
    return [("etag", container_etag(bucket.attrs, bucket.created_ns)),
            ("last-modified", http_date(bucket.attrs.get("blob_mtime_ns", bucket.created_ns)))]


def dates_condition(call: BlobCall) -> Callable[[Bucket], None] | None:
    """If-Modified-Since / If-Unmodified-Since on a container, as a check of the container's row
    (the only conditions containers take)."""
    pre = parse_preconditions(call.h)
    if pre.if_match or pre.if_none_match:
        raise BlobError("UnsupportedHeader", "Containers take If-Modified-Since / If-Unmodified-Since only.")
    if not pre.any():
        return None

    def check(bucket: Bucket) -> None:
        mtime = bucket.attrs.get("blob_mtime_ns", bucket.created_ns)
        outcome = evaluate(pre, exists=True, etag=None, last_modified=datetime.fromtimestamp(mtime // 10**9, UTC),
                           method="PUT", dates_on_writes=True)
        if outcome != "ok":
            raise BlobError("ConditionNotMet")
    return check


def _check_dates(call: BlobCall, bucket: Bucket) -> None:
    check = dates_condition(call)
    if check:
        check(bucket)


def container_check(call: BlobCall, *, lease: str) -> BlobCheck | None:
    """The container's lease and date conditions, run inside the transaction that changes it."""
    return blob_check(call, dates_condition(call), lease=lease, key="", container_level=True)


async def create(call: BlobCall) -> None:
    name = call.container_name
    check_container_name(name, creating=True)
    public = call.h.get("x-ms-blob-public-access")
    if public is not None and public not in _PUBLIC:
        raise BlobError("InvalidHeaderValue", "x-ms-blob-public-access must be container or blob.")
    now = time.time_ns()
    attrs: dict = {"blob_mtime_ns": now, "blob_etag_ns": now}
    meta = metadata_from_headers(call.h, call.meta_names)
    if meta:
        attrs["blob_meta"] = meta
    if public:
        attrs["public_access"] = public
    bucket = await call.ns.create_bucket(call.grant, name, attrs=attrs)
    await call.reply(201, b"", _headers(bucket))


async def get_properties(call: BlobCall) -> None:
    bucket = container_or_404(call)
    lease = call.blobs.lease(call.grant, bucket.name, "")
    if call.h.get("x-ms-lease-id"):
        call.lease_guard("", write=False, container_level=True)
    headers = _headers(bucket) + lease_headers(lease)
    for k, v in (bucket.attrs.get("blob_meta") or {}).items():
        headers.append((f"x-ms-meta-{k}", v))
    if bucket.attrs.get("public_access"):
        headers.append(("x-ms-blob-public-access", bucket.attrs["public_access"]))
    headers += [("x-ms-has-immutability-policy", "false"), ("x-ms-has-legal-hold", "false"),
                ("x-ms-default-encryption-scope", "$account-encryption-key"),
                ("x-ms-deny-encryption-scope-override", "false")]
    await call.reply(200, b"", headers, head=call.req.method == "HEAD")


async def delete(call: BlobCall) -> None:
    bucket = call.ns.bucket(call.grant, call.container_name)
    _check_dates(call, bucket)
    call.lease_guard("", write=True, container_level=True)
    await call.blobs.delete_container(call.grant, call.container_name, container_check(call, lease="write"))
    await call.reply(202)


async def set_metadata(call: BlobCall) -> None:
    bucket = call.ns.bucket(call.grant, call.container_name)
    _check_dates(call, bucket)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard("", write=False, container_level=True)
    now = time.time_ns()
    meta = metadata_from_headers(call.h, call.meta_names)
    bucket = await call.ns.update_bucket_attrs(call.grant, call.container_name,
                                               {"blob_meta": meta or None, "blob_mtime_ns": now, "blob_etag_ns": now},
                                               check=container_check(call, lease="read"))
    await call.reply(200, b"", _headers(bucket))


async def get_acl(call: BlobCall) -> None:
    bucket = call.ns.bucket(call.grant, call.container_name)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard("", write=False, container_level=True)
    items = []
    for sid, p in (bucket.attrs.get("blob_acl") or {}).items():
        policy = "".join(el(tag, p[key]) for tag, key in (("Start", "start"), ("Expiry", "expiry"),
                                                           ("Permission", "permission")) if p.get(key))
        items.append(f"<SignedIdentifier>{el('Id', sid)}<AccessPolicy>{policy}</AccessPolicy></SignedIdentifier>")
    headers = _headers(bucket)
    if bucket.attrs.get("public_access"):
        headers.append(("x-ms-blob-public-access", bucket.attrs["public_access"]))
    await call.reply(200, bx.doc("<SignedIdentifiers>" + "".join(items) + "</SignedIdentifiers>"), headers)


async def set_acl(call: BlobCall) -> None:
    bucket = call.ns.bucket(call.grant, call.container_name)
    _check_dates(call, bucket)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard("", write=False, container_level=True)
    public = call.h.get("x-ms-blob-public-access") or None
    if public is not None and public not in _PUBLIC:
        raise BlobError("InvalidHeaderValue", "x-ms-blob-public-access must be container or blob.")
    body = await call.read_small_body()
    acl: dict[str, dict[str, str]] = {}
    if body.strip():
        root = bx.parse(body)
        for node in root.iter("SignedIdentifier"):
            sid = bx.text(node, "Id")
            if not sid or len(sid) > 64:
                raise BlobError("InvalidXmlDocument", "SignedIdentifier Id must be 1-64 characters.")
            policy = node.find("AccessPolicy")
            acl[sid] = {k: v for k, v in (("start", bx.text(policy, "Start", "")),
                                          ("expiry", bx.text(policy, "Expiry", "")),
                                          ("permission", bx.text(policy, "Permission", ""))) if v}
        if len(acl) > 5:
            raise BlobError("InvalidXmlDocument", "At most five stored access policies per container.")
    now = time.time_ns()
    bucket = await call.ns.update_bucket_attrs(call.grant, call.container_name, {
        "public_access": public, "blob_acl": acl or None, "blob_mtime_ns": now, "blob_etag_ns": now},
        check=container_check(call, lease="read"))
    await call.reply(200, b"", _headers(bucket))
