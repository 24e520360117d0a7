"""The checkpoint workload: every rank writes its shard at once, then reads it back.

This is large-model checkpointing as MLPerf Storage v2.0 emulates it (Llama 3
8B and 70B shapes, see workloads.py): the whole job stalls until the slowest
rank's shard is durable, so "time to checkpoint" is first write start to last
write end, and the restore is the same for reads. Shards go up as multipart
uploads with several parts in flight per rank, all ranks sharing one bounded
connection pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from exastor.tools.scaletest.dataset import ObjectWriter, payload
from exastor.tools.scaletest.results import CheckpointResult


class CheckpointStorage(ObjectWriter, Protocol):
    async def read_object(self, key: str, size: int, part_size: int, parallel: int = 4) -> int: ...

    async def delete(self, key: str) -> None: ...


def shard_key(prefix: str, model: str, rank: int, ranks: int) -> str:
    return f"{prefix}/{model}/rank_{rank:05d}_of_{ranks:05d}.pt"


async def checkpoint_cycle(
    storage: CheckpointStorage,
    model: str,
    shard_sizes: list[int],
    part_size: int = 64 << 20,
    parts_in_flight: int = 4,
    prefix: str = "checkpoints",
    keep: bool = False,
    seed: int = 0,
    on_bytes: Callable[[int], None] | None = None,
) -> CheckpointResult:
    """Write all shards concurrently, then read them all back concurrently; time both phases."""
    await storage.ensure_bucket()
    ranks = len(shard_sizes)
    keys = [shard_key(prefix, model, rank, ranks) for rank in range(ranks)]
    errors_before = storage.errors
    cpu_before = time.process_time()

    async def write(rank: int) -> float:
        start = time.monotonic()

        async def make_part(index: int, offset: int, length: int) -> bytes:
            # Generated off the loop, and different for every rank and part (no dedupe shortcut).
            data = await asyncio.to_thread(payload, seed * 1_000_003 + rank, offset, length)
            if on_bytes is not None:
                on_bytes(length)
            return data

        await storage.write_object(keys[rank], shard_sizes[rank], part_size, make_part, parallel=parts_in_flight)
        return time.monotonic() - start

    async def read(rank: int) -> float:
        start = time.monotonic()
        got = await storage.read_object(keys[rank], shard_sizes[rank], part_size, parallel=parts_in_flight)
        if got != shard_sizes[rank]:
            raise RuntimeError(f"rank {rank}: read {got} bytes back, wrote {shard_sizes[rank]}")
        if on_bytes is not None:
            on_bytes(got)
        return time.monotonic() - start

    start = time.monotonic()
    rank_write = await asyncio.gather(*(write(rank) for rank in range(ranks)))
    write_seconds = time.monotonic() - start
    start = time.monotonic()
    rank_read = await asyncio.gather(*(read(rank) for rank in range(ranks)))
    read_seconds = time.monotonic() - start
    cpu = time.process_time() - cpu_before
    if not keep:
        await asyncio.gather(*(storage.delete(key) for key in keys))
    total = sum(shard_sizes)
    return CheckpointResult(
        model=model,
        ranks=ranks,
        checkpoint_bytes=total,
        part_size=part_size,
        write_seconds=write_seconds,
        read_seconds=read_seconds,
        write_bytes_per_s=total / write_seconds if write_seconds > 0 else 0.0,
        read_bytes_per_s=total / read_seconds if read_seconds > 0 else 0.0,
        rank_write_seconds=list(rank_write),
        rank_read_seconds=list(rank_read),
        client_cpu_seconds=cpu,
        errors=storage.errors - errors_before,
    )
