"""Bucket operations: list, create, delete, head, location, versioning, tagging,
and the bucket sub-resources we store verbatim (policy, CORS, lifecycle, ACL)."""

from __future__ import annotations

import json

from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, iso8601, owner_xml, parse, parse_tagging, tagging_xml, text


async def list_buckets(call: S3Call) -> None:
    if call.principal is None:
        raise S3Error("AccessDenied")
    buckets = call.ns.list_buckets(call.principal, call.q.get("prefix", ""))
    items = "".join(f"<Bucket>{el('Name', b.name)}{el('CreationDate', iso8601(b.created_ns))}"
                    f"{el('BucketRegion', b.region)}</Bucket>" for b in buckets)
    await call.reply_xml("ListAllMyBucketsResult", f"{owner_xml(call.principal)}<Buckets>{items}</Buckets>")


async def create_bucket(call: S3Call) -> None:
    assert call.bucket and call.principal
    body = await call.read_xml_body()
    region = None
    if body.strip():
        root = parse(body)
        region = text(root, "LocationConstraint")
    if region and region != call.ns.region:
        raise S3Error("InvalidLocationConstraint", "The specified location-constraint is not valid", status=400)
    await call.ns.create_bucket(call.principal, call.bucket, region=region)
    await call.reply(200, headers=[("location", f"/{call.bucket}")])


async def delete_bucket(call: S3Call) -> None:
    await call.ns.delete_bucket(call.principal, call.bucket)
    await call.reply(204)


async def head_bucket(call: S3Call) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    await call.reply(200, headers=[("x-amz-bucket-region", bucket.region)], head=True)


async def get_location(call: S3Call) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    region = "" if bucket.region == "us-east-1" else bucket.region
    await call.reply(200, doc("LocationConstraint", region.replace("&", "&amp;")))


async def get_versioning(call: S3Call) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    inner = el("Status", bucket.versioning) if bucket.versioning else ""
    await call.reply_xml("VersioningConfiguration", inner)


async def put_versioning(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    status = text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        raise S3Error("IllegalVersioningConfigurationException")
    if text(root, "MfaDelete") == "Enabled":
        raise S3Error("NotImplemented", "MFA delete is not supported")
    await call.ns.set_versioning(call.principal, call.bucket, status)
    await call.reply(200)


async def get_tagging(call: S3Call) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    tags = bucket.attrs.get("tags")
    if tags is None:
        raise S3Error("NoSuchTagSet")
    await call.reply(200, tagging_xml(tags))


async def put_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body(), limit=50)
    await call.ns.update_bucket_attrs(call.principal, call.bucket, {"tags": tags})
    await call.reply(204)


async def delete_tagging(call: S3Call) -> None:
    await call.ns.update_bucket_attrs(call.principal, call.bucket, {"tags": None})
    await call.reply(204)


async def get_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    await call.reply(200, acl_xml(bucket.owner))


def acl_xml(owner: str) -> bytes:
    grant = ('<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
             f"{el('ID', owner)}{el('DisplayName', owner)}</Grantee><Permission>FULL_CONTROL</Permission></Grant>")
    return doc("AccessControlPolicy", f"{owner_xml(owner)}<AccessControlList>{grant}</AccessControlList>")


async def put_acl(call: S3Call) -> None:
    """Only the private canned ACL exists here: access is owner-only until policies arrive."""
    call.ns.bucket(call.principal, call.bucket)
    await call.read_xml_body()
    canned = call.h.get("x-amz-acl", "private")
    if canned != "private":
        raise S3Error("NotImplemented", f"canned ACL {canned!r} is not supported; buckets are private")
    await call.reply(200)


# Sub-resources stored verbatim: accepted and returned, not yet enforced (documented in compatibility.md).
_STORED = {"policy": ("NoSuchBucketPolicy", "application/json"),
           "cors": ("NoSuchCORSConfiguration", "application/xml"),
           "lifecycle": ("NoSuchLifecycleConfiguration", "application/xml")}


async def get_stored(call: S3Call, name: str) -> None:
    bucket = call.ns.bucket(call.principal, call.bucket)
    value = bucket.attrs.get(name)
    missing, ctype = _STORED[name]
    if value is None:
        raise S3Error(missing)
    await call.reply(200, value.encode(), content_type=ctype)


async def put_stored(call: S3Call, name: str) -> None:
    body = await call.read_xml_body()
    if name == "policy":
        try:
            json.loads(body)
        except ValueError as exc:
            raise S3Error("MalformedPolicy", "Policies must be valid JSON", status=400) from exc
    else:
        parse(body)
    await call.ns.update_bucket_attrs(call.principal, call.bucket, {name: body.decode()})
    await call.reply(204 if name == "policy" else 200)


async def delete_stored(call: S3Call, name: str) -> None:
    await call.ns.update_bucket_attrs(call.principal, call.bucket, {name: None})
    await call.reply(204)
