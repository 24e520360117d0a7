"""A local directory as the scale test's storage (``--endpoint file://DIR``).

It exists so the tool can be compared like with like against DLIO, which reads
files: same emulation, only the I/O differs. Keys are paths under DIR (the
bucket name is not used). Reads go through a thread pool as large as the
connection pool of the S3 client, so concurrency is bounded the same way.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from exastor.tools.scaletest.dataset import PartMaker, Session

Result = TypeVar("Result")


class FileStore(Session):
    def __init__(self, root: str, pool: int = 64, read_chunk: int = 4 << 20) -> None:
        self.root = os.path.abspath(root)
        self.pool = pool
        self.read_chunk = read_chunk
        self.errors = 0
        self._executor: ThreadPoolExecutor | None = None

    @property
    def description(self) -> str:
        return f"file://{self.root}"

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.pool, thread_name_prefix="scaletest-io")

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"key escapes the root: {key!r}")
        return path

    async def _call(self, fn: Callable[..., Result], *args: object) -> Result:
        assert self._executor is not None, "open() the store first"
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def ensure_bucket(self) -> None:
        os.makedirs(self.root, exist_ok=True)

    def _read(self, path: str, offset: int | None, length: int | None) -> int:
        # readinto one reused buffer: the bytes are counted and dropped, like a GET's body
        buffer = bytearray(self.read_chunk)
        view = memoryview(buffer)
        total = 0
        with open(path, "rb", buffering=0) as handle:
            if offset is not None:
                handle.seek(offset)
            remaining = length if length is not None else -1
            while remaining != 0:
                want = len(buffer) if remaining < 0 else min(len(buffer), remaining)
                n = handle.readinto(view[:want])
                if not n:
                    break
                total += n
                if remaining > 0:
                    remaining -= n
        return total

    async def get(self, key: str, offset: int | None = None, length: int | None = None) -> int:
        return await self._call(self._read, self._path(key), offset, length)

    async def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        if not os.path.exists(path):
            return None
        with open(path, "rb") as handle:
            return handle.read()

    def _write_whole(self, path: str, data: bytes | memoryview) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)

    async def put(self, key: str, data: bytes | memoryview) -> None:
        await self._call(self._write_whole, self._path(key), data)

    async def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    async def write_object(
        self,
        key: str,
        size: int,
        part_size: int,
        make_part: PartMaker,
        parallel: int = 4,
    ) -> None:
        """Parts written in place with pwrite, ``parallel`` at a time, then renamed into view."""
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            count = max(1, -(-size // part_size))
            next_index = 0

            async def lane() -> None:
                nonlocal next_index
                while next_index < count:
                    index = next_index
                    next_index += 1
                    offset = index * part_size
                    data = await make_part(index, offset, min(part_size, size - offset))
                    await self._call(os.pwrite, fd, data, offset)

            await asyncio.gather(*(lane() for _ in range(min(parallel, count))))
        finally:
            os.close(fd)
        os.replace(temporary, path)

    async def read_object(self, key: str, size: int, part_size: int, parallel: int = 4) -> int:
        count = max(1, -(-size // part_size))
        reads = [self.get(key, i * part_size, min(part_size, size - i * part_size)) for i in range(count)]
        total = 0
        for lo in range(0, count, parallel):
            total += sum(await asyncio.gather(*reads[lo:lo + parallel]))
        return total
