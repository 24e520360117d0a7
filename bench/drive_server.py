#!/usr/bin/env python3
"""What serving a drive over the network costs: RemoteDrive + `exastor drive-server` against
LocalDrive on the same directory's disk, same run.

Per round and per kind (local, then remote; ``--rounds`` alternations): a fresh file gets
``--mib`` MiB in 4 MiB appends (fresh random bytes) and one fsync - the open segment's write pattern -
then is read back in 4 MiB preads (from the page cache: this measures the protocol, not the disk) and
checked; then ``--small`` 4 KiB preads at random offsets (a record read's size). Reported: MB/s,
CPU-seconds per GiB of the client process and (remote) of the drive server process, and for the
4 KiB reads microseconds per read and server CPU-µs per read. Writes bench/results/drive_server.json.

    python bench/drive_server.py [--mib 256] [--rounds 2] [--small 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.smallops import tree_cpu_seconds  # noqa: E402

from exastor.drives import DriveIO, LocalDrive  # noqa: E402
from exastor.drives.remote import RemoteDrive  # noqa: E402
from exastor.drives.wire import load_key  # noqa: E402

PIECE = 4 << 20


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def run_kind(drive: DriveIO, server_pid: int | None, mib: int, small: int, seed: int, tag: str) -> dict[str, Any]:
    rng = random.Random(seed)
    pieces = [rng.randbytes(PIECE) for _ in range(mib * (1 << 20) // PIECE)]
    want = hashlib.sha256(b"".join(pieces)).hexdigest()
    name = f"segments/bench-{tag}"
    gib = len(pieces) * PIECE / (1 << 30)
    out: dict[str, Any] = {}

    c0, s0, t0 = _cpu(), tree_cpu_seconds(server_pid), time.perf_counter()
    drive.create(name, b"")
    offset = 0
    for p in pieces:
        drive.append(name, offset, p)
        offset += len(p)
    drive.fsync(name)
    wall = time.perf_counter() - t0
    out["append_fsync"] = {"MBps": round(offset / wall / 1e6, 1), "client_cpu_s_per_gib": round((_cpu() - c0) / gib, 3),
                           "server_cpu_s_per_gib": round((tree_cpu_seconds(server_pid) - s0) / gib, 3)
                           if server_pid else None}

    c0, s0, t0 = _cpu(), tree_cpu_seconds(server_pid), time.perf_counter()
    h = hashlib.sha256()
    for at in range(0, offset, PIECE):
        h.update(drive.pread(name, at, PIECE))
    wall = time.perf_counter() - t0
    cpu_client = _cpu() - c0
    assert h.hexdigest() == want, "read back differs"
    out["pread_4mib"] = {"MBps": round(offset / wall / 1e6, 1), "client_cpu_s_per_gib": round(cpu_client / gib, 3),
                         "server_cpu_s_per_gib": round((tree_cpu_seconds(server_pid) - s0) / gib, 3)
                         if server_pid else None, "note": "client CPU includes the check's SHA-256"}

    offsets = [rng.randrange(0, offset - 4096) for _ in range(small)]
    c0, s0, t0 = _cpu(), tree_cpu_seconds(server_pid), time.perf_counter()
    for at in offsets:
        drive.pread(name, at, 4096)
    wall = time.perf_counter() - t0
    out["pread_4kib"] = {"us_per_read": round(wall / small * 1e6, 1),
                         "client_cpu_us_per_read": round((_cpu() - c0) / small * 1e6, 1),
                         "server_cpu_us_per_read": round((tree_cpu_seconds(server_pid) - s0) / small * 1e6, 1)
                         if server_pid else None}
    drive.unlink(name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "drive_server.json"))
    args = ap.parse_args(argv)
    from drive_servers import DriveServerProcess, cluster_key

    with tempfile.TemporaryDirectory(dir=REPO / "bench", prefix=".drive-bench-") as tmp:
        base = Path(tmp)
        local = LocalDrive(base / "local")
        local.format(b"{}")
        server = DriveServerProcess({"remote": base / "remote"}, cluster_key(base), base / "server.log")
        server.start()
        try:
            remote = RemoteDrive(server.url("remote"), load_key(server.key_file))
            remote.format(b"{}")
            rounds = []
            for r in range(args.rounds):
                rounds.append({"round": r,
                               "local": run_kind(local, None, args.mib, args.small, r, f"l{r}"),
                               "remote": run_kind(remote, server.proc.pid, args.mib, args.small, r, f"r{r}")})
                print(rounds[-1], flush=True)
        finally:
            server.stop()
        result = {"bench": "drive_server", "when": utc_stamp(), "machine": machine_info(base),
                  "inputs": vars(args), "piece_bytes": PIECE, "rounds": rounds,
                  "loadavg_at_end": os.getloadavg()}
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
