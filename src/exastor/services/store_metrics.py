"""Store-wide figures for /metrics and the console: capacity, the reduction split, the reducer's
backlog, drives and their health, segment states, shards waiting for repair.

They are computed from the database and the drives, not counted per request: the count of live
objects or the bytes after dedupe cannot be kept as counters by processes that come and go. The
computation scans tables (stats.collect sums the chunk index), so it runs at most every
``max_age`` seconds, in a background thread once a first figure exists: a scrape never waits on
it and costs the rendering of a few dozen series (tests/api/test_metrics.py holds it under 50 ms).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from exastor import errors
from exastor.drives import SUBDIRS, DriveIO
from exastor.engine.drives import DriveSet
from exastor.meta import figures as store_figures
from exastor.meta.contract import Metadata
from exastor.services import reduce_control
from exastor.services.stats import StoreStats, collect

log = logging.getLogger("exastor.metrics")

STAGES = (("logical", "logical_bytes"), ("after_dedupe", "unique_bytes"), ("after_compression", "written_bytes"),
          ("after_float_transforms", "grouped_bytes"), ("stored", "stored_bytes"))


@dataclass
class DriveFigures:
    id: int
    path: str
    state: str
    capacity_bytes: int | None
    free_bytes: int | None
    used_bytes: int            # this store's segment replicas and shards on the drive


@dataclass
class StoreSnapshot:
    stats: StoreStats
    backlog_objects: int       # object versions the reducer has not evaluated yet
    backlog_bytes: int         # ... and their logical bytes
    reducer: reduce_control.ReducerState
    drives: list[DriveFigures] = field(default_factory=list)
    segments: dict[str, int] = field(default_factory=dict)   # open, sealed, erasure_coded
    shards_needing_repair: int = 0
    taken: float = 0.0         # Unix time
    seconds: float = 0.0       # how long computing it took

    @property
    def physical_bytes(self) -> int:
        """This store's files on every drive (replicas of open segments included, unlike stats' raw_bytes,
        which counts sealed segments only)."""
        return sum(d.used_bytes for d in self.drives)

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict
        return {"stats": self.stats.to_json(), "reducer": {**self.reducer.to_json(),
                                                           "backlog_objects": self.backlog_objects,
                                                           "backlog_bytes": self.backlog_bytes},
                "drives": [asdict(d) for d in self.drives], "segments": self.segments,
                "shards_needing_repair": self.shards_needing_repair, "physical_bytes": self.physical_bytes,
                "taken": self.taken,
                "seconds": round(self.seconds, 4)}


def backlog(meta: Metadata) -> tuple[int, int]:
    """(object versions, logical bytes) written after the reducer's cursor: what it has yet to see."""
    return store_figures.written_after_counter(meta, "reducer_seq")


def _used(io: DriveIO) -> int:
    """Bytes of segment and shard files on a drive (through the drive I/O seam)."""
    total = 0
    for sub in SUBDIRS:
        try:
            for name in io.list(sub):
                if name.startswith("seg-"):
                    with contextlib.suppress(FileNotFoundError):  # deleted since the listing
                        total += io.stat(f"{sub}/{name}").size
        except OSError:
            pass  # a failed, missing or offline drive: its state says so
    return total


def take(meta: Metadata, drives: DriveSet | None = None) -> StoreSnapshot:
    started = time.monotonic()
    stats = collect(meta, None)
    objects, size = backlog(meta)

    rows, segs, bad = store_figures.store_health(meta)
    figures = []
    for drive_id, path, state in rows:
        capacity = free = None
        used = 0
        d = drives.get(int(drive_id)) if drives is not None else None
        if d is not None and state != "offline":  # an offline drive's directory may be another's
            try:
                space = d.io.space()
                capacity, free = space.total, space.free
            except OSError:
                pass
            used = _used(d.io)
        figures.append(DriveFigures(int(drive_id), str(path), str(state), capacity, free, used))
    return StoreSnapshot(stats, objects, size, reduce_control.state(meta), figures, segs, bad, time.time(),
                         time.monotonic() - started)


class StoreFigures:
    """The newest snapshot, refreshed in the background when older than ``max_age`` seconds."""

    def __init__(self, meta: Metadata, drives: DriveSet | None = None, max_age: float = 5.0) -> None:
        self.meta = meta
        self.drives = drives
        self.max_age = max_age
        self._snapshot: StoreSnapshot | None = None
        self._lock = threading.Lock()
        self._compute = threading.Lock()
        self._refreshing = False

    def _refresh(self) -> None:
        try:
            snap = take(self.meta, self.drives)
            with self._lock:
                self._snapshot = snap
        except errors.Unavailable as exc:  # the metadata database is down: keep the last figures
            log.warning("computing the store figures skipped: %s", exc.detail)
        except Exception:  # noqa: BLE001 - a failed refresh keeps the last figures; logged, retried later
            log.exception("computing the store figures failed")
        finally:
            with self._lock:
                self._refreshing = False

    def current(self, *, fresh: bool = False) -> StoreSnapshot:
        """The newest snapshot. Only the first call (or ``fresh``) computes in the caller's thread;
        after that a stale snapshot is returned at once and refreshed in the background."""
        if not fresh:
            with self._lock:
                snap = self._snapshot
                if snap is not None:
                    if time.time() - snap.taken > self.max_age and not self._refreshing:
                        self._refreshing = True
                        threading.Thread(target=self._refresh, name="exastor-store-figures", daemon=True).start()
                    return snap
        with self._compute:  # one computation at a time in the caller's thread
            with self._lock:
                if self._snapshot is not None and not fresh:
                    return self._snapshot
            snap = take(self.meta, self.drives)
            with self._lock:
                self._snapshot = snap
            return snap

    def collect(self) -> Iterator[Any]:
        """prometheus_client collector protocol."""
        from prometheus_client.core import GaugeMetricFamily

        snap = self.current()
        st = snap.stats

        def one(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield one("exastor_buckets", "Buckets (containers).", st.buckets)
        yield one("exastor_objects", "Object versions holding data (delete markers excluded).", st.objects)
        data = GaugeMetricFamily("exastor_data_bytes", "Bytes at each reduction stage: logical (what clients "
                                 "stored, every version), after dedupe, after compression, after float "
                                 "transforms, stored (after similarity delta).", labels=["stage"])
        for stage, attr in STAGES:
            data.add_metric([stage], getattr(st, attr) or (st.stored_bytes if attr != "logical_bytes" else 0))
        yield data
        yield one("exastor_physical_bytes", "Bytes on all drives: open segments' replicas and sealed segments' "
                  "shards or files, dead records included until compaction.", snap.physical_bytes)
        yield one("exastor_reduction_saved_bytes", "Logical bytes minus stored bytes: what reduction saved, before "
                  "redundancy.", max(0, st.logical_bytes - st.stored_bytes))
        ratio = GaugeMetricFamily("exastor_reduction_ratio", "Reduction factors; their product is the total.",
                                  labels=["factor"])
        for factor, value in (("total", st.reduction_ratio), ("dedupe", st.dedupe_ratio),
                              ("compression", st.compression_ratio), ("float_transforms", st.float_transform_ratio),
                              ("similarity_delta", st.delta_ratio)):
            ratio.add_metric([factor], value)
        yield ratio
        yield one("exastor_capacity_overhead_ratio", "Extra flash per byte of segment data for redundancy.",
                  st.capacity_overhead)
        yield one("exastor_reducer_backlog_bytes", "Logical bytes written since the reducer's cursor (not yet "
                  "reduced).", snap.backlog_bytes)
        yield one("exastor_reducer_backlog_objects", "Object versions not yet reduced.", snap.backlog_objects)
        yield one("exastor_reducer_paused", "1 while an operator has paused the reducer (exastor reduce pause).",
                  1 if snap.reducer.paused else 0)
        labels = ["drive", "path"]
        capacity = GaugeMetricFamily("exastor_drive_capacity_bytes", "Size of the drive's file system.",
                                     labels=labels)
        free = GaugeMetricFamily("exastor_drive_free_bytes", "Free bytes on the drive's file system.", labels=labels)
        used = GaugeMetricFamily("exastor_drive_used_bytes", "This store's segment and shard bytes on the drive.",
                                 labels=labels)
        state = GaugeMetricFamily("exastor_drive_state", "1 for the drive's current state (active, full, readonly, "
                                  "failed, draining).", labels=[*labels, "state"])
        healthy = GaugeMetricFamily("exastor_drive_healthy", "1 while the drive is active, else 0.", labels=labels)
        for d in snap.drives:
            key = [str(d.id), d.path]
            if d.capacity_bytes is not None:
                capacity.add_metric(key, d.capacity_bytes)
                free.add_metric(key, d.free_bytes or 0)
            used.add_metric(key, d.used_bytes)
            state.add_metric([*key, d.state], 1)
            healthy.add_metric(key, 1 if d.state == "active" else 0)
        yield from (capacity, free, used, state, healthy)
        segments = GaugeMetricFamily("exastor_segments", "Segments by state: open (replicated write buffer), "
                                     "sealed, and of those erasure-coded.", labels=["state"])
        for name, n in snap.segments.items():
            segments.add_metric([name], n)
        yield segments
        yield one("exastor_shards_needing_repair", "Shards marked bad and queued for the repairer.",
                  snap.shards_needing_repair)
        yield one("exastor_store_figures_age_seconds", "Age of the store-wide figures in this scrape.",
                  max(0.0, time.time() - snap.taken))
        yield one("exastor_store_figures_compute_seconds", "How long computing the store-wide figures took.",
                  snap.seconds)
