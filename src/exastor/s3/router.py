"""Which S3 operation a request is: method + bucket/key presence + sub-resource query.

Each route names the operation (S3's own name); the authorizer decides from that name's row in
exastor.auth.operations before the handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from exastor.s3 import (
    access,
    attributes,
    bucket,
    cors,
    delete,
    get,
    multipart,
    objectlock,
    post,
    put,
    tagging,
)
from exastor.s3 import list as listing
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error

Handler = Callable[[S3Call], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    operation: str
    handler: Handler


# Sub-resources S3 has that we do not implement: answer NotImplemented rather than guess.
_UNSUPPORTED_BUCKET = ("website", "logging", "notification", "replication",
                       "accelerate", "requestPayment", "analytics", "metrics", "inventory",
                       "intelligent-tiering")
_UNSUPPORTED_OBJECT = ("restore", "select", "torrent")
_STORED = ("policy", "cors", "lifecycle", "encryption")
_STORED_NAMES = {"policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
                 "cors": ("GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
                 "lifecycle": ("GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration",
                               "DeleteBucketLifecycle"),
                 "encryption": ("GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption")}


def route(method: str, bucket_name: str | None, key: str | None, q: dict[str, str], has_copy_source: bool) -> Route:
    if method == "OPTIONS" and bucket_name is not None:
        return Route("CorsPreflight", cors.preflight)
    if bucket_name is None:
        if method == "GET":
            return Route("ListBuckets", bucket.list_buckets)
        raise S3Error("MethodNotAllowed")
    if key is None:
        return _bucket_route(method, q)
    return _object_route(method, q, has_copy_source)


def _bucket_route(method: str, q: dict[str, str]) -> Route:
    for name in _UNSUPPORTED_BUCKET:
        if name in q:
            raise S3Error("NotImplemented")
    if "object-lock" in q:
        if method == "PUT":
            return Route("PutObjectLockConfiguration", objectlock.put_configuration)
        if method == "GET":
            return Route("GetObjectLockConfiguration", objectlock.get_configuration)
        raise S3Error("MethodNotAllowed")
    for name, names, handlers in (
            ("ownershipControls", ("GetBucketOwnershipControls", "PutBucketOwnershipControls",
                                   "DeleteBucketOwnershipControls"),
             (access.get_ownership, access.put_ownership, access.delete_ownership)),
            ("publicAccessBlock", ("GetPublicAccessBlock", "PutPublicAccessBlock", "DeletePublicAccessBlock"),
             (access.get_public_access_block, access.put_public_access_block, access.delete_public_access_block))):
        if name in q:
            for verb, op, handler in zip(("GET", "PUT", "DELETE"), names, handlers, strict=True):
                if method == verb:
                    return Route(op, handler)
            raise S3Error("MethodNotAllowed")
    if "policyStatus" in q:
        if method == "GET":
            return Route("GetBucketPolicyStatus", access.get_policy_status)
        raise S3Error("MethodNotAllowed")
    for name in _STORED:
        if name in q:
            get_name, put_name, delete_name = _STORED_NAMES[name]
            if method == "GET":
                return Route(get_name, partial(bucket.get_stored, name=name))
            if method == "PUT":
                return Route(put_name, partial(bucket.put_stored, name=name))
            if method == "DELETE":
                return Route(delete_name, partial(bucket.delete_stored, name=name))
            raise S3Error("MethodNotAllowed")
    if method == "GET":
        if "location" in q:
            return Route("GetBucketLocation", bucket.get_location)
        if "versioning" in q:
            return Route("GetBucketVersioning", bucket.get_versioning)
        if "tagging" in q:
            return Route("GetBucketTagging", bucket.get_tagging)
        if "acl" in q:
            return Route("GetBucketAcl", bucket.get_acl)
        if "versions" in q:
            return Route("ListObjectVersions", listing.list_object_versions)
        if "uploads" in q:
            return Route("ListMultipartUploads", multipart.list_uploads)
        if q.get("list-type") == "2":
            return Route("ListObjectsV2", listing.list_objects_v2)
        return Route("ListObjects", listing.list_objects_v1)
    if method == "PUT":
        if "versioning" in q:
            return Route("PutBucketVersioning", bucket.put_versioning)
        if "tagging" in q:
            return Route("PutBucketTagging", bucket.put_tagging)
        if "acl" in q:
            return Route("PutBucketAcl", bucket.put_acl)
        return Route("CreateBucket", bucket.create_bucket)
    if method == "HEAD":
        return Route("HeadBucket", bucket.head_bucket)
    if method == "DELETE":
        if "tagging" in q:
            return Route("DeleteBucketTagging", bucket.delete_tagging)
        return Route("DeleteBucket", bucket.delete_bucket)
    if method == "POST":
        if "delete" in q:
            return Route("DeleteObjects", delete.delete_objects)
        return Route("PostObject", post.post_object)
    raise S3Error("MethodNotAllowed")


def _object_route(method: str, q: dict[str, str], has_copy_source: bool) -> Route:
    for name in _UNSUPPORTED_OBJECT:
        if name in q:
            raise S3Error("NotImplemented")
    for name, getter, putter in (
            ("retention", Route("GetObjectRetention", objectlock.get_retention),
             Route("PutObjectRetention", objectlock.put_retention)),
            ("legal-hold", Route("GetObjectLegalHold", objectlock.get_legal_hold),
             Route("PutObjectLegalHold", objectlock.put_legal_hold))):
        if name in q:
            if method == "GET":
                return getter
            if method == "PUT":
                return putter
            raise S3Error("MethodNotAllowed")
    if method in ("GET", "HEAD"):
        if "uploadId" in q and method == "GET":
            return Route("ListParts", multipart.list_parts)
        if "tagging" in q and method == "GET":
            return Route("GetObjectTagging", tagging.get_object_tagging)
        if "acl" in q and method == "GET":
            return Route("GetObjectAcl", tagging.get_object_acl)
        if "attributes" in q and method == "GET":
            return Route("GetObjectAttributes", attributes.get_object_attributes)
        if method == "HEAD":
            return Route("HeadObject", partial(get.get_object, head=True))
        return Route("GetObject", partial(get.get_object, head=False))
    if method == "PUT":
        if "tagging" in q:
            return Route("PutObjectTagging", tagging.put_object_tagging)
        if "acl" in q:
            return Route("PutObjectAcl", tagging.put_object_acl)
        if "uploadId" in q or "partNumber" in q:
            if "uploadId" not in q or "partNumber" not in q:
                raise S3Error("InvalidRequest", "uploadId and partNumber go together")
            if has_copy_source:
                return Route("UploadPartCopy", multipart.upload_part)
            return Route("UploadPart", multipart.upload_part)
        if has_copy_source:
            return Route("CopyObject", put.copy_object)
        return Route("PutObject", put.put_object)
    if method == "DELETE":
        if "uploadId" in q:
            return Route("AbortMultipartUpload", multipart.abort_upload)
        if "tagging" in q:
            return Route("DeleteObjectTagging", tagging.delete_object_tagging)
        return Route("DeleteObject", delete.delete_object)
    if method == "POST":
        if "uploads" in q:
            return Route("CreateMultipartUpload", multipart.create_upload)
        if "uploadId" in q:
            return Route("CompleteMultipartUpload", multipart.complete_upload)
        raise S3Error("NotImplemented")
    raise S3Error("MethodNotAllowed")
