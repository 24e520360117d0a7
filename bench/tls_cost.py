#!/usr/bin/env python3
"""What TLS costs the server: CPU-seconds per GiB of large PUTs and GETs over HTTPS vs plain HTTP.

Starts two exastor servers with the same geometry (by default 4+2 erasure coding over 6 drive
directories, 2 workers each), one plain and one with ``--tls self-signed``, and in the same run
alternates between them for ``--rounds`` rounds: each round PUTs ``--objects`` fresh random objects
of ``--size`` MiB (incompressible, dedupe-proof) with boto3, then GETs them back. Server CPU is the
whole process tree's (master, workers) from /proc; the client's is this process's. Rates are
printed but CPU-s/GiB is the figure to read on a shared 2-core machine.

    python bench/tls_cost.py [--size 256] [--objects 4] [--rounds 2] [--drives 6 --ec 4+2]

Writes bench/results/tls_cost.json.
"""

from __future__ import annotations

import argparse
import os
import secrets
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
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

from exastor.gateway.health import wait_ready  # noqa: E402

MiB, GiB = 1 << 20, 1 << 30


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, work: Path, name: str, drives: int, ec: str, tls: bool, extra: tuple[str, ...] = ()) -> None:
        self.name, self.tls = name, tls
        self.data = work / name / "data"
        self.port = free_port()
        self.key, self.secret = "BENCHKEY", secrets.token_hex(16)
        drive_args = [a for i in range(drives) for a in ("--drive", str(work / name / f"drive{i}"))] if drives > 1 else []
        self.log = open(work / f"{name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exastor.cli", "serve", "--data", str(self.data), "--s3-port", str(self.port),
             "--blob-port", "0", "--access-key", self.key, "--secret-key", self.secret, "--workers", "2",
             *drive_args, *(["--ec", ec] if ec and drives > 1 else []), *(["--tls", "self-signed"] if tls else []), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0"})
        self.ca = str(self.data / "tls" / "ca.pem") if tls else None
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        wait_ready([self.endpoint], alive=lambda: self.proc.poll() is None, ca=self.ca)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", verify=self.ca,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required", read_timeout=600))

    def cpu(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def client_cpu() -> float:
    t = os.times()
    return t.user + t.system


def round_trip(server: Server, size: int, objects: int, tally: dict[str, dict[str, float]]) -> None:
    s3 = server.client()
    bucket = f"tls-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=bucket)
    bodies = [datagen.payload(size, "random") for _ in range(objects)]  # made before the clock starts
    for phase in ("put", "get"):
        cpu0, ccpu0, t0 = server.cpu(), client_cpu(), time.perf_counter()
        for i, body in enumerate(bodies):
            if phase == "put":
                s3.put_object(Bucket=bucket, Key=f"o{i}", Body=body)
            else:
                got = 0
                for piece in s3.get_object(Bucket=bucket, Key=f"o{i}")["Body"].iter_chunks(4 * MiB):
                    got += len(piece)
                assert got == size
        entry = tally.setdefault(phase, {"bytes": 0, "seconds": 0.0, "server_cpu_s": 0.0, "client_cpu_s": 0.0})
        entry["bytes"] += size * objects
        entry["seconds"] += time.perf_counter() - t0
        entry["server_cpu_s"] += server.cpu() - cpu0
        entry["client_cpu_s"] += client_cpu() - ccpu0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="object size, MiB")
    ap.add_argument("--objects", type=int, default=4, help="objects per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--drives", type=int, default=6)
    ap.add_argument("--ec", default="4+2")
    ap.add_argument("--work", help="directory for the two stores (default: a temporary one)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "tls_cost.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="exastor-tls-"))
    load0 = os.getloadavg()[0]
    servers = {"http": Server(work, "http", args.drives, args.ec, tls=False),
               "https": Server(work, "https", args.drives, args.ec, tls=True)}
    tallies: dict[str, dict[str, dict[str, float]]] = {name: {} for name in servers}
    try:
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))  # alternate: same share of noise
            for name in order:
                round_trip(servers[name], args.size * MiB, args.objects, tallies[name])
    finally:
        for server in servers.values():
            server.stop()
    rows: dict[str, Any] = {}
    for name, tally in tallies.items():
        for phase, t in tally.items():
            gib = t["bytes"] / GiB
            rows[f"{phase}_{name}"] = {**t, "MBps": t["bytes"] / t["seconds"] / 1e6,
                                       "server_cpu_s_per_GiB": t["server_cpu_s"] / gib,
                                       "client_cpu_s_per_GiB": t["client_cpu_s"] / gib}
    for phase in ("put", "get"):
        plain, tls = rows[f"{phase}_http"], rows[f"{phase}_https"]
        rows[f"{phase}_tls_extra"] = {"server_cpu_s_per_GiB": tls["server_cpu_s_per_GiB"] - plain["server_cpu_s_per_GiB"],
                                      "server_ratio": tls["server_cpu_s_per_GiB"] / plain["server_cpu_s_per_GiB"]}
    print(f"geometry: {args.ec if args.drives > 1 else '1 drive (1+0)'} over {args.drives} drive directories, "
          f"2 workers; {args.rounds} rounds x {args.objects} x {args.size} MiB random per server")
    print(f"{'':10} {'MB/s':>8} {'server CPU-s/GiB':>17} {'client CPU-s/GiB':>17}")
    for phase in ("put", "get"):
        for name in servers:
            row = rows[f"{phase}_{name}"]
            print(f"{phase} {name:6} {row['MBps']:8.0f} {row['server_cpu_s_per_GiB']:17.2f} "
                  f"{row['client_cpu_s_per_GiB']:17.2f}")
        extra = rows[f"{phase}_tls_extra"]
        print(f"{phase} TLS adds {extra['server_cpu_s_per_GiB']:.2f} server CPU-s/GiB ({extra['server_ratio']:.2f}x)")
    write_result(args.out, {"bench": "tls_cost", "when": utc_stamp(), "machine": machine_info(),
                            "args": vars(args), "load_avg_1min": [load0, os.getloadavg()[0]], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
