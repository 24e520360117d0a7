"""Sizing arithmetic, checked by hand, and the property that more reduction never needs more flash."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_plan_support import drive, raw_plan

from exastor.tools.plan.model import Protection, parse_plan
from exastor.tools.plan.sizing import (
    bill_of_materials,
    capacity_need,
    effective_tb,
    infrastructure_per_slot_usd,
    reduction_saving,
    watts_per_drive,
)


def test_capacity_chain_by_hand():
    # 1,000 TB logical at 2:1 -> 500 stored; 8+2 -> 625 striped; / 0.8 fill / (1 - 0.2 buffer) -> 976.5625 raw;
    # / (1 - 0.02 spares) -> 996.49... installed.
    prot = Protection(ec_data=8, ec_parity=2, write_buffer_fraction=0.2, spare_fraction=0.02, max_fill=0.8)
    need = capacity_need(1000, 2.0, prot)
    assert need.stored_tb == pytest.approx(500)
    assert need.striped_tb == pytest.approx(625)
    assert need.raw_tb == pytest.approx(976.5625)
    assert need.installed_tb == pytest.approx(976.5625 / 0.98)


def test_effective_capacity_sets_spares_aside():
    raw = raw_plan(drives=[drive(capacity_tb=122.88)])
    raw["protection"]["spare_fraction"] = 0.05
    plan = parse_plan(raw)
    assert effective_tb(plan.drives[0], plan.protection) == pytest.approx(122.88 * 0.95)


def bom_plan():
    raw = raw_plan(drives=[drive(sku="A", capacity_tb=100, price_usd=1000, watts=20),
                           drive(sku="B", capacity_tb=50, price_usd=400, watts=10)])
    raw["enclosure"] = {"drive_slots": 24, "price_usd": 5000, "watts": 200, "rack_units": 2}
    raw["server"] = {"enclosures_per_server": 2, "price_usd": 8000, "watts": 500, "rack_units": 1}
    raw["rack"] = {"rack_units": 10, "power_kw": 5, "price_usd": 3000}
    return parse_plan(raw)


def test_bill_of_materials_by_hand():
    plan = bom_plan()
    bom = bill_of_materials(plan, {"A": 50, "B": 30})
    # 80 drives / 24 slots -> 4 enclosures; 4 / 2 -> 2 servers; 4*2 + 2*1 = 10 U -> 1 rack by space,
    # but power = 50*20 + 30*10 + 4*200 + 2*500 = 3100 W -> 1 rack; so 1 rack.
    assert (bom.enclosures, bom.servers, bom.rack_units, bom.racks) == (4, 2, 10, 1)
    assert bom.power_kw == pytest.approx(3.1)
    assert bom.installed_tb == pytest.approx(50 * 100 + 30 * 50)
    assert bom.capex_usd == pytest.approx(50 * 1000 + 30 * 400 + 4 * 5000 + 2 * 8000 + 3000)


def test_racks_are_bounded_by_power_when_power_bites_first():
    plan = bom_plan()
    bom = bill_of_materials(plan, {"A": 240})  # 10 enclosures, 5 servers, 25 U; 4800+2000+2500 W = 9.3 kW
    assert (bom.enclosures, bom.servers, bom.rack_units) == (10, 5, 25)
    assert bom.racks == 3  # ceil(25 U / 10) = 3, ceil(9.3 kW / 5) = 2
    bom = bill_of_materials(plan, {"A": 48})  # 2 enclosures, 1 server, 5 U; 960+400+500 W = 1.86 kW
    assert bom.racks == 1


def test_per_slot_infrastructure_and_power():
    plan = bom_plan()
    # (5000 + 8000/2 + 3000 * (2 + 1/2) / 10) / 24 slots
    assert infrastructure_per_slot_usd(plan) == pytest.approx((5000 + 4000 + 750) / 24)
    assert watts_per_drive(plan, plan.drives[0]) == pytest.approx(20 + (200 + 250) / 24)


def test_reduction_saving_by_hand():
    plan = parse_plan(raw_plan(reduction={"ratio": 1.6}))
    saving = reduction_saving(plan, 1600, usd_per_raw_tb=100)
    assert (saving.raw_without_tb, saving.raw_with_tb) == pytest.approx((1600, 1000))
    assert saving.saved_tb == pytest.approx(600) and saving.saved_usd == pytest.approx(60_000)


@settings(max_examples=200, deadline=None)
@given(logical=st.floats(1, 1e8), r1=st.floats(0.2, 20), r2=st.floats(0.2, 20), k=st.integers(1, 20),
       m=st.integers(0, 6), fill=st.floats(0.3, 1.0), buf=st.floats(0, 0.5), spare=st.floats(0, 0.2))
def test_more_reduction_never_needs_more_flash(logical, r1, r2, k, m, fill, buf, spare):
    lo, hi = sorted((r1, r2))
    prot = Protection(k, m, buf, spare, fill)
    assert capacity_need(logical, hi, prot).installed_tb <= capacity_need(logical, lo, prot).installed_tb * (1 + 1e-12)
    assert capacity_need(logical, hi, prot).raw_tb <= capacity_need(logical, lo, prot).raw_tb * (1 + 1e-12)
