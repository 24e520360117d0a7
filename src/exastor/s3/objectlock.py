"""S3 Object Lock: per-bucket default retention, per-version retention and legal hold,
and the rule that a protected version cannot be deleted.

A bucket created with ``x-amz-bucket-object-lock-enabled: true`` has
``attrs["object_lock"] = {"enabled": True, "rule": {"mode", "days"|"years"}?}``
and versioning that cannot be suspended. A version's lock lives in its attrs:
``retention = {"mode", "until"}`` (until: ISO 8601 UTC) and ``legal_hold = "ON"|"OFF"``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from exastor.meta.records import Bucket, ObjectVersion
from exastor.namespace.operations import WRITE
from exastor.s3.common import S3Call
from exastor.s3.errors import S3Error
from exastor.s3.xml import doc, el, parse, text

MODES = ("GOVERNANCE", "COMPLIANCE")


def enabled(bucket: Bucket | None) -> bool:
    return bool(bucket and (bucket.attrs.get("object_lock") or {}).get("enabled"))


def parse_date(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise S3Error("InvalidArgument", "The retain until date must be an ISO 8601 date") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def format_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _bypass(call: S3Call) -> bool:
    return call.h.get("x-amz-bypass-governance-retention", "").lower() == "true"


def _require_lock(call: S3Call) -> Bucket:
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    if not enabled(bucket):
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    return bucket


# --- bucket configuration ---------------------------------------------------------

async def put_configuration(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    root = parse(await call.read_xml_body())
    if root.tag != "ObjectLockConfiguration" or text(root, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    if not enabled(bucket):
        # S3 enables Object Lock on an existing bucket once its versioning is Enabled (since 2023).
        _versioning_enabled(bucket)
    config: dict[str, Any] = {"enabled": True}
    retention = root.find("Rule/DefaultRetention")
    if retention is not None:
        mode, days, years = text(retention, "Mode"), text(retention, "Days"), text(retention, "Years")
        if mode not in MODES or (days is None) == (years is None):
            raise S3Error("MalformedXML")
        try:
            amount = int(days if days is not None else years or "")
        except ValueError as exc:
            raise S3Error("MalformedXML") from exc
        if amount <= 0:
            raise S3Error("InvalidRetentionPeriod", "Default retention period must be a positive integer value",
                          status=400)
        config["rule"] = {"mode": mode, "days" if days is not None else "years": amount}
    await call.ns.update_bucket_attrs(call.grant, call.bucket or "", {"object_lock": config},
                                      check=_versioning_enabled)
    await call.reply(200)


def _versioning_enabled(bucket: Bucket) -> None:
    """Object Lock protects versions: a bucket whose versioning is not Enabled cannot have it (checked
    again in the transaction that enables it, so a concurrent suspension cannot slip between)."""
    if bucket.versioning != "Enabled":
        raise S3Error("InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                      "configuration")


async def get_configuration(call: S3Call) -> None:
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    if not enabled(bucket):
        raise S3Error("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this "
                      "bucket", status=404)
    config = bucket.attrs["object_lock"]
    inner = el("ObjectLockEnabled", "Enabled")
    rule = config.get("rule")
    if rule:
        period = el("Days", rule["days"]) if "days" in rule else el("Years", rule["years"])
        inner += f"<Rule><DefaultRetention>{el('Mode', rule['mode'])}{period}</DefaultRetention></Rule>"
    await call.reply_xml("ObjectLockConfiguration", inner)


# --- per-object settings ----------------------------------------------------------

def attrs_for_new_object(call: S3Call, bucket: Bucket | None) -> dict[str, Any]:
    """Lock attributes for a version being written: from the request's headers, else the
    bucket's default retention."""
    h = call.h
    mode = h.get("x-amz-object-lock-mode")
    until = h.get("x-amz-object-lock-retain-until-date")
    hold = h.get("x-amz-object-lock-legal-hold")
    if (mode or until or hold) and not enabled(bucket):
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration")
    out: dict[str, Any] = {}
    if (mode is None) != (until is None):
        raise S3Error("InvalidArgument", "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must "
                      "both be supplied")
    if mode is not None and until is not None:
        if mode not in MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.")
        when = parse_date(until)
        if when <= datetime.now(UTC):
            raise S3Error("InvalidArgument", "The retain until date must be in the future!")
        out["retention"] = {"mode": mode, "until": format_date(when)}
    elif enabled(bucket):
        rule = (bucket.attrs["object_lock"] if bucket else {}).get("rule")
        if rule:
            days = rule.get("days") or 365 * rule.get("years", 0)
            out["retention"] = {"mode": rule["mode"], "until": format_date(datetime.now(UTC) + timedelta(days=days))}
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise S3Error("InvalidArgument", "Legal hold status must be ON or OFF")
        out["legal_hold"] = hold
    return out


def object_headers(obj: ObjectVersion) -> list[tuple[str, str]]:
    out = []
    retention = obj.attrs.get("retention")
    if retention:
        out += [("x-amz-object-lock-mode", retention["mode"]),
                ("x-amz-object-lock-retain-until-date", retention["until"])]
    if obj.attrs.get("legal_hold"):
        out.append(("x-amz-object-lock-legal-hold", obj.attrs["legal_hold"]))
    return out


def _version_header(obj: ObjectVersion) -> list[tuple[str, str]]:
    return [("x-amz-version-id", obj.version_id)] if obj.version_id != "null" else []


async def put_retention(call: S3Call) -> None:
    _require_lock(call)
    root = parse(await call.read_xml_body())
    mode, until = text(root, "Mode"), text(root, "RetainUntilDate")
    if root.tag != "Retention" or mode not in MODES or until is None:
        raise S3Error("MalformedXML")
    when = parse_date(until)
    obj = call.ns.get_object(call.grant, call.bucket or "", call.key or "", call.q.get("versionId"), access=WRITE)
    current = obj.attrs.get("retention")
    if current and parse_date(current["until"]) > datetime.now(UTC):
        shorter = when < parse_date(current["until"])
        changed = mode != current["mode"]
        if current["mode"] == "COMPLIANCE" and (shorter or changed):
            raise S3Error("AccessDenied", "Compliance-mode retention cannot be shortened or changed")
        if current["mode"] == "GOVERNANCE" and (shorter or changed) and not _bypass(call):
            raise S3Error("AccessDenied", "Governance-mode retention can only be reduced with "
                          "x-amz-bypass-governance-retention")
    updated = await call.ns.update_object_attrs(call.grant, call.bucket or "", call.key or "", obj.version_id,
                                                {"retention": {"mode": mode, "until": format_date(when)}})
    await call.reply(200, b"", _version_header(updated))


async def get_retention(call: S3Call) -> None:
    _require_lock(call)
    obj = call.ns.get_object(call.grant, call.bucket or "", call.key or "", call.q.get("versionId"))
    retention = obj.attrs.get("retention")
    if not retention:
        raise S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock "
                      "configuration", status=404)
    await call.reply(200, doc("Retention", el("Mode", retention["mode"]) + el("RetainUntilDate", retention["until"])),
                     _version_header(obj))


async def put_legal_hold(call: S3Call) -> None:
    _require_lock(call)
    root = parse(await call.read_xml_body())
    status = text(root, "Status")
    if root.tag != "LegalHold" or status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    updated = await call.ns.update_object_attrs(call.grant, call.bucket or "", call.key or "",
                                                call.q.get("versionId"), {"legal_hold": status})
    await call.reply(200, b"", _version_header(updated))


async def get_legal_hold(call: S3Call) -> None:
    _require_lock(call)
    obj = call.ns.get_object(call.grant, call.bucket or "", call.key or "", call.q.get("versionId"))
    status = obj.attrs.get("legal_hold")
    if status is None:
        raise S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock "
                      "configuration", status=404)
    await call.reply(200, doc("LegalHold", el("Status", status)), _version_header(obj))


def deletion_check(call: S3Call, bypass: bool | None = None):  # noqa: ANN201 - a namespace Check
    """A check, run inside the delete transaction, that refuses to remove a protected version."""
    allow_governance = _bypass(call) if bypass is None else bypass

    def check(victim: ObjectVersion | None) -> None:
        if victim is None or victim.delete_marker:
            return
        if victim.attrs.get("legal_hold") == "ON":
            raise S3Error("AccessDenied", "The object is under legal hold")
        retention = victim.attrs.get("retention")
        if retention and parse_date(retention["until"]) > datetime.now(UTC):
            if retention["mode"] == "COMPLIANCE" or not allow_governance:
                raise S3Error("AccessDenied", "The object is protected by Object Lock retention")

    return check
