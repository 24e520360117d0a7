"""The background reducer in-process: deltas and byte grouping are stored, read back exactly,
counted in stats, kept consistent for fsck, and bases outlive the objects that owned them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from conftest import prepare_encryption
from exastor.datadir.opening import open_namespace
from exastor.engine.record import CODEC_DELTA, CODEC_GROUPED
from exastor.meta import manifest as mf
from exastor.meta.contract import drop_refs
from exastor.namespace.operations import PutSpec, SystemGrant
from exastor.services import fsck
from exastor.services.gc import Collector
from exastor.services.reducer import Reducer
from exastor.services.stats import collect

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request


def _weights(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype("<f4")


def _corpus() -> dict[str, bytes]:
    w1 = _weights(150_000, 1)
    w2 = w1 + (np.random.default_rng(2).standard_normal(w1.size) * 1e-6).astype("<f4")  # a "next step"
    words = np.random.default_rng(3).integers(97, 123, 400_000, dtype=np.uint8).tobytes()
    edited = bytearray(words)
    edited[200_000:200_010] = b"0123456789"
    return {
        "ckpt-1": b"HDR1" * 25 + w1.tobytes(),
        "ckpt-2": b"HDR2" * 26 + w2.tobytes(),   # 4 bytes more header: the alignment must find the shift
        "text-1": words,
        "text-2": bytes(edited),
    }


async def _put(ns: Any, key: str, body: bytes) -> None:
    async def source():
        for i in range(0, len(body), 100_000):
            yield body[i:i + 100_000]

    await ns.put_object(ADMIN, "red", key, source(), PutSpec())


async def _read(ns: Any, key: str) -> bytes:
    obj = ns.get_object(ADMIN, "red", key)
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])


def _codecs(ns: Any) -> dict[int, int]:
    rows = ns.meta.runner.read(lambda cur: cur.execute("SELECT codec, COUNT(*) FROM chunks GROUP BY codec").fetchall())
    return {c: n for c, n in rows}


def _all_records_encrypted(segments: Any) -> bool:
    from exastor.engine.record import HEADER_SIZE, decode_header
    from exastor.engine.scan import walk

    heads = [decode_header(buf[pos:pos + HEADER_SIZE]) for buf in (p.read_bytes() for p in segments.glob("seg-*.log"))
             for pos, _ in walk(buf).records]
    return bool(heads) and all(h.key_id for h in heads)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_reducer_end_to_end(tmp_path, encrypted) -> None:
    """Encrypted: the reducer decrypts what it reads and encrypts the records it writes (below the
    reduction), and gc, fsck and the reads work on them alike."""
    corpus = _corpus()
    if encrypted:
        prepare_encryption(tmp_path)
    ns = open_namespace(tmp_path, recover=True)
    segments = tmp_path / "drive0" / "segments"

    async def main() -> None:
        await ns.create_bucket(ADMIN, "red")
        for key, body in corpus.items():
            await _put(ns, key, body)
        before = collect(ns.meta)
        res = Reducer(ns.chunks).run_once()
        assert res.deltas > 0 and res.grouped > 0 and res.saved_bytes > 0
        codecs = _codecs(ns)
        assert codecs.get(CODEC_DELTA, 0) == res.deltas and codecs.get(CODEC_GROUPED, 0) == res.grouped
        for key, body in corpus.items():
            assert await _read(ns, key) == body
        after = collect(ns.meta)
        assert after.logical_bytes == before.logical_bytes and after.unique_bytes == before.unique_bytes
        assert after.stored_bytes < before.stored_bytes
        assert after.written_bytes == before.stored_bytes  # the split starts from what was written
        parts = after.dedupe_ratio * after.compression_ratio * after.float_transform_ratio * after.delta_ratio
        assert abs(parts - after.reduction_ratio) < 1e-9 * after.reduction_ratio
        assert after.float_transform_ratio > 1.03 and after.delta_ratio > 1.1
        assert fsck.check(ns.meta, segments).clean
        assert _all_records_encrypted(segments) == encrypted
        # restartable: nothing left to do, nothing changes
        again = Reducer(ns.chunks).run_once()
        assert again.chunks_seen == 0 and _codecs(ns) == codecs

        # The owners of the bases go away; the deltas keep their bases alive.
        for key in ("ckpt-1", "text-1"):
            await ns.delete_object(ADMIN, "red", key)
        gc = Collector(ns.chunks, grace_s=0)
        gc.run_once()
        assert await _read(ns, "ckpt-2") == corpus["ckpt-2"]
        assert await _read(ns, "text-2") == corpus["text-2"]
        assert fsck.check(ns.meta, segments).clean
        # Then the deltas go too: their references are released and everything is reclaimable.
        for key in ("ckpt-2", "text-2"):
            await ns.delete_object(ADMIN, "red", key)
        gc.run_once()
        assert Reducer(ns.chunks).run_once().released >= res.deltas  # + byte-grouped chunks reaped
        gc.run_once()
        Reducer(ns.chunks).release_orphans()
        for table in ("chunks", "reduced_chunks", "delta_bases", "sketches"):
            left = ns.meta.runner.read(lambda cur, t=table: cur.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
            assert left == 0, table
        assert fsck.check(ns.meta, segments).clean

    try:
        asyncio.run(main())
    finally:
        ns.close()


def test_successive_checkpoints_chain_at_most_two_deep(tmp_path) -> None:
    rng = np.random.default_rng(9)
    versions = [_weights(100_000, 9)]
    for _ in range(4):
        versions.append(versions[-1] + (rng.standard_normal(versions[0].size) * 1e-7).astype("<f4"))
    ns = open_namespace(tmp_path)

    async def main() -> None:
        await ns.create_bucket(ADMIN, "red")
        for i, v in enumerate(versions):
            await _put(ns, f"v{i}", v.tobytes())
        Reducer(ns.chunks).run_once()
        depths = ns.meta.runner.read(lambda cur: [r[0] for r in cur.execute(
            "SELECT depth FROM reduced_chunks WHERE codec = ?", (CODEC_DELTA,)).fetchall()])
        assert max(depths) == 2 and min(depths) == 1
        for i, v in enumerate(versions):
            assert await _read(ns, f"v{i}") == v.tobytes()
        assert fsck.check(ns.meta, tmp_path / "drive0" / "segments").clean

    try:
        asyncio.run(main())
    finally:
        ns.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_index_rebuilds_from_segments_alone_with_deltas(tmp_path, encrypted) -> None:
    """Compaction drops the plain records the reducer replaced; then the index is thrown away and
    rebuilt from the segments: delta records resolve their bases through what the scan finds
    (encrypted: compaction moves ciphertext, the rebuild decrypts to verify)."""
    corpus = _corpus()
    if encrypted:
        prepare_encryption(tmp_path)
    ns = open_namespace(tmp_path, segment_size=1 << 20)
    segments = tmp_path / "drive0" / "segments"

    async def main() -> None:
        await ns.create_bucket(ADMIN, "red")
        for key, body in corpus.items():
            await _put(ns, key, body)
        res = Reducer(ns.chunks).run_once()
        assert res.deltas > 0
        Collector(ns.chunks, grace_s=0, live_threshold=1.01).run_once()  # compact every sealed segment
        ns.meta.runner.write_sync(lambda cur: cur.execute("DELETE FROM chunks"))
        report = fsck.rebuild_index(ns.meta, segments)
        assert not report.lost_chunks, report
        assert _codecs(ns).get(CODEC_DELTA, 0) > 0  # deltas were verified without any index
        for key, body in corpus.items():
            assert await _read(ns, key) == body
        assert fsck.check(ns.meta, segments).clean

    try:
        asyncio.run(main())
    finally:
        ns.close()


def test_repetitive_object_never_references_itself(tmp_path) -> None:
    """In an object that repeats itself with small changes, the aligned reference of a chunk can
    cover the chunk itself; such a reference must be refused (a record can't depend on itself)."""
    rng = np.random.default_rng(13)
    period = _weights(9_000, 13)  # 36 KB: shorter than a chunk, so repeats fall inside one
    parts = [period + (rng.standard_normal(period.size) * 1e-7).astype("<f4") for _ in range(40)]
    body = b"".join(p.tobytes() for p in parts)
    ns = open_namespace(tmp_path)

    async def main() -> None:
        await ns.create_bucket(ADMIN, "red")
        await _put(ns, "rep", body)
        Reducer(ns.chunks).run_once()
        rows = ns.meta.runner.read(lambda cur: cur.execute(
            "SELECT fp, manifest FROM reduced_chunks WHERE manifest IS NOT NULL").fetchall())
        assert rows  # deltas were made (against earlier periods)
        assert all(bytes(fp) not in {s.fp for s in mf.unpack(m)} for fp, m in rows)
        assert await _read(ns, "rep") == body
        assert fsck.check(ns.meta, tmp_path / "drive0" / "segments").clean

    try:
        asyncio.run(main())
    finally:
        ns.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_a_revived_delta_is_adopted(tmp_path, encrypted) -> None:
    """If the index points at a delta record without its reduced_chunks row (fsck --rebuild-index
    revived one), the next pass holds its bases' references again, so they can't be reclaimed
    (encrypted: the delta's references are read from its decrypted payload)."""
    corpus = _corpus()
    if encrypted:
        prepare_encryption(tmp_path)
    ns = open_namespace(tmp_path)
    segments = tmp_path / "drive0" / "segments"

    async def main() -> None:
        await ns.create_bucket(ADMIN, "red")
        for key, body in corpus.items():
            await _put(ns, key, body)
        Reducer(ns.chunks).run_once()
        before = ns.meta.runner.read(lambda cur: cur.execute("SELECT fp, refs FROM chunks ORDER BY fp").fetchall())

        def forget(cur: Any) -> None:  # lose the rows and the references they held
            for (m,) in cur.execute("SELECT manifest FROM reduced_chunks WHERE codec = ?",
                                    (CODEC_DELTA,)).fetchall():
                drop_refs(cur, mf.ref_counts(m))
            cur.execute("DELETE FROM reduced_chunks WHERE codec = ?", (CODEC_DELTA,))
            cur.execute("DELETE FROM delta_bases")

        ns.meta.runner.write_sync(forget)
        assert Reducer(ns.chunks).adopt_orphans() > 0
        after = ns.meta.runner.read(lambda cur: cur.execute("SELECT fp, refs FROM chunks ORDER BY fp").fetchall())
        assert after == before
        assert fsck.check(ns.meta, segments).clean
        for key, body in corpus.items():
            assert await _read(ns, key) == body

    try:
        asyncio.run(main())
    finally:
        ns.close()


def test_first_uses_are_the_first_slice_of_each_chunk_in_order() -> None:
    a, b, c = (bytes([n]) * 32 for n in (2, 1, 3))
    layout = mf.Layout(mf.pack([mf.Slice(a, 0, 10), mf.Slice(b, 0, 5), mf.Slice(a, 3, 4), mf.Slice(c, 0, 9),
                                mf.Slice(b, 1, 2)]))
    assert layout.first_uses().tolist() == [0, 1, 3]
    assert mf.Layout(None).first_uses().tolist() == []


def test_small_windows_decide_exactly_what_one_window_does(tmp_path, monkeypatch) -> None:
    """The reducer walks an object's chunks a window at a time (bounded memory for huge objects);
    the window size must not change a single decision."""
    import exastor.services.reducer as reducer_mod

    corpus = _corpus()
    outcomes = []
    for window in (reducer_mod.WINDOW_CHUNKS, 3):
        monkeypatch.setattr(reducer_mod, "WINDOW_CHUNKS", window)
        ns = open_namespace(tmp_path / f"w{window}", recover=True)

        async def main(ns: Any = ns) -> tuple:
            await ns.create_bucket(ADMIN, "red")
            for key, body in corpus.items():
                await _put(ns, key, body)
            res = Reducer(ns.chunks).run_once()
            for key, body in corpus.items():
                assert await _read(ns, key) == body
            return res.deltas, res.grouped, res.saved_bytes, res.chunks_seen, _codecs(ns)

        try:
            outcomes.append(asyncio.run(main()))
        finally:
            ns.close()
    assert outcomes[0] == outcomes[1] and outcomes[0][0] > 0
