"""Rebuild the layout tables (``segments``, ``segment_layout``, ``shards``, ``replicas``) from the files
on the drives alone: part of ``exastor fsck --rebuild-index`` (docs/format.md, "Rebuilding the index").

Every file says what it is. A shard file ends with a trailer naming its segment, its index, k, m,
``shard_len`` and ``data_len`` (engine/shards.py), checked by its own checksums; a segment file
(an open segment's replica, or a sealed segment kept whole) starts with a header naming its segment.
For each segment found:

- a complete stripe (k + m shards agreeing on k, m, shard_len, data_len) makes it a sealed,
  erasure-coded segment, whatever else lies around (replicas left by a crash after the seal
  committed are orphans, deleted at the next start);
- otherwise whole copies make it a segment of replicas: open if the database still says so (the next
  start seals it, as after a crash), else sealed (the repairer erasure-codes sealed whole copies
  once the drives allow);
- otherwise k or more shards of one stripe make it erasure-coded with the missing shards recorded
  as ``bad`` (queued for repair: ``fsck --repair`` or the running server rebuilds them);
- a segment the database marks ``deleted`` stays deleted (its files are orphans), and a segment
  whose rows agree with the files is left as it is (a one-drive store's plain files included).

A segment with no usable file keeps whatever rows it had; the chunk scan that follows reports the
chunks lost with it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from exastor import errors
from exastor.engine import shards as shardfiles
from exastor.engine.drives import DriveSet
from exastor.engine.record import SEGMENT_HEADER_SIZE, parse_segment_header
from exastor.meta import placement
from exastor.meta.contract import Metadata

log = logging.getLogger("exastor.relayout")

_SEGMENT_NAME = re.compile(r"^seg-([0-9a-f]{16})\.log$")


@dataclass
class LayoutReport:
    ec_segments: int = 0          # recorded as erasure-coded stripes
    replica_segments: int = 0     # recorded as whole copies
    unchanged_segments: int = 0   # rows already agreed with the files
    missing_shards: int = 0       # shards of a stripe not found: recorded 'bad', queued for repair
    changed_meanwhile: int = 0    # plans dropped: another process changed the segment's rows meanwhile
    no_files: list[int] = field(default_factory=list)  # segments the database knows with no usable file


@dataclass(frozen=True, slots=True)
class _Found:
    shards: dict[int, dict[int, list[tuple[int, shardfiles.ShardInfo, int]]]]  # seg -> idx -> [(drive, info, gen)]
    copies: dict[int, list[tuple[int, int, int]]]                         # seg -> [(drive, size, created_ns)]


def _scan(drives: DriveSet) -> _Found:
    found = _Found({}, {})
    for d in drives.all:
        if not drives.readable(d.id):
            continue
        try:
            shard_names = d.io.list("shards")
        except OSError:
            shard_names = []
        for base in shard_names:
            name = f"shards/{base}"
            parsed = shardfiles.parse_shard_name(name)
            if parsed is None:
                continue  # temporary files of an interrupted write, anything else
            seg, idx, gen = parsed
            try:
                info = shardfiles.read_info(d.io, name)
            except (OSError, errors.DataCorrupted) as exc:
                log.warning("drive %d: ignoring shard file %s: %s", d.id, name, exc)
                continue
            if info.segment != seg or info.index != idx or idx >= info.k + info.m:
                log.warning("drive %d: shard file %s names another shard", d.id, name)
                continue
            if info.store_tag not in (0, drives.store_tag):
                log.warning("drive %d: shard file %s belongs to another store", d.id, name)
                continue
            found.shards.setdefault(seg, {}).setdefault(idx, []).append((d.id, info, gen))
        try:
            segment_names = d.io.list("segments")
        except OSError:
            segment_names = []
        for base in segment_names:
            match = _SEGMENT_NAME.match(base)
            if match is None:
                continue
            seg = int(match[1], 16)
            name = f"segments/{base}"
            try:
                head = parse_segment_header(d.io.pread(name, 0, SEGMENT_HEADER_SIZE))
                size = d.io.stat(name).size
            except OSError:
                continue
            if head is None or head[0] != seg or head[2] not in (0, drives.store_tag):
                log.warning("drive %d: %s is not segment %d of this store", d.id, name, seg)
                continue
            found.copies.setdefault(seg, []).append((d.id, size, head[1]))
    return found


def _best_stripe(by_idx: dict[int, list[tuple[int, shardfiles.ShardInfo, int]]]
                 ) -> tuple[tuple[int, int, int, int], dict[int, list[tuple[int, int]]]] | None:
    """The geometry (k, m, shard_len, data_len) with the most shards found, and idx -> [(drive, gen)]
    (the newest generation first: an older one on another drive is a superseded copy)."""
    groups: dict[tuple[int, int, int, int], dict[int, list[tuple[int, int]]]] = {}
    for idx, found in by_idx.items():
        for drive, info, gen in sorted(found, key=lambda f: -f[2]):
            key = (info.k, info.m, info.shard_len, info.data_len)
            groups.setdefault(key, {}).setdefault(idx, []).append((drive, gen))
    if not groups:
        return None
    key = max(groups, key=lambda g: (len(groups[g]) >= g[0], len(groups[g]) - g[0] - g[1], len(groups[g])))
    return key, groups[key]


def rebuild_layout(meta: Metadata, drives: DriveSet) -> LayoutReport:
    """Make the layout tables agree with the files on the readable drives (see the module docstring)."""
    report = LayoutReport()
    drives.refresh()

    # The rows first, then the files: a seal, repair or move that commits after this snapshot changes
    # rows the transaction below compares with, so a plan made from files that moved is dropped.
    snapshot = placement.layout_snapshot(meta)
    old_segs, old_lays, old_shards, old_reps = snapshot
    found = _scan(drives)
    now = time.time_ns()
    first = drives.first.id
    all_ids = [d.id for d in drives.all if d.state != "removed"]
    plans: list[tuple[int, tuple, tuple, list[tuple[int, int, str, int]], list[int]]] = []
    for seg in sorted(set(found.shards) | set(found.copies) | set(old_segs)):
        old = old_segs.get(seg)
        if old is not None and old[0] == "deleted":
            continue
        stripe = _best_stripe(found.shards.get(seg, {}))
        copies = found.copies.get(seg, [])
        created = old[2] if old is not None else min((c for _, _, c in copies), default=now)
        complete = stripe is not None and len(stripe[1]) == stripe[0][0] + stripe[0][1]
        decodable = stripe is not None and len(stripe[1]) >= stripe[0][0]
        # A segment the database says is open and whose copies exist is left to its sealer (a running
        # writer, or the next start): shards beside it may be a seal in progress that has not committed.
        still_open = old is not None and old[0] == "open" and copies
        if not still_open and (complete or (decodable and not copies)):
            assert stripe is not None
            (k, m, shard_len, data_len), where = stripe
            before = old_shards.get(seg, {})
            rows: list[tuple[int, int, str, int]] = []
            used = {copies_of[0][0] for copies_of in where.values()}
            for idx in range(k + m):
                prev = before.get(idx)
                if idx in where:
                    if prev is not None and (prev[0], prev[2]) in where[idx]:  # the row agrees: kept
                        drive, state, gen = prev
                    else:
                        (drive, gen), state = where[idx][0], "ok"
                else:  # lost: a row the repairer will rebuild, on a drive holding no other shard of the stripe
                    free = [i for i in all_ids if i not in used]
                    drive = prev[0] if prev is not None and prev[0] not in used else (free or all_ids or [first])[0]
                    gen = prev[2] if prev is not None else 0
                    used.add(drive)
                    state = "bad"
                    report.missing_shards += 1
                rows.append((idx, drive, state, gen))
            if (old is not None and old[0] == "sealed" and old_lays.get(seg) == (k, m, shard_len, data_len)
                    and before == {i: (d, st, g) for i, d, st, g in rows} and not old_reps.get(seg)):
                report.unchanged_segments += 1
                continue
            plans.append((seg, ("sealed", data_len, created), (k, m, shard_len, data_len), rows, []))
            report.ec_segments += 1
        elif copies:
            holders = sorted({d for d, _, _ in copies})
            lay = old_lays.get(seg)
            if old is not None and ((lay is None and holders == [first] and seg not in old_shards)
                                    or (lay is not None and lay[2] == 0 and set(holders) == old_reps.get(seg))):
                report.unchanged_segments += 1  # a plain file on drive 0, or whole copies the rows name
                continue
            if old is not None and old[0] == "open":
                state, size, layout = "open", old[1], (1, len(holders) - 1, 0, 0)
            else:
                size = max(s for _, s, _ in copies)
                state, layout = "sealed", (1, 0, 0, size)
            plans.append((seg, (state, size, created), layout, [], holders))
            report.replica_segments += 1
        else:
            report.no_files.append(seg)
            if old is not None:
                log.error("segment %d: no shard or copy of it found on the drives", seg)

    if plans:
        report.changed_meanwhile += placement.rewrite_layouts(meta, plans, snapshot)
        log.warning("rebuilt the layout of %d segments from the drives (%d erasure-coded, %d whole copies; "
                    "%d shards missing, queued for repair)", len(plans), report.ec_segments,
                    report.replica_segments, report.missing_shards)
    return report
