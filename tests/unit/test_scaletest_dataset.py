"""Data set layout, content, the MLPerf memory rule, and reuse (on a local directory)."""

import asyncio
import os

import numpy as np
import pytest
import zstandard

from exastor.tools.scaletest.dataset import (
    DatasetSpec,
    dataset_present,
    default_num_files,
    ensure_dataset,
    payload,
)
from exastor.tools.scaletest.filestore import FileStore
from exastor.tools.scaletest.workloads import training_workload


def test_payload_is_deterministic_and_sliceable():
    whole = payload(7, 0, 20 << 20)
    assert len(whole) == 20 << 20
    assert payload(7, 0, 20 << 20) == whole
    # any slice equals the same range of the whole object, across 8 MiB block edges
    for offset, length in [(0, 1), (123, 4567), ((8 << 20) - 10, 20), ((16 << 20) + 3, 1 << 20)]:
        assert payload(7, offset, length) == whole[offset:offset + length]
    assert payload(8, 0, 4096) != whole[:4096]


def test_payload_defeats_compression_and_dedupe():
    data = payload(1, 0, 24 << 20)
    assert len(zstandard.ZstdCompressor(level=3).compress(data[: 4 << 20])) > 0.99 * (4 << 20)
    blocks = {data[i:i + (8 << 20)] for i in range(0, len(data), 8 << 20)}
    assert len(blocks) == 3
    chunks = {payload(s, 0, 65536) for s in range(50)}
    assert len(chunks) == 50


def test_memory_rule():
    unet = training_workload("unet3d", "h100")
    files = default_num_files(unet, client_memory=16 << 30)
    assert files * unet.file_size >= 5 * (16 << 30) > (files - 1) * unet.file_size


def test_spec_sizes_offsets_and_fingerprint():
    workload = training_workload("resnet50", "h100").with_overrides(
        record_length=1000, record_length_stdev=200, samples_per_file=4)
    spec = DatasetSpec.for_workload(workload, num_files=3, seed=1)
    sizes = spec.sample_sizes
    assert sizes.shape == (3, 4) and sizes.min() >= 250 and sizes.max() <= 1600
    assert np.array_equal(spec.sample_offsets[:, 0], [0, 0, 0])
    assert np.array_equal(spec.sample_offsets[:, 1:], np.cumsum(sizes, axis=1)[:, :-1])
    assert spec.total_bytes == sizes.sum() and spec.ranged
    other = DatasetSpec.for_workload(workload, num_files=4, seed=1)
    assert other.prefix != spec.prefix  # different parameters, different data set
    assert spec.key(0).startswith(spec.prefix + "/train/") and spec.key(0).endswith(".tfrecord")


def test_generate_then_reuse(tmp_path):
    workload = training_workload("unet3d", "h100").with_overrides(record_length=3000, record_length_stdev=500)
    spec = DatasetSpec.for_workload(workload, num_files=5)

    async def go():
        async with FileStore(str(tmp_path)) as store:
            assert not await dataset_present(store, spec)
            written = []
            reused = await ensure_dataset(store, spec, parallel=2, part_size=1024, on_file=written.append)
            assert not reused and sum(written) == spec.total_bytes
            assert await dataset_present(store, spec)
            again = await ensure_dataset(store, spec, on_file=written.append)
            assert again and len(written) == 5  # nothing rewritten
            return store

    asyncio.run(go())
    for index in range(5):
        path = tmp_path / spec.key(index)
        assert os.path.getsize(path) == spec.file_sizes[index]
        assert path.read_bytes() == payload(index, 0, int(spec.file_sizes[index]))


def test_missing_manifest_means_regenerate(tmp_path):
    workload = training_workload("cosmoflow", "h100").with_overrides(record_length=100, record_length_stdev=0)
    spec = DatasetSpec.for_workload(workload, num_files=2)

    async def go():
        async with FileStore(str(tmp_path)) as store:
            await ensure_dataset(store, spec)
            os.unlink(tmp_path / spec.manifest_key)
            return await ensure_dataset(store, spec)

    assert asyncio.run(go()) is False


@pytest.mark.parametrize("offset,length", [(None, None), (10, 100), (0, 5000)])
def test_filestore_reads_count_bytes(tmp_path, offset, length):
    (tmp_path / "k").write_bytes(b"x" * 3000)

    async def go():
        async with FileStore(str(tmp_path)) as store:
            return await store.get("k", offset, length)

    expected = 3000 if offset is None else min(length, 3000 - offset)
    assert asyncio.run(go()) == expected
