"""Object tagging and object ACLs."""

from __future__ import annotations

from exastor.namespace.store import WRITE
from exastor.s3.acl import acl_from_headers, acl_from_xml, acl_of, acl_xml
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import parse_tagging, tagging_xml


def _version_header(version_id: str) -> list[tuple[str, str]]:
    return [("x-amz-version-id", version_id)] if version_id != "null" else []


async def get_object_tagging(call: S3Call) -> None:
    obj = call.ns.get_object(call.grant, call.bucket, call.key, call.q.get("versionId"))
    await call.reply(200, tagging_xml(obj.attrs.get("tags", {})), _version_header(obj.version_id))


async def put_object_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body())
    call.decision = call.decision.refine(request_tags=tags)  # s3:RequestObjectTag conditions see them
    obj = await call.ns.update_object_attrs(call.grant, call.bucket, call.key, call.q.get("versionId"),
                                            {"tags": tags})
    await call.reply(200, b"", _version_header(obj.version_id))


async def delete_object_tagging(call: S3Call) -> None:
    obj = await call.ns.update_object_attrs(call.grant, call.bucket, call.key, call.q.get("versionId"),
                                            {"tags": None})
    await call.reply(204, b"", _version_header(obj.version_id))


async def get_object_acl(call: S3Call) -> None:
    obj = call.ns.get_object(call.grant, call.bucket, call.key, call.q.get("versionId"))
    await call.reply(200, acl_xml(acl_of(obj.attrs, obj.owner)), _version_header(obj.version_id))


async def put_object_acl(call: S3Call) -> None:
    obj = call.ns.get_object(call.grant, call.bucket, call.key, call.q.get("versionId"), access=WRITE)
    bucket = call.ns.bucket(call.grant, obj.bucket)
    body = await call.read_xml_body()
    acl = acl_from_headers(call.h, obj.owner, bucket.owner if bucket else None, call.ns.user_exists, for_object=True)
    if acl is None:
        if not body.strip():
            raise S3Error("MissingSecurityElement", "The request is missing a security element", status=400)
        acl = acl_from_xml(body, obj.owner, call.ns.user_exists)
    updated = await call.ns.update_object_attrs(call.grant, call.bucket, call.key, obj.version_id,
                                                {"acl": acl})
    await call.reply(200, b"", _version_header(updated.version_id))
