"""Procurement: a mixed-integer programme (HiGHS) that chooses what to order, from whom and when.

Decision variables (monthly buckets)::

    x[s, m]  whole drives of SKU s delivered in month m
    u[p]     raw TB by which milestone p falls short (penalised heavily; 0 when the plan is feasible)

An x exists only when the drive can arrive: no earlier than ``order + lead time + shipping``
with the order no earlier than today, and online (``delivery + burn-in``) no later than the
last milestone.

Constraints::

    sum over s, m with online(s, m) <= date_p of eff_s * x[s, m]  + u[p]  >=  raw_p    every milestone
    sum over m in quarter Q of x[s, m]             <=  alloc[s, Q]                    per SKU and quarter
    x[s, m]                                        <=  ceil(alloc[s, Q(m)] / 3)       spread over the quarter (a bound)
    sum over the supplier's SKUs of capacity_s * x <=  alloc_tb[supplier, Q]
    x[s, m] = 0  or  min_order_s <= x[s, m]             a semi-integer column

The solve is lexicographic: first minimise the total shortfall ``sum u[p]``; then, with the
shortfall held there, minimise cost. Cost, per drive: its price (after a blanket discount),
its share of enclosure, server and rack, the buyer's cost of capital on each payment from the
day it is paid to the end of the horizon (so every day a payment is brought forward costs
money: this is what makes orders just-in-time unless allocation forces them earlier), and the
energy it uses from go-live to the end of the horizon.

Two strategies differ only in when the order is placed and how it is paid:
``per_phase`` orders each delivery just in time (order = delivery - lead - shipping);
``blanket`` places one order today with scheduled partial deliveries.

After solving, deliveries are attributed to milestones first-in-first-out (by go-live date),
which gives each order line the milestone it serves and so its order-by date.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import highspy

from exastor.tools.plan.model import Phase, PlanInput, Terms, quarter_of
from exastor.tools.plan.sizing import (
    capacity_need,
    effective_tb,
    infrastructure_per_slot_usd,
    installed_effective_tb,
    watts_per_drive,
)

STRATEGIES = ("per_phase", "blanket")


@dataclass(frozen=True)
class OrderLine:
    sku: str
    supplier: str
    drives: int
    milestone: str
    order_date: dt.date
    order_by: dt.date  # the latest date this order could be placed and still make its milestone
    delivery_date: dt.date
    online_date: dt.date
    unit_price_usd: float
    days_late: int = 0  # > 0 only in the "what should already have been ordered" diagnosis

    @property
    def late(self) -> bool:
        return self.days_late > 0


@dataclass
class ProcurementResult:
    strategy: str
    status: str
    lines: list[OrderLine]
    shortfall_tb: dict[str, float]  # raw TB short, per milestone
    required_tb: dict[str, float]  # raw TB needed, per milestone
    objective_usd: float
    mip_gap: float
    solve_seconds: float
    variables: int
    constraints: int
    horizon_end: dt.date = field(default=dt.date(1970, 1, 1))

    @property
    def feasible(self) -> bool:
        return all(v <= 1e-6 for v in self.shortfall_tb.values())


def _new_highs() -> highspy.Highs:
    """A silent solver. HiGHS prints a banner to file descriptor 1 when the first one is made, which
    would land in the middle of the planner's own output (or a JSON piped from it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.silent()
    return h


def _solve(h: highspy.Highs, stage: str) -> str:
    h.minimize()
    model_status = h.getModelStatus()
    status_text = h.modelStatusToString(model_status)
    if model_status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit) or (
            h.getInfo().primal_solution_status != highspy.SolutionStatus.kSolutionStatusFeasible):
        raise RuntimeError(f"HiGHS could not solve the procurement model ({stage} stage): {status_text}")
    return status_text


def weeks(n: float) -> dt.timedelta:
    return dt.timedelta(days=round(7 * n))


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def add_months(day: dt.date, n: int) -> dt.date:
    y, m = divmod(day.month - 1 + n, 12)
    return dt.date(day.year + y, m + 1, 1)


def horizon_end(plan: PlanInput, today: dt.date) -> dt.date:
    """The end of the cost horizon: ``horizon_months`` from today, but never before the last milestone."""
    return max(add_months(month_start(today), plan.finance.horizon_months), plan.phases[-1].online_by)


def terms_for(plan: PlanInput, strategy: str) -> Terms:
    return plan.finance.blanket if strategy == "blanket" else plan.finance.per_phase


def latest_order_date(plan: PlanInput, sku_index: int, deadline: dt.date) -> dt.date:
    """The last day an order can be placed and still be online (burnt in) by ``deadline``."""
    d = plan.drives[sku_index]
    return deadline - weeks(plan.logistics.burn_in_weeks) - weeks(plan.logistics.shipping_weeks) - weeks(d.lead_time_weeks)


@dataclass(frozen=True)
class _Candidate:
    sku: int
    delivery: dt.date
    order: dt.date
    online: dt.date
    days_late: int


def _candidates(plan: PlanInput, today: dt.date, strategy: str, last: dt.date, past_weeks: float) -> list[_Candidate]:
    """Every (SKU, delivery month) the plan could use, with its dates."""
    ship, burn = weeks(plan.logistics.shipping_weeks), weeks(plan.logistics.burn_in_weeks)
    first_month = month_start(today - weeks(past_weeks))
    out = []
    for si, d in enumerate(plan.drives):
        transit = weeks(d.lead_time_weeks) + ship
        earliest = today + transit
        m = first_month
        while m <= last:
            nxt = add_months(m, 1)
            # Without looking back, the first usable month starts at the earliest possible delivery;
            # when looking back (diagnosis), a month's delivery is its first day, however late that is.
            delivery = m if past_weeks > 0 else max(m, earliest)
            if delivery < nxt and delivery + burn <= last:
                just_in_time = delivery - transit
                order = min(today, just_in_time) if strategy == "blanket" else just_in_time
                out.append(_Candidate(si, delivery, order, delivery + burn, max(0, (today - just_in_time).days)))
            m = nxt
    return out


def solve_procurement(plan: PlanInput, today: dt.date, strategy: str = "per_phase", *, ratio: float | None = None,
                      phases: list[Phase] | None = None, past_weeks: float = 0.0,
                      time_limit_s: float = 120.0) -> ProcurementResult:
    """Solve the ordering MILP. ``past_weeks > 0`` lets orders lie in the past (to say what is already late)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    phases = phases if phases is not None else plan.phases
    ratio = ratio if ratio is not None else plan.reduction.ratio
    started = time.perf_counter()
    terms = terms_for(plan, strategy)
    end = horizon_end(plan, today)
    required = [capacity_need(ph.logical_tb, ratio, plan.protection).raw_tb for ph in phases]
    existing = installed_effective_tb(plan)
    to_buy = [max(0.0, req - existing) for req in required]  # drives already online count everywhere
    eff = [effective_tb(d, plan.protection) for d in plan.drives]
    slot_usd = infrastructure_per_slot_usd(plan)
    coc_day = plan.finance.buyer_cost_of_capital / 365.0
    usd_per_kwh_facility = plan.power.usd_per_kwh * plan.power.pue
    worst_usd_per_tb = max((d.price_usd * (1 - terms.discount) + slot_usd) / e for d, e in zip(plan.drives, eff, strict=True))
    late_penalty_per_day = 0.01 * max(worst_usd_per_tb, 1.0)  # per TB-day, when looking back

    h = _new_highs()
    h.setOptionValue("mip_rel_gap", 1e-5)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("threads", 1)

    variables: list[tuple[_Candidate, highspy.highs_var]] = []
    costs: list[float] = []
    for c in _candidates(plan, today, strategy, phases[-1].online_by, past_weeks):
        d = plan.drives[c.sku]
        price = d.price_usd * (1 - terms.discount)
        deposit_day, balance_day = c.order, c.delivery + dt.timedelta(days=terms.net_days)
        capital = coc_day * (terms.deposit_fraction * price * (end - deposit_day).days
                             + (1 - terms.deposit_fraction) * price * (end - balance_day).days
                             + slot_usd * (end - c.delivery).days)
        energy = watts_per_drive(plan, d) / 1000 * max(0, (end - c.online).days) * 24 * usd_per_kwh_facility
        cost = price + slot_usd + capital + energy + late_penalty_per_day * eff[c.sku] * c.days_late
        # Tight bounds matter: HiGHS's root cut loop crawls with bounds in the millions.
        upper = max(math.ceil(to_buy[-1] / eff[c.sku]) + 1, d.min_order)
        alloc = d.allocation(quarter_of(c.delivery))
        if alloc is not None:
            upper = min(upper, math.ceil(alloc / 3))  # a quarter's allocation is shipped through the quarter
        kind = highspy.HighsVarType.kInteger
        lower = 0
        if d.min_order > 0:
            if upper < d.min_order:
                continue  # not even one minimum order fits this month's allocation
            kind, lower = highspy.HighsVarType.kSemiInteger, d.min_order  # nothing, or at least the minimum
        variables.append((c, h.addVariable(lb=lower, ub=upper, type=kind)))
        costs.append(cost)

    short = [h.addVariable(lb=0, ub=need, obj=1.0) for need in to_buy]
    constraints = 0
    for pi, (ph, req) in enumerate(zip(phases, to_buy, strict=True)):
        in_time = [eff[c.sku] * v for c, v in variables if c.online <= ph.online_by]
        h.addConstr(h.qsum(in_time, short[pi]) >= req)
        constraints += 1

    by_sku_quarter: dict[tuple[int, str], list] = {}
    by_supplier_quarter: dict[tuple[str, str], list] = {}
    for c, v in variables:
        q = quarter_of(c.delivery)
        by_sku_quarter.setdefault((c.sku, q), []).append(v)
        by_supplier_quarter.setdefault((plan.drives[c.sku].supplier, q), []).append(plan.drives[c.sku].capacity_tb * v)
    for (si, q), vs in by_sku_quarter.items():
        cap = plan.drives[si].allocation(q)
        if cap is not None:
            h.addConstr(h.qsum(vs) <= cap)
            constraints += 1
    for (name, _q), vs in by_supplier_quarter.items():
        sup = plan.suppliers.get(name)
        if sup is not None and sup.allocation_tb_per_quarter is not None:
            h.addConstr(h.qsum(vs) <= sup.allocation_tb_per_quarter)
            constraints += 1

    # Lexicographic: first get as much capacity online in time as possible (minimise the TB short),
    # then, holding that, minimise cost. One weighted objective would let the MIP gap on a huge
    # penalty hide real shortfalls or real costs.
    _solve(h, "capacity")
    least_short = max(0.0, h.getObjectiveValue())
    if least_short <= 1e-6:
        for u in short:
            h.changeColBounds(u.index, 0.0, 0.0)
    else:
        h.addConstr(h.qsum(short) <= least_short * (1 + 1e-9) + 1e-6)
        constraints += 1
    for u in short:
        h.changeColCost(u.index, 0.0)
    for (_, v), cost in zip(variables, costs, strict=True):
        h.changeColCost(v.index, cost)
    status_text = _solve(h, "cost")

    values: Iterable[float] = h.vals([v for _, v in variables]) if variables else []
    deliveries = [(c, int(round(x))) for (c, _), x in zip(variables, values, strict=True) if round(x) > 0]
    lines = []
    for c, pi, n in attribute_fifo(deliveries, [eff[c.sku] for c, _ in deliveries], to_buy,
                                    [ph.online_by for ph in phases]):
        d = plan.drives[c.sku]
        lines.append(OrderLine(
            sku=d.sku, supplier=d.supplier, drives=n, milestone=phases[pi].name, order_date=c.order,
            order_by=latest_order_date(plan, c.sku, phases[pi].online_by), delivery_date=c.delivery,
            online_date=c.online, unit_price_usd=d.price_usd * (1 - terms.discount), days_late=c.days_late))
    lines.sort(key=lambda ln: (ln.delivery_date, ln.sku, ln.milestone))
    shortfall = {ph.name: max(0.0, float(h.val(u))) for ph, u in zip(phases, short, strict=True)}
    # Round away solver dust far below one drive.
    shortfall = {k: (v if v > 1e-3 else 0.0) for k, v in shortfall.items()}
    return ProcurementResult(
        strategy=strategy, status="optimal" if status_text == "Optimal" else status_text, lines=lines,
        shortfall_tb=shortfall, required_tb={ph.name: r for ph, r in zip(phases, required, strict=True)},
        objective_usd=h.getObjectiveValue(), mip_gap=float(h.getInfo().mip_gap), solve_seconds=time.perf_counter() - started,
        variables=len(variables) + len(short), constraints=constraints, horizon_end=end)


def attribute_fifo(deliveries: list[tuple[_Candidate, int]], eff: list[float], required: list[float],
                   deadlines: list[dt.date]) -> list[tuple[_Candidate, int, int]]:
    """Split deliveries between milestones first-in-first-out by go-live date.

    A delivery serves the earliest milestone whose requirement the deliveries before it have not
    covered yet; one that straddles two milestones is split (whole drives). Drives beyond the last
    requirement (rounding, minimum orders) count towards the last milestone. A delivery never
    serves a milestone whose date is before its go-live.
    """
    order = sorted(range(len(deliveries)), key=lambda i: (deliveries[i][0].online, deliveries[i][0].sku))
    out: list[tuple[_Candidate, int, int]] = []
    covered, p = 0.0, 0
    last = len(required) - 1
    for i in order:
        c, left = deliveries[i]
        while left > 0:
            while p < last and (covered >= required[p] - 1e-9 or c.online > deadlines[p]):
                p += 1
            take = left if p == last else min(left, max(1, math.ceil((required[p] - covered) / eff[i] - 1e-9)))
            out.append((c, p, take))
            covered += take * eff[i]
            left -= take
    return out


# ---------------------------------------------------------------- when a milestone cannot be met


@dataclass
class MilestoneGap:
    milestone: str
    online_by: dt.date
    short_raw_tb: float
    short_logical_tb: float
    weeks_late: int | None  # None: not met within the search window
    met_by: dt.date | None
    reduction_needed: float | None
    late_orders: list[OrderLine]
    fixes: list[str]


def ratio_fix(needed: float, have: float) -> str:
    """"N instead of H" with as many decimals as it takes for N to differ from H (up to 6), N
    rounded up so that it is enough: never "1.50 instead of 1.50"."""
    for digits in range(2, 7):
        scale = 10 ** digits
        shown = math.ceil(needed * scale - 1e-9) / scale
        if round(have, digits) < shown:
            return f"{shown:.{digits}f} instead of {have:.{digits}f}"
    return f"{needed:.6f} instead of {have:.6f}"


def diagnose(plan: PlanInput, today: dt.date, result: ProcurementResult, *, max_weeks: int = 260) -> list[MilestoneGap]:
    """For every milestone the plan misses: by how much, by how long, what was already late, what would fix it."""
    gaps = []
    ratio = plan.reduction.ratio
    for pi, ph in enumerate(plan.phases):
        short = result.shortfall_tb.get(ph.name, 0.0)
        if short <= 0:
            continue
        need = result.required_tb[ph.name]
        short_logical = short * ph.logical_tb / need
        weeks_late = _weeks_until_met(plan, today, result.strategy, pi, max_weeks)
        met_by = ph.online_by + weeks(weeks_late) if weeks_late is not None else None
        achieved = need - short
        reduction_needed = ratio * need / achieved if achieved > 0 else None

        # What would have been needed had ordering started in time: look back past today.
        look_back = max(d.lead_time_weeks for d in plan.drives) + plan.logistics.shipping_weeks + plan.logistics.burn_in_weeks + 8
        past = solve_procurement(plan, today, result.strategy, phases=plan.phases[: pi + 1], past_weeks=look_back)
        late = [ln for ln in past.lines if ln.late and ln.milestone == ph.name]

        fixes = []
        if met_by is not None:
            fixes.append(f"move '{ph.name}' to {met_by.isoformat()} (+{weeks_late} weeks)")
        if reduction_needed is not None:
            fixes.append(f"a reduction ratio of {ratio_fix(reduction_needed, ratio)}")
        ship_burn = weeks(plan.logistics.shipping_weeks) + weeks(plan.logistics.burn_in_weeks)
        max_lead = (ph.online_by - ship_burn - today).days / 7
        if max_lead >= 0:
            fixes.append(f"another SKU or supplier with a lead time of at most {max_lead:.0f} weeks "
                         f"supplying {short:,.0f} TB raw more")
        for si, d in enumerate(plan.drives):
            order_by = latest_order_date(plan, si, ph.online_by)
            if order_by >= today:
                extra = math.ceil(short / effective_tb(d, plan.protection) - 1e-6)
                fixes.append(f"{extra:,} more {d.sku} drives from {d.supplier} (a larger allocation), "
                             f"ordered by {order_by.isoformat()}")
        gaps.append(MilestoneGap(ph.name, ph.online_by, short, short_logical, weeks_late, met_by,
                                 reduction_needed, late, fixes))
    return gaps


def _weeks_until_met(plan: PlanInput, today: dt.date, strategy: str, pi: int, max_weeks: int) -> int | None:
    """Smallest whole number of weeks by which moving milestone ``pi`` later makes it feasible (bisection)."""

    def met(w: int) -> bool:
        phases = list(plan.phases[: pi + 1])
        phases[pi] = replace(phases[pi], online_by=phases[pi].online_by + weeks(w))
        return solve_procurement(plan, today, strategy, phases=phases).shortfall_tb[phases[pi].name] <= 0

    if not met(max_weeks):
        return None
    lo, hi = 0, max_weeks  # not met at lo, met at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if met(mid):
            hi = mid
        else:
            lo = mid
    return hi
