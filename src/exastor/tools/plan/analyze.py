"""One planning run: sizing, both procurement strategies, working capital, risk and the cloud.

This is the only module that calls all the others; the report renders what it returns.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

from exastor.engine import erasure
from exastor.tools.plan.finance import (
    CloudComparison,
    Timeline,
    WorkingCapital,
    compare_cloud,
    timeline,
    working_capital,
)
from exastor.tools.plan.model import PlanInput
from exastor.tools.plan.procure import (
    STRATEGIES,
    MilestoneGap,
    ProcurementResult,
    diagnose,
    solve_procurement,
)
from exastor.tools.plan.risk import RiskResult, simulate
from exastor.tools.plan.sizing import (
    BillOfMaterials,
    CapacityNeed,
    ReductionSaving,
    bill_of_materials,
    capacity_need,
    reduction_saving,
)
from exastor.tools.plan.topology import Topology, cells_and_erasure, topology


@dataclass
class PhaseSizing:
    name: str
    online_by: dt.date
    need: CapacityNeed
    need_without_reduction: CapacityNeed
    bom: BillOfMaterials  # everything online by the milestone in the chosen plan
    saving: ReductionSaving
    topology: Topology  # how that bill of materials is cut into cells, stripes and metadata clusters


@dataclass
class StrategyOutcome:
    procurement: ProcurementResult
    gaps: list[MilestoneGap]
    capital: WorkingCapital
    timeline: Timeline
    risk: RiskResult | None


@dataclass
class PlanOutcome:
    plan: PlanInput
    today: dt.date
    chosen: str
    phases: list[PhaseSizing]
    strategies: dict[str, StrategyOutcome]
    cloud: CloudComparison | None

    @property
    def primary(self) -> StrategyOutcome:
        return self.strategies[self.chosen]


def analyze(plan: PlanInput, today: dt.date, *, scenarios: int = 100_000, seed: int = 0,
            progress: Callable[[str, int, int], None] | None = None) -> PlanOutcome:
    """Run every step. ``progress(stage, done, total)`` reports Monte Carlo progress."""
    wanted = STRATEGIES if plan.strategy == "compare" else (plan.strategy,)
    plan, solved = _size_for_the_table(plan, today, wanted) if plan.protection.ec_auto else (plan, {})
    strategies: dict[str, StrategyOutcome] = {}
    for name in wanted:
        result = solved[name] if name in solved else solve_procurement(plan, today, name)
        gaps = diagnose(plan, today, result)
        risk = None
        if scenarios > 0:
            def tick(done: int, name: str = name) -> None:
                if progress is not None:
                    progress(name, done, scenarios)
            risk = simulate(plan, today, result, scenarios=scenarios, seed=seed, progress=tick)
        strategies[name] = StrategyOutcome(result, gaps, working_capital(plan, result), timeline(plan, today, result), risk)

    chosen = plan.strategy if plan.strategy != "compare" else _preferred(strategies)
    primary = strategies[chosen]
    phases = _phase_sizing(plan, primary)
    return PlanOutcome(plan, today, chosen, phases, strategies, compare_cloud(plan, today, primary.timeline))


def _size_for_the_table(plan: PlanInput, today: dt.date,
                        wanted: tuple[str, ...]) -> tuple[PlanInput, dict[str, ProcurementResult]]:
    """With no geometry in the input, each milestone's cells get the store's own table (topology.py),
    which gives small cells narrower stripes with more overhead than the 20+4 capacity is first sized
    for. So: buy for the sizing geometry, cut every milestone into cells, and if some cell's geometry
    costs more overhead, size again for the costliest. The sizing overhead only grows and the table
    has few geometries, so this ends; a plan whose cells all reach 24 drives is sized once."""
    while True:
        solved = {name: solve_procurement(plan, today, name) for name in wanted}
        sized = erasure.Geometry(plan.protection.ec_data, plan.protection.ec_parity)
        costliest = max((cells_and_erasure(plan, bom)[2] for result in solved.values()
                         for bom in _milestone_boms(plan, result) if bom.total_drives),
                        key=lambda g: g.overhead, default=sized)
        if costliest.overhead <= sized.overhead:
            return plan, solved
        plan = replace(plan, protection=replace(plan.protection, ec_data=costliest.k, ec_parity=costliest.m))


def _milestone_boms(plan: PlanInput, result: ProcurementResult) -> list[BillOfMaterials]:
    """Everything online by each milestone under ``result``, in the order of ``plan.phases``."""
    boms = []
    for ph in plan.phases:
        online = [ln for ln in result.lines if ln.online_date <= ph.online_by]
        drives: dict[str, int] = dict(plan.installed)
        for ln in online:
            drives[ln.sku] = drives.get(ln.sku, 0) + ln.drives
        boms.append(bill_of_materials(plan, drives, drive_capex_usd=sum(ln.drives * ln.unit_price_usd for ln in online)))
    return boms


def _preferred(strategies: dict[str, StrategyOutcome]) -> str:
    """Meet the most milestones first, then the lowest total cost (capital + energy + carrying, both parties)."""
    def key(name: str) -> tuple:
        s = strategies[name]
        short = sum(s.procurement.shortfall_tb.values())
        missed = sum(1 for v in s.procurement.shortfall_tb.values() if v > 0)
        return (missed, short, s.capital.total_cost_usd)
    return min(strategies, key=key)


def _phase_sizing(plan: PlanInput, outcome: StrategyOutcome) -> list[PhaseSizing]:
    out = []
    for ph, bom in zip(plan.phases, _milestone_boms(plan, outcome.procurement), strict=True):
        usd_per_tb = bom.capex_usd / bom.effective_tb if bom.effective_tb > 0 else _list_usd_per_tb(plan)
        out.append(PhaseSizing(ph.name, ph.online_by, capacity_need(ph.logical_tb, plan.reduction.ratio, plan.protection),
                               capacity_need(ph.logical_tb, 1.0, plan.protection), bom,
                               reduction_saving(plan, ph.logical_tb, usd_per_tb), topology(plan, ph.logical_tb, bom)))
    return out


def _list_usd_per_tb(plan: PlanInput) -> float:
    """Cheapest list $/TB when no drive is online yet (the saving is still worth pricing)."""
    return min(d.price_usd / d.capacity_tb for d in plan.drives)
