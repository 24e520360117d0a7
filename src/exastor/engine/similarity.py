"""How one chunk is re-encoded: byte grouping, or a delta against a similar, aligned reference.

Shared, unchanged, by the background reducer (which stores the result) and the estimator
(which only counts it), so the estimate predicts what the store will do. Both walk objects in
write order, and for each chunk not seen before:

1. detect whether it looks like floats (width, phase) and sketch it (super-features);
2. ask the sketch index for earlier chunks sharing super-features (most shared first, then
   the most recent), at most ``MAX_CANDIDATES``;
3. align: a shared super-feature anchors the same window in both chunks, so the chunk's bytes
   line up with its *owner object's* bytes at ``owner_offset + ref_anchor - anchor``. The
   reference is that range of the owner object, as slices of the owner's chunks (at most
   ``codec.MAX_REFS``, each of depth below ``MAX_DEPTH``);
4. encode every way that applies (byte grouping alone; XOR and difference residuals, grouped;
   zstd with the reference as dictionary) and keep the smallest, if it beats the record as
   written (zstd-1 or raw) by ``MARGIN`` and ``MIN_SAVING`` bytes.

A delta's depth is one more than its deepest base; only chunks of depth below ``MAX_DEPTH``
enter the index as candidates, and a chunk that serves as a base is never re-encoded as a delta
later, so no chain ever grows past ``MAX_DEPTH`` (2: successive checkpoints A1 -> A0 and
A2 -> A1 both get the near neighbour that makes XOR deltas pay, and a read decodes at most
three levels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exastor.engine import codec, detect
from exastor.engine.record import CODEC_DELTA, CODEC_GROUPED
from exastor.engine.sketch import N_SUPER, Sketch, sketch
from exastor.meta import manifest as mf

MAX_CANDIDATES = 2
MAX_DEPTH = 2           # longest delta chain: a delta of a delta of a plain chunk
PER_FEATURE = 16        # most recent index entries considered per matching super-feature
MARGIN = 0.05           # a re-encoding must save at least 5% of the record as written...
MIN_SAVING = 256        # ...and at least this many bytes, or the chunk stays as it is
DICT_WIDEN = 4096       # a dictionary delta may use this much more reference on each side


@dataclass(frozen=True, slots=True)
class Entry:
    """A chunk in the sketch index, with where it was first seen (its owner object and offset)."""
    fp: bytes
    sketch: Sketch
    owner: Any
    offset: int
    seq: int
    depth: int = 0


@dataclass
class Plan:
    codec: int
    flags: int
    payload: bytes | bytearray | memoryview  # bytes as planned; the sealed (stored) buffer once written
    refs: list[mf.Slice]
    plain_len: int      # the record as written (zstd-1 or raw)
    grouped_len: int    # what byte grouping alone would store (plain_len when it would not pay)
    depth: int = 0      # delta chain depth: 1 + the deepest base's

    @property
    def kind(self) -> str:
        return "delta" if self.codec == CODEC_DELTA else "grouped"


@dataclass
class Reference:
    slices: list[mf.Slice]
    pieces: list[bytes | memoryview]
    pad: int


# owner, start, end (object coordinates, end exclusive) -> the reference, or None
Fetch = Callable[[Any, int, int], Reference | None]
# fingerprint -> its delta depth (0: not a delta), or None if it is unknown/gone
Depth = Callable[[bytes], int | None]


class MemoryIndex:
    """The estimator's sketch index (the reducer keeps the same one in SQL: ``sketches``)."""

    def __init__(self) -> None:
        self._by_super: list[dict[int, list[Entry]]] = [{} for _ in range(N_SUPER)]
        self._seq = 0

    def add(self, fp: bytes, sk: Sketch, owner: Any, offset: int, depth: int = 0) -> None:
        if depth >= MAX_DEPTH:
            return  # could never be a base
        self._seq += 1
        e = Entry(fp, sk, owner, offset, self._seq, depth)
        for k, sf in enumerate(sk.supers):
            self._by_super[k].setdefault(sf, []).append(e)

    def candidates(self, sk: Sketch) -> list[Entry]:
        found: dict[bytes, Entry] = {}
        for k, sf in enumerate(sk.supers):
            for e in self._by_super[k].get(sf, [])[-PER_FEATURE:]:
                found[e.fp] = e
        return rank(sk, list(found.values()))


def rank(sk: Sketch, entries: list[Entry]) -> list[Entry]:
    """Most shared super-features first, then the most recently indexed."""
    def shared(e: Entry) -> int:
        return sum(a == b for a, b in zip(sk.supers, e.sketch.supers, strict=True))
    return sorted(entries, key=lambda e: (-shared(e), -e.seq))[:MAX_CANDIDATES]


def anchor_start(sk: Sketch, e: Entry) -> int:
    """Where the chunk's byte 0 falls in the owner object, by the first shared super-feature."""
    for a, b, pa, pb in zip(sk.supers, e.sketch.supers, sk.positions, e.sketch.positions, strict=True):
        if a == b:
            return e.offset + pb - pa
    return e.offset


def reference_from_layout(layout: mf.Layout, start: int, end: int, depth: Depth,
                          chunk_bytes: Callable[[bytes], bytes | memoryview | None]) -> Reference | None:
    """Slices of an owner object covering [start, end) clipped to the object, as a Reference.
    None unless every slice's chunk may serve as a base (depth below MAX_DEPTH)."""
    lo, hi = max(0, start), min(layout.size, end)
    if hi - lo < 1024:
        return None
    slices = layout.sub_manifest(lo, hi - 1)
    if not slices or len(slices) > codec.MAX_REFS:
        return None
    for s in slices:
        d = depth(s.fp)
        if d is None or d >= MAX_DEPTH:
            return None
    pieces: list[bytes | memoryview] = []
    for s in slices:
        data = chunk_bytes(s.fp)
        if data is None or len(data) < s.start + s.length:
            return None
        pieces.append(memoryview(data)[s.start:s.start + s.length])
    return Reference(slices, pieces, lo - start)


def plan_chunk(raw: bytes | memoryview, plain_len: int, candidates: list[Entry], sk: Sketch | None,
               layout: tuple[int, int] | None, fetch: Fetch, depth: Depth, fp: bytes) -> Plan | None:
    """The best re-encoding of chunk ``fp``, or None to leave it as written."""

    def usable(ref: Reference | None) -> Reference | None:
        # An aligned range can cover the chunk itself (repeats inside an object): a record must
        # never depend on itself.
        return None if ref is None or any(s.fp == fp for s in ref.slices) else ref

    best: tuple[int, int, bytes, list[mf.Slice]] | None = None  # codec, flags, payload, refs
    best_len = plain_len
    grouped_len = plain_len
    n = len(raw)
    if layout is not None:
        grouped = codec.pack_streams(raw, *layout)
        if len(grouped) < best_len:
            best, best_len = (CODEC_GROUPED, codec.flags_for(CODEC_GROUPED, layout=layout), grouped, []), len(grouped)
            grouped_len = len(grouped)
    if sk is not None:
        for e in candidates:
            start = anchor_start(sk, e)
            ref = usable(fetch(e.owner, start, start + n))
            numeric_paid = False
            if ref is not None:
                reference = codec.reference_buffer(ref.pieces, ref.pad, n, codec.DELTA_XOR)
                payload = codec.encode_delta(codec.DELTA_XOR, raw, reference, ref.slices, ref.pad, layout)
                if len(payload) < best_len:
                    numeric_paid = True
                    best, best_len = (CODEC_DELTA, codec.flags_for(CODEC_DELTA, codec.DELTA_XOR, layout), payload,
                                      ref.slices), len(payload)
                    if layout:  # the difference only has a chance where XOR already found the reference
                        payload = codec.encode_delta(codec.DELTA_DIFF, raw, reference, ref.slices, ref.pad, layout)
                        if len(payload) < best_len:
                            best, best_len = (CODEC_DELTA, codec.flags_for(CODEC_DELTA, codec.DELTA_DIFF, layout),
                                              payload, ref.slices), len(payload)
            if layout and numeric_paid:
                continue  # on floats a dictionary delta never beats a numeric one that pays: skip its cost
            wide = usable(fetch(e.owner, start - DICT_WIDEN, start + n + DICT_WIDEN))
            if wide is not None:
                payload = codec.encode_delta(codec.DELTA_DICT, raw, b"".join(wide.pieces), wide.slices, 0, None)
                if len(payload) < best_len:
                    best, best_len = (CODEC_DELTA, codec.flags_for(CODEC_DELTA, codec.DELTA_DICT), payload,
                                      wide.slices), len(payload)
    if best is None or best_len > plain_len * (1 - MARGIN) or plain_len - best_len < MIN_SAVING:
        return None
    which, flags, payload, refs = best
    chain = 1 + max(depth(s.fp) or 0 for s in refs) if refs else 0
    return Plan(which, flags, payload, refs, plain_len, grouped_len if grouped_len < plain_len else plain_len,
                chain)


@dataclass
class ChunkView:
    """What both the reducer and the estimator compute for a chunk before planning."""
    layout: tuple[int, int] | None
    sketch: Sketch | None = field(default=None)


def inspect(raw: bytes | memoryview) -> ChunkView:
    layout = detect.float_layout(raw)
    return ChunkView(layout, sketch(raw, layout))
