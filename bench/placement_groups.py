#!/usr/bin/env python3
"""Stripe groups (copysets): how likely m+1 drives (or hosts) failing together lose data, with and
without groups, through the real placement.

For each layout, the seal's placement is run for ``--stripes`` stripes through the real
``DriveSet.stripe_group`` and ``DriveSet.place`` (one shard at a time with ``exclude``, ``occupied``
and ``within``, as engine/segments.py does; a DriveSet over simulated drives of equal free space,
no database), once with the groups and once with ``within=None`` (free placement, the rule before
groups). Then ``--trials`` random sets of m+1 drives, and of m+1 hosts, are failed: a trial loses
data when some stripe has more than m shards on what failed. Reported per layout and placement:
P(loss) measured, the mean share of stripes lost in a losing trial, the distinct drive sets the
stripes use, and the rebuild's scatter (how many drives a failed drive's stripes read from).

Free placement's P(loss) grows with the number of stripes (each new stripe is another drive set);
the groups' is capped by the groups themselves. So the run also computes, for a 2 EB first step
(850 hosts x 24 drives) and each layout, P(loss) of free placement after S stripes
(1 - (1 - C(w, m+1) / C(N, m+1))^S, stripes taken as independent random drive sets) against the
groups' bound (the (m+1)-subsets inside groups over all (m+1)-subsets), and plots both.

    python bench/placement_groups.py [--stripes 10000] [--trials 20000] [--out bench/results/placement_groups.json]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from lib.machine import machine_info  # noqa: E402
from lib.results import save_figure, utc_stamp, write_result  # noqa: E402
from placement_spread import SimulatedIO, simulated_set  # noqa: E402

from exastor.engine import erasure  # noqa: E402
from exastor.engine.drives import Drive, DriveSet, shard_salt  # noqa: E402

TIB = 1 << 40
# (name, hosts, drives per host, geometry): simulated through the real placement
LAYOUTS = [("1 host x 24 drives, 4+2", 1, 24, "4+2"),
           ("20 hosts x 6 drives, 4+2", 20, 6, "4+2"),
           ("24 hosts x 10 drives, 8+3", 24, 10, "8+3")]
# the first 2 EB step (docs/scale.md): computed, not simulated
SCALE_HOSTS, SCALE_DRIVES_PER_HOST = 850, 24
SCALE_GEOMETRIES = ("4+2", "8+3", "16+4")


def layout_set(hosts: int, per_host: int, geometry: str) -> DriveSet:
    drives = [Drive(h * per_host + i, f"/sim/d{h * per_host + i}", "active", SimulatedIO(4 * TIB),  # type: ignore[arg-type]
                    host=f"h{h:03d}") for h in range(hosts) for i in range(per_host)]
    ds = simulated_set(drives)
    ds.explicit = erasure.parse(geometry)
    return ds


def place_stripes(ds: DriveSet, stripes: int, grouped: bool) -> tuple[list[tuple[int, ...]], float]:
    g = ds.geometry()
    width = g.k + g.m
    out = []
    start = time.process_time()
    for seg in range(stripes):
        group = ds.stripe_group(width, salt=seg) if grouped else None
        used: list[int] = []
        for i in range(width):
            d = ds.place(1, salt=shard_salt(seg, i), exclude=set(used), occupied=ds.domains_of(used), within=group)[0]
            used.append(d.id)
        out.append(tuple(sorted(used)))
    return out, time.process_time() - start


def failure_trials(stripes: list[tuple[int, ...]], units: list[list[int]], m: int, trials: int,
                   rng: random.Random) -> dict[str, float]:
    """Fail m+1 random ``units`` (each a list of drive ids: one drive, or a host's drives) per trial."""
    by_drive: dict[int, list[int]] = {}
    for s, drives in enumerate(stripes):
        for d in drives:
            by_drive.setdefault(d, []).append(s)
    losing, lost_share = 0, 0.0
    for _ in range(trials):
        down = [d for u in rng.sample(units, m + 1) for d in u]
        hits: Counter[int] = Counter()
        for d in down:
            hits.update(by_drive.get(d, ()))
        lost = sum(1 for n in hits.values() if n > m)
        if lost:
            losing += 1
            lost_share += lost / len(stripes)
    return {"p_loss": losing / trials, "mean_share_lost_when_lost": (lost_share / losing) if losing else 0.0,
            "losing_trials": losing}


def scatter(stripes: list[tuple[int, ...]]) -> float:
    """Mean number of distinct other drives a drive's stripes span: the drives its rebuild reads from."""
    peers: dict[int, set[int]] = {}
    for s in stripes:
        for d in s:
            peers.setdefault(d, set()).update(s)
    return sum(len(p) - 1 for p in peers.values()) / len(peers)


def scale_row(geometry: str, stripe_counts: list[int]) -> dict[str, Any]:
    g = erasure.parse(geometry)
    width, need = g.k + g.m, g.m + 1
    drives = SCALE_HOSTS * SCALE_DRIVES_PER_HOST
    ds = layout_set(SCALE_HOSTS, SCALE_DRIVES_PER_HOST, geometry)
    groups = ds.stripe_groups()
    inside = sum(math.comb(len(grp), need) for grp in groups)
    every = math.comb(drives, need)
    per_stripe = math.comb(width, need) / every
    return {"geometry": geometry, "drives": drives, "groups": len(groups),
            "group_widths": sorted(Counter(len(grp) for grp in groups).items()),
            "p_loss_grouped_bound": inside / every,
            "p_loss_free_by_stripes": {str(s): -math.expm1(s * math.log1p(-per_stripe)) for s in stripe_counts}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stripes", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "placement_groups.json"))
    ap.add_argument("--plot", default=str(REPO / "bench" / "results" / "placement_groups.png"))
    args = ap.parse_args()
    wall = time.perf_counter()
    rows = []
    for name, hosts, per_host, geometry in LAYOUTS:
        ds = layout_set(hosts, per_host, geometry)
        m = ds.geometry().m
        drive_units = [[d.id] for d in ds.all]
        host_units = [[h * per_host + i for i in range(per_host)] for h in range(hosts)]
        row: dict[str, Any] = {"layout": name, "hosts": hosts, "drives": hosts * per_host, "geometry": geometry,
                               "groups": len(ds.stripe_groups()),
                               "group_widths": sorted(Counter(len(g) for g in ds.stripe_groups()).items())}
        for grouped in (True, False):
            stripes, cpu = place_stripes(ds, args.stripes, grouped)
            host_of = {d: d // per_host for s in stripes for d in s}
            label = "grouped" if grouped else "free"
            rng = random.Random(args.seed)
            row[label] = {
                "distinct_drive_sets": len(set(stripes)),
                "stripes_with_two_shards_on_a_host": sum(len({host_of[d] for d in s}) < len(s) for s in stripes),
                "rebuild_scatter_drives": round(scatter(stripes), 1),
                "cpu_us_per_shard_placement": round(cpu / (args.stripes * len(stripes[0])) * 1e6, 1),
                "drives_fail": failure_trials(stripes, drive_units, m, args.trials, rng),
                "hosts_fail": (failure_trials(stripes, host_units, m, args.trials, rng) if hosts > m + 1 else None),
            }
            # every drive set inside one group, when grouped
            if grouped:
                groups = ds.stripe_groups()
                row[label]["stripes_outside_a_group"] = sum(not any(set(s) <= g for g in groups) for s in stripes)
        analytic = math.comb(ds.geometry().k + m, m + 1) / math.comb(hosts * per_host, m + 1)
        row["p_loss_free_expected"] = -math.expm1(args.stripes * math.log1p(-analytic))
        row["p_loss_grouped_bound"] = (sum(math.comb(len(g), m + 1) for g in ds.stripe_groups())
                                       / math.comb(hosts * per_host, m + 1))
        rows.append(row)
        print(f"{name}: groups {row['groups']} {row['group_widths']}")
        for label in ("grouped", "free"):
            r = row[label]
            hf = r["hosts_fail"]
            print(f"  {label:>7}: {r['distinct_drive_sets']:>6} drive sets, scatter {r['rebuild_scatter_drives']:>6}, "
                  f"P(loss | {m + 1} drives) {r['drives_fail']['p_loss']:.4f} "
                  f"(share lost when lost {r['drives_fail']['mean_share_lost_when_lost']:.5f})"
                  + (f", P(loss | {m + 1} hosts) {hf['p_loss']:.4f}" if hf else "")
                  + f", {r['cpu_us_per_shard_placement']} us/shard")
        print(f"  expected: free {row['p_loss_free_expected']:.4f}, grouped bound {row['p_loss_grouped_bound']:.5f}")
    stripe_counts = [10 ** e for e in range(3, 11)]
    scale = [scale_row(g, stripe_counts) for g in SCALE_GEOMETRIES]
    for r in scale:
        print(f"scale {SCALE_HOSTS}x{SCALE_DRIVES_PER_HOST} {r['geometry']}: {r['groups']} groups, grouped bound "
              f"{r['p_loss_grouped_bound']:.2e}; free after 1e6/1e8/1e10 stripes "
              + ", ".join(f"{r['p_loss_free_by_stripes'][str(s)]:.2e}" for s in (10**6, 10**8, 10**10)))
    result = {"bench": "placement_groups", "when": utc_stamp(), "machine": machine_info(),
              "inputs": {"stripes": args.stripes, "trials": args.trials, "seed": args.seed,
                         "free_space": "equal (4 TiB per drive)"},
              "layouts": rows, "scale": {"hosts": SCALE_HOSTS, "drives_per_host": SCALE_DRIVES_PER_HOST,
                                         "rows": scale},
              "wall_s": round(time.perf_counter() - wall, 1)}
    write_result(args.out, result)
    plot(rows, scale, stripe_counts, args.stripes, args.plot)


def plot(rows: list[dict[str, Any]], scale: list[dict[str, Any]], stripe_counts: list[int], stripes: int,
         path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    names = [r["layout"] for r in rows]
    x = range(len(rows))
    floor = 1e-5  # a measured 0 drawn at the axis floor
    for offset, label, colour in ((-0.2, "free", "tab:red"), (0.2, "grouped", "tab:blue")):
        left.bar([i + offset for i in x], [max(r[label]["drives_fail"]["p_loss"], floor) for r in rows], width=0.4,
                 label=f"{label} placement", color=colour)
    left.set_yscale("log")
    left.set_xticks(list(x))
    left.set_xticklabels(names, fontsize=8)
    left.set_ylabel("P(data lost | m+1 random drives fail)")
    left.set_title(f"measured through the real placement: {stripes:,} stripes each", fontsize=10)
    left.legend(fontsize=8)
    for r in scale:
        ys = [r["p_loss_free_by_stripes"][str(s)] for s in stripe_counts]
        line = right.plot(stripe_counts, ys, marker="o", label=f"{r['geometry']} free")[0]
        right.axhline(r["p_loss_grouped_bound"], color=line.get_color(), linestyle="--",
                      label=f"{r['geometry']} grouped ({r['groups']} groups)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("stripes in the store")
    right.set_ylabel("P(data lost | m+1 random drives fail)")
    right.set_title(f"computed: {SCALE_HOSTS} hosts x {SCALE_DRIVES_PER_HOST} drives", fontsize=10)
    right.legend(fontsize=7)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
