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
from exastor.errors import CommandError, MetadataOpenError, MetadataUnreadable
from exastor.meta.sealing import SecretsLocked

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("exastor.gateway.serve_cli", "start the S3 (and Blob) server"),
    "user": ("exastor.gateway.user_cli", "add, list and remove users and their access keys"),
    "key": ("exastor.gateway.key_cli", "encryption at rest: the data keys' status; rotate to a new key"),
    "stats": ("exastor.services.stats_cli", "logical vs physical bytes and the reduction achieved"),
    "fsck": ("exastor.services.fsck_cli", "verify every record and reference; repair; rebuild the index"),
    "drive": ("exastor.services.drive_cli", "add, remove, replace drives and show their status"),
    "drive-server": ("exastor.drives.server_cli", "serve this host's drives to the cluster's gateways"),
    "cluster": ("exastor.services.cluster_cli", "gateways and drive servers alive or down, the cluster manager"),
    "quota": ("exastor.services.quota_cli", "capacity quotas of buckets and users: set, clear, show"),
    "qos": ("exastor.services.qos_cli", "rate limits of users and buckets: set, clear, show"),
    "reduce": ("exastor.services.reduce_cli", "the background reducer: run a pass now, pause, resume, status"),
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


# Commands that work on a store's data directory: they take --data anywhere on the line.
STORE_COMMANDS = {"serve", "user", "key", "stats", "fsck", "drive", "quota", "qos", "reduce", "cluster"}


def _hoist_data(argv: list[str]) -> list[str]:
    """`exastor --data D CMD ...` means `exastor CMD --data D ...`."""
    if argv and argv[0] == "--data" and len(argv) >= 3:
        return [argv[2], "--data", argv[1], *argv[3:]]
    if argv and argv[0].startswith("--data=") and len(argv) >= 2:
        return [argv[1], argv[0], *argv[2:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = _hoist_data(list(sys.argv[1:] if argv is None else argv))
    top = _top_parser()
    if not argv or argv[0].startswith("-"):
        top.parse_args(argv)  # prints help/version, or the usage error
        return 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.parse_args([name])  # exits with a clear "invalid choice"
        return 2
    module_name, text = COMMANDS[name]
    if name not in STORE_COMMANDS and any(a == "--data" or a.startswith("--data=") for a in rest):
        print(f"exastor {name}: --data does not apply here: `exastor {name}` does not use a store's data "
              "directory", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"exastor {name}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except CommandError as exc:
        print(f"exastor {name}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"exastor {name}: interrupted", file=sys.stderr)
        return 130
    except SecretsLocked as exc:
        print(f"exastor {name}: the secrets in the metadata cannot be opened: {exc}", file=sys.stderr)
        return 2
    except MetadataUnreadable as exc:
        print(f"exastor {name}: the metadata database cannot be read ({exc}). With the server stopped, "
              "`exastor fsck --restore-meta --data DIR` installs the newest verified copy from the drives "
              "(docs/operations.md)", file=sys.stderr)
        return 2
    except MetadataOpenError as exc:
        print(f"exastor {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
