"""Builders for small, hand-checkable planner inputs (imported by the test_plan_* modules; no tests here).

The defaults strip every factor that is not under test: no erasure overhead (1+0), 100 % fill,
no write buffer, no spares, free enclosures and power, so that raw TB = logical TB / ratio and
a drive of 100 TB covers exactly 100 TB.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from exastor.tools.plan.model import PlanInput, parse_plan

TODAY = dt.date(2027, 1, 1)


def raw_plan(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "phases": [{"name": "P1", "logical": "1000 TB", "online_by": "2027-06-30"}],
        "reduction": {"ratio": 1.0},
        "protection": {"erasure": "1+0", "write_buffer_fraction": 0.0, "spare_fraction": 0.0, "max_fill": 1.0},
        "drives": [{"sku": "D100", "capacity_tb": 100, "price_usd": 10000, "watts": 0, "lead_time_weeks": 10,
                    "supplier": "S"}],
        "enclosure": {"drive_slots": 10, "price_usd": 0, "watts": 0, "rack_units": 1},
        "server": {"enclosures_per_server": 1, "price_usd": 0, "watts": 0, "rack_units": 1},
        "rack": {"rack_units": 40, "power_kw": 100, "price_usd": 0},
        "power": {"usd_per_kwh": 0.0, "pue": 1.0},
        "logistics": {"shipping_weeks": 1, "burn_in_weeks": 1},
        "finance": {"horizon_months": 24, "buyer": {"cost_of_capital": 0.1},
                    "supplier": {"cost_of_capital": 0.1, "cogs_fraction": 0.8, "build_weeks": 4},
                    "blanket": {"deposit_fraction": 0.2, "net_days": 30, "discount": 0.0},
                    "per_phase": {"deposit_fraction": 0.0, "net_days": 30}},
        "strategy": "per_phase",
    }
    for key, value in overrides.items():
        raw[key] = copy.deepcopy(value)
    return raw


def small_plan(**overrides: Any) -> PlanInput:
    return parse_plan(raw_plan(**overrides))


def drive(**fields: Any) -> dict[str, Any]:
    base = {"sku": "D100", "capacity_tb": 100, "price_usd": 10000, "watts": 0, "lead_time_weeks": 10, "supplier": "S"}
    base.update(fields)
    return base
