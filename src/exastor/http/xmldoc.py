"""Parsing small request XML documents, shared by both front-ends (each maps the error)."""

from __future__ import annotations

import xml.etree.ElementTree as ET


class MalformedXml(ValueError):
    """Empty or not well-formed (S3: MalformedXML; Blob: InvalidXmlDocument)."""


def parse(body: bytes) -> ET.Element:
    """The document's root with XML namespaces dropped: clients send both namespaced and bare
    documents, and the element names are what matters."""
    if not body.strip():
        raise MalformedXml("empty document")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # No request document of either protocol has a DTD; refusing one outright keeps entity
        # expansion (billion laughs) and external entities out of the parser altogether.
        raise MalformedXml("a document type declaration is not allowed")
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, LookupError, ValueError) as exc:
        # LookupError: an XML declaration naming an encoding Python does not know (encoding="ebcdic")
        raise MalformedXml(str(exc)) from exc
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return root


def text(node: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if node is None:
        return default
    child = node.find(path)
    return child.text if child is not None and child.text is not None else default
