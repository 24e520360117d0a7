"""bench/cluster_roles.py at the smallest size: one gateway on PostgreSQL over 6 drive servers. The
PUT window must hold every seal (all segments erasure coded after it) and the drive servers' traffic
counters must see what the geometry needs: the PUTs are large, so full stripes - (k+m)/k of shards
and no replica appends (engine/chunkstore.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pgcluster import pg_bindir

REPO = Path(__file__).resolve().parents[2]


def test_the_cluster_benchmark_seals_inside_its_put_window_and_counts_the_network(tmp_path: Path) -> None:
    if pg_bindir() is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl)")
    out = tmp_path / "roles.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "cluster_roles.py"), "--configs", "1", "--put-mib", "16",
                          "--small", "10", "--idle-s", "0.2", "--out", str(out)],
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    sys.path.insert(0, str(REPO))
    from bench.cluster_roles import render
    from bench.lib.results import read_result

    result = read_result(out)
    (r,) = result["rounds"]
    put = r["put"]
    assert set(put["segments_after"]) == {"sealed", "erasure_coded"}, put["segments_after"]  # nothing left open
    assert put["segments_after"]["sealed"][0] == put["segments_after"]["erasure_coded"][0] >= 1
    # 1.5 for the 4+2 stripes, plus the seal (at the stop, inside the window) of the 1 MiB warm-up
    # object that went through the buffer before the window: 1.5 MiB more per 16 MiB stored
    assert put["per_stored_byte"]["append"] == 0.0
    assert 1.5 <= put["per_stored_byte"]["put"] <= 1.5 * (1 + 1 / 16) * 1.01
    assert put["cpu_s"]["gateway"] > 0 and put["cpu_s"]["drive_server"] > 0
    assert r["get"]["network_bytes_per_read_byte"] >= 1.0
    # --get-passes 3 (the default): the first pass alone, the other two together, every one counted
    assert len(r["get_passes"]) == 3 and r["get"]["passes"] == 1 and r["get_steady"]["passes"] == 2
    assert r["get_steady"]["bytes"] == 2 * r["get"]["bytes"]
    assert r["get_steady"]["network_bytes_per_read_byte"] >= 1.0 and r["get_steady"]["cpu_s"]["gateway"] > 0
    assert all(p["gateway_minor_faults"] > 0 for p in r["get_passes"])
    assert r["small_put"]["per_s"] > 0 and r["small_get"]["per_s"] > 0
    table = render(result)
    assert "| 1 | 1 | PUT |" in table and "| 1 | 1 | GET, first pass |" in table and "| 1 | 1 | GET, steady passes |" in table
