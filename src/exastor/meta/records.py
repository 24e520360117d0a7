"""Plain rows returned by the metadata layer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class User:
    name: str
    access_key: str
    secret_key: str
    created_ns: int


@dataclass(slots=True)
class Bucket:
    name: str
    owner: str
    created_ns: int
    region: str
    versioning: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ObjectVersion:
    bucket: str
    key: str
    version_id: str
    seq: int
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    mtime_ns: int
    owner: str
    attrs: dict[str, Any]
    manifest: bytes | None = None

    @classmethod
    def from_row(cls, row: tuple) -> ObjectVersion:
        b, k, v, seq, latest, dm, size, etag, mtime, owner, attrs, manifest = row
        return cls(b, k, v, seq, bool(latest), bool(dm), size, etag, mtime, owner, json.loads(attrs), manifest)


OBJECT_COLUMNS = "bucket, key, version_id, seq, is_latest, delete_marker, size, etag, mtime_ns, owner, attrs, manifest"
OBJECT_LIST_COLUMNS = "bucket, key, version_id, seq, is_latest, delete_marker, size, etag, mtime_ns, owner, attrs, NULL"


@dataclass(slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    initiated_ns: int
    owner: str
    attrs: dict[str, Any]


@dataclass(slots=True)
class Part:
    upload_id: str
    part_number: int
    size: int
    etag: str
    mtime_ns: int
    attrs: dict[str, Any]
    manifest: bytes | None = None


@dataclass(slots=True, frozen=True)
class ChunkLocation:
    fp: bytes
    segment: int
    offset: int
    stored_len: int
    raw_len: int
    codec: int
