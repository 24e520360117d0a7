#!/usr/bin/env python3
"""What encryption at rest costs the server: CPU-seconds per GiB of large PUTs and GETs with
``--encrypt-at-rest on`` (AES-256-GCM below the reduction, engine/encryption.py) vs ``off``.

For each geometry (by default one drive, and 4+2 erasure coding over 6 drive directories) it starts
two exastor servers (2 workers each), one encrypting and one not, and in the same run alternates
between them for ``--rounds`` rounds: each round PUTs ``--objects`` fresh random objects of
``--size`` MiB (incompressible, dedupe-proof) with boto3, then GETs them back (bench/tls_cost.py's
round trip). Server CPU is the whole process tree's from /proc; CPU-s/GiB is the figure to read on
a shared machine.

    python bench/encryption_cost.py [--size 64] [--objects 4] [--rounds 2]

Writes bench/results/encryption_cost.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.tls_cost import GiB, MiB, Server, round_trip  # noqa: E402

GEOMETRIES = {"1 drive": (1, ""), "4+2 over 6 drives": (6, "4+2")}


def aes_gcm_floor(total: int = 256 * MiB, record: int = 80 << 10) -> dict[str, float]:
    """CPU-s/GiB of AES-256-GCM alone (cryptography/OpenSSL) over records of the chunker's mean
    size: the least any at-rest encryption of these bytes can cost on this CPU, per direction."""
    import time

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, data, ad = AESGCM(os.urandom(32)), os.urandom(record), bytes(48)
    nonce = os.urandom(12)
    count = total // record
    sealed = aead.encrypt(nonce, data, ad)
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
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--geometry", action="append", choices=list(GEOMETRIES),
                    help="repeatable; default: every geometry")
    ap.add_argument("--work", help="directory for the stores (default: a temporary one)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "encryption_cost.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="exastor-enc-"))
    load0 = os.getloadavg()[0]
    rows: dict[str, Any] = {}
    for geometry in args.geometry or list(GEOMETRIES):
        drives, ec = GEOMETRIES[geometry]
        tag = geometry.split()[0]
        servers = {mode: Server(work, f"{tag}-{mode}", drives, ec, tls=False, extra=("--encrypt-at-rest", mode))
                   for mode in ("off", "on")}
        tallies: dict[str, dict[str, dict[str, float]]] = {mode: {} for mode in servers}
        per_round: dict[str, list[float]] = {}  # "phase/mode" -> server CPU-s/GiB of each round
        try:
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))  # alternate: same share of noise
                for mode in order:
                    one: dict[str, dict[str, float]] = {}
                    round_trip(servers[mode], args.size * MiB, args.objects, one)
                    for phase, t in one.items():
                        per_round.setdefault(f"{phase}/{mode}", []).append(t["server_cpu_s"] / (t["bytes"] / GiB))
                        total = tallies[mode].setdefault(phase, dict.fromkeys(t, 0.0))
                        for name, value in t.items():
                            total[name] += value
        finally:
            for server in servers.values():
                server.stop()
        for mode, tally in tallies.items():
            for phase, t in tally.items():
                gib = t["bytes"] / GiB
                rounds = sorted(per_round[f"{phase}/{mode}"])
                rows[f"{geometry}/{phase}/encrypt_{mode}"] = {
                    **t, "MBps": t["bytes"] / t["seconds"] / 1e6, "server_cpu_s_per_GiB": t["server_cpu_s"] / gib,
                    "client_cpu_s_per_GiB": t["client_cpu_s"] / gib, "rounds_server_cpu_s_per_GiB": rounds,
                    "median_server_cpu_s_per_GiB": rounds[len(rounds) // 2]}
        print(f"{geometry}, 2 workers; {args.rounds} rounds x {args.objects} x {args.size} MiB random per server")
        print(f"{'':16} {'MB/s':>8} {'server CPU-s/GiB':>17}")
        for phase in ("put", "get"):
            off, on = rows[f"{geometry}/{phase}/encrypt_off"], rows[f"{geometry}/{phase}/encrypt_on"]
            for mode, row in (("off", off), ("on", on)):
                print(f"{phase} encrypt {mode:4} {row['MBps']:8.0f} {row['server_cpu_s_per_GiB']:17.3f}")
            cost = {"server_cpu_s_per_GiB": on["server_cpu_s_per_GiB"] - off["server_cpu_s_per_GiB"],
                    "server_ratio": on["server_cpu_s_per_GiB"] / off["server_cpu_s_per_GiB"],
                    "median_ratio": on["median_server_cpu_s_per_GiB"] / off["median_server_cpu_s_per_GiB"]}
            rows[f"{geometry}/{phase}/encryption_extra"] = cost
            print(f"{phase} encryption adds {cost['server_cpu_s_per_GiB']:.3f} server CPU-s/GiB "
                  f"({cost['server_ratio'] - 1:+.1%}; round medians {cost['median_ratio'] - 1:+.1%}; rounds off "
                  f"{[round(x, 2) for x in off['rounds_server_cpu_s_per_GiB']]}, on "
                  f"{[round(x, 2) for x in on['rounds_server_cpu_s_per_GiB']]})")
    floor = aes_gcm_floor()
    print(f"AES-256-GCM alone, {floor['record_bytes'] >> 10} KiB records: encrypt {floor['encrypt_cpu_s_per_GiB']:.3f}, "
          f"decrypt {floor['decrypt_cpu_s_per_GiB']:.3f} CPU-s/GiB")
    rows["aes_gcm_floor"] = floor
    write_result(args.out, {"bench": "encryption_cost", "when": utc_stamp(), "machine": machine_info(),
                            "args": vars(args), "load_avg_1min": [load0, os.getloadavg()[0]], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
