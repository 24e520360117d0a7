"""Which Blob operation a request is: method + container/blob presence + comp/restype + headers.

Each route also says what a SAS must grant: the resource level (s/c/o) and the permission letters
of which one suffices, and whether an anonymous caller may try it (public containers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from exastor.blob import append, block, container, copy, get, lease, put, service, tags
from exastor.blob import list as listing
from exastor.blob.common import BlobCall
from exastor.blob.errors import BlobError

Handler = Callable[[BlobCall], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    handler: Handler
    level: str
    perms: str
    anonymous: bool = False


def route(method: str, container_name: str | None, blob: str | None, q: dict[str, str],
          h: dict[str, str]) -> Route:
    comp, restype = q.get("comp"), q.get("restype")
    if restype == "account" and comp == "properties" and method in ("GET", "HEAD"):
        return Route(service.account_info, "s", "")
    if container_name is None:
        return _service_route(method, comp, restype)
    if blob is None:
        return _container_route(method, comp, restype)
    return _blob_route(method, comp, q, h)


def _service_route(method: str, comp: str | None, restype: str | None) -> Route:
    if method == "GET" and comp == "list":
        return Route(service.list_containers, "s", "l")
    if restype == "service" and comp == "properties":
        if method == "GET":
            return Route(service.get_properties, "s", "r")
        if method == "PUT":
            return Route(service.set_properties, "s", "w")
    if restype == "service" and comp == "stats" and method == "GET":
        return Route(service.get_stats, "s", "r")
    if method == "GET" and comp == "blobs":
        return Route(tags.find_blobs, "s", "f")
    if comp == "batch":
        raise BlobError("NotImplemented", "Blob batch is not supported by exastor.")
    if comp == "userdelegationkey":
        raise BlobError("NotImplemented", "User delegation SAS is not supported yet.")
    raise BlobError("UnsupportedHttpVerb" if method not in ("GET", "PUT") else "InvalidQueryParameterValue")


def _container_route(method: str, comp: str | None, restype: str | None) -> Route:
    if comp == "list" and method == "GET":
        return Route(listing.list_blobs, "c", "l", anonymous=True)
    if comp == "blobs" and method == "GET":
        return Route(tags.find_blobs, "c", "f")
    if restype != "container":
        raise BlobError("InvalidQueryParameterValue", "restype=container is required for container operations.")
    if comp is None:
        if method == "PUT":
            return Route(container.create, "c", "c")
        if method in ("GET", "HEAD"):
            return Route(container.get_properties, "c", "r", anonymous=True)
        if method == "DELETE":
            return Route(container.delete, "c", "d")
    if comp == "metadata":
        if method == "PUT":
            return Route(container.set_metadata, "c", "w")
        if method in ("GET", "HEAD"):
            return Route(container.get_properties, "c", "r", anonymous=True)
    if comp == "acl":
        if method == "PUT":
            return Route(container.set_acl, "c", "w")
        if method in ("GET", "HEAD"):
            return Route(container.get_acl, "c", "r")
    if comp == "lease" and method == "PUT":
        return Route(lease.container_lease, "c", "w")
    if comp == "batch":
        raise BlobError("NotImplemented", "Blob batch is not supported by exastor.")
    raise BlobError("UnsupportedHttpVerb" if comp is None else "InvalidQueryParameterValue")


def _blob_route(method: str, comp: str | None, q: dict[str, str], h: dict[str, str]) -> Route:
    if comp in ("page", "pagelist", "incrementalcopy") or h.get("x-ms-blob-type", "").lower() == "pageblob":
        raise BlobError("PageBlobNotSupported")
    has_copy = "x-ms-copy-source" in h
    if method == "PUT":
        table: dict[str | None, Route] = {
            "block": Route(block.put_block_from_url if has_copy else block.put_block, "o", "wa"),
            "blocklist": Route(block.put_block_list, "o", "w"),
            "appendblock": Route(append.append_block_from_url if has_copy else append.append_block, "o", "aw"),
            "seal": Route(append.seal, "o", "w"),
            "metadata": Route(get.set_metadata, "o", "w"),
            "properties": Route(get.set_properties, "o", "w"),
            "lease": Route(lease.blob_lease, "o", "w"),
            "snapshot": Route(get.snapshot, "o", "cw"),
            "tags": Route(tags.set_tags, "o", "t"),
            "tier": Route(get.set_tier, "o", "w"),
            "undelete": Route(get.undelete, "o", "w"),
            "copy": Route(copy.abort_copy, "o", "w"),
            "expiry": Route(get.not_supported, "o", "w"),
            "immutabilityPolicies": Route(get.not_supported, "o", "w"),
            "legalhold": Route(get.not_supported, "o", "w"),
        }
        if comp in table:
            return table[comp]
        if comp is not None:
            raise BlobError("InvalidQueryParameterValue")
        if has_copy:
            if "x-ms-blob-type" in h:
                return Route(put.put_blob_from_url, "o", "cw")
            return Route(copy.copy_blob, "o", "cw")
        return Route(put.put_blob, "o", "cw")
    if method in ("GET", "HEAD"):
        if comp == "blocklist":
            return Route(block.get_block_list, "o", "r", anonymous=True)
        if comp == "metadata":
            return Route(partial(get.get_blob, head=True), "o", "r", anonymous=True)
        if comp == "tags":
            return Route(tags.get_tags, "o", "t")
        if comp is None or comp == "properties":
            return Route(partial(get.get_blob, head=method == "HEAD"), "o", "r", anonymous=True)
        raise BlobError("InvalidQueryParameterValue")
    if method == "DELETE" and comp is None:
        return Route(get.delete_blob, "o", "d")
    raise BlobError("UnsupportedHttpVerb")
