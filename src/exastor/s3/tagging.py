"""Object tagging and object ACLs."""

from __future__ import annotations

from exastor.namespace.operations import WRITE
from exastor.s3 import access
from exastor.s3.acl import acl_xml
from exastor.s3.bucket import request_acl
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import parse_tagging, tagging_xml


def _version_header(version_id: str) -> list[tuple[str, str]]:
    return [("x-amz-version-id", version_id)] if version_id != "null" else []


async def get_object_tagging(call: S3Call) -> None:
    obj = call.ns.get_object(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"))
    await call.reply(200, tagging_xml(obj.attrs.get("tags", {})), _version_header(obj.version_id))


async def put_object_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body())
    call.decision = call.grant.refine(request_tags=tags)  # s3:RequestObjectTag conditions see them
    obj = await call.ns.update_object_attrs(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"),
                                            {"tags": tags})
    await call.reply(200, b"", _version_header(obj.version_id))


async def delete_object_tagging(call: S3Call) -> None:
    obj = await call.ns.update_object_attrs(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"),
                                            {"tags": None})
    await call.reply(204, b"", _version_header(obj.version_id))


async def get_object_acl(call: S3Call) -> None:
    obj = call.ns.get_object(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"))
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    await call.reply(200, acl_xml(access.effective_acl(obj.attrs, obj.owner, bucket)), _version_header(obj.version_id))


async def put_object_acl(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    body = await call.read_xml_body()
    if access.acls_disabled(bucket):
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", status=400)
    # The body completes the decision (WRITE_ACP on the object, and Block Public Access on this ACL);
    # the ACL's owner is the object's, so it is parsed once the object may be read.
    pending = call.grant
    call.decision = pending.refine(acl=_acl_in_request(call, body, bucket))
    obj = call.ns.get_object(call.grant, call.bucket_name, call.object_key, call.q.get("versionId"), access=WRITE)
    acl = request_acl(call, body, obj.owner, bucket.owner, for_object=True)
    updated = await call.ns.update_object_attrs(call.grant, call.bucket_name, call.object_key, obj.version_id,
                                                {"acl": acl})
    await call.reply(200, b"", _version_header(updated.version_id))


def _acl_in_request(call: S3Call, body: bytes, bucket) -> dict:  # noqa: ANN001 - a Bucket
    """The grants the request asks for, owner aside (the owner is checked once the object is read):
    what Block Public Access looks at."""
    return request_acl(call, body, call.principal or bucket.owner, bucket.owner, for_object=True, check_owner=False)
