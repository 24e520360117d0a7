"""Arguments every store command shares, so an operator can put them where habit puts them.

``--data`` is accepted before the action and after it (``exastor user --data D list`` and
``exastor user list --data D``); `exastor --data D user list` is handled in ``exastor.cli``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from exastor.errors import CommandError, metadata_elsewhere

DATA_HELP = "data directory (default ./data)"


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="./data", help=DATA_HELP)


META_HELP = ("the store's metadata in PostgreSQL: postgresql://... (default: EXASTOR_META_URL, else the "
             "SQLite store in --data; with it, --data is the directory `exastor serve --meta` ran with)")


def add_meta_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--meta", dest="meta_url", default=os.environ.get("EXASTOR_META_URL", ""),
                        metavar="URL", help=META_HELP)


def add_action(sub: argparse._SubParsersAction, name: str, help: str, *,
               meta: bool = False) -> argparse.ArgumentParser:
    """An action parser that also takes ``--data`` (and, with ``meta``, ``--meta``), without a default,
    so one given before the action is not overwritten."""
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--data", default=argparse.SUPPRESS, help=DATA_HELP)
    if meta:
        p.add_argument("--meta", dest="meta_url", default=argparse.SUPPRESS, metavar="URL", help=META_HELP)
    return p


def existing_store(data: str | Path) -> Path:
    """The data directory of a store that exists. Commands other than `serve` never create one: a
    mistyped ``--data`` must not answer with the figures of a new, empty store."""
    path = Path(data).expanduser()
    elsewhere = metadata_elsewhere(path)
    if elsewhere is not None:
        raise elsewhere
    if not (path / "meta" / "exastor.sqlite").exists():  # not a drive: the metadata in --data
        raise CommandError(f"no store at {path} (start one with `exastor serve --data {path}`, "
                           "or name the right directory with --data)")
    return path


def store_directory(data: str | Path, meta_url: str | None) -> Path:
    """``--data`` of a store: with ``--meta`` the directory the gateway ran with (it holds the master
    key; the metadata is in PostgreSQL), else a store that exists (existing_store)."""
    if not meta_url:
        return existing_store(data)
    path = Path(data).expanduser()
    if not path.is_dir():  # not a drive: the master key in --data
        raise CommandError(f"no data directory at {path} (the one `exastor serve --meta ...` ran with: it holds "
                           "the master key file)")
    return path


_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6, "MIB": 2**20,
          "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40,
          "P": 10**15, "PB": 10**15, "PIB": 2**50}


def parse_size(text: str) -> int:
    """'64MiB' -> 67108864, '1.5GB' -> 1500000000, '4096' -> 4096 (an argparse type)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 64KiB, 1.5GB, 10TiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
