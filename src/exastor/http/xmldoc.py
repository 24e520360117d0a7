"""Parsing small request XML documents, shared by both front-ends (each maps the error)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

# No S3 or Blob request document nests deeper than a handful of levels (a lifecycle rule's
# <Rule><Filter><And><Tag><Key> is the deepest, at 6). Deeper is refused: serialising such a tree again
# (Blob service properties are merged and written back) recurses once per level.
MAX_DEPTH = 32


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
    stack = [(root, 1)]
    while stack:  # every element once, iteratively: no recursion however deep the document
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedXml(f"elements nested deeper than {MAX_DEPTH} levels")
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
        stack.extend((child, depth + 1) for child in node)
    return root


def text(node: ET.Element | None, path: str, default: str | None = None) -> str | None:
    if node is None:
        return default
    child = node.find(path)
    return child.text if child is not None and child.text is not None else default
