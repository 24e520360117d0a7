#!/usr/bin/env python3
"""What the metadata journal (meta/journal.py) costs small PUTs, against the same server without it.

Two servers run side by side, the same geometry, one with ``meta_journal`` on (the default) and one
with it off; rounds of 4 KiB PUTs at concurrency 16 alternate between them (so a busy moment of this
shared machine falls on both alike), each followed by as many GETs. Reported per mode: the median
PUT and GET rate and the server CPU per request (from /proc, the whole process tree).

    python bench/meta_journal.py [--drives 6 --ec 4+2] [--count 3000] [--rounds 4]

Writes bench/results/meta_journal-<drives>d.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.smallops import drive, tree_cpu_seconds  # noqa: E402

from conftest import start_server  # noqa: E402


def _presigned(server, count: int) -> tuple[list[str], list[str], str]:
    s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                      aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    bucket = f"journal-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    keys = [f"o/{i:07d}" for i in range(count)]
    puts = [s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=3600) for k in keys]
    gets = [s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=3600) for k in keys]
    return puts, gets, bucket


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drives", type=int, default=6)
    p.add_argument("--ec", default="4+2")
    p.add_argument("--count", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--out")
    args = p.parse_args(argv)
    body = os.urandom(4096)
    work = Path(tempfile.mkdtemp(prefix="exastor-journal-bench-"))
    servers = {}
    try:
        for mode in ("off", "on"):
            root = work / mode
            drive_args = [a for i in range(args.drives) for a in ("--drive", str(root / f"d{i}"))]
            ec = ["--ec", args.ec] if args.drives > 1 else []
            servers[mode] = start_server(root, *drive_args, *ec, env={
                "EXASTOR_META_JOURNAL": "1" if mode == "on" else "0", "EXASTOR_WORKERS": "2",
                "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_GC_INTERVAL": "0"})
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                server = servers[mode]
                puts, gets, _ = _presigned(server, args.count)
                row: dict[str, float] = {}
                for method, urls in (("PUT", puts), ("GET", gets)):
                    cpu0 = tree_cpu_seconds(server.proc.pid)
                    secs = asyncio.run(drive(method, urls, body, args.concurrency))
                    cpu = tree_cpu_seconds(server.proc.pid) - cpu0
                    row[f"{method}_per_s"] = args.count / secs
                    row[f"{method}_cpu_us"] = cpu / args.count * 1e6
                runs[mode].append(row)
                print(f"round {r} journal {mode}: PUT {row['PUT_per_s']:,.0f}/s ({row['PUT_cpu_us']:,.0f} us CPU), "
                      f"GET {row['GET_per_s']:,.0f}/s", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    summary = {mode: {k: statistics.median(r[k] for r in rows) for k in rows[0]} for mode, rows in runs.items()}
    cost = {"PUT_rate_ratio": summary["on"]["PUT_per_s"] / summary["off"]["PUT_per_s"],
            "PUT_cpu_ratio": summary["on"]["PUT_cpu_us"] / summary["off"]["PUT_cpu_us"],
            "GET_rate_ratio": summary["on"]["GET_per_s"] / summary["off"]["GET_per_s"]}
    result = {"machine": machine_info(),
              "geometry": {"drives": args.drives, "ec": args.ec if args.drives > 1 else "1+0",
                           "journal_copies": "m+1 drives", "workers": 2},
              "inputs": {"count": args.count, "rounds": args.rounds, "concurrency": args.concurrency, "size": 4096,
                         "client": "aiohttp, presigned SigV4 URLs (bench/smallops.py)"},
              "runs": runs, "median": summary, "journal_vs_off": cost}
    print(json.dumps({"median": summary, "journal_vs_off": cost}, indent=2))
    out = Path(args.out or REPO / "bench" / "results" / f"meta_journal-{args.drives}d.json")
    out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
