"""Logical vs physical bytes, and how the reduction splits into four factors whose product is the total:

dedupe (logical / unique chunk bytes), compression (unique / as written: zstd-1 or raw),
float transforms (as written / with byte grouping alone) and similarity delta (with grouping
alone / stored). The reducer keeps each re-encoded chunk's earlier sizes in ``reduced_chunks``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from exastor.engine.drives import DriveSet, segment_name
from exastor.engine.record import CODEC_DELTA, CODEC_GROUPED, HEADER_SIZE
from exastor.meta import counters, figures, placement
from exastor.meta.contract import Metadata


@dataclass
class StoreStats:
    buckets: int
    objects: int              # object versions holding data (delete markers excluded)
    logical_bytes: int        # what clients stored, every version counted
    unique_bytes: int         # distinct chunk bytes after dedupe, before compression
    stored_bytes: int         # live record bytes (payload + headers) after every reduction
    segment_bytes: int        # bytes of segment files on disk, dead records included
    chunks: int
    segments: int
    written_bytes: int = 0    # live record bytes as the write path stored them (zstd-1 or raw)
    grouped_bytes: int = 0    # ... had the reducer applied byte grouping alone, no deltas
    delta_chunks: int = 0
    grouped_chunks: int = 0
    # Redundancy (docs/reliability.md): bytes on all drives vs the segments' own bytes.
    drives: int = 1
    geometry: str = "1+0"             # the store's target erasure geometry
    segment_data_bytes: int = 0       # live segments' own bytes (before replicas/parity)
    raw_bytes: int = 0                # replica, shard and legacy segment files on every drive
    # The write ledger (meta/placement.py LEDGER), as every seal recorded it since the store began:
    # bytes sealed into segments, bytes their replicated write buffer took on the drives, bytes of
    # their final form (shards). Device bytes written per segment byte = buffer + final.
    written_data_bytes: int = 0
    written_buffer_bytes: int = 0
    written_final_bytes: int = 0
    write_amplification: float = 1.0
    write_amplification_buffer: float = 0.0
    write_amplification_final: float = 1.0

    @property
    def capacity_overhead(self) -> float:
        """Extra flash per byte of segment data (0.5 for 4+2; 0.027 for 146+4)."""
        return self.raw_bytes / self.segment_data_bytes - 1 if self.segment_data_bytes else 0.0

    @property
    def dedupe_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        written = self.written_bytes or self.stored_bytes
        return self.unique_bytes / written if written else 1.0

    @property
    def float_transform_ratio(self) -> float:
        grouped = self.grouped_bytes or self.stored_bytes
        return (self.written_bytes or self.stored_bytes) / grouped if grouped else 1.0

    @property
    def delta_ratio(self) -> float:
        return (self.grouped_bytes or self.stored_bytes) / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def reduction_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["reduction"] = {"total": round(self.reduction_ratio, 4), "dedupe": round(self.dedupe_ratio, 4),
                            "compression": round(self.compression_ratio, 4),
                            "float_transforms": round(self.float_transform_ratio, 4),
                            "similarity_delta": round(self.delta_ratio, 4)}
        out["reduction_ratio"] = out["reduction"]["total"]
        out["capacity_overhead"] = round(self.capacity_overhead, 4)
        return out


def collect(meta: Metadata, segments_dir: os.PathLike | None = None, *, base: Path | None = None) -> StoreStats:
    """The store's figures; ``segments_dir``: also measure the segment files on disk; ``base``: the data
    directory drives are resolved against and whose cluster.key signs for drive servers (a database
    shared by gateways - PostgreSQL - does not say which data directory is this one's)."""
    buckets, objects, logical, chunks, unique, stored, segs, written, grouped, deltas, grouped_n = \
        figures.store_totals(meta, header_size=HEADER_SIZE, delta_codec=CODEC_DELTA, grouped_codec=CODEC_GROUPED)
    drives = DriveSet(meta, base=base)
    on_disk = 0
    if segments_dir is not None and drives.all:
        first = drives.first
        for seg in segs:
            try:
                on_disk += first.io.stat(segment_name(seg)).size
            except OSError:
                pass
    st = StoreStats(buckets, objects, int(logical), int(unique), int(stored), on_disk, chunks, len(segs),
                    int(written), int(grouped), int(deltas), int(grouped_n))
    _redundancy(meta, st, drives)
    drives.close()
    return st


def _redundancy(meta: Metadata, st: StoreStats, drives: DriveSet) -> None:
    """Fill the redundancy figures from the drives and segment layouts in the database."""
    from exastor.engine.shards import shard_name

    segs, reps, placed = figures.sealed_placement(meta)
    live = [d for d in drives.all if d.state != "removed"]
    if not live:
        st.segment_data_bytes = st.raw_bytes = st.segment_bytes
        return
    st.drives = len(live)
    st.geometry = str(drives.geometry())
    data = raw = estimated = 0

    def size(drive: int, name: str) -> int:
        d = drives.get(drive)
        if d is None or not drives.readable(drive):
            return 0
        try:
            return d.io.stat(name).size
        except OSError:
            return 0

    for seg, seg_size, k, m, shard_len in segs:
        data += seg_size
        k, m = (k or 1), (m or 0)
        estimated += seg_size * (m + 1) + (shard_len or 0) * (k + m)  # write buffer, then the stripe
        if shard_len:
            raw += sum(size(drive, shard_name(seg, idx, gen)) for idx, drive, gen in placed.get(seg, []))
        else:
            raw += sum(size(drive, segment_name(seg)) for drive in reps.get(seg, [drives.first.id]))
    st.segment_data_bytes, st.raw_bytes = data, raw
    st.segment_bytes = max(st.segment_bytes, raw)
    ledger = counters.read_counters(meta, placement.LEDGER)
    st.written_data_bytes, st.written_buffer_bytes, st.written_final_bytes = (ledger.get(n, 0) for n in placement.LEDGER)
    if st.written_data_bytes:
        st.write_amplification_buffer = round(st.written_buffer_bytes / st.written_data_bytes, 3)
        st.write_amplification_final = round(st.written_final_bytes / st.written_data_bytes, 3)
        st.write_amplification = round(st.write_amplification_buffer + st.write_amplification_final, 3)
    elif data:  # a store sealed before the ledger existed: as if every segment went through the buffer
        st.write_amplification = round(estimated / data, 3)
