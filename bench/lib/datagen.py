"""Fresh payloads for benchmarks against a deduplicating store.

exastor deduplicates by content, so a benchmark that PUTs the same bytes twice
(or the same bytes as last run) would measure the dedupe shortcut instead of
the write path. Every payload here comes from a freshly seeded SFC64
generator (seeded from ``os.urandom``), so it is unique per run and per
object.

Two kinds:

* ``random``: incompressible (zstd ratio ~1.0) -- the worst case for a
  reducing store and the honest default.
* ``half-entropy``: each byte carries 4 random bits (values 0..15), so zstd
  compresses it about 2:1 but no two chunks repeat. It stands in for data a
  compressing store can shrink without flattering its dedupe.

Generation is vectorised with numpy (~1.5-2 GB/s on the dev machines), which
keeps the client's own cost small next to the server's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

KINDS = ("random", "half-entropy")


def fresh_generator() -> np.random.Generator:
    """A generator seeded from the OS, so no two runs share a byte stream."""
    return np.random.Generator(np.random.SFC64(int.from_bytes(os.urandom(16), "little")))


def payload(size: int, kind: str = "random", rng: np.random.Generator | None = None) -> bytes:
    """``size`` bytes of fresh data of the given kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown payload kind {kind!r}; expected one of {KINDS}")
    rng = rng or fresh_generator()
    if kind == "random":
        words = rng.integers(0, 2**64 - 1, size=(size + 7) // 8, dtype=np.uint64, endpoint=True)
        return words.view(np.uint8)[:size].tobytes()
    # half-entropy: split each random byte into two nibbles, one per output byte
    raw = rng.integers(0, 2**64 - 1, size=(size + 15) // 16, dtype=np.uint64, endpoint=True).view(np.uint8)
    out = np.empty(raw.size * 2, dtype=np.uint8)
    out[0::2] = raw & 0x0F
    out[1::2] = raw >> 4
    return out[:size].tobytes()


def stream(total: int, block: int, kind: str = "random") -> Iterator[bytes]:
    """Yield ``total`` fresh bytes in ``block``-sized pieces without ever holding more than one block."""
    rng = fresh_generator()
    left = total
    while left > 0:
        n = min(block, left)
        yield payload(n, kind, rng)
        left -= n


def zstd_ratio(sample: bytes, level: int = 1) -> float | None:
    """Compression ratio zstd achieves on ``sample`` (None when zstandard is absent)."""
    try:
        import zstandard
    except ImportError:
        return None
    if not sample:
        return None
    return len(sample) / len(zstandard.ZstdCompressor(level=level).compress(sample))
