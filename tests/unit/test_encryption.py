"""Encryption at rest in process: records sealed with AES-256-GCM under the store's data keys, below
the reduction. Tampering that keeps every checksum valid is caught by the tag (and read around from
a replica); keys rotate without rewriting records; a store without its master key cannot read; an
older, plaintext store still reads."""

from __future__ import annotations

import asyncio
import random
import struct
from pathlib import Path

import pytest
import xxhash

from conftest import prepare_encryption
from exastor import errors
from exastor.datadir import keys
from exastor.datadir.opening import open_namespace
from exastor.engine import encryption, record
from exastor.engine.record import HEADER_SIZE, SEGMENT_HEADER_SIZE, decode_header
from exastor.engine.scan import walk
from exastor.meta import datakeys
from exastor.namespace.operations import PutSpec, SystemGrant

ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request


def _open(tmp_path: Path, n: int = 1, want: bool | None = True, ec: str | None = None):
    data = tmp_path / "data"
    drives = [str(tmp_path / f"d{i}") for i in range(n)] if n > 1 else None
    data.mkdir(parents=True, exist_ok=True)
    if want is not None or not (data / "meta").exists():
        prepare_encryption(data, want)
    return open_namespace(data, segment_size=1 << 20, drives=drives, ec=ec)


async def _put(ns, key: str, body: bytes) -> None:
    async def source():
        for i in range(0, len(body), 100_000):
            yield body[i:i + 100_000]

    try:
        await ns.create_bucket(ADMIN, "bkt")
    except errors.BucketExists:
        pass
    await ns.put_object(ADMIN, "bkt", key, source(), PutSpec())


async def _read(ns, key: str) -> bytes:
    obj = ns.get_object(ADMIN, "bkt", key)
    return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])


def _records(path: Path) -> list[tuple[int, record.RecordHeader]]:
    buf = path.read_bytes()
    return [(pos, decode_header(buf[pos:pos + HEADER_SIZE])) for pos, _ in walk(buf).records]


def _segment_files(root: Path) -> list[Path]:
    return sorted(root.rglob("seg-*.log"))


def test_records_are_sealed_below_the_reduction_and_read_back(tmp_path):
    body = random.Random(1).randbytes(2 << 20) + b"A" * (1 << 20)  # incompressible, then compressible
    ns = _open(tmp_path)
    try:
        assert ns.chunks.keys.encrypting and ns.encrypted_at_rest
        asyncio.run(_put(ns, "k", body))
        asyncio.run(_put(ns, "copy", body))  # dedupes: the fingerprints are of the plaintext
        assert asyncio.run(_read(ns, "k")) == body
        assert asyncio.run(_read(ns, "copy")) == body
    finally:
        ns.close()
    recs = [h for f in _segment_files(tmp_path / "data") for _, h in _records(f)]
    assert recs and all(h.key_id == 1 for h in recs)
    assert any(h.codec == record.CODEC_ZSTD for h in recs)        # compressed first, then encrypted
    assert sum(h.raw_len for h in recs) < 2 * len(body)           # deduplicated
    disk = b"".join(f.read_bytes() for f in _segment_files(tmp_path / "data"))
    for i in range(0, 2 << 20, 256 << 10):
        assert body[i:i + 32] not in disk


def test_associated_data_binds_a_payload_to_its_header(tmp_path):
    ns = _open(tmp_path)
    ring = ns.chunks.keys
    ns.close()
    fp_a, fp_b = b"a" * 32, b"b" * 32
    kid, sealed = ring.seal(fp_a, record.CODEC_RAW, 0, 5, b"hello")
    head = decode_header(record.encode(fp_a, record.CODEC_RAW, 5, sealed, key_id=kid))
    assert kid == 1 and ring.open(head, sealed) == b"hello"
    for other in (record.encode(fp_b, record.CODEC_RAW, 5, sealed, key_id=kid),     # another chunk's header
                  record.encode(fp_a, record.CODEC_ZSTD, 5, sealed, key_id=kid),    # another codec
                  record.encode(fp_a, record.CODEC_RAW, 6, sealed, key_id=kid)):    # another length
        with pytest.raises(errors.DataCorrupted):
            ring.open(decode_header(other), sealed)
    # Nonces: a per-process prefix and a counter; never the same twice, a new prefix in a forked child.
    nonces = {bytes(ring.seal(fp_a, 0, 0, 1, b"x")[1][:12]) for _ in range(1000)}
    assert len(nonces) == 1000 and len({n[:8] for n in nonces}) == 1
    ring._nonces[kid].pid = -1  # as a forked child sees its parent's state
    assert bytes(ring.seal(fp_a, 0, 0, 1, b"x")[1][:8]) not in {n[:8] for n in nonces}


def _reseal(path: Path, pos: int, flip_at: int) -> None:
    """Flip a payload byte of the record at ``pos`` and make both its checksums match again: damage
    (or an attacker) that only the authentication tag can see."""
    buf = bytearray(path.read_bytes())
    head = decode_header(buf[pos:pos + HEADER_SIZE])
    start = pos + HEADER_SIZE
    buf[start + flip_at] ^= 0x01
    payload = bytes(buf[start:start + head.stored_len])
    struct.pack_into("<Q", buf, pos + 48, xxhash.xxh3_64_intdigest(payload))
    struct.pack_into("<I", buf, pos + 60, xxhash.xxh32_intdigest(bytes(buf[pos:pos + 60])))
    path.write_bytes(bytes(buf))


def test_a_flipped_ciphertext_byte_with_valid_checksums_is_caught_and_read_from_a_replica(tmp_path):
    body = random.Random(2).randbytes(300_000)
    ns = _open(tmp_path, n=3, ec="1+2")  # open segments: 3 replicas
    try:
        asyncio.run(_put(ns, "k", body))
        replicas = _segment_files(tmp_path)
        assert len(replicas) == 3
        for victim in replicas[:2]:  # two of three copies damaged, checksums made to match
            pos, head = _records(victim)[0]
            _reseal(victim, pos, head.stored_len // 2)
            assert head.key_id
        raw = replicas[0].read_bytes()
        pos, head = _records(replicas[0])[0]
        with pytest.raises(errors.DataCorrupted):  # the checksums hold; the tag does not
            ns.chunks.keys.open(head, raw[pos + HEADER_SIZE:pos + HEADER_SIZE + head.stored_len])
        ns.chunks.log.forget(ns.chunks.log.open_segment)
        assert asyncio.run(_read(ns, "k")) == body  # read around the damaged copies
    finally:
        ns.close()


def test_rotation_new_writes_under_the_new_key_old_records_still_read(tmp_path):
    first, second = random.Random(3).randbytes(500_000), random.Random(4).randbytes(500_000)
    ns = _open(tmp_path)
    try:
        asyncio.run(_put(ns, "before", first))
        new_id = ns.meta.runner.write_sync(lambda cur: datakeys.add_key(cur, ns.meta.sealer))  # exastor key rotate
        ns.chunks.keys.load()  # a running server does this within REFRESH_S
        asyncio.run(_put(ns, "after", second))
        assert asyncio.run(_read(ns, "before")) == first
        assert asyncio.run(_read(ns, "after")) == second
    finally:
        ns.close()
    ids = {h.key_id for f in _segment_files(tmp_path / "data") for _, h in _records(f)}
    assert ids == {1, new_id} and new_id == 2
    ns = _open(tmp_path, want=None)  # reopened: both keys open from the database
    try:
        assert asyncio.run(_read(ns, "before")) == first and asyncio.run(_read(ns, "after")) == second
    finally:
        ns.close()


def test_without_the_master_key_nothing_reads_and_nothing_is_called_damaged(tmp_path):
    body = random.Random(5).randbytes(300_000)
    ns = _open(tmp_path)
    try:
        asyncio.run(_put(ns, "k", body))
    finally:
        ns.close()
    key_file = tmp_path / "data" / keys.KEY_FILE
    key_file.rename(tmp_path / "elsewhere.key")
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20)
    try:
        with pytest.raises(encryption.KeyUnavailable):
            asyncio.run(_read(ns, "k"))
        with pytest.raises(encryption.KeyUnavailable):  # and it never writes plaintext instead
            asyncio.run(_put(ns, "new", random.Random(8).randbytes(300_000)))
    finally:
        ns.close()
    (tmp_path / "elsewhere.key").rename(key_file)
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20)
    try:
        assert asyncio.run(_read(ns, "k")) == body
    finally:
        ns.close()


def test_an_older_plaintext_store_still_reads_and_encrypts_new_writes_once_turned_on(tmp_path):
    old = random.Random(6).randbytes(400_000)
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20)  # as before encryption: no setting
    try:
        asyncio.run(_put(ns, "old", old))
    finally:
        ns.close()
    ns = _open(tmp_path, want=None)  # a server start with the default: an existing store stays plaintext
    try:
        assert not ns.chunks.keys.encrypting and not ns.encrypted_at_rest
        assert asyncio.run(_read(ns, "old")) == old
    finally:
        ns.close()
    new = random.Random(7).randbytes(400_000)
    ns = _open(tmp_path, want=True)  # encrypt_at_rest = true
    try:
        assert ns.chunks.keys.encrypting
        assert not ns.encrypted_at_rest  # the old records are still plaintext: never claim otherwise
        asyncio.run(_put(ns, "new", new))
        assert asyncio.run(_read(ns, "old")) == old and asyncio.run(_read(ns, "new")) == new
    finally:
        ns.close()
    ids = [h.key_id for f in _segment_files(tmp_path / "data") for _, h in _records(f)]
    assert 0 in ids and 1 in ids


def test_records_keep_their_segment_offsets_layout(tmp_path):
    """The envelope lives inside the payload: segment files keep their header and record framing."""
    ns = _open(tmp_path)
    try:
        asyncio.run(_put(ns, "k", b"x" * 1000))
    finally:
        ns.close()
    (seg,) = _segment_files(tmp_path / "data")
    pos, head = _records(seg)[0]
    assert pos == SEGMENT_HEADER_SIZE and head.stored_len > encryption.OVERHEAD


def test_a_window_is_sealed_into_one_reused_buffer_under_nonces_never_used_twice(tmp_path):
    """The write path seals each window's records at once (DataKeys.seal_window): one nonce
    reservation per window, the ciphertexts back to back in one buffer that later windows reuse.
    Every record in the store still has its own nonce, and reusing the buffer never changes a
    record already written: objects of many windows, written one after the other, read back."""
    bodies = {f"k{i}": random.Random(10 + i).randbytes(9 << 20) for i in range(3)}  # 3 windows each
    ns = _open(tmp_path)
    try:
        keys = ns.chunks.keys
        for key, body in bodies.items():
            asyncio.run(_put(ns, key, body))
        assert len(keys._spare) == 1  # nine windows, one at a time: one buffer, not one per record or window
        for key, body in bodies.items():
            assert asyncio.run(_read(ns, key)) == body
    finally:
        ns.close()
    nonces = []
    for seg in _segment_files(tmp_path / "data"):
        buf = seg.read_bytes()
        for pos, head in _records(seg):
            assert head.key_id == 1
            nonces.append(buf[pos + HEADER_SIZE:pos + HEADER_SIZE + encryption.NONCE_SIZE])
    assert len(nonces) > 300 and len(set(nonces)) == len(nonces)


def test_a_window_reservation_never_runs_past_its_nonce_prefix(tmp_path):
    ns = _open(tmp_path)
    keys = ns.chunks.keys
    ns.close()
    fp = b"f" * 32
    records = [(fp, record.CODEC_RAW, 0, 3, b"abc")] * 5
    with keys.seal_window(records[:1]) as (kid, (first,)):
        prefix = bytes(first[:8])
    keys._nonces[kid].used = encryption.PREFIX_USES - 2  # two counters left under this prefix: not enough
    with keys.seal_window(records) as (kid, stored):
        seen = [bytes(s[:12]) for s in stored]
        head = decode_header(record.encode(fp, record.CODEC_RAW, 3, stored[4], key_id=kid))
        assert bytes(keys.open(head, bytes(stored[4]))) == b"abc"
    assert len({n[:8] for n in seen}) == 1 and seen[0][:8] != prefix          # a fresh prefix for all five
    assert [int.from_bytes(n[8:], "big") for n in seen] == [0, 1, 2, 3, 4]   # consecutive counters
    with keys.seal_window(records[:1]) as (_, (after,)):
        assert bytes(after[:12]) == seen[0][:8] + (5).to_bytes(4, "big")      # the next window goes on


def test_spare_window_buffers_of_any_size_are_taken_and_given_back(tmp_path):
    """Concurrent PUTs leave spare buffers of different sizes: taking one that is not the first, or
    dropping the smallest, must not compare arrays (list.remove did: a 500 on PUT, found by
    tests/faults/test_concurrent_services.py)."""
    import numpy as np

    ns = _open(tmp_path)
    keys = ns.chunks.keys
    ns.close()
    big, small, same = np.zeros(6 << 20, np.uint8), np.ones(1 << 20, np.uint8), np.full(1 << 20, 2, np.uint8)
    keys._spare = [big, small, same]
    assert keys._take_buffer(100) is small
    assert keys._spare[0] is big and keys._spare[1] is same
    for _ in range(encryption.SPARE_BUFFERS + 2):
        keys._give_back(np.full(2 << 20, 3, np.uint8))
    assert len(keys._spare) == encryption.SPARE_BUFFERS and any(b is big for b in keys._spare)
