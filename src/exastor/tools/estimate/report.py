"""The estimate as people would rather see it: a PNG (matplotlib, Agg) and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

STAGES = [("logical_bytes", "logical"), ("unique_bytes", "after dedupe"), ("written_bytes", "after compression"),
          ("grouped_bytes", "after float transforms"), ("stored_bytes", "after similarity delta")]
FACTORS = ["dedupe", "compression", "float_transforms", "similarity_delta"]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    values = [result[k] / 1e6 for k, _ in STAGES]
    left.bar(range(len(values)), values, color=["#888", "#4a7", "#48c", "#c84", "#a4c"])
    left.set_xticks(range(len(values)), [label for _, label in STAGES], rotation=20, ha="right")
    left.set_ylabel("MB")
    left.set_title(f"Bytes at each stage (total {result['reduction']['total']:.2f}x)")
    for i, v in enumerate(values):
        left.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    types = sorted(result["by_type"], key=lambda t: result["by_type"][t]["logical_bytes"])
    bottom = [0.0] * len(types)
    import math
    for factor, colour in zip(FACTORS, ["#4a7", "#48c", "#c84", "#a4c"], strict=True):
        widths = [math.log2(max(result["by_type"][t]["reduction"][factor], 1e-9)) for t in types]
        right.barh(types, widths, left=bottom, color=colour, label=factor.replace("_", " "))
        bottom = [b + w for b, w in zip(bottom, widths, strict=True)]
    for i, t in enumerate(types):
        right.text(bottom[i], i, f" {result['by_type'][t]['reduction']['total']:.2f}x", va="center", fontsize=8)
    right.set_xlabel("log2(reduction): each factor's share")
    right.set_title("Reduction by file type")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _row(name: str, t: dict[str, Any]) -> str:
    r = t["reduction"]
    cells = [html.escape(name), f"{t['files']:,}", f"{t['logical_bytes'] / 1e6:,.1f}", f"{t['stored_bytes'] / 1e6:,.1f}",
             *(f"{r[k]:.3f}" for k in ["total", *FACTORS])]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def write_html(result: dict[str, Any], png: Path, path: Path, source: str) -> None:
    img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(_row(k, v) for k, v in result["by_type"].items()) + _row("all", result)
    head = "".join(f"<th>{h}</th>" for h in ["type", "files", "logical MB", "stored MB", "total", "dedupe",
                                              "compression", "float transforms", "similarity delta"])
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>exastor estimate</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>exastor estimate: {result['reduction']['total']:.2f}x</h1>
<p>Source: <code>{html.escape(source)}</code>; {result['files']:,} of {result['files_total']:,} files sampled
(fraction {result['sample']}); {result['logical_bytes'] / 1e6:,.1f} MB read in {result['seconds']:.1f} s.
The model runs exastor's own chunking, dedupe, codec and background reducer over the data without storing it.</p>
<img src="data:image/png;base64,{img}" alt="reduction plot">
<table><tr>{head}</tr>{rows}</table></body></html>""", encoding="utf-8")
