"""Systematic Reed-Solomon over GF(2^8), and the choice of a stripe geometry.

The code is zfec's: its generator matrix decides the parity bytes on disk (pinned by
docs/format.md). The byte work runs on ISA-L's SIMD kernel when it is loaded (engine/gf.py: the
same matrices, several GB/s, GIL released) and on zfec itself otherwise; both give identical bytes.

Why this shape and not pyeclib's own API (both measured; docs/reliability.md has the numbers):
- raw, equal-length blocks with no fragment headers, so a degraded read decodes just the byte
  columns a record occupies (RS is column-wise), not a whole 16 MiB fragment;
- the GIL is released while coding, so sealing on a thread never stalls a worker's event loop;
- wide stripes (`--ec 146+4`) work; liberasurecode refuses more than 32 fragments, ISA-L's kernel does not.

Shards 0..k-1 are the segment's bytes cut into k contiguous pieces (zero-padded to equal length);
shards k..k+m-1 are parity. With k=1 the parity shards are copies (mirroring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


# Automatic geometry by drive count, unless `--ec K+M` names one (docs/reliability.md, "Drives and
# geometry", is generated from this table). Parity m is the number of drives that may fail together
# without losing data, set by what a store of that size must survive: the more drives, the likelier
# a second and third fail before the first is rebuilt, so 2 from 4 drives, 3 from 12, 4 from 20.
# Data shards take the remaining drives up to a stripe width of AUTO_WIDTH (20+4 from 24 drives on).
# Wider stripes would save a few percent of flash (20+4 costs 20 %, 146+4 would cost 2.7 %), but
# every rebuild and every degraded read reads k shards, so touches more drives, and stripe groups
# (copysets, engine/stripe_groups.py) need 2 (k+m) drives: 24-wide stripes let a store of 48 drives
# or more confine each stripe to a group of 24, so m+1 failures lose data only inside one group.
AUTO_WIDTH = 24  # the widest automatic stripe, k + m
AUTO_TABLE: tuple[tuple[int, int], ...] = (  # (from this many drives, parity m); k = min(drives, AUTO_WIDTH) - m
    (1, 0),    # 1+0: one drive, no redundancy
    (2, 1),    # 1+1 (a mirror), 2+1
    (4, 2),    # 2+2, 3+2, 4+2 .. 9+2
    (12, 3),   # 9+3 .. 16+3
    (20, 4),   # 16+4 .. 19+4, then 20+4 from 24 drives on
)


def auto(drives: int) -> Geometry:
    """The geometry a store of ``drives`` drives gets unless ``--ec`` names one (AUTO_TABLE)."""
    if drives < 1:
        raise ValueError("a store needs at least one drive")
    m = next(parity for least, parity in reversed(AUTO_TABLE) if drives >= least)
    return Geometry(min(drives, AUTO_WIDTH) - m, m)


def small_write_amplification(g: Geometry) -> float:
    """Flash bytes written per byte of a small write: m+1 write-buffer replicas, then the stripe
    ((m+1) + (k+m)/k). One drive (1+0) writes once: its one replica is its final form."""
    return 1.0 if g.m == 0 else g.m + 1 + g.width / g.k


def auto_table_rows() -> list[tuple[str, str, str, str, str, str]]:
    """AUTO_TABLE as the rows of a table for people (docs/reliability.md is generated from these):
    drives, geometry, capacity overhead m/k, drives a stripe survives losing (m), and the write
    amplification of a large (full-stripe) write, (k+m)/k, and of a small one (above). One row per
    drive count up to 6 (each step changes the stripe's shape), then one per parity, the last split
    where the width stops growing; a range of drives shows its first and last geometry."""
    starts = sorted({*range(1, 7), *(least for least, _ in AUTO_TABLE), AUTO_WIDTH})
    rows = []
    for first, after in zip(starts, [*starts[1:], None], strict=True):
        ends = [auto(first)] if after == first + 1 or after is None else [auto(first), auto(after - 1)]
        drives = (f"{first}" if after == first + 1 else f"{first} and more" if after is None
                  else f"{first}–{after - 1}")

        def span(cell: Callable[[Geometry], str], ends: list[Geometry] = ends) -> str:
            return " … ".join(dict.fromkeys(cell(g) for g in ends))

        rows.append((drives, span(str), span(lambda g: f"{g.overhead:.0%}".replace("%", " %")),
                     span(lambda g: f"{g.m} drive{'s' * (g.m != 1)}"),
                     span(lambda g: f"{g.width / g.k:.2f}"),
                     span(lambda g: f"{small_write_amplification(g):.2f}")))
    return rows


def shard_length(data_len: int, k: int, align: int = 64) -> int:
    """Length of each shard for ``data_len`` bytes cut into k pieces, rounded up to ``align`` bytes
    (64; a full stripe written with O_DIRECT uses the page size: engine/segments.py write_stripe)."""
    per = -(-data_len // k) if data_len else 0
    return max(align, -(-per // align) * align)


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


def encode(data_shards: Sequence[bytes | bytearray | memoryview], m: int,
           out: Sequence[bytearray | memoryview] | None = None) -> Sequence[bytes | bytearray | memoryview]:
    """The m parity shards of k equal-length data shards (into ``out`` when given: m writable buffers
    of the shards' length)."""
    k = len(data_shards)
    if m == 0:
        return []
    if gf.available() and k > 1:
        return gf.apply(parity_matrix(k, m), data_shards, out)  # written in place by ISA-L: no copy
    parity: Sequence[bytes | bytearray | memoryview] = (
        [data_shards[0]] * m if k == 1 else list(_encoder(k, k + m).encode(data_shards, list(range(k, k + m)))))
    if out is None:
        return parity
    for dst, src in zip(out, parity, strict=True):
        dst[:] = src
    return out


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
        rebuilt = [bytearray(len(available[use[0]])) for _ in missing]
        gf.apply(_rebuild_matrix(k, m, tuple(use), tuple(missing)), [available[i] for i in use], rebuilt)
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
