#!/usr/bin/env python3
"""What a metadata copy costs (services/metabackup.py), to size ``meta_backup_interval``.

Builds a store in-process with ``--objects`` small objects (each its own chunk: the database grows
by an object row, a chunk row and a manifest per object), then, in the same run:

- takes a copy onto two drive directories (SQLite online backup + BLAKE3 + fsync + rename, then a
  file copy to the second drive) against a baseline: copying the same database file to two
  places with cp-style reads and writes plus fsync;
- verifies it the way a restore does (BLAKE3 + ``PRAGMA quick_check``);
- measures small PUTs per second in-process, alone and while copies run back to back (the worst
  case: a copy every instant instead of one per interval).

    python bench/meta_copy.py [--objects 100000] [--seconds 5] [--data-dir DIR]

Writes bench/results/meta_copy.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402

BODY = 1024


async def _one(data: bytes):
    yield data


def _admin() -> Any:
    from exastor.namespace.operations import SystemGrant
    return SystemGrant("admin")  # the namespace used directly, outside any request


async def _fill(ns: Any, count: int, start: int = 0, concurrency: int = 64) -> None:
    from exastor.namespace.operations import PutSpec

    async def put(i: int) -> None:
        await ns.put_object(_admin(), "meta", f"obj/{i:09d}", _one(i.to_bytes(8, "little") * (BODY // 8)),
                            PutSpec())

    for lo in range(start, start + count, concurrency):
        await asyncio.gather(*(put(i) for i in range(lo, min(lo + concurrency, start + count))))


async def _put_rate(ns: Any, seconds: float, start: int) -> float:
    """Small PUTs per second for ``seconds``, 64 in flight."""
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await _fill(ns, 256, start + done)
        done += 256
    return done / (time.perf_counter() - t0)


def _raw_copy(db: Path, targets: list[Path]) -> float:
    t0 = time.perf_counter()
    for target in targets:
        target.mkdir(parents=True, exist_ok=True)
        dst = target / "raw-copy.sqlite"
        shutil.copyfile(db, dst)
        with open(dst, "rb+") as f:
            os.fsync(f.fileno())
        dst.unlink()
    return time.perf_counter() - t0


async def _run(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    from exastor.datadir.opening import open_namespace
    from exastor.services import metabackup

    out: dict[str, Any] = {}
    ns = open_namespace(base / "data")
    db = base / "data" / "meta" / "exastor.sqlite"
    drives = [base / "copy0", base / "copy1"]
    try:
        await ns.create_bucket(_admin(), "meta")
        t0 = time.perf_counter()
        await _fill(ns, args.objects)
        out["fill_s"] = round(time.perf_counter() - t0, 1)
        with sqlite3.connect(db) as con:  # fold the WAL in: the copy's size is the database's
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.stat().st_size
        out["db_bytes"] = size
        raw_s = min(_raw_copy(db, drives) for _ in range(3))
        copy_s, verify_s = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            made = metabackup.take(db, drives)
            copy_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            assert made[-1].verify() is None
            verify_s.append(time.perf_counter() - t0)
        out.update(copy_s=round(min(copy_s), 3), raw_copy_s=round(raw_s, 3),
                   copy_vs_raw=round(min(copy_s) / raw_s, 2), copy_MBps=round(2 * size / min(copy_s) / 1e6, 1),
                   verify_s=round(min(verify_s), 3))
        print(f"database {size / 1e6:,.1f} MB ({args.objects:,} objects): copy onto 2 drives "
              f"{min(copy_s):.2f} s vs raw cp+fsync {raw_s:.2f} s; verify {min(verify_s):.2f} s", flush=True)

        start = args.objects
        alone = await _put_rate(ns, args.seconds, start)
        start += int(alone * args.seconds) + 1024
        stop, copies = threading.Event(), [0]

        def copier() -> None:
            while not stop.is_set():
                metabackup.take(db, drives)
                copies[0] += 1

        thread = threading.Thread(target=copier)
        thread.start()
        try:
            during = await _put_rate(ns, args.seconds, start)
        finally:
            stop.set()
            thread.join()
        out.update(put_per_s_alone=round(alone), put_per_s_copying=round(during),
                   put_ratio_copying=round(during / alone, 3), copies_during=copies[0])
        print(f"small PUTs: {alone:,.0f}/s alone, {during:,.0f}/s while copying back to back "
              f"({copies[0]} copies, {during / alone:.0%})", flush=True)
    finally:
        ns.close()
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="exastor-metacopy-", dir=REPO))
    result: dict[str, Any] = {"label": "meta_copy", "started_at": utc_stamp(), "machine": machine_info(base),
                              "inputs": {"objects": args.objects, "object_bytes": BODY, "seconds": args.seconds}}
    try:
        result.update(asyncio.run(_run(base, args)))
    finally:
        if not args.data_dir:
            shutil.rmtree(base, ignore_errors=True)
    result["finished_at"] = utc_stamp()
    result["loadavg_at_end"] = os.getloadavg()
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--data-dir")
    p.add_argument("--out", default=str(REPO / "bench/results/meta_copy.json"))
    args = p.parse_args()
    write_result(args.out, measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
