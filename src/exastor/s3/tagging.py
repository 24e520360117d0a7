"""Object tagging and object ACL (owner-only)."""

from __future__ import annotations

from exastor.s3.bucket import acl_xml
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import parse_tagging, tagging_xml


def _version_header(version_id: str) -> list[tuple[str, str]]:
    return [("x-amz-version-id", version_id)] if version_id != "null" else []


async def get_object_tagging(call: S3Call) -> None:
    obj = call.ns.get_object(call.principal, call.bucket, call.key, call.q.get("versionId"))
    await call.reply(200, tagging_xml(obj.attrs.get("tags", {})), _version_header(obj.version_id))


async def put_object_tagging(call: S3Call) -> None:
    tags = parse_tagging(await call.read_xml_body())
    obj = await call.ns.update_object_attrs(call.principal, call.bucket, call.key, call.q.get("versionId"),
                                            {"tags": tags})
    await call.reply(200, b"", _version_header(obj.version_id))


async def delete_object_tagging(call: S3Call) -> None:
    obj = await call.ns.update_object_attrs(call.principal, call.bucket, call.key, call.q.get("versionId"),
                                            {"tags": None})
    await call.reply(204, b"", _version_header(obj.version_id))


async def get_object_acl(call: S3Call) -> None:
    obj = call.ns.get_object(call.principal, call.bucket, call.key, call.q.get("versionId"))
    await call.reply(200, acl_xml(obj.owner), _version_header(obj.version_id))


async def put_object_acl(call: S3Call) -> None:
    call.ns.get_object(call.principal, call.bucket, call.key, call.q.get("versionId"))
    await call.read_xml_body()
    if call.h.get("x-amz-acl", "private") != "private":
        raise S3Error("NotImplemented", "only the private canned ACL is supported")
    await call.reply(200)
