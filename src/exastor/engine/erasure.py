"""Systematic Reed-Solomon over GF(2^8), and the choice of a stripe geometry.

The code is zfec's: its generator matrix decides the parity bytes on disk (pinned by
docs/format.md). The byte work runs on ISA-L's SIMD kernel when it is loaded (engine/gf.py: the
same matrices, several GB/s, GIL released) and on zfec itself otherwise; both give identical bytes.

Why this shape and not pyeclib's own API (both measured; docs/reliability.md has the numbers):
- raw, equal-length blocks with no fragment headers, so a degraded read decodes just the byte
  columns a record occupies (RS is column-wise), not a whole 16 MiB fragment;
- the GIL is released while coding, so sealing on a thread never stalls a worker's event loop;
- wide stripes (146+4) work; liberasurecode refuses more than 32 fragments, ISA-L's kernel does not.

Shards 0..k-1 are the segment's bytes cut into k contiguous pieces (zero-padded to equal length);
shards k..k+m-1 are parity. With k=1 the parity shards are copies (mirroring).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import zfec

from exastor.engine import gf

MAX_SHARDS = 256  # zfec's limit on k + m


@dataclass(frozen=True, slots=True)
class Geometry:
    k: int
    m: int

    @property
    def width(self) -> int:
        return self.k + self.m

    def host_losses_survived(self, hosts: int) -> int:
        """Whole hosts a stripe survives losing when its k+m shards are spread over ``hosts`` as
        placement spreads them (at most ceil((k+m) / hosts) on one host): floor(m / that)."""
        return self.m // -(-self.width // max(1, hosts))

    @property
    def overhead(self) -> float:
        """Capacity overhead: extra bytes stored per byte of data (0.5 for 4+2)."""
        return self.m / self.k

    def __str__(self) -> str:
        return f"{self.k}+{self.m}"


def parse(text: str) -> Geometry:
    """'K+M' -> Geometry; raises ValueError with the reason."""
    try:
        k_s, m_s = text.replace(" ", "").split("+")
        g = Geometry(int(k_s), int(m_s))
    except ValueError as exc:
        raise ValueError(f"erasure geometry must be K+M (e.g. 4+2), got {text!r}") from exc
    if g.k < 1 or g.m < 0 or g.width > MAX_SHARDS:
        raise ValueError(f"erasure geometry {text!r}: need k >= 1, m >= 0, k + m <= {MAX_SHARDS}")
    return g


# Automatic geometry by drive count. Parity follows MinIO's floor (EC:2 at 4-5 drives, EC:4 at 8+),
# data shards take the remaining drives so one stripe spans every drive (widest stripe, least overhead).
AUTO_TABLE: list[tuple[int, int, int]] = [  # (min drives, max drives, parity m)
    (1, 1, 0),      # no redundancy
    (2, 2, 1),      # mirror (1+1)
    (3, 3, 1),      # 2+1
    (4, 5, 2),      # 2+2, 3+2
    (6, 7, 3),      # 3+3, 4+3
    (8, 16, 4),     # 4+4 .. 12+4
    (17, MAX_SHARDS, 4),  # wide stripes: 13+4 .. 146+4 across 150 drives (~2.7 % overhead)
]


def auto(drives: int) -> Geometry:
    if drives < 1:
        raise ValueError("a store needs at least one drive")
    drives = min(drives, MAX_SHARDS)
    for lo, hi, m in AUTO_TABLE:
        if lo <= drives <= hi:
            return Geometry(drives - m, m)
    raise AssertionError("unreachable")


def shard_length(data_len: int, k: int) -> int:
    """Length of each shard for ``data_len`` bytes cut into k pieces (rounded up to 64 bytes)."""
    per = -(-data_len // k) if data_len else 0
    return max(64, (per + 63) // 64 * 64)


def split(data: bytes | memoryview, k: int) -> list[bytes]:
    """The k data shards of ``data``: contiguous pieces, the last zero-padded."""
    size = shard_length(len(data), k)
    view = memoryview(data)
    out = []
    for i in range(k):
        piece = bytes(view[i * size:(i + 1) * size])
        out.append(piece if len(piece) == size else piece.ljust(size, b"\0"))
    return out


@lru_cache(maxsize=64)
def _encoder(k: int, n: int) -> zfec.Encoder:
    return zfec.Encoder(k, n)  # building the matrix costs more than coding a small range


@lru_cache(maxsize=64)
def _decoder(k: int, n: int) -> zfec.Decoder:
    return zfec.Decoder(k, n)


@lru_cache(maxsize=64)
def parity_matrix(k: int, m: int) -> gf.Matrix:
    """zfec's parity rows (m x k): parity shard j = sum over i of P[j][i] * data shard i.
    Read out of zfec itself by encoding unit vectors (RS is linear, column by column), so the
    ISA-L path writes exactly the bytes zfec would (docs/format.md pins zfec's matrix)."""
    units = [bytes(int(i == col) for col in range(k)) for i in range(k)]
    parity = _encoder(k, k + m).encode(units, list(range(k, k + m)))
    return [list(bytes(row)) for row in parity]


@lru_cache(maxsize=256)
def _rebuild_matrix(k: int, m: int, use: tuple[int, ...], missing: tuple[int, ...]) -> gf.Matrix:
    """Rows that turn the k shards ``use`` into the shards ``missing`` (data or parity)."""
    parity = parity_matrix(k, m)
    generator = [[int(i == c) for c in range(k)] if i < k else parity[i - k] for i in range(k + m)]
    to_data = gf.mat_invert([generator[i] for i in use])  # data = to_data x shards(use)
    return gf.mat_mul([generator[i] for i in missing], to_data)


def encode(data_shards: list[bytes], m: int) -> list[bytes] | list[bytearray]:
    """The m parity shards of k equal-length data shards."""
    k = len(data_shards)
    if m == 0:
        return []
    if k == 1:
        return [data_shards[0]] * m
    if gf.available():
        return gf.apply(parity_matrix(k, m), data_shards)  # written in place by ISA-L: no copy
    return list(_encoder(k, k + m).encode(data_shards, list(range(k, k + m))))


def decode(k: int, m: int, available: dict[int, bytes], want: list[int]) -> dict[int, bytes | bytearray]:
    """Shards ``want`` (data or parity) from at least k ``available`` shards (index -> equal-length bytes,
    any byte range as long as it is the same range of every shard: RS works column by column)."""
    if len(available) < k:
        raise ValueError(f"need {k} shards to decode, have {len(available)}")
    out: dict[int, bytes | bytearray] = {i: available[i] for i in want if i in available}
    missing = [i for i in want if i not in out]
    if not missing:
        return out
    if k == 1:
        only = next(iter(available.values()))
        return {**out, **{i: only for i in missing}}
    use = sorted(available)[:k]
    if gf.available():
        rebuilt = gf.apply(_rebuild_matrix(k, m, tuple(use), tuple(missing)), [available[i] for i in use])
        return {**out, **dict(zip(missing, rebuilt, strict=True))}
    if any(i >= k for i in use):
        data = _decoder(k, k + m).decode([available[i] for i in use], use)
        data = [bytes(d) for d in data]
    else:
        data = [available[i] for i in use]
    parity_wanted = [i for i in missing if i >= k]
    parity = dict(zip(parity_wanted, _encoder(k, k + m).encode(data, parity_wanted), strict=True)) \
        if parity_wanted else {}
    for i in missing:
        out[i] = data[i] if i < k else bytes(parity[i])
    return out
