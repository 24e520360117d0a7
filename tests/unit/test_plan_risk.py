"""The Monte Carlo: probabilities that can be computed in closed form, and its speed."""

from __future__ import annotations

import datetime as dt
import math
import time

import pytest
from test_plan_support import TODAY, drive, raw_plan

from exastor.tools.plan.model import load_plan, parse_plan
from exastor.tools.plan.procure import solve_procurement
from exastor.tools.plan.risk import simulate

D = dt.date


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def run(strategy="per_phase", scenarios=100_000, seed=1, **overrides):
    plan = parse_plan(raw_plan(**overrides))
    return simulate(plan, TODAY, solve_procurement(plan, TODAY, strategy), scenarios=scenarios, seed=seed)


def test_no_uncertainty_means_certainty():
    risk = run()
    (m,) = risk.milestones
    assert m.probability == 1.0 and m.p50_met == m.p90_met == D(2027, 6, 8)
    assert m.raw_tb_p50 == pytest.approx(1000) and m.raw_tb_p90 == pytest.approx(1000)


def test_reduction_uncertainty_alone():
    # 1,500 TB at 1.5:1 = exactly 10 drives. Met iff the actual ratio >= 1.5: for triangular(1, 1.5, 2)
    # that is 50 %. Its 10th percentile: (x - 1)^2 / 0.5 = 0.1 -> x = 1.2236, needing 1500 / x raw TB.
    risk = run(phases=[{"name": "P1", "logical": "1500 TB", "online_by": "2027-06-30"}],
               reduction={"ratio": 1.5, "low": 1.0, "high": 2.0})
    (m,) = risk.milestones
    assert m.probability == pytest.approx(0.5, abs=0.01)
    assert m.never_met == pytest.approx(0.5, abs=0.01)  # more flash is needed, not more time
    assert risk.ratio_p10 == pytest.approx(1 + math.sqrt(0.05), rel=0.01)
    assert m.raw_tb_p90 == pytest.approx(1500 / (1 + math.sqrt(0.05)), rel=0.01)


def test_lead_time_slip_against_slack():
    # Delivery 06-01, online 06-08, due 06-30: met iff the slip is <= 22 days. Slip is lognormal with
    # P50 2 weeks and P90 4 weeks: sigma = ln 2 / z90.
    slip = {"p50": 2, "p90": 4}
    risk = run(drives=[drive(lead_time_slip_weeks=slip)])
    sigma = math.log(2) / 1.2815515655446004
    expected = phi(math.log(22 / 7 / 2) / sigma)
    assert risk.milestones[0].probability == pytest.approx(expected, abs=0.01)
    (ob,) = risk.order_by
    assert (ob.order_by, ob.p50, ob.p90) == (D(2027, 4, 7), D(2027, 3, 24), D(2027, 3, 10))


def test_a_blanket_order_absorbs_slips_in_its_slack():
    slip = {"p50": 2, "p90": 4}
    per_phase = run("per_phase", drives=[drive(lead_time_slip_weeks=slip)]).milestones[0].probability
    blanket = run("blanket", drives=[drive(lead_time_slip_weeks=slip)]).milestones[0].probability
    # Ordered on 01-01 for a 06-01 delivery: a slip must exceed 74 + 22 days to miss.
    sigma = math.log(2) / 1.2815515655446004
    assert blanket == pytest.approx(phi(math.log(96 / 7 / 2) / sigma), abs=0.002)
    assert blanket > per_phase + 0.15


def test_seeded_runs_repeat():
    a = run(scenarios=5000, seed=5, drives=[drive(lead_time_slip_weeks={"p50": 2, "p90": 6})],
            reduction={"ratio": 1.0, "rel_std": 0.05})
    b = run(scenarios=5000, seed=5, drives=[drive(lead_time_slip_weeks={"p50": 2, "p90": 6})],
            reduction={"ratio": 1.0, "rel_std": 0.05})
    assert a.milestones == b.milestones


def test_100k_scenarios_of_the_example_in_seconds():
    from test_plan_model import EXAMPLE

    plan = load_plan(EXAMPLE)
    result = solve_procurement(plan, D(2026, 12, 1), "blanket")
    started = time.perf_counter()
    risk = simulate(plan, D(2026, 12, 1), result, scenarios=100_000, seed=0)
    assert time.perf_counter() - started < 20
    assert risk.scenarios == 100_000 and len(risk.milestones) == 5
    assert all(0 <= m.probability <= 1 for m in risk.milestones)


def test_installed_capacity_alone_meets_the_milestone():
    risk = run(installed={"D100": 10}, drives=[drive(lead_time_slip_weeks={"p50": 8, "p90": 20})])
    assert risk.milestones[0].probability == 1.0
