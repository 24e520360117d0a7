"""The training data set in the target bucket: its layout, its generation, its reuse.

MLPerf Storage requires the data set to be larger than the client's memory
(five times the client hosts' RAM, so no run is served from the client's page
cache); ``default_num_files`` applies that rule and the CLI lets small runs
scale it down. A data set is named by a fingerprint of its parameters and
marked complete by a manifest written last, so a later run with the same
parameters finds it and reuses it instead of writing it again.

Contents are random and incompressible, and no two 8 MiB blocks are alike, so
a store that deduplicates or compresses cannot make the test look faster than
real training data would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Protocol

import numpy as np

from exastor.tools.scaletest.workloads import READ_RANGED, TrainingWorkload

MEMORY_MULTIPLE = 5  # MLPerf Storage: data set >= 5x client memory
_POOL_BYTES = 8 << 20
_POOL = np.random.default_rng(0x5CA1E7E57).integers(0, 2**63, _POOL_BYTES // 8, dtype=np.uint64)


def payload(seed: int, offset: int, length: int) -> bytes:
    """Deterministic incompressible bytes [offset, offset+length) of the object with ``seed``.

    Block b (8 MiB) of an object is a fixed random pool XORed with a 64-bit key
    derived from (seed, b): one vectorised XOR per block instead of generating
    fresh randomness, and still no repeated block within or across objects.
    """
    if length <= 0:
        return b""
    first, last = offset // _POOL_BYTES, (offset + length - 1) // _POOL_BYTES
    pieces = []
    for block in range(first, last + 1):
        key = int.from_bytes(hashlib.blake2b(f"{seed}:{block}".encode(), digest_size=8).digest(), "little")
        data = (_POOL ^ np.uint64(key)).tobytes()
        lo = offset - block * _POOL_BYTES if block == first else 0
        hi = offset + length - block * _POOL_BYTES if block == last else _POOL_BYTES
        pieces.append(data[lo:hi])
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def client_memory_bytes() -> int:
    """Physical memory of this host (the MLPerf rule's 'client memory')."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def default_num_files(workload: TrainingWorkload, client_memory: int, memory_multiple: float = MEMORY_MULTIPLE) -> int:
    """Files needed for the data set to reach ``memory_multiple`` x client memory."""
    return max(1, math.ceil(memory_multiple * client_memory / workload.file_size))


@dataclass(frozen=True)
class DatasetSpec:
    workload: str
    file_format: str
    record_length: int
    record_length_stdev: int
    samples_per_file: int
    num_files: int
    read_pattern: str
    seed: int = 0

    @classmethod
    def for_workload(cls, workload: TrainingWorkload, num_files: int, seed: int = 0) -> DatasetSpec:
        return cls(
            workload=workload.name,
            file_format=workload.file_format,
            record_length=workload.record_length,
            record_length_stdev=workload.record_length_stdev,
            samples_per_file=workload.samples_per_file,
            num_files=num_files,
            read_pattern=workload.read_pattern,
            seed=seed,
        )

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def prefix(self) -> str:
        return f"{self.workload}-{self.fingerprint}"

    @property
    def manifest_key(self) -> str:
        return f"{self.prefix}/manifest.json"

    def key(self, index: int) -> str:
        return f"{self.prefix}/train/img_{index + 1:07d}_of_{self.num_files:07d}.{self.file_format}"

    @cached_property
    def sample_sizes(self) -> np.ndarray:
        """Bytes of every sample, (num_files, samples_per_file): a normal clipped to [mean/4, mean+3 sd]."""
        shape = (self.num_files, self.samples_per_file)
        if self.record_length_stdev <= 0:
            return np.full(shape, self.record_length, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        sizes = rng.normal(self.record_length, self.record_length_stdev, shape)
        low = max(1, self.record_length // 4)
        return np.clip(sizes, low, self.record_length + 3 * self.record_length_stdev).astype(np.int64)

    @cached_property
    def sample_offsets(self) -> np.ndarray:
        """Byte offset of each sample inside its file (records laid end to end)."""
        sizes = self.sample_sizes
        return np.cumsum(sizes, axis=1) - sizes

    @cached_property
    def file_sizes(self) -> np.ndarray:
        return self.sample_sizes.sum(axis=1)

    @property
    def total_bytes(self) -> int:
        return int(self.file_sizes.sum())

    @property
    def ranged(self) -> bool:
        return self.read_pattern == READ_RANGED and self.samples_per_file > 1

    def manifest(self) -> bytes:
        return json.dumps({**asdict(self), "fingerprint": self.fingerprint, "total_bytes": self.total_bytes}).encode()


PartMaker = Callable[[int, int, int], Awaitable[bytes | memoryview]]  # (index, offset, length) -> bytes


class ObjectWriter(Protocol):
    errors: int

    async def ensure_bucket(self) -> None: ...

    async def write_object(self, key: str, size: int, part_size: int, make_part: PartMaker,
                           parallel: int = 4) -> None: ...


class WritableStorage(ObjectWriter, Protocol):
    async def get_bytes(self, key: str) -> bytes | None: ...

    async def put(self, key: str, data: bytes | memoryview) -> None: ...


class Session:
    """``async with`` support for a storage client with ``open``/``close``."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self):  # noqa: ANN204 - returns the concrete subclass
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def dataset_present(storage: WritableStorage, spec: DatasetSpec) -> bool:
    """True when a complete data set with exactly these parameters is already in the bucket."""
    raw = await storage.get_bytes(spec.manifest_key)
    if raw is None:
        return False
    try:
        return json.loads(raw).get("fingerprint") == spec.fingerprint
    except ValueError:
        return False


async def ensure_dataset(
    storage: WritableStorage,
    spec: DatasetSpec,
    parallel: int = 8,
    part_size: int = 64 << 20,
    on_file: Callable[[int], None] | None = None,
) -> bool:
    """Make sure the data set is in the bucket; returns True when it was reused as is.

    Files are written ``parallel`` at a time (multipart above ``part_size``);
    the manifest goes last, so an interrupted generation is redone, never
    mistaken for a complete one. ``on_file(bytes)`` is called per finished file.
    """
    await storage.ensure_bucket()
    if await dataset_present(storage, spec):
        return True
    sizes = spec.file_sizes
    next_file = 0

    async def lane() -> None:
        nonlocal next_file
        while next_file < spec.num_files:
            index = next_file
            next_file += 1
            size = int(sizes[index])
            seed = spec.seed * 1_000_003 + index

            async def make_part(_: int, offset: int, length: int, seed: int = seed) -> bytes:
                # Generating is CPU work: keep it off the event loop so uploads keep flowing.
                return await asyncio.to_thread(payload, seed, offset, length)

            await storage.write_object(spec.key(index), size, part_size, make_part, parallel=2)
            if on_file is not None:
                on_file(size)

    await asyncio.gather(*(lane() for _ in range(min(parallel, spec.num_files))))
    await storage.put(spec.manifest_key, spec.manifest())
    return False
