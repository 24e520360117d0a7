"""Sizing: from logical capacity to raw flash, and from drives to a bill of materials.

The chain, each step one factor (so a reader can check it by hand)::

    stored   = logical / reduction            what survives dedupe, delta and compression
    striped  = stored * (k + m) / k           erasure coding
    raw      = striped / max_fill / (1 - write_buffer_fraction)
                                              headroom: drives are never filled to 100 %, and
                                              a slice of every drive is the replicated write buffer
    installed = raw / (1 - spare_fraction)    spare drives on the shelf or hot-standby

A drive of capacity C therefore contributes ``C * (1 - spare_fraction)`` TB of
*effective* raw capacity towards ``raw``; that is what the optimiser counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exastor.tools.plan.model import DriveSku, PlanInput, Protection


@dataclass(frozen=True)
class CapacityNeed:
    logical_tb: float
    stored_tb: float
    striped_tb: float
    raw_tb: float
    installed_tb: float


def capacity_need(logical_tb: float, reduction_ratio: float, protection: Protection) -> CapacityNeed:
    """Raw flash needed to hold ``logical_tb`` of data at a given reduction ratio."""
    stored = logical_tb / reduction_ratio
    striped = stored * protection.ec_overhead
    raw = striped / protection.max_fill / (1.0 - protection.write_buffer_fraction)
    installed = raw / (1.0 - protection.spare_fraction)
    return CapacityNeed(logical_tb, stored, striped, raw, installed)


def effective_tb(drive: DriveSku, protection: Protection) -> float:
    """Raw TB one drive contributes once its share of spares is set aside."""
    return drive.capacity_tb * (1.0 - protection.spare_fraction)


def installed_effective_tb(plan: PlanInput) -> float:
    """Effective raw TB of the drives already online (``installed``), which every milestone can count."""
    by_sku = {d.sku: d for d in plan.drives}
    return sum(n * effective_tb(by_sku[sku], plan.protection) for sku, n in plan.installed.items())


def infrastructure_per_slot_usd(plan: PlanInput) -> float:
    """Enclosure, server and rack capital per drive slot: what each drive costs beyond itself.

    Linear, so the optimiser can weigh a 122.88 TB drive (half the slots per TB) against a
    61.44 TB one. The bill of materials then rounds enclosures, servers and racks up exactly.
    """
    enc, srv, rack = plan.enclosure, plan.server, plan.rack
    ru_per_enclosure = enc.rack_units + srv.rack_units / srv.enclosures_per_server
    per_enclosure = enc.price_usd + srv.price_usd / srv.enclosures_per_server + rack.price_usd * ru_per_enclosure / rack.rack_units
    return per_enclosure / enc.drive_slots


def watts_per_drive(plan: PlanInput, drive: DriveSku) -> float:
    """The drive's own watts plus its share of enclosure and server power."""
    enc, srv = plan.enclosure, plan.server
    return drive.watts + (enc.watts + srv.watts / srv.enclosures_per_server) / enc.drive_slots


@dataclass(frozen=True)
class BillOfMaterials:
    """Everything online at one milestone (cumulative), with its capital cost."""

    drives: dict[str, int]
    installed_tb: float
    effective_tb: float
    enclosures: int
    servers: int
    rack_units: int
    racks: int
    power_kw: float
    facility_kw: float
    drive_capex_usd: float
    enclosure_capex_usd: float
    server_capex_usd: float
    rack_capex_usd: float

    @property
    def total_drives(self) -> int:
        return sum(self.drives.values())

    @property
    def capex_usd(self) -> float:
        return self.drive_capex_usd + self.enclosure_capex_usd + self.server_capex_usd + self.rack_capex_usd


def bill_of_materials(plan: PlanInput, drives: dict[str, int], drive_capex_usd: float | None = None) -> BillOfMaterials:
    """Round a drive count per SKU up to whole enclosures, servers and racks.

    Racks are bounded by rack units and by the rack's power budget, whichever bites first.
    ``drive_capex_usd`` overrides list price (e.g. after a blanket-order discount).
    """
    by_sku = {d.sku: d for d in plan.drives}
    total = sum(drives.values())
    enc, srv, rack = plan.enclosure, plan.server, plan.rack
    enclosures = math.ceil(total / enc.drive_slots) if total else 0
    servers = math.ceil(enclosures / srv.enclosures_per_server) if enclosures else 0
    rack_units = enclosures * enc.rack_units + servers * srv.rack_units
    watts = sum(n * by_sku[s].watts for s, n in drives.items()) + enclosures * enc.watts + servers * srv.watts
    power_kw = watts / 1000.0
    racks = max(math.ceil(rack_units / rack.rack_units), math.ceil(power_kw / rack.power_kw)) if total else 0
    installed = sum(n * by_sku[s].capacity_tb for s, n in drives.items())
    if drive_capex_usd is None:
        drive_capex_usd = sum(n * by_sku[s].price_usd for s, n in drives.items())
    return BillOfMaterials(
        drives=dict(drives), installed_tb=installed, effective_tb=installed * (1 - plan.protection.spare_fraction),
        enclosures=enclosures, servers=servers, rack_units=rack_units, racks=racks, power_kw=power_kw,
        facility_kw=power_kw * plan.power.pue, drive_capex_usd=drive_capex_usd,
        enclosure_capex_usd=enclosures * enc.price_usd, server_capex_usd=servers * srv.price_usd,
        rack_capex_usd=racks * rack.price_usd)


@dataclass(frozen=True)
class ReductionSaving:
    """Flash that reduction saves at one milestone, in TB and in money."""

    raw_without_tb: float
    raw_with_tb: float
    saved_tb: float
    usd_per_raw_tb: float
    saved_usd: float


def reduction_saving(plan: PlanInput, logical_tb: float, usd_per_raw_tb: float) -> ReductionSaving:
    """Compare raw flash at ratio 1 (no reduction) with the planned ratio, priced at a blended $/TB."""
    without = capacity_need(logical_tb, 1.0, plan.protection).raw_tb
    with_ = capacity_need(logical_tb, plan.reduction.ratio, plan.protection).raw_tb
    saved = without - with_
    return ReductionSaving(without, with_, saved, usd_per_raw_tb, saved * usd_per_raw_tb)
