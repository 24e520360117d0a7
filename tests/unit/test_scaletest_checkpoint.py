"""The checkpoint cycle: all ranks write at once, then all read back, sizes checked."""

import asyncio

import pytest

from exastor.tools.scaletest.checkpoint import checkpoint_cycle, shard_key
from exastor.tools.scaletest.workloads import shard_sizes


class MemoryStore:
    """Keeps shards in memory; records how many ranks write at the same time."""

    def __init__(self, write_delay=0.01):
        self.objects = {}
        self.errors = 0
        self.writing = 0
        self.most_writing = 0
        self.write_delay = write_delay

    async def ensure_bucket(self):
        pass

    async def write_object(self, key, size, part_size, make_part, parallel=4):
        self.writing += 1
        self.most_writing = max(self.most_writing, self.writing)
        parts = []
        for index, offset in enumerate(range(0, size, part_size)):
            parts.append(await make_part(index, offset, min(part_size, size - offset)))
            await asyncio.sleep(self.write_delay)
        self.objects[key] = b"".join(parts)
        self.writing -= 1

    async def read_object(self, key, size, part_size, parallel=4):
        return len(self.objects[key])

    async def delete(self, key):
        self.objects.pop(key, None)


def test_all_ranks_write_at_once_then_read_back():
    store = MemoryStore()
    sizes = shard_sizes(1_000_003, 5)
    result = asyncio.run(checkpoint_cycle(store, "llama3-8b", sizes, part_size=100_000, keep=True))
    assert store.most_writing == 5
    assert result.ranks == 5 and result.checkpoint_bytes == 1_000_003
    assert sorted(len(v) for v in store.objects.values()) == sorted(sizes)
    assert result.write_bytes_per_s == pytest.approx(1_000_003 / result.write_seconds)
    assert result.write_seconds >= max(result.rank_write_seconds)
    # different ranks write different bytes (nothing for a deduplicating store to fold)
    first = store.objects[shard_key("checkpoints", "llama3-8b", 0, 5)][:4096]
    second = store.objects[shard_key("checkpoints", "llama3-8b", 1, 5)][:4096]
    assert first != second


def test_shards_are_deleted_unless_kept():
    store = MemoryStore(write_delay=0)
    asyncio.run(checkpoint_cycle(store, "m", [10, 10], part_size=8))
    assert store.objects == {}


def test_short_read_is_an_error():
    class Lossy(MemoryStore):
        async def read_object(self, key, size, part_size, parallel=4):
            return size - 1

    with pytest.raises(RuntimeError, match="read"):
        asyncio.run(checkpoint_cycle(Lossy(write_delay=0), "m", [10, 10], part_size=8))
