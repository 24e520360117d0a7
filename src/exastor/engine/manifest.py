"""Object manifests: the ordered list of chunk slices that make up an object's bytes.

An entry is ``(fingerprint, start, length)``: ``length`` bytes starting at
``start`` inside the chunk named by ``fingerprint``. Slices (rather than whole
chunks) let CopyObject and UploadPartCopy with byte ranges reuse stored chunks
without rewriting data. Packed as 40-byte little-endian records so a 10 GiB
object's manifest is a few MB and decodes with one numpy call.
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

ENTRY_SIZE = 40
ENTRY_DTYPE = np.dtype([("fp", "V32"), ("start", "<u4"), ("length", "<u4")])


@dataclass(frozen=True, slots=True)
class Slice:
    fp: bytes
    start: int
    length: int


def pack(entries: Iterable[Slice]) -> bytes:
    arr = [(e.fp, e.start, e.length) for e in entries]
    return np.array(arr, dtype=ENTRY_DTYPE).tobytes() if arr else b""


_ENTRY = struct.Struct("<32sII")


def unpack(manifest: bytes | None) -> list[Slice]:
    if not manifest:
        return []
    assert len(manifest) % ENTRY_SIZE == 0, "corrupt manifest length"
    if len(manifest) <= 16 * ENTRY_SIZE:  # small objects: struct beats numpy's fixed cost
        return [Slice(fp, s, n) for fp, s, n in _ENTRY.iter_unpack(manifest)]
    arr = np.frombuffer(manifest, dtype=ENTRY_DTYPE)
    return [Slice(bytes(fp), int(s), int(n)) for fp, s, n in arr.tolist()]


def ref_counts(manifest: bytes | None) -> Counter[bytes]:
    """How many entries point at each chunk: the reference-count contribution of a manifest."""
    if not manifest:
        return Counter()
    if len(manifest) <= 16 * ENTRY_SIZE:
        return Counter(fp for fp, _, _ in _ENTRY.iter_unpack(manifest))
    arr = np.frombuffer(manifest, dtype=ENTRY_DTYPE)
    return Counter(bytes(fp) for fp in arr["fp"].tolist())


def total_length(manifest: bytes | None) -> int:
    if not manifest:
        return 0
    return int(np.frombuffer(manifest, dtype=ENTRY_DTYPE)["length"].sum(dtype=np.int64))


class Layout:
    """Byte offsets of a manifest's slices, to find the slices that cover a range."""

    def __init__(self, manifest: bytes | None) -> None:
        self.slices = unpack(manifest)
        self.offsets: list[int] = []
        pos = 0
        for s in self.slices:
            self.offsets.append(pos)
            pos += s.length
        self.size = pos

    def covering(self, start: int, end: int) -> Iterator[tuple[Slice, int, int]]:
        """Yield (slice, skip, take) for the inclusive byte range [start, end]."""
        if start > end or not self.slices:
            return
        i = bisect.bisect_right(self.offsets, start) - 1
        pos = start
        while i < len(self.slices) and pos <= end:
            s, base = self.slices[i], self.offsets[i]
            skip = pos - base
            take = min(s.length - skip, end + 1 - pos)
            if take > 0:
                yield s, skip, take
                pos += take
            i += 1

    def sub_manifest(self, start: int, end: int) -> list[Slice]:
        """The slices for [start, end] as a new manifest (no bytes copied)."""
        return [Slice(s.fp, s.start + skip, take) for s, skip, take in self.covering(start, end)]
