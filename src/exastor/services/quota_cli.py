"""`exastor quota set | clear | show`: capacity quotas of buckets (containers) and users.

A quota bounds logical bytes (what clients stored, every version counted, as `exastor stats`) and
optionally object versions; a user's quota bounds all the buckets the user owns together. Writes
that would pass one are refused inside their metadata transaction (meta/contract.py, check_quotas)
with 403 QuotaExceeded, on S3 and Blob alike; data already above a lowered quota stays.
"""

from __future__ import annotations

import argparse
import json

from exastor import errors
from exastor.cliargs import add_action, add_data_argument, add_meta_argument, parse_size, store_directory
from exastor.datadir.opening import open_metadata
from exastor.errors import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # quotas of a store on PostgreSQL: every gateway enforces them in its write transactions
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = add_action(sub, "set", "set the quota of a bucket or a user (replacing the one it had)", meta=True)
    s.add_argument("scope", choices=("bucket", "user"))
    s.add_argument("name")
    s.add_argument("--bytes", type=parse_size, metavar="SIZE", help="logical bytes, e.g. 500GB, 10TiB")
    s.add_argument("--objects", type=int, metavar="N", help="object versions")
    c = add_action(sub, "clear", "remove the quota of a bucket or a user", meta=True)
    c.add_argument("scope", choices=("bucket", "user"))
    c.add_argument("name")
    show = add_action(sub, "show", "every quota with its use", meta=True)
    show.add_argument("--json", action="store_true", help="machine-readable output")


def _limit(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def run(args: argparse.Namespace) -> int:
    meta = open_metadata(store_directory(args.data, args.meta_url), args.meta_url or None)
    try:
        if args.action == "set":
            if args.bytes is None and args.objects is None:
                raise CommandError("give --bytes SIZE, --objects N or both")
            if (args.bytes is not None and args.bytes < 0) or (args.objects is not None and args.objects < 0):
                raise CommandError("a quota must be >= 0")
            try:
                meta.set_quota(args.scope, args.name, args.bytes, args.objects)
            except errors.BucketNotFound as exc:
                raise CommandError(f"no bucket {args.name!r}", code=1) from exc
            except errors.InvalidArgument as exc:
                raise CommandError(exc.detail, code=1) from exc
            print(f"quota of {args.scope} {args.name}: {_limit(args.bytes)} bytes, {_limit(args.objects)} objects")
        elif args.action == "clear":
            if not meta.clear_quota(args.scope, args.name):
                raise CommandError(f"{args.scope} {args.name!r} has no quota", code=1)
            print(f"quota of {args.scope} {args.name} removed")
        else:
            rows = meta.quotas()
            if args.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("no quotas")
            else:
                print(f"{'scope':<7} {'name':<24} {'used bytes':>20} {'max bytes':>20} {'objects':>12} {'max':>12}")
                for r in rows:
                    print(f"{r['scope']:<7} {r['name']:<24} {r['used_bytes']:>20,} {_limit(r['max_bytes']):>20} "
                          f"{r['used_objects']:>12,} {_limit(r['max_objects']):>12}")
        return 0
    finally:
        meta.close()
