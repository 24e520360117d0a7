"""`exastor estimate PATH | s3://bucket/prefix`: how much will my data shrink on exastor?"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from exastor.errors import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a local file or directory, or s3://bucket/prefix")
    p.add_argument("--sample", type=float, default=1.0, metavar="FRACTION",
                   help="read only this fraction of the files (chosen by a hash of their names; default 1.0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--report", metavar="DIR", help="write estimate.html and estimate.png into DIR")
    p.add_argument("--endpoint-url", help="S3 endpoint for s3:// sources (default: the AWS configuration)")
    p.add_argument("--no-encryption", action="store_true",
                   help="model a store without encryption at rest (encrypt_at_rest = false): records lose the "
                        "28 bytes of nonce and tag each encrypted one carries")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from exastor.tools.estimate.model import estimate
    from exastor.tools.estimate.sources import SourceError, open_source

    if not 0.0 < args.sample <= 1.0:
        print("--sample must be in (0, 1]", file=sys.stderr)
        return 2
    try:
        source = open_source(args.source, args.endpoint_url)
    except SourceError as exc:
        raise CommandError(str(exc)) from exc
    console = Console(stderr=True)
    columns = (TextColumn("estimating"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, disable=args.quiet or not console.is_terminal) as progress:
            task = progress.add_task("estimate", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = estimate(source, sample=args.sample, encrypted=not args.no_encryption, progress=step).to_json()
    except SourceError as exc:
        raise CommandError(str(exc), code=1) from exc
    except OSError as exc:  # a file vanished or became unreadable while being read
        raise CommandError(f"{exc.filename or args.source}: {exc.strerror or exc}", code=1) from exc
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if result["files_total"] == 0:
        raise CommandError(f"{args.source}: no files to estimate", code=1)
    if args.report:
        from exastor.tools.estimate.report import plot, write_html
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        plot(result, out / "estimate.png")
        write_html(result, out / "estimate.png", out / "estimate.html", args.source)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(title=f"exastor estimate: {result['reduction']['total']:.2f}x on {args.source}")
    for h in ("type", "files", "logical MB", "stored MB", "total", "dedupe", "compression", "float tf", "delta"):
        table.add_column(h, justify="left" if h == "type" else "right")
    rows = [*result["by_type"].items(), ("all", result)]
    for name, t in rows:
        r = t["reduction"]
        table.add_row(name, f"{t['files']:,}", f"{t['logical_bytes'] / 1e6:,.1f}", f"{t['stored_bytes'] / 1e6:,.1f}",
                      f"{r['total']:.2f}x", f"{r['dedupe']:.2f}x", f"{r['compression']:.2f}x",
                      f"{r['float_transforms']:.2f}x", f"{r['similarity_delta']:.2f}x")
    # Never cut a number: the table keeps its natural width on a narrow terminal, in a pipe or a file.
    natural = Console(width=10_000).measure(table).maximum
    Console(width=max(Console().width, natural)).print(table, crop=False, no_wrap=True)
    if args.report:
        print(f"report: {Path(args.report) / 'estimate.html'}")
    return 0
