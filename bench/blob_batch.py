#!/usr/bin/env python3
"""Blob batch against one request per blob: deleting and re-tiering N blobs with azure-storage-blob.

    python bench/blob_batch.py [--blobs 1024] [--rounds 3] [--out bench/results/blob_batch.json]

Starts `exastor serve` (temp data dir, one drive, 1 worker so server CPU is one process tree), uploads
N small blobs, then per round: deletes them with ContainerClient.delete_blobs (256 per batch, Azure's
limit) and, after re-uploading, with one Delete Blob each over one connection; the same for Set Blob
Tier. Reports wall seconds and server CPU-seconds (utime+stime of the server's process tree) per
operation for both, in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.blob_compat import AZURITE_KEY, connection_string, free_port  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

ACCOUNT = "batchbench"
PER_BATCH = 256


def measure(pid: int, fn) -> tuple[float, float]:  # noqa: ANN001 - a callable
    cpu0, t0 = tree_cpu_seconds(pid), time.perf_counter()
    fn()
    return time.perf_counter() - t0, tree_cpu_seconds(pid) - cpu0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench/results/blob_batch.json"))
    args = ap.parse_args()
    from azure.storage.blob import BlobServiceClient

    tmp = Path(tempfile.mkdtemp(prefix="blobbatch-"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "exastor.cli", "serve", "--data", str(tmp / "data"), "--s3-port", str(free_port()),
         "--blob-port", str(port), "--account-name", ACCOUNT, "--account-key", AZURITE_KEY, "--workers", "1"],
        stdout=open(tmp / "server.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from exastor.gateway.health import wait_ready
        wait_ready([f"http://127.0.0.1:{port}"], alive=lambda: proc.poll() is None)
        svc = BlobServiceClient.from_connection_string(connection_string(ACCOUNT, AZURITE_KEY, port), retry_total=0)
        cc = svc.create_container("bench")
        names = [f"b{i:06d}" for i in range(args.blobs)]

        def upload() -> None:
            for name in names:
                cc.upload_blob(name, b"x", overwrite=True)

        def batched(op: str) -> None:
            for i in range(0, len(names), PER_BATCH):
                part = names[i:i + PER_BATCH]
                if op == "delete":
                    list(cc.delete_blobs(*part))
                else:
                    list(cc.set_standard_blob_tier_blobs("Cool", *part))

        def single(op: str) -> None:
            for name in names:
                blob = cc.get_blob_client(name)
                blob.delete_blob() if op == "delete" else blob.set_standard_blob_tier("Cool")

        rows = []
        for rnd in range(args.rounds):
            for op in ("delete", "tier"):
                for how, fn in (("batch", batched), ("one request each", single)):
                    upload()
                    wall, cpu = measure(proc.pid, lambda fn=fn, op=op: fn(op))
                    rows.append({"round": rnd, "operation": op, "how": how, "blobs": args.blobs, "wall_s": wall,
                                 "server_cpu_s": cpu, "server_cpu_us_per_blob": cpu / args.blobs * 1e6,
                                 "blobs_per_s": args.blobs / wall})
                    print(f"round {rnd} {op:6s} {how:17s} {wall:6.2f} s wall, "
                          f"{cpu / args.blobs * 1e6:7.1f} server CPU-us per blob, {args.blobs / wall:7.0f} blobs/s")
        result = {"when": utc_stamp(), "machine": machine_info(),
                  "geometry": "one exastor worker, one drive (no redundancy), SQLite metadata, loopback client",
                  "per_batch": PER_BATCH, "rows": rows}
        write_result(args.out, result)
        print(f"wrote {args.out}")
        return 0
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
