"""Which S3 operation a request is: method + bucket/key presence + sub-resource query."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from exastor.s3 import bucket, cors, delete, get, multipart, objectlock, post, put, tagging
from exastor.s3 import list as listing
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error

Handler = Callable[[S3Call], Awaitable[None]]

# Sub-resources S3 has that we do not implement: answer NotImplemented rather than guess.
_UNSUPPORTED_BUCKET = ("website", "logging", "notification", "replication",
                       "accelerate", "requestPayment", "analytics", "metrics", "inventory",
                       "ownershipControls", "publicAccessBlock", "intelligent-tiering")
_UNSUPPORTED_OBJECT = ("restore", "select", "torrent", "attributes")
_STORED = ("policy", "cors", "lifecycle", "encryption")


def route(method: str, bucket_name: str | None, key: str | None, q: dict[str, str], has_copy_source: bool) -> Handler:
    if method == "OPTIONS" and bucket_name is not None:
        return cors.preflight
    if bucket_name is None:
        if method == "GET":
            return bucket.list_buckets
        raise S3Error("MethodNotAllowed")
    if key is None:
        return _bucket_route(method, q)
    return _object_route(method, q, has_copy_source)


def _bucket_route(method: str, q: dict[str, str]) -> Handler:
    for name in _UNSUPPORTED_BUCKET:
        if name in q:
            raise S3Error("NotImplemented")
    if "object-lock" in q:
        if method == "PUT":
            return objectlock.put_configuration
        if method == "GET":
            return objectlock.get_configuration
        raise S3Error("MethodNotAllowed")
    for name in _STORED:
        if name in q:
            if method == "GET":
                return partial(bucket.get_stored, name=name)
            if method == "PUT":
                return partial(bucket.put_stored, name=name)
            if method == "DELETE":
                return partial(bucket.delete_stored, name=name)
            raise S3Error("MethodNotAllowed")
    if method == "GET":
        if "location" in q:
            return bucket.get_location
        if "versioning" in q:
            return bucket.get_versioning
        if "tagging" in q:
            return bucket.get_tagging
        if "acl" in q:
            return bucket.get_acl
        if "versions" in q:
            return listing.list_object_versions
        if "uploads" in q:
            return multipart.list_uploads
        if q.get("list-type") == "2":
            return listing.list_objects_v2
        return listing.list_objects_v1
    if method == "PUT":
        if "versioning" in q:
            return bucket.put_versioning
        if "tagging" in q:
            return bucket.put_tagging
        if "acl" in q:
            return bucket.put_acl
        return bucket.create_bucket
    if method == "HEAD":
        return bucket.head_bucket
    if method == "DELETE":
        if "tagging" in q:
            return bucket.delete_tagging
        return bucket.delete_bucket
    if method == "POST":
        if "delete" in q:
            return delete.delete_objects
        return post.post_object
    raise S3Error("MethodNotAllowed")


def _object_route(method: str, q: dict[str, str], has_copy_source: bool) -> Handler:
    for name in _UNSUPPORTED_OBJECT:
        if name in q:
            raise S3Error("NotImplemented")
    for name, getter, putter in (("retention", objectlock.get_retention, objectlock.put_retention),
                                 ("legal-hold", objectlock.get_legal_hold, objectlock.put_legal_hold)):
        if name in q:
            if method == "GET":
                return getter
            if method == "PUT":
                return putter
            raise S3Error("MethodNotAllowed")
    if method in ("GET", "HEAD"):
        if "uploadId" in q and method == "GET":
            return multipart.list_parts
        if "tagging" in q and method == "GET":
            return tagging.get_object_tagging
        if "acl" in q and method == "GET":
            return tagging.get_object_acl
        return partial(get.get_object, head=method == "HEAD")
    if method == "PUT":
        if "tagging" in q:
            return tagging.put_object_tagging
        if "acl" in q:
            return tagging.put_object_acl
        if "uploadId" in q or "partNumber" in q:
            if "uploadId" not in q or "partNumber" not in q:
                raise S3Error("InvalidRequest", "uploadId and partNumber go together")
            return multipart.upload_part
        if has_copy_source:
            return put.copy_object
        return put.put_object
    if method == "DELETE":
        if "uploadId" in q:
            return multipart.abort_upload
        if "tagging" in q:
            return tagging.delete_object_tagging
        return delete.delete_object
    if method == "POST":
        if "uploads" in q:
            return multipart.create_upload
        if "uploadId" in q:
            return multipart.complete_upload
        raise S3Error("NotImplemented")
    raise S3Error("MethodNotAllowed")
