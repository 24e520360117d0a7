"""Risk: a vectorised Monte Carlo over lead-time slips and the reduction actually achieved.

Each scenario draws

* a slip (weeks beyond the quoted lead time) for every delivery, lognormal with the SKU's
  P50/P90, correlated within a supplier: ``z = sqrt(rho) * z_supplier + sqrt(1 - rho) * z_delivery``;
* one reduction ratio for the whole deployment: triangular(low, ratio, high) when a range is
  given, else lognormal with median ``ratio`` and relative std-dev ``rel_std``.

A delivery arrives at ``max(scheduled, order + lead + shipping + slip)``: an order placed early
(a blanket order) absorbs a slip in its slack, a just-in-time order does not. A milestone is met
in a scenario when the capacity online by its date covers the raw flash that the scenario's
reduction ratio requires. Every step is an array operation over (scenarios x deliveries).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from exastor.tools.plan.model import PlanInput
from exastor.tools.plan.procure import ProcurementResult, weeks
from exastor.tools.plan.sizing import capacity_need, effective_tb, installed_effective_tb

_Z90 = 1.2815515655446004  # standard normal 90th percentile


@dataclass(frozen=True)
class MilestoneRisk:
    milestone: str
    online_by: dt.date
    probability: float  # that the capacity is online by the date
    p50_met: dt.date | None  # the date by which the milestone is met in 50 % / 90 % of scenarios
    p90_met: dt.date | None
    never_met: float  # share of scenarios in which this order book never covers it (reduction too low)
    raw_tb_p50: float  # raw TB required at the median and at the pessimistic (10th percentile) ratio
    raw_tb_p90: float


@dataclass(frozen=True)
class OrderByRisk:
    milestone: str
    sku: str
    order_by: dt.date  # with the quoted lead time
    p50: dt.date  # ordering by this date makes the milestone in 50 % of slip draws
    p90: dt.date  # ... in 90 %


@dataclass(frozen=True)
class RiskResult:
    strategy: str
    scenarios: int
    seed: int
    seconds: float
    milestones: list[MilestoneRisk]
    order_by: list[OrderByRisk]
    ratio_p10: float
    ratio_p50: float
    ratio_p90: float


def slip_sigma_mu(p50: float, p90: float) -> tuple[float, float]:
    """Lognormal (mu, sigma) in log-weeks through the given P50 and P90; (−inf, 0) means no slip."""
    if p90 <= 0:
        return -np.inf, 0.0
    p50 = p50 if p50 > 0 else p90 / 10  # a P90 alone: most deliveries are nearly on time
    return float(np.log(p50)), float(max(np.log(p90 / p50), 0.0) / _Z90)


def sample_ratio(plan: PlanInput, rng: np.random.Generator, n: int) -> np.ndarray:
    red = plan.reduction
    if red.low is not None and red.high is not None and red.high > red.low:
        return rng.triangular(red.low, red.ratio, red.high, size=n)
    if red.rel_std > 0:
        sigma = np.sqrt(np.log1p(red.rel_std**2))
        return red.ratio * np.exp(sigma * rng.standard_normal(n))
    return np.full(n, red.ratio)


def simulate(plan: PlanInput, today: dt.date, result: ProcurementResult, scenarios: int = 100_000, seed: int = 0,
             chunk: int = 20_000, progress=None) -> RiskResult:
    """Run the Monte Carlo in chunks (bounded memory); ``progress(done)`` is called after each chunk."""
    import time

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    lines = result.lines
    by_sku = {d.sku: (i, d) for i, d in enumerate(plan.drives)}
    suppliers = sorted({d.supplier for d in plan.drives})
    burn = weeks(plan.logistics.burn_in_weeks).days
    ship = weeks(plan.logistics.shipping_weeks).days  # rounded exactly as the solver dated the orders

    def days(d: dt.date) -> float:
        return float((d - today).days)

    sched = np.array([days(ln.delivery_date) for ln in lines])
    transit_floor = np.array([days(ln.order_date) + weeks(by_sku[ln.sku][1].lead_time_weeks).days + ship for ln in lines])
    tb = np.array([ln.drives * effective_tb(by_sku[ln.sku][1], plan.protection) for ln in lines])
    mu_sigma = np.array([slip_sigma_mu(by_sku[ln.sku][1].slip.p50_weeks, by_sku[ln.sku][1].slip.p90_weeks) for ln in lines])
    mu = mu_sigma[:, 0] if len(lines) else np.zeros(0)
    sigma = mu_sigma[:, 1] if len(lines) else np.zeros(0)
    sup_of_line = np.array([suppliers.index(ln.supplier) for ln in lines], dtype=int)
    rho = plan.supplier_correlation
    deadlines = np.array([days(ph.online_by) for ph in plan.phases])
    need = np.array([capacity_need(ph.logical_tb, plan.reduction.ratio, plan.protection).raw_tb for ph in plan.phases])
    existing = installed_effective_tb(plan)

    met = np.zeros(len(plan.phases))
    never = np.zeros(len(plan.phases))
    met_days: list[list[np.ndarray]] = [[] for _ in plan.phases]
    ratios = []
    done = 0
    while done < scenarios:
        n = min(chunk, scenarios - done)
        z = np.sqrt(rho) * rng.standard_normal((n, len(suppliers)))[:, sup_of_line] \
            + np.sqrt(1 - rho) * rng.standard_normal((n, len(lines)))
        slip_days = 7 * np.exp(mu + sigma * z)  # exp(-inf) = 0: no slip
        online = np.maximum(sched, transit_floor + slip_days) + burn  # (n, L)
        ratio = sample_ratio(plan, rng, n)
        ratios.append(ratio)
        required = need[None, :] * (plan.reduction.ratio / ratio)[:, None]  # (n, P)

        # When does each scenario's cumulative capacity first cover each milestone's requirement?
        order = np.argsort(online, axis=1)
        online_sorted = np.take_along_axis(online, order, axis=1)
        cum = existing + np.cumsum(tb[order], axis=1)  # (n, L)
        for p in range(len(plan.phases)):
            covered = cum >= required[:, p:p + 1] - 1e-6
            ok = covered.any(axis=1) if len(lines) else np.zeros(n, bool)
            first = np.argmax(covered, axis=1) if len(lines) else np.zeros(n, int)
            when = np.where(ok, online_sorted[np.arange(n), first] if len(lines) else np.inf, np.inf)
            when = np.where(required[:, p] <= existing + 1e-6, -np.inf, when)  # met by what is installed
            met[p] += np.count_nonzero(when <= deadlines[p])
            never[p] += np.count_nonzero(~np.isfinite(when) & (when > 0))
            met_days[p].append(when)
        done += n
        if progress is not None:
            progress(done)

    ratio_all = np.concatenate(ratios)
    r10, r50, r90 = (float(x) for x in np.percentile(ratio_all, [10, 50, 90]))
    milestones = []
    for p, ph in enumerate(plan.phases):
        when = np.concatenate(met_days[p])
        q50, q90 = _upper_quantiles(when, (0.5, 0.9))
        milestones.append(MilestoneRisk(
            ph.name, ph.online_by, float(met[p] / scenarios), _date_or_none(today, q50), _date_or_none(today, q90),
            float(never[p] / scenarios), float(need[p] * plan.reduction.ratio / r50),
            float(need[p] * plan.reduction.ratio / r10)))

    # Order-by dates under slip: deadline - burn-in - shipping - lead - slip, at the slip's P50 / P90.
    order_by = []
    for ph in plan.phases:
        for d in plan.drives:
            m, s = slip_sigma_mu(d.slip.p50_weeks, d.slip.p90_weeks)
            slip50 = float(np.exp(m))  # exp(-inf) = 0: no slip
            slip90 = 0.0 if m == -np.inf else float(np.exp(m + s * _Z90))
            base = ph.online_by - weeks(plan.logistics.burn_in_weeks) - weeks(plan.logistics.shipping_weeks) \
                - weeks(d.lead_time_weeks)
            if any(ln.sku == d.sku and ln.milestone == ph.name for ln in lines):
                order_by.append(OrderByRisk(ph.name, d.sku, base, base - weeks(slip50), base - weeks(slip90)))
    return RiskResult(result.strategy, scenarios, seed, time.perf_counter() - started, milestones, order_by, r10, r50, r90)


def _upper_quantiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """Empirical quantiles without interpolation, so +inf ("not met") stays +inf instead of NaN."""
    ordered = np.sort(values)
    return [float(ordered[min(len(ordered) - 1, max(0, int(np.ceil(q * len(ordered))) - 1))]) for q in qs]


def _date_or_none(today: dt.date, day_offset: float) -> dt.date | None:
    if not np.isfinite(day_offset):
        return None
    return today + dt.timedelta(days=int(np.ceil(day_offset)))
