"""Where the estimator reads data from: a local path or ``s3://bucket/prefix``.

Files are visited in the order a copy tool would upload them (sorted relative path / key
order), because similarity-delta references depend on what was stored before.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Item:
    name: str      # relative path or key
    size: int


class Source(Protocol):
    def items(self) -> list[Item]: ...
    def read(self, item: Item, start: int, length: int) -> bytes: ...
    def stream(self, item: Item, piece: int) -> Iterator[bytes]: ...


class LocalSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def items(self) -> list[Item]:
        if self.root.is_file():
            return [Item(self.root.name, self.root.stat().st_size)]
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                p = Path(dirpath) / f
                if p.is_file() and not p.is_symlink():
                    out.append(Item(p.relative_to(self.root).as_posix(), p.stat().st_size))
        return sorted(out, key=lambda i: i.name)

    def _path(self, item: Item) -> Path:
        return self.root if self.root.is_file() else self.root / item.name

    def read(self, item: Item, start: int, length: int) -> bytes:
        with open(self._path(item), "rb") as f:
            f.seek(start)
            return f.read(length)

    def stream(self, item: Item, piece: int) -> Iterator[bytes]:
        with open(self._path(item), "rb") as f:
            while True:
                buf = f.read(piece)
                if not buf:
                    return
                yield buf


class S3Source:
    """Objects under ``s3://bucket/prefix``, through boto3 (endpoint and keys from the usual
    AWS environment variables / config, or ``--endpoint-url``)."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        import boto3
        rest = url[len("s3://"):]
        self.bucket, _, self.prefix = rest.partition("/")
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    def items(self) -> list[Item]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                out.append(Item(obj["Key"], int(obj["Size"])))
        return sorted(out, key=lambda i: i.name)

    def read(self, item: Item, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        got = self.client.get_object(Bucket=self.bucket, Key=item.name, Range=f"bytes={start}-{start + length - 1}")
        return got["Body"].read()

    def stream(self, item: Item, piece: int) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=item.name)["Body"]
        while True:
            buf = body.read(piece)
            if not buf:
                return
            yield buf


def open_source(where: str, endpoint_url: str | None = None) -> Source:
    if where.startswith("s3://"):
        return S3Source(where, endpoint_url)
    return LocalSource(Path(where).expanduser())
