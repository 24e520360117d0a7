"""The CI slice of the network-namespace cluster harness (tests/cluster/netns_cluster.py; the long
run is tests/cluster/netns_long.py): 7 drive-server hosts with erasure 4+2, PostgreSQL on its own
host, two gateways and a client host, each a network namespace.

Four seeded scenarios, under PUT load through both gateways: a drive-server host partitioned and
healed, a gateway killed with -9 and restarted, m = 2 drive-server hosts down at once (reads of
earlier objects must keep working), and a host lost with its disk (its shards rebuilt on the other
hosts, then its new disk added with `exastor drive add`). After each: a PUT is acknowledged again
through each gateway, every acknowledged object is byte-identical through both, every
unacknowledged attempt is absent or complete, no drive is marked failed. At the end every object is
checked again, the lost drive is retired with `exastor drive remove`, and fsck is clean.

Skips with a message where namespaces cannot be made or PostgreSQL is not installed."""

from __future__ import annotations

import json

import pytest
from netns import namespaces_permitted
from netns_cluster import GATEWAY_HOSTS, Cluster, final_checks, run_scenario

from pgcluster import pg_bindir

SEED = 7
SLICE = ("partition_drive_host", "kill_gateway", "m_hosts_down", "host_lost")


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
                                  + "".join(cluster.log(f"gateway-{g}") for g in GATEWAY_HOSTS))
        # reads kept working with m hosts down: the sample read during the fault succeeded
        down = records[2]
        assert down["reads_during_fault"] and all(not r["failed"] for r in down["reads_during_fault"]), down
        lost = records[3]["repair"]
        assert lost["copies_at_fault"] > 0 and lost["copies_left"] == 0, lost  # the lost host held data
        final = final_checks(cluster, ledgers)
        assert final["ok"], json.dumps(final, indent=1)[:6000]
        assert final["fsck"]["clean"] and final["fsck"]["chunks_checked"] > 0, final
    finally:
        cluster.stop()
    assert not cluster.net.leftovers(), cluster.net.leftovers()
