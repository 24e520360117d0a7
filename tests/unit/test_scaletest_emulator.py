"""The emulator against hand-computed timelines, on a virtual clock (exact, and instant)."""

import collections

import numpy as np
import pytest

from exastor.tools.scaletest.clock import VirtualClock
from exastor.tools.scaletest.dataset import DatasetSpec
from exastor.tools.scaletest.emulator import EmulationConfig, Sampler, emulate
from exastor.tools.scaletest.results import analyse
from exastor.tools.scaletest.workloads import training_workload


class FakeStorage:
    """Every read takes ``latency`` virtual seconds; counts concurrency and keys."""

    def __init__(self, clock, latency):
        self.clock = clock
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0
        self.keys = []

    async def get(self, key, offset=None, length=None):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.keys.append((key, offset, length))
        await self.clock.sleep(self.latency)
        self.in_flight -= 1
        return length if length is not None else 100


def _workload(**overrides):
    base = dict(record_length=100, record_length_stdev=0, batch_size=2, compute_time=0.3,
                read_threads=1, prefetch=2)
    base.update(overrides)
    return training_workload("unet3d", "h100").with_overrides(**base)


def _run(latency, duration, accelerators=1, pool=8, num_files=10, **overrides):
    clock = VirtualClock()
    storage = FakeStorage(clock, latency)
    workload = _workload(**overrides)
    spec = DatasetSpec.for_workload(workload, num_files)
    config = EmulationConfig(workload, accelerators, duration, pool=pool)
    recorder = clock.run(emulate(storage, spec, config, clock=clock))
    return recorder, analyse(recorder, {}, workload.au_threshold, workload.batch_size), storage


def test_storage_faster_than_compute():
    # Reads 0.1 s each, 2 per batch, one worker, 2 batches of prefetch, compute 0.3 s.
    # Batches ready at 0.2, 0.4; batch 2 may start when batch 0 is taken (0.2) but the
    # worker is busy until 0.4 -> ready 0.6; batch 3 starts once batch 1 is taken (0.5)...
    # Trainer: wait 0-0.2, compute 0.2-0.5, 0.5-0.8, 0.8-1.1, 1.1-1.4; the run ends at 1.4.
    recorder, result, _ = _run(latency=0.1, duration=1.4)
    expected = [(0.0, 0.2, 0.5), (0.5, 0.5, 0.8), (0.8, 0.8, 1.1), (1.1, 1.1, 1.4)]
    assert np.allclose(recorder.steps[0], expected)
    assert result.au_mean == pytest.approx(1.2 / 1.4)
    # reads: batches 0-3 by 0.8 (8), batch 4 0.8-1.0 (2), batch 5 1.1-1.3 (2): 12 x 100 bytes over 1.4 s
    assert result.bytes_read == 1200
    assert result.throughput_bytes_per_s == pytest.approx(1200 / 1.4)


def test_storage_slower_than_compute():
    # Batches take 0.4 s to read and 0.3 s to compute: batch k ready at 0.4(k+1).
    # Steps: 0.4-0.7, 0.8-1.1, 1.2-1.5, 1.6-1.9; the 1.8 s deadline falls in the last one.
    recorder, result, _ = _run(latency=0.2, duration=1.8)
    ready = [step[1] for step in recorder.steps[0]]
    assert ready == pytest.approx([0.4, 0.8, 1.2, 1.6])
    assert result.au_mean == pytest.approx(4 * 0.3 / 1.9)
    assert not result.passed


def test_prefetch_bounds_batches_in_flight():
    # Instant compute would let workers run ahead without bound; prefetch caps them at
    # read_threads x prefetch batches beyond what the trainer took.
    recorder, _, storage = _run(latency=0.01, duration=0.5, compute_time=10.0, read_threads=3, prefetch=2)
    # The trainer takes batch 0 at 0.02 and computes till the end: workers may read batches 0..6
    assert len(storage.keys) == (3 * 2 + 1) * 2
    assert storage.most_in_flight == 3  # one read per worker at a time


def test_pool_bounds_concurrency_and_shares_it():
    # 4 accelerators x 2 workers would issue 8 reads at once; a pool of 3 serialises them.
    _, result, storage = _run(latency=0.1, duration=2.0, accelerators=4, pool=3, read_threads=2, compute_time=0.05)
    assert storage.most_in_flight == 3
    # storage-bound: at most 3 reads per 0.1 s = 3000 bytes/s, and the run gets close to it
    assert 2400 <= result.throughput_bytes_per_s <= 3000 + 1e-6
    assert result.au_mean < 0.5


def test_more_accelerators_lower_au_when_storage_bound():
    few = _run(latency=0.05, duration=3.0, accelerators=2, pool=2, compute_time=0.2)[1]
    many = _run(latency=0.05, duration=3.0, accelerators=16, pool=2, compute_time=0.2)[1]
    assert few.au_mean > 0.9 > many.au_mean
    # the pool's throughput is the same; it is split between more accelerators
    assert many.throughput_bytes_per_s == pytest.approx(2 * 100 / 0.05, rel=0.1)


def test_sampler_each_epoch_reads_every_sample_once():
    workload = _workload(samples_per_file=5, read_pattern="ranged", record_length_stdev=10)
    spec = DatasetSpec.for_workload(workload, num_files=6)
    sampler = Sampler(spec, total_accelerators=3, seed=7)
    per_epoch = spec.num_files * spec.samples_per_file // 3
    seen = collections.Counter()
    for rank in range(3):
        stream = sampler.stream(rank)
        for _ in range(per_epoch):
            ref = next(stream)
            seen[(ref.key, ref.offset)] += 1
            file_index = [spec.key(i) for i in range(spec.num_files)].index(ref.key)
            within = int(np.searchsorted(spec.sample_offsets[file_index], ref.offset))
            assert ref.length == spec.sample_sizes[file_index, within]
    assert len(seen) == 30 and set(seen.values()) == {1}


def test_sampler_whole_object_reads_without_range():
    workload = _workload()
    spec = DatasetSpec.for_workload(workload, num_files=4)
    ref = next(Sampler(spec, 1).stream(0))
    assert ref.offset is None and ref.length == 100


def test_shuffle_is_seeded_and_changes_per_epoch():
    spec = DatasetSpec.for_workload(_workload(), num_files=50)
    first = [next(Sampler(spec, 1, seed=3).stream(0)).key for _ in range(1)]
    again = [next(Sampler(spec, 1, seed=3).stream(0)).key for _ in range(1)]
    assert first == again
    stream = Sampler(spec, 1, seed=3).stream(0)
    epoch0 = [next(stream).key for _ in range(50)]
    epoch1 = [next(stream).key for _ in range(50)]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1


def test_storage_error_ends_the_run():
    class Broken(FakeStorage):
        async def get(self, key, offset=None, length=None):
            await self.clock.sleep(0.1)
            raise OSError("disk on fire")

    clock = VirtualClock()
    workload = _workload()
    spec = DatasetSpec.for_workload(workload, 4)
    with pytest.raises(OSError, match="disk on fire"):
        clock.run(emulate(Broken(clock, 0.1), spec, EmulationConfig(workload, 2, 5.0), clock=clock))
