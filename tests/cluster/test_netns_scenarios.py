"""The CI slice of the network-namespace cluster harness (tests/cluster/netns_cluster.py; the long
run is tests/cluster/netns_long.py): 6 drive-server hosts with erasure 4+2, PostgreSQL on its own
host, two gateways and a client host, each a network namespace.

Three seeded scenarios, under PUT load through both gateways: a drive-server host partitioned and
healed, a gateway killed with -9 and restarted, and m = 2 drive-server hosts down at once (reads of
earlier objects must keep working). After each: a PUT is acknowledged again through each gateway,
every acknowledged object is byte-identical through both, every unacknowledged attempt is absent or
complete, no drive is marked failed. At the end every object is checked again and fsck is clean.

Skips with a message where namespaces cannot be made or PostgreSQL is not installed."""

from __future__ import annotations

import json

import pytest
from netns import namespaces_permitted
from netns_cluster import Cluster, final_checks, run_scenario

from pgcluster import pg_bindir

SEED = 7
SLICE = ("partition_drive_host", "kill_gateway", "m_hosts_down")


def test_seeded_faults_lose_nothing_and_leave_nothing_half_visible(tmp_path):
    why = namespaces_permitted() or (None if pg_bindir() else "PostgreSQL is not installed")
    if why:
        pytest.skip(f"network-namespace cluster test skipped: {why}")
    cluster = Cluster(tmp_path / "cluster")
    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    try:
        cluster.start()
        records = [run_scenario(cluster, index, SEED, ledgers, kind) for index, kind in enumerate(SLICE)]
        for record in records:
            assert record["ok"], (json.dumps(record["problems"], indent=1)[:4000] + json.dumps(record)[:4000]
                                  + cluster.log("gateway-8") + cluster.log("gateway-9"))
        # reads kept working with m hosts down: the sample read during the fault succeeded
        down = records[2]
        assert down["reads_during_fault"] and all(not r["failed"] for r in down["reads_during_fault"]), down
        final = final_checks(cluster, ledgers)
        assert final["ok"], json.dumps(final, indent=1)[:6000]
        assert final["fsck"]["clean"] and final["fsck"]["chunks_checked"] > 0, final
    finally:
        cluster.stop()
    assert not cluster.net.leftovers(), cluster.net.leftovers()
