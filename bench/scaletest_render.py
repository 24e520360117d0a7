"""Render the scale-test benchmark JSONs as the markdown tables in docs/benchmarks/scaletest.md.

    .venv/bin/python bench/scaletest_render.py [bench/results/scaletest_peers.json] [bench/results/scaletest_dlio.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def peers_tables(doc: dict) -> str:
    lines = [
        f"Machine: {doc['machine']['cpus']} cores, {doc['machine']['memory_gb']:.0f} GB, "
        f"{doc['machine']['platform']}; started {doc['started']}, load average at start "
        f"{doc['machine']['load_avg_start'][0]:.1f}. Inputs: {json.dumps(doc['inputs'])}.",
        "",
        "| server | workload | largest passing | probes (count: AU) | at the best count (or 1): AU, delivered | "
        "needed per accelerator | latency p50 / p99 | client CPU s/GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    needed = {"unet3d_h100": "3.18 GB/s", "resnet50_h100": "205 MB/s (1,786 req/s)",
              "cosmoflow_a100": "514 MB/s (360 at 70%)"}
    for server, entry in doc["servers"].items():
        for key in ("unet3d_h100", "resnet50_h100", "cosmoflow_a100"):
            if key not in entry:
                continue
            found = entry[key]
            probes = ", ".join(f"{p['accelerators']}: {100 * p['au']:.0f}%" for p in found.get("probes") or [])
            runs = found.get("at_best_or_first") or {}
            latency = runs.get("latency_ms") or {}
            lines.append(
                f"| {server} | {key.replace('_', ' ')} | **{found.get('largest_passing')}** | {probes} | "
                f"{100 * (runs.get('au_mean') or 0):.0f}% at {runs.get('accelerators')}, "
                f"{(runs.get('throughput_bytes_per_s') or 0) / 1e6:,.0f} MB/s | {needed[key]} | "
                f"{latency.get('p50', 0):,.0f} / {latency.get('p99', 0):,.0f} ms | "
                f"{runs.get('cpu_seconds_per_gb') or 0:.2f} |")
    lines += ["", "| server | client-cost run (8 accelerators, 20 s) | delivered | requests/s | client CPU s | CPU s/GB | "
              "CPU µs/request | loop lag p99 |", "|---|---|---|---|---|---|---|---|"]
    for server, entry in doc["servers"].items():
        for key in ("unet3d_client_cost", "resnet50_client_cost"):
            run = entry.get(key) or {}
            if not run:
                continue
            per_request = 1e6 * run["client_cpu_seconds"] / max(run["requests"], 1)
            lines.append(
                f"| {server} | {key.split('_')[0]} | {run['throughput_bytes_per_s'] / 1e6:,.0f} MB/s | "
                f"{run['requests'] / run['duration']:,.0f} | {run['client_cpu_seconds']:.1f} | "
                f"{run['cpu_seconds_per_gb']:.2f} | {per_request:,.0f} | {run['loop_lag_ms'].get('p99', 0):.0f} ms |")
    lines += ["", "| server | checkpoint (Llama 3 8B shape, scaled) | ranks | size | time to checkpoint | write | "
              "time to restore | read |", "|---|---|---|---|---|---|---|---|"]
    for server, entry in doc["servers"].items():
        c = entry.get("checkpoint_llama3_8b_scaled") or {}
        if "write_seconds" in c:
            lines.append(
                f"| {server} | {c['model']} | {c['ranks']} | {c['checkpoint_bytes'] / 1e9:.2f} GB | "
                f"{c['write_seconds']:.1f} s | {c['write_bytes_per_s'] / 1e6:,.0f} MB/s | "
                f"{c['read_seconds']:.1f} s | {c['read_bytes_per_s'] / 1e6:,.0f} MB/s |")
    big = doc["servers"].get("exastor", {}).get("resnet50_2000_accelerators")
    if big:
        lines += ["", "2,000 emulated H100s (ResNet-50) from this one 2-core host against exastor: "
                  f"{big['duration']:.0f} s run, {big['wall_s']:.0f} s wall including start-up and tear-down; "
                  f"client CPU {big['client_cpu_s_total']:.1f} s in total ({big['client_cpu_seconds']:.1f} s during "
                  f"the run), peak RSS {big['client_max_rss_mb']:.0f} MB, event-loop lag p50 "
                  f"{big['loop_lag_ms'].get('p50', 0):.1f} ms / p99 {big['loop_lag_ms'].get('p99', 0):.1f} ms; "
                  f"{big['requests']:,} requests, {big['errors']} errors, AU {100 * big['au_mean']:.1f}%."]
    return "\n".join(lines)


def dlio_table(doc: dict) -> str:
    inputs = doc["inputs"]
    lines = [
        f"Inputs: {inputs['files']} files of one {inputs['record_length']:,}-byte sample (npz), batch "
        f"{inputs['batch_size']}, {inputs['read_threads']} read threads, {inputs['epochs']} epochs, one "
        f"accelerator; {inputs['dlio']}; load average {doc['machine']['load_avg'][0]:.1f}.",
        "",
        "| compute s/batch | DLIO AU | scaletest AU | AU ratio | DLIO samples/s | scaletest samples/s | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in doc["rows"]:
        d, o = row["dlio"], row["exastor_scaletest"]
        lines.append(
            f"| {row['compute_time']} | {d['au_percent']:.1f}% | {o['au_percent']:.1f}% | {row['au_ratio']:.2f} | "
            f"{d['samples_per_s']:.1f} | {o['samples_per_s']:.1f} | {row['samples_per_s_ratio']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    peers = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "scaletest_peers.json"
    dlio = Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS / "scaletest_dlio.json"
    if peers.exists():
        print(peers_tables(json.loads(peers.read_text())))
        print()
    if dlio.exists():
        print(dlio_table(json.loads(dlio.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
