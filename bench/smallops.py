#!/usr/bin/env python3
"""4 KiB PUT and GET rate at concurrency 16, with a client cheap enough to measure the server.

boto3 spends ~1-2 ms of client CPU per request, so on a 2-core machine a boto3 load generator
measures itself, not the server. This client pre-signs every request with botocore's SigV4
query signer (the same signature any S3 client sends) before the clock starts, then drives
them with aiohttp on one event loop in its own process. Each run also records the server's
CPU time per request (from /proc), a number that survives a noisy machine.

    python bench/smallops.py --endpoint http://127.0.0.1:9000 --access-key K --secret-key S \
        [--server-pid PID] [--count 20000] [--label exastor] [--out bench/results/smallops-exastor.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path

import aiohttp
import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402


async def drive(method: str, urls: list[str], body: bytes, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        it = iter(urls)

        async def worker() -> None:
            for url in it:
                if method == "PUT":
                    async with session.put(url, data=body, skip_auto_headers=["Content-Type"]) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"PUT {r.status}: {await r.text()}")
                else:
                    async with session.get(url) as r:
                        data = await r.read()
                        if r.status != 200 or len(data) != len(body):
                            raise RuntimeError(f"GET {r.status}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--server-pid", type=int)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--label", default="server")
    p.add_argument("--out")
    args = p.parse_args(argv)
    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name=args.region,
                      aws_access_key_id=args.access_key, aws_secret_access_key=args.secret_key,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    bucket = f"smallops-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(4096)
    keys = [f"obj/{i:07d}" for i in range(args.count)]
    puts = [s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=3600) for k in keys]
    gets = [s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=3600) for k in keys]
    result: dict = {"label": args.label, "endpoint": args.endpoint, "machine": machine_info(),
                    "inputs": {"count": args.count, "size": 4096, "concurrency": args.concurrency,
                               "client": "aiohttp, presigned SigV4 URLs, one process"}}
    for method, urls in (("PUT", puts), ("GET", gets)):
        cpu0 = tree_cpu_seconds(args.server_pid)
        secs = asyncio.run(drive(method, urls, body, args.concurrency))
        cpu = tree_cpu_seconds(args.server_pid) - cpu0
        result[method] = {"per_s": args.count / secs, "seconds": secs,
                          "server_cpu_us_per_request": (cpu / args.count * 1e6) if args.server_pid else None}
        print(f"{args.label}: 4 KiB {method} {args.count / secs:,.0f}/s"
              + (f", server CPU {cpu / args.count * 1e6:,.0f} us/request" if args.server_pid else ""))
    out = Path(args.out or REPO / "bench" / "results" / f"smallops-{args.label}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
    s3.delete_bucket(Bucket=bucket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
