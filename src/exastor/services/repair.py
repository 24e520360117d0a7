"""Repairer: rebuild shards that are bad, lost, or on a failed, draining or removed drive.

Each repair is idempotent and crash-safe, by the same ordering rule as writes:
1. the shard's bytes come from the shard itself where its blocks verify (a drain), else are decoded
   from k verified shards, in column ranges of ``STEP`` bytes;
2. they are written under a new generation (a file name no other writer uses: ``shards.gen``,
   allocated from one counter) to a drive that holds no other shard of the stripe: fsynced,
   renamed into place, directory fsynced;
3. one conditional UPDATE moves the row, only if it still names the copy we found (drive and
   generation): the metadata transaction is the only arbiter of which of two racing copies wins;
4. only then is the old file deleted. A loser deletes its own file, which nobody else wrote and no
   row ever named, never the winner's.
A crash before 3 leaves a complete new file nobody points at (its generation is below the row's once
the shard is repaired again: provably superseded, swept); after 3, the old file (superseded, swept).
Nothing a reader needs is ever removed first.

Shards on an *offline* drive (its data is expected back) are rebuilt elsewhere only once it has been
offline for ``EXASTOR_OFFLINE_REPAIR_AFTER`` seconds (default 600): a disk remounted after a reboot
costs nothing, a dead one is covered. When it returns, its superseded copies are swept.

It also re-protects sealed segments stored as plain copies (a one-drive store that gained drives, or
segments sealed while too few drives were healthy) by erasure-coding them.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exastor import errors
from exastor.engine import shards
from exastor.engine.drives import (
    Drive,
    Layout,
    allocate_gens,
    crash_point,
    load_layout,
    mark_shard,
    names_shard,
    shard_salt,
)
from exastor.engine.segments import SegmentLog
from exastor.meta import placement

log = logging.getLogger("exastor.repair")
STEP = 4 << 20
OFFLINE_REPAIR_AFTER_S = float(os.environ.get("EXASTOR_OFFLINE_REPAIR_AFTER", "600"))
Progress = Callable[[int], None]


@dataclass
class RepairResult:
    repaired_shards: int = 0
    moved_shards: int = 0            # drained off a draining/removed drive without decoding
    reprotected_segments: int = 0
    unrepairable: list[tuple[int, int, str]] = field(default_factory=list)
    bytes_written: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Repairer:
    def __init__(self, log_: SegmentLog, *, offline_after_s: float | None = None) -> None:
        self.log = log_
        self.meta = log_.meta
        self.offline_after_s = OFFLINE_REPAIR_AFTER_S if offline_after_s is None else offline_after_s

    def pending(self) -> list[tuple[int, int, int, str]]:
        """(segment, idx, drive, why) for every shard that needs work."""
        offline_before = time.time_ns() - int(self.offline_after_s * 1e9)

        return placement.shards_needing_repair(self.meta, offline_before)

    def run_once(self, progress: Progress | None = None, *, reprotect: bool = True) -> RepairResult:
        res = RepairResult()
        self.log.drives.refresh()
        by_segment: dict[int, list[tuple[int, int, str]]] = {}
        for seg, idx, drive, why in self.pending():
            by_segment.setdefault(seg, []).append((idx, drive, why))
        for seg, items in by_segment.items():
            for idx, drive, why in items:
                try:
                    moved = self.repair_shard(seg, idx, drive, why, res)
                    if moved and progress:
                        progress(1)
                except (errors.DataCorrupted, errors.Unavailable, OSError) as exc:
                    detail = exc.detail if isinstance(exc, errors.StoreError) else str(exc)
                    res.unrepairable.append((seg, idx, detail))
                    log.error("cannot repair shard %d of segment %d: %s", idx, seg, detail)
        if reprotect:
            self.reprotect(res)
        return res

    def repair_shard(self, segment: int, idx: int, old_drive: int, why: str, res: RepairResult,
                     target: Drive | None = None) -> bool:
        lay = load_layout(self.meta, segment)
        if lay is None or lay.state != "sealed" or lay.kind != "ec":
            return False
        current = {row.idx: row for row in lay.shards}
        found = current.get(idx)
        if found is None or found.drive != old_drive:
            return False  # someone else moved it meanwhile
        drives = self.log.drives
        old = drives.get(old_drive)
        draining = why in ("draining", "removed", "rebalance")
        self.log.forget(segment)
        data = self._shard_bytes(lay, idx)
        others = {row.drive for i, row in current.items() if i != idx}
        exclude = others | ({old_drive} if draining or (old is not None and old.state != "active") else set())
        if target is None:
            target = drives.place(1, salt=shard_salt(segment, idx), exclude=exclude, occupied=drives.domains_of(others),
                                  within=drives.group_of(others))[0]
        elif target.id in others:
            return False  # the stripe already has a shard there: moving would put two on one drive
        elif old is not None and _crowds(drives.domains_of(others), old, target):
            return False  # the target's host already holds more of this stripe than the old one's
        elif target.state != "active":
            return False  # never repair into an offline, full, read-only or failed drive
        (gen,) = allocate_gens(self.meta, 1)
        name = shards.shard_name(segment, idx, gen)
        shards.write_shard(target.io, name, segment, idx, lay.k, lay.m, lay.data_len, data, drives.store_tag)
        res.bytes_written += len(data)
        crash_point("repair.written")
        if not mark_shard(self.meta, segment, idx, state="ok", drive=target.id, gen=gen,
                          expect_drive=old_drive, expect_gen=found.gen):
            # Lost the race: the file under our generation is ours alone - unless a rebuild from the
            # drives published it meanwhile, so ask the database before deleting it.
            if not names_shard(self.meta, segment, idx, target.id, gen):
                try:
                    target.io.unlink(name)
                except OSError:
                    pass  # swept later: its generation is below the winner's
                target.io.release([name])
            return False
        crash_point("repair.moved")
        self.log.forget(segment)
        if old is not None and drives.readable(old_drive):
            # The copy our transaction superseded (never on an offline drive: swept when it returns).
            old_name = shards.shard_name(segment, idx, found.gen)
            try:
                old.io.unlink(old_name)
            except OSError:
                pass
            old.io.release([old_name])
        if why in ("draining", "removed", "rebalance"):
            res.moved_shards += 1
        else:
            res.repaired_shards += 1
        return True

    def _shard_bytes(self, lay: Layout, idx: int) -> bytes:
        """The whole shard: its own verified blocks where possible, decoded columns elsewhere."""
        out = []
        for start in range(0, lay.shard_len, STEP):
            n = min(STEP, lay.shard_len - start)
            out.append(self.log.decode_columns(lay, start, n, [idx])[idx])
        return b"".join(out)

    def reprotect(self, res: RepairResult) -> None:
        """Erasure-code sealed segments that are plain copies while the store's geometry wants parity."""
        drives = self.log.drives
        g = drives.seal_geometry()
        if g is None or g.m == 0:
            return

        for seg in placement.unprotected_sealed_segments(self.meta):
            try:
                self.log.seal(seg, expect_state="sealed")
                lay = load_layout(self.meta, seg)
                if lay is not None and lay.kind == "ec":
                    res.reprotected_segments += 1
            except (errors.DataCorrupted, errors.Unavailable, OSError) as exc:
                log.error("cannot re-protect segment %d: %s", seg, exc)

    def rebalance(self, onto: Drive, progress: Progress | None = None) -> RepairResult:
        """Move shards from the fullest drives onto ``onto`` until it holds about its share."""
        res = RepairResult()
        drives = self.log.drives
        drives.refresh()
        counts = drives.shard_counts()
        live = [d for d in drives.all if d.state in ("active", "full")]
        if not live:
            return res
        share = sum(counts.get(d.id, 0) for d in live) // len(live)

        have = counts.get(onto.id, 0)
        for seg, idx, drive in placement.healthy_shards_off(self.meta, onto.id):
            if have >= share:
                break
            if counts.get(drive, 0) <= share:
                continue
            try:
                if self.repair_shard(seg, idx, drive, "rebalance", res, target=onto):
                    have += 1
                    counts[drive] = counts.get(drive, 0) - 1
                    if progress:
                        progress(1)
            except (errors.DataCorrupted, errors.Unavailable, OSError) as exc:
                res.unrepairable.append((seg, idx, str(exc)))
        return res


def _crowds(occupied: Counter[tuple[str, str]], old: Drive, target: Drive) -> bool:
    """Whether moving a shard from ``old`` to ``target`` puts more of its stripe on one host than
    were on ``old``'s (placement by failure domain: engine/drives.py, ``spread``)."""
    def on(host: str) -> int:
        return sum(n for (h, _rack), n in occupied.items() if h == host)

    return on(target.host) > on(old.host)
