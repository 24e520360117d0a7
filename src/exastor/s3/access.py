"""Object Ownership, Block Public Access and the bucket policy's public status.

The settings are stored in the bucket's attrs (``ownership``, ``public_access_block``); what they
mean for each request is decided by the authorizer (auth/authorizer.py): ACLs grant nothing under
BucketOwnerEnforced, grants to everyone count for nothing under IgnorePublicAcls, a public policy
serves only the owner under RestrictPublicBuckets, and a public ACL or policy is refused under
BlockPublicAcls / BlockPublicPolicy. This module stores them and answers the requests that read
them; ``new_object_owner`` says who owns what a request writes.
"""

from __future__ import annotations

from typing import Any

from exastor.auth import policy as policies
from exastor.auth.acl import Acl, default_acl
from exastor.auth.authorizer import ENFORCED
from exastor.meta.records import Bucket
from exastor.s3.acl import acl_of
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, parse, text

OWNERSHIPS = (ENFORCED, "BucketOwnerPreferred", "ObjectWriter")
BLOCK_SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"


def ownership_of(bucket: Bucket | None) -> str | None:
    return bucket.attrs.get("ownership") if bucket else None


def check_ownership(value: str) -> str:
    if value not in OWNERSHIPS:
        raise S3Error("InvalidArgument", "Invalid ObjectOwnership value", ArgumentName="ObjectOwnership",
                      ArgumentValue=value)
    return value


def acls_disabled(bucket: Bucket | None) -> bool:
    return ownership_of(bucket) == ENFORCED


def refuse_acl_if_disabled(call: S3Call, bucket: Bucket | None, *, for_object: bool) -> None:
    """Under BucketOwnerEnforced a request may carry no ACL but bucket-owner-full-control (S3's
    AccessControlListNotSupported otherwise)."""
    if not acls_disabled(bucket):
        return
    canned = call.h.get("x-amz-acl")
    grants = [k for k in call.h if k.startswith("x-amz-grant-")]
    if grants or (canned is not None and not (for_object and canned.strip() == BUCKET_OWNER_FULL_CONTROL)):
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", status=400)


def new_object_owner(call: S3Call, bucket: Bucket | None, canned: str | None) -> str | None:
    """Who owns an object a request writes: the writer, or the bucket owner under BucketOwnerEnforced
    (always) and BucketOwnerPreferred (when the writer gives it bucket-owner-full-control). An
    anonymous writer's object is the bucket owner's. None: the namespace's default (the writer)."""
    setting = ownership_of(bucket)
    if bucket is None:
        return None
    if setting == ENFORCED or call.principal is None:
        return bucket.owner
    if setting == "BucketOwnerPreferred" and (canned or "").strip() == BUCKET_OWNER_FULL_CONTROL:
        return bucket.owner
    return None


def effective_acl(attrs: dict[str, Any], owner: str, bucket: Bucket | None) -> Acl:
    """The ACL GetBucketAcl/GetObjectAcl show: the bucket owner's full control when ACLs are disabled."""
    if acls_disabled(bucket) and bucket is not None:
        return default_acl(bucket.owner)
    return acl_of(attrs, owner)


# --- Object Ownership ------------------------------------------------------------------------------

def _ownership_xml(value: str) -> bytes:
    return doc("OwnershipControls", f"<Rule>{el('ObjectOwnership', value)}</Rule>")


async def get_ownership(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    value = ownership_of(bucket)
    if value is None:
        raise S3Error("OwnershipControlsNotFoundError", "The bucket ownership controls were not found", status=404,
                      BucketName=call.bucket or "")
    await call.reply(200, _ownership_xml(value))


async def put_ownership(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    rules = root.findall("Rule")
    if root.tag != "OwnershipControls" or len(rules) != 1 or text(rules[0], "ObjectOwnership") is None:
        raise S3Error("MalformedXML")
    value = check_ownership(text(rules[0], "ObjectOwnership") or "")
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    if value == ENFORCED:
        _refuse_granting_acl(bucket)
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"ownership": value},
                                      check=_refuse_granting_acl if value == ENFORCED else None)
    await call.reply(200)


def _refuse_granting_acl(bucket: Bucket) -> None:
    """BucketOwnerEnforced only on a bucket whose ACL grants nothing to anyone but its owner."""
    acl = bucket.attrs.get("acl")
    if acl and any(not (kind == "user" and value == bucket.owner) for kind, value, _ in acl["grants"]):
        raise S3Error("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with ObjectOwnership's "
                      "BucketOwnerEnforced setting", status=400)


async def delete_ownership(call: S3Call) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"ownership": None})
    await call.reply(204)


# --- Block Public Access -------------------------------------------------------------------------

async def get_public_access_block(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    block = bucket.attrs.get("public_access_block")
    if block is None:
        raise S3Error("NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not "
                      "found", status=404, BucketName=call.bucket or "")
    inner = "".join(el(name, str(bool(block.get(name))).lower()) for name in BLOCK_SETTINGS)
    await call.reply(200, doc("PublicAccessBlockConfiguration", inner))


async def put_public_access_block(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    if root.tag != "PublicAccessBlockConfiguration":
        raise S3Error("MalformedXML")
    block: dict[str, bool] = {}
    for name in BLOCK_SETTINGS:
        raw = (text(root, name) or "false").strip().lower()
        if raw not in ("true", "false"):
            raise S3Error("MalformedXML")
        block[name] = raw == "true"
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"public_access_block": block})
    await call.reply(200)


async def delete_public_access_block(call: S3Call) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"public_access_block": None})
    await call.reply(204)


# --- policy status -------------------------------------------------------------------------------

async def get_policy_status(call: S3Call) -> None:
    """Whether the bucket *policy* makes the bucket public (S3 answers NoSuchBucketPolicy without one;
    public ACLs are not its concern)."""
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    stored = bucket.attrs.get("policy")
    if not stored:
        raise S3Error("NoSuchBucketPolicy", BucketName=call.bucket or "")
    public = policies.is_public(policies.parsed(stored))
    await call.reply(200, doc("PolicyStatus", el("IsPublic", str(public).lower())))
