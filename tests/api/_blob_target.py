"""Where the Blob API tests point: the session's exastor server, or (for the Azurite comparison in
bench/blob_compat.py) any Blob endpoint named by EXASTOR_BLOB_TEST_CONNECTION_STRING."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

CONN_ENV = "EXASTOR_BLOB_TEST_CONNECTION_STRING"


@dataclass
class BlobTarget:
    connection_string: str
    account_name: str
    account_key: str
    endpoint: str
    is_exastor: bool

    @classmethod
    def from_connection_string(cls, cs: str, *, is_exastor: bool) -> BlobTarget:
        parts = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
        return cls(cs, parts["AccountName"], parts["AccountKey"], parts["BlobEndpoint"].rstrip("/"), is_exastor)


def external_target() -> BlobTarget | None:
    cs = os.environ.get(CONN_ENV)
    return BlobTarget.from_connection_string(cs, is_exastor=False) if cs else None


def unique(prefix: str = "c") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"
