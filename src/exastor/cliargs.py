"""Arguments every store command shares, so an operator can put them where habit puts them.

``--data`` is accepted before the action and after it (``exastor user --data D list`` and
``exastor user list --data D``); `exastor --data D user list` is handled in ``exastor.cli``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from exastor.errors import CommandError

DATA_HELP = "data directory (default ./data)"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="./data", help=DATA_HELP)


def add_action(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """An action parser that also takes ``--data`` (without a default, so a ``--data`` given before
    the action is not overwritten)."""
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--data", default=argparse.SUPPRESS, help=DATA_HELP)
    return p


def existing_store(data: str | Path) -> Path:
    """The data directory of a store that exists. Commands other than `serve` never create one: a
    mistyped ``--data`` must not answer with the figures of a new, empty store."""
    path = Path(data).expanduser()
    if not (path / "meta" / "exastor.sqlite").exists():
        raise CommandError(f"no store at {path} (start one with `exastor serve --data {path}`, "
                           "or name the right directory with --data)")
    return path
