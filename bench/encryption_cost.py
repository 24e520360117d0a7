#!/usr/bin/env python3
"""What encryption at rest costs the server: CPU-seconds per GiB of large PUTs and GETs with
``--encrypt-at-rest on`` (AES-256-GCM below the reduction, engine/encryption.py) vs ``off``.

For each geometry (by default one drive, and 4+2 erasure coding over 6 drive directories) it starts
two exastor servers (2 workers each), one encrypting and one not, and runs the same steps on both,
back to back, in paired rounds, so both see the same share of whatever else a shared machine runs.
In each of ``--rounds`` rounds: every fresh random object of ``--size`` MiB (incompressible,
dedupe-proof) is PUT to both; then the round's ``--objects`` objects are read back from both,
``--gets`` times warm (the segment files in the page cache, as just written) and ``--gets`` times
cold. Both servers are restarted (fresh processes, same stores) before every round, and every step
opens a fresh connection: two server processes differ by themselves (in one run the same code cost
1.5 CPU-s/GiB per GET in one process and 0.9 in the other, steadily), which one kept pair of
processes would pass off as the cost of encryption. Which server goes first follows ABBA order over each phase's steps (on off, off on, off on,
on off, ...), so neither profits from going first or second, nor from a trend in the load.

Cold means read from the device: right before each cold step (outside its measurement) the store
of the server about to read has every file written back (fdatasync) and dropped from the page cache
(POSIX_FADV_DONTNEED), and the step records the bytes its server's processes read from the device
(/proc/PID/io ``read_bytes``): a cold step that read less than it served was not cold, and the
report says so (``cold_device_fraction``).

Server CPU is the whole process tree's, counted two ways: bench/lib/rss.tree_cpu_seconds (10 ms
ticks, reaped children included: the totals) and rss.tree_cpu_ns_seconds (the scheduler's ns
counters of the live threads: the paired statistics). A sample is one 64 MiB PUT, or one read of a
round's objects, 256 MiB: about 25 ticks of GET, so ticks alone quantise a GET pair's ratio in
steps of 4% (their paired median is reported beside, for comparison). The cost is the paired median: the
median over pairs of on/off (the same step on each server, back to back), with a bootstrap 95%
confidence interval (pairs resampled with replacement, 10,000 times, seeded), and the median of the
pairs' differences in CPU-s/GiB likewise. The load average is recorded per round (``uptime``).

    nice -n 10 python bench/encryption_cost.py [--size 64] [--objects 4] [--rounds 8] [--gets 3]

Writes bench/results/encryption_cost-<date>.json.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import subprocess
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
from bench.lib.rss import process_tree, tree_cpu_ns_seconds  # noqa: E402
from bench.tls_cost import GiB, MiB, Server, client_cpu  # noqa: E402

GEOMETRIES = {"1 drive": (1, ""), "4+2 over 6 drives": (6, "4+2")}
PHASES = ("put", "get_warm", "get_cold")
MODES = ("on", "off")
BOOTSTRAP = 10_000


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


def tree_device_reads(pid: int) -> int:
    """Bytes the live processes of ``pid``'s tree have read from the device (/proc/PID/io
    ``read_bytes``: what missed the page cache)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/io", "rb") as f:
                for line in f:
                    if line.startswith(b"read_bytes:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def tree_minor_faults(pid: int) -> int:
    """Page faults (minor: no device read) of the live processes of ``pid``'s tree: fresh memory
    a step touched for the first time."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_bytes()
        except OSError:
            continue
        total += int(stat[stat.rfind(b")") + 2:].split()[7])  # after the name: state=0 ... minflt=7
    return total


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Bench:
    """One server's bucket and its tallies: ``measure`` runs one step and adds its bytes, wall time
    and the server's and client's CPU to the phase's total and to its list of samples."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.s3 = server.client()
        self.bucket = f"enc-{secrets.token_hex(4)}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.tally: dict[str, dict[str, float]] = {}
        self.samples: dict[str, list[float]] = {}  # phase -> server CPU-s/GiB of each step, in order (ticks)
        self.samples_ns: dict[str, list[float]] = {}  # the same at ns resolution (schedstat)
        self.device_fraction: list[float] = []      # cold steps: bytes read from the device / bytes served

    def restart(self, server: Server) -> None:
        """Go on with a fresh server process on the same store."""
        self.server = server

    def measure(self, phase: str, step) -> None:  # noqa: ANN001
        # A fresh client, so a fresh connection: whichever worker accepts it serves the step (one kept
        # connection would tie every step of a server to one worker, and the workers differ).
        self.s3 = self.server.client()
        pid = self.server.proc.pid
        io0, cpu0, ccpu0, t0 = tree_device_reads(pid), self.server.cpu(), client_cpu(), time.perf_counter()
        ns0, faults0 = tree_cpu_ns_seconds(pid), tree_minor_faults(pid)
        moved = step()
        ns_cpu, faults = tree_cpu_ns_seconds(pid) - ns0, tree_minor_faults(pid) - faults0
        seconds, server_cpu = time.perf_counter() - t0, self.server.cpu() - cpu0
        device = tree_device_reads(pid) - io0
        entry = self.tally.setdefault(phase, {"bytes": 0, "seconds": 0.0, "server_cpu_s": 0.0, "client_cpu_s": 0.0,
                                              "device_read_bytes": 0, "server_cpu_ns_s": 0.0, "minor_faults": 0})
        entry["bytes"] += moved
        entry["seconds"] += seconds
        entry["server_cpu_s"] += server_cpu
        entry["server_cpu_ns_s"] += ns_cpu
        entry["client_cpu_s"] += client_cpu() - ccpu0
        entry["device_read_bytes"] += device
        entry["minor_faults"] += faults
        self.samples.setdefault(phase, []).append(server_cpu / (moved / GiB))
        self.samples_ns.setdefault(phase, []).append(ns_cpu / (moved / GiB))
        if phase == "get_cold":
            self.device_fraction.append(device / moved)

    def put(self, key: str, body: bytes) -> int:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return len(body)

    def get_all(self, keys: list[str]) -> int:
        moved = 0
        for key in keys:
            for piece in self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].iter_chunks(4 * MiB):
                moved += len(piece)
        return moved


def abba(step: int) -> tuple[str, ...]:
    """Which server runs a phase's ``step``-th pair first: on off, off on, off on, on off, ..."""
    return MODES if step % 4 in (0, 3) else MODES[::-1]


def run_round(benches: dict[str, Bench], r: int, size: int, objects: int, gets: int,
              steps: dict[str, int]) -> None:
    """One round: each fresh random object PUT to both servers; then ``gets`` reads of the round's
    objects from both with the page cache as the PUTs left it (warm), and ``gets`` after dropping
    the reading server's store from it (cold). A sample is one object's PUT, or one read of the
    round's objects (``objects x size``); ``steps`` counts each phase's pairs (ABBA order)."""
    keys = [f"r{r}-o{i}" for i in range(objects)]

    def pair(phase: str, step) -> None:  # noqa: ANN001
        for mode in abba(steps[phase]):
            bench = benches[mode]
            if phase == "get_cold":  # outside the measured step: the server's CPU is what counts
                drop_page_cache(bench.server.data.parent)
            bench.measure(phase, lambda b=bench: step(b))
        steps[phase] += 1

    for key in keys:
        body = datagen.payload(size, "random")  # made before the clock starts; fresh: no dedupe
        pair("put", lambda b, k=key, d=body: b.put(k, d))
    for phase in ("get_warm", "get_cold"):
        for _ in range(gets):
            pair(phase, lambda b: b.get_all(keys))


def _median_ci(values: list[float], rng: random.Random) -> tuple[float, float, float]:
    """The median of ``values`` and its bootstrap 95% interval (percentile method)."""
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(BOOTSTRAP))
    return statistics.median(values), medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def paired(on: list[float], off: list[float], seed: int = 12) -> dict[str, float]:
    """The paired median of on/off (the same step on each server, back to back) with its bootstrap
    95% interval, and the same of the pairs' differences (CPU-s/GiB)."""
    rng = random.Random(seed)
    # A pair whose off step counted no CPU (a sample shorter than a tick) has no ratio.
    ratio, ratio_low, ratio_high = _median_ci([a / b for a, b in zip(on, off, strict=True) if b > 0] or [1.0], rng)
    diff, diff_low, diff_high = _median_ci([a - b for a, b in zip(on, off, strict=True)], rng)
    return {"median_ratio": ratio, "ci95_low": ratio_low, "ci95_high": ratio_high,
            "median_diff_cpu_s_per_GiB": diff, "diff_ci95_low": diff_low, "diff_ci95_high": diff_high,
            "pairs": len(on)}


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
    ap.add_argument("--no-restart", dest="restart", action="store_false",
                    help="keep the same two server processes for every round (default: fresh ones each round)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" /
                                         f"encryption_cost-{time.strftime('%Y-%m-%d', time.gmtime())}.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="exastor-enc-"))
    try:
        return measure(args, work)
    finally:
        if not args.work:  # several GiB per run: never left behind in /tmp
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> int:
    started = uptime()
    rows: dict[str, Any] = {}
    loads: dict[str, list[dict[str, Any]]] = {}
    for geometry in args.geometry or list(GEOMETRIES):
        drives, ec = GEOMETRIES[geometry]
        tag = geometry.split()[0]
        servers = {mode: Server(work, f"{tag}-{mode}", drives, ec, tls=False, extra=("--encrypt-at-rest", mode))
                   for mode in MODES}
        steps = dict.fromkeys(PHASES, 0)
        loads[geometry] = []
        try:
            benches = {mode: Bench(server) for mode, server in servers.items()}
            for r in range(args.rounds):
                if r and args.restart:
                    # New processes every round: what differs between two server processes (which worker
                    # takes the connections, where their memory lies) varies between rounds instead of
                    # being read as the cost of encryption for the whole run.
                    for mode in MODES:
                        servers[mode].stop()
                        servers[mode] = Server(work, f"{tag}-{mode}", drives, ec, tls=False,
                                               extra=("--encrypt-at-rest", mode))
                        benches[mode].restart(servers[mode])
                loads[geometry].append({"round": r, "when": utc_stamp(), "uptime": uptime(),
                                        "load_avg_1min": os.getloadavg()[0]})
                run_round(benches, r, args.size * MiB, args.objects, args.gets, steps)
                print(f"{geometry} round {r + 1}/{args.rounds} done; {uptime()}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        for mode, bench in benches.items():
            for phase, t in bench.tally.items():
                gib = t["bytes"] / GiB
                samples = bench.samples[phase]
                row = {**t, "MBps": t["bytes"] / t["seconds"] / 1e6, "server_cpu_s_per_GiB": t["server_cpu_s"] / gib,
                       "client_cpu_s_per_GiB": t["client_cpu_s"] / gib, "samples_server_cpu_s_per_GiB": samples,
                       "median_server_cpu_s_per_GiB": statistics.median(samples),
                       "samples_server_cpu_ns_s_per_GiB": bench.samples_ns[phase]}
                if phase == "get_cold":
                    row["cold_device_fraction"] = {"min": min(bench.device_fraction),
                                                   "median": statistics.median(bench.device_fraction)}
                rows[f"{geometry}/{phase}/encrypt_{mode}"] = row
        load_range = [x["load_avg_1min"] for x in loads[geometry]]
        print(f"\n{geometry}, 2 workers; {args.rounds} rounds x {args.objects} x {args.size} MiB random per server, "
              f"each GET phase {args.gets} x; load average (1 min) per round {min(load_range):.1f}..{max(load_range):.1f}")
        print(f"{'':22} {'MB/s':>8} {'server CPU-s/GiB':>17}")
        for phase in PHASES:
            off, on = rows[f"{geometry}/{phase}/encrypt_off"], rows[f"{geometry}/{phase}/encrypt_on"]
            for mode, row in (("off", off), ("on", on)):
                cold = (f"  read from device: {row['cold_device_fraction']['min']:.0%} of served at least"
                        if phase == "get_cold" else "")
                faults = row["minor_faults"] / (row["bytes"] / GiB)
                print(f"{phase:8} encrypt {mode:4} {row['MBps']:8.0f} {row['server_cpu_s_per_GiB']:17.3f}"
                      f"  {faults:8.0f} page faults/GiB{cold}")
            pair = paired(on["samples_server_cpu_ns_s_per_GiB"], off["samples_server_cpu_ns_s_per_GiB"])
            ticks = paired(on["samples_server_cpu_s_per_GiB"], off["samples_server_cpu_s_per_GiB"])
            cost = {"server_cpu_s_per_GiB": on["server_cpu_s_per_GiB"] - off["server_cpu_s_per_GiB"],
                    "total_ratio": on["server_cpu_s_per_GiB"] / max(off["server_cpu_s_per_GiB"], 1e-9), "paired": pair,
                    "paired_ticks": ticks}
            rows[f"{geometry}/{phase}/encryption_extra"] = cost
            print(f"{phase} encryption adds: paired median {pair['median_ratio'] - 1:+.1%} "
                  f"[{pair['ci95_low'] - 1:+.1%}, {pair['ci95_high'] - 1:+.1%}] 95% CI "
                  f"({pair['median_diff_cpu_s_per_GiB']:+.3f} [{pair['diff_ci95_low']:+.3f}, "
                  f"{pair['diff_ci95_high']:+.3f}] CPU-s/GiB; {pair['pairs']} pairs); "
                  f"totals {cost['total_ratio'] - 1:+.1%}; by 10 ms ticks {ticks['median_ratio'] - 1:+.1%} "
                  f"[{ticks['ci95_low'] - 1:+.1%}, {ticks['ci95_high'] - 1:+.1%}]")
    floor = aes_gcm_floor()
    print(f"AES-256-GCM alone, {floor['record_bytes'] >> 10} KiB records: encrypt {floor['encrypt_cpu_s_per_GiB']:.3f}, "
          f"decrypt {floor['decrypt_cpu_s_per_GiB']:.3f} CPU-s/GiB")
    rows["aes_gcm_floor"] = floor
    write_result(args.out, {"bench": "encryption_cost", "when": utc_stamp(), "machine": machine_info(),
                            "args": vars(args), "uptime": [started, uptime()], "load_per_round": loads,
                            "order": "ABBA per phase (on off, off on, off on, on off, ...)",
                            "statistic": f"paired median of on/off, bootstrap 95% CI ({BOOTSTRAP} resamples)",
                            "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
