"""Building S3 XML responses and parsing S3 XML requests.

Responses are built as strings with escaping (fast, no tree); requests are
parsed with ElementTree after a size check, namespace-agnostic, and any parse
problem is MalformedXML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from exastor.http import xmldoc
from exastor.s3.errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'


def iso8601(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def doc(root: str, body: Iterable[str] | str) -> bytes:
    inner = body if isinstance(body, str) else "".join(body)
    return f'{HEADER}<{root} xmlns="{S3_NS}">{inner}</{root}>'.encode()


def owner_xml(owner: str, tag: str = "Owner") -> str:
    return f"<{tag}>{el('ID', owner)}{el('DisplayName', owner)}</{tag}>"


def parse(body: bytes) -> ET.Element:
    try:
        return xmldoc.parse(body)
    except xmldoc.MalformedXml as exc:
        raise S3Error("MalformedXML") from exc


text = xmldoc.text


def parse_tagging(body: bytes, *, limit: int = 10) -> dict[str, str]:
    """A <Tagging><TagSet><Tag><Key/><Value/></Tag>... document, validated as S3 does."""
    root = parse(body)
    if root.tag != "Tagging":
        raise S3Error("MalformedXML")
    tags: dict[str, str] = {}
    for tag in root.iter("Tag"):
        key, value = text(tag, "Key"), text(tag, "Value", "")
        if key is None:
            raise S3Error("MalformedXML")
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        if len(key) > 128 or len(value or "") > 256:
            raise S3Error("InvalidTag", "The TagKey or TagValue you have provided is too long")
        tags[key] = value or ""
    if len(tags) > limit:
        raise S3Error("BadRequest" if limit != 10 else "InvalidTag",
                      "Object tags cannot be greater than 10", status=400)
    return tags


def tagging_xml(tags: dict[str, str]) -> bytes:
    items = "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
    return doc("Tagging", f"<TagSet>{items}</TagSet>")
