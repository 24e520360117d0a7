"""Multi-drive stores in process: replicated open segments, erasure-coded sealed ones, degraded reads
around lost and corrupt shards, and failure behaviour."""

from __future__ import annotations

import asyncio
import random
import shutil

import pytest

from exastor import errors
from exastor.datadir.opening import open_namespace
from exastor.drives import DIRECT_ALIGN, LocalDrive
from exastor.engine import shards
from exastor.engine.drives import load_layout, segment_name
from exastor.namespace.operations import PutSpec, SystemGrant

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request


async def _put(ns, key: str, body: bytes) -> None:
    async def source():
        for i in range(0, len(body), 100_000):
            yield body[i:i + 100_000]

    await ns.put_object(ADMIN, "bkt", key, source(), PutSpec())


async def _read(ns, key: str) -> bytes:
    obj = ns.get_object(ADMIN, "bkt", key)
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])


def _store(tmp_path, n: int, ec: str | None = None, segment_size: int = 1 << 20):
    drives = [str(tmp_path / f"d{i}") for i in range(n)]
    return open_namespace(tmp_path / "data", segment_size=segment_size, drives=drives, ec=ec), drives


def _fill(ns, count: int = 12, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    bodies = {f"k{i}": rng.randbytes(rng.randint(1, 400_000)) for i in range(count)}

    async def main() -> None:
        await ns.create_bucket(ADMIN, "bkt")
        for k, v in bodies.items():
            await _put(ns, k, v)

    asyncio.run(main())
    return bodies


def _check(ns, bodies: dict[str, bytes]) -> None:
    async def main() -> None:
        for k, v in bodies.items():
            assert await _read(ns, k) == v, k

    asyncio.run(main())


def _sealed_ec(ns) -> list:
    out = []
    for seg, state, _ in ns.meta.segments():
        lay = load_layout(ns.meta, seg)
        if state == "sealed" and lay is not None and lay.kind == "ec":
            out.append(lay)
    return out


def test_one_drive_keeps_the_version_1_layout(tmp_path):
    ns = open_namespace(tmp_path, segment_size=1 << 20)
    try:
        bodies = _fill(ns)
        ns.chunks.log.wait_sealed()
    finally:
        ns.close()
    files = sorted((tmp_path / "drive0" / "segments").glob("seg-*.log"))
    assert files and not list((tmp_path / "drive0" / "shards").glob("*"))
    assert all(f.read_bytes()[:8] == b"EXSEG001" for f in files)
    ns = open_namespace(tmp_path, segment_size=1 << 20)
    try:
        _check(ns, bodies)
    finally:
        ns.close()


def test_sealed_segments_are_striped_on_distinct_drives_and_replicas_dropped(tmp_path):
    ns, drives = _store(tmp_path, 6, "4+2")
    try:
        bodies = _fill(ns)
        ns.chunks.log.wait_sealed()
        coded = _sealed_ec(ns)
        assert coded, "no segment was sealed"
        for lay in coded:
            assert (lay.k, lay.m) == (4, 2)
            assert len({row.drive for row in lay.shards}) == 6         # distinct drives
            assert lay.shard_len % DIRECT_ALIGN == 0  # coded as a full stripe is: page-aligned shards (O_DIRECT)
            assert not any((tmp_path / f"d{i}" / segment_name(lay.segment)).exists() for i in range(6))
        open_seg = ns.chunks.log.open_segment
        open_lay = load_layout(ns.meta, open_seg)
        assert len(open_lay.replicas) == 3                           # m + 1 replicas while open
        _check(ns, bodies)
    finally:
        ns.close()


@pytest.mark.parametrize("lost,flipped", [(["d0", "d1"], None), (["d0"], "d2")])
def test_reads_survive_m_failures_lost_drives_or_corrupt_shards(tmp_path, lost, flipped):
    ns, drives = _store(tmp_path, 6, "4+2")
    try:
        bodies = _fill(ns, 16, seed=2)
    finally:
        ns.close()  # seals everything
    for d in lost:
        shutil.rmtree(tmp_path / d / "shards")
        (tmp_path / d / "shards").mkdir()
    if flipped:
        for victim in sorted((tmp_path / flipped / "shards").glob("seg-*")):
            raw = bytearray(victim.read_bytes())
            raw[10] ^= 0x40
            victim.write_bytes(bytes(raw))
    ns, _ = _store(tmp_path, 6, "4+2")
    try:
        _check(ns, bodies)
        ns.chunks.log.drives.flush_reports()
        bad = ns.meta.runner.read(lambda cur: cur.execute("SELECT COUNT(*) FROM shards WHERE state = 'bad'")
                                  .fetchone()[0])
        assert bad >= 1                                               # queued for repair
    finally:
        ns.close()


def test_writes_fail_cleanly_when_too_few_drives_remain_and_reads_continue(tmp_path):
    ns, drives = _store(tmp_path, 4, "2+2")
    try:
        bodies = _fill(ns, 6, seed=3)
        ns.chunks.log.wait_sealed()
        for d in ns.chunks.log.drives.all[:2]:
            ns.chunks.log.drives.set_state(d.id, "failed", "test")
        with pytest.raises(errors.Unavailable):
            asyncio.run(_put(ns, "more", random.Random(9).randbytes(3 << 20)))
        _check(ns, bodies)  # k=2 shards of each stripe remain readable
    except errors.DataCorrupted:
        pytest.fail("a read failed although the data is recoverable")
    finally:
        ns.close()


def test_shard_checksums_detect_a_flip_without_decoding(tmp_path):
    ns, drives = _store(tmp_path, 4, "2+2")
    try:
        _fill(ns, 8, seed=4)
    finally:
        ns.close()
    some = sorted((tmp_path / "d1" / "shards").glob("seg-*"))[0]
    drive = LocalDrive(tmp_path / "d1")
    name = f"shards/{some.name}"
    assert shards.verify_file(drive, name)[1] == []
    raw = bytearray(some.read_bytes())
    raw[shards.BLOCK + 1] ^= 1
    some.write_bytes(bytes(raw))
    drive.release([name])
    assert shards.verify_file(drive, name)[1] == [1]


def _drive_cmd(data, *argv):
    import argparse

    from exastor.services import drive_cli

    p = argparse.ArgumentParser()
    drive_cli.add_arguments(p)
    return drive_cli.run(p.parse_args(["--data", str(data), *argv]))


def test_drive_lifecycle_add_remove_replace_keeps_every_byte(tmp_path):
    from exastor.meta.contract import Metadata
    from exastor.meta.sqlite import SqliteRunner
    from exastor.services import fsck, stats

    ns, drives = _store(tmp_path, 4, "2+2")
    try:
        bodies = _fill(ns, 14, seed=6)
    finally:
        ns.close()
    data = tmp_path / "data"

    def shard_counts() -> dict[int, int]:
        meta = Metadata(SqliteRunner(data / "meta" / "exastor.sqlite"))
        try:
            return dict(meta.runner.read(lambda cur: cur.execute(
                "SELECT drive, COUNT(*) FROM shards GROUP BY drive").fetchall()))
        finally:
            meta.close()

    before = shard_counts()
    assert set(before) == {0, 1, 2, 3}
    assert _drive_cmd(data, "add", str(tmp_path / "d4")) == 0
    after = shard_counts()
    assert after.get(4, 0) > 0 and sum(after.values()) == sum(before.values())   # rebalanced, not copied
    assert _drive_cmd(data, "remove", "0") == 0
    assert 0 not in shard_counts()
    assert _drive_cmd(data, "replace", "1", str(tmp_path / "d5")) == 0
    counts = shard_counts()
    assert 1 not in counts and counts.get(5, 0) > 0
    assert not list((tmp_path / "d0" / "shards").glob("seg-*"))                  # drained files are gone
    ns = open_namespace(data, segment_size=1 << 20)
    try:
        _check(ns, bodies)
        report = fsck.check(ns.meta, tmp_path / "d2" / "segments")
        assert report.clean, report.to_json()
        st = stats.collect(ns.meta)
        # every sealed segment went through 3 replicas and then a 2+2 stripe: 3 + 4/2 = 5
        assert st.write_amplification == pytest.approx(5.0, abs=0.01)
        assert st.capacity_overhead == pytest.approx(1.0, abs=0.1)                # m/k, plus footers and padding
    finally:
        ns.close()


def test_put_writes_an_aligned_piece_with_o_direct_and_falls_back_where_refused(tmp_path, monkeypatch):
    """A shard's data (page-aligned buffer, page-multiple length) goes to the device with O_DIRECT,
    its trailer through the page cache, one fsync covering both; a filesystem that refuses O_DIRECT
    (EINVAL, as tmpfs) gets every byte through the page cache from then on."""
    import errno as errno_
    import os

    from exastor.drives import aligned_buffer, local

    rng = random.Random(7)
    data = aligned_buffer(1 << 20)
    data[:] = rng.randbytes(1 << 20)
    opened: list[int] = []
    real_open = os.open

    def watch(path, flags, *args):
        opened.append(flags)
        return real_open(path, flags, *args)

    monkeypatch.setattr(local.os, "open", watch)
    drive = LocalDrive(tmp_path / "d")
    (tmp_path / "d" / "shards").mkdir(parents=True)
    drive.put("shards/a", [data, b"trailer"])
    assert any(f & os.O_DIRECT for f in opened), "the aligned piece was written with O_DIRECT"
    assert (tmp_path / "d" / "shards" / "a").read_bytes() == bytes(data) + b"trailer"
    assert drive._direct

    def refuse(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno_.EINVAL, "O_DIRECT not supported")
        return real_open(path, flags, *args)

    monkeypatch.setattr(local.os, "open", refuse)
    drive.put("shards/b", [data, b"trailer"])
    assert (tmp_path / "d" / "shards" / "b").read_bytes() == bytes(data) + b"trailer"
    assert not drive._direct, "refused once: the page cache from then on"
    unaligned = bytearray(rng.randbytes((1 << 20) + 100))
    drive.put("shards/c", [memoryview(unaligned)[100:], b"t"])  # not page-aligned: the page cache
    assert (tmp_path / "d" / "shards" / "c").read_bytes() == bytes(unaligned[100:]) + b"t"
