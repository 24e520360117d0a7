"""`exastor qos set | clear | show`: rate limits of users and buckets (requests/s and bytes/s).

Token buckets shared by every gateway worker (http/qos.py); a refused request gets S3 ``503
SlowDown`` or Blob ``503 ServerBusy`` with ``Retry-After``. Workers read the limits at most once
a second, so a change takes effect within a second, without a restart.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from exastor import errors
from exastor.cliargs import add_action, add_data_argument, add_meta_argument, parse_size, store_directory
from exastor.datadir.opening import open_metadata
from exastor.errors import CommandError
from exastor.http.qos import load_limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # rate limits of a store on PostgreSQL: every gateway reads them from there
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = add_action(sub, "set", "set the rate limits of a user or a bucket (replacing those it had)", meta=True)
    s.add_argument("scope", choices=("bucket", "user"))
    s.add_argument("name")
    s.add_argument("--requests", type=float, metavar="N", help="requests per second")
    s.add_argument("--burst", type=float, metavar="N", help="requests allowed at once (default: one second's)")
    s.add_argument("--bytes", type=parse_size, metavar="SIZE", help="body bytes per second, in and out, e.g. 500MB")
    s.add_argument("--bytes-burst", type=parse_size, metavar="SIZE", help="bytes allowed at once (default: one "
                   "second's)")
    c = add_action(sub, "clear", "remove the rate limits of a user or a bucket", meta=True)
    c.add_argument("scope", choices=("bucket", "user"))
    c.add_argument("name")
    show = add_action(sub, "show", "every rate limit", meta=True)
    show.add_argument("--json", action="store_true", help="machine-readable output")


def _text(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f}"


def run(args: argparse.Namespace) -> int:
    meta = open_metadata(store_directory(args.data, args.meta_url), args.meta_url or None)
    try:
        if args.action == "set":
            values = (args.requests, args.burst, args.bytes, args.bytes_burst)
            if args.requests is None and args.bytes is None:
                raise CommandError("give --requests N, --bytes SIZE or both")
            if any(v is not None and v <= 0 for v in values):
                raise CommandError("rates and bursts must be > 0")
            try:
                meta.set_qos(args.scope, args.name, *values)
            except errors.InvalidArgument as exc:
                raise CommandError(exc.detail, code=1) from exc
            print(f"rate limits of {args.scope} {args.name}: {_text(args.requests)} requests/s "
                  f"(burst {_text(args.burst or args.requests)}), {_text(args.bytes)} bytes/s "
                  f"(burst {_text(args.bytes_burst or args.bytes)})")
        elif args.action == "clear":
            if not meta.clear_qos(args.scope, args.name):
                raise CommandError(f"{args.scope} {args.name!r} has no rate limits", code=1)
            print(f"rate limits of {args.scope} {args.name} removed")
        else:
            rows = [asdict(lim) for lim in load_limits(meta).values()]
            if args.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("no rate limits")
            else:
                print(f"{'scope':<7} {'name':<24} {'requests/s':>12} {'burst':>10} {'bytes/s':>16} {'burst':>16}")
                for r in rows:
                    print(f"{r['scope']:<7} {r['name']:<24} {_text(r['requests_per_s']):>12} "
                          f"{_text(r['requests_burst']):>10} {_text(r['bytes_per_s']):>16} {_text(r['bytes_burst']):>16}")
        return 0
    finally:
        meta.close()
