"""Where the estimator reads data from: a local path or ``s3://bucket/prefix``.

Files are visited in the order a copy tool would upload them (sorted relative path / key
order), because similarity-delta references depend on what was stored before.
"""

from __future__ import annotations

import asyncio
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


class SourceError(Exception):
    """The source cannot be read: the message says why (a missing path, no credentials, an S3 error)."""


class S3Source:
    """Objects under ``s3://bucket/prefix`` through the project's own aiohttp S3 client (the scale
    test's: aiohttp is a runtime dependency already, boto3 is only a test dependency). Endpoint and
    keys as the AWS tools take them: ``--endpoint-url`` or ``AWS_ENDPOINT_URL[_S3]``,
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or the profile in ``~/.aws/credentials``
    (``AWS_PROFILE``, else ``default``), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``."""

    def __init__(self, url: str, endpoint_url: str | None = None, env: dict[str, str] | None = None) -> None:
        from exastor.tools.scaletest.s3client import S3Client

        env = dict(os.environ if env is None else env)
        rest = url[len("s3://"):]
        self.bucket, _, self.prefix = rest.partition("/")
        if not self.bucket:
            raise SourceError(f"{url}: no bucket (s3://bucket/prefix)")
        endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if not endpoint:
            region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
            endpoint = f"https://s3.{region}.amazonaws.com"
        access, secret = _credentials(env)
        if not (access and secret):
            raise SourceError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (exastor serve "
                              "prints them), or a profile in ~/.aws/credentials")
        try:
            self.client = S3Client(endpoint, self.bucket, access, secret,
                                   env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
                                   pool=8, retries=2)
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
        self.endpoint = endpoint
        self._loop = asyncio.new_event_loop()

    def _run(self, coro: Any) -> Any:
        import aiohttp

        from exastor.tools.scaletest.s3client import S3Error

        try:
            return self._loop.run_until_complete(coro)
        except S3Error as exc:
            raise SourceError(f"s3://{self.bucket}: {exc}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SourceError(f"cannot reach {self.endpoint}: {exc}") from exc

    async def _opened(self, coro: Any) -> Any:
        await self.client.open()
        return await coro

    def items(self) -> list[Item]:
        listed = self._run(self._opened(self.client.list_objects(self.prefix)))
        return sorted((Item(key, size) for key, size in listed), key=lambda i: i.name)

    def read(self, item: Item, start: int, length: int) -> bytes:
        return self._run(self._opened(self.client.get_range(item.name, start, length)))

    def stream(self, item: Item, piece: int) -> Iterator[bytes]:
        # ranged GETs of ``piece`` bytes: memory stays bounded whatever the object's size
        for offset in range(0, item.size, piece):
            yield self.read(item, offset, min(piece, item.size - offset))

    def close(self) -> None:
        self._loop.run_until_complete(self.client.close())
        self._loop.close()


def _credentials(env: dict[str, str]) -> tuple[str, str]:
    access, secret = env.get("AWS_ACCESS_KEY_ID", ""), env.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return access, secret
    import configparser

    path = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise SourceError(f"{path}: {exc}") from exc
    section = env.get("AWS_PROFILE", "default")
    if parser.has_section(section):
        return (parser.get(section, "aws_access_key_id", fallback=""),
                parser.get(section, "aws_secret_access_key", fallback=""))
    return "", ""


def open_source(where: str, endpoint_url: str | None = None) -> Source:
    if where.startswith("s3://"):
        return S3Source(where, endpoint_url)
    path = Path(where).expanduser()
    if not path.exists():
        raise SourceError(f"{where}: no such file or directory")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{where}: permission denied")
    return LocalSource(path)
