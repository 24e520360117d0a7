"""The engine in-process: chunking equivalence, records, manifests, dedupe, concurrent rollover."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from exastor import errors
from exastor.datadir.opening import open_namespace
from exastor.engine import chunker, chunkstore, record
from exastor.engine.drives import load_layout
from exastor.meta import manifest as mf
from exastor.namespace.operations import PutSpec, SystemGrant

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request


def test_windowed_chunking_equals_whole_buffer_chunking():
    rng = random.Random(7)
    data = rng.randbytes(3 << 20)
    whole, tail = chunker.cut(chunker.new_chunker(), data, True)
    assert tail == b""
    pieces: list[bytes] = []
    carry = b""
    pos = 0
    for size in (100_000, 700_001, 1 << 20, 5, len(data)):
        window = carry + data[pos:pos + size]
        pos += size
        final = pos >= len(data)
        chunks, carry = chunker.cut(chunker.new_chunker(), window, final)
        pieces += [bytes(c) for c in chunks]
        if final:
            break
    assert [bytes(c) for c in whole] == pieces
    assert all(chunker.MIN_SIZE <= len(c) <= chunker.MAX_SIZE for c in pieces[:-1])


def test_record_roundtrip_and_corruption():
    fp = bytes(range(32))
    payload = b"payload bytes"
    head = record.encode(fp, record.CODEC_RAW, len(payload), payload)
    parsed = record.decode_header(head)
    assert (parsed.fp, parsed.raw_len, parsed.stored_len) == (fp, len(payload), len(payload))
    record.verify_payload(parsed, payload)
    with pytest.raises(errors.DataCorrupted):
        record.verify_payload(parsed, b"payload bytez")
    bad = bytearray(head)
    bad[10] ^= 1
    with pytest.raises(errors.DataCorrupted):
        record.decode_header(bytes(bad))


def test_manifest_layout_covering_and_sub_manifest():
    slices = [mf.Slice(bytes([i]) * 32, 0, n) for i, n in enumerate([10, 20, 30])]
    layout = mf.Layout(mf.pack(slices))
    assert layout.size == 60
    got = [(s.fp[0], skip, take) for s, skip, take in layout.covering(5, 35)]
    assert got == [(0, 5, 5), (1, 0, 20), (2, 0, 6)]
    sub = layout.sub_manifest(12, 14)
    assert sub == [mf.Slice(bytes([1]) * 32, 2, 3)]
    big = [mf.Slice(os.urandom(32), 0, 100) for _ in range(100)]  # the numpy path
    assert mf.unpack(mf.pack(big)) == big
    assert mf.total_length(mf.pack(big)) == 10_000


async def _put(ns, key: str, body: bytes) -> None:
    async def source():
        for i in range(0, len(body), 100_000):
            yield body[i:i + 100_000]

    await ns.put_object(ADMIN, "eng", key, source(), PutSpec())


async def _read(ns, key: str) -> bytes:
    obj = ns.get_object(ADMIN, "eng", key)
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])


def test_concurrent_writes_across_many_segment_rollovers(tmp_path):
    """Tiny segments force a rollover every few writes while the metadata writer is making other
    writers' data durable: the interleaving that once deadlocked."""
    ns = open_namespace(tmp_path, segment_size=1 << 16)

    async def main() -> None:
        await ns.create_bucket(ADMIN, "eng")
        rng = random.Random(3)
        bodies = {f"k{i}": rng.randbytes(rng.randint(0, 300_000)) for i in range(40)}
        await asyncio.wait_for(asyncio.gather(*(_put(ns, k, b) for k, b in bodies.items())), 120)
        for k, b in bodies.items():
            assert await _read(ns, k) == b
        # Identical content is stored once.
        await _put(ns, "dup1", bodies["k1"])
        assert await _read(ns, "dup1") == bodies["k1"]

    try:
        asyncio.run(main())
        segments = ns.meta.segments()
        assert len(segments) > 20
    finally:
        ns.close()


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
@pytest.mark.parametrize("drives", [1, 3])
def test_adjacent_records_read_in_one_pread_and_a_bad_one_alone(tmp_path, drives, encrypted):
    """A GET reads back-to-back records with one pread; a record in that run that fails its
    checksum (or, encrypted, its tag: it was decrypted in place in the run's buffer) is read again
    on its own: degraded from another replica, or an error, never wrong bytes."""
    from conftest import prepare_encryption
    from exastor.engine.drives import segment_name

    if encrypted:
        prepare_encryption(tmp_path / "data")
    dirs = [str(tmp_path / f"d{i}") for i in range(drives)] if drives > 1 else None
    ns = open_namespace(tmp_path / "data", drives=dirs, ec="2+1" if dirs else None)
    body = random.Random(5).randbytes(3 << 20)
    try:
        async def put() -> None:
            await ns.create_bucket(ADMIN, "eng")
            await _put(ns, "k", body)

        asyncio.run(put())
        preads: list[int] = []
        real = ns.chunks.log.pread
        ns.chunks.log.pread = lambda seg, off, n, **kw: preads.append(n) or real(seg, off, n, **kw)
        assert asyncio.run(_read(ns, "k")) == body
        obj = ns.get_object(ADMIN, "eng", "k")
        fps = [s.fp for s in mf.Layout(obj.manifest).slices]
        assert len(preads) <= len(body) // chunkstore.RUN_LIMIT + 2 < len(fps) // 4   # per run, not per chunk
        assert ns.chunks.keys.encrypting == encrypted
        loc = ns.meta.lookup_chunks([fps[len(fps) // 2]])[fps[len(fps) // 2]]
        lay = load_layout(ns.meta, loc.segment)
        first = ns.chunks.log.drives.get(lay.replicas[0] if lay.kind == "replicas" else ns.chunks.log.drives.first.id)
        path = first.path / segment_name(loc.segment)
        raw = bytearray(path.read_bytes())
        raw[loc.offset + record.HEADER_SIZE + 7] ^= 0x01
        path.write_bytes(bytes(raw))
        ns.chunks.log.forget(loc.segment)
        if drives > 1:
            assert asyncio.run(_read(ns, "k")) == body
        else:
            with pytest.raises(errors.DataCorrupted):
                asyncio.run(_read(ns, "k"))
    finally:
        ns.close()


def test_ref_count_windows_sum_to_the_whole():
    rng = random.Random(9)
    fps = [rng.randbytes(32) for _ in range(50)]
    manifest = mf.pack([mf.Slice(rng.choice(fps), 0, 100) for _ in range(1000)])
    total: dict[bytes, int] = {}
    for counts in mf.ref_count_windows(manifest, window=64):
        assert len(counts) <= 64
        for fp, n in counts.items():
            total[fp] = total.get(fp, 0) + n
    assert total == dict(mf.ref_counts(manifest))
    assert list(mf.ref_count_windows(None)) == []


@pytest.mark.parametrize("total, sizes", [
    (13 << 20, [1, 70_000, 5 << 20, 3, 262_144, 1 << 20, 999_999]),
    # Many windows, so the two window buffers are used again and again, with a short window (one
    # small piece tips it over) before a long one (a 6 MiB piece): a buffer a short window left
    # behind grows, and what a longer window left in it beyond the new fill is never processed.
    (41 << 20, [262_144] * 15 + [1, 6 << 20, 3, 65_536] + [131_072] * 31 + [4 << 20]),
], ids=["mixed", "reused-buffers"])
def test_streamed_windows_chunk_like_the_whole_object(tmp_path, total, sizes):
    """Pieces of every size, across several windows (the later ones filled in place behind the
    carried chunk, in two buffers that take turns): the stored chunks are the whole object's chunks,
    and it reads back intact."""
    import blake3

    rng = random.Random(11)
    body = rng.randbytes(total)
    ns = open_namespace(tmp_path)
    try:
        async def main() -> bytes:
            await ns.create_bucket(ADMIN, "eng")

            async def source():
                pos, i = 0, 0
                while pos < len(body):
                    n = sizes[i % len(sizes)]
                    yield memoryview(body)[pos:pos + n] if i % 2 else body[pos:pos + n]
                    pos, i = pos + n, i + 1

            await ns.put_object(ADMIN, "eng", "big", source(), PutSpec())
            return await _read(ns, "big")

        assert asyncio.run(main()) == body
        whole, _ = chunker.cut(chunker.new_chunker(), body, True)
        obj = ns.get_object(ADMIN, "eng", "big")
        assert [s.fp for s in mf.Layout(obj.manifest).slices] == [blake3.blake3(c).digest() for c in whole]
        assert obj.etag == __import__("hashlib").md5(body).hexdigest()
    finally:
        ns.close()


def test_window_buffers_are_used_again_by_later_objects(tmp_path):
    """Window buffers go back to the store when an object is done and later objects fill them again
    (chunkstore.ChunkStore.take_window): whatever an earlier, larger object left in a buffer never
    reaches a later object's chunks, and concurrent writers never share one."""
    import blake3

    from exastor.engine import chunkstore as cs

    rng = random.Random(5)
    bodies = {f"o{i}": rng.randbytes(n) for i, n in
              enumerate([21 << 20, 300_000, 9 << 20, (4 << 20) + 1, 1 << 20, 6 << 20, 5 << 20])}
    ns = open_namespace(tmp_path)
    try:
        async def put(key: str, step: int) -> None:
            body = bodies[key]

            async def source():
                for i in range(0, len(body), step):
                    yield body[i:i + step]

            await ns.put_object(ADMIN, "eng", key, source(), PutSpec())

        async def main() -> None:
            await ns.create_bucket(ADMIN, "eng")
            keys = list(bodies)
            await put(keys[0], 262_144)
            for key in keys[1:4]:
                await put(key, 1 << 20)
            await asyncio.gather(*(put(key, 100_000) for key in keys[4:]))  # concurrent writers
            for key, body in bodies.items():
                assert await _read(ns, key) == body, key

        asyncio.run(main())
        assert 0 < len(ns.chunks._spare_windows) <= cs.WINDOW_POOL
        for key, body in bodies.items():
            whole, _ = chunker.cut(chunker.new_chunker(), body, True)
            obj = ns.get_object(ADMIN, "eng", key)
            assert [s.fp for s in mf.Layout(obj.manifest).slices] == [blake3.blake3(c).digest() for c in whole]
    finally:
        ns.close()
