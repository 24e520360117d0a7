#!/usr/bin/env python3
"""CPU of sealing one segment: a ~60 MiB open segment of fresh records on N local drives, sealed into
its erasure-coded stripe, process CPU (every thread: reading the replicas, coding, writing and
fsyncing the shards, the commit) per GiB sealed. Small objects reach their final form this way
(large ones are written as full stripes and never sealed).

    .venv/bin/python bench/seal_cost.py [--drives 6 --ec 4+2 --trials 3] [--out JSON]

Compare builds by running each build's interpreter on this file (it imports exastor from the
interpreter's environment), e.g. ``/work/wt/prev/.venv/bin/python bench/seal_cost.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blake3

from exastor.datadir.opening import open_metadata
from exastor.engine.drives import DriveSet, load_layout
from exastor.engine.record import CODEC_RAW, encode
from exastor.engine.segments import SegmentLog

GiB = 1 << 30


def process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one(where: Path, drives_n: int, ec: str, seed: int) -> dict[str, float]:
    meta = open_metadata(where / "data")
    drives = DriveSet(meta, [where / f"d{i}" for i in range(drives_n)], ec=ec, base=where / "data")
    log = SegmentLog(drives, meta, max_size=64 << 20)
    try:
        rng = random.Random(seed)
        size, seg = 0, 0
        while size < (60 << 20):
            data = rng.randbytes(rng.randint(30_000, 200_000))
            rec = encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data
            seg, off = log.append(rec)
            size = off + len(rec)
        log.sync(seg, size)
        subprocess.run(["sync"], check=False)  # earlier writeback not charged to the seal
        c0, t0 = process_cpu(), time.perf_counter()
        log.seal(seg, size)
        cpu, wall = process_cpu() - c0, time.perf_counter() - t0
        lay = load_layout(meta, seg)
        assert lay is not None and lay.kind == "ec", "the segment was not sealed into a stripe"
        return {"cpu_s_per_GiB": cpu / (size / GiB), "wall_s": wall, "bytes": size, "shard_len": lay.shard_len}
    finally:
        log.close()
        meta.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--drives", type=int, default=6)
    p.add_argument("--ec", default="4+2")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "results" / "tmp")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)  # closing the log after a direct seal complains about its replicas
    args.workdir.mkdir(parents=True, exist_ok=True)
    trials = []
    for t in range(args.trials):
        where = Path(tempfile.mkdtemp(prefix="seal_cost.", dir=args.workdir))
        try:
            trials.append(one(where, args.drives, args.ec, t))
        finally:
            shutil.rmtree(where, ignore_errors=True)
    import exastor
    result = {"benchmark": "seal_cost", "exastor": str(Path(exastor.__file__).parent), "python": sys.executable,
              "drives": args.drives, "ec": args.ec, "trials": trials,
              "median_cpu_s_per_GiB": statistics.median(t["cpu_s_per_GiB"] for t in trials)}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
