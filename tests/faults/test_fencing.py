"""Split brain on a segment, prevented by lease epochs (docs/design.md, "Leases and fencing").

Two gateways (`exastor serve --meta postgresql://...`) share three drive servers. Gateway A holds an
open segment S and stops renewing its lease (cut off from the database's lease row, as a paused or
partitioned process is), but still reaches the drives. Once the lease has expired by the database's
clock, gateway B starts, takes S over (epoch 2), fences S's replicas, erasure-codes S and commits the
seal - and is killed there (crash point ``seal.committed``), so S's replica files are still on the
drives, as they are for a while after every seal. Then A, which still believes S is its own, writes
into it. The drives refuse (its epoch 1 is stale): A abandons S and writes the object into a new
segment. S's bytes are unchanged, every acknowledged object reads back byte-identical through both
gateways, and fsck is clean.

Without the epoch check A's append would land in S after B read it, A would commit an object whose
bytes are in no shard of S, and this test fails (replica bytes changed; that object unreadable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess, free_port, s3_client, wait_until
from drive_servers import DriveServerProcess, assert_fsck_clean, cluster_key
from exastor.datadir.opening import open_metadata
from pgcluster import rows as pg_rows

LEASE_MS = 1500


@pytest.fixture
def drive_hosts(tmp_path):
    key = cluster_key(tmp_path)
    hosts = []
    for n in (1, 2, 3):
        ds = DriveServerProcess({f"drive{n}": tmp_path / f"host{n}" / f"drive{n}"}, key, tmp_path / f"ds{n}.log")
        ds.host = f"127.0.0.{n}"
        hosts.append(ds)
    try:
        for ds in hosts:
            ds.start()
        yield key, hosts
    finally:
        for ds in hosts:
            ds.stop()
        for ds in hosts:
            assert "Traceback" not in ds.log_text(), ds.log_text()[-3000:]


def test_a_stale_gateway_cannot_write_into_a_segment_another_sealed(tmp_path, pg_cluster, drive_hosts, monkeypatch):
    key, hosts = drive_hosts
    dsn = pg_cluster.create_database("exastor_fence")
    common = {"EXASTOR_CLUSTER_KEY_FILE": str(key), "EXASTOR_META_URL": dsn,
              "EXASTOR_SEGMENT_LEASE_MS": str(LEASE_MS), "EXASTOR_GC_INTERVAL": "0",
              "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_REPAIR_INTERVAL": "3600", "EXASTOR_SCRUB_INTERVAL": "0"}
    a = ServerProcess(tmp_path / "a", free_port(), free_port(), tmp_path / "a.log",
                      extra_args=["--workers", "1", *[x for n, ds in enumerate(hosts, 1)
                                                      for x in ("--drive", ds.url(f"drive{n}"))]],
                      # A never renews: its lease expires while it still writes (a paused or cut-off holder).
                      env={**common, "EXASTOR_SEGMENT_LEASE_RENEW_MS": "3600000"})
    b_data = tmp_path / "b"
    b = ServerProcess(b_data, free_port(), free_port(), tmp_path / "b.log", extra_args=["--workers", "1"], env=common)
    try:
        (tmp_path / "a").mkdir(mode=0o700)
        a.start()
        s3a = s3_client(a, retry=False)
        s3a.create_bucket(Bucket="fence")
        bodies = {f"before/{i}": os.urandom(150_000 + i) for i in range(4)}
        for k, body in bodies.items():
            s3a.put_object(Bucket="fence", Key=k, Body=body)

        (segment,), = pg_rows(dsn, "SELECT segment FROM segment_leases")
        served = {ds.url(name): path for ds in hosts for name, path in ds.drives.items()}
        replicas = [Path(served[url]) / f"segments/seg-{segment:016x}.log" for (url,) in pg_rows(
            dsn, "SELECT d.path FROM replicas r JOIN drives d ON d.id = r.drive WHERE r.segment = %s", (segment,))]
        assert len(replicas) == 2 and all(p.exists() for p in replicas)
        wait_until(lambda: pg_rows(dsn, "SELECT expires_ms < CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) "
                                "FROM segment_leases WHERE segment = %s", (segment,))[0][0],
              "A's lease to expire by the database's clock")

        # B takes S over and seals it, and dies right after the seal's commit (replicas not yet removed).
        b_data.mkdir(mode=0o700)
        shutil.copy2(tmp_path / "a" / "master.key", b_data / "master.key")  # one store, one master key
        (tmp_path / "crash").write_text("seal.committed=1\n")
        b.env = {**common, "EXASTOR_CRASH_POINTS": str(tmp_path / "crash"), "EXASTOR_CRASH_LOG": str(tmp_path / "crashed")}
        with open(b.log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "exastor.cli", "serve", "--data", str(b_data),
                                     "--s3-port", str(b.s3_port), "--blob-port", str(b.blob_port),
                                     "--access-key", b.access_key, "--secret-key", b.secret_key,
                                     "--account-name", b.account_name, "--account-key", b.account_key, "--workers", "1"],
                                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **b.env},
                                    start_new_session=True)
        proc.wait(timeout=120)
        assert (tmp_path / "crashed").read_text().split() == ["seal.committed"], b.log_text()[-3000:]
        assert pg_rows(dsn, "SELECT state FROM segments WHERE id = %s", (segment,)) == [("sealed",)]
        assert pg_rows(dsn, "SELECT COUNT(*) FROM shards WHERE segment = %s", (segment,)) == [(3,)]
        assert all(int.from_bytes(p.read_bytes()[32:40], "little") == 2 for p in replicas), "fenced at epoch 2"
        sealed = {p: p.read_bytes() for p in replicas}
        shard_files = {p: p.read_bytes() for ds in hosts for p in Path(next(iter(ds.drives.values()))).glob("shards/*")}

        # A still believes S is its own and writes: refused by the drives, written elsewhere instead.
        late = os.urandom(170_000)
        s3a.put_object(Bucket="fence", Key="after/late", Body=late)
        bodies["after/late"] = late
        assert {p: p.read_bytes() for p in replicas} == sealed, "the stale gateway changed a sealed segment's replica"
        assert {p: p.read_bytes() for p in shard_files} == shard_files
        assert pg_rows(dsn, "SELECT COUNT(*) FROM chunks WHERE segment = %s AND \"offset\" >= "
                         "(SELECT data_len FROM segment_layout WHERE segment = %s)", (segment, segment)) == [(0,)]
        for k, body in bodies.items():
            assert s3a.get_object(Bucket="fence", Key=k)["Body"].read() == body, k
        assert "was taken over by another process" in a.log_text(), a.log_text()[-3000:]
        a.stop()

        # B again, without the crash point: every acknowledged object, byte for byte.
        b.env = common
        b.start()
        s3b = s3_client(b)
        for k, body in bodies.items():
            assert s3b.get_object(Bucket="fence", Key=k)["Body"].read() == body, k
        b.stop()
        assert_fsck_clean(b_data, dsn, key, monkeypatch)
    finally:
        a.stop()
        b.stop()
        pg_cluster.drop_database("exastor_fence")
    for server in (a, b):
        assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


@pytest.mark.parametrize("failure", ["eio", "killed"])
def test_a_failed_replica_append_seals_the_segment_and_opens_a_new_one(tmp_path, failure):
    """No quorum protocol: when an append to one replica of the open segment fails - the drive server
    answers EIO, or it is gone (kill -9) - the segment is sealed from the replicas left and the write
    goes on in a new segment on other drives. The PUT that met the failure succeeds; nothing
    acknowledged is lost; an EIO makes the drive failed, an unreachable server does not."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = cluster_key(data)  # DATA/cluster.key: the gateway's own
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    hosts = [DriveServerProcess({f"drive{n}": tmp_path / f"host{n}" / f"drive{n}"}, key, tmp_path / f"ds{n}.log",
                                env={"EXASTOR_FAULTS": str(rules)}) for n in (1, 2, 3)]
    for n, ds in enumerate(hosts, 1):
        ds.host = f"127.0.0.{n}"
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log",
                           extra_args=["--workers", "1", *[x for n, ds in enumerate(hosts, 1)
                                                           for x in ("--drive", ds.url(f"drive{n}"))]],
                           # The metadata journal, on m+1 of the same drives, fails one commit (503) when its
                           # drive fails, by its own rule (tests/unit/test_journal.py): off here, so the
                           # PUT's outcome is the segment's alone.
                           env={"EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_META_JOURNAL": "0"})
    db = data / "meta" / "exastor.sqlite"

    def rows(query: str, params: tuple = ()) -> list[tuple]:
        import sqlite3

        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute(query, params).fetchall()
        finally:
            con.close()

    try:
        for ds in hosts:
            ds.start()
        server.start()
        s3 = s3_client(server, retry=False)
        s3.create_bucket(Bucket="fail")
        bodies = {f"before/{i}": os.urandom(120_000 + i) for i in range(3)}
        for k, body in bodies.items():
            s3.put_object(Bucket="fail", Key=k, Body=body)
        (segment,), = rows("SELECT id FROM segments WHERE state = 'open'")
        replica_drives = rows("SELECT d.id, d.path FROM replicas r JOIN drives d ON d.id = r.drive "
                              "WHERE r.segment = ? ORDER BY d.id", (segment,))
        victim_id, victim_url = replica_drives[0]
        victim = next(ds for ds in hosts if victim_url.startswith(f"http://{ds.host}:"))
        if failure == "eio":
            rules.write_text(json.dumps({str(next(iter(victim.drives.values()))): {"eio_write": True}}))
        else:
            victim.kill()

        body = os.urandom(200_000)
        s3.put_object(Bucket="fail", Key="after", Body=body)  # met the failure, written elsewhere
        bodies["after"] = body
        wait_until(lambda: rows("SELECT state FROM segments WHERE id = ?", (segment,)) == [("sealed",)],
              "the segment with the failed replica to be sealed")
        (new,), = rows("SELECT id FROM segments WHERE state = 'open'")
        assert new != segment
        assert victim_id not in [d for (d,) in rows("SELECT drive FROM replicas WHERE segment = ?", (new,))]
        (location,), = rows("SELECT segment FROM chunks WHERE segment IN (?, ?) ORDER BY segment DESC LIMIT 1",
                            (segment, new))
        assert location == new, "the object that met the failure is in the new segment"
        for k, b in bodies.items():
            assert s3.get_object(Bucket="fail", Key=k)["Body"].read() == b, k
        (state,), = rows("SELECT state FROM drives WHERE id = ?", (victim_id,))[0:1]
        assert state == ("failed" if failure == "eio" else "active"), state
        if failure == "killed":
            victim.start()
        else:
            rules.write_text("{}")
        server.stop()
        report = subprocess.run([sys.executable, "-m", "exastor.cli", "fsck", "--data", str(data)],
                                capture_output=True, text=True, timeout=300)
        assert report.returncode == 0, report.stdout + report.stderr
    finally:
        server.stop()
        for ds in hosts:
            ds.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


def test_replicas_on_read_only_drives_are_sealed_without_a_fence(tmp_path, monkeypatch):
    """A replica on a drive gone read-only cannot take the fence's epoch, but no writer can change it
    either: the seal reads it (before, an unfenced replica was left out, and with every replica
    read-only the segment could not be sealed at all)."""
    import blake3

    from exastor.engine.drives import DriveSet, load_layout
    from exastor.engine.record import CODEC_RAW, encode
    from exastor.engine.segments import SegmentLog

    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    monkeypatch.setenv("EXASTOR_FAULTS", str(rules))
    meta = open_metadata(tmp_path / "data")
    # 1+1 on four drives: both replicas go read-only, two drives are left for the shards and the journal.
    drives = DriveSet(meta, [tmp_path / f"d{i}" for i in range(4)], ec="1+1", base=tmp_path / "data")
    log = SegmentLog(drives, meta)
    try:
        data = os.urandom(300_000)
        record = encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data
        segment, offset = log.append(record)
        log.sync(segment, offset + len(record))
        holders = [drives.get(d) for d in load_layout(meta, segment).replicas]
        rules.write_text(json.dumps({d.io.label: {"readonly": True} for d in holders}))
        log.seal(segment)
        lay = load_layout(meta, segment)
        assert lay.state == "sealed" and lay.data_len >= offset + len(record), lay
        assert log.pread(segment, offset, len(record)) == record
    finally:
        rules.write_text("{}")
        log.close()
        meta.close()


def _local_log(tmp_path):
    from exastor.engine.drives import DriveSet
    from exastor.engine.segments import SegmentLog

    meta = open_metadata(tmp_path / "data")
    drives = DriveSet(meta, [tmp_path / f"d{i}" for i in range(3)], ec="2+1", base=tmp_path / "data")
    return meta, drives, SegmentLog(drives, meta)


def _record(size: int) -> bytes:
    import blake3

    from exastor.engine.record import CODEC_RAW, encode

    data = os.urandom(size)
    return encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data


def test_a_fenced_writer_abandons_its_segment_and_fails_only_what_was_not_durable(tmp_path):
    """In one process, on local drives: another holder takes the segment's lease over and fences its
    replicas. The writer's next append is refused; it opens a new segment for it, the commit of bytes
    it had made durable still succeeds, the commit of bytes it had not fails (503), and no drive is
    marked failed."""
    from exastor import errors
    from exastor.engine.drives import load_layout, segment_name
    from exastor.meta import leases

    meta, drives, log = _local_log(tmp_path)
    try:
        durable = _record(100_000)
        seg, off = log.append(durable)
        log.sync(seg, off + len(durable))
        pending = _record(100_000)
        seg2, off2 = log.append(pending)  # written, not yet fsynced
        assert seg2 == seg
        epoch = leases.take(meta, seg, "another gateway", steal=True)
        for d in load_layout(meta, seg).replicas:
            drives.get(d).io.fence(segment_name(seg), epoch)
        late = _record(50_000)
        seg3, _ = log.append(late)
        assert seg3 != seg and log.open_segment == seg3
        log.sync(seg, off + len(durable))  # made durable before the fence: its commit may go on
        with pytest.raises(errors.Unavailable):
            log.sync(seg, off2 + len(pending))  # not durable when the segment was lost: 503, retried
        assert {d.state for d in drives.all} == {"active"}
        assert leases.lease_of(meta, seg).holder == "another gateway"
    finally:
        log.close()
        meta.close()


def test_a_writer_whose_lease_renewal_finds_it_lost_opens_a_new_segment(tmp_path, monkeypatch):
    from exastor.meta import leases

    monkeypatch.setattr(leases, "SEGMENT_LEASE_RENEW_MS", 50)
    meta, drives, log = _local_log(tmp_path)
    try:
        seg, _ = log.append(_record(10_000))
        assert leases.take(meta, seg, "another gateway", steal=True) == 2
        # the renewer notices within a renewal interval: the next append opens a new segment
        wait_until(lambda: log.append(_record(1_000))[0] != seg, "the lost lease to be noticed")
    finally:
        log.close()
        meta.close()
