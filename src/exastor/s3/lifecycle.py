"""Bucket lifecycle configuration: validated as S3 validates it, stored with every rule named.

The configuration is stored (``attrs["lifecycle"]``, the normalised XML) and
returned; rules are not yet executed (docs/compatibility.md).
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET

from exastor.s3.errors import S3Error
from exastor.s3.xml import S3_NS, parse

MAX_RULES = 1000
MAX_ID = 255
_DATE = re.compile(r"\d{4}-\d\d-\d\dT00:00:00(\.0+)?(Z|[+-]00:00)?")


def _positive_int(node: ET.Element, name: str, *, allow_zero: bool = False) -> None:
    child = node.find(name)
    if child is None:
        return
    try:
        value = int(child.text or "")
    except ValueError as exc:
        raise S3Error("MalformedXML") from exc
    if value < 0 or (value == 0 and not allow_zero):
        raise S3Error("InvalidArgument", f"'{name}' in a lifecycle rule must be a positive integer")


def _date(node: ET.Element) -> None:
    child = node.find("Date")
    if child is not None and not _DATE.fullmatch((child.text or "").strip()):
        raise S3Error("MalformedXML")  # S3 wants an ISO 8601 date at midnight UTC


def normalise(body: bytes) -> str:
    """Validate a LifecycleConfiguration; give every rule without an ID a random one."""
    root = parse(body)
    if root.tag != "LifecycleConfiguration":
        raise S3Error("MalformedXML")
    rules = root.findall("Rule")
    if not rules or len(rules) > MAX_RULES:
        raise S3Error("MalformedXML")
    seen: set[str] = set()
    for rule in rules:
        id_node = rule.find("ID")
        if id_node is None:
            id_node = ET.SubElement(rule, "ID")
            id_node.text = secrets.token_hex(24)
        rule_id = id_node.text or ""
        if len(rule_id) > MAX_ID:
            raise S3Error("InvalidArgument", "ID length should not exceed allowed limit of 255")
        if rule_id in seen:
            raise S3Error("InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule")
        seen.add(rule_id)
        status = rule.find("Status")
        if status is None or status.text not in ("Enabled", "Disabled"):
            raise S3Error("MalformedXML")
        if rule.find("Filter") is not None and rule.find("Prefix") is not None:
            raise S3Error("MalformedXML")
        actions = [rule.find(name) for name in ("Expiration", "Transition", "NoncurrentVersionExpiration",
                                                "NoncurrentVersionTransition", "AbortIncompleteMultipartUpload")]
        if all(a is None for a in actions):
            raise S3Error("InvalidRequest", "At least one action needs to be specified in a rule")
        expiration = rule.find("Expiration")
        if expiration is not None:
            _date(expiration)
            _positive_int(expiration, "Days")
            if expiration.find("Days") is not None and expiration.find("Date") is not None:
                raise S3Error("MalformedXML")
        for transition in rule.findall("Transition"):
            _date(transition)
            _positive_int(transition, "Days", allow_zero=True)
        for name, field in (("NoncurrentVersionExpiration", "NoncurrentDays"),
                            ("NoncurrentVersionTransition", "NoncurrentDays"),
                            ("AbortIncompleteMultipartUpload", "DaysAfterInitiation")):
            for node in rule.findall(name):
                _positive_int(node, field)
    root.set("xmlns", S3_NS)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")
