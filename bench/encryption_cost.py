#!/usr/bin/env python3
"""What encryption at rest costs the server: CPU-seconds per GiB of large PUTs and GETs with
``--encrypt-at-rest on`` (AES-256-GCM below the reduction, engine/encryption.py) vs ``off``.

For each geometry (by default one drive, and 4+2 erasure coding over 6 drive directories) it starts
two exastor servers (2 workers each), one encrypting and one not, and in the same run interleaves
the work between them as finely as the CPU clock allows, so both see the same share of whatever
else the machine runs: in each of ``--rounds`` rounds, every fresh random object of ``--size`` MiB
(incompressible, dedupe-proof) is PUT with boto3 to one server then the other (which goes first
alternates), then the round's ``--objects`` objects are read back from one server then the other,
``--gets`` times warm (the segment files in the page cache, as just written) and ``--gets`` times
cold (after both stores' files were dropped from the page cache: fdatasync, then
POSIX_FADV_DONTNEED, so the server reads from the device as a store larger than memory does).

Server CPU is the whole process tree's from /proc (10 ms ticks: a sample is one 64 MiB PUT, or one
read of a round's objects, 256 MiB, so a tick is under 4% of a sample and far less of a total);
CPU-s/GiB is the figure to read on a shared machine. The cost is given three ways: the ratio of the
totals, the ratio of the sample medians, and the mean of the paired samples' ratios (the same step
on each server, back to back) with a 95% confidence interval (Student's t).

    python bench/encryption_cost.py [--size 64] [--objects 4] [--rounds 8] [--gets 3]

Writes bench/results/encryption_cost.json.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib import datagen  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.tls_cost import GiB, MiB, Server, client_cpu  # noqa: E402

GEOMETRIES = {"1 drive": (1, ""), "4+2 over 6 drives": (6, "4+2")}
PHASES = ("put", "get_warm", "get_cold")
# Student's t, two-sided 95%, by degrees of freedom (rounds - 1)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045, 39: 2.023,
       59: 2.001, 119: 1.980}


def drop_page_cache(root: Path) -> int:
    """Evict every file under ``root`` (a store's data and drive directories) from the page cache:
    written back first (fdatasync: DONTNEED leaves dirty pages), then POSIX_FADV_DONTNEED. Returns
    the bytes advised. The next read of them goes to the device."""
    advised = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # removed meanwhile (a temporary file)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            advised += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return advised


class Bench:
    """One server's bucket and its tallies: ``measure`` runs one step and adds its bytes, wall time
    and the server's and client's CPU to the phase's total and to its list of samples."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.s3 = server.client()
        self.bucket = f"enc-{secrets.token_hex(4)}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.tally: dict[str, dict[str, float]] = {}
        self.samples: dict[str, list[float]] = {}  # phase -> server CPU-s/GiB of each step, in order
        self.keys: list[str] = []

    def measure(self, phase: str, step) -> None:  # noqa: ANN001
        cpu0, ccpu0, t0 = self.server.cpu(), client_cpu(), time.perf_counter()
        moved = step()
        seconds, server_cpu = time.perf_counter() - t0, self.server.cpu() - cpu0
        entry = self.tally.setdefault(phase, {"bytes": 0, "seconds": 0.0, "server_cpu_s": 0.0, "client_cpu_s": 0.0})
        entry["bytes"] += moved
        entry["seconds"] += seconds
        entry["server_cpu_s"] += server_cpu
        entry["client_cpu_s"] += client_cpu() - ccpu0
        self.samples.setdefault(phase, []).append(server_cpu / (moved / GiB))

    def put(self, key: str, body: bytes) -> int:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        self.keys.append(key)
        return len(body)

    def get_all(self, keys: list[str]) -> int:
        moved = 0
        for key in keys:
            for piece in self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].iter_chunks(4 * MiB):
                moved += len(piece)
        return moved


def run_round(benches: dict[str, Bench], r: int, size: int, objects: int, gets: int) -> None:
    """One round, interleaved finely so both servers see the same machine: each fresh random object
    is PUT to one server then the other (which goes first alternates); then ``gets`` times the
    round's objects are read back from one server then the other, with the page cache as the PUTs
    left it (warm), then ``gets`` times after dropping both stores' files from it (cold). A sample
    is one object's PUT, or one read of the round's objects (``objects x size``)."""
    modes = list(benches)
    keys = [f"r{r}-o{i}" for i in range(objects)]
    for i, key in enumerate(keys):
        body = datagen.payload(size, "random")  # made before the clock starts; fresh: no dedupe
        for mode in (modes if (r + i) % 2 == 0 else modes[::-1]):
            benches[mode].measure("put", lambda b=benches[mode], k=key, d=body: b.put(k, d))
    for phase in ("get_warm", "get_cold"):
        for g in range(gets):
            if phase == "get_cold":
                for bench in benches.values():  # outside the measured steps; the server's CPU is what counts
                    drop_page_cache(bench.server.data.parent)
            for mode in (modes if (r + g) % 2 == 0 else modes[::-1]):
                benches[mode].measure(phase, lambda b=benches[mode]: b.get_all(keys))


def paired(on: list[float], off: list[float]) -> dict[str, float]:
    """Mean of the paired samples' ratios on/off (the same step on each server, back to back) and
    its 95% confidence interval."""
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    mean = statistics.fmean(ratios)
    half = 0.0
    if len(ratios) > 1:
        df = len(ratios) - 1
        t = T95.get(df) or T95[max(k for k in T95 if k <= df)]
        half = t * statistics.stdev(ratios) / math.sqrt(len(ratios))
    return {"mean_ratio": mean, "ci95_low": mean - half, "ci95_high": mean + half, "samples": len(ratios)}


def aes_gcm_floor(total: int = 256 * MiB, record: int = 80 << 10) -> dict[str, float]:
    """CPU-s/GiB of AES-256-GCM alone (cryptography/OpenSSL) over records of the chunker's mean
    size: the least any at-rest encryption of these bytes can cost on this CPU, per direction."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, data, ad = AESGCM(os.urandom(32)), os.urandom(record), bytes(48)
    nonce = os.urandom(12)
    count = total // record
    sealed = aead.encrypt(nonce, data, ad)
    for _ in range(count // 4):  # warm up first: the first loop timed otherwise pays the CPU's clock ramp
        aead.decrypt(nonce, aead.encrypt(nonce, data, ad), ad)
    t0 = time.process_time()
    for _ in range(count):  # each result dropped at once: the allocator reuses it, as a request's would be
        sealed = aead.encrypt(nonce, data, ad)
    t1 = time.process_time()
    for _ in range(count):
        aead.decrypt(nonce, sealed, ad)
    t2 = time.process_time()
    gib = count * record / GiB
    return {"encrypt_cpu_s_per_GiB": (t1 - t0) / gib, "decrypt_cpu_s_per_GiB": (t2 - t1) / gib, "record_bytes": record}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=64, help="object size, MiB")
    ap.add_argument("--objects", type=int, default=4, help="objects per round")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--gets", type=int, default=3, help="GETs of every object per round, warm and cold each")
    ap.add_argument("--geometry", action="append", choices=list(GEOMETRIES),
                    help="repeatable; default: every geometry")
    ap.add_argument("--work", help="directory for the stores (default: a temporary one)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "encryption_cost.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="exastor-enc-"))
    try:
        return measure(args, work)
    finally:
        if not args.work:  # several GiB per run: never left behind in /tmp
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> int:
    load0 = os.getloadavg()[0]
    rows: dict[str, Any] = {}
    for geometry in args.geometry or list(GEOMETRIES):
        drives, ec = GEOMETRIES[geometry]
        tag = geometry.split()[0]
        servers = {mode: Server(work, f"{tag}-{mode}", drives, ec, tls=False, extra=("--encrypt-at-rest", mode))
                   for mode in ("off", "on")}
        try:
            benches = {mode: Bench(server) for mode, server in servers.items()}
            for r in range(args.rounds):
                run_round(benches, r, args.size * MiB, args.objects, args.gets)
        finally:
            for server in servers.values():
                server.stop()
        for mode, bench in benches.items():
            for phase, t in bench.tally.items():
                gib = t["bytes"] / GiB
                samples = bench.samples[phase]
                rows[f"{geometry}/{phase}/encrypt_{mode}"] = {
                    **t, "MBps": t["bytes"] / t["seconds"] / 1e6, "server_cpu_s_per_GiB": t["server_cpu_s"] / gib,
                    "client_cpu_s_per_GiB": t["client_cpu_s"] / gib, "samples_server_cpu_s_per_GiB": samples,
                    "median_server_cpu_s_per_GiB": statistics.median(samples)}
        print(f"{geometry}, 2 workers; {args.rounds} rounds x {args.objects} x {args.size} MiB random per server, "
              f"each GET phase {args.gets} x")
        print(f"{'':22} {'MB/s':>8} {'server CPU-s/GiB':>17}")
        for phase in PHASES:
            off, on = rows[f"{geometry}/{phase}/encrypt_off"], rows[f"{geometry}/{phase}/encrypt_on"]
            for mode, row in (("off", off), ("on", on)):
                print(f"{phase:8} encrypt {mode:4} {row['MBps']:8.0f} {row['server_cpu_s_per_GiB']:17.3f}")
            pair = paired(on["samples_server_cpu_s_per_GiB"], off["samples_server_cpu_s_per_GiB"])
            cost = {"server_cpu_s_per_GiB": on["server_cpu_s_per_GiB"] - off["server_cpu_s_per_GiB"],
                    "server_ratio": on["server_cpu_s_per_GiB"] / off["server_cpu_s_per_GiB"],
                    "median_ratio": on["median_server_cpu_s_per_GiB"] / off["median_server_cpu_s_per_GiB"],
                    "paired": pair}
            rows[f"{geometry}/{phase}/encryption_extra"] = cost
            print(f"{phase} encryption adds {cost['server_cpu_s_per_GiB']:.3f} server CPU-s/GiB "
                  f"({cost['server_ratio'] - 1:+.1%}; sample medians {cost['median_ratio'] - 1:+.1%}; paired samples "
                  f"{pair['mean_ratio'] - 1:+.1%} [{pair['ci95_low'] - 1:+.1%}, {pair['ci95_high'] - 1:+.1%}] 95% CI)")
    floor = aes_gcm_floor()
    print(f"AES-256-GCM alone, {floor['record_bytes'] >> 10} KiB records: encrypt {floor['encrypt_cpu_s_per_GiB']:.3f}, "
          f"decrypt {floor['decrypt_cpu_s_per_GiB']:.3f} CPU-s/GiB")
    rows["aes_gcm_floor"] = floor
    write_result(args.out, {"bench": "encryption_cost", "when": utc_stamp(), "machine": machine_info(),
                            "args": vars(args), "load_avg_1min": [load0, os.getloadavg()[0]], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
