"""The `exastor` command.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported only when their subcommand runs, so
`exastor plan` does not pay for the server's imports and the other way round.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from exastor import __version__
from exastor.errors import MetadataUnreadable
from exastor.meta.sealing import SecretsLocked

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("exastor.gateway.serve_cli", "start the S3 (and Blob) server"),
    "user": ("exastor.gateway.user_cli", "add, list and remove users and their access keys"),
    "stats": ("exastor.services.stats_cli", "logical vs physical bytes and the reduction achieved"),
    "fsck": ("exastor.services.fsck_cli", "verify every record and reference; repair; rebuild the index"),
    "drive": ("exastor.services.drive_cli", "add, remove, replace drives and show their status"),
    "estimate": ("exastor.tools.estimate.cli", "predict the reduction on your own data without storing it"),
    "scaletest": ("exastor.tools.scaletest.cli", "emulate thousands of accelerators against an S3 endpoint"),
    "plan": ("exastor.tools.plan.cli", "turn a capacity target into flash, hardware, orders and milestones"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exastor",
        description="exastor: S3 + Azure Blob object store for AI data on your own flash.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()),
    )
    parser.add_argument("--version", action="version", version=f"exastor {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv)  # prints help/version, or the usage error
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.parse_args([name])  # exits with a clear "invalid choice"
        return 2
    module_name, text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"exastor {name}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except SecretsLocked as exc:
        print(f"exastor {name}: the secrets in the metadata cannot be opened: {exc}", file=sys.stderr)
        return 2
    except MetadataUnreadable as exc:
        print(f"exastor {name}: the metadata database cannot be read ({exc}). With the server stopped, "
              "`exastor fsck --restore-meta --data DIR` installs the newest verified copy from the drives "
              "(docs/operations.md)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
