#!/usr/bin/env python3
"""Plot and tables for docs/benchmarks.md, "Metadata backends through the S3 API".

Reads bench/results/meta_backends.json and bench/results/meta_commits.json (same session), draws
docs/benchmarks/meta_backends.png and prints the Markdown tables.

    python bench/render_meta_backends.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VARIANTS = (("sqlite", "SQLite"), ("postgres", "PostgreSQL"),
            ("postgres_one_usage_row", "PostgreSQL, one usage row (before)"))


def main() -> int:
    backends = json.loads((REPO / "bench/results/meta_backends.json").read_text())
    commits = json.loads((REPO / "bench/results/meta_commits.json").read_text())
    med = backends["medians"]
    levels = sorted(int(c) for c in backends["counts"])
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, method in zip(axes[:3], ("PUT", "GET", "HEAD"), strict=True):
        for variant, label in VARIANTS:
            ys = [med[f"{variant}/{method}/{c}"]["per_s"] for c in levels]
            ax.plot(levels, ys, marker="o", label=label)
        ax.set_title(f"4 KiB {method} through exastor serve")
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel("requests/s (median of rounds)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    ax = axes[3]
    clients = [r["clients"] for r in commits["rows"]]
    for key, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL (sequence)"),
                       ("postgres_counter_row", "PostgreSQL, counter row")):
        ax.plot(clients, [r[key]["commits_per_s"] for r in commits["rows"]], marker="o", label=label)
    ax.set_title("metadata commits vs writers")
    ax.set_xlabel("writer threads")
    ax.set_ylabel("commits/s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = REPO / "docs/benchmarks/meta_backends.png"
    fig.savefig(out, dpi=90)
    print(f"wrote {out}\n")

    print("| op | concurrency | " + " | ".join(f"{label} ops/s | server CPU µs/op | PG CPU µs/op"
                                               for _, label in VARIANTS[:2]) + " | PG/SQLite |")
    print("|---|---:|" + "---:|" * 7)
    for method in ("PUT", "GET", "HEAD"):
        for c in levels:
            s, p = med[f"sqlite/{method}/{c}"], med[f"postgres/{method}/{c}"]
            print(f"| {method} | {c} | {s['per_s']:,.0f} | {s['server_cpu_us_per_op']:,.0f} | - | "
                  f"{p['per_s']:,.0f} | {p['server_cpu_us_per_op']:,.0f} | {p['postgres_cpu_us_per_op']:,.0f} | "
                  f"{p['per_s'] / s['per_s']:.0%} |")
    print("\n| PUT concurrency | PostgreSQL ops/s | statements/PUT | gateway + PG CPU µs/PUT "
          "| one usage row: ops/s | statements/PUT | gateway + PG CPU µs/PUT |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for c in levels:
        p, o = med[f"postgres/PUT/{c}"], med[f"postgres_one_usage_row/PUT/{c}"]
        print(f"| {c} | {p['per_s']:,.0f} | {p['statements_per_op']:.1f} | "
              f"{p['server_cpu_us_per_op']:,.0f} + {p['postgres_cpu_us_per_op']:,.0f} | {o['per_s']:,.0f} | "
              f"{o['statements_per_op']:.1f} | {o['server_cpu_us_per_op']:,.0f} + {o['postgres_cpu_us_per_op']:,.0f} |")
    print("\n| op | one gateway ops/s | CPU µs/op (gateway + PG) | two gateways ops/s | CPU µs/op (gateways + PG) |")
    print("|---|---:|---:|---:|---:|")
    for method in ("PUT", "GET", "HEAD"):
        one = next(v for k, v in med.items() if k.startswith(f"gateways-one/{method}/"))
        dual = next(v for k, v in med.items() if k.startswith(f"gateways-two/{method}/"))
        print(f"| {method} | {one['per_s']:,.0f} | {one['server_cpu_us_per_op']:,.0f} + "
              f"{one['postgres_cpu_us_per_op']:,.0f} | {dual['per_s']:,.0f} | "
              f"{dual['server_cpu_us_per_op']:,.0f} + {dual['postgres_cpu_us_per_op']:,.0f} |")
    print("\n| writers | SQLite commits/s | CPU ms | PostgreSQL commits/s | CPU ms | counter row commits/s | CPU ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in commits["rows"]:
        print(f"| {r['clients']} | " + " | ".join(
            f"{r[k]['commits_per_s']:,.0f} | {r[k]['cpu_ms_per_commit']:.2f}"
            for k in ("sqlite", "postgres", "postgres_counter_row")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
