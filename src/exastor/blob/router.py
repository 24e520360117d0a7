"""Which Blob operation a request is: method + container/blob presence + comp/restype + headers.

Each route names the operation (Azure's own name); what it needs (SAS permissions and level,
public access, the account's rights) is that name's row in exastor.auth.operations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from exastor.blob import append, batch, block, container, copy, get, lease, put, service, tags
from exastor.blob import list as listing
from exastor.blob.common import BlobCall
from exastor.blob.errors import BlobError

Handler = Callable[[BlobCall], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    operation: str
    handler: Handler


def route(method: str, container_name: str | None, blob: str | None, q: dict[str, str],
          h: dict[str, str]) -> Route:
    comp, restype = q.get("comp"), q.get("restype")
    if restype == "account" and comp == "properties" and method in ("GET", "HEAD"):
        return Route("GetAccountInformation", service.account_info)
    if container_name is None:
        return _service_route(method, comp, restype)
    if blob is None:
        return _container_route(method, comp, restype)
    return _blob_route(method, comp, q, h)


def _service_route(method: str, comp: str | None, restype: str | None) -> Route:
    if method == "GET" and comp == "list":
        return Route("ListContainers", service.list_containers)
    if restype == "service" and comp == "properties":
        if method == "GET":
            return Route("GetServiceProperties", service.get_properties)
        if method == "PUT":
            return Route("SetServiceProperties", service.set_properties)
    if restype == "service" and comp == "stats" and method == "GET":
        return Route("GetServiceStats", service.get_stats)
    if method == "GET" and comp == "blobs":
        return Route("FindBlobsByTags", tags.find_blobs)
    if comp == "batch":
        if method != "POST":
            raise BlobError("UnsupportedHttpVerb")
        return Route("SubmitBatch", batch.submit_batch)
    if comp == "userdelegationkey":
        raise BlobError("NotImplemented", "User delegation SAS is not supported yet.")
    raise BlobError("UnsupportedHttpVerb" if method not in ("GET", "PUT") else "InvalidQueryParameterValue")


def _container_route(method: str, comp: str | None, restype: str | None) -> Route:
    if comp == "list" and method == "GET":
        return Route("ListBlobs", listing.list_blobs)
    if comp == "blobs" and method == "GET":
        return Route("FindBlobsByTagsInContainer", tags.find_blobs)
    if restype != "container":
        raise BlobError("InvalidQueryParameterValue", "restype=container is required for container operations.")
    if comp is None:
        if method == "PUT":
            return Route("CreateContainer", container.create)
        if method in ("GET", "HEAD"):
            return Route("GetContainerProperties", container.get_properties)
        if method == "DELETE":
            return Route("DeleteContainer", container.delete)
    if comp == "metadata":
        if method == "PUT":
            return Route("SetContainerMetadata", container.set_metadata)
        if method in ("GET", "HEAD"):
            return Route("GetContainerMetadata", container.get_properties)
    if comp == "acl":
        if method == "PUT":
            return Route("SetContainerACL", container.set_acl)
        if method in ("GET", "HEAD"):
            return Route("GetContainerACL", container.get_acl)
    if comp == "lease" and method == "PUT":
        return Route("LeaseContainer", lease.container_lease)
    if comp == "batch":
        if method != "POST":
            raise BlobError("UnsupportedHttpVerb")
        return Route("SubmitBatchInContainer", batch.submit_batch)
    raise BlobError("UnsupportedHttpVerb" if comp is None else "InvalidQueryParameterValue")


def _blob_route(method: str, comp: str | None, q: dict[str, str], h: dict[str, str]) -> Route:
    if comp in ("page", "pagelist", "incrementalcopy") or h.get("x-ms-blob-type", "").lower() == "pageblob":
        raise BlobError("PageBlobNotSupported")
    has_copy = "x-ms-copy-source" in h
    if method == "PUT":
        table: dict[str | None, Route] = {
            "block": Route("PutBlockFromURL", block.put_block_from_url) if has_copy
            else Route("PutBlock", block.put_block),
            "blocklist": Route("PutBlockList", block.put_block_list),
            "appendblock": Route("AppendBlockFromURL", append.append_block_from_url) if has_copy
            else Route("AppendBlock", append.append_block),
            "seal": Route("SealBlob", append.seal),
            "metadata": Route("SetBlobMetadata", get.set_metadata),
            "properties": Route("SetBlobProperties", get.set_properties),
            "lease": Route("LeaseBlob", lease.blob_lease),
            "snapshot": Route("SnapshotBlob", get.snapshot),
            "tags": Route("SetBlobTags", tags.set_tags),
            "tier": Route("SetBlobTier", get.set_tier),
            "undelete": Route("UndeleteBlob", get.undelete),
            "copy": Route("AbortCopyBlob", copy.abort_copy),
            "expiry": Route("SetBlobExpiry", get.not_supported),
            "immutabilityPolicies": Route("SetBlobImmutabilityPolicy", get.not_supported),
            "legalhold": Route("SetBlobLegalHold", get.not_supported),
        }
        if comp in table:
            return table[comp]
        if comp is not None:
            raise BlobError("InvalidQueryParameterValue")
        if has_copy:
            if "x-ms-blob-type" in h:
                return Route("PutBlobFromURL", put.put_blob_from_url)
            return Route("CopyBlob", copy.copy_blob)
        return Route("PutBlob", put.put_blob)
    if method in ("GET", "HEAD"):
        if comp == "blocklist":
            return Route("GetBlockList", block.get_block_list)
        if comp == "metadata":
            return Route("GetBlobMetadata", partial(get.get_blob, head=True))
        if comp == "tags":
            return Route("GetBlobTags", tags.get_tags)
        if comp is None and method == "GET":
            return Route("GetBlob", partial(get.get_blob, head=False))
        if comp is None or comp == "properties":
            return Route("GetBlobProperties", partial(get.get_blob, head=method == "HEAD"))
        raise BlobError("InvalidQueryParameterValue")
    if method == "DELETE" and comp is None:
        return Route("DeleteBlob", get.delete_blob)
    raise BlobError("UnsupportedHttpVerb")
