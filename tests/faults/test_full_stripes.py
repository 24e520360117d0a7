"""Full stripes: a large object's bytes are erasure-coded as they arrive and written once, as k data
and m parity shards (engine/chunkstore.py, ``SegmentLog.write_stripe``), never into the replicated
write buffer; small objects still go through the buffer. The write ledger (``exastor stats``) shows
what reached the drives, and the crash and degraded cases keep every acknowledged byte."""

from __future__ import annotations

import hashlib
import json
import random
import shutil

from conftest import exastor, meta_rows, s3_client, start_server, wait_until

BUCKET = "stripes"


def _stats(server) -> dict:
    return json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)


def _drive_args(tmp_path, n: int) -> list[str]:
    return [a for i in range(n) for a in ("--drive", str(tmp_path / f"d{i}"))]


def _replica_files(tmp_path, n: int) -> int:
    return sum(1 for i in range(n) for _ in (tmp_path / f"d{i}" / "segments").glob("seg-*.log"))


def test_large_objects_are_written_once_as_full_stripes(tmp_path):
    rng = random.Random(18)
    server = start_server(tmp_path, *_drive_args(tmp_path, 6), "--ec", "4+2")
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        before = _stats(server)
        big = {f"big/{i}": rng.randbytes(rng.randint(20 << 20, 40 << 20)) for i in range(2)}
        for key, body in big.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        after = _stats(server)
        for key, body in big.items():
            assert hashlib.md5(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).digest() == hashlib.md5(body).digest()
        data = after["written_data_bytes"] - before["written_data_bytes"]
        assert data >= sum(map(len, big.values())), "every byte of the large objects is in a stripe, sealed"
        assert after["written_buffer_bytes"] == before["written_buffer_bytes"], "not one byte through the buffer"
        final = after["written_final_bytes"] - before["written_final_bytes"]
        assert 1.5 <= final / data <= 1.5 * 1.01, f"4+2 writes 1.5 bytes per byte, wrote {final / data:.3f}"
        # Their segments are erasure-coded, and none ever had a replica row.
        coded = meta_rows(server, "SELECT COUNT(*) FROM segment_layout WHERE k = 4 AND m = 2 AND shard_len > 0")
        assert coded[0][0] >= 2

        # A small object goes through the buffer: its bytes are replicated first.
        s3.put_object(Bucket=BUCKET, Key="small", Body=rng.randbytes(100_000))
    finally:
        server.stop()  # seals the open segment: the small object's buffer bytes reach the ledger
    server.start()
    try:
        st = _stats(server)
        assert st["written_buffer_bytes"] > after["written_buffer_bytes"]
        assert st["write_amplification_buffer"] > 0 and st["write_amplification_final"] > 0
        s3 = s3_client(server)
        assert len(s3.get_object(Bucket=BUCKET, Key="small")["Body"].read()) == 100_000
    finally:
        server.stop()
    exastor("fsck", data_dir=server.data_dir)


def test_a_large_put_with_a_drive_missing_writes_a_narrower_stripe(tmp_path):
    """Degraded writes: with one of six drives gone, a full stripe keeps its parity (m = 2) and
    narrows its data shards to fit (3+2) - it survives as many failures as any stripe."""
    rng = random.Random(19)
    server = start_server(tmp_path, *_drive_args(tmp_path, 6), "--ec", "4+2")
    server.stop()
    shutil.rmtree(tmp_path / "d5")  # the drive is missing at start: offline, never written
    server.start(degraded=True)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        body = rng.randbytes(24 << 20)
        s3.put_object(Bucket=BUCKET, Key="degraded", Body=body)
        assert s3.get_object(Bucket=BUCKET, Key="degraded")["Body"].read() == body
        geometries = {tuple(r) for r in meta_rows(server, "SELECT k, m FROM segment_layout WHERE shard_len > 0")}
        assert geometries == {(3, 2)}, geometries
        on_missing = meta_rows(server, "SELECT COUNT(*) FROM shards WHERE drive = 5")
        assert on_missing[0][0] == 0
    finally:
        server.stop()


def test_a_crash_between_the_shards_and_their_commit_loses_nothing_acknowledged(tmp_path):
    """kill -9 after a full stripe's shards are fsynced and before its seal commits: the PUT was not
    acknowledged and is not visible; objects acknowledged before are intact; the unfinished stripe's
    row is marked deleted at restart and its shard files swept (they name the deleted segment)."""
    rng = random.Random(20)
    crash = tmp_path / "crash-points"
    crash.write_text("")
    server = start_server(tmp_path, *_drive_args(tmp_path, 6), "--ec", "4+2",
                          env={"EXASTOR_CRASH_POINTS": str(crash)})
    s3 = s3_client(server, retry=False)
    s3.create_bucket(Bucket=BUCKET)
    kept = {f"kept/{i}": rng.randbytes(rng.choice([50_000, 9 << 20])) for i in range(4)}
    for key, body in kept.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    crash.write_text("stripe.shards_written=1")
    try:
        s3.put_object(Bucket=BUCKET, Key="lost", Body=rng.randbytes(20 << 20))
        raise AssertionError("the PUT was acknowledged although the server was killed before its commit")
    except Exception as exc:  # noqa: BLE001 - the connection drops: any client error
        assert "acknowledged" not in str(exc)
    wait_until(lambda: server.proc.poll() is not None, "the server killed at the crash point")
    unfinished = meta_rows(server, "SELECT id FROM segments WHERE state = 'open' AND id NOT IN "
                                   "(SELECT segment FROM replicas)")
    assert unfinished, "the stripe's row is open with no replicas when the process dies"
    crash.write_text("")
    server.start()
    try:
        s3 = s3_client(server)
        for key, body in kept.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert "lost" not in keys
        states = dict(meta_rows(server, f"SELECT id, state FROM segments WHERE id IN "
                                        f"({','.join(str(r[0]) for r in unfinished)})"))
        assert set(states.values()) == {"deleted"}, states
        left = [p for i in range(6) for p in (tmp_path / f"d{i}" / "shards").glob("seg-*")
                if any(f"seg-{seg:016x}." in p.name for seg, in unfinished)]
        assert not left, f"the unfinished stripe's shards are swept at start: {left}"
    finally:
        server.stop()
    exastor("fsck", data_dir=server.data_dir)


def test_write_buffer_drives_take_the_open_segments_and_capacity_drives_the_stripes(tmp_path):
    """--buffer-drive: small writes are replicated on the write-buffer drives only; the seal puts
    their stripes on the capacity drives; full stripes never touch the buffer drives; the geometry
    counts capacity drives alone. With too few buffer drives left, writes go on, on capacity drives."""
    rng = random.Random(21)
    buffers = [tmp_path / f"b{i}" for i in range(3)]  # m+1 = 3 for 4+2
    server = start_server(tmp_path, *_drive_args(tmp_path, 6),
                          *[a for b in buffers for a in ("--buffer-drive", str(b))])
    small = {f"small/{i}": rng.randbytes(rng.randint(1, 200_000)) for i in range(30)}
    big = rng.randbytes(12 << 20)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        for key, body in small.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        s3.put_object(Bucket=BUCKET, Key="big", Body=big)
        tiers = dict(meta_rows(server, "SELECT id, tier FROM drives"))
        assert sorted(tiers.values()) == ["buffer"] * 3 + ["capacity"] * 6
        buffer_ids = {i for i, t in tiers.items() if t == "buffer"}
        holders = {d for (d,) in meta_rows(server, "SELECT drive FROM replicas")}
        assert holders and holders <= buffer_ids, f"open segments' replicas on the buffer drives only: {holders}"
        assert sum(1 for b in buffers for _ in (b / "segments").glob("seg-*.log")) == 3
        assert _replica_files(tmp_path, 6) == 0
        status = json.loads(exastor("drive", "status", "--json", data_dir=server.data_dir).stdout)
        assert status["geometry"] == "4+2"  # 6 capacity drives: the buffer drives hold no stripes
        assert status["buffer_tier"] == {"drives": 3, "writable": 3, "needed": 3, "in_use": True}
    finally:
        server.stop()  # seals the open segment: its stripe goes to the capacity drives
    on_buffer = meta_rows(server, f"SELECT COUNT(*) FROM shards WHERE drive IN ({','.join(map(str, buffer_ids))})")
    assert on_buffer[0][0] == 0
    assert not [p for b in buffers for p in (b / "shards").glob("seg-*")]
    assert not [p for b in buffers for p in (b / "segments").glob("seg-*.log")], "the sealed segment's replicas are deleted"

    shutil.rmtree(buffers[2])  # one buffer drive lost: 2 left, fewer than m+1
    server.start(degraded=True)
    try:
        s3 = s3_client(server)
        s3.put_object(Bucket=BUCKET, Key="after", Body=b"x" * 1000)
        holders = {d for (d,) in meta_rows(server, "SELECT drive FROM replicas")}
        assert holders and not holders & buffer_ids, "too few buffer drives: the capacity drives take the buffer"
        for key, body in [*small.items(), ("big", big)]:
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    finally:
        server.stop()
    shown = exastor("drive", "status", data_dir=server.data_dir).stdout
    assert "NEW WRITES ARE BUFFERED ON THE CAPACITY DRIVES" in " ".join(shown.split()), shown
