"""The estimate: what exastor would store for these files, computed exactly as the engine does.

Per file, in upload order: FastCDC with the engine's parameters (``engine.chunker``), BLAKE3
dedupe across everything seen, the write path's codec (zstd-1, raw when not smaller), then the
background reducer's decision for every new chunk (``engine.similarity``: byte grouping,
XOR/difference/dictionary deltas against an aligned similar chunk). Nothing is stored; the
bytes a reference needs are re-read from the source. The result splits the total the same way
``exastor stats`` does: dedupe x compression x float transforms x similarity delta.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from exastor.engine import chunker, codec, detect, similarity
from exastor.engine.encryption import OVERHEAD as ENCRYPTION_OVERHEAD
from exastor.engine.record import CODEC_DELTA, HEADER_SIZE
from exastor.meta import manifest as mf
from exastor.tools.estimate.sources import Item, Source

WINDOW = 4 << 20  # bytes chunked at a time, as the write path does


@dataclass
class Tally:
    files: int = 0
    logical: int = 0
    unique: int = 0
    written: int = 0   # record bytes (header + payload) as the write path stores them
    grouped: int = 0   # ... with byte grouping alone
    stored: int = 0    # ... after the reducer
    delta_chunks: int = 0
    grouped_chunks: int = 0

    def ratios(self) -> dict[str, float]:
        def r(a: int, b: int) -> float:
            return round(a / b, 4) if b else 1.0
        return {"total": r(self.logical, self.stored), "dedupe": r(self.logical, self.unique),
                "compression": r(self.unique, self.written), "float_transforms": r(self.written, self.grouped),
                "similarity_delta": r(self.grouped, self.stored)}

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "logical_bytes": self.logical, "unique_bytes": self.unique,
                "written_bytes": self.written, "grouped_bytes": self.grouped, "stored_bytes": self.stored,
                "delta_chunks": self.delta_chunks, "grouped_chunks": self.grouped_chunks,
                "reduction": self.ratios()}


@dataclass
class Estimate:
    total: Tally = field(default_factory=Tally)
    by_type: dict[str, Tally] = field(default_factory=dict)
    sample: float = 1.0
    files_seen: int = 0
    bytes_seen: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        out = self.total.to_json()
        out["reduction_ratio"] = out["reduction"]["total"]
        out["by_type"] = {k: v.to_json() for k, v in sorted(self.by_type.items())}
        out["sample"] = self.sample
        out["files_total"] = self.files_seen
        out["bytes_total"] = self.bytes_seen
        out["seconds"] = round(self.seconds, 3)
        out["throughput_mb_s"] = round(self.total.logical / 1e6 / self.seconds, 2) if self.seconds else 0.0
        return out


def sampled(name: str, fraction: float) -> bool:
    """Deterministic file sample: the same files are chosen on every run."""
    if fraction >= 1.0:
        return True
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h / 2**64 < fraction


class Estimator:
    def __init__(self, source: Source, *, sample: float = 1.0, encrypted: bool = True) -> None:
        self.source = source
        self.sample = sample
        # Every record on flash is a header and its payload; encryption at rest (on by default for new
        # stores, engine/encryption.py) adds a nonce and a tag to each payload below the reduction.
        self.record_overhead = HEADER_SIZE + (ENCRYPTION_OVERHEAD if encrypted else 0)
        self.index = similarity.MemoryIndex()
        self.where: dict[bytes, tuple[int, int, int]] = {}   # fp -> (file number, offset, length)
        self.depths: dict[bytes, int] = {}   # fp -> delta chain depth (0: not a delta)
        self.bases: set[bytes] = set()       # chunks some delta depends on: never re-encoded as deltas
        self.layouts: list[mf.Layout] = []
        self.items: list[Item] = []
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self.result = Estimate(sample=sample)

    # --- bytes of earlier chunks (references) -----------------------------------------
    def _chunk(self, fp: bytes) -> bytes | None:
        data = self._cache.get(fp)
        if data is not None:
            self._cache.move_to_end(fp)
            return data
        got = self.where.get(fp)
        if got is None:
            return None
        n, off, length = got
        data = self.source.read(self.items[n], off, length)
        self._remember(fp, data)
        return data

    def _remember(self, fp: bytes, data: bytes) -> None:
        self._cache[fp] = data
        if len(self._cache) > 256:
            self._cache.popitem(last=False)

    def _fetch(self, owner: int, start: int, end: int) -> similarity.Reference | None:
        return similarity.reference_from_layout(self.layouts[owner], start, end, self._depth, self._chunk)

    def _depth(self, fp: bytes) -> int | None:
        """As the store sees it: a chunk not yet evaluated is stored as written (depth 0)."""
        return self.depths.get(fp, 0 if fp in self.where else None)

    # --- one file --------------------------------------------------------------------
    def add(self, item: Item, progress: Callable[[int], None] | None = None) -> None:
        number = len(self.items)
        self.items.append(item)
        kind = None
        tally_total = self.result.total
        cdc = chunker.new_chunker()
        carry = b""
        pos = 0
        slices: list[mf.Slice] = []
        new: list[tuple[bytes, bytes, int]] = []   # (fp, bytes, offset) of chunks first seen here
        stream = self.source.stream(item, WINDOW)
        buf = next(stream, b"")
        while True:
            nxt = next(stream, None)
            final = nxt is None
            if kind is None:
                kind = detect.file_type(bytes(buf[:65536]), item.name)
            chunks, carry_out = chunker.cut(cdc, carry + buf, final)
            for c in chunks:
                data = bytes(c)
                fp = blake3.blake3(data).digest()
                slices.append(mf.Slice(fp, 0, len(data)))
                if fp not in self.where:
                    self.where[fp] = (number, pos, len(data))
                    new.append((fp, data, pos))
                pos += len(data)
            if progress:
                progress(len(buf))
            carry = carry_out
            if nxt is None:  # final
                break
            buf = nxt
        if not slices and item.size:
            raise RuntimeError(f"{item.name}: read nothing")
        tally = self.result.by_type.setdefault(kind or "empty", Tally())
        self.layouts.append(mf.Layout(mf.pack(slices)))
        for t in (tally, tally_total):
            t.files += 1
            t.logical += pos
        # The reducer's pass over this object, chunk by chunk, as services/reducer.py does it.
        for fp, data, offset in new:
            _codec, payload = codec.compress(data)
            plain = len(payload)
            view = similarity.inspect(data)
            cands = self.index.candidates(view.sketch) if view.sketch is not None else []
            plan = similarity.plan_chunk(data, plain, cands, view.sketch, view.layout, self._fetch, self._depth,
                                         fp)
            if plan is not None and plan.codec == CODEC_DELTA and fp in self.bases:
                plan = None  # the reducer's transaction refuses: a base's dependants' depth must not change
            if plan is not None:
                self.bases.update(s.fp for s in plan.refs)
            stored, grouped, depth = plain, plain, 0
            if plan is not None:
                stored, grouped, depth = len(plan.payload), plan.grouped_len, plan.depth
            self.depths[fp] = depth
            if view.sketch is not None:
                self.index.add(fp, view.sketch, number, offset, depth)
            self._remember(fp, data)
            for t in (tally, tally_total):
                t.unique += len(data)
                t.written += self.record_overhead + plain
                t.grouped += self.record_overhead + grouped
                t.stored += self.record_overhead + stored
                if plan is not None:
                    t.delta_chunks += plan.codec == CODEC_DELTA
                    t.grouped_chunks += plan.codec != CODEC_DELTA


def estimate(source: Source, *, sample: float = 1.0, encrypted: bool = True,
             progress: Callable[[int, int], None] | None = None) -> Estimate:
    """Run the model over every (sampled) file. ``progress(bytes_done, bytes_total)``."""
    started = time.monotonic()
    items = source.items()
    est = Estimator(source, sample=sample, encrypted=encrypted)
    chosen = [i for i in items if sampled(i.name, sample)]
    total = sum(i.size for i in chosen)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    for item in chosen:
        est.add(item, step)
    est.result.files_seen = len(items)
    est.result.bytes_seen = sum(i.size for i in items)
    est.result.seconds = time.monotonic() - started
    return est.result
