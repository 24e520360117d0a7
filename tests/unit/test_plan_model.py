"""The planner's input file: parsing, units, and validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_plan_support import raw_plan

from exastor.tools.plan.model import PlanInputError, load_plan, parse_plan, parse_quarter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plan" / "example-2eb-to-100eb.yaml"


def problems_of(raw) -> list[str]:
    with pytest.raises(PlanInputError) as info:
        parse_plan(raw)
    return info.value.problems


def test_the_documented_example_loads():
    plan = load_plan(EXAMPLE)
    assert [p.logical_tb for p in plan.phases] == [2e6, 10e6, 25e6, 50e6, 100e6]
    assert plan.protection.ec_data == 16 and plan.protection.ec_parity == 4
    assert {d.capacity_tb for d in plan.drives} == {122.88, 61.44, 30.72}
    qlc122 = next(d for d in plan.drives if d.sku == "QLC-122T")
    assert qlc122.allocation("2027Q3") == 8000 and qlc122.allocation("2031Q1") == 45000
    assert plan.suppliers["VendorA"].allocation_tb_per_quarter == 5.5e6


@pytest.mark.parametrize("text, tb", [("2 EB", 2e6), ("500 PB", 5e5), ("1200 TB", 1200), ("0.5EB", 5e5), (750, 750)])
def test_capacity_units_are_decimal(text, tb):
    raw = raw_plan(phases=[{"name": "P", "logical": text, "online_by": "2027-06-30"}])
    assert parse_plan(raw).phases[0].logical_tb == pytest.approx(tb)


def test_binary_units_are_refused():
    raw = raw_plan(phases=[{"name": "P", "logical": "2 EiB", "online_by": "2027-06-30"}])
    assert any("decimal units" in p for p in problems_of(raw))


def test_unknown_key_gets_a_did_you_mean_hint():
    raw = raw_plan()
    raw["protection"]["max_fil"] = 0.9
    assert "protection.max_fil: unknown key (did you mean 'max_fill'?)" in problems_of(raw)


def test_every_problem_is_reported_at_once():
    raw = raw_plan()
    raw["drives"][0]["lead_time_weeks"] = -1
    raw["drives"][0]["capacity_tb"] = "big"
    del raw["rack"]
    raw["phases"].append({"name": "P0", "logical": "500 TB", "online_by": "2027-03-01"})
    found = problems_of(raw)
    assert "drives[0].lead_time_weeks: must be >= 0, got -1" in found
    assert "drives[0].capacity_tb: expected a number, got 'big'" in found
    assert "rack: required" in found
    assert any(p.startswith("phases[1].online_by: phases must be in date order") for p in found)
    assert any(p.startswith("phases[1].logical: capacity is cumulative") for p in found)


def test_bad_dates_and_erasure_are_explained():
    raw = raw_plan(phases=[{"name": "P", "logical": "1 PB", "online_by": "June 2027"}])
    raw["protection"]["erasure"] = "16/4"
    found = problems_of(raw)
    assert "phases[0].online_by: expected a date YYYY-MM-DD, got 'June 2027'" in found
    assert any(p.startswith("protection.erasure: expected 'K+M'") for p in found)


def test_erasure_left_out_or_auto_is_the_stores_table():
    """No geometry (or "auto"): the store's own table decides per cell (topology.py); capacity is
    first sized for the table's widest geometry, 20+4. The whole protection section may go."""
    for protection in ({"max_fill": 0.9}, {"erasure": "auto", "max_fill": 0.9}, {"erasure": " Auto "}):
        raw = raw_plan()
        raw["protection"] = protection
        p = parse_plan(raw).protection
        assert p.ec_auto and (p.ec_data, p.ec_parity) == (20, 4) and p.ec_overhead == pytest.approx(1.2)
    raw = raw_plan()
    del raw["protection"]
    p = parse_plan(raw).protection
    assert p.ec_auto and p.max_fill == 0.85 and p.write_buffer_fraction == p.spare_fraction == 0.0
    for explicit in ("8+2", {"data": 8, "parity": 2}):
        raw = raw_plan()
        raw["protection"]["erasure"] = explicit
        p = parse_plan(raw).protection
        assert not p.ec_auto and (p.ec_data, p.ec_parity) == (8, 2)
    raw["protection"]["erasure"] = "automatic"
    assert any(p.startswith("protection.erasure: expected 'K+M'") and "'auto'" in p for p in problems_of(raw))


def test_allocation_forms():
    raw = raw_plan()
    raw["drives"][0]["allocation_per_quarter"] = {"default": 10, "2027-Q2": 3, "2027q3": 4}
    d = parse_plan(raw).drives[0]
    assert (d.allocation("2027Q1"), d.allocation("2027Q2"), d.allocation("2027Q3")) == (10, 3, 4)
    raw["drives"][0]["allocation_per_quarter"] = {"soon": 3}
    assert any("expected 'default' or a quarter" in p for p in problems_of(raw))
    assert parse_quarter("2027 Q4") == "2027Q4" and parse_quarter("Q4") is None


def test_reduction_from_estimate_json_top_level(tmp_path):
    (tmp_path / "est.json").write_text(json.dumps({"reduction_ratio": 2.5, "reduction_ratio_low": 2.0,
                                                   "reduction_ratio_high": 3.0, "other": 1}))
    raw = raw_plan(reduction={"from": "est.json"})
    red = parse_plan(raw, base_dir=tmp_path).reduction
    assert (red.ratio, red.low, red.high, red.source) == (2.5, 2.0, 3.0, "est.json")


def test_reduction_from_stats_json_nested(tmp_path):
    (tmp_path / "stats.json").write_text(json.dumps({"reduction": {"total": 1.7}}))
    raw = raw_plan(reduction={"from": str(tmp_path / "stats.json"), "rel_std": 0.1})
    red = parse_plan(raw).reduction
    assert (red.ratio, red.rel_std, red.low) == (1.7, 0.1, None)


def test_reduction_json_without_a_ratio_is_an_error(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"ratio": 2}))
    found = problems_of(raw_plan(reduction={"from": str(tmp_path / "x.json")}))
    assert any("neither a top-level 'reduction_ratio'" in p for p in found)
    assert any("file not found" in p for p in problems_of(raw_plan(reduction={"from": "/nonexistent.json"})))


def test_reduction_as_bare_number_and_range_checks():
    assert parse_plan(raw_plan(reduction=2)).reduction.ratio == 2.0
    assert any("low <= ratio <= high" in p for p in problems_of(raw_plan(reduction={"ratio": 2, "low": 2.5, "high": 3})))
    assert any("exactly one of 'ratio'" in p for p in problems_of(raw_plan(reduction={})))


def test_toml_input(tmp_path):
    toml = """
title = "toml plan"
strategy = "blanket"
[[phases]]
name = "P1"
logical = "1 PB"
online_by = 2027-06-30
[reduction]
ratio = 2.0
[protection]
erasure = "8+2"
[[drives]]
sku = "D"
capacity_tb = 61.44
price_usd = 7000
lead_time_weeks = 20
supplier = "S"
[enclosure]
drive_slots = 24
price_usd = 10000
[server]
enclosures_per_server = 1
price_usd = 20000
[rack]
rack_units = 42
power_kw = 15
"""
    path = tmp_path / "plan.toml"
    path.write_text(toml)
    plan = load_plan(path)
    assert plan.title == "toml plan" and plan.strategy == "blanket"
    assert plan.phases[0].logical_tb == 1000 and plan.protection.ec_overhead == pytest.approx(1.25)


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(PlanInputError, match="cannot read"):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases: [unclosed\n")
    with pytest.raises(PlanInputError, match="not valid YAML"):
        load_plan(bad)


def test_installed_drives_must_name_known_skus():
    assert parse_plan(raw_plan(installed={"D100": 7})).installed == {"D100": 7}
    found = problems_of(raw_plan(installed={"NOPE": 3, "D100": -1}))
    assert "installed.NOPE: not a SKU in 'drives'" in found
    assert "installed.D100: expected a whole number of drives >= 0, got -1" in found
