"""Set/Get Blob Tags, Find Blobs by Tags, and the x-ms-if-tags condition.

Tags are the same attribute S3's object tagging uses, so a tag set over either API is seen by both.
Expressions follow Azure's rules (``_Parser``): Find Blobs by Tags takes ``"key" op 'value'`` terms
joined by AND plus ``@container``; x-ms-if-tags also takes <>, OR and parentheses.
"""

from __future__ import annotations

from exastor.blob import xml as bx
from exastor.blob.common import BlobCall, blob_check, run_check, validate_tags
from exastor.blob.errors import BlobError
from exastor.blob.service import service_endpoint
from exastor.blob.tagfilter import parse_filter, tags_match, term_holds
from exastor.blob.xml import el, opt
from exastor.meta.blob import Snapshot
from exastor.meta.records import ObjectVersion
from exastor.namespace.operations import WRITE


def _tags_body(tags: dict[str, str]) -> bytes:
    items = "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
    return bx.doc(f"<Tags><TagSet>{items}</TagSet></Tags>")


async def set_tags(call: BlobCall) -> None:
    if "snapshot" in call.q:
        raise BlobError("InvalidOperation")
    obj = call.ns.get_object(call.grant, call.container_name, call.blob_name, access=WRITE)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard(call.blob_name, write=False)
    if_tags = call.h.get("x-ms-if-tags")

    def tags_condition(current: ObjectVersion) -> None:
        if if_tags and not tags_match(if_tags, current.attrs.get("tags") or {}):
            raise BlobError("ConditionNotMet")
    tags_condition(obj)  # early; checked again (with the lease) in the update's transaction
    body = await call.read_small_body()
    tags: dict[str, str] = {}
    if body.strip():
        root = bx.parse(body)
        for tag in root.iter("Tag"):
            key, value = bx.text(tag, "Key"), bx.text(tag, "Value", "")
            if key is None or key in tags:
                raise BlobError("InvalidTag", "Tag keys must be present and unique.", status=400)
            tags[key] = value or ""
    validate_tags(tags)
    await call.ns.update_object_attrs(call.grant, call.container_name, call.blob_name, None, {"tags": tags or None},
                                      check=blob_check(call, tags_condition if if_tags else None, lease="read"))
    await call.reply(204)


async def get_tags(call: BlobCall) -> None:
    obj: ObjectVersion | Snapshot
    if "snapshot" in call.q:
        obj = call.blobs.get_snapshot(call.grant, call.container_name, call.blob_name, call.q["snapshot"])
    else:
        current = call.ns.get_object(call.grant, call.container_name, call.blob_name)
        if call.h.get("x-ms-lease-id"):
            call.lease_guard(call.blob_name, write=False)
        run_check(call, current) if call.h.get("x-ms-if-tags") else None
        obj = current
    await call.reply(200, _tags_body(obj.attrs.get("tags") or {}))


async def find_blobs(call: BlobCall) -> None:
    expr = call.q.get("where")
    if not expr:
        raise BlobError("MissingRequiredQueryParameter", "where is required.")
    terms = parse_filter(expr)
    try:
        max_results = int(call.q.get("maxresults", "5000"))
    except ValueError as exc:
        raise BlobError("InvalidQueryParameterValue") from exc
    marker = call.q.get("marker", "")
    containers = [call.container] if call.container else [b.name for b in call.ns.list_buckets(call.grant)]
    for key, op, want in terms:
        if key == "@container" and op == "=":
            containers = [c for c in containers if c == want]
    found: list[tuple[str, str, dict[str, str]]] = []
    for name in containers:
        call.ns.bucket(call.grant, name)
        after = None
        while True:
            rows = call.ns.list_latest(call.grant, name, after, 1000)
            for o in rows:
                tags = o.attrs.get("tags") or {}
                if tags and all(term_holds(name if k == "@container" else tags.get(k), op, v) for k, op, v in terms):
                    found.append((name, o.key, {k: tags[k] for k, _, _ in terms if k in tags}))
            if len(rows) < 1000:
                break
            after = rows[-1].key
    found.sort()
    found = [f for f in found if not marker or f"{f[0]}/{f[1]}" > marker]
    page, rest = found[:max_results], found[max_results:]
    items = "".join(
        f"<Blob>{el('Name', key)}{el('ContainerName', c)}<Tags><TagSet>"
        + "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
        + "</TagSet></Tags></Blob>" for c, key, tags in page)
    next_marker = f"{page[-1][0]}/{page[-1][1]}" if rest else None
    body = (f'<EnumerationResults ServiceEndpoint="{service_endpoint(call)}">{el("Where", expr)}'
            f"<Blobs>{items}</Blobs>{opt('NextMarker', next_marker)}</EnumerationResults>")
    await call.reply(200, bx.doc(body))
