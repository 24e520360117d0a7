"""Working capital: when cash goes out, what sits idle, what carrying it costs each party, and the cloud.

Conventions (all documented in docs/planner.md):

* The buyer pays ``deposit_fraction`` of the drive price on the order date and the balance
  ``net_days`` after delivery; enclosures, servers and racks are paid on delivery.
* Carrying cost is *signed* money-time at the party's cost of capital: ``amount * rate * days / 365``.
  For the buyer it runs from each payment until the drive goes online ("inventory before online")
  and until the milestone it serves ("capacity before it is needed"). Paying after go-live is a
  negative carrying cost: the supplier finances the buyer.
* The supplier spends ``cogs_fraction`` of the price ``build_weeks`` before delivery (never before
  the order) and is paid as above; its carrying cost is the integral of its net cash outstanding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from exastor.tools.plan.model import PlanInput
from exastor.tools.plan.procure import OrderLine, ProcurementResult, add_months, month_start, terms_for, weeks
from exastor.tools.plan.sizing import (
    capacity_need,
    effective_tb,
    infrastructure_per_slot_usd,
    installed_effective_tb,
    watts_per_drive,
)


@dataclass(frozen=True)
class Payment:
    day: dt.date
    usd: float
    what: str  # "deposit", "balance", "infrastructure"
    line: int  # index into the result's lines


def payments(plan: PlanInput, result: ProcurementResult) -> list[Payment]:
    """Every payment the buyer makes for one procurement result."""
    terms = terms_for(plan, result.strategy)
    slot = infrastructure_per_slot_usd(plan)
    out = []
    for i, ln in enumerate(result.lines):
        value = ln.drives * ln.unit_price_usd
        if terms.deposit_fraction > 0:
            out.append(Payment(ln.order_date, value * terms.deposit_fraction, "deposit", i))
        if terms.deposit_fraction < 1:
            out.append(Payment(ln.delivery_date + dt.timedelta(days=terms.net_days), value * (1 - terms.deposit_fraction),
                               "balance", i))
        if slot > 0:
            out.append(Payment(ln.delivery_date, ln.drives * slot, "infrastructure", i))
    return sorted(out, key=lambda p: p.day)


@dataclass(frozen=True)
class WorkingCapital:
    strategy: str
    drive_capex_usd: float
    infrastructure_capex_usd: float
    discount_saved_usd: float
    buyer_carrying_before_online_usd: float
    buyer_carrying_before_needed_usd: float
    supplier_carrying_usd: float
    peak_inventory_usd: float  # paid for, not yet online
    peak_inventory_date: dt.date | None
    first_payment: dt.date | None
    energy_usd: float  # to the end of the horizon

    @property
    def capex_usd(self) -> float:
        return self.drive_capex_usd + self.infrastructure_capex_usd

    @property
    def total_cost_usd(self) -> float:
        """Capital, energy, and what carrying the inventory costs both parties until it is needed."""
        return self.capex_usd + self.energy_usd + self.buyer_carrying_before_needed_usd + self.supplier_carrying_usd


def working_capital(plan: PlanInput, result: ProcurementResult) -> WorkingCapital:
    terms = terms_for(plan, result.strategy)
    by_sku = {d.sku: d for d in plan.drives}
    milestone_day = {ph.name: ph.online_by for ph in plan.phases}
    buyer_rate = plan.finance.buyer_cost_of_capital / 365
    pays = payments(plan, result)
    before_online = sum(p.usd * buyer_rate * (result.lines[p.line].online_date - p.day).days for p in pays)
    before_needed = sum(p.usd * buyer_rate * (milestone_day[result.lines[p.line].milestone] - p.day).days for p in pays)

    supplier_rate = plan.finance.supplier_cost_of_capital / 365
    supplier = 0.0
    for ln in result.lines:
        value = ln.drives * ln.unit_price_usd
        build = max(ln.order_date, ln.delivery_date - weeks(plan.finance.supplier_build_weeks))
        paid = ln.delivery_date + dt.timedelta(days=terms.net_days)
        # Signed money-days: costs of goods out at build, deposit in at order, balance in when paid.
        supplier += supplier_rate * (plan.finance.supplier_cogs_fraction * value * (paid - build).days
                                     - terms.deposit_fraction * value * (paid - ln.order_date).days)

    # Inventory: paid for but not yet online, evaluated at each payment and go-live date.
    events = sorted({p.day for p in pays} | {ln.online_date for ln in result.lines})
    peak, peak_day = 0.0, None
    for day in events:
        held = sum(p.usd for p in pays if p.day <= day < result.lines[p.line].online_date)
        if held > peak:
            peak, peak_day = held, day

    end = result.horizon_end
    kwh_usd = plan.power.usd_per_kwh * plan.power.pue
    energy = sum(ln.drives * watts_per_drive(plan, by_sku[ln.sku]) / 1000 * 24 * max(0, (end - ln.online_date).days) * kwh_usd
                 for ln in result.lines)
    list_value = sum(ln.drives * by_sku[ln.sku].price_usd for ln in result.lines)
    drive_capex = sum(ln.drives * ln.unit_price_usd for ln in result.lines)
    return WorkingCapital(
        strategy=result.strategy, drive_capex_usd=drive_capex,
        infrastructure_capex_usd=sum(p.usd for p in pays if p.what == "infrastructure"),
        discount_saved_usd=list_value - drive_capex, buyer_carrying_before_online_usd=before_online,
        buyer_carrying_before_needed_usd=before_needed, supplier_carrying_usd=supplier, peak_inventory_usd=peak,
        peak_inventory_date=peak_day, first_payment=pays[0].day if pays else None, energy_usd=energy)


# ---------------------------------------------------------------- monthly timeline


@dataclass(frozen=True)
class Timeline:
    """Month-start series, from today's month to the end of the horizon."""

    months: list[dt.date]
    cash_out_usd: np.ndarray  # per month (buyer, capital only)
    cumulative_cash_usd: np.ndarray
    inventory_usd: np.ndarray  # paid for, not yet online, at each month start
    online_raw_tb: np.ndarray  # effective raw TB online at each month start
    required_raw_tb: np.ndarray  # raw TB the milestones require by each month start
    energy_usd: np.ndarray  # per month


def month_grid(today: dt.date, end: dt.date) -> list[dt.date]:
    months, m = [], month_start(today)
    while m <= end:
        months.append(m)
        m = add_months(m, 1)
    return months


def timeline(plan: PlanInput, today: dt.date, result: ProcurementResult) -> Timeline:
    months = month_grid(today, result.horizon_end)
    edges = np.array([np.datetime64(m) for m in months] + [np.datetime64(add_months(months[-1], 1))])
    pays = payments(plan, result)
    pay_day = np.array([np.datetime64(p.day) for p in pays], dtype="datetime64[D]")
    pay_usd = np.array([p.usd for p in pays])
    pay_online = np.array([np.datetime64(result.lines[p.line].online_date) for p in pays], dtype="datetime64[D]")
    # A payment dated before today's month (diagnosis only) lands in the first bucket.
    bucket = np.clip(np.searchsorted(edges, pay_day, side="right") - 1, 0, len(months) - 1)
    cash = np.bincount(bucket, weights=pay_usd, minlength=len(months)) if len(pays) else np.zeros(len(months))
    starts = edges[:-1]
    inventory = ((pay_day[None, :] <= starts[:, None]) & (starts[:, None] < pay_online[None, :])) @ pay_usd if len(pays) \
        else np.zeros(len(months))

    by_sku = {d.sku: d for d in plan.drives}
    online_day = np.array([np.datetime64(ln.online_date) for ln in result.lines], dtype="datetime64[D]")
    line_tb = np.array([ln.drives * effective_tb(by_sku[ln.sku], plan.protection) for ln in result.lines])
    line_kw = np.array([ln.drives * watts_per_drive(plan, by_sku[ln.sku]) / 1000 for ln in result.lines])
    live = online_day[None, :] <= starts[:, None] if len(result.lines) else np.zeros((len(months), 0), bool)
    online_tb = (live @ line_tb if len(result.lines) else np.zeros(len(months))) + installed_effective_tb(plan)
    days_in_month = (edges[1:] - edges[:-1]).astype(int)
    energy = (live @ line_kw if len(result.lines) else np.zeros(len(months))) * 24 * days_in_month \
        * plan.power.usd_per_kwh * plan.power.pue

    required = np.zeros(len(months))
    for ph in plan.phases:
        need = capacity_need(ph.logical_tb, plan.reduction.ratio, plan.protection).raw_tb
        required[starts >= np.datetime64(ph.online_by)] = need  # phases are cumulative and in order
    return Timeline(months, cash, np.cumsum(cash), inventory, online_tb, required, energy)


# ---------------------------------------------------------------- the cloud alternative


@dataclass(frozen=True)
class CloudComparison:
    name: str
    months: list[dt.date]
    logical_tb: np.ndarray  # stored in the cloud at each month
    cloud_monthly_usd: np.ndarray
    cloud_cumulative_usd: np.ndarray
    onprem_cumulative_usd: np.ndarray  # capital cash + energy
    cloud_total_usd: float
    onprem_total_usd: float
    cloud_pv_usd: float
    onprem_pv_usd: float
    breakeven: dt.date | None  # first month from which on-prem stays cheaper, cumulatively


def logical_demand(plan: PlanInput, today: dt.date, months: list[dt.date]) -> np.ndarray:
    """Logical TB stored each month: a straight line from 0 today through every milestone, flat after.

    Data arrives continuously; the cloud bills what is stored, so it is charged on this
    ramp rather than on the capacity that on-premises flash must have installed in advance.
    """
    xs = [0.0] + [float((ph.online_by - today).days) for ph in plan.phases]
    ys = [0.0] + [ph.logical_tb for ph in plan.phases]
    t = np.array([(m - today).days for m in months], dtype=float)
    return np.interp(t, xs, ys)


def compare_cloud(plan: PlanInput, today: dt.date, tl: Timeline) -> CloudComparison | None:
    if plan.cloud is None:
        return None
    cloud = plan.cloud
    months = tl.months
    logical = logical_demand(plan, today, months)
    gb = logical * 1000.0
    monthly = gb * cloud.usd_per_gb_month + gb * cloud.egress_fraction_per_month * cloud.egress_usd_per_gb
    onprem_monthly = tl.cash_out_usd + tl.energy_usd
    cloud_cum, onprem_cum = np.cumsum(monthly), np.cumsum(onprem_monthly)
    discount = (1 + plan.finance.buyer_cost_of_capital) ** (-np.arange(len(months)) / 12.0)
    cheaper = onprem_cum <= cloud_cum
    breakeven = None
    if cheaper.any() and cheaper[-1]:
        # the first month after which on-prem never becomes more expensive again
        last_dearer = np.flatnonzero(~cheaper)
        idx = 0 if last_dearer.size == 0 else int(last_dearer[-1]) + 1
        breakeven = months[idx]
    return CloudComparison(cloud.name, months, logical, monthly, cloud_cum, onprem_cum, float(cloud_cum[-1]),
                           float(onprem_cum[-1]), float(monthly @ discount), float(onprem_monthly @ discount), breakeven)


def lines_value(lines: list[OrderLine]) -> float:
    return sum(ln.drives * ln.unit_price_usd for ln in lines)
