"""The planner's input: a YAML or TOML file, read into typed, validated objects.

Every problem found is collected with the path of the offending key
(``drives[1].lead_time_weeks``) and reported together, so a person fixing an
input file sees all of its mistakes at once rather than one per run. Unknown
keys are errors too (with a "did you mean" hint): a typo such as ``max_fil``
silently falling back to a default would make every number in the plan wrong.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import tomllib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from exastor.engine import erasure

# Decimal units, as drive vendors and clouds count: 1 EB = 1,000 PB = 1,000,000 TB.
_UNIT_TB = {"tb": 1.0, "pb": 1e3, "eb": 1e6, "gb": 1e-3}
_CAPACITY_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgtpe]?i?b)\s*$", re.IGNORECASE)
_BINARY_RE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB)?\s*$")
_BINARY_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
_QUARTER_RE = re.compile(r"^(\d{4})\s*-?\s*Q([1-4])$", re.IGNORECASE)


class PlanInputError(ValueError):
    """The input file is wrong; ``problems`` lists every mistake found, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid plan input:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Phase:
    name: str
    logical_tb: float
    online_by: dt.date


@dataclass(frozen=True)
class Reduction:
    """Logical/physical ratio and its uncertainty (a lognormal with ``rel_std``, or a low/high range)."""

    ratio: float
    rel_std: float = 0.0
    low: float | None = None
    high: float | None = None
    source: str = "input file"


@dataclass(frozen=True)
class Protection:
    """``ec_data`` + ``ec_parity`` is the geometry capacity is sized for. With ``ec_auto`` (the input
    names no geometry, or "auto") each milestone's cells get what the store itself would choose,
    ``erasure.auto`` of the drives in the smallest cell, and capacity is sized for the geometry with
    the most overhead any milestone gets (tools/plan/analyze.py; the table's widest, 20+4, at first)."""

    ec_data: int
    ec_parity: int
    write_buffer_fraction: float
    spare_fraction: float
    max_fill: float
    ec_auto: bool = False

    @property
    def ec_overhead(self) -> float:
        return (self.ec_data + self.ec_parity) / self.ec_data


@dataclass(frozen=True)
class Slip:
    """Lead-time slip in weeks beyond the quoted lead time, as a lognormal fitted to P50 and P90."""

    p50_weeks: float = 0.0
    p90_weeks: float = 0.0


@dataclass(frozen=True)
class DriveSku:
    sku: str
    capacity_tb: float
    price_usd: float
    watts: float
    lead_time_weeks: float
    supplier: str
    allocation_default: int | None  # drives deliverable per quarter; None = unconstrained
    allocation_by_quarter: dict[str, int] = field(default_factory=dict)
    min_order: int = 0
    slip: Slip = Slip()

    def allocation(self, quarter: str) -> int | None:
        return self.allocation_by_quarter.get(quarter, self.allocation_default)


@dataclass(frozen=True)
class Supplier:
    name: str
    allocation_tb_per_quarter: float | None


@dataclass(frozen=True)
class Enclosure:
    drive_slots: int
    price_usd: float
    watts: float
    rack_units: int


@dataclass(frozen=True)
class Server:
    enclosures_per_server: int
    price_usd: float
    watts: float
    rack_units: int


@dataclass(frozen=True)
class Rack:
    rack_units: int
    power_kw: float
    price_usd: float


@dataclass(frozen=True)
class Power:
    usd_per_kwh: float
    pue: float


@dataclass(frozen=True)
class Logistics:
    shipping_weeks: float
    burn_in_weeks: float


@dataclass(frozen=True)
class Terms:
    """How one ordering strategy is paid: a deposit when ordered, the balance net N days after delivery."""

    deposit_fraction: float
    net_days: int
    discount: float = 0.0


@dataclass(frozen=True)
class Finance:
    horizon_months: int
    buyer_cost_of_capital: float
    supplier_cost_of_capital: float
    supplier_cogs_fraction: float
    supplier_build_weeks: float
    blanket: Terms
    per_phase: Terms


@dataclass(frozen=True)
class Cloud:
    usd_per_gb_month: float
    egress_usd_per_gb: float
    egress_fraction_per_month: float
    name: str = "cloud blob tier"


@dataclass(frozen=True)
class ChunkClass:
    """One object-size class of the chunk-size policy: the share of logical bytes in objects of this
    class, their mean size, and the average chunk the policy cuts them into (docs/scale.md)."""

    name: str
    byte_share: float
    mean_object_bytes: int
    chunk_bytes: int


# The default byte mix is an ASSUMPTION for an exabyte AI corpus (most bytes in large objects:
# checkpoints, packed shards, video); replace it with your own histogram. The chunk sizes are the
# policy of docs/scale.md: today's 64 KiB FastCDC for small objects, 1 MiB (restic's average) for
# medium, 4 MiB (twice borg's 2 MiB default) for large ones.
DEFAULT_CHUNKING = (
    ChunkClass("small (< 4 MiB)", 0.05, 512 << 10, 64 << 10),
    ChunkClass("medium (4-256 MiB)", 0.25, 64 << 20, 1 << 20),
    ChunkClass("large (>= 256 MiB)", 0.70, 2 << 30, 4 << 20),
)


@dataclass(frozen=True)
class TopologySettings:
    """How the cluster design is cut (the optional ``topology`` input section; defaults in docs/scale.md).

    ``cell_racks`` 0 means k+m racks per cell (one shard of a stripe per rack). ``sketch_max_chunk``
    0 means every chunk has a similarity-sketch row (the reducer today); otherwise only chunks up to
    that size do.
    """

    cell_racks: int = 0
    chunking: tuple[ChunkClass, ...] = DEFAULT_CHUNKING
    sketch_max_chunk: int = 0
    segment_bytes: int = 1 << 30
    pg_cluster_max_tb: float = 10.0
    pg_standbys: int = 2
    ranges_per_cluster: int = 16
    etcd_members_per_cell: int = 3


@dataclass(frozen=True)
class PlanInput:
    phases: list[Phase]
    reduction: Reduction
    protection: Protection
    drives: list[DriveSku]
    suppliers: dict[str, Supplier]
    enclosure: Enclosure
    server: Server
    rack: Rack
    power: Power
    logistics: Logistics
    finance: Finance
    cloud: Cloud | None
    strategy: str = "compare"
    supplier_correlation: float = 0.5
    title: str = "exastor deployment plan"
    installed: dict[str, int] = field(default_factory=dict)  # drives per SKU already online today
    topology: TopologySettings = TopologySettings()


# ---------------------------------------------------------------- validation helpers


class _Reader:
    """Walks the raw mapping, converting values and collecting every problem with its key path."""

    def __init__(self, base_dir: Path):
        self.problems: list[str] = []
        self.base_dir = base_dir

    def section(self, raw: Any, path: str, allowed: AbstractSet[str], required: AbstractSet[str] = frozenset()) -> dict:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problems.append(f"{path or 'top level'}: expected a mapping, got {type(raw).__name__}")
            return {}
        for key in raw:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                self.problems.append(f"{_join(path, key)}: unknown key{extra}")
        for key in sorted(required):
            if key not in raw:
                self.problems.append(f"{_join(path, key)}: required")
        return raw

    def number(self, raw: dict, path: str, key: str, default: float | None = None, *, lo: float | None = None,
               hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> float:
        where = _join(path, key)
        if key not in raw or raw[key] is None:
            if default is None:
                self.problems.append(f"{where}: required")
                return float("nan")
            return float(default)
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problems.append(f"{where}: expected a number, got {value!r}")
            return float("nan")
        value = float(value)
        if lo is not None and (value < lo or (lo_open and value == lo)):
            self.problems.append(f"{where}: must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if hi is not None and (value > hi or (hi_open and value == hi)):
            self.problems.append(f"{where}: must be {'<' if hi_open else '<='} {hi:g}, got {value:g}")
        return value

    def integer(self, raw: dict, path: str, key: str, default: int | None = None, *, lo: int = 0) -> int:
        value = self.number(raw, path, key, default, lo=lo)
        if value == value and value != int(value):
            self.problems.append(f"{_join(path, key)}: expected a whole number, got {value:g}")
        return int(value) if value == value else 0

    def text(self, raw: dict, path: str, key: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if value is None:
            self.problems.append(f"{_join(path, key)}: required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problems.append(f"{_join(path, key)}: expected a non-empty string, got {value!r}")
            return str(value)
        return value.strip()

    def date(self, raw: dict, path: str, key: str) -> dt.date:
        where = _join(path, key)
        value = raw.get(key)
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.problems.append(f"{where}: expected a date YYYY-MM-DD, got {value!r}")
        return dt.date(1970, 1, 1)

    def capacity_tb(self, raw: dict, path: str, key: str) -> float:
        """'2 EB', '500 PB', '1200 TB' (decimal units), or a bare number of TB."""
        where = _join(path, key)
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            tb = float(value)
        elif isinstance(value, str) and (m := _CAPACITY_RE.match(value)):
            unit = m.group(2).lower()
            if "i" in unit or unit not in _UNIT_TB:
                self.problems.append(f"{where}: use decimal units GB, TB, PB or EB, got {value!r}")
                return float("nan")
            tb = float(m.group(1)) * _UNIT_TB[unit]
        else:
            self.problems.append(f"{where}: expected a capacity such as '2 EB' or '500 PB', got {value!r}")
            return float("nan")
        if not tb > 0:
            self.problems.append(f"{where}: must be > 0")
        return tb


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def parse_quarter(text: str) -> str | None:
    """'2027Q1', '2027-Q1' or '2027 q1' -> '2027Q1'; None when it is not a quarter."""
    m = _QUARTER_RE.match(str(text).strip())
    return f"{m.group(1)}Q{m.group(2)}" if m else None


def quarter_of(day: dt.date) -> str:
    return f"{day.year}Q{(day.month - 1) // 3 + 1}"


# ---------------------------------------------------------------- reduction from a JSON file


def read_reduction_json(path: Path) -> tuple[float, float | None, float | None]:
    """Read the ratio (and optional low/high) from `exastor estimate` / `exastor stats` JSON.

    Accepted shapes (documented in docs/planner.md):
    ``{"reduction_ratio": x, "reduction_ratio_low": lo, "reduction_ratio_high": hi}`` or
    ``{"reduction": {"total": x, "low": lo, "high": hi}}``. low/high are optional.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise PlanInputError([f"reduction.from: file not found: {path}"]) from exc
    except json.JSONDecodeError as exc:
        raise PlanInputError([f"reduction.from: {path} is not valid JSON: {exc}"]) from exc
    if isinstance(doc, dict) and isinstance(doc.get("reduction_ratio"), int | float):
        return float(doc["reduction_ratio"]), _opt_float(doc.get("reduction_ratio_low")), _opt_float(
            doc.get("reduction_ratio_high"))
    red = doc.get("reduction") if isinstance(doc, dict) else None
    if isinstance(red, dict) and isinstance(red.get("total"), int | float):
        return float(red["total"]), _opt_float(red.get("low")), _opt_float(red.get("high"))
    raise PlanInputError([f"reduction.from: {path} has neither a top-level 'reduction_ratio' number "
                          "nor {'reduction': {'total': number}}"])


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- the parser


def load_plan(path: str | Path) -> PlanInput:
    """Read and validate a YAML (.yaml/.yml) or TOML (.toml) plan input file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlanInputError([f"cannot read {path}: {exc.strerror or exc}"]) from exc
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise PlanInputError([f"{path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: {exc}"]) from exc
    return parse_plan(raw, base_dir=path.parent)


def parse_plan(raw: Any, base_dir: Path | str = ".") -> PlanInput:
    """Validate an already-parsed mapping (what YAML/TOML give) into a :class:`PlanInput`."""
    r = _Reader(Path(base_dir))
    top = r.section(raw, "", {"title", "phases", "reduction", "protection", "drives", "suppliers", "enclosure",
                              "server", "rack", "power", "logistics", "finance", "cloud", "strategy", "risk",
                              "installed", "topology"},
                    {"phases", "reduction", "drives", "enclosure", "server", "rack"})

    phases = _phases(r, top.get("phases"))
    reduction = _reduction(r, top.get("reduction"))
    protection = _protection(r, top.get("protection"))
    drives = _drives(r, top.get("drives"))
    suppliers = _suppliers(r, top.get("suppliers"), {d.supplier for d in drives})

    enc = r.section(top.get("enclosure"), "enclosure", {"drive_slots", "price_usd", "watts", "rack_units"},
                    {"drive_slots", "price_usd"})
    enclosure = Enclosure(r.integer(enc, "enclosure", "drive_slots", lo=1), r.number(enc, "enclosure", "price_usd", lo=0),
                          r.number(enc, "enclosure", "watts", 0, lo=0), r.integer(enc, "enclosure", "rack_units", 2, lo=1))
    srv = r.section(top.get("server"), "server", {"enclosures_per_server", "price_usd", "watts", "rack_units"},
                    {"enclosures_per_server", "price_usd"})
    server = Server(r.integer(srv, "server", "enclosures_per_server", lo=1), r.number(srv, "server", "price_usd", lo=0),
                    r.number(srv, "server", "watts", 0, lo=0), r.integer(srv, "server", "rack_units", 1, lo=1))
    rk = r.section(top.get("rack"), "rack", {"rack_units", "power_kw", "price_usd"}, {"rack_units", "power_kw"})
    rack = Rack(r.integer(rk, "rack", "rack_units", lo=1), r.number(rk, "rack", "power_kw", lo=0, lo_open=True),
                r.number(rk, "rack", "price_usd", 0, lo=0))
    if enclosure.rack_units + server.rack_units > rack.rack_units > 0:
        r.problems.append("rack.rack_units: smaller than one enclosure plus one server")

    pw = r.section(top.get("power"), "power", {"usd_per_kwh", "pue"})
    power = Power(r.number(pw, "power", "usd_per_kwh", 0.10, lo=0), r.number(pw, "power", "pue", 1.3, lo=1))
    lg = r.section(top.get("logistics"), "logistics", {"shipping_weeks", "burn_in_weeks"})
    logistics = Logistics(r.number(lg, "logistics", "shipping_weeks", 1, lo=0),
                          r.number(lg, "logistics", "burn_in_weeks", 1, lo=0))
    finance = _finance(r, top.get("finance"))
    cloud = _cloud(r, top.get("cloud"))

    strategy = top.get("strategy", "compare")
    if strategy not in ("compare", "blanket", "per_phase"):
        r.problems.append(f"strategy: one of compare, blanket, per_phase; got {strategy!r}")
    rs = r.section(top.get("risk"), "risk", {"supplier_correlation"})
    correlation = r.number(rs, "risk", "supplier_correlation", 0.5, lo=0, hi=1)
    title = top.get("title", "exastor deployment plan")
    installed = _installed(r, top.get("installed"), {d.sku for d in drives})
    topology = _topology(r, top.get("topology"))

    if r.problems:
        raise PlanInputError(r.problems)
    return PlanInput(phases, reduction, protection, drives, suppliers, enclosure, server, rack, power, logistics,
                     finance, cloud, strategy, correlation, str(title), installed, topology)


def _phases(r: _Reader, raw: Any) -> list[Phase]:
    if not isinstance(raw, list) or not raw:
        r.problems.append("phases: expected a non-empty list of {name, logical, online_by}")
        return []
    phases = []
    for i, item in enumerate(raw):
        p = f"phases[{i}]"
        sec = r.section(item, p, {"name", "logical", "online_by"}, {"logical", "online_by"})
        phases.append(Phase(str(sec.get("name", f"phase {i + 1}")), r.capacity_tb(sec, p, "logical"),
                            r.date(sec, p, "online_by")))
    for i in range(1, len(phases)):
        if phases[i].online_by <= phases[i - 1].online_by:
            r.problems.append(f"phases[{i}].online_by: phases must be in date order, each later than the one before")
        if phases[i].logical_tb < phases[i - 1].logical_tb:
            r.problems.append(f"phases[{i}].logical: capacity is cumulative and must not shrink "
                              f"({phases[i].logical_tb:g} TB < {phases[i - 1].logical_tb:g} TB)")
    names = [ph.name for ph in phases]
    if len(set(names)) != len(names):
        r.problems.append("phases: names must be unique")
    return phases


def _installed(r: _Reader, raw: Any, skus: set[str]) -> dict[str, int]:
    """Drives already online today, per SKU: they count towards every milestone and cost nothing more."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        r.problems.append("installed: expected a mapping of SKU to drives already online, e.g. {QLC-61T: 1200}")
        return {}
    out = {}
    for sku, n in raw.items():
        if sku not in skus:
            r.problems.append(f"installed.{sku}: not a SKU in 'drives'")
        elif not isinstance(n, int) or isinstance(n, bool) or n < 0:
            r.problems.append(f"installed.{sku}: expected a whole number of drives >= 0, got {n!r}")
        else:
            out[str(sku)] = n
    return out


def _reduction(r: _Reader, raw: Any) -> Reduction:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = {"ratio": raw}
    sec = r.section(raw, "reduction", {"ratio", "from", "rel_std", "low", "high"})
    if ("ratio" in sec) == ("from" in sec):
        r.problems.append("reduction: give exactly one of 'ratio' (a number) or 'from' (a JSON path)")
        return Reduction(1.0)
    low = high = None
    source = "input file"
    if "from" in sec:
        json_path = Path(str(sec["from"]))
        if not json_path.is_absolute():
            json_path = r.base_dir / json_path
        try:
            ratio, low, high = read_reduction_json(json_path)
            source = str(sec["from"])
        except PlanInputError as exc:
            r.problems.extend(exc.problems)
            return Reduction(1.0)
        if not ratio > 0:
            r.problems.append(f"reduction.from: ratio in {json_path} must be > 0, got {ratio}")
    else:
        ratio = r.number(sec, "reduction", "ratio", lo=0, lo_open=True)
    rel_std = r.number(sec, "reduction", "rel_std", 0.0, lo=0, hi=2)
    if "low" in sec:
        low = r.number(sec, "reduction", "low", lo=0, lo_open=True)
    if "high" in sec:
        high = r.number(sec, "reduction", "high", lo=0, lo_open=True)
    if (low is None) != (high is None):
        r.problems.append("reduction: give both 'low' and 'high', or neither")
    elif low is not None and high is not None and not (low <= ratio <= high):
        r.problems.append(f"reduction: need low <= ratio <= high, got {low:g} <= {ratio:g} <= {high:g}")
    if low is not None and rel_std > 0:
        r.problems.append("reduction: give 'rel_std' or 'low'/'high', not both")
    return Reduction(ratio, rel_std, low, high, source)


def _protection(r: _Reader, raw: Any) -> Protection:
    p = "protection"
    sec = r.section(raw, p, {"erasure", "write_buffer_fraction", "spare_fraction", "max_fill"})
    k = m = 0
    given = sec.get("erasure")
    auto = given is None or (isinstance(given, str) and given.strip().lower() == "auto")
    if auto:  # the store's table decides per cell; sized for its widest geometry until analyze knows more
        widest = erasure.auto(erasure.AUTO_WIDTH)
        k, m = widest.k, widest.m
    elif isinstance(given, str) and re.fullmatch(r"\s*\d+\s*\+\s*\d+\s*", given):
        k, m = (int(x) for x in given.split("+"))
    elif isinstance(given, dict):
        er = r.section(given, f"{p}.erasure", {"data", "parity"}, {"data", "parity"})
        k, m = r.integer(er, f"{p}.erasure", "data", lo=1), r.integer(er, f"{p}.erasure", "parity", lo=0)
    else:
        r.problems.append(f"{p}.erasure: expected 'K+M' such as '16+4', {{data: K, parity: M}} or 'auto', "
                          f"got {given!r}")
    if not auto and k < 1:
        r.problems.append(f"{p}.erasure: need at least one data shard")
    return Protection(k or 1, m, r.number(sec, p, "write_buffer_fraction", 0.0, lo=0, hi=1, hi_open=True),
                      r.number(sec, p, "spare_fraction", 0.0, lo=0, hi=1, hi_open=True),
                      r.number(sec, p, "max_fill", 0.85, lo=0, hi=1, lo_open=True), ec_auto=auto)


def _drives(r: _Reader, raw: Any) -> list[DriveSku]:
    if not isinstance(raw, list) or not raw:
        r.problems.append("drives: expected a non-empty list of drive SKUs")
        return []
    drives = []
    for i, item in enumerate(raw):
        p = f"drives[{i}]"
        sec = r.section(item, p, {"sku", "capacity_tb", "price_usd", "watts", "lead_time_weeks", "supplier",
                                  "allocation_per_quarter", "min_order", "lead_time_slip_weeks"},
                        {"sku", "capacity_tb", "price_usd", "lead_time_weeks", "supplier"})
        default, by_quarter = _allocation(r, sec.get("allocation_per_quarter"), f"{p}.allocation_per_quarter")
        sl = r.section(sec.get("lead_time_slip_weeks"), f"{p}.lead_time_slip_weeks", {"p50", "p90"})
        slip = Slip(r.number(sl, f"{p}.lead_time_slip_weeks", "p50", 0, lo=0),
                    r.number(sl, f"{p}.lead_time_slip_weeks", "p90", 0, lo=0))
        if slip.p90_weeks < slip.p50_weeks:
            r.problems.append(f"{p}.lead_time_slip_weeks: p90 must be >= p50")
        drives.append(DriveSku(
            sku=r.text(sec, p, "sku"), capacity_tb=r.number(sec, p, "capacity_tb", lo=0, lo_open=True),
            price_usd=r.number(sec, p, "price_usd", lo=0), watts=r.number(sec, p, "watts", 0, lo=0),
            lead_time_weeks=r.number(sec, p, "lead_time_weeks", lo=0), supplier=r.text(sec, p, "supplier"),
            allocation_default=default, allocation_by_quarter=by_quarter,
            min_order=r.integer(sec, p, "min_order", 0, lo=0), slip=slip))
    skus = [d.sku for d in drives]
    if len(set(skus)) != len(skus):
        r.problems.append("drives: sku names must be unique")
    return drives


def _allocation(r: _Reader, raw: Any, path: str) -> tuple[int | None, dict[str, int]]:
    """An int (every quarter), or {default: N, '2027Q1': M, ...}; absent means unconstrained."""
    if raw is None:
        return None, {}
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            r.problems.append(f"{path}: must be >= 0")
        return raw, {}
    if not isinstance(raw, dict):
        r.problems.append(f"{path}: expected drives per quarter (a whole number) or a mapping of quarters")
        return None, {}
    default = None
    by_quarter: dict[str, int] = {}
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            r.problems.append(f"{path}.{key}: expected a whole number of drives >= 0, got {value!r}")
            continue
        if str(key) == "default":
            default = value
        elif (q := parse_quarter(str(key))) is not None:
            by_quarter[q] = value
        else:
            r.problems.append(f"{path}.{key}: expected 'default' or a quarter such as '2027Q1'")
    return default, by_quarter


def _suppliers(r: _Reader, raw: Any, known: set[str]) -> dict[str, Supplier]:
    sec = r.section(raw, "suppliers", known | set(raw or {}) if isinstance(raw, dict) else known)
    out = {}
    for name, item in sec.items():
        p = f"suppliers.{name}"
        if name not in known:
            r.problems.append(f"{p}: no drive in 'drives' names this supplier")
        s = r.section(item, p, {"allocation_tb_per_quarter"})
        tb = s.get("allocation_tb_per_quarter")
        out[str(name)] = Supplier(str(name), r.number(s, p, "allocation_tb_per_quarter", lo=0) if tb is not None else None)
    return out


def _finance(r: _Reader, raw: Any) -> Finance:
    p = "finance"
    sec = r.section(raw, p, {"horizon_months", "buyer", "supplier", "blanket", "per_phase"})
    buyer = r.section(sec.get("buyer"), f"{p}.buyer", {"cost_of_capital"})
    supplier = r.section(sec.get("supplier"), f"{p}.supplier", {"cost_of_capital", "cogs_fraction", "build_weeks"})

    def terms(key: str, deposit: float, net: int, discount: float) -> Terms:
        t = r.section(sec.get(key), f"{p}.{key}", {"deposit_fraction", "net_days", "discount"})
        return Terms(r.number(t, f"{p}.{key}", "deposit_fraction", deposit, lo=0, hi=1),
                     r.integer(t, f"{p}.{key}", "net_days", net, lo=0),
                     r.number(t, f"{p}.{key}", "discount", discount, lo=0, hi=1, hi_open=True))

    return Finance(
        horizon_months=r.integer(sec, p, "horizon_months", 60, lo=1),
        buyer_cost_of_capital=r.number(buyer, f"{p}.buyer", "cost_of_capital", 0.08, lo=0, hi=1),
        supplier_cost_of_capital=r.number(supplier, f"{p}.supplier", "cost_of_capital", 0.10, lo=0, hi=1),
        supplier_cogs_fraction=r.number(supplier, f"{p}.supplier", "cogs_fraction", 0.8, lo=0, hi=1),
        supplier_build_weeks=r.number(supplier, f"{p}.supplier", "build_weeks", 8, lo=0),
        blanket=terms("blanket", 0.2, 60, 0.0),
        per_phase=terms("per_phase", 0.0, 60, 0.0),
    )


def _cloud(r: _Reader, raw: Any) -> Cloud | None:
    if raw is None:
        return None
    p = "cloud"
    sec = r.section(raw, p, {"name", "usd_per_gb_month", "egress_usd_per_gb", "egress_fraction_per_month"},
                    {"usd_per_gb_month"})
    return Cloud(r.number(sec, p, "usd_per_gb_month", lo=0), r.number(sec, p, "egress_usd_per_gb", 0, lo=0),
                 r.number(sec, p, "egress_fraction_per_month", 0, lo=0), str(sec.get("name", "cloud blob tier")))


def _binary_bytes(r: _Reader, raw: dict, path: str, key: str, default: int) -> int:
    """Chunk, object and segment sizes: bytes, or '64 KiB', '4 MiB', '1 GiB' (binary, as the engine counts)."""
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _BINARY_RE.match(value)):
        size = int(m.group(1)) * _BINARY_UNIT[m.group(2) or "B"]
    else:
        r.problems.append(f"{_join(path, key)}: expected bytes or a size such as '64 KiB', '4 MiB', got {value!r}")
        return default
    if size < 1:
        r.problems.append(f"{_join(path, key)}: must be >= 1 byte")
        return default
    return size


def _topology(r: _Reader, raw: Any) -> TopologySettings:
    p = "topology"
    sec = r.section(raw, p, {"cell_racks", "chunking", "sketch_max_chunk", "segment_size", "pg_cluster_max_tb", "pg_standbys",
                             "ranges_per_cluster", "etcd_members_per_cell"})
    defaults = TopologySettings()
    chunking = defaults.chunking
    if "chunking" in sec:
        items = sec["chunking"]
        if not isinstance(items, list) or not items:
            r.problems.append(f"{p}.chunking: expected a non-empty list of {{name, byte_share, mean_object, chunk}}")
        else:
            classes = []
            for i, item in enumerate(items):
                cp = f"{p}.chunking[{i}]"
                c = r.section(item, cp, {"name", "byte_share", "mean_object", "chunk"},
                              {"byte_share", "mean_object", "chunk"})
                classes.append(ChunkClass(str(c.get("name", f"class {i + 1}")),
                                          r.number(c, cp, "byte_share", lo=0, hi=1),
                                          _binary_bytes(r, c, cp, "mean_object", 1),
                                          _binary_bytes(r, c, cp, "chunk", 1)))
            total = sum(c.byte_share for c in classes)
            if total == total and abs(total - 1.0) > 1e-6:
                r.problems.append(f"{p}.chunking: byte_share must add up to 1, got {total:g}")
            chunking = tuple(classes)
    return TopologySettings(
        cell_racks=r.integer(sec, p, "cell_racks", 0, lo=0), chunking=chunking,
        sketch_max_chunk=_binary_bytes(r, sec, p, "sketch_max_chunk", 0) if sec.get("sketch_max_chunk") != 0 else 0,
        segment_bytes=_binary_bytes(r, sec, p, "segment_size", defaults.segment_bytes),
        pg_cluster_max_tb=r.number(sec, p, "pg_cluster_max_tb", defaults.pg_cluster_max_tb, lo=0, lo_open=True),
        pg_standbys=r.integer(sec, p, "pg_standbys", defaults.pg_standbys, lo=1),
        ranges_per_cluster=r.integer(sec, p, "ranges_per_cluster", defaults.ranges_per_cluster, lo=1),
        etcd_members_per_cell=r.integer(sec, p, "etcd_members_per_cell", defaults.etcd_members_per_cell, lo=1))
