"""A gateway over drives on other hosts: three `exastor drive-server` processes (hosts 127.0.0.1-3)
and one `exastor serve` whose drives are their URLs (two given at the first start, one joined with
`exastor drive add URL`), driven with boto3. A drive server killed with -9 is unavailable, never
failed: reads are served from the other replicas or decoded from the other shards, writes go on,
and when it is back every object reads byte-identical."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import boto3
import pytest
from botocore.config import Config

from conftest import ServerProcess, exastor, free_port
from drive_servers import DriveServerProcess
from exastor.drives.wire import create_key


def _client(server: ServerProcess):
    # Standard retries: a PUT whose open segment had a replica on the server that just died gets a
    # 503 (the segment is sealed, a new one opened elsewhere) and is sent again.
    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"mode": "standard", "total_max_attempts": 6}))


def _states(data) -> dict[int, tuple[str, str, str]]:
    con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return {int(i): (s, r, h) for i, s, r, h in con.execute("SELECT id, state, reason, host FROM drives")}
    finally:
        con.close()


@pytest.fixture
def cluster(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    key = data / "cluster.key"
    create_key(key)
    hosts = []
    for n in (1, 2, 3):
        ds = DriveServerProcess({f"drive{n}": tmp_path / f"host{n}" / f"drive{n}"}, key, tmp_path / f"ds{n}.log")
        ds.host = f"127.0.0.{n}"  # three loopback addresses: three hosts, three failure domains
        hosts.append(ds)
    for ds in hosts:
        ds.start()
    server = ServerProcess(data, free_port(), free_port(), tmp_path / "server.log",
                           extra_args=["--drive", hosts[0].url("drive1"), "--drive", hosts[1].url("drive2"),
                                       "--workers", "2"],
                           env={"EXASTOR_SEGMENT_SIZE": str(2 << 20)})  # segments seal (2+1 shards) as the test writes
    try:
        server.start()
        yield server, hosts
    finally:
        server.stop()
        for ds in hosts:
            ds.stop()
        for ds in hosts:
            assert "Traceback" not in ds.log_text(), ds.log_text()[-3000:]


def test_kill_a_drive_server_reads_go_on_and_nothing_is_marked_failed(cluster):
    server, hosts = cluster
    added = exastor("drive", "add", hosts[2].url("drive3"), data_dir=server.data_dir, check=False)
    assert added.returncode == 0, added.stderr
    states = _states(server.data_dir)
    assert sorted(h for _s, _r, h in states.values()) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    s3 = _client(server)
    s3.create_bucket(Bucket="cluster")
    rng = __import__("random").Random(14)
    objects = {f"o{i}": rng.randbytes(rng.choice([10, 5000, 300_000, 3 << 20])) for i in range(24)}
    for name, body in objects.items():
        s3.put_object(Bucket="cluster", Key=name, Body=body)
    for name, body in objects.items():
        assert s3.get_object(Bucket="cluster", Key=name)["Body"].read() == body
    def files(ds: DriveServerProcess) -> tuple[int, int]:
        root = next(iter(ds.drives.values()))
        return len(os.listdir(root / "shards")), len(os.listdir(root / "segments"))

    victim = max(hosts, key=files)
    assert files(victim)[0] > 0, "sealed segments are erasure-coded across the hosts (2+1)"
    victim.kill()  # kill -9: its drive is unreachable from now on, and it holds shards and replicas
    for name, body in objects.items():
        assert s3.get_object(Bucket="cluster", Key=name)["Body"].read() == body, name
    while_down = {f"down{i}": rng.randbytes(200_000) for i in range(6)}
    for name, body in while_down.items():
        s3.put_object(Bucket="cluster", Key=name, Body=body)
    for name, body in while_down.items():
        assert s3.get_object(Bucket="cluster", Key=name)["Body"].read() == body
    states = _states(server.data_dir)
    assert all(state == "active" for state, _r, _h in states.values()), \
        f"an unreachable drive server is unavailable, never failed or offline for all: {states}"
    status = json.loads(exastor("drive", "status", "--json", data_dir=server.data_dir).stdout)
    assert [d["state"] for d in status["drives"] if d["host"] == victim.host] == ["offline"]
    assert "unreachable" in [d["reason"] for d in status["drives"] if d["host"] == victim.host][0]

    victim.start()
    everything = {**objects, **while_down}
    for name, body in everything.items():
        assert s3.get_object(Bucket="cluster", Key=name)["Body"].read() == body, name
    deadline = time.monotonic() + 30  # back in this process's view within its refresh and back-off
    while True:
        status = json.loads(exastor("drive", "status", "--json", data_dir=server.data_dir).stdout)
        if all(d["state"] == "active" for d in status["drives"]):
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    for name, body in {f"after{i}": rng.randbytes(100_000) for i in range(4)}.items():
        s3.put_object(Bucket="cluster", Key=name, Body=body)
        assert s3.get_object(Bucket="cluster", Key=name)["Body"].read() == body
    fsck = exastor("fsck", data_dir=server.data_dir, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]
