"""The cluster design `exastor plan` derives from its bill of materials: arithmetic checked by hand,
on the shipped example (2 EB and 100 EB), on tiny inputs and at the edges."""

from __future__ import annotations

import datetime as dt
import io
import json
import math

import pytest
import yaml
from rich.console import Console
from test_plan_model import EXAMPLE, problems_of
from test_plan_support import drive, raw_plan

from exastor.cli import main
from exastor.engine import erasure
from exastor.tools.plan.analyze import analyze
from exastor.tools.plan.model import ChunkClass, TopologySettings, load_plan, parse_plan
from exastor.tools.plan.report import print_summary, topology_layout_rows
from exastor.tools.plan.sizing import bill_of_materials
from exastor.tools.plan.topology import (
    CHUNK_ROW_BYTES,
    MANIFEST_ENTRY_BYTES,
    OBJECT_ROW_BYTES,
    SEGMENT_ROW_BYTES,
    SHARD_ROW_BYTES,
    SKETCH_ROW_BYTES,
    TODAY_CHUNK_BYTES,
    metadata_load,
    topology,
)

PER_CHUNK = CHUNK_ROW_BYTES + SKETCH_ROW_BYTES + MANIFEST_ENTRY_BYTES


def test_metadata_load_by_hand():
    # 1 TB logical, one class (1 GiB objects in 1 MiB chunks), 2:1 reduction, 4+2, 1 GiB segments.
    settings = TopologySettings(chunking=(ChunkClass("all", 1.0, 1 << 30, 1 << 20),), segment_bytes=1 << 30)
    load = metadata_load(1.0, 2.0, 4, 2, settings)
    assert load.chunk_rows == math.ceil(1e12 / 2**20) == 953_675
    assert load.manifest_entries == load.chunk_rows
    assert load.objects == math.ceil(1e12 / 2**30) == 932
    assert load.segments == math.ceil(0.5e12 / 2**30) == 466
    assert load.shards == 466 * 6
    assert load.total_bytes == (953_675 * PER_CHUNK + 932 * OBJECT_ROW_BYTES + 466 * SEGMENT_ROW_BYTES
                                + 466 * 6 * SHARD_ROW_BYTES)
    assert load.mean_chunk_bytes == pytest.approx(1e12 / 953_675)


def test_64_kib_chunks_over_2_eb_are_the_issues_3e13_rows_and_the_policy_cuts_them_13_fold():
    from exastor.engine.chunker import AVG_SIZE

    assert TODAY_CHUNK_BYTES == AVG_SIZE   # "today" is what the chunker does
    load = metadata_load(2e6, 1.5, 16, 4, TopologySettings())
    assert load.chunk_rows_at_64k == 2 * 10**18 // 65536 == 30_517_578_125_000
    # the default mix: 5 % of bytes in 64 KiB chunks, 25 % in 1 MiB, 70 % in 4 MiB
    expected = 2e18 * (0.05 / 2**16 + 0.25 / 2**20 + 0.70 / 2**22)
    assert load.chunk_rows == math.ceil(expected)
    assert 13 < load.chunk_rows_at_64k / load.chunk_rows < 13.1


@pytest.fixture(scope="module")
def example_outcome():
    return analyze(load_plan(EXAMPLE), dt.date(2026, 12, 1), scenarios=0)


@pytest.mark.parametrize("index", [0, 4], ids=["2 EB", "100 EB"])
def test_the_example_topology_follows_from_its_bill_of_materials(example_outcome, index):
    ph = example_outcome.phases[index]
    t, bom = ph.topology, ph.bom
    assert (t.hosts, t.racks, t.drives) == (bom.servers, bom.racks, bom.total_drives)
    assert t.gateways == t.drive_servers == t.hosts           # one of each on every host
    assert t.drive_slots_per_host == 64 and t.drives_per_host == pytest.approx(bom.total_drives / bom.servers)
    # cells of 20 racks (k+m = 16+4: one shard of a stripe per rack)
    assert t.cell_racks_target == 20 and t.cells == bom.racks // 20
    assert t.racks_per_cell[0] >= 20 and t.racks_per_cell[0] * t.cells <= t.racks <= t.racks_per_cell[1] * t.cells
    assert t.hosts_per_cell[0] >= 20
    assert (t.shards_per_host, t.shards_per_rack, t.host_losses_survived, t.rack_losses_survived) == (1, 1, 4, 4)
    # metadata: each cell's load over clusters of at most 10 TB, three PostgreSQL nodes each, plus the directory
    assert t.backend == "PostgreSQL"
    assert abs(t.per_cell.chunk_rows * t.cells - t.total.chunk_rows) <= t.cells   # each cell rounds up once
    assert t.pg_clusters_per_cell == math.ceil(t.per_cell.total_bytes / 10e12)
    assert t.metadata_tb_per_cluster <= 10.0
    assert t.pg_clusters == t.cells * t.pg_clusters_per_cell + 1 and t.directory_clusters == 1
    assert t.pg_nodes == 3 * t.pg_clusters and (t.pg_sync_standbys, t.pg_async_standbys) == (1, 1)
    assert t.etcd_members == 3 * (t.cells + 1)
    assert t.namespace_ranges == 16 * t.cells * t.pg_clusters_per_cell
    assert t.chunk_rows_per_cluster == math.ceil(t.per_cell.chunk_rows / t.pg_clusters_per_cell)
    assert t.notes == []


def test_the_example_at_2_eb_and_100_eb(example_outcome):
    p1, p5 = example_outcome.phases[0].topology, example_outcome.phases[4].topology
    assert p1.logical_tb == 2e6 and p5.logical_tb == 100e6
    assert p5.total.chunk_rows == pytest.approx(50 * p1.total.chunk_rows, rel=1e-9)
    # the figures docs/scale.md quotes (racks and hosts as docs/planner.md's worked example)
    assert (p5.racks, p5.hosts, p5.cells) == (2895, 18811, 144)
    assert (p1.racks, p1.hosts, p1.cells) == (100, 674, 5)
    assert f"{p1.total.chunk_rows:.3g}" == "2.34e+12" and f"{p5.total.chunk_rows:.3g}" == "1.17e+14"


def tiny(**protection):
    raw = raw_plan()
    raw["protection"].update(protection)
    return parse_plan(raw)


def test_one_host_keeps_sqlite_and_one_cell():
    plan = tiny()   # 1,000 TB of 100 TB drives, 10 slots per host: one host, one rack, 1+0
    bom = bill_of_materials(plan, {"D100": 10})
    t = topology(plan, 1000.0, bom)
    assert (t.hosts, t.racks, t.cells, t.drives) == (1, 1, 1, 10)
    assert t.backend == "SQLite" and t.pg_clusters == t.pg_nodes == t.etcd_members == 0
    assert t.namespace_ranges == 1 and t.gateways == t.drive_servers == 1
    assert (t.shards_per_host, t.host_losses_survived, t.drive_losses_survived) == (1, 0, 0)
    assert any("SQLite" in n for n in t.notes)


def test_one_host_with_wider_stripes_survives_drives_not_the_host():
    plan = tiny(erasure="4+2")
    t = topology(plan, 10.0, bill_of_materials(plan, {"D100": 10}))
    assert (t.shards_per_host, t.host_losses_survived, t.drive_losses_survived) == (6, 0, 2)
    assert any("fewer than k+m = 6" in n for n in t.notes)


def test_three_hosts_fall_back_to_two_shards_each():
    plan = tiny(erasure="4+2")
    bom = bill_of_materials(plan, {"D100": 30})    # 3 hosts of 10 drives, one rack
    t = topology(plan, 100.0, bom)
    assert (t.hosts, t.racks, t.cells) == (3, 1, 1)
    assert (t.shards_per_host, t.host_losses_survived, t.shards_per_rack, t.rack_losses_survived) == (2, 1, 6, 0)
    assert t.backend == "PostgreSQL" and t.pg_clusters == 1 and t.directory_clusters == 0 and t.pg_nodes == 3
    assert t.etcd_members == 3 and t.namespace_ranges == 16


def test_fewer_drives_than_the_stripe_does_not_fit():
    plan = tiny(erasure="8+4")
    t = topology(plan, 10.0, bill_of_materials(plan, {"D100": 10}))
    assert t.drive_losses_survived == 0 and any("does not fit" in n for n in t.notes)


def test_no_drives_online_is_an_empty_topology():
    plan = tiny()
    t = topology(plan, 1000.0, bill_of_materials(plan, {}))
    assert t.hosts == t.cells == t.pg_clusters == 0 and t.notes == ["no drives online at this milestone"]


@pytest.mark.parametrize("drives", [1, 2, 6, 10, 12, 20, 30, 200])
def test_without_a_geometry_a_cell_gets_what_the_store_would_pick(drives):
    plan = tiny(erasure="auto")   # 10 drives a host, 20 hosts a rack: one rack, one cell
    t = topology(plan, 100.0, bill_of_materials(plan, {"D100": drives}))
    assert t.cells == 1 and t.erasure == str(erasure.auto(drives)) and t.erasure_by_table
    assert t.drive_losses_survived == erasure.auto(drives).m and t.cell_racks_target == erasure.AUTO_WIDTH
    note = next(n for n in t.notes if "automatic table" in n)
    assert note.startswith(f"erasure {erasure.auto(drives)} chosen by the store's automatic table") and \
        f"for the {drives} drives of the smallest cell" in note
    assert "(table)" in topology_layout_rows([("P1", t)])[0][9]
    explicit = topology(tiny(erasure="4+2"), 100.0, bill_of_materials(tiny(erasure="4+2"), {"D100": drives}))
    assert explicit.erasure == "4+2" and not explicit.erasure_by_table
    assert not any("automatic table" in n for n in explicit.notes)


def test_without_a_geometry_cells_are_cut_for_the_widest_stripe():
    raw = raw_plan()
    del raw["protection"]["erasure"]
    plan = parse_plan(raw)
    t = topology(plan, 1e6, bill_of_materials(plan, {"D100": 48 * 200}))   # 48 racks of 200 drives
    assert (t.racks, t.cells, t.cell_racks_target, t.erasure) == (48, 2, 24, "20+4")
    assert t.stripe_groups_per_cell == 4800 // 24 and t.rack_losses_survived == 4


def test_without_a_geometry_capacity_is_sized_for_the_costliest_cell():
    """1,000 TB on 100 TB drives: sized for 20+4 (1.2x) it buys 12 drives, whose one cell gets 9+3
    (1.33x); sized again for 9+3 it buys 14, whose cell gets 11+3 (1.27x), which that covers."""
    raw = raw_plan()
    raw["protection"]["erasure"] = "auto"
    outcome = analyze(parse_plan(raw), dt.date(2027, 1, 1), scenarios=0)
    p1 = outcome.phases[0]
    assert (outcome.plan.protection.ec_data, outcome.plan.protection.ec_parity) == (9, 3)
    assert p1.need.raw_tb == pytest.approx(1000 * 12 / 9) and p1.bom.total_drives == 14
    assert p1.topology.erasure == "11+3" and p1.topology.erasure_by_table
    assert any(n.endswith("; capacity sized for 9+3") for n in p1.topology.notes)
    console = Console(file=io.StringIO(), width=400)
    print_summary(outcome, console)
    assert "erasure by the store's table per cell (capacity sized for 9+3)" in console.file.getvalue()
    explicit = analyze(parse_plan(raw_plan()), dt.date(2027, 1, 1), scenarios=0).phases[0]   # 1+0, as given
    assert explicit.bom.total_drives == 10 and explicit.topology.erasure == "1+0"


def test_100_eb_on_one_sku_without_procurement():
    raw = raw_plan(drives=[drive(sku="Q", capacity_tb=122.88)])
    raw["protection"] = {"erasure": "16+4", "max_fill": 0.85}
    raw["enclosure"] = {"drive_slots": 32, "price_usd": 0, "rack_units": 1}
    raw["server"] = {"enclosures_per_server": 2, "price_usd": 0, "rack_units": 1}
    raw["rack"] = {"rack_units": 42, "power_kw": 1000}  # space-bound: 14 hosts (42 U) per rack
    plan = parse_plan(raw)
    drives = math.ceil(100e6 * 1.25 / 0.85 / 122.88)
    t = topology(plan, 100e6, bill_of_materials(plan, {"Q": drives}))
    hosts = math.ceil(math.ceil(drives / 32) / 2)
    racks = math.ceil(hosts * 3 / 42)
    assert (t.drives, t.hosts, t.racks, t.cells) == (drives, hosts, racks, racks // 20)
    assert t.hosts_per_rack == 14
    # at 1:1 reduction every cell holds 100 EB / cells logical; clusters of at most 10 TB each
    assert t.pg_clusters_per_cell == math.ceil(t.per_cell.total_bytes / 10e12)
    assert t.total.chunk_rows_at_64k == math.ceil(1e20 / 65536)


def test_topology_settings_are_read_and_checked():
    raw = raw_plan()
    raw["topology"] = {"cell_racks": 10, "segment_size": "256 MiB", "pg_cluster_max_tb": 20, "pg_standbys": 3,
                       "ranges_per_cluster": 8,
                       "chunking": [{"byte_share": 0.5, "mean_object": "1 MiB", "chunk": "64 KiB"},
                                    {"name": "big", "byte_share": 0.5, "mean_object": "1 GiB", "chunk": 4194304}]}
    st = parse_plan(raw).topology
    assert (st.cell_racks, st.segment_bytes, st.pg_cluster_max_tb, st.pg_standbys, st.ranges_per_cluster) == \
        (10, 256 << 20, 20.0, 3, 8)
    assert st.chunking[1] == ChunkClass("big", 0.5, 1 << 30, 4 << 20)
    raw["topology"] = {"chunking": [{"byte_share": 0.7, "mean_object": "1 MiB", "chunk": "64 KB"}], "cell_rack": 3}
    problems = problems_of(raw)
    assert any("byte_share must add up to 1" in p for p in problems)
    assert any("chunk: expected bytes or a size" in p for p in problems)
    assert any("did you mean 'cell_racks'" in p for p in problems)


def test_json_and_html_carry_the_topology(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    raw = raw_plan()
    raw["protection"]["erasure"] = "4+2"
    path.write_text(yaml.safe_dump(raw))
    out_json, out_html = tmp_path / "p.json", tmp_path / "p.html"
    assert main(["plan", str(path), "--today", "2027-01-01", "--scenarios", "0", "--json", str(out_json),
                 "--report", str(out_html)]) == 0
    assert "Cluster topology" in capsys.readouterr().out
    topo = json.loads(out_json.read_text())["phases"][0]["topology"]
    assert topo["hosts"] == topo["gateways"] == topo["drive_servers"] >= 1
    assert topo["total"]["total_bytes"] == sum(topo["total"]["bytes_by_table"].values())
    assert json.loads(out_json.read_text())["input"]["topology"]["pg_cluster_max_tb"] == 10.0
    page = out_html.read_text()
    assert "<h2>Cluster topology</h2>" in page and "<th>PG clusters</th>" in page


def test_sketching_only_small_chunks_drops_the_large_classes_sketch_rows():
    every = metadata_load(2e6, 1.5, 16, 4, TopologySettings())
    small = metadata_load(2e6, 1.5, 16, 4, TopologySettings(sketch_max_chunk=1 << 20))
    assert every.sketch_rows == every.chunk_rows
    assert small.sketch_rows == math.ceil(2e18 * (0.05 / 2**16 + 0.25 / 2**20))
    assert every.total_bytes - small.total_bytes == (every.sketch_rows - small.sketch_rows) * SKETCH_ROW_BYTES
    raw = raw_plan()
    raw["topology"] = {"sketch_max_chunk": "1 MiB"}
    assert parse_plan(raw).topology.sketch_max_chunk == 1 << 20


def test_the_shipped_this_machine_and_one_rack_inputs():
    examples = EXAMPLE.parent
    machine = analyze(load_plan(examples / "this-machine.yaml"), dt.date(2026, 12, 1), scenarios=0).phases[0]
    t = machine.topology
    assert (t.hosts, t.drives, t.cells, t.backend, t.erasure) == (1, 6, 1, "SQLite", "3+3")
    assert (t.drive_losses_survived, t.host_losses_survived) == (3, 0) and machine.bom.capex_usd == 0
    rack = analyze(load_plan(examples / "one-rack.yaml"), dt.date(2026, 12, 1), scenarios=0).phases[0].topology
    assert (rack.racks, rack.cells, rack.erasure) == (1, 1, "8+3")
    assert rack.hosts >= 11 and rack.shards_per_host == 1 and rack.host_losses_survived == 3
    assert rack.rack_losses_survived == 0 and rack.backend == "PostgreSQL" and rack.directory_clusters == 1


@pytest.mark.parametrize("hosts,per_host,k,m", [(20, 6, 4, 2), (24, 10, 8, 3), (1, 24, 4, 2), (30, 24, 16, 4)])
def test_the_plans_loss_probability_is_the_placements(hosts, per_host, k, m):
    """`exastor plan`'s P(loss | m+1 drives fail) per cell is computed from the drive count alone; it
    must agree with the groups placement really forms (engine/stripe_groups.py, dealt per chunk of
    hosts, so a little wider in places) to within 20% (24 hosts x 10 drives at 8+3: 0.85x)."""
    import math

    from exastor.engine.drives import Drive
    from exastor.engine.stripe_groups import form_groups
    from exastor.tools.plan.topology import grouped_loss

    drives = [Drive(h * per_host + i, "", "active", None, host=f"h{h}")  # type: ignore[arg-type]
              for h in range(hosts) for i in range(per_host)]
    real = form_groups(drives, k + m)
    n = hosts * per_host
    groups, p = grouped_loss(n, k, m)
    assert abs(groups - len(real)) <= max(1, len(real) // 10)
    assert p == pytest.approx(sum(math.comb(len(g), m + 1) for g in real) / math.comb(n, m + 1), rel=0.2)
