"""Garbage collection: reap chunks nobody references, and compact segments full of dead records.

Safety argument (the ordering rule, from the other side):
- A chunk row is deleted only when ``refs = 0`` and it has been dead for ``grace`` seconds; a
  writer that deduplicated against it meanwhile fails its commit (``add_refs`` finds no row)
  and the client retries. So no committed manifest ever points at a reaped chunk.
- A segment is deleted only in a transaction that first moves every row still pointing into it
  and checks none is left; a writer whose uncommitted records sit in that segment fails its
  commit (``register_chunks`` sees the segment 'deleted') and retries.
- Moved records are durable (fsynced) before the rows point at them.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass

from exastor import errors, metrics
from exastor.engine.chunkstore import ChunkStore
from exastor.engine.drives import crash_point
from exastor.engine.record import HEADER_SIZE, decode_header, verify_payload
from exastor.meta import garbage

log = logging.getLogger("exastor.gc")


@dataclass
class GcResult:
    reaped_chunks: int = 0
    compacted_segments: int = 0
    moved_records: int = 0
    reclaimed_bytes: int = 0


class Collector:
    def __init__(self, store: ChunkStore, *, grace_s: float = 600.0, live_threshold: float = 0.5) -> None:
        self.store = store
        self.meta = store.meta
        self.grace_ns = int(grace_s * 1e9)
        self.live_threshold = live_threshold

    def reap(self) -> int:
        cutoff = time.time_ns() - self.grace_ns

        return garbage.reap_dead_chunks(self.meta, cutoff)

    def candidates(self) -> list[tuple[int, int, int]]:
        """(segment, file size, live bytes) of sealed segments worth compacting."""
        cutoff = time.time_ns() - self.grace_ns

        rows = garbage.sealed_segment_usage(self.meta, cutoff, HEADER_SIZE)
        return [(seg, size, live) for seg, size, live in rows
                if size > 0 and live < self.live_threshold * size]

    def compact(self, segment: int) -> tuple[int, int]:
        """Move the live records out of ``segment`` and delete it. Returns (moved, reclaimed bytes)."""
        log_ = self.store.log
        assert segment != log_.open_segment, "never compact the open segment"

        rows = garbage.segment_records(self.meta, segment)
        moves: list[tuple[bytes, int, int, int, int]] = []  # fp, old offset, new segment, new offset
        batch: list[bytes | memoryview] = []
        batch_rows: list[tuple[bytes, int, int]] = []

        def flush() -> None:
            if not batch:
                return
            seg, base = log_.append(b"".join(batch))
            pos = base
            for (fp, old, stored), rec in zip(batch_rows, batch, strict=True):
                moves.append((fp, old, seg, pos, stored))
                pos += len(rec)
            log_.sync(seg, pos)
            batch.clear()
            batch_rows.clear()

        def check(raw: bytes | memoryview, fp: bytes = b"", offset: int = 0) -> None:
            head = decode_header(raw)
            verify_payload(head, memoryview(raw)[HEADER_SIZE:])  # never copy a corrupt record
            if head.fp != fp:
                raise errors.DataCorrupted(f"segment {segment} offset {offset}: fingerprint mismatch")

        layout = log_.layout(segment, fresh=True)
        size = 0
        for fp, offset, stored in rows:
            try:
                raw = log_.pread(segment, offset, HEADER_SIZE + stored)
                check(raw, fp, offset)
            except errors.DataCorrupted:  # a bad replica or shard: read around it (other copies, decoding)
                raw = log_.pread_degraded(segment, offset, HEADER_SIZE + stored,
                                          functools.partial(check, fp=fp, offset=offset))
            batch.append(raw)
            batch_rows.append((fp, offset, stored))
            size += len(raw)
            if size >= 8 << 20:
                flush()
                size = 0
        flush()

        crash_point("gc.copied")
        reclaimed = garbage.finish_compaction(self.meta, segment, [(fp, old, seg, new) for fp, old, seg, new, _ in moves])
        crash_point("gc.committed")
        log_.delete_files(segment, layout)  # replicas, shards or the legacy file, on every drive
        return len(moves), reclaimed

    def run_once(self) -> GcResult:
        result = GcResult(reaped_chunks=self.reap())
        for seg, _size, _live in self.candidates():
            try:
                moved, reclaimed = self.compact(seg)
            except errors.Unavailable:
                continue
            except errors.DataCorrupted as exc:
                log.error("not compacting segment %d: %s (run exastor fsck)", seg, exc.detail)
                continue
            result.compacted_segments += 1
            result.moved_records += moved
            result.reclaimed_bytes += reclaimed
        return result


class CollectorThread(threading.Thread):
    """Worker 0's maintenance thread: garbage collection every ``interval`` seconds, and in between the
    redundancy services: repair every ``EXASTOR_REPAIR_INTERVAL`` seconds (default 10) and a scrub pass
    every ``EXASTOR_SCRUB_INTERVAL`` seconds (default 86400, 0 = never) at ``EXASTOR_SCRUB_RATE`` MB/s
    (default 200)."""

    def __init__(self, collector: Collector, interval: float) -> None:
        super().__init__(name="exastor-gc", daemon=True)
        self.collector = collector
        self.interval = interval
        self.repair_interval = float(os.environ.get("EXASTOR_REPAIR_INTERVAL", "10"))
        self.scrub_interval = float(os.environ.get("EXASTOR_SCRUB_INTERVAL", "86400"))
        self.scrub_rate = float(os.environ.get("EXASTOR_SCRUB_RATE", "200"))
        self._halt = threading.Event()

    def run(self) -> None:
        from exastor.services.repair import Repairer
        from exastor.services.scrub import Scrubber

        now = time.monotonic()
        due = {"gc": now + self.interval, "repair": now + self.repair_interval,
               "scrub": now + self.scrub_interval if self.scrub_interval > 0 else float("inf")}
        tick = max(0.2, min(self.interval, self.repair_interval))
        while not self._halt.wait(tick):
            now = time.monotonic()
            try:
                m = metrics.get()
                if now >= due["gc"]:
                    due["gc"] = now + self.interval
                    res = self.collector.run_once()
                    if res.reaped_chunks or res.compacted_segments:
                        log.info("gc: %s", res)
                    if m is not None:
                        m.gc_passes.inc()
                        m.gc_reaped.inc(res.reaped_chunks)
                        m.gc_compacted.inc(res.compacted_segments)
                        m.gc_reclaimed.inc(res.reclaimed_bytes)
                        m.gc_last.set(time.time())
                if now >= due["scrub"]:
                    due["scrub"] = now + self.scrub_interval
                    scrubbed = Scrubber(self.collector.store.log, rate_mb_s=self.scrub_rate).run_once()
                    if scrubbed.bad_shards or scrubbed.bad_copies:
                        log.warning("scrub: %s", scrubbed.to_json())
                    if m is not None:
                        m.scrub_passes.inc()
                        m.scrub_bytes.inc(scrubbed.bytes_read)
                        m.scrub_bad.inc(len(scrubbed.bad_shards) + len(scrubbed.bad_copies))
                        m.scrub_last.set(time.time())
                if now >= due["repair"]:
                    due["repair"] = now + self.repair_interval
                    fixed = Repairer(self.collector.store.log).run_once()
                    if fixed.repaired_shards or fixed.moved_shards or fixed.reprotected_segments:
                        log.info("repair: %s", fixed.to_json())
                    if m is not None:
                        m.repair_shards.inc(fixed.repaired_shards + fixed.moved_shards)
                        m.repair_segments.inc(fixed.reprotected_segments)
                        m.repair_last.set(time.time())
            except errors.Unavailable as exc:  # the metadata database or a drive is down: one line, not a trace
                log.warning("maintenance pass skipped: %s; will retry", exc.detail)
            except Exception:
                log.exception("maintenance pass failed; will retry")

    def stop(self) -> None:
        self._halt.set()
