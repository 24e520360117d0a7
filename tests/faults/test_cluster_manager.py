"""Heartbeats, membership and the cluster manager (services/cluster.py) with two gateways on
PostgreSQL over three drive servers, driven with boto3 and `exastor cluster status`:

- every gateway heartbeats; one of them is the cluster manager and heartbeats the drive servers;
- a gateway killed with -9 is marked down, and the segment it left open is sealed by the manager once
  its lease expired (fenced first): every object it acknowledged reads back through the other;
- a drive server killed with -9 is marked down and its drive recorded offline for every gateway (what
  queues its shards for repair); when it is back, it is alive again and its drive active.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

from conftest import ServerProcess, free_port, s3_client, wait_until
from drive_servers import DriveServerProcess, assert_fsck_clean, cluster_key
from pgcluster import rows as pg_rows


def _status(dsn: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "exastor.cli", "cluster", "status", "--json", "--meta", dsn],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)



_until = functools.partial(wait_until, timeout=60.0, interval=0.1)  # heartbeats and the down timeout take seconds


def test_the_cluster_manager_marks_the_dead_down_and_seals_what_they_left_open(tmp_path, pg_cluster, monkeypatch):
    key = cluster_key(tmp_path)
    dsn = pg_cluster.create_database("exastor_members")
    hosts = [DriveServerProcess({f"drive{n}": tmp_path / f"host{n}" / f"drive{n}"}, key, tmp_path / f"ds{n}.log")
             for n in (1, 2, 3)]
    for n, ds in enumerate(hosts, 1):
        ds.host = f"127.0.0.{n}"
    env = {"EXASTOR_CLUSTER_KEY_FILE": str(key), "EXASTOR_META_URL": dsn, "EXASTOR_SEGMENT_LEASE_MS": "1500",
           "EXASTOR_HEARTBEAT_INTERVAL": "0.3", "EXASTOR_DOWN_AFTER": "2", "EXASTOR_ORPHAN_INTERVAL": "0.5",
           "EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0"}
    a = ServerProcess(tmp_path / "a", free_port(), free_port(), tmp_path / "a.log", env=env,
                      extra_args=["--workers", "1", *[x for n, ds in enumerate(hosts, 1)
                                                      for x in ("--drive", ds.url(f"drive{n}"))]])
    b = ServerProcess(tmp_path / "b", free_port(), free_port(), tmp_path / "b.log", env=env, extra_args=["--workers", "1"])
    try:
        for ds in hosts:
            ds.start()
        (tmp_path / "a").mkdir(mode=0o700)
        a.start()
        (tmp_path / "b").mkdir(mode=0o700)
        shutil.copy2(tmp_path / "a" / "master.key", tmp_path / "b" / "master.key")  # one store, one master key
        b.start()

        def alive() -> dict | None:
            status = _status(dsn)
            kinds = sorted(m["kind"] for m in status["members"] if m["state"] == "alive")
            return status if kinds == ["drive-server"] * 3 + ["gateway"] * 2 and status["manager"] else None

        status = _until(alive, "two gateways and three drive servers alive, and a manager")
        assert sorted(m["address"] for m in status["members"] if m["kind"] == "drive-server") == \
            sorted(f"http://{ds.host}:{ds.port}" for ds in hosts)

        # B writes (its segment stays open), then dies with it open.
        s3b = s3_client(b, retry=False)
        s3b.create_bucket(Bucket="members")
        bodies = {f"b/{i}": os.urandom(90_000 + i) for i in range(4)}
        for k, body in bodies.items():
            s3b.put_object(Bucket="members", Key=k, Body=body)
        (segment,), = pg_rows(dsn, "SELECT id FROM segments WHERE state = 'open'")  # B's: A has written nothing
        b.kill()
        _until(lambda: pg_rows(dsn, "SELECT state FROM segments WHERE id = %s", (segment,)) == [("sealed",)],
               "the manager to seal the segment the dead gateway left open")
        _until(lambda: [m for m in _status(dsn)["members"] if m["kind"] == "gateway" and m["state"] == "down"],
               "the dead gateway to be marked down")
        assert "was left open by a gateway whose lease expired" in a.log_text()
        s3a = s3_client(a, retry=False)
        for k, body in bodies.items():
            assert s3a.get_object(Bucket="members", Key=k)["Body"].read() == body, k

        # A drive server dies: down, and its drive offline for every gateway (repair is queued).
        victim = hosts[2]
        victim.kill()
        _until(lambda: [m for m in _status(dsn)["members"]
                        if m["address"] == f"http://{victim.host}:{victim.port}" and m["state"] == "down"],
               "the dead drive server to be marked down")
        _until(lambda: pg_rows(dsn, "SELECT state FROM drives WHERE path LIKE %s", (f"http://{victim.host}:%",))
               == [("offline",)], "its drive to be recorded offline")
        for k, body in bodies.items():
            assert s3a.get_object(Bucket="members", Key=k)["Body"].read() == body, k
        victim.start()
        _until(lambda: pg_rows(dsn, "SELECT state FROM drives WHERE path LIKE %s", (f"http://{victim.host}:%",))
               == [("active",)], "its drive to be active again")
        _until(lambda: [m for m in _status(dsn)["members"]
                        if m["address"] == f"http://{victim.host}:{victim.port}" and m["state"] == "alive"],
               "the drive server to be alive again")
        s3a.put_object(Bucket="members", Key="after", Body=b"after")
        a.stop()

        assert_fsck_clean(tmp_path / "a", dsn, key, monkeypatch)
    finally:
        a.stop()
        b.stop()
        for ds in hosts:
            ds.stop()
        pg_cluster.drop_database("exastor_members")
    for server in (a, b):
        assert "Traceback" not in server.log_text(), server.log_text()[-5000:]
    for ds in hosts:
        assert "Traceback" not in ds.log_text(), ds.log_text()[-3000:]



def test_a_drive_server_that_lost_one_disk_is_alive_and_its_other_drives_watched(tmp_path, pg_cluster):
    """A host lost one disk: its drive server restarts without it (the drive's row stays, offline,
    until `exastor drive remove`). The server answers - "not served here" for that drive, a signed
    answer - so the manager keeps it alive and its other drive active; when the server then dies, its
    other drive is recorded offline (repair queued). Found by the netns harness: the manager probed
    a server through its first drive row, so a lost first disk made the server look dead for good,
    and the later death of its replacement disk's server went unnoticed (nothing was repaired)."""
    key = cluster_key(tmp_path)
    dsn = pg_cluster.create_database("exastor_lost_disk")
    two = DriveServerProcess({"old": tmp_path / "x" / "old", "new": tmp_path / "x" / "new"}, key, tmp_path / "x.log")
    one = DriveServerProcess({"d2": tmp_path / "y" / "d2"}, key, tmp_path / "y.log")
    one.host = "127.0.0.2"
    env = {"EXASTOR_CLUSTER_KEY_FILE": str(key), "EXASTOR_META_URL": dsn, "EXASTOR_HEARTBEAT_INTERVAL": "0.3",
           "EXASTOR_DOWN_AFTER": "2", "EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0"}
    gw = ServerProcess(tmp_path / "gw", free_port(), free_port(), tmp_path / "gw.log", env=env,
                       extra_args=["--workers", "1", "--drive", two.url("old"), "--drive", two.url("new"),
                                   "--drive", one.url("d2")])
    address = f"http://{two.host}:{two.port}"

    def member_state() -> str | None:
        found = [m["state"] for m in _status(dsn)["members"] if m["address"] == address]
        return found[0] if found else None

    def drive_state(name: str) -> str:
        return pg_rows(dsn, "SELECT state FROM drives WHERE path = %s", (two.url(name),))[0][0]

    try:
        two.start()
        one.start()
        (tmp_path / "gw").mkdir(mode=0o700)
        gw.start()
        _until(lambda: member_state() == "alive", "the two-drive server heartbeated")
        two.kill()
        shutil.rmtree(tmp_path / "x" / "old")  # the lost disk
        del two.drives["old"]
        two.start()
        _until(lambda: drive_state("old") == "offline", "the lost disk's drive offline")
        # Several down-timeouts later the server is still alive, its other drive still active.
        seen = pg_rows(dsn, "SELECT seen_ms FROM members WHERE address = %s", (address,))[0][0]
        _until(lambda: pg_rows(dsn, "SELECT seen_ms FROM members WHERE address = %s", (address,))[0][0]
               > seen + 3 * 2000, "three down-timeouts of heartbeats")
        assert member_state() == "alive" and drive_state("new") == "active"
        two.kill()  # now the whole server dies
        _until(lambda: member_state() == "down", "the dead drive server to be marked down")
        _until(lambda: drive_state("new") == "offline", "its remaining drive to be recorded offline")
        assert "not seen for" in gw.log_text()
    finally:
        gw.stop()
        two.stop()
        one.stop()
        pg_cluster.drop_database("exastor_lost_disk")
