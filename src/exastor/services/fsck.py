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
from exastor.engine import codec, references
from exastor.engine import manifest as mf
from exastor.engine.record import HEADER_SIZE, decode_header, verify_payload
from exastor.engine.scan import iter_records
from exastor.engine.segments import segment_path
from exastor.meta.records import ChunkLocation
from exastor.meta.store import MANIFEST_QUERIES, Metadata

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
    lost_chunks: list[str] = field(default_factory=list)         # no valid copy anywhere
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.corrupt_chunks or self.missing_chunks or self.refcount_mismatches or self.lost_chunks)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["clean"] = self.clean
        return d


class _RecordReader:
    """What ``references.resolver`` needs to read a delta's bases: the index and verified reads."""

    def __init__(self, meta: Metadata, segments_dir: Path, fds: dict[int, Any]) -> None:
        self.meta, self.segments_dir, self.fds = meta, segments_dir, fds

    def read_chunk(self, loc: ChunkLocation) -> bytes | memoryview:
        f = self.fds.get(loc.segment) or open(segment_path(self.segments_dir, loc.segment), "rb")
        self.fds[loc.segment] = f
        f.seek(loc.offset)
        raw = f.read(HEADER_SIZE + loc.stored_len)
        head = decode_header(raw)
        payload = memoryview(raw)[HEADER_SIZE:]
        verify_payload(head, payload)
        return codec.decode(head, payload)  # bases are never deltas


def verify_chunk(segments_dir: Path, loc: ChunkLocation, fds: dict[int, Any],
                 resolve: codec.Resolver | None = None) -> str | None:
    """None if the chunk is healthy, else why not. Delta records need ``resolve`` (their bases)."""
    f = fds.get(loc.segment)
    if f is None:
        try:
            f = fds[loc.segment] = open(segment_path(segments_dir, loc.segment), "rb")
        except FileNotFoundError:
            return "segment file missing"
    f.seek(loc.offset)
    raw = f.read(HEADER_SIZE + loc.stored_len)
    try:
        head = decode_header(raw)
        if head.fp != loc.fp:
            return "record names another fingerprint"
        payload = memoryview(raw)[HEADER_SIZE:]
        verify_payload(head, payload)
        data = codec.decode(head, payload, resolve)
    except (errors.DataCorrupted, OSError) as exc:
        return exc.detail
    if blake3.blake3(data).digest() != loc.fp:
        return "content does not match its fingerprint"
    return None


def referenced_counts(meta: Metadata) -> Counter[bytes]:
    def q(cur: Any) -> Counter[bytes]:
        total: Counter[bytes] = Counter()
        for sql in MANIFEST_QUERIES:
            cur.execute(sql)
            for (manifest,) in cur.fetchall():
                total.update(mf.ref_counts(manifest))
        return total

    return meta.runner.read(q)


def _all_chunks(meta: Metadata) -> list[ChunkLocation]:
    def q(cur: Any) -> list[ChunkLocation]:
        cur.execute('SELECT fp, segment, "offset", stored_len, raw_len, codec FROM chunks ORDER BY segment, "offset"')
        return [ChunkLocation(bytes(r[0]), *r[1:]) for r in cur.fetchall()]

    return meta.runner.read(q)


def scan_segments(meta: Metadata, segments_dir: Path, progress: Progress | None = None,
                  want: set[bytes] | None = None) -> dict[bytes, ChunkLocation]:
    """fingerprint -> a location whose record verifies fully, found by reading segment files only."""
    found: dict[bytes, ChunkLocation] = {}
    fds: dict[int, Any] = {}
    resolve = references.resolver(_RecordReader(meta, segments_dir, fds))
    try:
        for path in sorted(segments_dir.glob("seg-*.log")):
            seg = int(path.stem[4:], 16)
            for offset, rec in iter_records(path):
                if progress:
                    progress(HEADER_SIZE + rec.stored_len)
                if rec.fp in found or (want is not None and rec.fp not in want):
                    continue
                loc = ChunkLocation(rec.fp, seg, offset, rec.stored_len, rec.raw_len, rec.codec)
                if verify_chunk(segments_dir, loc, fds, resolve) is None:
                    found[rec.fp] = loc
    finally:
        for f in fds.values():
            f.close()
    return found


def check(meta: Metadata, segments_dir: Path, *, repair: bool = False, progress: Progress | None = None
          ) -> FsckReport:
    started = time.monotonic()
    report = FsckReport()
    chunks = _all_chunks(meta)
    fds: dict[int, Any] = {}
    bad: list[ChunkLocation] = []
    resolve = references.resolver(_RecordReader(meta, segments_dir, fds))
    try:
        for loc in chunks:
            problem = verify_chunk(segments_dir, loc, fds, resolve)
            report.chunks_checked += 1
            report.bytes_checked += HEADER_SIZE + loc.stored_len
            if progress:
                progress(HEADER_SIZE + loc.stored_len)
            if problem is not None:
                bad.append(loc)
                report.corrupt_chunks.append(loc.fp.hex())
    finally:
        for f in fds.values():
            f.close()
    indexed = {c.fp for c in chunks}
    wanted = referenced_counts(meta)
    missing = [fp for fp in wanted if fp not in indexed]
    report.missing_chunks = [fp.hex() for fp in missing]

    def refs_q(cur: Any) -> dict[bytes, int]:
        cur.execute("SELECT fp, refs FROM chunks")
        return {bytes(fp): refs for fp, refs in cur.fetchall()}

    current = meta.runner.read(refs_q)
    mismatched = {fp: wanted.get(fp, 0) for fp, refs in current.items() if refs != wanted.get(fp, 0)}
    report.refcount_mismatches = len(mismatched)
    if repair and (bad or missing or mismatched):
        relocated: dict[bytes, ChunkLocation] = {}
        need = {loc.fp for loc in bad} | set(missing)
        if need:
            relocated = scan_segments(meta, segments_dir, want=need)
        now = time.time_ns()

        def fix(cur: Any) -> None:
            for fp, refs in mismatched.items():
                cur.execute("UPDATE chunks SET refs = ?, dead_since_ns = CASE WHEN ? = 0 THEN ? ELSE NULL END "
                            "WHERE fp = ?", (refs, refs, now, fp))
            for fp, loc in relocated.items():
                cur.execute("DELETE FROM chunks WHERE fp = ?", (fp,))
                cur.execute('INSERT INTO chunks (fp, segment, "offset", stored_len, raw_len, codec, refs, '
                            "dead_since_ns) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                            (fp, loc.segment, loc.offset, loc.stored_len, loc.raw_len, loc.codec, wanted.get(fp, 0)))

        meta.runner.write_sync(fix)
        # Report the state after repair, and what the repair did.
        after = check(meta, segments_dir)
        after.repaired_refcounts = len(mismatched)
        after.relocated_chunks = len(relocated)
        after.lost_chunks = [fp.hex() for fp in need if fp not in relocated]
        after.seconds = time.monotonic() - started
        return after
    report.seconds = time.monotonic() - started
    return report


def rebuild_index(meta: Metadata, segments_dir: Path, progress: Progress | None = None) -> FsckReport:
    """Throw the chunk index away and rebuild it from the segment files, then recount references."""
    started = time.monotonic()
    found = scan_segments(meta, segments_dir, progress)
    wanted = referenced_counts(meta)
    now = time.time_ns()
    segs = {loc.segment for loc in found.values()}

    def tx(cur: Any) -> None:
        cur.execute("DELETE FROM chunks")
        cur.executemany(
            'INSERT INTO chunks (fp, segment, "offset", stored_len, raw_len, codec, refs, dead_since_ns) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(fp, loc.segment, loc.offset, loc.stored_len, loc.raw_len, loc.codec, wanted.get(fp, 0),
              None if wanted.get(fp, 0) else now) for fp, loc in found.items()])
        for seg in segs:
            cur.execute("SELECT 1 FROM segments WHERE id = ?", (seg,))
            if cur.fetchone() is None:
                cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, 'sealed', ?, ?)",
                            (seg, segment_path(segments_dir, seg).stat().st_size, now))

    meta.runner.write_sync(tx)
    report = FsckReport(chunks_checked=len(found))
    report.lost_chunks = [fp.hex() for fp in wanted if fp not in found]
    report.seconds = time.monotonic() - started
    return report
