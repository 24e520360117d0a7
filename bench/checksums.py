#!/usr/bin/env python3
"""CPU cost per GiB of each S3 flexible-checksum algorithm, as the server computes it.

Every S3 PUT body is hashed by the MD5 of its ETag and by one flexible checksum (the one the client
sends, else CRC64NVME, which the server stores for every object): this measures each algorithm's
compiled implementation (exastor.http.checksums, the code the S3 front-end calls) in CPU-seconds per
GiB, with MD5 in the same run as the baseline every PUT pays anyway, and the cost of combining
10,000 part CRCs into a FULL_OBJECT checksum (what CompleteMultipartUpload does instead of reading
the object again). In-process, one thread, CPU time (time.process_time), best of ``--repeat``.

    python bench/checksums.py [--mib 256] [--repeat 3] [--out bench/results/checksums.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from exastor.http import checksums  # noqa: E402

BUFFER = 8 << 20  # what the server hands a digester at a time is smaller; 8 MiB keeps call overhead out


def cpu_s_per_gib(algorithm: str, data: memoryview, total: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        ck = checksums.new_checksum(algorithm)
        start = time.process_time()
        done = 0
        while done < total:
            ck.update(data)
            done += len(data)
        ck.digest()
        best = min(best, time.process_time() - start)
    return best * (1 << 30) / total


def combine_cost(algorithm: str, parts: int, repeat: int) -> float:
    digest = checksums.digest_of(algorithm, b"part")
    listed = [(digest, 8 << 20)] * parts
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        checksums.combine(algorithm, listed)
        best = min(best, time.process_time() - start)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mib", type=int, default=256, help="bytes hashed per algorithm and repeat")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "checksums.json")
    args = p.parse_args()
    data = memoryview(os.urandom(BUFFER))
    total = args.mib << 20
    rows = {alg: round(cpu_s_per_gib(alg, data, total, args.repeat), 4) for alg in checksums.ALGORITHMS}
    combined = {alg: round(combine_cost(alg, 10_000, args.repeat) * 1000, 3) for alg in checksums.COMBINABLE}
    result = {"what": "CPU-seconds per GiB hashed, one thread, in-process (exastor.http.checksums)",
              "mib_per_run": args.mib, "repeat": args.repeat, "cpu_s_per_gib": rows,
              "baseline_md5_cpu_s_per_gib": rows["MD5"],
              "combine_10000_parts_ms": combined, "cpus": os.cpu_count(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for alg, cost in rows.items():
        print(f"{alg:10s} {cost:8.4f} CPU-s/GiB  ({cost / rows['MD5']:.2f}x MD5)")
    for alg, ms in combined.items():
        print(f"combine {alg} over 10,000 parts: {ms} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
