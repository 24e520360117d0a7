"""Benchmark: how many emulated accelerators do exastor and a peer keep busy on this machine?

    .venv/bin/python bench/scaletest_peers.py [--duration 20] [--dataset-size 4GB] [--quick]

Starts exastor (``exastor serve``) and s3rver (npm, installed by bench/peers/s3rver.sh into
bench/.peers/) on loopback, one at a time so they never compete for the 2 cores, and for each:

1. ``--find-max`` for U-Net3D and ResNet-50 on emulated H100s (MLPerf Storage parameters), and
   CosmoFlow on A100s;
2. the client's own cost: CPU seconds per GB read (whole-object and ranged-record reads);
3. a checkpoint cycle (Llama 3 8B shape, scaled down to --checkpoint-size, 8 ranks);
4. (exastor only) a run of 2,000 emulated accelerators from this one 2-core host.

Writes bench/results/scaletest_peers.json with machine info and every input; the numbers go
into docs/benchmarks/scaletest.md. The data set is far below MLPerf's 5x-client-memory rule
(loopback, one disk, limited time): the servers read from their page cache, so this measures
the request path, not the drives. Data set generation writes 2 files at a time: at 8 (the
tool's default) `exastor serve` stalled mid-generation on this machine (see the results doc).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
WORK = RESULTS / "tmp" / "scaletest"  # gitignored
S3RVER_JS = REPO / "bench" / ".peers" / "node" / "node_modules" / "s3rver" / "bin" / "s3rver.js"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


class Server:
    def __init__(self, name: str, command: list[str], port: int, access_key: str, secret_key: str) -> None:
        self.name, self.command, self.port = name, command, port
        self.access_key, self.secret_key = access_key, secret_key
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        log = open(WORK / f"{self.name}.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.name == "exastor":  # it has a readiness probe: a listening port is not a ready server
            from exastor.gateway.health import wait_ready

            wait_ready([self.endpoint], timeout=60, alive=lambda: self.process.poll() is None)
        else:
            wait_port(self.port, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def exastor_server() -> Server:
    data = WORK / "exastor-data"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    return Server("exastor", [sys.executable, "-m", "exastor.cli", "serve", "--data", str(data), "--s3-port",
                              str(port), "--access-key", "scaletest", "--secret-key", "scaletest-secret",
                              "--log-level", "warning"], port, "scaletest", "scaletest-secret")


def s3rver_server() -> Server:
    if not S3RVER_JS.exists():
        subprocess.run(["bash", str(REPO / "bench" / "peers" / "s3rver.sh"), "install"], check=True)
    data = WORK / "s3rver-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    port = free_port()
    return Server("s3rver", ["node", str(S3RVER_JS), "-d", str(data), "-a", "127.0.0.1", "-p", str(port),
                             "--silent"], port, "S3RVER", "S3RVER")


def scaletest(server: Server, label: str, *args: str, timeout: float = 3600) -> dict:
    """Run `exastor scaletest` as its own process (its CPU and RSS are the client's alone)."""
    out = WORK / f"{server.name}-{label}.json"
    command = [sys.executable, "-m", "exastor.cli", "scaletest", "--endpoint", server.endpoint,
               "--access-key", server.access_key, "--secret-key", server.secret_key, "--quiet",
               "--json", str(out), "--generate-parallel", "2", *args]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    log_path = WORK / f"{server.name}-{label}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        # wait4 gives the child's own CPU time and peak RSS
        _, status, usage = os.wait4(process.pid, 0)
    output = log_path.read_text()
    wall = time.monotonic() - start
    record = {"label": label, "args": list(args), "wall_s": wall, "exit": os.waitstatus_to_exitcode(status),
              "client_cpu_s_total": usage.ru_utime + usage.ru_stime, "client_max_rss_mb": usage.ru_maxrss / 1024,
              "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0]}
    if out.exists():
        record.update(json.loads(out.read_text()))
    else:
        record["output_tail"] = output[-2000:]
    print(f"  {server.name:8} {label:28} exit {record['exit']}  {wall:6.1f}s", flush=True)
    return record


def summarise_run(result: dict | None) -> dict:
    if not result:
        return {}
    keys = ("accelerators", "au_mean", "passed", "throughput_bytes_per_s", "samples_per_s", "requests",
            "errors", "latency_ms", "client_cpu_seconds", "cpu_seconds_per_gb", "loop_lag_ms", "duration")
    return {k: result.get(k) for k in keys}


def bench_server(server: Server, options: argparse.Namespace) -> dict:
    duration = str(options.duration)
    size = options.dataset_size
    entry: dict = {"endpoint": server.endpoint}
    # U-Net3D and ResNet-50 on H100s are the question; CosmoFlow on A100s (70% pass mark, lighter
    # per-accelerator need) shows the search on a count this machine can reach.
    for workload, accelerator in (("unet3d", "h100"), ("resnet50", "h100"), ("cosmoflow", "a100")):
        record = scaletest(server, f"{workload}-{accelerator}-find-max", "--workload", workload,
                           "--accelerator", accelerator, "--dataset-size", size, "--duration", duration,
                           "--find-max", "--find-max-limit", str(options.find_max_limit))
        found = record.get("find_max", {})
        entry[f"{workload}_{accelerator}"] = {
            "largest_passing": found.get("best"), "first_failing": found.get("first_fail"),
            "probes": found.get("probes"), "at_best_or_first": summarise_run(record.get("result")),
            "client_max_rss_mb": record["client_max_rss_mb"], "load_avg": [record["load_avg_before"], record["load_avg_after"]],
        }
    # Client cost: enough accelerators to keep the pool busy; CPU/GB from the run itself
    for workload, count in (("unet3d", "8"), ("resnet50", "8")):
        record = scaletest(server, f"{workload}-client-cost", "--workload", workload, "--accelerators", count,
                           "--dataset-size", size, "--duration", duration)
        entry[f"{workload}_client_cost"] = summarise_run(record.get("result"))
    record = scaletest(server, "checkpoint", "--workload", "checkpoint", "--model", "llama3-8b",
                       "--accelerators", "8", "--checkpoint-size", options.checkpoint_size, "--part-size", "16MiB")
    entry["checkpoint_llama3_8b_scaled"] = record.get("checkpoint") or {"exit": record["exit"],
                                                                          "output_tail": record.get("output_tail")}
    if server.name == "exastor" and not options.quick:
        record = scaletest(server, "resnet50-2000", "--workload", "resnet50", "--accelerators", "2000",
                           "--dataset-size", size, "--duration", str(max(options.duration, 30)))
        entry["resnet50_2000_accelerators"] = {**summarise_run(record.get("result")),
                                               "client_max_rss_mb": record["client_max_rss_mb"],
                                               "client_cpu_s_total": record["client_cpu_s_total"],
                                               "wall_s": record["wall_s"]}
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run / find-max probe")
    parser.add_argument("--dataset-size", default="4GB")
    parser.add_argument("--checkpoint-size", default="2GB")
    parser.add_argument("--find-max-limit", type=int, default=4096)
    parser.add_argument("--only", default="exastor s3rver")
    parser.add_argument("--quick", action="store_true", help="short runs, no 2,000-accelerator run")
    options = parser.parse_args()
    if options.quick:
        options.duration = min(options.duration, 8.0)
        options.dataset_size = "1GB"
        options.checkpoint_size = "512MB"
    WORK.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9,
                    "load_avg_start": os.getloadavg()},
        "inputs": vars(options),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "servers": {},
    }
    makers = {"exastor": exastor_server, "s3rver": s3rver_server}
    for name in options.only.split():
        print(f"{name}:", flush=True)
        with makers[name]() as server:
            document["servers"][name] = bench_server(server, options)
        shutil.rmtree(WORK / f"{name}-data", ignore_errors=True)
    document["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = RESULTS / ("scaletest_peers_quick.json" if options.quick else "scaletest_peers.json")
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
