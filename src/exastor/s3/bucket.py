"""Bucket operations: list, create, delete, head, location, versioning, tagging,
and the bucket sub-resources we store verbatim (policy, CORS, lifecycle, ACL)."""

from __future__ import annotations

from exastor import errors
from exastor.s3 import cors, lifecycle, policy
from exastor.s3.acl import acl_from_headers, acl_from_xml, acl_of, acl_xml
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, iso8601, owner_xml, parse, parse_tagging, tagging_xml, text


async def list_buckets(call: S3Call) -> None:
    if call.principal is None:  # an anonymous caller owns nothing
        await call.reply_xml("ListAllMyBucketsResult", f"{owner_xml('anonymous')}<Buckets></Buckets>")
        return
    buckets = call.ns.list_buckets(call.grant, call.q.get("prefix", ""))
    items = "".join(f"<Bucket>{el('Name', b.name)}{el('CreationDate', iso8601(b.created_ns))}"
                    f"{el('BucketRegion', b.region)}</Bucket>" for b in buckets)
    await call.reply_xml("ListAllMyBucketsResult", f"{owner_xml(call.principal)}<Buckets>{items}</Buckets>")


async def create_bucket(call: S3Call) -> None:
    if call.principal is None:
        raise S3Error("AccessDenied")  # anonymous callers cannot own buckets
    assert call.bucket
    body = await call.read_xml_body()
    region = None
    if body.strip():
        root = parse(body)
        region = text(root, "LocationConstraint")
    if region and region != call.ns.region:
        raise S3Error("InvalidLocationConstraint", "The specified location-constraint is not valid", status=400)
    attrs: dict = {}
    lock = call.h.get("x-amz-bucket-object-lock-enabled", "").lower() == "true"
    if lock:
        attrs["object_lock"] = {"enabled": True}
    acl = acl_from_headers(call.h, call.principal, None, call.ns.user_exists)
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
    await call.ns.delete_bucket(call.grant, call.bucket)
    await call.reply(204)


async def head_bucket(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    await call.reply(200, headers=[("x-amz-bucket-region", bucket.region)], head=True)


async def get_location(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    region = "" if bucket.region == "us-east-1" else bucket.region
    await call.reply(200, doc("LocationConstraint", region.replace("&", "&amp;")))


async def get_versioning(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    inner = el("Status", bucket.versioning) if bucket.versioning else ""
    await call.reply_xml("VersioningConfiguration", inner)


async def put_versioning(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    status = text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("IllegalVersioningConfigurationException")
    if text(root, "MfaDelete") == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported")
    bucket = call.ns.bucket(call.grant, call.bucket)
    if status == "Suspended" and (bucket.attrs.get("object_lock") or {}).get("enabled"):
        raise S3Error("InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                      "versioning state cannot be changed.")
    await call.ns.set_versioning(call.grant, call.bucket, status)
    await call.reply(200)


async def get_tagging(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    tags = bucket.attrs.get("tags")
    if tags is None:
        raise S3Error("NoSuchTagSet")
    await call.reply(200, tagging_xml(tags))


async def put_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body(), limit=50)
    await call.ns.update_bucket_attrs(call.grant, call.bucket, {"tags": tags})
    await call.reply(204)


async def delete_tagging(call: S3Call) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket, {"tags": None})
    await call.reply(204)


async def get_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    await call.reply(200, acl_xml(acl_of(bucket.attrs, bucket.owner)))


async def put_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    body = await call.read_xml_body()
    acl = acl_from_headers(call.h, bucket.owner, None, call.ns.user_exists)
    if acl is None:
        if not body.strip():
            raise S3Error("MissingSecurityElement", "The request is missing a security element", status=400)
        acl = acl_from_xml(body, bucket.owner, call.ns.user_exists)
    elif body.strip():
        raise S3Error("UnexpectedContent", "This request does not support content", status=400)
    await call.ns.update_bucket_attrs(call.grant, call.bucket, {"acl": acl})
    await call.reply(200)


# Sub-resources stored verbatim: accepted and returned, not yet enforced (documented in compatibility.md).
_STORED = {"policy": ("NoSuchBucketPolicy", "application/json"),
           "cors": ("NoSuchCORSConfiguration", "application/xml"),
           "lifecycle": ("NoSuchLifecycleConfiguration", "application/xml"),
           "encryption": ("ServerSideEncryptionConfigurationNotFoundError", "application/xml")}


_ACTION = {"policy": "BucketPolicy", "cors": "BucketCORS", "lifecycle": "LifecycleConfiguration",
           "encryption": "EncryptionConfiguration"}


async def get_stored(call: S3Call, name: str) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket)
    value = bucket.attrs.get(name)
    missing, ctype = _STORED[name]
    if value is None:
        raise S3Error(missing)
    await call.reply(200, value.encode(), content_type=ctype)


async def put_stored(call: S3Call, name: str) -> None:
    call.ns.bucket(call.grant, call.bucket)
    body = await call.read_xml_body()
    try:
        stored = body.decode()
    except UnicodeDecodeError as exc:  # kept as text: a document that is not UTF-8 is malformed
        raise S3Error("MalformedPolicy" if name == "policy" else "MalformedXML") from exc
    if name == "policy":
        policy.validate(body, call.bucket or "")
    elif name == "lifecycle":
        stored = lifecycle.normalise(body)
    elif name == "cors":
        cors.validate(body)
    else:
        parse(body)
    await call.ns.update_bucket_attrs(call.grant, call.bucket, {name: stored})
    await call.reply(204 if name == "policy" else 200)


async def delete_stored(call: S3Call, name: str) -> None:
    await call.ns.update_bucket_attrs(call.grant, call.bucket, {name: None})
    await call.reply(204)
