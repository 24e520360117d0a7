"""`exastor plan INPUT.yaml`: from an exabyte target to flash, hardware, orders and milestones."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def _unwritable(path: str) -> str | None:
    """Why a result file cannot be written at ``path``, or None."""
    target = Path(path).expanduser()
    folder = target.parent
    if target.is_dir():
        return "is a directory"
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="plan input, YAML (.yaml/.yml) or TOML (.toml); see docs/planner.md")
    parser.add_argument("--today", type=_date, default=None,
                        help="plan as of this date, YYYY-MM-DD (default: the real date)")
    parser.add_argument("--json", metavar="OUT.json", help="write every result as JSON")
    parser.add_argument("--report", metavar="OUT.html",
                        help="write an HTML report with plots (PNGs are also written beside it)")
    parser.add_argument("--scenarios", type=int, default=100_000,
                        help="Monte Carlo scenarios for milestone risk (default 100000; 0 skips it)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the Monte Carlo (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no terminal summary")


def run(args: argparse.Namespace) -> int:
    from exastor.tools.plan.analyze import analyze
    from exastor.tools.plan.model import PlanInputError, load_plan
    from exastor.tools.plan.report import print_summary, write_html, write_json

    err = Console(stderr=True)
    # The tables are wide; when writing to a file or pipe, do not squeeze them to 80 columns.
    console = Console() if Console().is_terminal else Console(width=160)
    if args.scenarios < 0:
        err.print("[red]--scenarios must be >= 0")
        return 2
    for flag, out in (("--json", args.json), ("--report", args.report)):
        problem = _unwritable(out) if out else None
        if problem:  # checked before the work, not found after the summary was printed
            err.print(f"[red]exastor plan: {flag} {out}: {problem}", soft_wrap=True)
            return 2
    try:
        plan = load_plan(args.input)
    except PlanInputError as exc:
        err.print(f"[bold red]exastor plan: {args.input}: invalid input[/]")
        for problem in exc.problems:
            err.print(f"  - {problem}")
        return 2
    today = args.today or dt.date.today()
    if today >= plan.phases[-1].online_by:
        err.print(f"[red]exastor plan: every milestone is before --today {today}; nothing to plan")
        return 2

    with Progress(TextColumn("Monte Carlo {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        tasks: dict[str, TaskID] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done)

        outcome = analyze(plan, today, scenarios=args.scenarios, seed=args.seed, progress=tick)

    if not args.quiet:
        print_summary(outcome, console)
    if args.json:
        write_json(outcome, args.json)
        err.print(f"wrote {args.json}")
    if args.report:
        for path in write_html(outcome, args.report):
            err.print(f"wrote {path}")
    # Exit 1 when the chosen plan misses a milestone, so scripts and CI can react.
    return 1 if outcome.primary.gaps else 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="exastor plan")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
