"""Working capital, carrying cost for each party, the monthly timeline and the cloud comparison."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from test_plan_support import TODAY, raw_plan

from exastor.tools.plan.finance import compare_cloud, logical_demand, payments, timeline, working_capital
from exastor.tools.plan.model import parse_plan
from exastor.tools.plan.procure import solve_procurement

D = dt.date
RATE = 0.1 / 365  # buyer and supplier cost of capital in the support plan, per day


def solved(strategy: str, **overrides):
    plan = parse_plan(raw_plan(**overrides))
    return plan, solve_procurement(plan, TODAY, strategy)


def test_per_phase_payments_and_carrying_by_hand():
    # 10 drives x $10,000 delivered 2027-06-01, online 06-08, milestone 06-30; no deposit, paid net 30 (07-01).
    plan, result = solved("per_phase")
    pays = [(p.day, p.usd, p.what) for p in payments(plan, result) if p.usd]
    assert pays == [(D(2027, 7, 1), 100_000, "balance")]
    wc = working_capital(plan, result)
    assert wc.buyer_carrying_before_online_usd == pytest.approx(100_000 * RATE * -23)  # paid 23 days after go-live
    assert wc.buyer_carrying_before_needed_usd == pytest.approx(100_000 * RATE * -1)
    # Supplier: 80 % cost of goods spent 4 weeks before delivery (05-04), paid 07-01: 58 days.
    assert wc.supplier_carrying_usd == pytest.approx(80_000 * RATE * 58)
    assert wc.peak_inventory_usd == 0 and wc.first_payment == D(2027, 7, 1)


def test_blanket_deposit_moves_carrying_from_supplier_to_buyer():
    plan, result = solved("blanket")
    assert [(ln.order_date, ln.delivery_date) for ln in result.lines] == [(TODAY, D(2027, 6, 1))]
    wc = working_capital(plan, result)
    # 20 % deposit paid today, 158 days before go-live; 80 % paid 23 days after it.
    assert wc.buyer_carrying_before_online_usd == pytest.approx(RATE * (20_000 * 158 - 80_000 * 23))
    # The supplier holds the deposit for 181 days before the balance is due.
    assert wc.supplier_carrying_usd == pytest.approx(RATE * (80_000 * 58 - 20_000 * 181))
    assert wc.peak_inventory_usd == pytest.approx(20_000) and wc.peak_inventory_date == TODAY
    assert wc.first_payment == TODAY


def test_discount_is_reported_and_lowers_capex():
    raw = raw_plan()
    raw["finance"]["blanket"]["discount"] = 0.05
    plan = parse_plan(raw)
    wc = working_capital(plan, solve_procurement(plan, TODAY, "blanket"))
    assert wc.drive_capex_usd == pytest.approx(95_000) and wc.discount_saved_usd == pytest.approx(5_000)


def test_monthly_timeline():
    plan, result = solved("blanket")
    tl = timeline(plan, TODAY, result)
    assert tl.months[0] == D(2027, 1, 1) and tl.months[-1] == result.horizon_end
    assert tl.cash_out_usd[0] == pytest.approx(20_000)  # deposit in January
    assert tl.cash_out_usd[6] == pytest.approx(80_000)  # balance in July
    assert tl.cumulative_cash_usd[-1] == pytest.approx(100_000)
    assert tl.inventory_usd[1] == pytest.approx(20_000) and tl.inventory_usd[6] == 0  # online by July 1st
    assert tl.online_raw_tb[5] == 0 and tl.online_raw_tb[6] == pytest.approx(1000)  # June 1st vs July 1st
    assert tl.required_raw_tb[5] == 0 and tl.required_raw_tb[6] == pytest.approx(1000)


def test_cloud_charges_the_logical_ramp():
    plan, result = solved("per_phase", cloud={"usd_per_gb_month": 0.01, "egress_usd_per_gb": 0.05,
                                             "egress_fraction_per_month": 0.1})
    tl = timeline(plan, TODAY, result)
    demand = logical_demand(plan, TODAY, tl.months)
    assert demand[0] == 0 and demand[1] == pytest.approx(1000 * 31 / 180) and demand[-1] == pytest.approx(1000)
    cmp = compare_cloud(plan, TODAY, tl)
    per_tb_month = 1000 * (0.01 + 0.1 * 0.05)  # storage + a tenth read out at $0.05/GB
    assert cmp.cloud_monthly_usd[1] == pytest.approx(demand[1] * per_tb_month)
    assert cmp.cloud_total_usd == pytest.approx(float(np.sum(demand)) * per_tb_month)
    assert cmp.onprem_total_usd == pytest.approx(100_000)  # free power and racks in this plan
    # Own flash ($100k once) vs $15k/month at full size: cheaper once the cloud bill passes $100k.
    cum = np.cumsum(demand * per_tb_month)
    assert cmp.breakeven == tl.months[int(np.argmax(cum >= 100_000))]


def test_no_cloud_section_means_no_comparison():
    plan, result = solved("per_phase")
    assert compare_cloud(plan, TODAY, timeline(plan, TODAY, result)) is None
