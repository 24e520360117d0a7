"""Scrubber: read every shard of every sealed segment and check its per-block checksums.

A shard that is missing, on a failed drive, or has a bad block or trailer is marked ``bad`` in the
``shards`` table; the repairer rebuilds it. A shard on an offline drive is skipped (counted in
``offline_shards``): its data is expected back, and the repairer decides when to stop waiting. Nothing is decoded: the checksums say which shard is bad.
Segments kept as whole-file copies (one drive, or too few drives at seal time) are checked record by
record instead. Restartable: a scrub pass only reads and marks, so stopping it anywhere loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exastor import errors
from exastor.drives import process_short
from exastor.engine import shards
from exastor.engine.drives import load_layout, mark_shard, segment_name
from exastor.engine.scan import walk
from exastor.engine.segments import SegmentLog

Progress = Callable[[int], None]


@dataclass
class ScrubResult:
    shards_checked: int = 0
    copies_checked: int = 0                       # whole-segment replicas / legacy files
    bytes_read: int = 0
    bad_shards: list[tuple[int, int, str]] = field(default_factory=list)   # (segment, idx, why)
    bad_copies: list[tuple[int, int, str]] = field(default_factory=list)   # (segment, drive, why)
    offline_shards: int = 0                       # not checked: on an offline drive
    skipped: int = 0                              # not checked: this process was short of descriptors or
                                                  # memory (drives.base.PROCESS_ERRNOS); the next pass will
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_read / 1e6 / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["mb_per_s"] = round(self.mb_per_s, 1)
        return d


class Scrubber:
    def __init__(self, log: SegmentLog, *, rate_mb_s: float = 0.0) -> None:
        self.log = log
        self.meta = log.meta
        self.rate = rate_mb_s * 1e6  # bytes per second; 0 = as fast as the drives go

    def _throttle(self, started: float, done: int) -> None:
        if self.rate > 0:
            ahead = done / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def sealed_segments(self) -> list[int]:
        return [seg for seg, state, _ in self.meta.segments() if state == "sealed"]

    def run_once(self, progress: Progress | None = None, *, mark: bool = True, copies: bool = True) -> ScrubResult:
        res = ScrubResult()
        started = time.monotonic()
        drives = self.log.drives
        drives.refresh()
        for seg in self.sealed_segments():
            lay = load_layout(self.meta, seg)
            if lay is None or lay.state != "sealed":
                continue  # compacted meanwhile
            if lay.kind == "ec":
                for idx, drive, state, gen in lay.shards:
                    why = None
                    d = drives.get(drive)
                    if drives.offline(drive):
                        res.offline_shards += 1
                        continue
                    if d is None or not drives.readable(drive):
                        why = f"drive {drive} is {d.state if d else 'unknown'}"
                    else:
                        try:
                            n, bad = shards.verify_file(d.io, shards.shard_name(seg, idx, gen))
                            res.bytes_read += n
                            if progress:
                                progress(n)
                            if bad:
                                why = f"bad blocks {bad[:8]}"
                        except FileNotFoundError:
                            why = "shard file missing"
                        except OSError as exc:
                            if process_short(exc):  # says nothing about the shard or the drive
                                res.skipped += 1
                                continue
                            why = f"read error: {exc}"
                            drives.failed_io(drive, exc)
                            if drives.offline(drive):  # it was the whole drive going away
                                res.offline_shards += 1
                                continue
                        except errors.DataCorrupted as exc:
                            why = exc.detail
                    res.shards_checked += 1
                    if why is not None:
                        res.bad_shards.append((seg, idx, why))
                        if mark and state == "ok":
                            # unless it moved meanwhile (repair, drain): then it is another file
                            mark_shard(self.meta, seg, idx, state="bad", expect_drive=drive, expect_gen=gen)
                    self._throttle(started, res.bytes_read)
            elif copies:
                held = list(lay.replicas) if lay.kind == "replicas" else [drives.first.id]
                for drive in held:
                    d = drives.get(drive)
                    if d is None or not drives.readable(drive):
                        continue
                    why = None
                    try:
                        name = segment_name(seg)
                        buf = d.io.pread(name, 0, d.io.stat(name).size)
                        res.bytes_read += len(buf)
                        if progress:
                            progress(len(buf))
                        scan = walk(buf)
                        if scan.damaged or scan.end != len(buf):
                            why = "a record fails its checksum"
                    except OSError as exc:
                        if process_short(exc):
                            res.skipped += 1
                            continue
                        why = f"read error: {exc}"
                    res.copies_checked += 1
                    if why is not None:
                        res.bad_copies.append((seg, drive, why))
                    self._throttle(started, res.bytes_read)
        res.seconds = time.monotonic() - started
        return res

