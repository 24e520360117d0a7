"""Who may do what: the S3 authorizer the namespace consults (bucket policy, then ACLs).

The namespace asks with (principal, bucket, action, object); the policy's
conditions also need the request (headers, query, client address), which is
the current S3 call, kept in a context variable for the request's duration.
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from exastor.meta.records import Bucket, ObjectVersion
from exastor.s3 import policy
from exastor.s3.acl import acl_of, grants_permission

if TYPE_CHECKING:
    from exastor.s3.common import S3Call

current_call: contextvars.ContextVar[S3Call | None] = contextvars.ContextVar("exastor_s3_call", default=None)

# ACL permission each action needs; actions not listed are the owner's alone.
_BUCKET_PERMISSION = {
    "s3:ListBucket": "READ", "s3:ListBucketVersions": "READ", "s3:ListBucketMultipartUploads": "READ",
    "s3:PutObject": "WRITE", "s3:DeleteObject": "WRITE", "s3:DeleteObjectVersion": "WRITE",
    "s3:GetBucketAcl": "READ_ACP", "s3:PutBucketAcl": "WRITE_ACP",
}
_OBJECT_PERMISSION = {
    "s3:GetObject": "READ", "s3:GetObjectVersion": "READ", "s3:GetObjectTagging": "READ",
    "s3:GetObjectAcl": "READ_ACP", "s3:PutObjectAcl": "WRITE_ACP",
}
_HEADER_KEYS = ("x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-metadata-directive",
                "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id",
                "x-amz-storage-class", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
                "x-amz-object-lock-legal-hold")


def _is_object_action(action: str) -> bool:
    return "Object" in action or action in ("s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


def _context(call: S3Call | None, principal: str | None, obj: ObjectVersion | None) -> policy.Context:
    ctx: policy.Context = {"aws:currenttime": [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())],
                           "aws:epochtime": [str(int(time.time()))], "aws:securetransport": ["false"]}
    if principal is not None:
        ctx["aws:username"] = [principal]
        ctx["aws:userid"] = [principal]
    if obj is not None:
        for k, v in (obj.attrs.get("tags") or {}).items():
            ctx[f"s3:existingobjecttag/{k.lower()}"] = [v]
    if call is None:
        return ctx
    h, q = call.h, call.q
    if "referer" in h:
        ctx["aws:referer"] = [h["referer"]]
    client = call.req.scope.get("client")
    if client:
        ctx["aws:sourceip"] = [client[0]]
    for name in ("prefix", "delimiter", "max-keys", "versionId"):
        if name in q:
            ctx[f"s3:{name.lower()}"] = [q[name]]
    for name in _HEADER_KEYS:
        if name in h:
            ctx[f"s3:{name}"] = [h[name]]
    if "x-amz-copy-source" in h:
        ctx["s3:x-amz-copy-source"] = [unquote(h["x-amz-copy-source"]).lstrip("/")]
    tags = getattr(call, "request_tags", None)
    if tags is None and h.get("x-amz-tagging"):
        tags = dict(parse_qsl(h["x-amz-tagging"], keep_blank_values=True))
    if tags is not None:
        for k, v in tags.items():
            ctx[f"s3:requestobjecttag/{k.lower()}"] = [v]
        ctx["s3:requestobjecttagkeys"] = list(tags)
    return ctx


def authorize(principal: str | None, bucket: Bucket, action: str, obj: ObjectVersion | None) -> bool | None:
    """True: allowed; False: denied by the bucket policy; None: nothing grants it."""
    call = current_call.get()
    stored = bucket.attrs.get("policy")
    if stored:
        if _is_object_action(action):
            key = obj.key if obj is not None else (call.key if call is not None and call.key else "")
            arn = f"arn:aws:s3:::{bucket.name}/{key}"
        else:
            arn = f"arn:aws:s3:::{bucket.name}"
        verdict = policy.evaluate(policy.parsed(stored), principal, action, arn, _context(call, principal, obj))
        if verdict == policy.DENY:
            return False
        if verdict == policy.ALLOW:
            return True
    if obj is not None and action in _OBJECT_PERMISSION:
        acl = acl_of(obj.attrs, obj.owner)
        return True if grants_permission(acl, principal, _OBJECT_PERMISSION[action]) else None
    if obj is not None:
        return True if principal is not None and principal == obj.owner else None
    permission = _BUCKET_PERMISSION.get(action)
    if permission is not None:
        acl = acl_of(bucket.attrs, bucket.owner)
        return True if grants_permission(acl, principal, permission) else None
    return True if principal is not None and principal == bucket.owner else None
