"""A self-contained HTML report: summary table and plots embedded as PNG (matplotlib Agg).

Plots: AU over time (with the pass threshold), read throughput over time,
request-latency CDF, and for ``--find-max`` the AU of every probe against its
accelerator count. One file, no external assets, so it can be attached to a
ticket or a purchase decision as is.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from exastor.tools.scaletest.results import LATENCY_EDGES, CheckpointResult, RunResult, summary_rows  # noqa: E402
from exastor.tools.scaletest.search import SearchOutcome  # noqa: E402


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def au_figure(result: RunResult) -> str:
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.plot(result.series_t, [100 * v for v in result.series_au], label="AU (all accelerators)")
    axis.axhline(100 * result.au_threshold, color="red", linestyle="--", label=f"pass {result.au_threshold:.0%}")
    axis.set_xlabel("seconds")
    axis.set_ylabel("AU %")
    axis.set_ylim(0, 105)
    axis.set_title(f"Accelerator utilisation, {result.accelerators} accelerators")
    axis.legend(loc="lower right")
    return _png(figure)


def throughput_figure(result: RunResult) -> str:
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.plot(result.series_t, [v / 1e9 for v in result.series_throughput])
    axis.set_xlabel("seconds")
    axis.set_ylabel("GB/s read")
    axis.set_title("Read throughput")
    return _png(figure)


def latency_cdf_figure(result: RunResult) -> str:
    counts = np.array(result.latency_histogram, dtype=float)
    figure, axis = plt.subplots(figsize=(7, 3))
    if counts.sum() > 0:
        cdf = np.cumsum(counts) / counts.sum()
        used = counts > 0
        lo = max(int(np.argmax(used)) - 1, 0)
        hi = len(counts) - int(np.argmax(used[::-1])) + 1
        axis.step(LATENCY_EDGES[1:][lo:hi] * 1e3, cdf[lo:hi], where="post")
        axis.set_xscale("log")
    axis.set_xlabel("request latency, ms (log)")
    axis.set_ylabel("fraction of requests")
    axis.set_title("Request latency CDF")
    axis.grid(True, which="both", alpha=0.3)
    return _png(figure)


def search_figure(outcome: SearchOutcome, threshold: float) -> str:
    figure, axis = plt.subplots(figsize=(7, 3))
    counts = [p[0] for p in outcome.probes]
    values = [100 * p[2] for p in outcome.probes]
    colours = ["tab:green" if p[1] else "tab:red" for p in outcome.probes]
    axis.scatter(counts, values, c=colours)
    for order, (n, au) in enumerate(zip(counts, values, strict=True)):
        axis.annotate(str(order + 1), (n, au), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axis.axhline(100 * threshold, color="red", linestyle="--")
    axis.set_xscale("log")
    axis.set_xlabel("emulated accelerators (log); labels: probe order")
    axis.set_ylabel("AU %")
    axis.set_title(f"--find-max: largest passing = {outcome.best}")
    return _png(figure)


def checkpoint_figure(result: CheckpointResult) -> str:
    figure, axis = plt.subplots(figsize=(7, 3))
    ranks = np.arange(result.ranks)
    axis.bar(ranks - 0.2, result.rank_write_seconds, width=0.4, label="write")
    axis.bar(ranks + 0.2, result.rank_read_seconds, width=0.4, label="read")
    axis.set_xlabel("rank")
    axis.set_ylabel("seconds")
    axis.set_title("Per-rank shard write and read time")
    axis.legend()
    return _png(figure)


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def write_report(
    path: str,
    title: str,
    result: RunResult | None = None,
    outcome: SearchOutcome | None = None,
    checkpoint: CheckpointResult | None = None,
    context: dict[str, str] | None = None,
) -> None:
    sections = [f"<h1>{html.escape(title)}</h1>"]
    if context:
        sections.append(_table(list(context.items())))
    if outcome is not None and result is not None:
        sections.append(f"<h2>Largest passing count: {outcome.best}</h2>")
        sections.append(f'<img src="data:image/png;base64,{search_figure(outcome, result.au_threshold)}">')
    if result is not None:
        sections.append("<h2>Run" + (f" at {result.accelerators} (best)" if outcome else "") + "</h2>")
        sections.append(_table(summary_rows(result)))
        for figure in (au_figure(result), throughput_figure(result), latency_cdf_figure(result)):
            sections.append(f'<img src="data:image/png;base64,{figure}">')
    if checkpoint is not None:
        sections.append("<h2>Checkpoint</h2>")
        sections.append(_table([
            ("model", checkpoint.model),
            ("ranks", str(checkpoint.ranks)),
            ("checkpoint size", f"{checkpoint.checkpoint_bytes / 1e9:.3f} GB"),
            ("time to checkpoint (write)", f"{checkpoint.write_seconds:.2f} s, {checkpoint.write_bytes_per_s / 1e9:.3f} GB/s"),
            ("time to restore (read)", f"{checkpoint.read_seconds:.2f} s, {checkpoint.read_bytes_per_s / 1e9:.3f} GB/s"),
        ]))
        sections.append(f'<img src="data:image/png;base64,{checkpoint_figure(checkpoint)}">')
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "img{display:block;margin:1em 0}"
    )
    document = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(document)
