"""Reed-Solomon wrapper, geometry table and shard files: hand-checked cases and properties."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest
import zfec

from exastor import errors
from exastor.engine import erasure, gf, shards


def test_automatic_geometry_table():
    """Parity by the failures a store of that size must survive (2 from 4 drives, 3 from 12, 4 from
    20); data shards take the rest up to a width of 24."""
    g = erasure.Geometry
    assert [erasure.auto(n) for n in range(1, 7)] == [g(1, 0), g(1, 1), g(2, 1), g(2, 2), g(3, 2), g(4, 2)]
    assert (erasure.auto(11), erasure.auto(12)) == (g(9, 2), g(9, 3))
    assert (erasure.auto(19), erasure.auto(20)) == (g(16, 3), g(16, 4))
    assert (erasure.auto(23), erasure.auto(24)) == (g(19, 4), g(20, 4))
    assert erasure.auto(150) == erasure.auto(300) == erasure.auto(10_000) == g(20, 4)
    for n in range(1, 600):
        a = erasure.auto(n)
        assert a.k >= 1 and a.width <= min(n, erasure.AUTO_WIDTH, erasure.MAX_SHARDS) and a.overhead <= 1.0
        assert a.width == min(n, erasure.AUTO_WIDTH)   # every drive up to the width: none idle
    with pytest.raises(ValueError):
        erasure.auto(0)


def test_from_48_drives_the_automatic_geometry_forms_stripe_groups():
    """The point of capping the width: 2 (k+m) drives form groups (copysets) of k+m."""
    from types import SimpleNamespace

    from exastor.engine.stripe_groups import form_groups

    def members(n):
        return [SimpleNamespace(id=i, host=f"h{i % 12}") for i in range(n)]

    assert form_groups(members(47), erasure.auto(47).width) == []
    groups = form_groups(members(48), erasure.auto(48).width)
    assert len(groups) == 2 and all(len(gr) == 24 for gr in groups)


def test_reliability_doc_has_the_generated_table():
    """docs/reliability.md's geometry table is erasure.auto_table_rows(): on a change, paste the
    table this test prints between its markers."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    head = ("| drives | geometry | capacity overhead m/k | survives | write amplification, large write (k+m)/k "
            "| write amplification, small write (m+1) + (k+m)/k |")
    table = "\n".join([head, "|---|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in erasure.auto_table_rows())])
    begin, end = "<!-- BEGIN auto-geometry (generated: tests/unit/test_erasure.py) -->\n", "\n<!-- END auto-geometry -->"
    assert begin in doc and end in doc
    assert doc[doc.index(begin) + len(begin):doc.index(end)] == table, "docs/reliability.md is stale:\n" + table


def test_parse_rejects_nonsense():
    assert erasure.parse("4+2") == erasure.Geometry(4, 2)
    assert erasure.parse(" 146 + 4 ") == erasure.Geometry(146, 4)
    for bad in ("4", "0+2", "4+-1", "x+y", "250+10"):
        with pytest.raises(ValueError):
            erasure.parse(bad)


def test_split_is_contiguous_and_padded():
    data = bytes(range(256)) * 10  # 2560 bytes
    parts = erasure.split(data, 3)
    size = erasure.shard_length(len(data), 3)
    assert size == 896 and all(len(p) == size for p in parts)   # ceil(2560/3)=854 -> 64-aligned 896
    assert b"".join(parts)[:len(data)] == data                   # data shards ARE the data, in order
    assert parts[-1][len(data) - 2 * size:] == bytes(3 * size - len(data))


@pytest.mark.parametrize("k,m", [(1, 1), (1, 2), (2, 1), (4, 2), (6, 3), (12, 4)])
def test_any_k_shards_rebuild_every_shard(k, m):
    rng = random.Random(k * 100 + m)
    data = rng.randbytes(rng.randint(1, 50_000))
    d = erasure.split(data, k)
    full = d + erasure.encode(d, m)
    combos = list(itertools.combinations(range(k + m), k))
    for keep in rng.sample(combos, min(len(combos), 20)):
        got = erasure.decode(k, m, {i: full[i] for i in keep}, list(range(k + m)))
        assert [got[i] for i in range(k + m)] == full


def test_column_ranges_decode_independently():
    """RS is column-wise: any byte range of k shards rebuilds the same range of a lost one."""
    k, m = 5, 3
    d = erasure.split(os.urandom(100_000), k)
    full = d + erasure.encode(d, m)
    lo, hi = 1234, 5678
    avail = {i: full[i][lo:hi] for i in (1, 4, 5, 6, 7)}   # data shards 0, 2, 3 lost
    got = erasure.decode(k, m, avail, [0, 2, 3])
    assert all(got[i] == full[i][lo:hi] for i in (0, 2, 3))


def test_too_few_shards_is_an_error():
    d = erasure.split(b"abc" * 1000, 4)
    full = d + erasure.encode(d, 2)
    with pytest.raises(ValueError):
        erasure.decode(4, 2, {0: full[0], 1: full[1], 5: full[5]}, [2])


def test_shard_file_roundtrip_and_block_checksums(tmp_path):
    from exastor.drives import LocalDrive

    shard = os.urandom(3 * shards.BLOCK + 100)
    (tmp_path / "shards").mkdir()
    drive = LocalDrive(tmp_path)
    name = shards.shard_name(7, 2, 9)
    assert shards.parse_shard_name(name) == (7, 2, 9) and shards.parse_shard_name(shards.shard_name(7, 2)) == (7, 2, 0)
    shards.write_shard(drive, name, 7, 2, 4, 2, 999_999, shard, store_tag=0xABC)
    with pytest.raises(FileExistsError):  # write-once: a name is never reused
        shards.write_shard(drive, name, 7, 2, 4, 2, 999_999, shard)
    path = tmp_path / name
    info = shards.read_info(drive, name)
    assert (info.segment, info.index, info.k, info.m, info.shard_len, info.data_len, info.store_tag) == (
        7, 2, 4, 2, len(shard), 999_999, 0xABC)
    assert info.blocks == 4
    assert shards.read_verified(drive, name, info, 70_000, 100_000) == shard[70_000:170_000]
    assert shards.verify_file(drive, name) == (len(shard), [])
    raw = bytearray(path.read_bytes())
    raw[2 * shards.BLOCK + 5] ^= 0x01   # one bit in block 2
    path.write_bytes(bytes(raw))
    drive.release([name])
    assert shards.verify_file(drive, name) == (len(shard), [2])
    info = shards.read_info(drive, name)
    assert shards.read_verified(drive, name, info, 0, shards.BLOCK) == shard[:shards.BLOCK]  # other blocks still serve
    with pytest.raises(errors.DataCorrupted):
        shards.read_verified(drive, name, info, 2 * shards.BLOCK, 10)
    raw[-3] ^= 0xFF  # the trailer itself
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.DataCorrupted):
        shards.verify_file(drive, name)


@pytest.mark.skipif(not gf.available(), reason="ISA-L kernel not loaded")
@pytest.mark.parametrize("k,m", [(2, 1), (4, 2), (8, 4), (12, 4), (146, 4), (252, 4)])
def test_isal_kernel_writes_exactly_zfecs_bytes(k, m):
    """The on-disk code is zfec's (format.md): ISA-L must produce identical parity and rebuilds."""
    rng = random.Random(k + 1000 * m)
    data = [rng.randbytes(1024) for _ in range(k)]
    parity = erasure.encode(data, m)
    assert parity == [bytes(p) for p in zfec.Encoder(k, k + m).encode(data, list(range(k, k + m)))]
    full = data + parity
    for _ in range(10):
        lost = set(rng.sample(range(k + m), m))
        want = rng.sample(range(k + m), min(4, k + m))
        got = erasure.decode(k, m, {i: full[i] for i in range(k + m) if i not in lost}, want)
        assert all(got[i] == full[i] for i in want)


def test_gf_matrix_inverse_round_trips():
    rng = random.Random(5)
    for n in (1, 2, 5, 9):
        while True:
            a = [[rng.randrange(256) for _ in range(n)] for _ in range(n)]
            try:
                inv = gf.mat_invert(a)
                break
            except ValueError:
                continue  # singular: draw again
        identity = [[int(i == j) for j in range(n)] for i in range(n)]
        assert gf.mat_mul(a, inv) == identity and gf.mat_mul(inv, a) == identity
    assert all(gf.mul(x, gf.inverse(x)) == 1 for x in range(1, 256))
    with pytest.raises(ValueError):
        gf.mat_invert([[1, 2], [2, 4]])  # row 2 = 2 x row 1


@pytest.mark.skipif(not gf.available(), reason="ISA-L kernel not loaded")
@pytest.mark.parametrize("length", [1, 15, 31, 33, 63, 100, 257, 4097])
def test_isal_kernel_handles_any_column_range_length(length):
    """Degraded reads decode column ranges of any length (SIMD kernels have tails to get right)."""
    rng = random.Random(length)
    k, m = 4, 2
    data = [rng.randbytes(length) for _ in range(k)]
    parity = erasure.encode(data, m)
    assert parity == [bytes(p) for p in zfec.Encoder(k, k + m).encode(data, [4, 5])]
    full = data + parity
    got = erasure.decode(k, m, {i: full[i] for i in (1, 3, 4, 5)}, [0, 2])
    assert got[0] == full[0] and got[2] == full[2]
