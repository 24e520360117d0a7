"""A small cluster built from Linux network namespaces (the short CI slice of issue 14's harness).

One "switch" namespace holds a bridge; each host is a namespace with one veth into it and a private
address 10.213.N.H/24 that exists only inside these namespaces. Hosts 1-3 run `exastor
drive-server`, host 4 runs the gateway (`exastor serve`, SQLite metadata local to it) and the boto3
client. Every request is sent from inside a namespace, never from the root namespace (whose default
route leaves the machine); for the test's duration the root namespace also holds a blackhole route
for the subnet, as a second guard. Everything is created and removed by the test (finally), and
every wait is bounded.

Scenario: write through the gateway, partition host 1 (its link to the switch down), read every
acknowledged object and write more, heal, and check that every acknowledged object is byte-identical,
nothing was marked failed, and fsck is clean.

Skips with a message where namespaces cannot be made (not root, no CAP_NET_ADMIN, a container)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from netns import Namespaces, namespaces_permitted, run, stop

from exastor.drives.wire import create_key

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "netns_client.py"
PY = sys.executable
S3_PORT, DRIVE_PORT = 9000, 9100
ACCESS_KEY, SECRET_KEY = "EXNETNSADMIN", "exastor-netns-secret-key-0123456789"


def test_partition_a_host_reads_go_on_and_every_acknowledged_object_survives(tmp_path):
    why = namespaces_permitted()
    if why:
        pytest.skip(f"network-namespace cluster test skipped: {why}")
    net = Namespaces(4)
    procs: list[subprocess.Popen] = []
    data = tmp_path / "gateway-data"
    data.mkdir(mode=0o700)
    key = data / "cluster.key"
    create_key(key)
    ledger = tmp_path / "acknowledged.jsonl"
    # default drive timeouts: a partitioned host costs the request that finds it one timeout, then the
    # drive is down (fails at once) until a background probe is answered
    env = {**os.environ, "EXASTOR_SEGMENT_SIZE": str(2 << 20)}
    env.pop("EXASTOR_CONFIG", None)
    endpoint = f"http://127.0.0.1:{S3_PORT}"  # the gateway namespace's own loopback

    def client(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return run(net.cmd(4, PY, str(CLIENT), *args), timeout, env)

    try:
        net.up()
        urls = []
        for h in (1, 2, 3):
            drive = tmp_path / f"host{h}" / f"drive{h}"
            with open(tmp_path / f"drive-server-{h}.log", "ab") as log:
                procs.append(subprocess.Popen(
                    net.cmd(h, PY, "-m", "exastor.cli", "drive-server", "--drive", str(drive),
                            "--listen", f"{net.address(h)}:{DRIVE_PORT}", "--key-file", str(key)),
                    stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
            urls.append(f"http://{net.address(h)}:{DRIVE_PORT}/drive{h}")
        for url in urls:
            ready = client("ready-drive", url, str(key), "30", timeout=60)
            assert ready.returncode == 0, ready.stderr
        with open(tmp_path / "gateway.log", "ab") as log:
            gateway = subprocess.Popen(
                net.cmd(4, PY, "-m", "exastor.cli", "serve", "--data", str(data), "--host", "0.0.0.0",
                        "--s3-port", str(S3_PORT), "--blob-port", "0", "--access-key", ACCESS_KEY,
                        "--secret-key", SECRET_KEY, "--workers", "1", *[a for u in urls for a in ("--drive", u)]),
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(gateway)
        ready = client("ready-gateway", endpoint, "90", timeout=120)
        assert ready.returncode == 0, ready.stderr + (tmp_path / "gateway.log").read_text()[-3000:]

        first = client("write", endpoint, str(ledger), "before-", "24", "1")
        assert first.returncode == 0 and json.loads(first.stdout)["acknowledged"] == 24, first.stderr

        net.partition(1)  # host 1's link to the switch goes down: its drive server is unreachable
        cut = client("ready-drive", urls[0], str(key), "3", timeout=30)
        assert cut.returncode == 1, "host 1 is cut off from the gateway's host"
        during = client("write", endpoint, str(ledger), "during-", "8", "2")
        assert during.returncode == 0, during.stderr
        assert json.loads(during.stdout)["acknowledged"] >= 6, during.stdout + during.stderr
        check = client("verify", endpoint, str(ledger))
        assert check.returncode == 0, check.stdout + check.stderr

        net.heal(1)
        healed = client("ready-drive", urls[0], str(key), "30", timeout=60)
        assert healed.returncode == 0, healed.stderr
        after = client("write", endpoint, str(ledger), "after-", "8", "3")
        assert after.returncode == 0, after.stderr
        check = client("verify", endpoint, str(ledger))
        assert check.returncode == 0, check.stdout + check.stderr
        assert json.loads(check.stdout)["verified"] == len(ledger.read_text().splitlines()) >= 38

        con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True, timeout=30)
        try:
            states = dict(con.execute("SELECT id, state FROM drives").fetchall())
        finally:
            con.close()
        assert set(states.values()) == {"active"}, f"a partition is unavailability, never failure: {states}"
        fsck = run(net.cmd(4, PY, "-m", "exastor.cli", "fsck", "--data", str(data)), 240, env)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert "Traceback" not in (tmp_path / "gateway.log").read_text()
    finally:
        for proc in reversed(procs):
            stop(proc)
        net.down()
    assert not net.leftovers(), net.leftovers()
