#!/usr/bin/env python3
"""Render s3bench result JSONs into the S3 section of docs/benchmarks.md and a PNG.

    python bench/render_benchmarks.py bench/results/s3rver.json bench/results/moto.json ... \
        [--subject exastor] [--doc docs/benchmarks.md] [--png bench/results/s3bench.png]

The section between ``<!-- s3bench:begin -->`` and ``<!-- s3bench:end -->`` is
replaced (appended when absent); the rest of the file, which other engineers
edit, is left alone. Every number printed comes from the JSONs, and every
ratio vs raw disk uses the baseline measured in the *same* run as the number.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib.results import read_result  # noqa: E402

BEGIN, END = "<!-- s3bench:begin -->", "<!-- s3bench:end -->"
MiB = 1 << 20
# Where each peer keeps its data (bench/peers/*.sh); exastor's runs record their own geometry.
LAYOUTS = {"s3rver": "files on one disk", "moto": "objects in RAM", "radosgw": "one memstore OSD (RAM)",
           "exastor": "1 drive directory, no redundancy (geometry not recorded by this older run)"}


def geometry(result: dict[str, Any]) -> str:
    """The data layout a result was measured on: as its run recorded it, else the peer's own."""
    return result["inputs"].get("geometry") or LAYOUTS.get(result["label"], "?")


def machine_of(result: dict[str, Any]) -> str:
    """Runs on different machines are not compared with each other, only with their own baselines."""
    m = result["machine"]
    return f"{m.get('cpu_model')} ({m.get('cpu_count')} cores), kernel {m.get('kernel')}"


def baseline_for(result: dict[str, Any], metric: str) -> tuple[str, float | None]:
    """The same-run raw-disk number a metric is compared with, and its name."""
    r = result["results"][metric]
    seq = result["baselines"].get("raw_disk_seq", {})
    small = result["baselines"].get("raw_disk_small", {})
    is_put = "put" in metric
    if r["unit"] == "MB/s":
        return ("raw write+fsync", seq.get("write_fsync_MBps")) if is_put else (
            f"raw read ({seq.get('read_was', '?')})", seq.get("read_MBps"))
    if r["unit"] == "obj/s":
        return ("4 KiB file create", small.get("create_per_s")) if is_put else (
            "4 KiB file read", small.get("read_per_s"))
    return "", None


def metric_order(results: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for res in results:
        for name, r in res["results"].items():
            if r["unit"] in ("MB/s", "obj/s") and name not in seen:
                seen.append(name)
    return seen


def fmt(v: float | None, digits: int = 0) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def throughput_table(results: list[dict[str, Any]]) -> list[str]:
    labels = [r["label"] for r in results]
    lines = ["| metric | unit | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(labels),
             "| geometry | | " + " | ".join(geometry(r) for r in results) + " |"]
    for metric in metric_order(results):
        unit = next(r["results"][metric]["unit"] for r in results if metric in r["results"])
        cells = []
        for res in results:
            r = res["results"].get(metric)
            if r is None:
                cells.append("–")
                continue
            _, base = baseline_for(res, metric)
            ratio = f" ({r['value'] / base:.2g}× raw)" if base else ""
            cells.append(f"{fmt(r['value'])}{ratio}")
        lines.append(f"| {metric} | {unit} | " + " | ".join(cells) + " |")
    return lines


def peer_ratio_table(results: list[dict[str, Any]], subject: str) -> list[str]:
    subj = next((r for r in results if r["label"] == subject), None)
    if subj is None:
        return [f"_No {subject} result in this run yet: ratios vs peers appear once it is benchmarked._"]
    others = [r for r in results if r is not subj]
    peers = [r for r in others if machine_of(r) == machine_of(subj)]
    elsewhere = [r for r in others if r not in peers]
    note = ([f"Only runs on the machine of {subject}'s run ({machine_of(subj)}) are compared here; "
             + ", ".join(f"{r['label']} ({r['started_at'][:10]}, {machine_of(r)})" for r in elsewhere)
             + " ran on another machine: compare those through each column's ratio to its own same-run "
             "raw disk above."] if elsewhere else [])
    if not peers:
        return note
    lines = ["| metric | " + " | ".join(f"{subject} / {p['label']}" for p in peers) + " |",
             "|---|" + "---:|" * len(peers)]
    for metric in metric_order(results):
        mine = subj["results"].get(metric)
        cells = []
        for p in peers:
            theirs = p["results"].get(metric)
            cells.append(f"{mine['value'] / theirs['value']:.2f}×" if mine and theirs and theirs["value"] else "–")
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Ratios above 1 mean {subject} is faster. Geometry: "
                 + "; ".join(f"{r['label']}: {geometry(r)}" for r in [subj, *peers]) + ". "
                 "The 10 GiB vs 2 GiB streams are not the same size for "
                 "RAM-backed peers (see the RSS table), so compare those rows with care.")
    return lines + ([""] + note if note else [])


def cpu_table(results: list[dict[str, Any]]) -> list[str]:
    """Server CPU seconds per GiB (or per 1000 objects), with the client's in brackets."""
    labels = [r["label"] for r in results]
    lines = ["| metric | per | " + " | ".join(labels) + " |", "|---|---|" + "---:|" * len(labels),
             "| geometry | | " + " | ".join(geometry(r) for r in results) + " |"]
    any_row = False
    for metric in metric_order(results):
        cells, per = [], ""
        for res in results:
            r = res["results"].get(metric, {})
            if "server_cpu_s_per_unit" in r:
                per = r["cpu_unit"]
                cells.append(f"{r['server_cpu_s_per_unit']:.2f} ({r['client_cpu_s_per_unit']:.2f})")
            else:
                cells.append("–")
        if per:
            any_row = True
            lines.append(f"| {metric} | {per} | " + " | ".join(cells) + " |")
    return lines if any_row else ["_No CPU accounting in these results (needs `--server-pid`)._"]


def baseline_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| run | geometry | raw write+fsync MB/s | raw read MB/s | read was | drop_caches allowed | "
             "4 KiB create/s | 4 KiB read/s | load avg (1 min) start → end |",
             "|---|---|---:|---:|---|---|---:|---:|---|"]
    for res in results:
        seq = res["baselines"].get("raw_disk_seq", {})
        small = res["baselines"].get("raw_disk_small", {})
        load0 = (res["machine"].get("loadavg_at_start") or [None])[0]
        load1 = (res.get("loadavg_at_end") or [None])[0]
        lines.append(f"| {res['label']} ({res['started_at']}) | {geometry(res)} | {fmt(seq.get('write_fsync_MBps'))} | "
                     f"{fmt(seq.get('read_MBps'))} | {seq.get('read_was', '–')} | "
                     f"{seq.get('drop_caches_allowed', '–')} | {fmt(small.get('create_per_s'))} | "
                     f"{fmt(small.get('read_per_s'))} | {fmt(load0, 1)} → {fmt(load1, 1)} |")
    return lines


def rss_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| server | geometry | streamed object | RSS at start MiB | peak RSS while streaming MiB | "
             "peak RSS whole run MiB | processes sampled |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for res in results:
        rss = res.get("server_rss", {})
        stream, whole = rss.get("stream", {}), rss.get("whole_run", {})
        gib = res["inputs"].get("stream_gib")
        lines.append(
            f"| {res['label']} | {geometry(res)} | {gib:g} GiB | {fmt(whole.get('start_tree_bytes', 0) / MiB)} | "
            f"{fmt(stream.get('peak_tree_bytes', 0) / MiB) if stream else '–'} | "
            f"{fmt(whole.get('peak_tree_bytes', 0) / MiB) if whole else '–'} | {whole.get('processes', '–')} |"
        )
    return lines


def machine_lines(results: list[dict[str, Any]]) -> list[str]:
    """One entry per machine the runs were measured on, naming its runs and their geometry."""
    lines: list[str] = []
    for key in dict.fromkeys(machine_of(r) for r in results):
        runs = [r for r in results if machine_of(r) == key]
        m = runs[0]["machine"]
        disk = m.get("disk", {})
        pk = m.get("packages", {})
        lines += [
            f"- runs {', '.join(r['label'] + ' ' + r['started_at'] for r in runs)} on:",
            f"  - CPU: {m.get('cpu_model')} ({m.get('cpu_count')} cores), "
            f"RAM {fmt((m.get('mem_total_bytes') or 0) / 2**30, 1)} GiB",
            f"  - OS: {m.get('os')}, kernel {m.get('kernel')}, Python {m.get('python')}",
            f"  - disk under the data directories: {disk.get('device', '?')} ({disk.get('fstype', '?')}, "
            f"rotational={disk.get('rotational', '?')} as the kernel reports it)",
            f"  - client: boto3 {pk.get('boto3')}, botocore {pk.get('botocore')}, numpy {pk.get('numpy')}",
        ]
    lines.append("- geometry: " + "; ".join(f"{r['label']}: {geometry(r)}" for r in results))
    return lines


def errors_lines(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for res in results:
        for step, err in res.get("errors", {}).items():
            out.append(f"- **{res['label']}**, {step}: `{err[:200]}`")
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Grouped bars of every throughput metric, one panel per unit, one bar per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = metric_order(results)
    units = [u for u in ("MB/s", "obj/s") if any(
        r["results"].get(m, {}).get("unit") == u for r in results for m in metrics)]
    fig, axes = plt.subplots(1, len(units), figsize=(13, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [4, 1][: len(units)]})
    for ax, unit in zip(axes[0], units, strict=True):
        names = [m for m in metrics if any(r["results"].get(m, {}).get("unit") == unit for r in results)]
        x = np.arange(len(names))
        width = 0.8 / max(1, len(results))
        for i, res in enumerate(results):
            vals = [res["results"].get(m, {}).get("value", 0.0) for m in names]
            ax.bar(x + i * width, vals, width, label=f"{res['label']} ({res['started_at'][:10]})")
        ax.set_xticks(x + width * (len(results) - 1) / 2, names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_title("S3 throughput on loopback, one run per server (higher is better)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


RSS_NOTE = (
    "What exastor's RSS is made of (attributed with smaps, mallinfo2 and tracemalloc while streaming "
    '10 GiB): the master (~64 MiB) is the interpreter with every module imported before the fork, '
    'and each worker starts at ~42 MiB (RSS counts pages the fork shares once per process). While an '
    'object streams, a worker holds the buffers in flight (per PUT: the 4 MiB window being filled '
    'and the one being chunked; per GET: up to two 4 MiB read batches ahead of the socket), the free '
    'heap those buffers leave behind (`malloc_trim` returns it after every 256 MiB a worker streams and '
    'once when it stops; once a second in runs before 2026-12-06) and SQLite page caches '
    '(2 MiB per reader thread, 8 MiB for the writer). What grows with the object is its manifest (40 '
    'bytes per ~64 KiB chunk: 6.4 MiB for 10 GiB), held while completing and while serving it. '
    "Worker 0's background reducer walks a new object 4,096 distinct chunks at a time, so its state "
    'stays a few MiB whatever the object size; when its pass overlaps the read-back (at `reduce_duty`, '
    'half a core by default) the stream GET pays for the shared cores.'
)


def render_section(results: list[dict[str, Any]], subject: str, png: Path | None, doc: Path) -> str:
    lines = [BEGIN, "## S3: exastor vs peers (bench/s3bench.py)", "",
             "Generated by `bench/render_benchmarks.py` from the result JSONs in `bench/results/`; "
             "rerun `bench/run_s3_peers.sh` to reproduce. Throughput cells show the value and, in brackets, "
             "its ratio to the raw disk measured in the same run (write+fsync for PUTs, evicted read for GETs, "
             "4 KiB file create/read for small objects).", ""]
    lines += machine_lines(results) + [""]
    lines += ["### Throughput", ""] + throughput_table(results) + [""]
    if png is not None:
        rel = os.path.relpath(png.resolve(), doc.resolve().parent)
        lines += [f"![S3 throughput per server]({rel})", ""]
    lines += [f"### {subject} relative to each peer", ""] + peer_ratio_table(results, subject) + [""]
    lines += ["### CPU cost: server CPU-seconds per GiB or per 1000 objects (client's in brackets)", "",
              "Read from /proc (utime+stime of the server's process tree) around each timed step. On a "
              "shared machine this moves far less than the rates above, so it is the fairer comparison of "
              "how much work each server does. Lower is better. RAM-backed peers (moto, radosgw's memstore "
              "OSD) do less work per byte by design; radosgw's numbers include its OSD and monitor.", ""]
    lines += cpu_table(results) + [""]
    lines += ["### Server memory (process-tree RSS sampled from /proc every 50 ms)", ""] + rss_table(results) + [""]
    if subject == "exastor":
        lines += [RSS_NOTE, ""]
    lines += ["### Same-run baselines", ""] + baseline_table(results) + [""]
    errs = errors_lines(results)
    if errs:
        lines += ["### Steps that failed", ""] + errs + [""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def splice(doc_text: str, section: str) -> str:
    if BEGIN in doc_text and END in doc_text:
        head, rest = doc_text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + section.rstrip("\n") + tail
    return doc_text.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="s3bench result JSONs, in column order")
    p.add_argument("--subject", default="exastor", help="label compared against every other result")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--png", type=Path, default=REPO / "bench" / "results" / "s3bench.png")
    p.add_argument("--stdout", action="store_true", help="print the section instead of editing the doc")
    args = p.parse_args(argv)
    results = [read_result(path) for path in args.results]
    if args.png:
        plot(results, args.png)
    section = render_section(results, args.subject, args.png, args.doc)
    if args.stdout:
        print(section)
        return 0
    text = args.doc.read_text() if args.doc.exists() else "# Benchmarks\n"
    args.doc.write_text(splice(text, section))
    print(f"updated {args.doc} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
