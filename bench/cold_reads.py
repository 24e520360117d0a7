#!/usr/bin/env python3
"""Scrub and degraded-GET throughput measured cold, beside the raw disk in the same run.

Geometry: 4+2 erasure coding over 6 drive directories (all on this machine's one disk), 64 MiB
segments, ``--mib`` of incompressible, unique 4 MiB objects (nothing dedupes or compresses away).

1. raw: every shard file read sequentially with plain ``read`` after its pages were evicted
   (``posix_fadvise(DONTNEED)``, residency checked with ``mincore``) - what the disk gives;
2. scrub: the same shard files evicted again, one ``Scrubber.run_once()`` in process - reported as
   MB/s and as a ratio of (1);
3. GET over HTTP (a real ``exastor serve``, boto3 clients, 4 threads; a fresh server per pass, warmed
   on one object, so no chunk cache carries over), every shard evicted before each pass: healthy, then with data shard 0 of every stripe deleted so every byte of it is decoded
   from the other k shards (the worst case for one lost drive); degraded as a ratio of healthy.
   Repair and scrub are held off meanwhile (their intervals set to a day) so the lost shards stay lost.

The server's CPU-seconds (process tree) per GiB served are recorded for each GET pass.

    python bench/cold_reads.py [--mib 512] [--work DIR] [--out bench/results/cold_reads.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from bench.lib import rawdisk  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

MiB = 1 << 20
OBJECT = 4 * MiB
BUCKET = "cold"
DRIVES, EC = 6, "4+2"


def evict(paths: list[Path]) -> float:
    """Drop these files' pages from the page cache; returns the largest fraction still resident."""
    worst = 0.0
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    for p in paths:
        frac = rawdisk.resident_fraction(p)
        worst = max(worst, frac if frac is not None else 1.0)
    return worst


def shard_files(drives: list[Path]) -> list[Path]:
    return sorted(p for d in drives for p in (d / "shards").glob("seg-*") if ".tmp" not in p.name)


def raw_read(paths: list[Path]) -> dict[str, Any]:
    resident = evict(paths)
    buf = bytearray(8 * MiB)
    total = 0
    t = time.perf_counter()
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    secs = time.perf_counter() - t
    return {"bytes": total, "seconds": round(secs, 3), "MBps": round(total / 1e6 / secs, 1),
            "resident_before": round(resident, 4)}


def fill(work: Path, mib: int) -> dict[str, str]:
    from exastor.gateway.store import open_namespace

    from exastor.namespace.operations import PutSpec, SystemGrant

    admin = SystemGrant("admin")
    drives = [str(work / f"drive{i}") for i in range(DRIVES)]
    digests: dict[str, str] = {}
    ns = open_namespace(work / "data", segment_size=64 * MiB, drives=drives, ec=EC)
    try:
        async def main() -> None:
            await ns.create_bucket(admin, BUCKET)
            for i in range(max(1, mib * MiB // OBJECT)):
                body = os.urandom(OBJECT)

                async def source(b: bytes = body) -> Any:
                    for off in range(0, len(b), MiB):
                        yield b[off:off + MiB]

                await ns.put_object(admin, BUCKET, f"big{i}", source(), PutSpec())
                digests[f"big{i}"] = hashlib.md5(body).hexdigest()

        asyncio.run(main())
        ns.chunks.log.wait_sealed()
    finally:
        ns.close()
    ns = open_namespace(work / "data", segment_size=64 * MiB, drives=drives, ec=EC)  # seals what was left open
    ns.chunks.log.wait_sealed()
    ns.close()
    return digests


def cold_scrub(work: Path, paths: list[Path]) -> dict[str, Any]:
    from exastor.gateway.store import open_namespace

    from exastor.services.scrub import Scrubber

    ns = open_namespace(work / "data", segment_size=64 * MiB,
                        drives=[str(work / f"drive{i}") for i in range(DRIVES)], ec=EC)
    try:
        resident = evict(paths)
        cpu = time.process_time()
        got = Scrubber(ns.chunks.log).run_once(mark=False)
        cpu = time.process_time() - cpu
    finally:
        ns.close()
    return {"bytes": got.bytes_read, "seconds": round(got.seconds, 3), "MBps": round(got.mb_per_s, 1),
            "shards": got.shards_checked, "bad": len(got.bad_shards), "resident_before": round(resident, 4),
            "cpu_s_per_GiB": round(cpu / (got.bytes_read / (1 << 30)), 2) if got.bytes_read else None}


def http_gets(server: Any, digests: dict[str, str], paths: list[Path], threads: int = 4) -> dict[str, Any]:
    from conftest import s3_client

    resident = evict(paths)
    keys = sorted(digests)
    bad: list[str] = []
    total = 0
    lock = threading.Lock()

    def worker(mine: list[str]) -> None:
        nonlocal total
        client = s3_client(server)
        for key in mine:
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            with lock:
                total += len(body)
                if hashlib.md5(body).hexdigest() != digests[key]:
                    bad.append(key)

    cpu = tree_cpu_seconds(server.proc.pid)
    t = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(keys[i::threads],)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=600)
    secs = time.perf_counter() - t
    cpu = tree_cpu_seconds(server.proc.pid) - cpu
    return {"bytes": total, "seconds": round(secs, 3), "MBps": round(total / 1e6 / secs, 1),
            "server_cpu_s_per_GiB": round(cpu / (total / (1 << 30)), 2) if total else None,
            "wrong_bodies": len(bad), "resident_before": round(resident, 4)}


def lose_data_shard0(work: Path) -> int:
    """Delete data shard 0 of every erasure-coded stripe (while the server is stopped)."""
    from exastor.gateway.store import open_namespace

    from exastor.engine import shards as shardfiles
    from exastor.engine.drives import load_layout

    ns = open_namespace(work / "data", segment_size=64 * MiB,
                        drives=[str(work / f"drive{i}") for i in range(DRIVES)], ec=EC)
    gone = 0
    try:
        for seg, state, _ in ns.meta.segments():
            lay = load_layout(ns.meta, seg)
            if state != "sealed" or lay is None or lay.kind != "ec":
                continue
            row = next(r for r in lay.shards if r.idx == 0)
            d = ns.chunks.log.drives.get(row.drive)
            (d.path / shardfiles.shard_name(seg, 0, row.gen)).unlink()
            gone += 1
    finally:
        ns.close()
    return gone


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=512, help="MiB of objects")
    p.add_argument("--work", help="working directory (default: a temporary one under /tmp, removed after)")
    p.add_argument("--passes", type=int, default=2, help="GET passes per case (best kept)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "cold_reads.json"))
    args = p.parse_args(argv)
    from conftest import start_server

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="exastor-cold-"))
    result: dict[str, Any] = {"when": utc_stamp(), "geometry": f"{EC} over {DRIVES} drive directories on one disk",
                              "object_bytes": OBJECT, "segment_bytes": 64 * MiB, "machine": machine_info(work)}
    try:
        digests = fill(work, args.mib)
        drives = [work / f"drive{i}" for i in range(DRIVES)]
        paths = shard_files(drives)
        result["objects"], result["shard_files"] = len(digests), len(paths)
        result["raw"] = raw_read(paths)
        result["scrub"] = cold_scrub(work, paths)
        result["scrub_vs_raw"] = round(result["scrub"]["MBps"] / result["raw"]["MBps"], 3)
        args_ = [a for d in drives for a in ("--drive", str(d))] + ["--ec", EC]
        env = {"EXASTOR_SEGMENT_SIZE": str(64 * MiB), "EXASTOR_REPAIR_INTERVAL": "86400",
               "EXASTOR_SCRUB_INTERVAL": "86400"}
        server = start_server(work, *args_, env=env)
        server.stop()

        def passes(label: str) -> None:
            # A fresh server per pass (no chunk cache carried over), warmed on one object, then every
            # shard evicted; best of --passes.
            runs = []
            for _ in range(args.passes):
                server.start()
                try:
                    http_gets(server, {k: digests[k] for k in sorted(digests)[:1]}, [], threads=1)
                    runs.append(http_gets(server, digests, shard_files(drives)))
                finally:
                    server.stop()
            result[label] = max(runs, key=lambda r: r["MBps"])
            result[label]["MBps_each"] = [r["MBps"] for r in runs]

        passes("get_healthy")
        result["shards_deleted"] = lose_data_shard0(work)
        paths = shard_files(drives)
        passes("get_degraded")
        result["degraded_vs_healthy"] = round(result["get_degraded"]["MBps"] / result["get_healthy"]["MBps"], 3)
        result["raw_again"] = raw_read(paths)  # the disk after the run: did it change under us?
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    write_result(args.out, result)
    print({k: result[k] for k in ("raw", "scrub", "scrub_vs_raw", "get_healthy", "get_degraded",
                                  "degraded_vs_healthy") if k in result})
    bad = result.get("get_healthy", {}).get("wrong_bodies", 0) + result.get("get_degraded", {}).get("wrong_bodies", 0)
    return 1 if bad or result.get("scrub", {}).get("bad") else 0


if __name__ == "__main__":
    sys.exit(main())
