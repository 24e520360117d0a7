"""The procurement MILP on plans small enough to solve by hand, and its properties."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_plan_support import TODAY, drive, raw_plan

from exastor.tools.plan.model import parse_plan
from exastor.tools.plan.procure import diagnose, latest_order_date, solve_procurement

D = dt.date


def totals(result) -> dict[str, int]:
    out: dict[str, int] = {}
    for ln in result.lines:
        out[ln.sku] = out.get(ln.sku, 0) + ln.drives
    return out


def test_single_order_just_in_time_with_order_by_date():
    # 1,000 TB by 2027-06-30 with 100 TB drives: 10 drives. Lead 10 weeks + 1 shipping + 1 burn-in.
    # The latest delivery month whose first day leaves a week of burn-in is June (06-01, online 06-08);
    # the order goes out 11 weeks earlier, 2027-03-16; the order-by date is 12 weeks before the milestone.
    plan = parse_plan(raw_plan())
    result = solve_procurement(plan, TODAY, "per_phase")
    assert result.feasible and result.status == "optimal"
    assert [(ln.drives, ln.delivery_date, ln.order_date, ln.online_date, ln.order_by, ln.milestone)
            for ln in result.lines] == [(10, D(2027, 6, 1), D(2027, 3, 16), D(2027, 6, 8), D(2027, 4, 7), "P1")]
    assert latest_order_date(plan, 0, D(2027, 6, 30)) == D(2027, 4, 7)


def test_blanket_orders_everything_today():
    plan = parse_plan(raw_plan())
    result = solve_procurement(plan, TODAY, "blanket")
    assert {ln.order_date for ln in result.lines} == {TODAY}
    assert sum(ln.drives for ln in result.lines) == 10


def test_allocation_pulls_deliveries_earlier():
    # 6 drives a quarter (so at most 2 a month); 10 drives needed by June: Q2 gives 6 (April-June),
    # the other 4 must come in February and March. Nothing earlier: earlier costs more capital.
    raw = raw_plan(drives=[drive(allocation_per_quarter=6)])
    plan = parse_plan(raw)
    result = solve_procurement(plan, D(2026, 10, 1), "per_phase")
    assert sorted((ln.delivery_date, ln.drives) for ln in result.lines) == [
        (D(2027, m, 1), 2) for m in (2, 3, 4, 5, 6)]
    assert min(ln.order_date for ln in result.lines) == D(2027, 2, 1) - dt.timedelta(weeks=11)


def test_quarter_override_and_supplier_cap():
    # Supplier S may ship 400 TB (4 drives of A) a quarter and A has no allocation in 2027Q2; the
    # earliest delivery is 2026-12-17. So A gives 4 in 2026Q4 and 4 in 2027Q1, and the last 2 drives
    # must be B (twice the price, another supplier).
    raw = raw_plan(drives=[drive(sku="A", allocation_per_quarter={"default": 100, "2027Q2": 0}),
                           drive(sku="B", price_usd=20000, supplier="T")],
                   suppliers={"S": {"allocation_tb_per_quarter": 400}})
    result = solve_procurement(parse_plan(raw), D(2026, 10, 1), "per_phase")
    assert result.feasible
    a_by_quarter: dict[str, int] = {}
    for ln in result.lines:
        if ln.sku == "A":
            q = f"{ln.delivery_date.year}Q{(ln.delivery_date.month - 1) // 3 + 1}"
            a_by_quarter[q] = a_by_quarter.get(q, 0) + ln.drives
    assert a_by_quarter == {"2026Q4": 4, "2027Q1": 4}
    assert totals(result) == {"A": 8, "B": 2}


def test_infeasible_milestone_is_diagnosed():
    # Lead 30 weeks from 2027-01-01: the earliest delivery is 2027-08-06, online 08-13, after the
    # 06-30 milestone. Moving it 7 weeks (to 08-18) is the least that works; 6 weeks (08-11) is not.
    plan = parse_plan(raw_plan(drives=[drive(lead_time_weeks=30)]))
    result = solve_procurement(plan, TODAY, "per_phase")
    assert not result.feasible and result.shortfall_tb == {"P1": pytest.approx(1000)}
    (gap,) = diagnose(plan, TODAY, result)
    assert gap.milestone == "P1" and gap.short_raw_tb == pytest.approx(1000)
    assert (gap.weeks_late, gap.met_by) == (7, D(2027, 8, 18))
    assert gap.reduction_needed is None  # nothing can arrive, no ratio helps
    # What should already have been ordered: June delivery, ordered 31 weeks before, 66 days ago.
    assert [(ln.drives, ln.order_date, ln.days_late) for ln in gap.late_orders] == [(10, D(2026, 10, 27), 66)]
    assert any("move 'P1' to 2027-08-18 (+7 weeks)" in f for f in gap.fixes)
    assert any("lead time of at most 24 weeks" in f for f in gap.fixes)


def test_partly_feasible_milestone_names_the_reduction_that_would_do():
    # The earliest delivery is 2027-03-19: March can bring 2 drives (a third of the quarter's 6),
    # April-June 6 more. 800 TB by June; 1,000 TB at 1:1 needs a 1000/800 = 1.25 ratio.
    plan = parse_plan(raw_plan(drives=[drive(allocation_per_quarter=6)]))
    result = solve_procurement(plan, D(2027, 1, 1), "per_phase")
    assert result.shortfall_tb["P1"] == pytest.approx(200)
    (gap,) = diagnose(plan, D(2027, 1, 1), result)
    assert gap.reduction_needed == pytest.approx(1000 / 800)
    assert gap.weeks_late is not None and gap.weeks_late > 0
    assert any("2 more D100 drives" in f for f in gap.fixes)
    assert sum(ln.drives for ln in result.lines) == 8


def test_reduction_removes_the_need_for_an_order():
    phases = [{"name": "P1", "logical": "1000 TB", "online_by": "2027-06-30"},
              {"name": "P2", "logical": "1200 TB", "online_by": "2027-12-31"}]
    drives = [drive(capacity_tb=200, price_usd=20000)]
    # 1:1 -> P1 needs 5 drives, P2 needs 6: one more drive for P2.
    at_1 = solve_procurement(parse_plan(raw_plan(phases=phases, drives=drives)), TODAY, "per_phase")
    assert sum(ln.drives for ln in at_1.lines if ln.milestone == "P2") == 1
    assert totals(at_1) == {"D100": 6}
    # 1.5:1 -> P1 needs 667 TB (4 drives = 800 TB), P2 needs 800 TB: P1's drives already cover it.
    at_15 = solve_procurement(parse_plan(raw_plan(phases=phases, drives=drives, reduction={"ratio": 1.5})),
                              TODAY, "per_phase")
    assert at_15.feasible and [ln.milestone for ln in at_15.lines] == ["P1"]
    assert totals(at_15) == {"D100": 4}


def test_infrastructure_per_slot_can_favour_the_larger_drive():
    big = drive(sku="BIG", capacity_tb=200, price_usd=20000)  # 100 $/TB
    small = drive(sku="SMALL", capacity_tb=100, price_usd=9000)  # 90 $/TB
    raw = raw_plan(drives=[big, small])
    assert totals(solve_procurement(parse_plan(raw), TODAY)) == {"SMALL": 10}
    # $4,000 of enclosure per slot: BIG costs 120 $/TB all-in, SMALL 130 $/TB.
    raw["enclosure"] = {"drive_slots": 1, "price_usd": 4000, "watts": 0, "rack_units": 1}
    assert totals(solve_procurement(parse_plan(raw), TODAY)) == {"BIG": 5}


def test_minimum_order_quantity():
    plan = parse_plan(raw_plan(phases=[{"name": "P1", "logical": "300 TB", "online_by": "2027-06-30"}],
                               drives=[drive(min_order=5)]))
    result = solve_procurement(plan, TODAY)
    assert totals(result) == {"D100": 5}


def test_the_100eb_example_solves_in_seconds():
    from test_plan_model import EXAMPLE

    from exastor.tools.plan.model import load_plan

    plan = load_plan(EXAMPLE)
    for strategy in ("per_phase", "blanket"):
        result = solve_procurement(plan, D(2026, 12, 1), strategy)
        assert result.feasible and result.solve_seconds < 10
        for ph in plan.phases:  # every milestone covered by what is online in time
            online = sum(ln.drives * next(d.capacity_tb for d in plan.drives if d.sku == ln.sku) * 0.98
                         for ln in result.lines if ln.online_date <= ph.online_by)
            assert online >= result.required_tb[ph.name] * (1 - 1e-9)


# ---------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(need_tb=st.integers(100, 3000), lead=st.integers(2, 30), alloc=st.integers(3, 30),
       day=st.integers(120, 500), shift=st.integers(1, 200))
def test_a_later_milestone_never_needs_an_earlier_order(need_tb, lead, alloc, day, shift):
    def first_order(deadline: dt.date):
        raw = raw_plan(phases=[{"name": "P1", "logical": f"{need_tb} TB", "online_by": deadline.isoformat()}],
                       drives=[drive(lead_time_weeks=lead, allocation_per_quarter=alloc)])
        result = solve_procurement(parse_plan(raw), TODAY)
        return result.feasible, min((ln.order_date for ln in result.lines), default=None)

    ok_early, first_early = first_order(TODAY + dt.timedelta(days=day))
    ok_late, first_late = first_order(TODAY + dt.timedelta(days=day + shift))
    if ok_early:
        assert ok_late and first_late >= first_early


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(r1=st.floats(0.5, 4), r2=st.floats(0.5, 4), alloc=st.integers(5, 40))
def test_more_reduction_never_needs_more_drives_or_money(r1, r2, alloc):
    lo, hi = sorted((r1, r2))
    phases = [{"name": "P1", "logical": "1000 TB", "online_by": "2027-06-30"},
              {"name": "P2", "logical": "2500 TB", "online_by": "2027-12-31"}]

    def solve(ratio):
        raw = raw_plan(phases=phases, reduction={"ratio": ratio},
                       drives=[drive(allocation_per_quarter=alloc), drive(sku="D50", capacity_tb=50, price_usd=5200)])
        return solve_procurement(parse_plan(raw), D(2026, 10, 1))

    low, high = solve(lo), solve(hi)
    assert sum(high.shortfall_tb.values()) <= sum(low.shortfall_tb.values()) + 1e-6
    if low.feasible:
        assert high.feasible
        assert high.objective_usd <= low.objective_usd * (1 + 1e-5)
        assert sum(n * (100 if s == "D100" else 50) for s, n in totals(high).items()) <= \
            sum(n * (100 if s == "D100" else 50) for s, n in totals(low).items())


def test_installed_drives_count_towards_every_milestone():
    # 4 drives (400 TB) are already online: only 6 more are bought for the 1,000 TB milestone.
    plan = parse_plan(raw_plan(installed={"D100": 4}))
    result = solve_procurement(plan, TODAY)
    assert result.feasible and totals(result) == {"D100": 6}
    # With 10 installed, nothing is bought at all.
    assert solve_procurement(parse_plan(raw_plan(installed={"D100": 10})), TODAY).lines == []
