"""Emulated accelerators on one event loop.

Each emulated accelerator is what DLIO/MLPerf Storage model with a PyTorch
DataLoader: ``read_threads`` workers, each building whole batches (reading
their samples one after another) and allowed to run ``prefetch`` batches ahead
of the trainer, so at most ``read_threads x prefetch`` batches are outstanding.
Batches are handed out round-robin to workers and consumed in order. The
trainer waits for its next batch, then "computes" (sleeps) for the per-batch
compute time of the emulated accelerator. AU is compute time over wall time.

No thread or process per accelerator: accelerators and their workers are
coroutines, and every read waits for one slot of a bounded pool (the S3
client's connections), so thousands of accelerators cost a few KiB each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from exastor.tools.scaletest.clock import Clock, RealClock
from exastor.tools.scaletest.dataset import DatasetSpec
from exastor.tools.scaletest.results import Recorder
from exastor.tools.scaletest.workloads import TrainingWorkload


class ReadableStorage(Protocol):
    async def get(self, key: str, offset: int | None = None, length: int | None = None) -> int: ...


@dataclass(frozen=True)
class SampleRef:
    key: str
    offset: int | None  # None: the whole object
    length: int


@dataclass
class Batch:
    """One batch's samples as arrays: which file, where in it (None: whole object), how much."""

    files: np.ndarray
    offsets: np.ndarray | None
    lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.files)


class Sampler:
    """Which samples each accelerator reads, in order: MLPerf's shuffled, sharded epochs.

    Epoch e is a seeded permutation of all S samples (see ``__init__``); accelerator r of N takes
    every N-th sample starting at r (position g of the endless sequence of
    epochs is sample perm_{g // S}[g % S]; rank r takes g = r, r+N, r+2N, ...).
    That is MLPerf's sharding when N <= S and still gives distinct samples
    within every window of N when N > S, so any N works with any data set.
    Batch b of a rank is computed directly (vectorised, random access), so
    workers fetch their batches out of order without anything being kept.
    """

    def __init__(self, spec: DatasetSpec, total_accelerators: int, shuffle: bool = True, seed: int = 0) -> None:
        self.spec = spec
        self.total = total_accelerators
        self.shuffle = shuffle
        self.seed = seed
        self.samples = spec.num_files * spec.samples_per_file
        self.keys = [spec.key(i) for i in range(spec.num_files)]
        # Epoch e's order is P[(Q[i] + k_e) mod S] for two seeded random permutations P, Q
        # and a seeded per-epoch offset k_e: a permutation of all samples for every epoch,
        # different for every epoch, computed for any position with two gathers and no
        # per-epoch state, so a batch spanning many epochs (N x batch > S) costs the same.
        rng = np.random.default_rng(seed)
        self._outer = rng.permutation(self.samples).astype(np.int64)
        self._inner = rng.permutation(self.samples).astype(np.int64)
        # Plain arrays: faster to index than the spec's cached properties, once per batch
        self._sizes = spec.sample_sizes
        self._offsets = spec.sample_offsets
        self._file_sizes = spec.file_sizes

    def _epoch_offsets(self, epochs: np.ndarray) -> np.ndarray:
        # a cheap integer hash (splitmix64's finaliser) of (seed, epoch): seeded, stateless
        mix = np.uint64((self.seed * 0x9E3779B97F4A7C15) & (2**64 - 1))
        x = (epochs.astype(np.uint64) + mix) * np.uint64(0xBF58476D1CE4E5B9)  # wraps mod 2^64, as meant
        x ^= x >> np.uint64(31)
        return (x % np.uint64(self.samples)).astype(np.int64)

    def samples_at(self, rank: int, first: int, count: int) -> np.ndarray:
        """Global sample numbers of rank's ``first``..``first+count-1``-th reads."""
        positions = rank + self.total * (first + np.arange(count, dtype=np.int64))
        epochs, index = np.divmod(positions, self.samples)
        if not self.shuffle:
            return index
        return self._outer[(self._inner[index] + self._epoch_offsets(epochs)) % self.samples]

    def batch(self, rank: int, index: int, batch_size: int) -> Batch:
        samples = self.samples_at(rank, index * batch_size, batch_size)
        files, within = np.divmod(samples, self.spec.samples_per_file)
        files = files.astype(np.int32)  # compact: see Accelerator.worker
        if self.spec.ranged:
            return Batch(files, self._offsets[files, within], self._sizes[files, within])
        return Batch(files, None, self._file_sizes[files])

    def stream(self, rank: int) -> Iterator[SampleRef]:
        """The rank's reads one by one (for inspection and tests)."""
        index = 0
        while True:
            batch = self.batch(rank, index, 64)
            for i in range(len(batch)):
                offset = None if batch.offsets is None else int(batch.offsets[i])
                yield SampleRef(self.keys[int(batch.files[i])], offset, int(batch.lengths[i]))
            index += 1


class Reader:
    """Reads one sample through the bounded pool and records the request."""

    def __init__(self, storage: ReadableStorage, pool: int, clock: Clock, recorder: Recorder) -> None:
        self.storage = storage
        self.slots = asyncio.Semaphore(pool)
        self.clock = clock
        self.recorder = recorder

    async def read(self, key: str, offset: int | None, length: int) -> int:
        async with self.slots:
            # Latency is measured from holding a connection slot: the server's time,
            # not the time this client made the request queue.
            start = self.clock.now()
            if offset is None:
                n = await self.storage.get(key)
            else:
                n = await self.storage.get(key, offset, length)
            self.recorder.request(start, self.clock.now(), n)
        return n


class Accelerator:
    """One emulated accelerator: its trainer loop and its data-loader workers."""

    def __init__(
        self,
        rank: int,
        global_rank: int,
        workload: TrainingWorkload,
        sampler: Sampler,
        reader: Reader,
        clock: Clock,
        recorder: Recorder,
    ) -> None:
        self.rank = rank
        self.workload = workload
        self.reader = reader
        self.clock = clock
        self.recorder = recorder
        self.consumed = 0  # batches the trainer has taken
        self.changed = asyncio.Condition()
        self.ready: dict[int, asyncio.Future[None]] = {}
        self.sampler = sampler
        self.global_rank = global_rank

    def _future(self, index: int) -> asyncio.Future[None]:
        if index not in self.ready:
            self.ready[index] = asyncio.get_running_loop().create_future()
        return self.ready[index]

    async def worker(self, worker: int) -> None:
        in_flight_limit = self.workload.read_threads * self.workload.prefetch
        index = worker
        while True:
            def within_limit(index: int = index) -> bool:  # this turn's index, bound now
                return index < self.consumed + in_flight_limit

            async with self.changed:
                await self.changed.wait_for(within_limit)
            try:
                # Arrays, not lists of ints: thousands of workers each hold a batch while they
                # queue for the pool, and Python ints would cost ~5x the memory.
                batch = self.sampler.batch(self.global_rank, index, self.workload.batch_size)
                keys, files, offsets, lengths = self.sampler.keys, batch.files, batch.offsets, batch.lengths
                for i in range(len(files)):
                    offset = None if offsets is None else int(offsets[i])
                    await self.reader.read(keys[files[i]], offset, int(lengths[i]))
            except Exception as exc:  # hand the failure to the trainer, which ends the run
                self._future(index).set_exception(exc)
                raise
            self._future(index).set_result(None)
            index += self.workload.read_threads

    async def trainer(self, stop: asyncio.Future[None]) -> None:
        start = self.clock.now()
        step = 0
        while not stop.done():
            wait_start = self.clock.now()
            batch = self._future(step)
            if not batch.done():
                await asyncio.wait((batch, stop), return_when=asyncio.FIRST_COMPLETED)
                if not batch.done():
                    break  # the run ended while waiting for data: that wait counts
            batch.result()  # raises the worker's storage error, if any
            ready = self.clock.now()
            del self.ready[step]
            async with self.changed:
                self.consumed = step + 1
                self.changed.notify_all()
            await self.clock.sleep(self.workload.compute_time)
            self.recorder.step(self.rank, wait_start, ready, self.clock.now())
            step += 1
        self.recorder.windows[self.rank] = (start, self.clock.now())


@dataclass
class EmulationConfig:
    workload: TrainingWorkload
    accelerators: int
    duration: float
    pool: int = 64
    seed: int = 0
    rank_offset: int = 0  # first global rank on this host (multi-host runs)
    total_accelerators: int | None = None  # all hosts together; defaults to ``accelerators``


class LoopLag:
    """How late the event loop wakes a 50 ms timer: when it climbs, the client, not the storage, is the limit."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, time.monotonic() - before - self.interval))

    def summary(self) -> dict[str, float]:
        if not self.lags:
            return {}
        lags = np.array(self.lags) * 1e3
        return {"p50": float(np.percentile(lags, 50)), "p99": float(np.percentile(lags, 99)), "max": float(lags.max())}


async def emulate(
    storage: ReadableStorage,
    spec: DatasetSpec,
    config: EmulationConfig,
    clock: Clock | None = None,
    on_tick: Callable[[Recorder, float], None] | None = None,
    lag: LoopLag | None = None,
) -> Recorder:
    """Run ``config.accelerators`` emulated accelerators for ``config.duration`` seconds.

    ``on_tick(recorder, elapsed)`` is called about once a second (real clock
    only) for live progress.
    """
    clock = clock or RealClock()
    recorder = Recorder(config.accelerators)
    total = config.total_accelerators or config.accelerators
    sampler = Sampler(spec, total, shuffle=config.workload.shuffle, seed=config.seed)
    reader = Reader(storage, config.pool, clock, recorder)
    accelerators = [
        Accelerator(rank, config.rank_offset + rank, config.workload, sampler, reader, clock, recorder)
        for rank in range(config.accelerators)
    ]
    stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    workers = [
        asyncio.ensure_future(accelerator.worker(w))
        for accelerator in accelerators
        for w in range(config.workload.read_threads)
    ]
    helpers: list[asyncio.Future[None]] = []
    if lag is not None:
        helpers.append(asyncio.ensure_future(lag.run()))
    start = clock.now()
    if on_tick is not None:
        async def ticker() -> None:
            while True:
                await asyncio.sleep(1.0)
                on_tick(recorder, clock.now() - start)
        helpers.append(asyncio.ensure_future(ticker()))

    async def timer() -> None:
        await clock.sleep(config.duration)
        stop.set_result(None)

    helpers.append(asyncio.ensure_future(timer()))
    try:
        trainers = [asyncio.ensure_future(accelerator.trainer(stop)) for accelerator in accelerators]
        await asyncio.gather(*trainers)
    finally:
        for task in workers + helpers:
            task.cancel()
        await asyncio.gather(*workers, *helpers, return_exceptions=True)
    return recorder
