"""DeleteObject and DeleteObjects (multi-object delete)."""

from __future__ import annotations

from exastor import errors
from exastor.namespace.store import Check
from exastor.s3 import objectlock
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import el, parse, text

MAX_DELETE_KEYS = 1000


def _lock_check(call: S3Call, version_id: str | None, bypass: bool | None = None) -> Check | None:
    """Only removing a version can break Object Lock; a delete marker never does."""
    if version_id is None or not objectlock.enabled(call.ns.bucket(call.grant, call.bucket or "")):
        return None
    return objectlock.deletion_check(call, bypass)


async def delete_object(call: S3Call) -> None:
    version_id = call.q.get("versionId")
    victim, marker = await call.ns.delete_object(call.grant, call.bucket, call.key, version_id,
                                                 check=_lock_check(call, version_id))
    headers: list[tuple[str, str]] = []
    if marker and victim is not None:
        headers += [("x-amz-delete-marker", "true"), ("x-amz-version-id", victim.version_id)]
    elif victim is not None and version_id is not None:
        headers.append(("x-amz-version-id", victim.version_id))
        if victim.delete_marker:
            headers.append(("x-amz-delete-marker", "true"))
    await call.reply(204, b"", headers)


async def delete_objects(call: S3Call) -> None:
    root = parse(await call.read_xml_body())
    if root.tag != "Delete":
        raise S3Error("MalformedXML")
    quiet = (text(root, "Quiet", "false") or "").lower() == "true"
    items = root.findall("Object")
    if not items or len(items) > MAX_DELETE_KEYS:
        raise S3Error("MalformedXML")
    call.ns.bucket(call.grant, call.bucket)  # NoSuchBucket before anything else
    out: list[str] = []
    for item in items:
        key = text(item, "Key")
        version_id = text(item, "VersionId")
        if key is None:
            raise S3Error("MalformedXML")
        try:
            call.decision.extend(key, version_id)  # s3:DeleteObject(Version) for this key, as S3 asks
            victim, marker = await call.ns.delete_object(call.grant, call.bucket, key, version_id,
                                                         check=_lock_check(call, version_id))
        except (errors.StoreError, S3Error) as exc:
            if isinstance(exc, S3Error):
                code, message = exc.code, exc.message
            else:
                code = "AccessDenied" if isinstance(exc, errors.AccessDenied) else "InternalError"
                message = str(exc)
            version = el("VersionId", version_id) if version_id is not None else ""
            out.append(f"<Error>{el('Key', key)}{version}{el('Code', code)}{el('Message', message)}</Error>")
            continue
        if quiet:
            continue
        parts = [el("Key", key)]
        if version_id is not None:
            parts.append(el("VersionId", version_id))
        if marker and victim is not None:
            parts += [el("DeleteMarker", "true"), el("DeleteMarkerVersionId", victim.version_id)]
        elif victim is not None and victim.delete_marker:
            parts += [el("DeleteMarker", "true"), el("DeleteMarkerVersionId", victim.version_id)]
        out.append(f"<Deleted>{''.join(parts)}</Deleted>")
    await call.reply_xml("DeleteResult", "".join(out))
