"""A torn tail is only what lies after the last complete record; a bad record in the middle is damage:
repaired from another replica where one has it, otherwise kept in place and reported - never a reason to
cut the valid records behind it."""

from __future__ import annotations

import json
import os
import random

import blake3
import pytest
from botocore.exceptions import ClientError

from conftest import exastor, s3_client, start_server
from exastor.datadir.opening import open_metadata
from exastor.engine.drives import DriveSet, load_layout, segment_name
from exastor.engine.record import CODEC_RAW, SEGMENT_HEADER_SIZE, encode
from exastor.engine.scan import walk
from exastor.engine.segments import SegmentLog

BUCKET = "torn"


def _record(data: bytes) -> bytes:
    return encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data


def _fsck(server) -> dict:
    return json.loads(exastor("fsck", "--json", data_dir=server.data_dir, check=False).stdout)


def test_a_flipped_bit_in_an_open_segment_is_damage_not_a_torn_tail(tmp_path):
    """The issue's repro: one drive, a bit flipped 1 MB into a 40 MB open segment, a restart. Before:
    recovery cut the segment to 1 MB as a 'torn tail' and fsck went from 1 corrupt chunk to 529."""
    server = start_server(tmp_path)
    rng = random.Random(4)
    bodies = {f"o{i:02d}": rng.randbytes(2 << 20) for i in range(20)}
    s3 = s3_client(server)
    s3.create_bucket(Bucket=BUCKET)
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    server.kill()
    segments = sorted((server.data_dir / "drive0" / "segments").iterdir())
    assert len(segments) == 1, "one open segment holds all 40 MB"
    path = segments[0]
    size = path.stat().st_size
    assert size > 40 << 20
    with open(path, "r+b") as f:
        f.seek(1 << 20)
        byte = f.read(1)
        f.seek(1 << 20)
        f.write(bytes([byte[0] ^ 0x10]))
    before = _fsck(server)
    assert len(before["corrupt_chunks"]) == 1 and len(before["damaged_objects"]) == 1, before

    server.start()  # recovery seals the open segment
    server.stop()
    assert path.stat().st_size == size, "no valid record after the damage was cut"
    after = _fsck(server)
    assert after["corrupt_chunks"] == before["corrupt_chunks"], after
    assert after["damaged_objects"] == before["damaged_objects"], "fsck names the one damaged object"
    damaged = after["damaged_objects"][0].split("/", 1)[1].split()[0]
    assert "segment 1" in server.log_text() and "kept in place" in server.log_text()

    server.start()
    try:
        s3 = s3_client(server, retry=False)
        for key, body in bodies.items():
            if key == damaged:
                with pytest.raises(ClientError) as err:  # never wrong bytes
                    s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            else:
                assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
    finally:
        server.stop()


def test_sealing_heals_damage_from_the_other_replica_and_cuts_only_the_torn_tail(tmp_path):
    meta = open_metadata(tmp_path / "data")
    drives = DriveSet(meta, [tmp_path / f"d{i}" for i in range(3)], ec="2+1", base=tmp_path / "data")
    log = SegmentLog(drives, meta, max_size=64 << 20)
    rng = random.Random(9)
    records = [_record(rng.randbytes(rng.randint(1000, 90_000))) for _ in range(40)]
    offsets = []
    for rec in records:
        seg, off = log.append(rec)
        offsets.append(off)
    end = offsets[-1] + len(records[-1])
    log.sync(seg, end)
    lay = load_layout(meta, seg)
    a, b = (drives.get(d).path / segment_name(seg) for d in lay.replicas)
    raw_a, raw_b = bytearray(a.read_bytes()), bytearray(b.read_bytes())
    raw_a[offsets[5] + 100] ^= 1                       # damage in replica a ...
    raw_b[offsets[30] + 70] ^= 4                       # ... and other damage in replica b
    raw_a += os.urandom(700)                           # and a torn tail on a: half a record
    a.write_bytes(bytes(raw_a) + records[0][:300])
    b.write_bytes(bytes(raw_b))
    merged = log._replica_bytes(lay, None, None)
    assert len(merged) == end, "only the torn tail was cut"
    assert merged[offsets[5]:offsets[6]] == records[5] and merged[offsets[30]:offsets[31]] == records[30]
    assert walk(merged).damaged == [] and walk(merged).end == end
    # Damage no replica covers is kept in place, with everything after it.
    raw_b[offsets[5] + 100] ^= 1
    b.write_bytes(bytes(raw_b))
    a.write_bytes(bytes(raw_a[:end]))  # record 5 is now bad in both; record 30 still good in a
    merged = log._replica_bytes(lay, None, None)
    assert len(merged) == end
    assert walk(merged).damaged == [(offsets[5], offsets[6])]
    log.close()


def test_a_seal_reads_one_healthy_replica_and_the_others_only_where_it_falls_short(tmp_path):
    """Sealing at rollover knows the segment's size: one replica that holds every record valid up to
    it is read alone; a bad record, or a replica cut short, makes the seal read the others."""
    meta = open_metadata(tmp_path / "data")
    drives = DriveSet(meta, [tmp_path / f"d{i}" for i in range(4)], ec="2+2", base=tmp_path / "data")
    log = SegmentLog(drives, meta, max_size=64 << 20)
    rng = random.Random(11)
    records = [_record(rng.randbytes(rng.randint(1000, 90_000))) for _ in range(30)]
    offsets = [log.append(rec) for rec in records]
    seg = offsets[0][0]
    end = offsets[-1][1] + len(records[-1])
    log.sync(seg, end)
    lay = load_layout(meta, seg)
    assert len(lay.replicas) == 3
    reads: list[int] = []
    for d in lay.replicas:
        io = drives.get(d).io
        real = io.pread

        def counted(name, offset, length, _real=real, _d=d):
            reads.append(_d)
            return _real(name, offset, length)

        io.pread = counted
    whole = (drives.get(lay.replicas[0]).path / segment_name(seg)).read_bytes()[:end]

    assert log._replica_bytes(lay, None, end, sealing=True) == whole
    assert reads == [lay.replicas[0]], "healthy replicas: one copy read"

    first = drives.get(lay.replicas[0]).path / segment_name(seg)
    raw = bytearray(first.read_bytes())
    raw[offsets[12][1] + 50] ^= 1                      # a bad record in the first replica
    first.write_bytes(bytes(raw))
    reads.clear()
    assert log._replica_bytes(lay, None, end, sealing=True) == whole, "healed from another replica"
    assert len(reads) == 3 and reads[0] == lay.replicas[0]

    first.write_bytes(whole[:offsets[20][1]])           # the first replica cut short: the others hold the rest
    reads.clear()
    assert log._replica_bytes(lay, None, end, sealing=True) == whole
    assert len(reads) == 3
    log.close()


def test_the_walk_tells_damage_from_a_torn_tail():
    rng = random.Random(1)
    records = [_record(rng.randbytes(5000)) for _ in range(10)]
    buf = bytearray(bytes(SEGMENT_HEADER_SIZE) + b"".join(records))
    whole = len(buf)
    assert walk(bytes(buf)).end == whole and not walk(bytes(buf)).damaged
    second = SEGMENT_HEADER_SIZE + len(records[0])
    buf[second + 3] ^= 0xFF                              # the header of record 1: its length is unknown too
    scan = walk(bytes(buf) + b"\0" * 333)                # plus a torn tail of zeros
    assert scan.damaged == [(second, second + len(records[1]))] and scan.end == whole
    assert len(scan.records) == 9


def test_sealing_never_cuts_below_the_last_indexed_record(tmp_path):
    """Damage in the last record looks like a torn tail to a walk, but that record was committed (so
    fsynced): recovery keeps it in place instead of cutting it off, and fsck names its object."""
    import asyncio

    from exastor.datadir.opening import open_namespace
    from exastor.namespace.operations import PutSpec, SystemGrant
    from exastor.services import fsck

    ns = open_namespace(tmp_path)
    bodies = {f"t{i}": random.Random(i).randbytes(300_000) for i in range(4)}

    async def fill() -> None:
        await ns.create_bucket(SystemGrant("admin"), "bkt")
        for key, body in bodies.items():
            async def source(body: bytes = body):
                yield body
            await ns.put_object(SystemGrant("admin"), "bkt", key, source(), PutSpec())

    asyncio.run(fill())
    path = next((tmp_path / "drive0" / "segments").iterdir())  # the open segment: no close, as after a crash
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x08
    path.write_bytes(bytes(raw))
    again = open_namespace(tmp_path)  # recovery seals the open segment
    try:
        assert path.stat().st_size == len(raw), "the damaged last record was kept, not cut as a torn tail"
        report = fsck.check(again.meta, tmp_path / "drive0" / "segments")
        assert len(report.corrupt_chunks) == 1 and report.damaged_objects == ["bkt/t3 null"], report.to_json()
    finally:
        again.close()
        ns.chunks.pool.shutdown()
