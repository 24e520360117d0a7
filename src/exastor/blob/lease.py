"""Lease Blob and Lease Container: acquire, renew, change, release, break.

Each action reads and writes the lease row in one metadata transaction, so two clients racing
to acquire cannot both win.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from exastor import errors
from exastor.blob.common import BlobCall, http_date, lease_guid, lease_state, run_check, write_conditions
from exastor.blob.container import _check_dates, dates_condition
from exastor.blob.errors import BlobError
from exastor.meta import blob as bm
from exastor.namespace.store import WRITE

NS = 10**9


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


def _expires(now: int, duration: int) -> int | None:
    return None if duration < 0 else now + duration * NS


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
    if action not in ("acquire", "renew", "change", "release", "break"):
        raise BlobError("InvalidHeaderValue", "x-ms-lease-action must be acquire, renew, change, release or break.")
    bucket, is_container = call.container, key == ""

    def same(lease: bm.Lease | None, lid: str | None) -> bool:
        return lease is not None and lid is not None and lease.lease_id.lower() == lid.lower()

    # The conditions are checked against the container/blob as this transaction sees it.
    condition = dates_condition(call) if is_container else write_conditions(call)

    def tx(cur: Any) -> tuple[int, list[tuple[str, str]]]:
        now = time.time_ns()
        current = bm.get_bucket(cur, bucket) if is_container else bm.latest(cur, bucket, key)
        if current is None:
            raise errors.BucketNotFound(bucket) if is_container else errors.ObjectNotFound(key)
        if condition is not None:
            condition(current)
        lease = bm.get_lease(cur, bucket, key)
        state = lease_state(lease, now)
        if action == "acquire":
            if state == "breaking":
                raise BlobError("LeaseIsBreakingAndCannotBeAcquired")
            if state == "leased" and not same(lease, proposed):
                raise BlobError("LeaseAlreadyPresent")
            new = bm.Lease(proposed or str(uuid.uuid4()), duration, _expires(now, duration), "leased", None)
            bm.put_lease(cur, bucket, key, new)
            return 201, [("x-ms-lease-id", new.lease_id)]
        if action == "break":
            if state in ("available", "expired") and lease is None or state == "available":
                raise BlobError("LeaseNotPresentWithLeaseOperation")
            assert lease is not None
            if state in ("broken", "expired"):
                lease.state, lease.break_ns = "breaking", now
                bm.put_lease(cur, bucket, key, lease)
                return 202, [("x-ms-lease-time", "0")]
            remaining = (lease.break_ns or now) - now if state == "breaking" else (
                (lease.expires_ns - now) if lease.expires_ns is not None else None)
            wait = period if period is not None else (remaining if remaining is not None else 0) // NS
            if remaining is not None:
                wait = min(wait, max(remaining // NS, 0))
            lease.state, lease.break_ns = "breaking", now + wait * NS
            bm.put_lease(cur, bucket, key, lease)
            return 202, [("x-ms-lease-time", str(wait))]
        # renew / change / release need the lease id to match
        if lease is None or state == "available":
            raise BlobError("LeaseNotPresentWithLeaseOperation")
        if not same(lease, given) and not (action == "change" and same(lease, proposed)):
            raise BlobError("LeaseIdMismatchWithLeaseOperation")
        if action == "renew":
            if state in ("breaking", "broken"):
                raise BlobError("LeaseIsBrokenAndCannotBeRenewed")
            lease.state, lease.expires_ns = "leased", _expires(now, lease.duration)
            bm.put_lease(cur, bucket, key, lease)
            return 200, [("x-ms-lease-id", lease.lease_id)]
        if action == "change":
            if state == "breaking":
                raise BlobError("LeaseIsBreakingAndCannotBeChanged")
            if state in ("broken", "expired"):
                raise BlobError("LeaseNotPresentWithLeaseOperation")
            lease.lease_id = proposed or lease.lease_id
            bm.put_lease(cur, bucket, key, lease)
            return 200, [("x-ms-lease-id", lease.lease_id)]
        bm.delete_lease(cur, bucket, key)  # release
        return 200, []

    if is_container:
        _check_dates(call, call.ns.bucket(call.grant, bucket))
    else:
        run_check(call, call.ns.get_object(call.grant, bucket, key, access=WRITE))
    status, headers = await call.blobs.change_lease(call.grant, bucket, key, tx)
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
    await _lease(call, call.blob or "")


async def container_lease(call: BlobCall) -> None:
    await _lease(call, "")
