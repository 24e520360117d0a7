"""Lease Blob and Lease Container: acquire, renew, change, release, break.

Each action reads and writes the lease row in one metadata transaction, so two clients racing
to acquire cannot both win.
"""

from __future__ import annotations

from exastor.blob.common import BlobCall, http_date, lease_guid, run_check, write_conditions
from exastor.blob.container import _check_dates, dates_condition
from exastor.blob.errors import BlobError
from exastor.meta.blob import LEASE_ACTIONS
from exastor.namespace.operations import WRITE


def _duration(call: BlobCall) -> int:
    raw = call.h.get("x-ms-lease-duration")
    if raw is None:
        raise BlobError("MissingRequiredHeader", "x-ms-lease-duration is required to acquire a lease.")
    try:
        d = int(raw)
    except ValueError as exc:
        raise BlobError("InvalidHeaderValue") from exc
    if d != -1 and not 15 <= d <= 60:
        raise BlobError("InvalidHeaderValue", "Lease duration must be -1 or 15-60 seconds.")
    return d


async def _lease(call: BlobCall, key: str) -> None:
    action = (call.h.get("x-ms-lease-action") or "").lower()
    given = lease_guid(call.h.get("x-ms-lease-id"), "x-ms-lease-id")
    proposed = lease_guid(call.h.get("x-ms-proposed-lease-id"), "x-ms-proposed-lease-id")
    duration = _duration(call) if action == "acquire" else 0
    period_raw = call.h.get("x-ms-lease-break-period")
    period = None
    if period_raw is not None:
        try:
            period = int(period_raw)
        except ValueError as exc:
            raise BlobError("InvalidHeaderValue") from exc
        if not 0 <= period <= 60:
            raise BlobError("InvalidHeaderValue", "Break period must be 0-60 seconds.")
    if action in ("renew", "change", "release") and not given:
        raise BlobError("MissingRequiredHeader", "x-ms-lease-id is required.")
    if action == "change" and not proposed:
        raise BlobError("MissingRequiredHeader", "x-ms-proposed-lease-id is required.")
    if action not in LEASE_ACTIONS:
        raise BlobError("InvalidHeaderValue", "x-ms-lease-action must be acquire, renew, change, release or break.")
    bucket, is_container = call.container_name, key == ""

    # The conditions are checked against the container/blob as the lease's transaction sees it.
    condition = dates_condition(call) if is_container else write_conditions(call)
    if is_container:
        _check_dates(call, call.ns.bucket(call.grant, bucket))
    else:
        run_check(call, call.ns.get_object(call.grant, bucket, key, access=WRITE))
    done = await call.blobs.change_lease(call.grant, bucket, key, action, lease_id=given, proposed_id=proposed,
                                         duration=duration, break_period=period, condition=condition)
    status = 201 if action == "acquire" else 202 if action == "break" else 200
    headers: list[tuple[str, str]] = []
    if done.lease_id is not None:
        headers.append(("x-ms-lease-id", done.lease_id))
    if done.break_seconds is not None:
        headers.append(("x-ms-lease-time", str(done.break_seconds)))
    if is_container:
        b = call.ns.bucket(call.grant, bucket)
        from exastor.blob.service import container_etag
        headers += [("etag", container_etag(b.attrs, b.created_ns)),
                    ("last-modified", http_date(b.attrs.get("blob_mtime_ns", b.created_ns)))]
    else:
        obj = call.ns.get_object(call.grant, bucket, key, access=WRITE)
        headers += [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime_ns))]
    await call.reply(status, b"", headers)


async def blob_lease(call: BlobCall) -> None:
    await _lease(call, call.blob_name)


async def container_lease(call: BlobCall) -> None:
    await _lease(call, "")
