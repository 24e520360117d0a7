"""Building Blob XML responses (strings with escaping) and parsing request documents."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

from exastor.blob.errors import BlobError
from exastor.http import xmldoc

HEADER = '<?xml version="1.0" encoding="utf-8"?>'


def el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def opt(name: str, value: object | None) -> str:
    """An element, or an empty one when there is no value (how Azure writes absent properties)."""
    return el(name, value) if value not in (None, "") else f"<{name} />"


def doc(inner: str) -> bytes:
    return (HEADER + inner).encode("utf-8")


def parse(body: bytes) -> ET.Element:
    try:
        return xmldoc.parse(body)
    except xmldoc.MalformedXml as exc:
        raise BlobError("InvalidXmlDocument") from exc


text = xmldoc.text
