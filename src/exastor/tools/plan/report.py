"""Rendering a planning run: a terminal summary (rich), JSON, and an HTML report with PNG plots."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from exastor.tools.plan.analyze import PlanOutcome
from exastor.tools.plan.model import quarter_of
from exastor.tools.plan.procure import OrderLine
from exastor.tools.plan.topology import MetadataLoad, Topology

_EB = 1e6  # TB


def _money(usd: float) -> str:
    sign = "-" if usd < 0 else ""
    usd = abs(usd)
    if usd >= 1e9:
        return f"{sign}${usd / 1e9:,.2f}B"
    if usd >= 1e6:
        return f"{sign}${usd / 1e6:,.1f}M"
    return f"{sign}${usd:,.0f}"


def _tb(tb: float) -> str:
    if abs(tb) >= 1e6:
        return f"{tb / 1e6:,.2f} EB"
    if abs(tb) >= 1e3:
        return f"{tb / 1e3:,.1f} PB"
    return f"{tb:,.1f} TB"


def _count(n: float) -> str:
    """Whole counts with thousands separators; from ten million on, 3 significant digits (3.05e13)."""
    if n < 1e7:
        return f"{n:,.0f}"
    mantissa, exponent = f"{n:.3g}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _bytes(n: float) -> str:
    return _tb(n / 1e12) if n >= 1e11 else f"{n / 1e9:,.1f} GB"


def _span(pair: tuple[int, int]) -> str:
    return f"{pair[0]:,}" if pair[0] == pair[1] else f"{pair[0]:,}-{pair[1]:,}"


TOPOLOGY_LAYOUT_COLUMNS = ("milestone", "logical", "raw", "racks", "hosts", "drives", "cells x racks",
                           "hosts/cell", "drives/host", "erasure in a cell", "gateways", "drive servers")
TOPOLOGY_METADATA_COLUMNS = ("milestone", "chunk rows", "at 64 KiB", "mean chunk", "objects", "metadata",
                             "PG clusters", "PG nodes", "etcd", "ranges", "rows/cluster", "TB/cluster")


def topology_layout_rows(named: list[tuple[str, Topology]]) -> list[list[str]]:
    """Hosts, drives, cells and stripes per milestone: one row of TOPOLOGY_LAYOUT_COLUMNS each."""
    rows = []
    for name, t in named:
        if t.hosts == 0:
            rows.append([name, _tb(t.logical_tb), _tb(t.raw_tb)] + ["-"] * (len(TOPOLOGY_LAYOUT_COLUMNS) - 3))
            continue
        erasure = (f"{t.erasure}{' (table)' if t.erasure_by_table else ''}: <={t.shards_per_host}/host, <={t.shards_per_rack}/rack; survives "
                   f"{t.drive_losses_survived} drives, {t.host_losses_survived} hosts, {t.rack_losses_survived} racks; "
                   f"{t.stripe_groups_per_cell:,} stripe groups, P(loss | m+1 drives) {t.p_loss_m1_drives:.0e}")
        rows.append([name, _tb(t.logical_tb), _tb(t.raw_tb), f"{t.racks:,}", f"{t.hosts:,}", f"{t.drives:,}",
                     f"{t.cells:,} x {_span(t.racks_per_cell)}", _span(t.hosts_per_cell),
                     f"{t.drives_per_host:.0f} of {t.drive_slots_per_host}", erasure, f"{t.gateways:,}",
                     f"{t.drive_servers:,}"])
    return rows


def topology_metadata_rows(named: list[tuple[str, Topology]]) -> list[list[str]]:
    """Chunk index, metadata bytes and database clusters per milestone: rows of TOPOLOGY_METADATA_COLUMNS."""
    rows = []
    for name, t in named:
        total = t.total
        if t.backend == "PostgreSQL":
            clusters = f"{t.pg_clusters:,} ({t.cells:,} x {t.pg_clusters_per_cell:,} + {t.directory_clusters})"
            hosts, etcd = f"{t.pg_nodes:,}", f"{t.etcd_members:,}"
        else:
            clusters, hosts, etcd = t.backend, "-", "-"
        rows.append([name, _count(total.chunk_rows), _count(total.chunk_rows_at_64k),
                     f"{total.mean_chunk_bytes / 1024:,.0f} KiB", _count(total.objects), _bytes(total.total_bytes),
                     clusters, hosts, etcd, f"{t.namespace_ranges:,}", _count(t.chunk_rows_per_cluster),
                     f"{t.metadata_tb_per_cluster:,.2f}"])
    return rows


def markdown_table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    """A GitHub markdown table (docs/scale.md's generated tables)."""
    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(columns), "|" + "---|" * len(columns)] + [line(r) for r in rows])


def _load_json(load: MetadataLoad) -> dict[str, Any]:
    return {**_plain(load), "total_bytes": load.total_bytes}


def topology_json(t: Topology) -> dict[str, Any]:
    doc = _plain(t)
    doc.update(per_cell=_load_json(t.per_cell), total=_load_json(t.total))
    return doc


def _day(d: dt.date | None) -> str:
    return d.isoformat() if d else "not met"


# ---------------------------------------------------------------- JSON


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, np.floating | np.integer):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def to_json(outcome: PlanOutcome) -> dict[str, Any]:
    """Everything the run computed, as plain JSON types (dates as ISO strings, infinities as null)."""
    strategies = {}
    for name, s in outcome.strategies.items():
        strategies[name] = {
            "status": s.procurement.status,
            "feasible": s.procurement.feasible,
            "solve_seconds": s.procurement.solve_seconds,
            "milp_variables": s.procurement.variables,
            "milp_constraints": s.procurement.constraints,
            "objective_usd": s.procurement.objective_usd,
            "required_raw_tb": s.procurement.required_tb,
            "shortfall_raw_tb": s.procurement.shortfall_tb,
            "orders": [_plain(ln) for ln in s.procurement.lines],
            "milestone_gaps": _plain(s.gaps),
            "working_capital": {**_plain(s.capital), "capex_usd": s.capital.capex_usd,
                                "total_cost_usd": s.capital.total_cost_usd},
            "timeline": _plain(s.timeline),
            "risk": _plain(s.risk),
        }
    phases = []
    for ph in outcome.phases:
        bom = _plain(ph.bom)
        bom.update(total_drives=ph.bom.total_drives, capex_usd=ph.bom.capex_usd)
        phases.append({"name": ph.name, "online_by": ph.online_by.isoformat(), "need": _plain(ph.need),
                       "need_without_reduction": _plain(ph.need_without_reduction), "bill_of_materials": bom,
                       "reduction_saving": _plain(ph.saving), "topology": topology_json(ph.topology)})
    return {
        "tool": "exastor plan",
        "title": outcome.plan.title,
        "today": outcome.today.isoformat(),
        "reduction": _plain(outcome.plan.reduction),
        "chosen_strategy": outcome.chosen,
        "phases": phases,
        "strategies": strategies,
        "cloud": _plain(outcome.cloud),
        "input": _plain(outcome.plan),
    }


def write_json(outcome: PlanOutcome, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_json(outcome), indent=1) + "\n")


# ---------------------------------------------------------------- terminal


def grouped_orders(lines: list[OrderLine]) -> list[dict[str, Any]]:
    """Merge lines that are one shipment (same SKU, order date and delivery) across milestones."""
    merged: dict[tuple, dict[str, Any]] = {}
    for ln in lines:
        key = (ln.sku, ln.order_date, ln.delivery_date)
        row = merged.setdefault(key, {"sku": ln.sku, "supplier": ln.supplier, "drives": 0, "order_date": ln.order_date,
                                      "order_by": ln.order_by, "delivery": ln.delivery_date, "online": ln.online_date,
                                      "milestones": [], "usd": 0.0})
        row["drives"] += ln.drives
        row["usd"] += ln.drives * ln.unit_price_usd
        row["order_by"] = min(row["order_by"], ln.order_by)
        if ln.milestone not in row["milestones"]:
            row["milestones"].append(ln.milestone)
    return sorted(merged.values(), key=lambda r: (r["order_date"], r["delivery"], r["sku"]))


def quarterly_orders(lines: list[OrderLine]) -> list[dict[str, Any]]:
    """Lines summed per SKU and delivery quarter: the earliest order date, order-by and go-live in each."""
    merged: dict[tuple, dict[str, Any]] = {}
    for ln in lines:
        q = quarter_of(ln.delivery_date)
        row = merged.setdefault((ln.sku, q), {"sku": ln.sku, "supplier": ln.supplier, "quarter": q, "drives": 0,
                                             "order_date": ln.order_date, "order_by": ln.order_by,
                                             "delivery": ln.delivery_date, "online": ln.online_date,
                                             "milestones": [], "usd": 0.0})
        row["drives"] += ln.drives
        row["usd"] += ln.drives * ln.unit_price_usd
        row["order_date"] = min(row["order_date"], ln.order_date)
        row["order_by"] = min(row["order_by"], ln.order_by)
        row["online"] = min(row["online"], ln.online_date)
        row["delivery"] = min(row["delivery"], ln.delivery_date)
        if ln.milestone not in row["milestones"]:
            row["milestones"].append(ln.milestone)
    return sorted(merged.values(), key=lambda r: (r["quarter"], r["sku"]))


def print_summary(outcome: PlanOutcome, console: Console | None = None) -> None:
    console = console or Console()
    plan, primary = outcome.plan, outcome.primary
    red = plan.reduction
    rng = f", range {red.low:g}-{red.high:g}" if red.low is not None else (f", rel. std {red.rel_std:g}" if red.rel_std else "")
    console.rule(f"[bold]{plan.title}")
    prot = plan.protection
    geometry = f"{prot.ec_data}+{prot.ec_parity}"
    if prot.ec_auto:
        geometry = f"by the store's table per cell (capacity sized for {geometry})"
    console.print(f"today {outcome.today}  ·  reduction {red.ratio:g}:1 ({red.source}{rng})  ·  erasure "
                  f"{geometry}  ·  max fill {prot.max_fill:.0%}  ·  "
                  f"plan shown: [bold]{outcome.chosen}[/]")

    t = Table(title="Sizing and bill of materials (cumulative, online by each milestone)")
    for col in ("milestone", "logical", "raw w/o reduction", "raw needed", "flash saved", "saved $", "drives",
                "encl.", "servers", "racks", "kW", "capex"):
        t.add_column(col, justify="right" if col != "milestone" else "left")
    for ph in outcome.phases:
        drives = ", ".join(f"{n:,} {s}" for s, n in sorted(ph.bom.drives.items())) or "-"
        t.add_row(f"{ph.name}\n{ph.online_by}", _tb(ph.need.logical_tb), _tb(ph.need_without_reduction.raw_tb),
                  _tb(ph.need.raw_tb), _tb(ph.saving.saved_tb), _money(ph.saving.saved_usd), drives,
                  f"{ph.bom.enclosures:,}", f"{ph.bom.servers:,}", f"{ph.bom.racks:,}", f"{ph.bom.power_kw:,.0f}",
                  _money(ph.bom.capex_usd))
    console.print(t)
    print_topology([(ph.name, ph.topology) for ph in outcome.phases], console)

    t = Table(title=f"Orders ({outcome.chosen}) by SKU and delivery quarter; the JSON lists every monthly line. "
                    "Red: order-by within 30 days")
    for col in ("first order", "order by", "SKU", "supplier", "drives", "deliveries", "online from", "for milestone",
                "value"):
        t.add_column(col, justify="right" if col in ("drives", "value") else "left")
    for row in quarterly_orders(primary.procurement.lines):
        soon = (row["order_by"] - outcome.today).days <= 30
        t.add_row(str(row["order_date"]), f"[bold red]{row['order_by']}[/]" if soon else str(row["order_by"]), row["sku"],
                  row["supplier"], f"{row['drives']:,}", row["quarter"], str(row["online"]),
                  ", ".join(row["milestones"]), _money(row["usd"]))
    console.print(t)

    for gap in primary.gaps:
        console.print(f"[bold red]Milestone '{gap.milestone}' ({gap.online_by}) cannot be met:[/] short "
                      f"{_tb(gap.short_raw_tb)} raw ({_tb(gap.short_logical_tb)} logical); "
                      + (f"met {gap.weeks_late} weeks late, on {gap.met_by}" if gap.met_by else "not met within 5 years"))
        for ln in gap.late_orders:
            ago = f"{ln.days_late} days" if ln.days_late < 14 else f"{ln.days_late // 7} weeks"
            console.print(f"   already late: {ln.drives:,} {ln.sku} should have been ordered by {ln.order_date} "
                          f"({ago} ago)")
        for fix in gap.fixes:
            console.print(f"   fix: {fix}")

    t = Table(title="One blanket order with partial deliveries vs an order per phase")
    t.add_column("")
    for name in outcome.strategies:
        t.add_column(name + (" (shown)" if name == outcome.chosen else ""), justify="right")
    rows: list[tuple[str, Any]] = [
        ("first payment", lambda s: _day(s.capital.first_payment)),
        ("drive capex", lambda s: _money(s.capital.drive_capex_usd)),
        ("discount", lambda s: _money(s.capital.discount_saved_usd)),
        ("enclosures, servers, racks", lambda s: _money(s.capital.infrastructure_capex_usd)),
        ("peak inventory (paid, not online)", lambda s: _money(s.capital.peak_inventory_usd)),
        ("buyer carrying: before online", lambda s: _money(s.capital.buyer_carrying_before_online_usd)),
        ("buyer carrying: before needed", lambda s: _money(s.capital.buyer_carrying_before_needed_usd)),
        ("supplier carrying", lambda s: _money(s.capital.supplier_carrying_usd)),
        ("energy to horizon", lambda s: _money(s.capital.energy_usd)),
        ("total cost", lambda s: _money(s.capital.total_cost_usd)),
        ("milestones missed (plan)", lambda s: str(len(s.gaps))),
    ]
    for phase in plan.phases:
        rows.append((f"P(meet {phase.name})", lambda s, n=phase.name: _prob(s, n)))
    for label, fn in rows:
        t.add_row(label, *[fn(s) for s in outcome.strategies.values()])
    console.print(t)

    if primary.risk is not None:
        r = primary.risk
        t = Table(title=f"Risk ({outcome.chosen}, {r.scenarios:,} scenarios in {r.seconds:.1f} s, seed {r.seed})")
        for col in ("milestone", "due", "P(met)", "met by (P50)", "met by (P90)", "raw needed P50", "raw needed P90"):
            t.add_column(col)
        for m in r.milestones:
            t.add_row(m.milestone, str(m.online_by), f"{m.probability:.1%}", _day(m.p50_met), _day(m.p90_met),
                      _tb(m.raw_tb_p50), _tb(m.raw_tb_p90))
        console.print(t)
        t = Table(title="Order-by dates under lead-time slip (latest date to order for 50 % / 90 % confidence)")
        for col in ("milestone", "SKU", "quoted", "P50", "P90"):
            t.add_column(col)
        for o in r.order_by:
            late = o.p90 < outcome.today
            t.add_row(o.milestone, o.sku, str(o.order_by), str(o.p50), f"[bold red]{o.p90}[/]" if late else str(o.p90))
        console.print(t)

    if outcome.cloud is not None:
        c = outcome.cloud
        console.print(f"[bold]Cloud comparison[/] ({c.name}, {len(c.months)} months): cloud {_money(c.cloud_total_usd)} "
                      f"(present value {_money(c.cloud_pv_usd)}) vs own flash {_money(c.onprem_total_usd)} "
                      f"(present value {_money(c.onprem_pv_usd)}); "
                      + (f"own flash is cheaper from {c.breakeven} on." if c.breakeven else "the cloud stays cheaper."))


def print_topology(named: list[tuple[str, Topology]], console: Console) -> None:
    """The cluster design of each milestone's bill of materials (docs/scale.md explains it)."""
    for title, columns, rows in (
            ("Cluster topology: cells, hosts and stripes (a gateway and a drive server on every host)",
             TOPOLOGY_LAYOUT_COLUMNS, topology_layout_rows(named)),
            ("Cluster topology: chunk index and metadata clusters (primary + synchronous standby + standby each; "
             "chunk rows are an upper bound: no dedupe credit)", TOPOLOGY_METADATA_COLUMNS,
             topology_metadata_rows(named))):
        t = Table(title=title)
        for col in columns:
            t.add_column(col, justify="left" if col in ("milestone", "erasure in a cell") else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
    for name, topo in named:
        for note in topo.notes:
            console.print(f"   {name}: {note}")


def _prob(s: Any, milestone: str) -> str:
    if s.risk is None:
        return "-"
    return next(f"{m.probability:.1%}" for m in s.risk.milestones if m.milestone == milestone)


# ---------------------------------------------------------------- plots and HTML


def _figures(outcome: PlanOutcome) -> dict[str, bytes]:
    """The report's charts as PNGs. Their x values are dates, which matplotlib plots through its
    units registry (matplotlib.dates); its type stubs say float, so those calls carry an ignore."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pngs: dict[str, bytes] = {}
    plan, primary = outcome.plan, outcome.primary
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sku_color = {d.sku: colors[i % len(colors)] for i, d in enumerate(plan.drives)}

    def save(name: str, fig) -> None:
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        pngs[name] = buf.getvalue()

    # 1. capacity against demand
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for name, s in outcome.strategies.items():
        ax.step(s.timeline.months, s.timeline.online_raw_tb / _EB, where="post", label=f"raw flash online ({name})")  # type: ignore[arg-type]  # dates: see _figures
    tl = primary.timeline
    ax.step(tl.months, tl.required_raw_tb / _EB, where="post", color="black", lw=2, label="raw flash required")  # type: ignore[arg-type]  # dates: see _figures
    for ph in plan.phases:
        ax.axvline(ph.online_by, color="grey", ls=":", lw=0.8)  # type: ignore[arg-type]  # dates: see _figures
        ax.annotate(ph.name, (ph.online_by, 0), rotation=90, fontsize=7, va="bottom", ha="right", color="grey")
    ax.set_ylabel("raw EB (effective, spares excluded)")
    ax.set_title("Capacity online vs required")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    save("capacity", fig)

    # 2. order / delivery timeline
    rows = quarterly_orders(primary.procurement.lines)
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.16 * len(rows) + 1.5)))
    for i, row in enumerate(rows):
        c = sku_color[row["sku"]]
        ax.plot([row["order_date"], row["delivery"]], [i, i], color=c, lw=1, alpha=0.6)
        ax.plot([row["delivery"], row["online"]], [i, i], color=c, lw=4)
        ax.plot([row["order_by"]], [i], marker="|", color="red", ms=6)
    for ph in plan.phases:
        ax.axvline(ph.online_by, color="grey", ls=":", lw=0.8)  # type: ignore[arg-type]  # dates: see _figures
    ax.axvline(outcome.today, color="black", lw=1)  # type: ignore[arg-type]  # dates: see _figures
    for sku, c in sku_color.items():
        ax.plot([], [], color=c, lw=4, label=sku)
    ax.plot([], [], marker="|", color="red", ls="", label="order-by date")
    ax.set_yticks(range(len(rows)), [f"{r['sku']} {r['quarter']} ×{r['drives']:,}" for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_title(f"Orders ({outcome.chosen}) per SKU and delivery quarter: thin = first order to first delivery, "
                 "thick = burn-in", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    save("orders", fig)

    # 3. cash
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for name, s in outcome.strategies.items():
        ax.plot(s.timeline.months, s.timeline.cumulative_cash_usd / 1e9, label=f"cumulative capital paid ({name})")  # type: ignore[arg-type]  # dates: see _figures
        ax.fill_between(s.timeline.months, s.timeline.inventory_usd / 1e9, alpha=0.2,  # type: ignore[arg-type]  # dates: see _figures
                        label=f"inventory paid, not online ({name})")
    if outcome.cloud is not None:
        c = outcome.cloud
        ax.plot(c.months, c.cloud_cumulative_usd / 1e9, color="black", ls="--", label=f"cumulative {c.name}")  # type: ignore[arg-type]  # dates: see _figures
        ax.plot(c.months, c.onprem_cumulative_usd / 1e9, color="black", label="cumulative own flash (capital + energy)")  # type: ignore[arg-type]  # dates: see _figures
    ax.set_ylabel("$ billion")
    ax.set_title("Cash out over time")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    save("cash", fig)

    # 4. milestone risk
    with_risk = {n: s.risk for n, s in outcome.strategies.items() if s.risk is not None}
    if with_risk:
        fig, ax = plt.subplots(figsize=(10, 4.2))
        x = np.arange(len(plan.phases))
        width = 0.8 / len(with_risk)
        for k, (name, risk) in enumerate(with_risk.items()):
            probs = [m.probability * 100 for m in risk.milestones]
            bars = ax.bar(x + k * width - 0.4 + width / 2, probs, width, label=name)
            ax.bar_label(bars, fmt="%.0f%%", fontsize=7)
        ax.set_xticks(x, [ph.name for ph in plan.phases])
        ax.set_ylim(0, 110)
        ax.set_ylabel("probability capacity is online in time (%)")
        first = next(iter(with_risk.values()))
        ax.set_title(f"Milestone risk ({first.scenarios:,} scenarios: lead-time slips and reduction uncertainty)")
        ax.legend(fontsize=8)
        save("risk", fig)
    return pngs


def write_html(outcome: PlanOutcome, path: str | Path, *, write_pngs: bool = True) -> list[Path]:
    """A self-contained HTML report (plots embedded); the PNGs are also written beside it."""
    path = Path(path)
    pngs = _figures(outcome)
    written = []
    if write_pngs:
        for name, data in pngs.items():
            p = path.with_name(f"{path.stem}-{name}.png")
            p.write_bytes(data)
            written.append(p)
    console = Console(record=True, width=150, file=io.StringIO())
    print_summary(outcome, console)
    summary = console.export_text()
    named = [(ph.name, ph.topology) for ph in outcome.phases]
    topo = "".join(_html_table(cols, rows) for cols, rows in (
        (TOPOLOGY_LAYOUT_COLUMNS, topology_layout_rows(named)), (TOPOLOGY_METADATA_COLUMNS, topology_metadata_rows(named))))
    topo += "".join(f"<p>{html.escape(name)}: {html.escape(note)}</p>" for name, t in named for note in t.notes)
    imgs = "\n".join(f'<h2>{html.escape(_TITLES[name])}</h2><img alt="{name}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode()}">' for name, data in pngs.items())
    path.write_text(_PAGE.format(title=html.escape(outcome.plan.title), today=outcome.today.isoformat(), imgs=imgs,
                                 topology=topo, summary=html.escape(summary)))
    written.append(path)
    return written


def _html_table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_TITLES = {"capacity": "Capacity online vs required", "orders": "Orders and deliveries", "cash": "Cash and inventory",
           "risk": "Milestone risk"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 1150px; margin: 2em auto; color: #222; }}
 img {{ max-width: 100%; border: 1px solid #ddd; }}
 pre {{ font-size: 11px; background: #f7f7f7; padding: 1em; overflow-x: auto; }}
 table {{ border-collapse: collapse; font-size: 12px; margin: 1em 0; }}
 td, th {{ border: 1px solid #ddd; padding: 2px 6px; text-align: right; }}
</style></head><body>
<h1>{title}</h1>
<p>Generated by <code>exastor plan</code> for today = {today}. Prices, lead times and allocations are inputs, not quotes.</p>
{imgs}
<h2>Cluster topology</h2>
<p>How each milestone's hardware is cut into cells, stripes and metadata clusters (docs/scale.md).</p>
{topology}
<h2>Summary</h2>
<pre>{summary}</pre>
</body></html>
"""
