"""Bucket operations: list, create, delete, head, location, versioning, tagging,
and the bucket sub-resources we store verbatim (policy, CORS, lifecycle, ACL)."""

from __future__ import annotations

import base64
import binascii

from exastor import errors
from exastor.auth.authorizer import ENFORCED
from exastor.s3 import access, cors, lifecycle, policy
from exastor.s3.acl import acl_from_headers, acl_from_xml, acl_xml
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, iso8601, owner_xml, parse, parse_tagging, tagging_xml, text

MAX_BUCKETS = 10000  # S3's limit for max-buckets


async def list_buckets(call: S3Call) -> None:
    """ListBuckets, paginated (max-buckets, continuation-token), filtered by prefix and bucket-region."""
    q = call.q
    prefix, region = q.get("prefix", ""), q.get("bucket-region")
    paginated = "max-buckets" in q or "continuation-token" in q
    limit = MAX_BUCKETS
    if "max-buckets" in q:
        try:
            limit = int(q["max-buckets"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_BUCKETS:
            raise S3Error("InvalidArgument", "Invalid Argument: max-buckets must be between 1 and 10000",
                          ArgumentName="max-buckets", ArgumentValue=q["max-buckets"])
    after = None
    if q.get("continuation-token"):
        after = _untoken(q["continuation-token"])
    if call.principal is None:  # an anonymous caller owns nothing
        await call.reply_xml("ListAllMyBucketsResult", f"{owner_xml('anonymous')}<Buckets></Buckets>")
        return
    buckets = [b for b in call.ns.list_buckets(call.grant, prefix)
               if (after is None or b.name > after) and (region is None or b.region == region)]
    page = buckets[:limit] if paginated else buckets
    items = "".join(f"<Bucket>{el('Name', b.name)}{el('CreationDate', iso8601(b.created_ns))}"
                    f"{el('BucketRegion', b.region)}</Bucket>" for b in page)
    tail = ""
    if paginated and len(buckets) > len(page):
        tail += el("ContinuationToken", _token(page[-1].name))
    if "prefix" in q:
        tail += el("Prefix", prefix)
    await call.reply_xml("ListAllMyBucketsResult", f"{owner_xml(call.principal)}<Buckets>{items}</Buckets>{tail}")


def _token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from exc


async def create_bucket(call: S3Call) -> None:
    if call.principal is None:
        raise S3Error("AccessDenied")  # anonymous callers cannot own buckets
    assert call.bucket
    body = await call.read_xml_body()
    region = None
    if body.strip():
        root = parse(body)
        region = text(root, "LocationConstraint")
    # The regions this endpoint serves (`region` and `extra_regions`); us-east-1 is never named.
    if region is not None and (region not in call.regions or region == "us-east-1"):
        raise S3Error("InvalidLocationConstraint", "The specified location-constraint is not valid", status=400,
                      LocationConstraint=region)
    attrs: dict = {}
    lock = call.h.get("x-amz-bucket-object-lock-enabled", "").lower() == "true"
    if lock:
        attrs["object_lock"] = {"enabled": True}
    ownership = call.h.get("x-amz-object-ownership")
    if ownership is not None:
        attrs["ownership"] = access.check_ownership(ownership.strip())
    acl = acl_from_headers(call.h, call.principal, None, call.ns.user_exists, user_by_email=call.ns.user_by_email)
    if ownership is not None and attrs["ownership"] == ENFORCED and acl is not None and \
            any(not (kind == "user" and value == call.principal) for kind, value, _ in acl["grants"]):
        raise S3Error("InvalidBucketAclWithObjectOwnership", "Bucket cannot have ACLs set with ObjectOwnership's "
                      "BucketOwnerEnforced setting", status=400)
    if acl is not None:
        attrs["acl"] = acl
    try:
        await call.ns.create_bucket(call.grant, call.bucket, region=region, attrs=attrs)
    except errors.BucketExists as exc:
        # us-east-1 answers a repeated create by the owner with success and changes nothing.
        if not (exc.info.get("owned_by_caller") and (region or call.ns.region) == "us-east-1"):
            raise
    else:
        if lock:  # object lock needs versions to protect
            await call.ns.set_versioning(call.grant, call.bucket, "Enabled")
    await call.reply(200, headers=[("location", f"/{call.bucket}")])


async def delete_bucket(call: S3Call) -> None:
    await call.ns.delete_bucket(call.grant, call.bucket_name)
    await call.reply(204)


async def head_bucket(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    await call.reply(200, headers=[("x-amz-bucket-region", bucket.region),
                                   ("x-amz-bucket-location-type", "Region"),
                                   ("x-amz-bucket-location-name", bucket.region),
                                   ("x-amz-access-point-alias", "false")], head=True)


async def get_location(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    region = "" if bucket.region == "us-east-1" else bucket.region
    await call.reply(200, doc("LocationConstraint", region.replace("&", "&amp;")))


async def get_versioning(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    inner = el("Status", bucket.versioning) if bucket.versioning else ""
    await call.reply_xml("VersioningConfiguration", inner)


async def put_versioning(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    status = text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("IllegalVersioningConfigurationException")
    if text(root, "MfaDelete") == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported")
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    if status == "Suspended" and (bucket.attrs.get("object_lock") or {}).get("enabled"):
        raise S3Error("InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                      "versioning state cannot be changed.")
    await call.ns.set_versioning(call.grant, call.bucket_name, status)
    await call.reply(200)


async def get_tagging(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    tags = bucket.attrs.get("tags")
    if tags is None:
        raise S3Error("NoSuchTagSet")
    await call.reply(200, tagging_xml(tags))


async def put_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body(), limit=50)
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"tags": tags})
    await call.reply(204)


async def delete_tagging(call: S3Call) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"tags": None})
    await call.reply(204)


async def get_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    await call.reply(200, acl_xml(access.effective_acl(bucket.attrs, bucket.owner, bucket)))


async def put_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    body = await call.read_xml_body()
    if access.acls_disabled(bucket):
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", status=400)
    acl = request_acl(call, body, bucket.owner, None)
    call.decision = call.grant.refine(acl=acl)  # WRITE_ACP, and Block Public Access on this ACL
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {"acl": acl})
    await call.reply(200)


def request_acl(call: S3Call, body: bytes, owner: str, bucket_owner: str | None, *, for_object: bool = False,
                check_owner: bool = True) -> dict:
    """The ACL a PutBucketAcl / PutObjectAcl asks for: its headers, or else its XML body (whose
    Owner must be ``owner`` when ``check_owner``)."""
    acl = acl_from_headers(call.h, owner, bucket_owner, call.ns.user_exists, for_object=for_object,
                           user_by_email=call.ns.user_by_email)
    if acl is None:
        if not body.strip():
            raise S3Error("MissingSecurityElement", "The request is missing a security element", status=400)
        return acl_from_xml(body, owner, call.ns.user_exists, user_by_email=call.ns.user_by_email,
                            check_owner=check_owner)
    if body.strip():
        raise S3Error("UnexpectedContent", "This request does not support content", status=400)
    return acl


# Sub-resources stored verbatim: accepted and returned, not yet enforced (documented in compatibility.md).
_STORED = {"policy": ("NoSuchBucketPolicy", "application/json"),
           "cors": ("NoSuchCORSConfiguration", "application/xml"),
           "lifecycle": ("NoSuchLifecycleConfiguration", "application/xml"),
           "encryption": ("ServerSideEncryptionConfigurationNotFoundError", "application/xml")}


_ACTION = {"policy": "BucketPolicy", "cors": "BucketCORS", "lifecycle": "LifecycleConfiguration",
           "encryption": "EncryptionConfiguration"}


async def get_stored(call: S3Call, name: str) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    value = bucket.attrs.get(name)
    missing, ctype = _STORED[name]
    if value is None:
        raise S3Error(missing)
    await call.reply(200, value.encode(), content_type=ctype)


async def put_stored(call: S3Call, name: str) -> None:
    call.ns.bucket(call.grant, call.bucket_name)
    body = await call.read_xml_body()
    try:
        stored = body.decode()
    except UnicodeDecodeError as exc:  # kept as text: a document that is not UTF-8 is malformed
        raise S3Error("MalformedPolicy" if name == "policy" else "MalformedXML") from exc
    if name == "policy":
        policy.validate(body, call.bucket or "")
        call.decision = call.grant.refine(policy=stored)  # Block Public Access on this policy
    elif name == "lifecycle":
        stored = lifecycle.normalise(body)
    elif name == "cors":
        cors.validate(body)
    else:
        parse(body)
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {name: stored})
    await call.reply(204 if name == "policy" else 200)


async def delete_stored(call: S3Call, name: str) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket_name, {name: None})
    await call.reply(204)
