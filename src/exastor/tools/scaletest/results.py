"""What a run measured, and the arithmetic that turns it into AU, throughput and latency.

Accelerator utilisation (AU) follows MLPerf Storage/DLIO: for one emulated
accelerator, AU = time spent computing / wall time of the run (compute plus
time spent waiting for data). The run's AU is the mean over accelerators; a
workload passes when that mean meets its threshold (0.90 for U-Net3D and
ResNet-50, 0.70 for CosmoFlow).

Everything here is plain arithmetic on recorded intervals, so it is tested
against hand-computed timelines.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Latency histogram: log-spaced bins from 1 µs to 1000 s, 50 per decade (~4.7% wide).
# Fixed edges make histograms from several hosts add up exactly.
LATENCY_EDGES = np.logspace(-6, 3, 9 * 50 + 1)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class Recorder:
    """Collects raw events during a run; cheap appends, analysis afterwards."""

    def __init__(self, accelerators: int) -> None:
        self.accelerators = accelerators
        self.requests: list[tuple[float, float, int]] = []  # (start, end, bytes)
        self.steps: list[list[tuple[float, float, float]]] = [[] for _ in range(accelerators)]
        self.windows: list[tuple[float, float]] = [(0.0, 0.0)] * accelerators  # per-rank (start, end)
        self.bytes_read = 0
        self.compute_seconds = 0.0
        self.steps_done = 0

    def request(self, start: float, end: float, nbytes: int) -> None:
        self.requests.append((start, end, nbytes))
        self.bytes_read += nbytes

    def step(self, rank: int, wait_start: float, ready: float, end: float) -> None:
        """One training step: waited from ``wait_start`` to ``ready``, computed until ``end``."""
        self.steps[rank].append((wait_start, ready, end))
        self.compute_seconds += end - ready
        self.steps_done += 1


def overlap_seconds(intervals: np.ndarray, lo: float, hi: float) -> float:
    """Total length of the parts of ``intervals`` (n×2 start/end) that fall inside [lo, hi]."""
    if len(intervals) == 0 or hi <= lo:
        return 0.0
    starts = np.clip(intervals[:, 0], lo, hi)
    ends = np.clip(intervals[:, 1], lo, hi)
    return float(np.sum(ends - starts))


def accelerator_utilisation(compute: np.ndarray, window_start: float, window_end: float) -> float:
    """AU of one accelerator: seconds computing inside the window / the window's length."""
    if window_end <= window_start:
        return 0.0
    return overlap_seconds(compute, window_start, window_end) / (window_end - window_start)


def binned_overlap(intervals: np.ndarray, weights: np.ndarray, t0: float, width: float, nbins: int) -> np.ndarray:
    """Spread each interval's weight uniformly over its span and add it up per time bin.

    With weight = length (seconds busy) this gives busy seconds per bin; with
    weight = bytes it gives bytes per bin, a request's bytes spread over its
    transfer. Vectorised: the cumulative weight delivered by edge e is
    sum(w * clip((e - s) / (end - s), 0, 1)); a bin's share is the difference.
    """
    if nbins <= 0:
        return np.zeros(0)
    edges = t0 + width * np.arange(nbins + 1)
    if len(intervals) == 0:
        return np.zeros(nbins)
    starts, ends = intervals[:, 0], intervals[:, 1]
    spans = np.maximum(ends - starts, 1e-12)
    cumulative = np.zeros(nbins + 1)
    for lo in range(0, len(intervals), 20_000):  # bounded memory for long runs
        s, sp, w = starts[lo:lo + 20_000], spans[lo:lo + 20_000], weights[lo:lo + 20_000]
        fraction = np.clip((edges[None, :] - s[:, None]) / sp[:, None], 0.0, 1.0)
        cumulative += w @ fraction
    return np.diff(cumulative)


def latency_percentiles(latencies: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/p99.9, mean and max, in milliseconds."""
    if len(latencies) == 0:
        return {}
    values = np.percentile(latencies, PERCENTILES)
    result = {f"p{p:g}": float(v) * 1e3 for p, v in zip(PERCENTILES, values, strict=True)}
    result["mean"] = float(np.mean(latencies)) * 1e3
    result["max"] = float(np.max(latencies)) * 1e3
    return result


def percentiles_from_histogram(counts: np.ndarray) -> dict[str, float]:
    """Percentiles (ms) from a LATENCY_EDGES histogram: geometric middle of the bin holding each."""
    total = counts.sum()
    if total == 0:
        return {}
    cumulative = np.cumsum(counts)
    result = {}
    for p in PERCENTILES:
        index = int(np.searchsorted(cumulative, total * p / 100.0))
        index = min(index, len(counts) - 1)
        result[f"p{p:g}"] = float(np.sqrt(LATENCY_EDGES[index] * LATENCY_EDGES[index + 1])) * 1e3
    return result


@dataclass
class RunResult:
    """One training run at one accelerator count: what goes in the table, the JSON and the report."""

    workload: dict[str, Any]
    accelerators: int
    duration: float  # seconds from start to the last accelerator's end
    warmup: float
    au_threshold: float
    au_mean: float
    au_min: float
    au_per_accelerator: list[float]
    passed: bool
    bytes_read: int
    throughput_bytes_per_s: float
    samples_per_s: float
    steps: int
    requests: int
    errors: int
    latency_ms: dict[str, float]
    latency_histogram: list[int]
    series_t: list[float] = field(default_factory=list)  # bin starts, seconds
    series_au: list[float] = field(default_factory=list)  # mean AU of all accelerators per bin
    series_throughput: list[float] = field(default_factory=list)  # bytes/s per bin
    client_cpu_seconds: float = 0.0
    cpu_seconds_per_gb: float = 0.0
    loop_lag_ms: dict[str, float] = field(default_factory=dict)
    hosts: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(**data)


def analyse(
    recorder: Recorder,
    workload: dict[str, Any],
    au_threshold: float,
    samples_per_batch: int,
    warmup: float = 0.0,
    bin_width: float = 1.0,
    errors: int = 0,
    skip_first_step: bool = False,
) -> RunResult:
    """Turn a recorder's raw events into a RunResult.

    Each accelerator's AU window runs from its own start plus ``warmup`` to its
    end; requests and steps before the warm-up still happened but are not
    counted in AU or throughput. ``skip_first_step`` is DLIO's AU: each
    accelerator's first step (the pipeline fill, its wait and its compute) is
    left out of its AU, its window starting where that step ends.
    """
    starts = np.array([w[0] for w in recorder.windows], dtype=float)
    ends = np.array([w[1] for w in recorder.windows], dtype=float)
    t0 = float(starts.min()) if len(starts) else 0.0
    t_end = float(ends.max()) if len(ends) else 0.0
    measure_from = t0 + warmup
    per_rank = []
    steps_counted = 0
    compute_all = []
    for rank, steps in enumerate(recorder.steps):
        array = np.array(steps, dtype=float).reshape(-1, 3)
        compute = array[:, 1:3]
        compute_all.append(compute)
        window_start = starts[rank] + warmup
        au_compute = compute
        if skip_first_step and len(array):
            window_start, au_compute = max(window_start, array[0, 2]), compute[1:]
        per_rank.append(accelerator_utilisation(au_compute, window_start, ends[rank]))
        steps_counted += int(np.sum(array[:, 2] > measure_from)) if len(array) else 0
    requests = np.array(recorder.requests, dtype=float).reshape(-1, 3)
    counted = requests[requests[:, 1] > measure_from] if len(requests) else requests
    measured_seconds = max(t_end - measure_from, 1e-9)
    bytes_counted = int(round(
        binned_overlap(counted[:, :2], counted[:, 2], measure_from, measured_seconds, 1).sum()
    )) if len(counted) else 0
    latencies = counted[:, 1] - counted[:, 0] if len(counted) else np.zeros(0)
    histogram, _ = np.histogram(np.clip(latencies, LATENCY_EDGES[0], LATENCY_EDGES[-1]), LATENCY_EDGES)

    nbins = max(1, int(np.ceil((t_end - t0) / bin_width)))
    all_compute = np.concatenate(compute_all) if compute_all else np.zeros((0, 2))
    busy = binned_overlap(all_compute, all_compute[:, 1] - all_compute[:, 0], t0, bin_width, nbins)
    moved = binned_overlap(requests[:, :2], requests[:, 2], t0, bin_width, nbins)
    # The last bin may be partial: divide by the time it actually covers.
    covered = np.minimum(bin_width, (t_end - t0) - bin_width * np.arange(nbins)).clip(min=1e-9)
    accelerators = max(recorder.accelerators, 1)

    au_values = np.array(per_rank) if per_rank else np.zeros(1)
    return RunResult(
        workload=workload,
        accelerators=recorder.accelerators,
        duration=t_end - t0,
        warmup=warmup,
        au_threshold=au_threshold,
        au_mean=float(au_values.mean()),
        au_min=float(au_values.min()),
        au_per_accelerator=[float(v) for v in per_rank],
        passed=bool(au_values.mean() >= au_threshold),
        bytes_read=bytes_counted,
        throughput_bytes_per_s=bytes_counted / measured_seconds,
        samples_per_s=steps_counted * samples_per_batch / measured_seconds,
        steps=steps_counted,
        requests=int(len(counted)),
        errors=errors,
        latency_ms=latency_percentiles(latencies),
        latency_histogram=[int(c) for c in histogram],
        series_t=[float(x) for x in bin_width * np.arange(nbins)],
        series_au=[float(x) for x in busy / (covered * accelerators)],
        series_throughput=[float(x) for x in moved / covered],
    )


def aggregate(results: list[RunResult]) -> RunResult:
    """Combine per-host results of one distributed run into one (accelerators add up).

    AU is the mean over all accelerators; throughput adds; latency percentiles
    come from the summed histograms; time series are aligned at each host's
    start (hosts start together after a barrier).
    """
    if not results:
        raise ValueError("nothing to aggregate")
    first = results[0]
    per_rank = [au for r in results for au in r.au_per_accelerator]
    au = np.array(per_rank) if per_rank else np.zeros(1)
    histogram = np.sum([np.array(r.latency_histogram) for r in results], axis=0)
    nbins = max(len(r.series_t) for r in results)

    def padded(values: list[float]) -> np.ndarray:
        return np.pad(np.array(values, dtype=float), (0, nbins - len(values)))

    weights = [r.accelerators for r in results]
    no_series = np.zeros(nbins)  # sum()'s start: an array (not its default int 0), so each sum is an array
    series_au = sum((padded(r.series_au) * w for r, w in zip(results, weights, strict=True)),
                    start=no_series) / max(sum(weights), 1)
    cpu = sum(r.client_cpu_seconds for r in results)
    bytes_read = sum(r.bytes_read for r in results)
    return RunResult(
        workload=first.workload,
        accelerators=sum(weights),
        duration=max(r.duration for r in results),
        warmup=first.warmup,
        au_threshold=first.au_threshold,
        au_mean=float(au.mean()),
        au_min=float(au.min()),
        au_per_accelerator=per_rank,
        passed=bool(au.mean() >= first.au_threshold),
        bytes_read=bytes_read,
        throughput_bytes_per_s=sum(r.throughput_bytes_per_s for r in results),
        samples_per_s=sum(r.samples_per_s for r in results),
        steps=sum(r.steps for r in results),
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        latency_ms={
            **percentiles_from_histogram(histogram),
            "mean": sum(r.latency_ms.get("mean", 0.0) * r.requests for r in results) / max(sum(r.requests for r in results), 1),
            "max": max(r.latency_ms.get("max", 0.0) for r in results),
        },
        latency_histogram=[int(c) for c in histogram],
        series_t=[float(i) * (first.series_t[1] - first.series_t[0] if len(first.series_t) > 1 else 1.0)
                  for i in range(nbins)],
        series_au=[float(x) for x in series_au],
        series_throughput=[float(x) for x in sum((padded(r.series_throughput) for r in results), start=no_series)],
        client_cpu_seconds=cpu,
        cpu_seconds_per_gb=cpu / (bytes_read / 1e9) if bytes_read else 0.0,
        loop_lag_ms=max((r.loop_lag_ms for r in results), key=lambda d: d.get("max", 0.0), default={}),
        hosts=sum(r.hosts for r in results),
    )


@dataclass
class CheckpointResult:
    """One checkpoint write-then-read cycle over all ranks."""

    model: str
    ranks: int
    checkpoint_bytes: int
    part_size: int
    write_seconds: float  # time to checkpoint: first shard start to last shard durable
    read_seconds: float
    write_bytes_per_s: float
    read_bytes_per_s: float
    rank_write_seconds: list[float]
    rank_read_seconds: list[float]
    client_cpu_seconds: float = 0.0
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary_rows(result: RunResult) -> list[tuple[str, str]]:
    latency = result.latency_ms
    return [
        ("workload", str(result.workload.get("name", ""))),
        ("accelerators", str(result.accelerators)),
        ("AU mean / min", f"{result.au_mean:.1%} / {result.au_min:.1%}"),
        ("pass (AU >= threshold)", f"{'PASS' if result.passed else 'FAIL'} (threshold {result.au_threshold:.0%})"),
        ("throughput", f"{result.throughput_bytes_per_s / 1e9:.3f} GB/s, {result.samples_per_s:,.1f} samples/s"),
        ("requests / errors", f"{result.requests:,} / {result.errors}"),
        ("latency p50 / p99 / max", " / ".join(f"{latency.get(k, 0):.1f} ms" for k in ("p50", "p99", "max"))),
        ("duration", f"{result.duration:.1f} s (warm-up {result.warmup:.1f} s)"),
        ("client CPU", f"{result.client_cpu_seconds:.1f} s, {result.cpu_seconds_per_gb:.2f} s/GB"),
        ("event-loop lag p99 / max", " / ".join(f"{result.loop_lag_ms.get(k, 0):.1f} ms" for k in ("p99", "max"))),
        ("hosts", str(result.hosts)),
    ]


def write_json(path: str, payload: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")
