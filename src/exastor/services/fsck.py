"""Verify every record and every reference; repair reference counts; rebuild the chunk index
from the segments alone.

A chunk is healthy when the record at its indexed location has a valid header naming the same
fingerprint, its payload checksum matches, it decompresses to ``raw_len`` bytes, and those bytes
hash (BLAKE3) to the fingerprint. References are healthy when every manifest entry names an
indexed chunk and each chunk's ``refs`` equals the number of manifest entries naming it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from exastor import errors
from exastor.engine import codec, encryption, references
from exastor.engine.drives import DriveSet, segment_name
from exastor.engine.record import CODEC_DELTA, HEADER_SIZE, decode_header, verify_payload
from exastor.engine.scan import walk
from exastor.engine.segments import SegmentLog, SegmentUnavailable
from exastor.meta import index
from exastor.meta.contract import Metadata
from exastor.meta.records import ChunkLocation
from exastor.services import relayout
from exastor.services.repair import Repairer
from exastor.services.scrub import Scrubber

Progress = Callable[[int], None]


@dataclass
class FsckReport:
    chunks_checked: int = 0
    bytes_checked: int = 0
    corrupt_chunks: list[str] = field(default_factory=list)      # fingerprints (hex) failing verification
    missing_chunks: list[str] = field(default_factory=list)      # referenced but not indexed
    refcount_mismatches: int = 0
    repaired_refcounts: int = 0
    relocated_chunks: int = 0                                    # repointed at another valid copy
    degraded_chunks: int = 0                                     # readable only around a bad shard/replica
    bad_shards: list[str] = field(default_factory=list)          # shards failing their block checksums
    repaired_shards: int = 0
    lost_chunks: list[str] = field(default_factory=list)         # no valid copy anywhere
    rebuilt_layouts: int = 0                                     # --rebuild-index: segment layouts re-recorded
    restored_meta: str = ""                                      # --restore-meta: the copy installed
    journal_replayed: int = 0                                    # --restore-meta: journaled commits re-executed
    damaged_objects: list[str] = field(default_factory=list)     # "bucket/key version": naming a bad chunk above
    unavailable_chunks: int = 0                                  # only on offline drives: back when they are
    offline_drives: list[str] = field(default_factory=list)      # "id path: why", to bring back
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.corrupt_chunks or self.missing_chunks or self.refcount_mismatches or self.lost_chunks
                    or self.bad_shards or self.degraded_chunks or self.unavailable_chunks)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["clean"] = self.clean
        return d


def open_log(meta: Metadata, segments_dir: Path, base: Path | None = None) -> SegmentLog:
    """A read-side segment log over the store's drives (those in the database, else the one drive
    whose segment directory is ``segments_dir``, a store from before the drives table); ``base``:
    the data directory that drive paths stored relative are relative to."""
    known = meta.drive_count()
    return SegmentLog(DriveSet(meta, None if known else [segments_dir.parent], adopt=not known, base=base), meta)


class _FoundFirst:
    """``lookup_chunks`` over the records a segment scan verified, then the index."""

    def __init__(self, meta: Metadata, found: dict[bytes, ChunkLocation]) -> None:
        self.meta, self.found = meta, found

    def lookup_chunks(self, fps: list[bytes]) -> dict[bytes, ChunkLocation]:
        out = {fp: self.found[fp] for fp in fps if fp in self.found}
        rest = [fp for fp in fps if fp not in out]
        if rest:
            out.update(self.meta.lookup_chunks(rest))
        return out


class _RecordReader:
    """What ``references.resolver`` needs to read a delta's bases: verified reads through the drives."""

    def __init__(self, log: SegmentLog, found: dict[bytes, ChunkLocation] | None = None) -> None:
        self.log = log
        # The resolver looks bases up in the index, or, while rebuilding it, in what the scan found.
        self.meta = _FoundFirst(log.meta, found) if found is not None else log.meta
        self.resolve = references.resolver(self)

    def read_chunk(self, loc: ChunkLocation) -> bytes | memoryview:
        keys = encryption.of(self.log.meta)

        def plain(raw: bytes | memoryview) -> bytes | memoryview:
            head = decode_header(raw)
            payload = memoryview(raw)[HEADER_SIZE:]
            verify_payload(head, payload)
            return codec.decode(head, payload, self.resolve, keys)  # a base may be a delta (bounded depth)

        length = HEADER_SIZE + loc.stored_len
        try:
            return plain(self.log.pread(loc.segment, loc.offset, length))
        except errors.DataCorrupted:
            return plain(self.log.pread_degraded(loc.segment, loc.offset, length, plain))


def verify_chunk(log: SegmentLog, loc: ChunkLocation, resolve: codec.Resolver | None = None, *,
                 degraded: bool = False) -> str | None:
    """None if the chunk is healthy, else why not. Delta records need ``resolve`` (their bases).
    ``degraded``: read around bad replicas or shards (decoding) instead of the healthy way.
    An encrypted record needs the master key: without it KeyUnavailable stops the check (locked
    data is never reported damaged)."""
    keys = encryption.of(log.meta)

    def full(raw: bytes | memoryview) -> None:
        head = decode_header(raw)
        if head.fp != loc.fp:
            raise errors.DataCorrupted("record names another fingerprint")
        payload = memoryview(raw)[HEADER_SIZE:]
        verify_payload(head, payload)
        data = codec.decode(head, payload, resolve, keys)  # encrypted: KeyUnavailable without the key
        if blake3.blake3(data).digest() != loc.fp:
            raise errors.DataCorrupted("content does not match its fingerprint")

    length = HEADER_SIZE + loc.stored_len
    try:
        if degraded:
            log.pread_degraded(loc.segment, loc.offset, length, full)
        else:
            full(log.pread(loc.segment, loc.offset, length))
    except errors.DataCorrupted as exc:
        return exc.detail
    except OSError as exc:
        return str(exc)
    return None


def referenced_counts(meta: Metadata) -> Counter[bytes]:
    return index.referenced_counts(meta)


def damaged_objects(meta: Metadata, report: FsckReport) -> list[str]:
    """The objects (every version) whose manifests name a corrupt, missing or lost chunk: what an
    operator has to restore from elsewhere, or delete."""
    bad = {bytes.fromhex(h) for h in (*report.corrupt_chunks, *report.missing_chunks, *report.lost_chunks)}
    if not bad:
        return []

    return index.objects_referencing(meta, bad)


def _all_chunks(meta: Metadata) -> list[ChunkLocation]:
    return index.all_chunks(meta)


def scan_segments(meta: Metadata, segments_dir: Path, progress: Progress | None = None,
                  want: set[bytes] | None = None) -> dict[bytes, ChunkLocation]:
    """fingerprint -> a location whose record verifies fully, found from the segments' bytes alone:
    whole files on drive 0, and every segment the database knows read through its replicas or shards
    (decoding if needed)."""
    log = open_log(meta, segments_dir)
    found: dict[bytes, ChunkLocation] = {}
    resolve = references.resolver(_RecordReader(log, found))
    keys = encryption.of(log.meta)
    deferred: list[tuple[int, int, int]] = []  # delta records: verified once their bases are found
    segs = {seg for seg, state, _ in meta.segments() if state != "deleted"}
    first = log.drives.first.io
    segs |= set(_segment_files(first))
    try:
        for seg in sorted(segs):
            try:
                buf = log.read_segment(seg)
            except (errors.DataCorrupted, errors.Unavailable, OSError):
                try:  # a segment file on drive 0 the database does not know
                    name = segment_name(seg)
                    buf = first.pread(name, 0, first.stat(name).size)
                except OSError:
                    continue
            view = memoryview(buf)
            for pos, n in walk(buf).records:
                if progress:
                    progress(n)
                rec = decode_header(view[pos:pos + HEADER_SIZE])
                if rec.fp not in found and (want is None or rec.fp in want) and rec.codec == CODEC_DELTA:
                    deferred.append((seg, pos, n))  # its bases may lie later in the log (compaction)
                elif rec.fp not in found and (want is None or rec.fp in want):
                    try:
                        ok = blake3.blake3(codec.decode(rec, view[pos + HEADER_SIZE:pos + n], resolve, keys)
                                           ).digest() == rec.fp
                    except (errors.DataCorrupted, KeyError, ValueError):
                        ok = False
                    if ok:
                        found[rec.fp] = ChunkLocation(rec.fp, seg, pos, rec.stored_len, rec.raw_len, rec.codec)
        for _level in range(references.MAX_DEPTH):  # a delta's bases are found a level earlier
            for seg, pos, n in deferred:
                try:
                    raw = log.pread(seg, pos, n)
                    rec = decode_header(raw)
                    if rec.fp in found:
                        continue
                    payload = memoryview(raw)[HEADER_SIZE:]
                    verify_payload(rec, payload)
                    codec.decode(rec, payload, resolve, keys)  # BLAKE3-verified against rec.fp
                except (errors.DataCorrupted, OSError, KeyError, ValueError):
                    continue
                found[rec.fp] = ChunkLocation(rec.fp, seg, pos, rec.stored_len, rec.raw_len, rec.codec)
    finally:
        log.close()
    return found


def _segment_files(drive: Any) -> list[int]:
    try:
        names = drive.list("segments")
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith("seg-") and name.endswith(".log"):
            try:
                out.append(int(name[4:20], 16))
            except ValueError:
                continue
    return out


def check(meta: Metadata, segments_dir: Path, *, repair: bool = False, progress: Progress | None = None,
          base: Path | None = None) -> FsckReport:
    started = time.monotonic()
    report = FsckReport()
    chunks = _all_chunks(meta)
    log = open_log(meta, segments_dir, base)
    bad: list[ChunkLocation] = []
    resolve = references.resolver(_RecordReader(log))
    report.offline_drives = [f"{d.id} {d.path}: {d.reason}" for d in log.drives.all if d.state == "offline"]
    try:
        for loc in chunks:
            report.chunks_checked += 1
            report.bytes_checked += HEADER_SIZE + loc.stored_len
            if progress:
                progress(HEADER_SIZE + loc.stored_len)
            try:
                problem = verify_chunk(log, loc, resolve)
                if problem is not None and verify_chunk(log, loc, resolve, degraded=True) is None:
                    report.degraded_chunks += 1  # readable around a bad shard or replica: repair rebuilds it
                    continue
            except SegmentUnavailable:
                report.unavailable_chunks += 1  # waiting on an offline drive: neither corrupt nor lost
                continue
            if problem is not None:
                bad.append(loc)
                report.corrupt_chunks.append(loc.fp.hex())
        # Every shard against its block checksums (whole-file copies were checked record by record above).
        log.drives.flush_reports()
        scrubbed = Scrubber(log).run_once(mark=repair, copies=False)
        report.bad_shards = [f"segment {s} shard {i}: {why}" for s, i, why in scrubbed.bad_shards]
        if repair and (scrubbed.bad_shards or report.degraded_chunks or Repairer(log).pending()):
            fixed = Repairer(log).run_once(reprotect=False)
            report.repaired_shards = fixed.repaired_shards + fixed.moved_shards
    finally:
        log.close()
    indexed = {c.fp for c in chunks}
    wanted = referenced_counts(meta)
    missing = [fp for fp in wanted if fp not in indexed]
    report.missing_chunks = [fp.hex() for fp in missing]

    current = index.chunk_refs(meta)
    mismatched = {fp: wanted.get(fp, 0) for fp, refs in current.items() if refs != wanted.get(fp, 0)}
    report.refcount_mismatches = len(mismatched)
    if repair and report.repaired_shards and not (bad or missing or mismatched):
        after = check(meta, segments_dir)
        after.repaired_shards = report.repaired_shards
        after.seconds = time.monotonic() - started
        return after
    if repair and (bad or missing or mismatched):
        relocated: dict[bytes, ChunkLocation] = {}
        need = {loc.fp for loc in bad} | set(missing)
        if need:
            relocated = scan_segments(meta, segments_dir, want=need)
        now = time.time_ns()

        index.repair_index(meta, mismatched, relocated, wanted, now)
        # Report the state after repair, and what the repair did.
        after = check(meta, segments_dir)
        after.repaired_shards = report.repaired_shards
        after.repaired_refcounts = len(mismatched)
        after.relocated_chunks = len(relocated)
        after.lost_chunks = [fp.hex() for fp in need if fp not in relocated]
        after.damaged_objects = damaged_objects(meta, after)
        after.seconds = time.monotonic() - started
        return after
    report.damaged_objects = damaged_objects(meta, report)
    report.seconds = time.monotonic() - started
    return report


def rebuild_index(meta: Metadata, segments_dir: Path, progress: Progress | None = None) -> FsckReport:
    """Rebuild the layout tables from the shard trailers and segment headers on the drives
    (services/relayout.py), then throw the chunk index away and rebuild it from the segments' records,
    then recount references."""
    started = time.monotonic()
    log = open_log(meta, segments_dir)
    try:
        layout = relayout.rebuild_layout(meta, log.drives)
    finally:
        log.close()
    found = scan_segments(meta, segments_dir, progress)
    wanted = referenced_counts(meta)
    now = time.time_ns()
    known = {seg for seg, _, _ in meta.segments()}
    log = open_log(meta, segments_dir)
    try:  # plain files on drive 0 the database never recorded (a store from before segment rows)
        sizes = {seg: log.drives.first.io.stat(segment_name(seg)).size
                 for seg in {loc.segment for loc in found.values()} - known}
    finally:
        log.close()

    index.replace_index(meta, found, wanted, sizes, now)
    report = FsckReport(chunks_checked=len(found))
    report.rebuilt_layouts = layout.ec_segments + layout.replica_segments
    report.lost_chunks = [fp.hex() for fp in wanted if fp not in found]
    report.seconds = time.monotonic() - started
    return report
