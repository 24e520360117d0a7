"""`exastor reduce` and the reducer backlog in `exastor stats`, against a real server (issue 15, item 7)."""

from __future__ import annotations

import json

from conftest import ON_POSTGRES, exastor, meta_rows, s3_client, start_server, wait_until


def _status(data) -> dict:
    return json.loads(exastor("reduce", "status", "--json", data_dir=data).stdout)


def test_reduce_controls_on_a_running_server_and_without_one(tmp_path):
    # no timed passes: only the operator's requests run the reducer here
    server = start_server(tmp_path, env={"EXASTOR_REDUCE_INTERVAL": "0"})
    data = server.data_dir
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="red")
        for i in range(4):
            s3.put_object(Bucket="red", Key=f"k{i}", Body=bytes([i]) * 50_000)
        st = _status(data)
        assert st["backlog_objects"] == 4 and st["backlog_bytes"] == 200_000 and not st["paused"]
        stats = exastor("stats", data_dir=data).stdout
        assert "reducer backlog (not yet reduced)  4 objects, 195.3 KiB" in stats
        assert exastor("reduce", "pause", data_dir=data).returncode == 0
        assert _status(data)["paused"]
        assert "paused (exastor reduce resume)" in exastor("stats", data_dir=data).stdout
        done = exastor("reduce", "run", "--timeout", "120", data_dir=data)  # the server's reducer, paused or not
        assert "pass done:" in done.stdout
        st = _status(data)
        assert st["backlog_objects"] == 0 and st["pass_bytes"] > 0 and st["paused"]
        assert json.loads(exastor("stats", "--json", data_dir=data).stdout)["reducer"]["backlog_bytes"] == 0
        s3.put_object(Bucket="red", Key="late", Body=b"z" * 10_000)
    finally:
        server.stop()
    if ON_POSTGRES:  # no gateway: on a shared database the pass is refused, nothing runs here
        ages = "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000 - seen_ms) / 1000.0 FROM members WHERE kind = ?"
        wait_until(lambda: all(float(age) > 10.5 for (age,) in meta_rows(server, ages, ("gateway",))),
                   "the stopped gateway's heartbeats to age past the down timeout (10 s)", timeout=60, interval=0.5)
        refused = exastor("reduce", "run", data_dir=data, check=False)
        assert "no gateway of the store is running" in refused.stderr
        assert _status(data)["backlog_objects"] == 1
        return
    # no server: the pass runs in the command's own process
    done = exastor("reduce", "run", data_dir=data)
    assert "pass done here (no server running)" in done.stdout
    assert _status(data)["backlog_objects"] == 0
    assert exastor("reduce", "resume", data_dir=data).returncode == 0
    assert not _status(data)["paused"]
