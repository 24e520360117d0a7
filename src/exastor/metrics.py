"""Process-wide Prometheus metrics, shared by the gateway's forked workers (prometheus_client's
multiprocess mode: each process writes its values to small mmap files in one directory, and a
scrape in any worker merges them all).

`exastor serve` calls ``enable(DATA/metrics)`` before it forks: the directory is emptied (values of
an earlier run must not be added to this one's), and every metric object below is created. Other
commands and in-process tests never enable metrics: ``get()`` then returns None and every caller
skips its bookkeeping, so nothing below the gateway depends on Prometheus being there.

Series (docs/operations.md, "Metrics", lists them with their meaning):
per request (gateway/metrics.py): ``exastor_requests_total{api,operation,status}``,
``exastor_request_seconds{api,operation}`` (histogram), ``exastor_received_bytes_total{api}``,
``exastor_sent_bytes_total{api}``; background services (worker 0): reducer, scrub, repair and gc
counters and last-pass times; QoS: ``exastor_qos_throttled_total{api,scope}``. Store-wide gauges
(capacity, reduction, backlog, drives, segments) are computed at scrape time by
services/store_metrics.py, not here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# Latency buckets (seconds): small-object requests sit in the first few, multi-GiB streams in the last.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class Metrics:
    """The metric objects of this process. Created once, by ``enable``."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=None)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            # the newest value written by any process (background services run in worker 0 only)
            return Gauge(name, doc, labels, registry=None, multiprocess_mode="mostrecent")

        self.requests = counter("exastor_requests", "Requests answered, by API, operation and HTTP status.",
                                ("api", "operation", "status"))
        self.latency = Histogram("exastor_request_seconds", "Time from the request's arrival to its last "
                                 "response byte, by API and operation.", ("api", "operation"),
                                 buckets=LATENCY_BUCKETS, registry=None)
        self.received = counter("exastor_received_bytes", "Request body bytes received, by API.", ("api",))
        self.sent = counter("exastor_sent_bytes", "Response body bytes sent, by API.", ("api",))
        self.throttled = counter("exastor_qos_throttled", "Requests refused by a QoS limit (503 SlowDown / "
                                 "ServerBusy), by API and the limit's scope (user or bucket).", ("api", "scope"))
        self.quota_refused = counter("exastor_quota_refused", "Writes refused by a capacity quota, by API and the "
                                     "quota's scope (user or bucket).", ("api", "scope"))
        # the background services
        self.reducer_passes = counter("exastor_reducer_passes", "Reducer passes finished.")
        self.reducer_bytes = counter("exastor_reducer_bytes", "Object bytes the reducer has evaluated (rate() is "
                                     "its speed).")
        self.reducer_saved = counter("exastor_reducer_saved_bytes", "Stored bytes the reducer saved "
                                     "(similarity delta and float transforms).")
        self.reducer_last = gauge("exastor_reducer_last_pass_timestamp_seconds", "When the last reducer pass "
                                  "finished (Unix time).")
        self.gc_passes = counter("exastor_gc_passes", "Garbage-collection passes finished.")
        self.gc_reaped = counter("exastor_gc_reaped_chunks", "Unreferenced chunks reaped.")
        self.gc_compacted = counter("exastor_gc_compacted_segments", "Segments compacted.")
        self.gc_reclaimed = counter("exastor_gc_reclaimed_bytes", "Bytes reclaimed by compaction.")
        self.gc_last = gauge("exastor_gc_last_pass_timestamp_seconds", "When the last gc pass finished (Unix time).")
        self.scrub_passes = counter("exastor_scrub_passes", "Scrub passes finished.")
        self.scrub_bytes = counter("exastor_scrub_bytes", "Bytes read and verified by scrub.")
        self.scrub_bad = counter("exastor_scrub_bad", "Bad shards or replicas found by scrub.")
        self.scrub_last = gauge("exastor_scrub_last_pass_timestamp_seconds", "When the last scrub pass finished "
                                "(Unix time).")
        self.repair_shards = counter("exastor_repair_shards", "Shards rebuilt or moved by the repairer.")
        self.repair_segments = counter("exastor_repair_reprotected_segments", "Segments erasure-coded again by "
                                       "the repairer.")
        self.repair_last = gauge("exastor_repair_last_pass_timestamp_seconds", "When the last repair pass "
                                 "finished (Unix time).")


_metrics: Metrics | None = None
_directory: Path | None = None


def enable(directory: Path) -> Metrics:
    """Multiprocess metrics in ``directory`` (emptied first). Call once, before forking workers."""
    global _metrics, _directory
    shutil.rmtree(directory, ignore_errors=True)  # not a drive: the metrics folder in --data
    directory.mkdir(parents=True, exist_ok=True)  # not a drive: the metrics folder in --data
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from prometheus_client import values

    # Chosen by prometheus_client when first imported; choose again in case it was imported earlier.
    values.ValueClass = values.MultiProcessValue()
    _directory = directory
    _metrics = Metrics()
    # Series that only count refusals exist from the start at zero, so rate() and the dashboard see
    # them before the first refusal.
    for api in ("s3", "blob"):
        for scope in ("user", "bucket"):
            _metrics.throttled.labels(api, scope)
            _metrics.quota_refused.labels(api, scope)
    return _metrics


def get() -> Metrics | None:
    return _metrics


def directory() -> Path | None:
    return _directory


def worker_exited(pid: int) -> None:
    """A worker died: its live gauges go (its counters stay, as Prometheus counters must)."""
    if _directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(_directory))


def refused(kind: str, api: str, scope: object) -> None:
    """Count a request refused by a quota (``kind`` 'quota') or a rate limit ('qos')."""
    if _metrics is not None:
        counter = _metrics.quota_refused if kind == "quota" else _metrics.throttled
        counter.labels(api, str(scope or "bucket")).inc()
