"""uvicorn's httptools protocol, keeping the original case of x-ms-meta-* header names.

ASGI servers lower-case header names, but Azure Blob metadata names are case-preserving
(``x-ms-meta-CamelKey`` comes back as ``CamelKey``), and SDK users read them back by that name.
This subclass records the names as sent in ``scope["exastor.meta_names"]`` (lower -> original);
everything else is uvicorn's, unchanged.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

META_NAMES = "exastor.meta_names"
_PREFIX = b"x-ms-meta-"


class CasePreservingHttpToolsProtocol(HttpToolsProtocol):
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > len(_PREFIX) and name[:len(_PREFIX)].lower() == _PREFIX and not name.islower():
            names = self.scope.setdefault(META_NAMES, {})  # type: ignore[misc]
            names[name.lower().decode("latin-1")] = name.decode("latin-1")
        super().on_header(name, value)
