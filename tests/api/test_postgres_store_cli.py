"""`exastor stats` and `exastor drive` on a store whose metadata is in PostgreSQL (``--meta URL``, or
EXASTOR_META_URL), beside and without a real gateway on that database.

What runs beside gateways: `stats`, `drive status` and `drive add` (a new drive is taken up by each
gateway at its next refresh). What does not: `drive remove` / `replace`, refused (nothing changed)
while any gateway heartbeats, because a gateway's view of the drives lags the database and could
place a new segment on the drive after the drain looked (services/drive_cli.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from conftest import exastor, s3_client, start_server, wait_until
from pgcluster import rows

# Fast heartbeats and a short down timeout, for the gateway and for the commands (which read them).
FAST_MEMBERSHIP = {"EXASTOR_HEARTBEAT_INTERVAL": "0.3", "EXASTOR_DOWN_AFTER": "3"}


def _gateway_ages(dsn: str) -> list[float]:
    """Seconds since each gateway process (starting ones included) heartbeated, by the database's clock."""
    return [float(r[0]) for r in rows(dsn, "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000 - seen_ms) / 1000.0 "
                                           "FROM members WHERE kind IN ('gateway', 'gateway-starting')")]


def _drive_states(dsn: str) -> dict[str, str]:
    return {str(path): str(state) for path, state in rows(dsn, "SELECT path, state FROM drives")}


def test_stats_and_drive_lifecycle_over_postgresql(tmp_path, pg_database, monkeypatch):
    dsn = pg_database
    for name, value in FAST_MEMBERSHIP.items():
        monkeypatch.setenv(name, value)  # the commands below judge heartbeats by the same timeout
    drives = [tmp_path / f"d{i}" for i in range(3)]
    # 2+1 stripes: the three drives left after the fourth goes can still hold every stripe
    server = start_server(tmp_path, *(a for d in drives for a in ("--drive", str(d))), "--meta", dsn,
                          "--ec", "2+1", "--workers", "1", env={**FAST_MEMBERSHIP, "EXASTOR_SEGMENT_SIZE": str(1 << 20)})
    data = server.data_dir
    rng = random.Random(1313)
    bodies = {f"o{i}": rng.randbytes(400_000 + i) for i in range(8)}  # several 1 MiB segments, sealed
    added = tmp_path / "d3"
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="pgdrives")
        for key, body in bodies.items():
            s3.put_object(Bucket="pgdrives", Key=key, Body=body)

        # stats: the figures of the shared database, beside the running gateway
        stats = json.loads(exastor("stats", "--meta", dsn, "--json", data_dir=data).stdout)
        assert stats["buckets"] == 1 and stats["objects"] == len(bodies) and stats["drives"] == 3, stats
        assert stats["logical_bytes"] == sum(map(len, bodies.values()))
        shown = exastor("stats", "--meta", dsn, data_dir=data)  # the table, as an operator reads it
        assert "objects" in shown.stdout and "Traceback" not in shown.stderr
        # No --meta: every command refuses, naming where the metadata is, and none makes an empty
        # SQLite store beside it (the standalone reducer used to, and reported nothing to reduce).
        for command in (["stats"], ["user", "list"], ["reduce", "status"], ["fsck"]):
            without = exastor(*command, data_dir=data, check=False)
            assert without.returncode == 2 and "keeps its metadata in PostgreSQL" in without.stderr, \
                (command, without.stderr)
            assert "Traceback" not in without.stderr
        reducer = subprocess.run([sys.executable, "-m", "exastor.services.reducer", "--data", str(data)],
                                 capture_output=True, text=True, timeout=120)
        assert reducer.returncode == 2 and "keeps its metadata in PostgreSQL" in reducer.stderr, reducer.stderr
        assert "password" not in reducer.stderr and not (data / "meta" / "exastor.sqlite").exists()

        # drive status and add run live; the gateway takes the new drive up
        status = json.loads(exastor("drive", "status", "--meta", dsn, "--json", data_dir=data).stdout)
        assert [d["state"] for d in status["drives"]] == ["active"] * 3 and status["metadata_copies"] is None
        grown = exastor("drive", "add", str(added), "--meta", dsn, data_dir=data)
        assert "is active" in grown.stdout and "rebalanced" in grown.stdout, grown.stdout + grown.stderr
        assert "must see it at" in grown.stderr  # a directory on a shared database: said where it must be
        assert _drive_states(dsn)[str(added)] == "active"
        s3.put_object(Bucket="pgdrives", Key="after-add", Body=b"x" * 300_000)

        # remove while the gateway heartbeats: refused, nothing changed
        wait_until(lambda: any(age < 1 for age in _gateway_ages(dsn)), "the gateway's heartbeat", interval=0.1)
        refused = exastor("drive", "remove", str(added), "--meta", dsn, data_dir=data, check=False)
        assert refused.returncode == 2 and "heartbeated within the last 3 s" in refused.stderr, refused.stderr
        assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
        assert _drive_states(dsn)[str(added)] == "active"
        replaced = exastor("drive", "replace", str(added), str(tmp_path / "d4"), "--meta", dsn, data_dir=data,
                           check=False)
        assert replaced.returncode == 2 and "nothing was changed" in replaced.stderr
        assert str(tmp_path / "d4") not in _drive_states(dsn)
    finally:
        server.stop()

    # Every gateway stopped (its last heartbeat older than the down timeout): the drain runs.
    wait_until(lambda: all(age > 3.2 for age in _gateway_ages(dsn)), "the stopped gateway's heartbeats to age",
               timeout=30, interval=0.2)
    removed = exastor("drive", "remove", str(added), "--meta", dsn, data_dir=data, check=False)
    assert removed.returncode == 0 and "removed" in removed.stdout, removed.stdout + removed.stderr
    assert _drive_states(dsn)[str(added)] == "removed"
    assert rows(dsn, "SELECT COUNT(*) FROM shards s JOIN drives d ON d.id = s.drive WHERE d.path = %s",
                (str(added),)) == [(0,)]

    server.start()
    try:
        s3 = s3_client(server)
        for key, body in bodies.items():
            assert s3.get_object(Bucket="pgdrives", Key=key)["Body"].read() == body, key
        assert s3.get_object(Bucket="pgdrives", Key="after-add")["Body"].read() == b"x" * 300_000
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]
