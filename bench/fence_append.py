"""What the segment fence costs an append (docs/design.md, "Leases and fencing"): ``LocalDrive.append``
of the same bytes to a segment-like file, unfenced (epoch 0) and fenced (epoch 1: flock, an 8-byte
pread of the file's epoch, the write, unlock). Same process, same drive, best of 4 runs alternating the two; CPU time per
append (the page cache absorbs the writes; no fsync in the loop: the fence adds nothing to one).

    python bench/fence_append.py [--out bench/results/fence_append.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

from exastor.drives import LocalDrive


def per_append_us(drive: LocalDrive, name: str, size: int, epoch: int, n: int) -> float:
    drive.create(name, bytes(64))
    buf, offset = os.urandom(size), 64
    started = time.process_time()
    for _ in range(n):
        drive.append(name, offset, buf, epoch=epoch)
        offset += size
    cpu = time.process_time() - started
    drive.unlink(name)
    return cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    drive = LocalDrive(tempfile.mkdtemp(prefix="fence-bench-") + "/d")
    drive.format(b"{}")
    results = []
    for size, n in ((4096, 20000), (262144, 2000), (4 << 20, 40)):
        best = {0: float("inf"), 1: float("inf")}
        for order in ((0, 1), (1, 0), (0, 1), (1, 0)):  # alternated: page-cache writeback must not favour one
            for e in order:
                best[e] = min(best[e], per_append_us(drive, f"segments/s{e}", size, e, n))
        row = {"bytes": size, "appends": n, "unfenced_us_cpu": round(best[0], 2), "fenced_us_cpu": round(best[1], 2),
               "fence_us_cpu": round(best[1] - best[0], 2)}
        results.append(row)
        print(f"{size:>8} B appends: unfenced {best[0]:8.1f} us CPU, fenced {best[1]:8.1f} us CPU "
              f"(+{best[1] - best[0]:.1f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
