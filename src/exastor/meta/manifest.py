"""Object manifests: the ordered list of chunk slices that make up an object's bytes.

An entry is ``(fingerprint, start, length)``: ``length`` bytes starting at
``start`` inside the chunk named by ``fingerprint``. Slices (rather than whole
chunks) let CopyObject and UploadPartCopy with byte ranges reuse stored chunks
without rewriting data. Packed as 40-byte little-endian records so a 10 GiB
object's manifest is a few MB and decodes with one numpy call.
"""

from __future__ import annotations

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


def ref_counts(manifest: bytes | memoryview | None) -> Counter[bytes]:
    """How many entries point at each chunk: the reference-count contribution of a manifest."""
    if not manifest:
        return Counter()
    if len(manifest) <= 16 * ENTRY_SIZE:
        return Counter(fp for fp, _, _ in _ENTRY.iter_unpack(manifest))
    arr = np.frombuffer(manifest, dtype=ENTRY_DTYPE)
    return Counter(bytes(fp) for fp in arr["fp"].tolist())


REF_WINDOW = 16384  # entries counted at once by ref_count_windows


def ref_count_windows(manifest: bytes | None, window: int = REF_WINDOW) -> Iterator[Counter[bytes]]:
    """``ref_counts`` a window of entries at a time; the windows' counts sum to the whole's. A
    10 GiB object has 160,000 entries: one Counter of them is ~25 MiB of Python objects."""
    if not manifest:
        return
    view, step = memoryview(manifest), window * ENTRY_SIZE
    for i in range(0, len(view), step):
        yield ref_counts(view[i:i + step])


def total_length(manifest: bytes | None) -> int:
    if not manifest:
        return 0
    return int(np.frombuffer(manifest, dtype=ENTRY_DTYPE)["length"].sum(dtype=np.int64))


class Layout:
    """Byte offsets of a manifest's slices, to find the slices that cover a range.

    A ranged GET of a 115 KiB record inside a 1 GiB object must not turn its 13,000-entry
    manifest into Python objects: offsets are one numpy cumulative sum and a range is found by
    binary search, so only the entries the range touches are ever materialised."""

    def __init__(self, manifest: bytes | None) -> None:
        self._arr = np.frombuffer(manifest, dtype=ENTRY_DTYPE) if manifest else np.empty(0, ENTRY_DTYPE)
        self._ends = np.cumsum(self._arr["length"], dtype=np.int64)
        self.size = int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return len(self._arr)

    def entry(self, i: int) -> tuple[Slice, int]:
        """The i-th slice and the object offset where it starts."""
        fp, start, length = self._arr[i].tolist()
        return Slice(bytes(fp), int(start), int(length)), int(self._ends[i]) - int(length)

    def first_uses(self) -> np.ndarray:
        """Indexes of the first slice of each distinct chunk, in manifest order (numpy, so a 10 GiB
        object's 160,000 entries never become Python objects all at once)."""
        if not len(self._arr):
            return np.empty(0, dtype=np.int64)
        _, first = np.unique(self._arr["fp"], return_index=True)
        return np.sort(first)

    @property
    def slices(self) -> list[Slice]:
        return unpack(self._arr.tobytes())

    @property
    def offsets(self) -> list[int]:
        return (self._ends - self._arr["length"]).tolist()

    def covering(self, start: int, end: int) -> Iterator[tuple[Slice, int, int]]:
        """Yield (slice, skip, take) for the inclusive byte range [start, end]."""
        if start > end or not len(self._arr):
            return
        i = int(np.searchsorted(self._ends, start, side="right"))  # first slice ending after start
        pos = start
        while i < len(self._arr) and pos <= end:
            s, base = self.entry(i)
            skip = pos - base
            take = min(s.length - skip, end + 1 - pos)
            if take > 0:
                yield s, skip, take
                pos += take
            i += 1

    def sub_manifest(self, start: int, end: int) -> list[Slice]:
        """The slices for [start, end] as a new manifest (no bytes copied)."""
        return [Slice(s.fp, s.start + skip, take) for s, skip, take in self.covering(start, end)]
