#!/usr/bin/env python3
"""4 KiB PUT, GET and HEAD through a real `exastor serve` on each metadata backend, same run.

Two servers run side by side for the whole run, one on the embedded SQLite and one with
``--meta postgresql://...`` on a throwaway PostgreSQL cluster (tests/pgcluster.py: initdb, fsync and
synchronous_commit on, Unix socket), each on one local drive directory (no redundancy) on the same
disk, each with its default worker count. A third server, a second gateway (a master of its own, its
own ``--data`` holding a copy of the first one's master key), shares the PostgreSQL database and the
drive directory of the PostgreSQL server: "two gateways" drives both together at the same total
concurrency, against the same rounds' single gateway. A fourth, the same-run baseline of the
bucket-usage fix, runs on a database of its own with ``EXASTOR_PG_USAGE_SHARDS=1``: every PUT into a
bucket updates the bucket's one usage row, as before meta/migrations/postgres/0007.

The client is bench/smallops.py's: every request pre-signed (SigV4 query) before the clock starts,
driven by aiohttp on one event loop, so the server, not the client, is measured. For each backend,
concurrency (1, 4, 16) and round, in turn: PUT N new keys (every body different), GET them, HEAD
them. The backends take turns
inside every (round, concurrency) step and the rounds repeat, so a busy moment of this shared machine
falls on both alike; the report is the median over rounds.

CPU per operation: user+system time of the whole server process tree (master, workers, anything
they fork) read from /proc before and after each phase, and separately the PostgreSQL cluster's
processes (postmaster and every backend, exited ones included through cutime). On PostgreSQL the
statements per PUT are counted with pg_stat_statements (reset before the phase, summed after).

    python bench/meta_backends.py [--rounds 5] [--counts 1:150,4:400,16:800] [--out ...]

Writes bench/results/meta_backends.json; bench/render_meta_backends.py draws the plot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

from conftest import ServerProcess, free_port  # noqa: E402
from pgcluster import PgCluster, pg_bindir  # noqa: E402

SIZE = 4096


async def drive(method: str, urls: list[str], concurrency: int) -> float:
    """Issue every request, ``concurrency`` at a time, on one keep-alive session; seconds taken.
    Every PUT body is different (random): a store that deduplicates sees new data, as it would from
    real small files, not one chunk whose reference count every PUT updates."""
    bodies = memoryview(os.urandom(SIZE * len(urls)))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        it = iter(enumerate(urls))

        async def worker() -> None:
            for i, url in it:
                if method == "PUT":
                    body = bytes(bodies[i * SIZE:(i + 1) * SIZE])
                    async with session.put(url, data=body, skip_auto_headers=["Content-Type"]) as r:
                        await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"PUT {r.status}: {await r.text()}")
                elif method == "GET":
                    async with session.get(url) as r:
                        data = await r.read()
                        if r.status != 200 or len(data) != SIZE:
                            raise RuntimeError(f"GET {r.status}")
                else:
                    async with session.head(url) as r:
                        if r.status != 200 or r.headers.get("Content-Length") != str(SIZE):
                            raise RuntimeError(f"HEAD {r.status}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


class Gateway:
    """One `exastor serve` and a pre-signing S3 client for it."""

    def __init__(self, name: str, root: Path, extra: list[str], master_key_from: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        data = root / name / "data"
        data.mkdir(parents=True)
        if master_key_from is not None:  # gateways sharing one database must share the master key
            shutil.copy2(master_key_from / "master.key", data / "master.key")
        self.server = ServerProcess(data, free_port(), free_port(), root / name / "server.log", extra_args=extra,
                                    env=env or {})
        self.server.start(timeout=120)
        self.s3 = boto3.client("s3", endpoint_url=self.server.endpoint, region_name="us-east-1",
                               aws_access_key_id=self.server.access_key,
                               aws_secret_access_key=self.server.secret_key,
                               config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def presign(self, bucket: str, keys: list[str]) -> dict[str, list[str]]:
        sign = self.s3.generate_presigned_url
        return {"PUT": [sign("put_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=7200) for k in keys],
                "GET": [sign("get_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=7200) for k in keys],
                "HEAD": [sign("head_object", Params={"Bucket": bucket, "Key": k}, ExpiresIn=7200) for k in keys]}

    def stop(self) -> None:
        self.server.stop()


class PgStats:
    """Statements executed by the cluster (pg_stat_statements), for statements per PUT."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def calls(self) -> tuple[int, list[tuple[str, int]]]:
        rows = self.conn.execute(
            "SELECT query, calls FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' "
            "ORDER BY calls DESC").fetchall()
        return sum(c for _, c in rows), [(q[:160], c) for q, c in rows[:25]]


def phase(gateways: list[Gateway], urls: list[dict[str, list[str]]], method: str, concurrency: int,
          pg_pid: int) -> dict[str, float]:
    """One method over every gateway's URLs at once (interleaved), with the CPU it cost."""
    merged = [u for group in zip(*(g[method] for g in urls), strict=True) for u in group]
    server0 = sum(tree_cpu_seconds(g.pid) for g in gateways)
    pg0 = tree_cpu_seconds(pg_pid)
    seconds = asyncio.run(drive(method, merged, concurrency))
    server = sum(tree_cpu_seconds(g.pid) for g in gateways) - server0
    pg = tree_cpu_seconds(pg_pid) - pg0
    n = len(merged)
    return {"per_s": n / seconds, "seconds": seconds, "count": n,
            "server_cpu_us_per_op": server / n * 1e6, "postgres_cpu_us_per_op": pg / n * 1e6}


def median_table(samples: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {key: {field: statistics.median(s[field] for s in runs) for field in runs[0]}
            for key, runs in samples.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--counts", default="1:150,4:400,16:800", help="concurrency:requests per phase")
    p.add_argument("--two-gateways", type=int, default=16, help="total concurrency of the two-gateway phase")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "meta_backends.json"))
    args = p.parse_args(argv)
    counts = {int(c): int(n) for c, n in (pair.split(":") for pair in args.counts.split(","))}
    bindir = pg_bindir()
    if bindir is None:
        print("PostgreSQL is not installed (initdb/pg_ctl)", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="exastor-meta-backends-"))
    cluster = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expg-", dir="/tmp")),
                        extra_options="-c shared_preload_libraries=pg_stat_statements "
                                      "-c pg_stat_statements.track=all")
    cluster.start()
    info = machine_info(root)
    gateways: list[Gateway] = []
    try:
        pg_pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        dsn = cluster.create_database("bench")
        stats = PgStats(dsn)
        drive_dir = root / "pgdrive"
        sqlite = Gateway("sqlite", root, ["--drive", str(root / "sqlitedrive")])
        gateways.append(sqlite)
        # The same-run baseline of the fix: every PUT updates the bucket's one usage row.
        pg_one_row = Gateway("postgres-1row", root, ["--meta", cluster.create_database("bench_one_row"),
                                                     "--drive", str(root / "pgdrive-1row")],
                             env={"EXASTOR_PG_USAGE_SHARDS": "1"})
        gateways.append(pg_one_row)
        pg_a = Gateway("postgres-a", root, ["--meta", dsn, "--drive", str(drive_dir)])
        gateways.append(pg_a)
        pg_b = Gateway("postgres-b", root, ["--meta", dsn, "--drive", str(drive_dir)],
                       master_key_from=pg_a.server.data_dir)
        gateways.append(pg_b)
        for g in (sqlite, pg_one_row, pg_a):
            g.s3.create_bucket(Bucket="bench")
        names = {sqlite: "sqlite", pg_one_row: "postgres_one_usage_row", pg_a: "postgres"}
        samples: dict[str, list[dict[str, float]]] = {}
        statements: dict[str, Any] = {}
        for rnd in range(args.rounds):
            for conc, n in counts.items():
                order = [sqlite, pg_one_row, pg_a][rnd % 3:] + [sqlite, pg_one_row, pg_a][:rnd % 3]
                for g in order:
                    backend = names[g]
                    keys = [f"r{rnd}/c{conc}/{i:07d}" for i in range(n)]
                    urls = g.presign("bench", keys)
                    for method in ("PUT", "GET", "HEAD"):
                        if g is not sqlite:
                            stats.reset()
                        result = phase([g], [urls], method, conc, pg_pid)
                        if g is not sqlite:
                            total, top = stats.calls()
                            result["statements_per_op"] = total / n
                            if rnd == 0 and conc == max(counts):
                                statements[f"{backend}/{method}"] = top
                        samples.setdefault(f"{backend}/{method}/{conc}", []).append(result)
                        print(f"round {rnd} {backend:22} c={conc:<2} {method:4} {result['per_s']:7.0f}/s  "
                              f"server {result['server_cpu_us_per_op']:6.0f} us/op  "
                              f"postgres {result['postgres_cpu_us_per_op']:5.0f} us/op", flush=True)
            # Two gateways (separate masters, one database, one drive directory) vs the first alone.
            conc, n = args.two_gateways, counts.get(args.two_gateways, 800)
            half = [f"r{rnd}/two/{i:07d}" for i in range(n // 2)]
            urls_a = pg_a.presign("bench", [k + "a" for k in half])
            urls_b = pg_b.presign("bench", [k + "b" for k in half])
            one = [f"r{rnd}/one/{i:07d}" for i in range(n)]
            urls_one = pg_a.presign("bench", one)
            for method in ("PUT", "GET", "HEAD"):
                for label, gs, us in ((("one", [pg_a], [urls_one]), ("two", [pg_a, pg_b], [urls_a, urls_b]))
                                      if rnd % 2 == 0 else
                                      (("two", [pg_a, pg_b], [urls_a, urls_b]), ("one", [pg_a], [urls_one]))):
                    result = phase(gs, us, method, conc, pg_pid)
                    samples.setdefault(f"gateways-{label}/{method}/{conc}", []).append(result)
                    print(f"round {rnd} {label} gateway(s) c={conc} {method:4} {result['per_s']:7.0f}/s  "
                          f"server {result['server_cpu_us_per_op']:6.0f} us/op  "
                          f"postgres {result['postgres_cpu_us_per_op']:5.0f} us/op", flush=True)
            # A write through one gateway is read through the other (the namespace is one).
            b_reads_a = pg_b.s3.head_object(Bucket="bench", Key=one[0])["ContentLength"]
            if b_reads_a != SIZE:
                raise RuntimeError("the second gateway does not see the first one's object")
        medians = median_table(samples)
        put16 = max(counts)
        ratio = medians[f"postgres/PUT/{put16}"]["per_s"] / medians[f"sqlite/PUT/{put16}"]["per_s"]
        ratio_one_row = (medians[f"postgres_one_usage_row/PUT/{put16}"]["per_s"]
                         / medians[f"sqlite/PUT/{put16}"]["per_s"])
        for g in gateways:
            if "Traceback" in g.server.log_text():
                raise RuntimeError(f"{g.name} logged a traceback:\n{g.server.log_text()[-4000:]}")
    finally:
        for g in gateways:
            g.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    info["loadavg_at_end"] = os.getloadavg()
    result = {
        "rounds": args.rounds, "counts": counts, "size": SIZE, "machine": info,
        "geometry": "each gateway: one local drive directory (no redundancy), default workers; "
                    "the two PostgreSQL gateways share one database and one drive directory",
        "postgres": "15, initdb defaults (fsync and synchronous_commit on), Unix socket, same disk; "
                    "pg_stat_statements loaded",
        "client": "aiohttp, presigned SigV4 URLs, one process",
        "medians": medians, "samples": samples, "postgres_statements_top": statements,
        "postgres_put_ratio_at_max_concurrency": ratio,
        "postgres_one_usage_row_put_ratio_at_max_concurrency": ratio_one_row,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"PostgreSQL / SQLite 4 KiB PUT at c={put16}: {ratio:.0%} (one usage row: {ratio_one_row:.0%})")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
