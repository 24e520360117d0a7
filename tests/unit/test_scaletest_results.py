"""AU, throughput and latency arithmetic against hand-computed cases."""

import numpy as np
import pytest

from exastor.tools.scaletest.results import (
    LATENCY_EDGES,
    Recorder,
    accelerator_utilisation,
    aggregate,
    analyse,
    binned_overlap,
    latency_percentiles,
    overlap_seconds,
    percentiles_from_histogram,
)


def test_overlap_clips_to_the_window():
    intervals = np.array([[0.0, 1.0], [2.0, 4.0], [5.0, 6.0]])
    assert overlap_seconds(intervals, 0.5, 5.5) == pytest.approx(0.5 + 2.0 + 0.5)
    assert overlap_seconds(intervals, 6.0, 9.0) == 0.0


def test_au_is_compute_over_wall():
    # computed 0.2-0.5, 0.5-0.8, 0.8-1.1, 1.1-1.4 over a 1.4 s window: 1.2 / 1.4
    compute = np.array([[0.2, 0.5], [0.5, 0.8], [0.8, 1.1], [1.1, 1.4]])
    assert accelerator_utilisation(compute, 0.0, 1.4) == pytest.approx(1.2 / 1.4)
    # leaving out a 0.2 s warm-up (the pipeline fill) gives full utilisation
    assert accelerator_utilisation(compute, 0.2, 1.4) == pytest.approx(1.0)


def test_binned_overlap_spreads_weight_over_time():
    # 100 bytes moved over [0.5, 1.5]: half lands in each 1 s bin; 30 bytes over [1.2, 1.8] in bin 1
    intervals = np.array([[0.5, 1.5], [1.2, 1.8]])
    bins = binned_overlap(intervals, np.array([100.0, 30.0]), 0.0, 1.0, 3)
    assert bins == pytest.approx([50.0, 80.0, 0.0])
    assert bins.sum() == pytest.approx(130.0)


def test_latency_percentiles_in_ms():
    latencies = np.arange(1, 101) / 1000.0  # 1..100 ms
    result = latency_percentiles(latencies)
    assert result["p50"] == pytest.approx(50.5)
    assert result["max"] == pytest.approx(100.0)
    assert result["mean"] == pytest.approx(50.5)


def test_histogram_percentiles_within_one_bin():
    latencies = np.random.default_rng(1).lognormal(np.log(0.01), 0.5, 50_000)
    counts, _ = np.histogram(latencies, LATENCY_EDGES)
    exact = latency_percentiles(latencies)
    approx = percentiles_from_histogram(counts)
    for key in ("p50", "p90", "p99"):
        assert approx[key] == pytest.approx(exact[key], rel=0.05)


def _recorder_two_accelerators() -> Recorder:
    # rank 0: waits 0-1, computes 1-2, 2-3  -> AU 2/3
    # rank 1: computes 0-1, waits 1-2, computes 2-3 -> AU 2/3 ... then a third step 3-4 -> window 0-4, AU 3/4
    recorder = Recorder(2)
    recorder.step(0, 0.0, 1.0, 2.0)
    recorder.step(0, 2.0, 2.0, 3.0)
    recorder.windows[0] = (0.0, 3.0)
    recorder.step(1, 0.0, 0.0, 1.0)
    recorder.step(1, 1.0, 2.0, 3.0)
    recorder.step(1, 3.0, 3.0, 4.0)
    recorder.windows[1] = (0.0, 4.0)
    recorder.request(0.0, 1.0, 400)
    recorder.request(1.0, 2.0, 400)
    recorder.request(2.0, 4.0, 800)
    return recorder


def test_analyse_hand_computed():
    result = analyse(_recorder_two_accelerators(), {"name": "t"}, au_threshold=0.7, samples_per_batch=4)
    assert result.au_per_accelerator == pytest.approx([2 / 3, 3 / 4])
    assert result.au_mean == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert result.au_min == pytest.approx(2 / 3)
    assert result.passed  # 0.708 >= 0.7
    assert result.duration == pytest.approx(4.0)
    assert result.bytes_read == 1600
    assert result.throughput_bytes_per_s == pytest.approx(400.0)
    assert result.steps == 5 and result.samples_per_s == pytest.approx(5 * 4 / 4.0)
    # per-second AU: bin 0: rank1 busy (1 of 2) = 0.5; bin 1: rank0 = 0.5; bin 2: both = 1; bin 3: rank1 = 0.5
    assert result.series_au == pytest.approx([0.5, 0.5, 1.0, 0.5])
    assert result.series_throughput == pytest.approx([400, 400, 400, 400])
    assert result.latency_ms["p50"] == pytest.approx(1000.0)


def test_analyse_with_warmup_leaves_out_the_start():
    result = analyse(_recorder_two_accelerators(), {}, au_threshold=0.9, samples_per_batch=1, warmup=1.0)
    # rank 0 over 1-3: computes 1-3 -> 1.0; rank 1 over 1-4: computes 2-4 -> 2/3
    assert result.au_per_accelerator == pytest.approx([1.0, 2 / 3])
    assert result.bytes_read == 1200  # the first request ended at the warm-up's edge
    assert result.throughput_bytes_per_s == pytest.approx(1200 / 3.0)


def test_skip_first_step_is_dlios_au():
    result = analyse(_recorder_two_accelerators(), {}, au_threshold=0.9, samples_per_batch=1, skip_first_step=True)
    # rank 0: first step ends at 2.0; then computes 2-3 over 2-3 -> 1.0
    # rank 1: first step ends at 1.0; then computes 2-3, 3-4 over 1-4 -> 2/3
    assert result.au_per_accelerator == pytest.approx([1.0, 2 / 3])
    assert result.bytes_read == 1600  # throughput keeps everything, as DLIO's does


def test_aggregate_adds_hosts_up():
    one = analyse(_recorder_two_accelerators(), {"name": "t"}, 0.7, 4)
    two = analyse(_recorder_two_accelerators(), {"name": "t"}, 0.7, 4)
    one.client_cpu_seconds = two.client_cpu_seconds = 1.0
    total = aggregate([one, two])
    assert total.accelerators == 4 and total.hosts == 2
    assert total.au_mean == pytest.approx(one.au_mean)
    assert total.throughput_bytes_per_s == pytest.approx(800.0)
    assert total.bytes_read == 3200
    assert sum(total.latency_histogram) == 6
    assert total.latency_ms["max"] == pytest.approx(2000.0) and total.latency_ms["mean"] == pytest.approx(one.latency_ms["mean"])
    assert total.series_au == pytest.approx(one.series_au)
    assert total.cpu_seconds_per_gb == pytest.approx(2.0 / 3.2e-6)
