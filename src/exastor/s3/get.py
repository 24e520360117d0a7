"""GetObject and HeadObject: versions, conditions, ranges, part numbers, response-* overrides."""

from __future__ import annotations

from exastor.http.asgi import header_value_ok
from exastor.http.conditions import evaluate, parse_preconditions
from exastor.http.ranges import RangeNotSatisfiable, content_range, parse_range
from exastor.meta.records import ObjectVersion
from exastor.s3 import checksum, objectlock, sse
from exastor.s3.common import S3Call, mtime, object_headers
from exastor.s3.errors import S3Error

_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def check_read_conditions(call: S3Call, obj: ObjectVersion) -> None:
    pre = parse_preconditions(call.h)
    if not pre.any():
        return
    outcome = evaluate(pre, exists=True, etag=obj.etag, last_modified=mtime(obj), method=call.req.method)
    if outcome == "failed":
        raise S3Error("PreconditionFailed", extra_condition="If-Match")
    if outcome == "not_modified":
        raise S3Error("NotModified", headers={"etag": f'"{obj.etag}"',
                                              "last-modified": dict(object_headers(obj, versioned=False))["last-modified"]})


def part_number(call: S3Call) -> int | None:
    """The partNumber a GET/HEAD asks for (1-10000), or None."""
    raw = call.q.get("partNumber")
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        number = 0
    if not 1 <= number <= 10000:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive.",
                      ArgumentName="partNumber", ArgumentValue=raw)
    if call.h.get("range"):
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
    return number


def _part_range(obj: ObjectVersion, number: int) -> tuple[int, int]:
    """The bytes of part ``number`` (a non-multipart object is one part), or InvalidPartNumber."""
    sizes: list[int] = obj.attrs.get("parts") or [obj.size]
    if number > len(sizes):
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable", status=416,
                      ActualPartCount=str(len(sizes)), PartNumberRequested=str(number))
    start = sum(sizes[: number - 1])
    return start, start + sizes[number - 1] - 1


async def get_object(call: S3Call, *, head: bool = False) -> None:
    version_id = call.q.get("versionId")
    number = part_number(call)
    with_checksum = checksum.checksum_mode(call.h)
    obj = call.ns.get_object(call.grant, call.bucket_name, call.object_key, version_id)
    check_read_conditions(call, obj)
    bucket = call.ns.bucket(call.grant, call.bucket_name)
    headers = object_headers(obj, versioned=bool(bucket and bucket.versioning))
    headers += objectlock.object_headers(obj)
    if "x-amz-server-side-encryption" in call.h:
        raise S3Error("InvalidArgument", "x-amz-server-side-encryption header is not supported for this operation.",
                      ArgumentName="x-amz-server-side-encryption")
    ck = sse.key_for_read(call.h, obj)
    headers += sse.response_headers(obj.attrs)
    for param, header in _OVERRIDES.items():
        if param in call.q:
            if call.principal is None:
                raise S3Error("InvalidRequest", "Request specific response headers cannot be used for anonymous "
                              "GET requests.")
            if not header_value_ok(call.q[param]):
                raise S3Error("InvalidArgument", f"{param} holds a character a header cannot carry",
                              ArgumentName=param)
            headers = [(k, v) for k, v in headers if k != header] + [(header, call.q[param])]
    status, start, end = 200, 0, obj.size - 1
    whole = True  # whether the answer is the whole object (a checksum covers the whole object only)
    parts = obj.attrs.get("parts")
    if number is not None:
        start, end = _part_range(obj, number)
        if parts:
            headers.append(("x-amz-mp-parts-count", str(len(parts))))
            whole = False
        if obj.size > 0:
            status = 206
            headers.append(("content-range", content_range(start, end, obj.size)))
    elif obj.size > 0 or call.h.get("range"):
        try:
            rng = parse_range(call.h.get("range"), obj.size)
        except RangeNotSatisfiable as exc:
            raise S3Error("InvalidRange", headers={"content-range": f"bytes */{obj.size}"},
                          ActualObjectSize=str(obj.size), RangeRequested=call.h.get("range", "")) from exc
        if rng is not None:
            start, end = rng
            status = 206
            whole = start == 0 and end == obj.size - 1
            headers.append(("content-range", content_range(start, end, obj.size)))
    if with_checksum and whole:
        headers += checksum.headers(checksum.record(obj.attrs))
    elif with_checksum and number is not None:  # a part's own, when its upload named an algorithm
        headers += checksum.headers(checksum.part_record(obj.attrs, number))
    length = max(end - start + 1, 0)
    headers.append(("content-length", str(length)))
    if head or length == 0:
        await call.reply(status, b"", headers, content_type=None, head=head)
        return
    pieces = call.ns.read(call.grant, obj, start, end)
    if ck is not None:
        pieces = sse.decrypt_range(pieces, obj, ck.key, start)
    await call.reply_stream(status, headers, pieces)
