"""Logical vs physical bytes, and how the reduction splits into dedupe and compression."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from exastor.engine.record import HEADER_SIZE
from exastor.engine.segments import segment_path
from exastor.meta.store import Metadata


@dataclass
class StoreStats:
    buckets: int
    objects: int              # object versions holding data (delete markers excluded)
    logical_bytes: int        # what clients stored, every version counted
    unique_bytes: int         # distinct chunk bytes after dedupe, before compression
    stored_bytes: int         # live record bytes (payload + headers) after compression
    segment_bytes: int        # bytes of segment files on disk, dead records included
    chunks: int
    segments: int

    @property
    def dedupe_ratio(self) -> float:
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else 1.0

    @property
    def reduction_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out["reduction"] = {"total": round(self.reduction_ratio, 4), "dedupe": round(self.dedupe_ratio, 4),
                            "compression": round(self.compression_ratio, 4)}
        out["reduction_ratio"] = out["reduction"]["total"]
        return out


def collect(meta: Metadata, segments_dir: os.PathLike | None = None) -> StoreStats:
    def q(cur: Any) -> tuple:
        cur.execute("SELECT COUNT(*) FROM buckets")
        buckets = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE delete_marker = 0")
        objects, logical = cur.fetchone()
        cur.execute(f"SELECT COUNT(*), COALESCE(SUM(raw_len), 0), COALESCE(SUM(stored_len + {HEADER_SIZE}), 0) "
                    "FROM chunks WHERE refs > 0")
        chunks, unique, stored = cur.fetchone()
        cur.execute("SELECT id FROM segments WHERE state != 'deleted'")
        segs = [r[0] for r in cur.fetchall()]
        return buckets, objects, logical, chunks, unique, stored, segs

    buckets, objects, logical, chunks, unique, stored, segs = meta.runner.read(q)
    on_disk = 0
    if segments_dir is not None:
        for seg in segs:
            try:
                on_disk += segment_path(segments_dir, seg).stat().st_size  # type: ignore[arg-type]
            except FileNotFoundError:
                pass
    return StoreStats(buckets, objects, int(logical), int(unique), int(stored), on_disk, chunks, len(segs))
