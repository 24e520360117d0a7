"""A drive server restarted between a write and its fsync: the fsync fails, final (the writes may have
died with the old process's page cache), so the commits that need those bytes fail (503) and the
replica is never written again - but the drive is healthy and must stay ``active``. Only an EIO from
the disk's own fsync marks a drive failed (tests/faults/test_fsync_final.py; the last test here
checks it through a drive server too).

The availability bug (issue 14, found by the network-namespace harness): the server refused such an
fsync with a plain EIO, the gateway took it for a broken disk and marked the drive failed for every
gateway; a few restarts and m hosts down then left objects unreadable (503) though no disk had failed."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from pathlib import Path

import blake3
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ServerProcess, exastor, free_port, wait_until
from drive_servers import DriveServerProcess, cluster_key
from exastor import errors
from exastor.datadir.opening import open_metadata
from exastor.drives import FsyncFailed, ServerRestarted
from exastor.engine.drives import DriveSet, load_layout, segment_name
from exastor.engine.record import CODEC_RAW, encode
from exastor.engine.segments import SegmentLog


def _record(data: bytes) -> bytes:
    return encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data


def _state(data: Path, drive: int) -> str:
    con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return str(con.execute("SELECT state FROM drives WHERE id = ?", (drive,)).fetchone()[0])
    finally:
        con.close()


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """Three drive servers on three loopback addresses (three hosts), fault rules readable by them."""
    key = cluster_key(tmp_path)
    monkeypatch.setenv("EXASTOR_CLUSTER_KEY_FILE", str(key))
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    servers = [DriveServerProcess({f"d{n}": tmp_path / f"host{n}" / f"d{n}"}, key, tmp_path / f"ds{n}.log",
                                  env={"EXASTOR_FAULTS": str(rules)}) for n in (1, 2, 3)]
    for n, ds in enumerate(servers, 1):
        ds.host = f"127.0.0.{n}"
    try:
        for ds in servers:
            ds.start()
        yield servers, rules
    finally:
        for ds in servers:
            ds.stop()


def _served_by(servers: list[DriveServerProcess], url: str) -> DriveServerProcess:
    return next(ds for ds in servers for name in ds.drives if ds.url(name) == url)


def test_a_server_restart_before_the_fsync_fails_those_commits_but_never_the_drive(tmp_path, hosts):
    servers, _rules = hosts
    data = tmp_path / "data"
    meta = open_metadata(data)
    drives = DriveSet(meta, [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)], ec="2+1", base=data)
    log = SegmentLog(drives, meta, max_size=8 << 20)
    try:
        a = _record(os.urandom(300_000))
        seg, off_a = log.append(a)
        log.sync(seg, off_a + len(a))                # a is durable on every replica: a commit may point at it
        b = _record(os.urandom(400_000))
        seg_b, off_b = log.append(b)                 # b reached both replicas' servers, unsynced
        assert seg_b == seg
        victim = drives.get(load_layout(meta, seg).replicas[0])
        server = _served_by(servers, str(victim.path))
        server.kill()                                # kill -9 after the write, before its fsync
        server.start()                               # back at once, same address, same disk
        with pytest.raises(errors.Unavailable):      # b's commit fails (503): its bytes may be lost there
            log.sync(seg, off_b + len(b))
        drives.flush_reports()
        assert _state(data, victim.id) == "active", "a restarted drive server is not a failed disk"
        assert drives.get(victim.id).state == "active", "nor in this process's view"
        with pytest.raises(FsyncFailed) as refused:  # final for the file: never fsynced again ...
            victim.io.fsync(segment_name(seg))
        assert isinstance(refused.value, ServerRestarted), refused.value  # ... and said why
        log.sync(seg, off_a + len(a))                # what was durable before stays durable
        c = _record(os.urandom(200_000))
        seg_c, off_c = log.append(c)                 # the store goes on: a new segment, any healthy drive
        assert seg_c != seg
        log.sync(seg_c, off_c + len(c))
        log.wait_sealed()
        assert bytes(log.pread(seg, off_a, len(a))) == a, "the abandoned segment sealed with a in it"
        assert bytes(log.pread(seg_c, off_c, len(c))) == c
    finally:
        log.close()
        meta.close()


def test_an_eio_from_the_disks_fsync_through_a_drive_server_still_fails_the_drive(tmp_path, hosts):
    servers, rules = hosts
    data = tmp_path / "data"
    meta = open_metadata(data)
    drives = DriveSet(meta, [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)], ec="2+1", base=data)
    log = SegmentLog(drives, meta, max_size=8 << 20)
    try:
        a = _record(os.urandom(100_000))
        seg, off_a = log.append(a)
        victim = drives.get(load_layout(meta, seg).replicas[0])
        server = _served_by(servers, str(victim.path))
        label = str(next(iter(server.drives.values())))  # the server's FaultyDrive label: the directory
        rules.write_text(json.dumps({label: {"eio_fsync": True}}))
        with pytest.raises(errors.Unavailable):
            log.sync(seg, off_a + len(a))
        with pytest.raises(FsyncFailed) as refused:
            victim.io.fsync(segment_name(seg))
        assert not isinstance(refused.value, ServerRestarted)
        drives.flush_reports()
        assert _state(data, victim.id) == "failed", "a disk whose fsync failed is failed"
    finally:
        log.close()
        meta.close()


def _s3(server: ServerProcess, attempts: int):
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"mode": "standard", "total_max_attempts": attempts}))


def test_a_put_whose_fsync_meets_a_restarted_drive_server_gets_503_and_no_drive_is_failed(tmp_path, hosts):
    """Through a gateway: the PUT's records reached the drive servers; one of them is killed with -9
    and restarted before the gateway's fsync (held there by the gateway's own fault rule, so the
    moment is exact, not timed). The PUT is answered 503, never 200; sent again it succeeds on a new
    segment; every drive stays active; every acknowledged object reads back byte-identical."""
    servers, rules = hosts
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    urls = [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)]
    gateway = ServerProcess(data, free_port(), free_port(), tmp_path / "gateway.log",
                            extra_args=[*(a for u in urls for a in ("--drive", u)), "--ec", "2+1", "--workers", "1"],
                            # No repair pass (it reads every drive's identity) while the victim is
                            # down: that would make it unreachable here, and the fsync fail as a lost
                            # answer, before the restarted server could refuse it.
                            env={"EXASTOR_FAULTS": str(rules), "EXASTOR_SEGMENT_SIZE": str(8 << 20),
                                 "EXASTOR_REPAIR_INTERVAL": "3600"})
    gateway.start()
    try:
        s3, once = _s3(gateway, 6), _s3(gateway, 1)
        s3.create_bucket(Bucket="restart")
        rng = random.Random(14)
        acked = {f"before{i}": rng.randbytes(rng.choice([100, 20_000, 300_000])) for i in range(8)}
        for key, body in acked.items():   # under one segment's size: it stays open, nothing seals meanwhile
            s3.put_object(Bucket="restart", Key=key, Body=body)
        hold = tmp_path / "hold"
        hold.mkdir()
        rule = {"hold_fsync": {"dir": str(hold), "prefix": "segments/"}}
        rules.write_text(json.dumps({u: rule for u in urls}))  # the gateway's view of each drive
        body = rng.randbytes(250_000)
        outcome: list[object] = []

        def put() -> None:
            try:
                outcome.append(once.put_object(Bucket="restart", Key="held", Body=body))
            except ClientError as exc:
                outcome.append(exc)

        putter = threading.Thread(target=put)
        putter.start()
        label, name = json.loads(wait_until(lambda: (hold / "held").exists() and (hold / "held").read_text(),
                                            "the gateway's fsync of the PUT's segment to be held", timeout=60))
        assert name.startswith("segments/")
        victim = _served_by(servers, label)
        victim.kill()                       # -9: the appended records are in its page cache, unsynced
        victim.start()
        (hold / "release").touch()
        putter.join(timeout=120)
        assert not putter.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ClientError), f"never acknowledged: {outcome}"
        assert outcome[0].response["ResponseMetadata"]["HTTPStatusCode"] == 503, outcome[0].response
        assert "restarted after writes this fsync would cover" in gateway.log_text(), \
            "the fsync met the restarted server (not an unreachable one)"
        with pytest.raises(ClientError) as absent:   # not half visible
            s3.get_object(Bucket="restart", Key="held")
        assert absent.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        s3.put_object(Bucket="restart", Key="held", Body=body)   # sent again: a new segment takes it
        acked["held"] = body
        for key, value in {f"after{i}": rng.randbytes(100_000) for i in range(4)}.items():
            s3.put_object(Bucket="restart", Key=key, Body=value)
            acked[key] = value
        for key, value in acked.items():
            assert s3.get_object(Bucket="restart", Key=key)["Body"].read() == value, key
        status = json.loads(exastor("drive", "status", "--json", data_dir=data).stdout)
        assert [d["state"] for d in status["drives"]] == ["active"] * 3, status
    finally:
        gateway.stop()
    for n in range(3):
        assert _state(data, n) == "active"
    fsck = exastor("fsck", data_dir=data, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "Traceback" not in gateway.log_text(), gateway.log_text()[-5000:]
