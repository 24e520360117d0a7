"""Building Blob XML responses (strings with escaping) and parsing request documents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from exastor.blob.errors import BlobError

HEADER = '<?xml version="1.0" encoding="utf-8"?>'


def el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def opt(name: str, value: object | None) -> str:
    """An element, or an empty one when there is no value (how Azure writes absent properties)."""
    return el(name, value) if value not in (None, "") else f"<{name} />"


def doc(inner: str) -> bytes:
    return (HEADER + inner).encode("utf-8")


def parse(body: bytes) -> ET.Element:
    if not body.strip():
        raise BlobError("InvalidXmlDocument")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BlobError("InvalidXmlDocument") from exc
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return root


def text(node: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if node is None:
        return default
    child = node.find(path)
    return child.text if child is not None and child.text is not None else default
