"""`exastor plan` end to end: exit codes, the JSON, the HTML report and its plots, input errors."""

from __future__ import annotations

import json

import yaml
from test_plan_model import EXAMPLE
from test_plan_support import drive, raw_plan

from exastor.cli import main


def test_example_end_to_end(tmp_path, capsys):
    out_json, out_html = tmp_path / "plan.json", tmp_path / "plan.html"
    rc = main(["plan", str(EXAMPLE), "--today", "2026-12-01", "--json", str(out_json), "--report", str(out_html),
               "--scenarios", "3000", "--seed", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Sizing and bill of materials" in printed and "Cloud comparison" in printed

    doc = json.loads(out_json.read_text())
    assert doc["today"] == "2026-12-01" and doc["chosen_strategy"] in ("blanket", "per_phase")
    assert [p["name"] for p in doc["phases"]] == ["P1 2 EB", "P2 10 EB", "P3 25 EB", "P4 50 EB", "P5 100 EB"]
    p1 = doc["phases"][0]
    # 2 EB at 1.5:1, 16+4, 85 % fill, 2 % write buffer: 2e6 / 1.5 * 1.25 / 0.85 / 0.98 TB raw.
    assert abs(p1["need"]["raw_tb"] - 2e6 / 1.5 * 1.25 / 0.85 / 0.98) < 1e-3
    assert abs(p1["reduction_saving"]["saved_tb"] - (p1["need_without_reduction"]["raw_tb"] - p1["need"]["raw_tb"])) < 1e-3
    for name in ("per_phase", "blanket"):
        s = doc["strategies"][name]
        assert s["feasible"] and s["orders"] and s["risk"]["scenarios"] == 3000
        assert len(s["risk"]["milestones"]) == 5
        assert s["working_capital"]["total_cost_usd"] > s["working_capital"]["capex_usd"] > 0
    assert doc["cloud"]["cloud_total_usd"] > 0

    page = out_html.read_text()
    assert page.count("data:image/png;base64,") == 4 and "Milestone risk" in page
    for name in ("capacity", "orders", "cash", "risk"):
        png = tmp_path / f"plan-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_invalid_input_lists_every_problem(tmp_path, capsys):
    raw = raw_plan()
    raw["protection"]["max_fil"] = 0.9
    raw["drives"][0]["price_usd"] = -5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["plan", str(path), "--today", "2027-01-01", "--scenarios", "0"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'max_fill'" in err and "drives[0].price_usd: must be >= 0" in err


def test_a_missed_milestone_exits_1_and_says_what_would_fix_it(tmp_path, capsys):
    raw = raw_plan(drives=[drive(lead_time_weeks=30)])
    path = tmp_path / "late.yaml"
    path.write_text(yaml.safe_dump(raw))
    out_json = tmp_path / "late.json"
    assert main(["plan", str(path), "--today", "2027-01-01", "--scenarios", "500", "--json", str(out_json)]) == 1
    printed = capsys.readouterr().out
    assert "cannot be met" in printed and "already late" in printed and "+7 weeks" in printed
    gap = json.loads(out_json.read_text())["strategies"]["per_phase"]["milestone_gaps"][0]
    assert gap["weeks_late"] == 7 and gap["late_orders"][0]["days_late"] == 66


def test_today_after_every_milestone_is_refused(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw_plan()))
    assert main(["plan", str(path), "--today", "2030-01-01"]) == 2
    assert "nothing to plan" in capsys.readouterr().err
