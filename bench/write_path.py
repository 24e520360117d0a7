#!/usr/bin/env python3
"""The write path's server cost: large PUT/GET and 4 KiB PUT/GET, per server, in server CPU-seconds.

    .venv/bin/python bench/write_path.py --servers radosgw,exastor-1,exastor-6,exastor-12
    .venv/bin/python bench/write_path.py --servers exastor-1,exastor-6,exastor-12 \
        --exastor-bin /work/wt/prev/.venv/bin/exastor --label-suffix @72ead7f --out bench/results/write_path_before.json
    .venv/bin/python bench/write_path.py --render bench/results/write_path_before.json bench/results/write_path.json

Each server is started alone on 127.0.0.1 (fresh data directory under --workdir), waited on until
its readiness probe answers (bounded), measured, stopped, and its data removed. Steps, with the
real boto3 client in its default configuration (flexible checksums on; the JSON records which
checksum headers / trailers the client actually sent):

1. large PUT: ``put_object`` of two fresh 256 MiB random objects, one after the other;
2. large GET: both read back (streamed, verified by xxh3-128); the page cache is dropped first
   (``sync; echo 3 > /proc/sys/vm/drop_caches``) when we are root, else the GET is warm; repeated
   ``--get-repeats`` times (3), each cold: the table shows the median, the JSON every figure;
3. 2,000 fresh 4 KiB PUTs at concurrency 16, then
4. their 2,000 GETs at concurrency 16 (page cache dropped first, as in 2).

Server CPU is user+system time of the server's whole process tree (reaped children included;
for radosgw: the monitor, the memstore OSD and radosgw), from the start of a step until the
server is quiet again after it (background work a step caused, such as exastor sealing segments
into erasure stripes, counts to the step; the time at the last response is kept as well). On a
shared machine CPU-seconds per GiB or per op measure the server's own cost; MB/s does not.

For exastor, ``exastor stats --json`` (of the binary under test) is taken before and after the
large PUT and at the end: every write_amplification* / written_* field is kept, with deltas over
the large-PUT step. Its figures describe the store's current state (not cumulative counters), so
the table shows them as reported after the large PUT. Independently, the bytes the server's
process tree wrote to storage during the large PUT (/proc/PID/io write_bytes) per byte PUT give a
measured write amplification (SQLite metadata included).

Before the servers, bench/put_floor.py times the mandatory per-byte work of a large PUT (receive,
MD5, SHA-256, CRC32, CDC, BLAKE3, AES-GCM, 4+2 parity), each stage alone on one thread with the
server's own libraries; the output sets its sum beside RGW's large PUT of the same run
(``--no-floor`` skips it).

Servers (``--servers``, comma-separated): ``radosgw`` (Ceph RGW 16.2, memstore OSD, via
bench/peers/radosgw.sh; its data is in RAM, so its GETs are never cold), ``exastor-N`` (N drive
directories, automatic geometry), ``exastor-N:K+M`` (explicit --ec), ``exastor-N/bufB`` (and B
write-buffer drives, serve --buffer-drive). ``--exastor-bin`` picks the exastor to run (e.g. a previous checkout's venv) and
``--label-suffix`` marks its rows. Results: ``--out`` (a JSON whose ``rows`` list has one row per
server, with the measured server's git commit), a markdown table on stdout and a plot (``--plot``,
default: the JSON's name with .png).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore
import xxhash
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import put_floor  # noqa: E402
from bench.lib import datagen, rawdisk  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import save_figure, utc_stamp, write_result  # noqa: E402
from bench.lib.rss import process_tree, tree_cpu_seconds  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
ACCESS_KEY = "EXBENCHADMIN"
SECRET_KEY = "exastor-bench-secret-0123456789"
T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# -- server processes ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_io(pids: list[int]) -> dict[str, int]:
    """Summed /proc/PID/io of the live process trees under ``pids``."""
    total = {"write_bytes": 0, "cancelled_write_bytes": 0, "read_bytes": 0, "wchar": 0}
    for root in pids:
        for p in process_tree(root):
            try:
                for line in Path(f"/proc/{p}/io").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in total:
                        total[key] += int(value)
            except (OSError, ValueError):
                continue
    return total


def git_info(path: Path) -> dict[str, Any]:
    """Commit of the checkout holding ``path`` and whether its files there differ from it."""
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(path), *a], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        info: dict[str, Any] = {"commit": git("rev-parse", "HEAD"), "toplevel": git("rev-parse", "--show-toplevel")}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    dirty = git("status", "--porcelain", "--", ".")
    info["dirty_files"] = len(dirty.splitlines())
    if dirty:  # others edit src/ meanwhile: a digest of the uncommitted diff tells two such runs apart
        diff = subprocess.run(["git", "-C", str(path), "diff", "HEAD", "--", "."], capture_output=True,
                              timeout=30).stdout
        info["diff_sha1"] = hashlib.sha1(diff).hexdigest()[:12]
    return info


def exastor_identity(exe: Path) -> dict[str, Any]:
    """Version, package directory and git commit of the exastor that ``exe`` runs."""
    ident: dict[str, Any] = {"bin": str(exe)}
    first = exe.read_bytes()[:300].split(b"\n", 1)[0]
    python = first[2:].decode().strip() if first.startswith(b"#!") else sys.executable
    ident["python"] = python
    try:
        out = subprocess.run([python, "-c", "import exastor, os; print(os.path.dirname(os.path.abspath("
                              "exastor.__file__)))"], capture_output=True, text=True, timeout=60, check=True)
        pkg = Path(out.stdout.strip())
        ident["package_dir"] = str(pkg)
        ident.update(git_info(pkg))
        ident["version"] = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                          timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        ident["error"] = f"{type(exc).__name__}: {exc}"
    return ident


class Server:
    verify: str | None = None   # CA bundle for HTTPS
    label: str
    kind: str
    endpoint: str
    access_key: str
    secret_key: str
    pids: list[int]
    data_dir: Path
    info: dict[str, Any]

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(p) for p in self.pids)

    def io(self) -> dict[str, int]:
        return tree_io(self.pids)

    def alive(self) -> bool:
        return any(Path(f"/proc/{p}").exists() for p in self.pids)

    def stats(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> None:
        raise NotImplementedError


class Exastor(Server):
    kind = "exastor"

    def __init__(self, label: str, drives: int, ec: str | None, exe: Path, workdir: Path, workers: int,
                 ready_timeout: float, tls: bool = False, buffer_drives: int = 0) -> None:
        self.label, self.exe = label, exe
        self.data_dir = workdir / label.replace("@", "_").replace("/", "_")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        port = free_port()
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.access_key, self.secret_key = ACCESS_KEY, SECRET_KEY
        cmd = [str(exe), "serve", "--data", str(self.data_dir), "--host", "127.0.0.1", "--s3-port", str(port),
               "--blob-port", "0", "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
               "--workers", str(workers), "--log-level", "warning"]
        if drives > 1 or ec:  # one drive: serve's default (DATA/drive0), as a user would run it
            for i in range(drives):
                cmd += ["--drive", str(self.data_dir / f"d{i}")]
        if ec:
            cmd += ["--ec", ec]
        for i in range(buffer_drives):  # a write-buffer tier (serve --buffer-drive)
            cmd += ["--buffer-drive", str(self.data_dir / f"b{i}")]
        if tls:  # HTTPS: only then does boto3 send aws-chunked bodies with a CRC32 trailer
            cmd += ["--tls", "self-signed"]
            self.verify = str(self.data_dir / "tls" / "ca.pem")
        self.log = workdir / f"{self.data_dir.name}.log"
        self.info = {"identity": exastor_identity(exe), "command": cmd, "drives": drives, "ec_arg": ec,
                     "workers": workers, "log": str(self.log), "port": port}
        say(f"{label}: starting {exe} serve ({drives} drive dir(s), ec {ec or 'automatic'}, {workers} workers)")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=workdir)
        self.pids = [self.proc.pid]
        t0 = time.monotonic()
        try:
            self._wait_ready(ready_timeout)
        except Exception:
            self.stop()
            raise
        self.info["ready_s"] = round(time.monotonic() - t0, 2)
        say(f"{label}: ready in {self.info['ready_s']} s on {self.endpoint} (pid {self.proc.pid})")

    def _wait_ready(self, timeout: float) -> None:
        """Poll the readiness probe (MinIO's path, which exastor serves) until 200, at most ``timeout`` s."""
        import ssl

        url = self.endpoint + "/minio/health/ready"
        ctx = ssl._create_unverified_context() if url.startswith("https") else None  # probing only
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"exastor serve exited with {self.proc.returncode} before ready:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}"
            except (OSError, urllib.error.URLError) as e:
                last = type(e).__name__
            time.sleep(0.1)
        raise TimeoutError(f"{self.endpoint} not ready within {timeout:.0f} s (last: {last})")

    def stats(self) -> dict[str, Any] | None:
        r = subprocess.run([str(self.exe), "stats", "--data", str(self.data_dir), "--json"], capture_output=True,
                           text=True, timeout=180, cwd=self.data_dir.parent)
        if r.returncode != 0:
            raise RuntimeError(f"exastor stats failed ({r.returncode}): {r.stderr.strip()[-500:]}")
        return json.loads(r.stdout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                say(f"{self.label}: no exit 45 s after SIGTERM: SIGKILL")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        else:  # its group may outlive it
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class RadosGW(Server):
    kind = "radosgw"
    SCRIPT = REPO / "bench" / "peers" / "radosgw.sh"
    PIDS = REPO / "bench" / ".peers" / "run" / "radosgw.all.pids"

    def __init__(self, label: str, workdir: Path, memstore_bytes: int, start_timeout: float) -> None:
        self.label = label
        self.data_dir = workdir / label.replace("@", "_").replace("/", "_")
        port = free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        env = {**os.environ, "RGW_MEMSTORE_BYTES": str(memstore_bytes)}
        say(f"{label}: starting mon + memstore OSD + radosgw via {self.SCRIPT.relative_to(REPO)} "
            f"(installs from apt if missing; at most {start_timeout:.0f} s)")
        t0 = time.monotonic()
        try:
            r = subprocess.run([str(self.SCRIPT), "start", str(port), str(self.data_dir)], capture_output=True,
                               text=True, timeout=start_timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            self.stop()
            raise TimeoutError(f"radosgw.sh start did not finish within {start_timeout:.0f} s") from exc
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"radosgw.sh start failed ({r.returncode}): {(r.stderr or r.stdout).strip()[-1500:]}")
        kv = dict(p.split("=", 1) for p in r.stdout.strip().splitlines()[-1].split() if "=" in p)
        self.access_key, self.secret_key = kv["access_key"], kv["secret_key"]
        self.pids = [int(p) for p in self.PIDS.read_text().split()]
        version = subprocess.run(["radosgw", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        self.info = {"identity": {"version": version, "commit": (re.findall(r"\(([0-9a-f]{40})\)", version) or [None])[0]},
                     "memstore_bytes": memstore_bytes, "pids": self.pids, "port": port,
                     "ready_s": round(time.monotonic() - t0, 1),
                     "processes": [Path(f"/proc/{p}/comm").read_text().strip() for p in self.pids
                                   if Path(f"/proc/{p}").exists()]}
        say(f"{label}: ready in {self.info['ready_s']} s on {self.endpoint} ({version}); CPU counted over "
            f"{', '.join(self.info['processes'])}")

    def stop(self) -> None:
        subprocess.run([str(self.SCRIPT), "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.data_dir, ignore_errors=True)


# -- the client ---------------------------------------------------------------------------------

class HeaderLog:
    """What boto3 actually sent per operation: checksum headers and trailers, body encoding, signing."""

    def __init__(self) -> None:
        self.seen: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1] if event_name.count(".") >= 2 else None
        h = {k.lower(): v for k, v in request.headers.items()}
        notes = set()
        for k, v in h.items():
            if isinstance(v, bytes):
                v = v.decode(errors="replace")
            if k.startswith("x-amz-checksum-") or k in ("x-amz-trailer", "content-encoding", "transfer-encoding",
                                                       "x-amz-sdk-checksum-algorithm"):
                notes.add(f"{k}: {v}" if k != "x-amz-checksum-crc32" else f"{k}: <value>")
            elif k == "x-amz-content-sha256":
                notes.add(f"{k}: {v if not re.fullmatch('[0-9a-f]{64}', v) else '<sha256 of body>'}")
        with self.lock:
            self.seen.setdefault(op or "?", set()).update(notes)

    def summary(self) -> dict[str, Any]:
        ops = {op: sorted(v) for op, v in self.seen.items()}
        put = " ".join(ops.get("PutObject", []))
        return {"headers_by_operation": ops,
                "checksum_trailer_used": "x-amz-trailer" in put,
                "aws_chunked_body": "aws-chunked" in put,
                "checksum_header_used": any(h.startswith("x-amz-checksum-") and not h.startswith("x-amz-checksum-mode")
                                            for h in ops.get("PutObject", []))}


def make_client(server: Server, concurrency: int, log: HeaderLog) -> Any:
    # the default configuration (checksums "when_supported", retries, timeouts) except a connection pool
    # as large as our concurrency: boto3's default of 10 would open and drop a connection per request
    # for the 6 threads over it, charging the server for TCP set-ups the client does not make
    config = Config(max_pool_connections=max(10, concurrency))
    client = boto3.client("s3", endpoint_url=server.endpoint, verify=server.verify,
                          aws_access_key_id=server.access_key,
                          aws_secret_access_key=server.secret_key, region_name="us-east-1", config=config)
    client.meta.events.register("before-send.s3", log)
    return client


# -- the measurement ----------------------------------------------------------------------------

def wait_quiet(server: Server, idle_rate: float, timeout: float, window: float = 1.0) -> tuple[float, float, bool]:
    """Wait (at most ``timeout`` s) until the server's tree used no more than its idle CPU rate + 0.03
    CPU-s/s over ``window`` s; return (CPU-s at the start of that quiet window, seconds waited, quiet?)."""
    samples = [(time.monotonic(), server.cpu())]
    t0 = samples[0][0]
    while time.monotonic() - t0 < timeout:
        time.sleep(0.2)
        now, cpu = time.monotonic(), server.cpu()
        samples.append((now, cpu))
        old = [s for s in samples if now - s[0] >= window]
        if old:
            t_w, cpu_w = old[-1]
            if (cpu - cpu_w) / (now - t_w) <= idle_rate + 0.03:
                return cpu_w, t_w - t0, True
    return samples[-1][1], time.monotonic() - t0, False


def cold_cache(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    """Drop the page cache before a GET step when allowed; check how much of the data dir stays cached."""
    if args.warm_gets:
        state = "warm (--warm-gets)"
    elif os.geteuid() != 0:
        state = "warm (not root: cannot drop the page cache)"
    else:
        state = "cold (page cache dropped)" if rawdisk.drop_caches() else "warm (drop_caches refused)"
    out: dict[str, Any] = {"state": state}
    if server.kind == "radosgw":
        out["note"] = "memstore OSD: the data is in the OSD's RAM, never read from disk"
        return out
    total = resident = 0.0
    for f in server.data_dir.rglob("*"):
        try:
            if f.is_file() and f.stat().st_size >= 1 * MiB:
                size = f.stat().st_size
                frac = rawdisk.resident_fraction(f)
                if frac is not None:
                    total += size
                    resident += frac * size
        except OSError:
            continue
    out["data_files_resident_fraction"] = round(resident / total, 4) if total else None
    return out


def measure(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    log = HeaderLog()
    client = make_client(server, args.concurrency, log)
    bucket = f"wp-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=bucket)
    steps: dict[str, Any] = {}
    stats: dict[str, Any] = {}

    # the idle CPU rate (monitor ticks, heartbeats), so "quiet again" means back to it
    c0, t0 = server.cpu(), time.monotonic()
    deadline = t0 + 2.0
    while time.monotonic() < deadline:
        time.sleep(0.25)
    idle_rate = (server.cpu() - c0) / (time.monotonic() - t0)
    say(f"{server.label}: idle CPU {idle_rate:.3f} CPU-s/s")

    def timed(name: str, fn: Callable[[], None], *, nbytes: int | None = None, ops: int | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        cpu0, io0, os0, w0 = server.cpu(), server.io(), os.times(), time.perf_counter()
        fn()
        secs = time.perf_counter() - w0
        cpu_resp = server.cpu()
        os1 = os.times()
        cpu_quiet, waited, quiet = wait_quiet(server, idle_rate, args.settle_timeout)
        io1 = server.io()
        r: dict[str, Any] = {
            "seconds": secs,
            "server_cpu_s": cpu_quiet - cpu0,                 # until quiet again after the step
            "server_cpu_s_at_last_response": cpu_resp - cpu0,
            "settle_s": round(waited, 2), "settled": quiet,
            "client_cpu_s": (os1.user + os1.system) - (os0.user + os0.system),
            "server_io": {k: io1[k] - io0[k] for k in io0},
            **(extra or {}),
        }
        if nbytes:
            r.update(bytes=nbytes, MBps=nbytes / secs / 1e6, server_cpu_s_per_GiB=r["server_cpu_s"] / (nbytes / GiB),
                     server_cpu_s_per_GiB_at_last_response=r["server_cpu_s_at_last_response"] / (nbytes / GiB))
            say(f"{server.label}: {name}: {r['MBps']:,.1f} MB/s, server {r['server_cpu_s_per_GiB']:.3f} CPU-s/GiB "
                f"({r['server_cpu_s_per_GiB_at_last_response']:.3f} at the last response; settled in "
                f"{waited:.1f} s{'' if quiet else ', NOT quiet'}), server wrote {r['server_io']['write_bytes'] / MiB:,.0f} MiB")
        if ops:
            r.update(ops=ops, ops_per_s=ops / secs, server_cpu_ms_per_op=1000 * r["server_cpu_s"] / ops,
                     server_cpu_ms_per_op_at_last_response=1000 * r["server_cpu_s_at_last_response"] / ops)
            say(f"{server.label}: {name}: {r['ops_per_s']:,.0f} ops/s, server {r['server_cpu_ms_per_op']:.3f} CPU-ms/op "
                f"({r['server_cpu_ms_per_op_at_last_response']:.3f} at the last response)")
        steps[name] = r
        return r

    def snap(when: str) -> None:
        if server.kind != "exastor":
            return
        try:
            stats[when] = server.stats()
        except Exception as exc:  # a stats failure must not lose the CPU numbers
            stats[when] = {"error": f"{type(exc).__name__}: {exc}"}
            say(f"{server.label}: exastor stats ({when}) failed: {stats[when]['error']}")

    # 1. large PUT
    n_large, large = args.large_count, args.large_mib * MiB
    say(f"{server.label}: generating {n_large} x {args.large_mib} MiB fresh random payloads")
    bodies = [datagen.payload(large, "random") for _ in range(n_large)]
    digests = [xxhash.xxh3_128_digest(b) for b in bodies]
    snap("before")

    def put_large() -> None:
        for i, body in enumerate(bodies):
            say(f"{server.label}: PUT large-{i} ({args.large_mib} MiB)")
            client.put_object(Bucket=bucket, Key=f"large-{i}", Body=body)

    timed("large_put", put_large, nbytes=n_large * large, extra={"objects": n_large, "object_bytes": large})
    bodies.clear()
    snap("after_large_put")

    # 2. large GET, cold when we may drop the cache
    cache = cold_cache(args, server)
    say(f"{server.label}: large GET: {cache}")

    def get_large() -> None:
        for i in range(n_large):
            body = client.get_object(Bucket=bucket, Key=f"large-{i}")["Body"]
            h, n = xxhash.xxh3_128(), 0
            for chunk in body.iter_chunks(chunk_size=1 * MiB):
                h.update(chunk)
                n += len(chunk)
            if n != large or h.digest() != digests[i]:
                raise AssertionError(f"GET large-{i} returned different bytes ({n} bytes)")

    timed("large_get", get_large, nbytes=n_large * large, extra={"cache": cache})
    # Cold GETs vary run to run more than builds differ: repeat them (each cold) and keep every figure;
    # the table shows their median.
    repeats = [steps["large_get"]["server_cpu_s_per_GiB"]]
    for _ in range(1, args.get_repeats):
        cache = cold_cache(args, server)
        repeats.append(timed("large_get_again", get_large, nbytes=n_large * large,
                             extra={"cache": cache})["server_cpu_s_per_GiB"])
    steps.pop("large_get_again", None)
    steps["large_get"]["repeats_cpu_s_per_GiB"] = repeats
    steps["large_get"]["median_cpu_s_per_GiB"] = statistics.median(repeats)

    # 3./4. small PUTs and GETs at concurrency
    count, size, conc = args.small_count, 4096, args.concurrency
    blob = datagen.payload(count * size, "random")
    small = [blob[i * size:(i + 1) * size] for i in range(count)]
    keys = [f"small/{i:06d}" for i in range(count)]
    retries = {"PutObject": 0, "GetObject": 0}

    def run_pool(name: str, one: Callable[[int], None]) -> None:
        done = 0
        with ThreadPoolExecutor(conc) as pool:
            for fut in [pool.submit(one, i) for i in range(count)]:
                fut.result(timeout=600)
                done += 1
                if done % 500 == 0 or done == count:
                    say(f"{server.label}: {name} {done}/{count}")

    def put(i: int) -> None:
        r = client.put_object(Bucket=bucket, Key=keys[i], Body=small[i])
        retries["PutObject"] += r["ResponseMetadata"].get("RetryAttempts", 0)

    def get(i: int) -> None:
        r = client.get_object(Bucket=bucket, Key=keys[i])
        if r["Body"].read() != small[i]:
            raise AssertionError(f"GET {keys[i]} returned different bytes")
        retries["GetObject"] += r["ResponseMetadata"].get("RetryAttempts", 0)

    common = {"object_bytes": size, "concurrency": conc}
    timed("small_put", lambda: run_pool("4 KiB PUT", put), ops=count, extra=common)
    cache = cold_cache(args, server)
    timed("small_get", lambda: run_pool("4 KiB GET", get), ops=count, extra={**common, "cache": cache})
    snap("final")

    return {"bucket": bucket, "idle_cpu_s_per_s": idle_rate, "steps": steps, "stats": stats,
            "retries": retries, "client": {**log.summary(), "config": "boto3 defaults; max_pool_connections="
                                           f"{max(10, conc)}; endpoint {server.endpoint} (path-style)"}}


WA_KEY = re.compile(r"^(write_amplification.*|written_.*)$")


def wa_summary(row: dict[str, Any]) -> dict[str, Any]:
    """Write amplification: exastor stats' own fields (as reported after the large PUT, before/after/delta)
    and the bytes the server's processes wrote to storage per byte PUT."""
    out: dict[str, Any] = {}
    stats = row.get("stats", {})
    before, after = stats.get("before") or {}, stats.get("after_large_put") or {}
    if after and "error" not in after:
        keys = [k for k in after if WA_KEY.match(k)] + [k for k in ("segment_data_bytes", "raw_bytes",
                                                                    "capacity_overhead", "geometry", "drives")
                                                        if k in after]
        out["stats_fields"] = {k: {"before": before.get(k), "after_large_put": after.get(k),
                                   **({"delta": after[k] - before[k]} if isinstance(after.get(k), (int, float))
                                      and isinstance(before.get(k), (int, float)) else {})}
                               for k in keys}
        out["as_reported"] = {k: after[k] for k in after if WA_KEY.match(k) and k.startswith("write_amplification")}
        out["stats_kind"] = ("state of the live store (fields are not cumulative counters): shown as reported "
                             "after the large PUT")
    put = row.get("steps", {}).get("large_put")
    if put:
        io = put["server_io"]
        out["measured_io"] = {
            "write_bytes": io["write_bytes"], "cancelled_write_bytes": io["cancelled_write_bytes"],
            "wchar": io["wchar"],
            "write_bytes_per_byte_put": round((io["write_bytes"] - io["cancelled_write_bytes"]) / put["bytes"], 3),
            "wchar_per_byte_put": round(io["wchar"] / put["bytes"], 3),
            "note": "/proc/PID/io of the server's process tree over the large PUT until quiet, metadata included; "
                    "0 for a RAM-backed store. write_bytes counts each page dirtied at its page size: on kernels "
                    "that cache files in large folios a small O_DSYNC write into a zero-filled journal file is "
                    "counted as up to 256 KiB although ext4 writes back 4 KiB (traced: 6 drives at 4+2 showed "
                    "1.67 here against ~1.54 written to disk, 1.50 of it shards); wchar counts bytes passed to "
                    "write calls. The stats ledger is the store's own account of the data it wrote"}
    return out


def run_server(args: argparse.Namespace, name: str) -> dict[str, Any]:
    row: dict[str, Any] = {"server": name, "started_at": utc_stamp(), "errors": {}}
    t0 = time.monotonic()
    server: Server | None = None
    try:
        if name == "radosgw":
            row["label"] = name
            server = RadosGW(name, args.workdir, args.rgw_memstore_bytes, args.rgw_start_timeout)
            row["geometry"] = {"drives": None, "k": 1, "m": 0, "note": "one memstore OSD (RAM), pools of size 1"}
        else:
            m = re.fullmatch(r"exastor-(\d+)(?::(\d+)\+(\d+))?(?:/buf(\d+))?", name)
            if not m:
                raise ValueError(f"unknown server {name!r}: radosgw, exastor-N, exastor-N:K+M, exastor-N/bufB")
            drives, ec = int(m.group(1)), (f"{m.group(2)}+{m.group(3)}" if m.group(2) else None)
            buffers = int(m.group(4) or 0)
            row["label"] = name + ("+tls" if args.tls else "") + args.label_suffix
            server = Exastor(row["label"], drives, ec, args.exastor_bin, args.workdir, args.workers,
                             args.ready_timeout, tls=args.tls, buffer_drives=buffers)
            row["geometry"] = {"drives": drives, "ec": ec or "automatic", "buffer_drives": buffers}
        row["server_info"] = server.info
        row.update(measure(args, server))
        if server.kind == "exastor":
            st = row["stats"].get("after_large_put") or {}
            if "geometry" in st:
                k, _, mm = str(st["geometry"]).partition("+")
                row["geometry"].update(k=int(k), m=int(mm), stats_geometry=st["geometry"], stats_drives=st.get("drives"))
        row["write_amplification"] = wa_summary(row)
    except Exception as exc:
        row["errors"]["run"] = f"{type(exc).__name__}: {exc}"
        say(f"{name}: FAILED: {row['errors']['run']}")
        if args.verbose:
            traceback.print_exc()
    finally:
        if server is not None:
            say(f"{row.get('label', name)}: stopping")
            try:
                server.stop()
            except Exception as exc:
                row["errors"]["stop"] = f"{type(exc).__name__}: {exc}"
            if server.kind == "exastor" and not args.keep:
                shutil.rmtree(server.data_dir, ignore_errors=True)
    row["total_s"] = round(time.monotonic() - t0, 1)
    row["finished_at"] = utc_stamp()
    say(f"{row.get('label', name)}: done in {row['total_s']} s")
    return row


# -- output ---------------------------------------------------------------------------------------

def fmt(v: Any, spec: str) -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def put_checksum(row: dict[str, Any]) -> str:
    c = row.get("client")
    if not c:
        return "-"
    if c["checksum_trailer_used"]:
        return "aws-chunked + CRC32 trailer"
    sha = any("<sha256 of body>" in h for h in c["headers_by_operation"].get("PutObject", []))
    return ("CRC32 header" if c["checksum_header_used"] else "none") + (" + signed SHA-256" if sha else "")


def table(rows: list[dict[str, Any]]) -> str:
    extra = sorted({k for r in rows for k in (r.get("write_amplification", {}).get("as_reported") or {})
                    if k != "write_amplification"})
    head = ["server", "commit", "geometry", "large PUT CPU-s/GiB", "large PUT MB/s", "large GET CPU-s/GiB (median)",
            "large GET MB/s", "GET cache", "4 KiB PUT CPU ms/op", "4 KiB PUT ops/s", "4 KiB GET CPU ms/op",
            "4 KiB GET ops/s", "PUT checksum", "WA (stats)", *[f"{k} (stats)" for k in extra], "WA (io write_bytes)", "WA (io wchar)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        s = r.get("steps", {})
        lp, lg, sp, sg = (s.get(k, {}) for k in ("large_put", "large_get", "small_put", "small_get"))
        ident = r.get("server_info", {}).get("identity", {})
        commit = (ident.get("commit") or "?")[:7] + ("+dirty" if ident.get("dirty_files") else "")
        g = r.get("geometry", {})
        geo = (f"{g.get('drives')} drive{'s' if g.get('drives') != 1 else ''}, {g['k']}+{g['m']}" if "k" in g and g.get("drives")
               else ("memstore OSD" if r.get("server") == "radosgw" else f"{g.get('drives', '?')} drives"))
        wa = r.get("write_amplification", {})
        rep = wa.get("as_reported") or {}
        cache = lg.get("cache", {}).get("state", "-").split(" ")[0]
        if r.get("server") == "radosgw" and lg:
            cache = "RAM"
        cells = [r.get("label", r.get("server")), commit, geo,
                 fmt(lp.get("server_cpu_s_per_GiB"), ".3f"), fmt(lp.get("MBps"), ",.0f"),
                 fmt(lg.get("median_cpu_s_per_GiB", lg.get("server_cpu_s_per_GiB")), ".3f"), fmt(lg.get("MBps"), ",.0f"), cache,
                 fmt(sp.get("server_cpu_ms_per_op"), ".3f"), fmt(sp.get("ops_per_s"), ",.0f"),
                 fmt(sg.get("server_cpu_ms_per_op"), ".3f"), fmt(sg.get("ops_per_s"), ",.0f"), put_checksum(r),
                 fmt(rep.get("write_amplification"), ".3f"), *[fmt(rep.get(k), ".3f") for k in extra],
                 fmt(wa.get("measured_io", {}).get("write_bytes_per_byte_put"), ".2f"),
                 fmt(wa.get("measured_io", {}).get("wchar_per_byte_put"), ".2f")]
        if r.get("errors"):
            cells[0] += " (error: " + "; ".join(f"{k}: {v}" for k, v in r["errors"].items())[:120].replace("|", "/") + ")"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floor_line(floor: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The floor beside RGW's large PUT of the same run: how much of a 0.7x RGW budget it leaves."""
    stages = ", ".join(f"{k} {v:.2f}" for k, v in floor["stages"].items())
    line = f"floor (mandatory per-byte work of a large PUT, one thread each): {floor['total']:.2f} CPU-s/GiB ({stages})"
    rgw = next((r["steps"]["large_put"]["server_cpu_s_per_GiB"] for r in rows
                if r.get("server") == "radosgw" and r.get("steps", {}).get("large_put")), None)
    if rgw:
        line += (f"\n= {floor['total'] / rgw:.2f}x RGW's {rgw:.2f} in this run; 0.7x RGW = {0.7 * rgw:.2f} leaves "
                 f"{0.7 * rgw - floor['total']:.2f} CPU-s/GiB for HTTP, the interpreter, drive writes and metadata")
    return line


def plot(rows: list[dict[str, Any]], path: Path, floor: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("steps", {}).get("large_put")]
    if not rows:
        return
    names = [r["label"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    panels = (
        ("large PUT: server CPU-s per GiB", [r["steps"]["large_put"]["server_cpu_s_per_GiB"] for r in rows], ".2f"),
        ("large GET (cold, median): server CPU-s per GiB",
         [(lambda g: g.get("median_cpu_s_per_GiB", g.get("server_cpu_s_per_GiB", 0)))(r["steps"].get("large_get", {}))
          for r in rows], ".2f"),
        ("4 KiB PUT: server CPU-ms per op",
         [r["steps"].get("small_put", {}).get("server_cpu_ms_per_op", 0) for r in rows], ".2f"),
    )
    colours = ["tab:gray" if r["server"] == "radosgw" else ("tab:orange" if "@" in r["label"] else "tab:blue")
               for r in rows]
    for ax, (title, values, spec) in zip(axes, panels, strict=True):
        bars = ax.bar(range(len(rows)), values, color=colours)
        ax.bar_label(bars, labels=[format(v, spec) for v in values], fontsize=7)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    rgw = next((r["steps"]["large_put"]["server_cpu_s_per_GiB"] for r in rows if r["server"] == "radosgw"), None)
    if floor:  # the mandatory per-byte work, and the target, on the large-PUT panel
        axes[0].axhline(floor["total"], color="tab:red", linestyle="--", linewidth=1)
        axes[0].text(len(rows) - 0.5, floor["total"], f"floor {floor['total']:.2f}", color="tab:red", fontsize=7,
                     ha="right", va="bottom")
    if rgw:
        axes[0].axhline(0.7 * rgw, color="tab:green", linestyle=":", linewidth=1)
        axes[0].text(-0.5, 0.7 * rgw, f"0.7x RGW {0.7 * rgw:.2f}", color="tab:green", fontsize=7, va="bottom")
    lp = rows[0]["steps"]["large_put"]
    fig.suptitle(f"write path: server process-tree CPU (boto3 defaults, {lp['objects']} x "
                 f"{lp['object_bytes'] // MiB} MiB PUT/GET, 4 KiB x "
                 f"{rows[0]['steps'].get('small_put', {}).get('ops', '?')} at concurrency 16)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)


def load_rows(paths: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for p in paths:
        rows.extend(json.loads(p.read_text()).get("rows", []))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="exastor-1,exastor-6,exastor-12",
                   help="comma-separated: radosgw, exastor-N (N drive dirs, automatic geometry), exastor-N:K+M")
    p.add_argument("--exastor-bin", type=Path, default=REPO / ".venv" / "bin" / "exastor",
                   help="the exastor executable to run (default: this checkout's .venv)")
    p.add_argument("--label-suffix", default="", help="appended to exastor rows' labels, e.g. @72ead7f")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "write_path.json")
    p.add_argument("--plot", type=Path, help="PNG (default: --out with .png)")
    p.add_argument("--merge", action="store_true",
                   help="keep --out's rows of servers not measured in this run (default: replace the file)")
    p.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                   help="measure nothing: print the table of these results files and plot them together")
    p.add_argument("--workdir", type=Path, default=REPO / "bench" / "results" / "tmp" / "write_path",
                   help="data directories and server logs (gitignored)")
    p.add_argument("--large-mib", type=int, default=256)
    p.add_argument("--large-count", type=int, default=2)
    p.add_argument("--small-count", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8),
                   help="exastor gateway workers (default: serve's own default, one per CPU, at most 8)")
    p.add_argument("--tls", action="store_true",
                   help="exastor over HTTPS (serve --tls self-signed): boto3 then sends aws-chunked bodies with "
                        "a CRC32 trailer instead of a CRC32 header + SHA-256-signed payload (radosgw stays HTTP)")
    p.add_argument("--warm-gets", action="store_true", help="do not drop the page cache before GETs")
    p.add_argument("--get-repeats", type=int, default=3,
                   help="large GETs this many times (each cold): the table shows the median")
    p.add_argument("--no-floor", action="store_true",
                   help="skip bench/put_floor.py (the mandatory per-byte work, timed alone in this run)")
    p.add_argument("--ready-timeout", type=float, default=120, help="seconds for exastor to become ready")
    p.add_argument("--rgw-start-timeout", type=float, default=1200,
                   help="seconds for radosgw.sh start (an apt install on first use included)")
    p.add_argument("--rgw-memstore-bytes", type=int, default=4 * GiB)
    p.add_argument("--settle-timeout", type=float, default=90,
                   help="at most this many seconds waiting for the server to be quiet after a step")
    p.add_argument("--keep", action="store_true", help="leave exastor's data directories behind")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.exastor_bin = args.exastor_bin.absolute()
    if args.plot is None:
        args.plot = (args.render[-1] if args.render else args.out).with_suffix(".png")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        rows = load_rows(args.render)
        print(table(rows))
        floors = [f for p in args.render if (f := json.loads(p.read_text()).get("floor"))]
        if floors:
            print("\n" + floor_line(floors[-1], rows))
        plot(rows, args.plot, floors[-1] if floors else None)
        return 0
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if any(n.startswith("exastor") for n in names) and not args.exastor_bin.exists():
        raise SystemExit(f"--exastor-bin {args.exastor_bin}: no such file")
    args.workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "write_path",
        "started_at": utc_stamp(),
        "argv": sys.argv,
        "inputs": {
            "servers": names, "exastor_bin": str(args.exastor_bin), "label_suffix": args.label_suffix,
            "large": f"{args.large_count} x {args.large_mib} MiB fresh random, put_object one after the other",
            "small": f"{args.small_count} x 4 KiB fresh random PUT then GET at concurrency {args.concurrency}",
            "gets": "warm (--warm-gets)" if args.warm_gets else (
                "page cache dropped before each GET step" if os.geteuid() == 0 else "warm (not root)"),
            "server_cpu": "user+system of the server's process tree (reaped children included) from the step's "
                          "start until the server is quiet again; at the last response kept too",
            "boto3": boto3.__version__, "botocore": botocore.__version__,
            "tls": args.tls, "euid": os.geteuid(), "nice": os.nice(0), "workers": args.workers,
            "bench_git": git_info(REPO / "bench"),
        },
        "machine": machine_info(args.workdir),
        "rows": [],
    }
    old: list[dict[str, Any]] = []
    if args.merge and args.out.exists():
        before = json.loads(args.out.read_text())
        old = before.get("rows", [])
        if "floor" in before and "floor" not in result:  # measured by the run merged into
            result["floor"] = before["floor"]
    say(f"servers: {', '.join(names)}; exastor: {args.exastor_bin}; boto3 {boto3.__version__}; "
        f"results: {args.out}")
    if not args.no_floor:
        say("=== floor: the mandatory per-byte work of a large PUT, each stage alone (bench/put_floor.py)")
        result["floor"] = put_floor.measure(args.large_mib, "4+2")
        say(f"floor: {result['floor']['total']:.3f} CPU-s/GiB {result['floor']['stages']}")
    for name in names:
        say(f"=== {name}")
        row = run_server(args, name)
        result["rows"].append(row)
        labels = {r["label"] for r in result["rows"] if "label" in r}
        result["finished_at"] = utc_stamp()
        result["loadavg_at_end"] = os.getloadavg()
        write_result(args.out, {**result, "rows": [r for r in old if r.get("label") not in labels] + result["rows"]})
    rows = [r for r in old if r.get("label") not in {r2.get("label") for r2 in result["rows"]}] + result["rows"]
    print()
    print(table(rows))
    client = next((r["client"] for r in result["rows"] if "client" in r), None)
    if client:
        print(f"\nboto3 {boto3.__version__} / botocore {botocore.__version__}: PutObject checksum trailer "
              f"{'used' if client['checksum_trailer_used'] else 'not used'}; aws-chunked body "
              f"{'yes' if client['aws_chunked_body'] else 'no'}; checksum header "
              f"{'yes' if client['checksum_header_used'] else 'no'}")
    for r in result["rows"]:
        for k, v in (r.get("write_amplification", {}).get("stats_fields") or {}).items():
            print(f"  {r['label']}: stats {k}: {v}")
    if "floor" in result:
        print("\n" + floor_line(result["floor"], rows))
    print(f"\nresults: {args.out}")
    plot(rows, args.plot, result.get("floor"))
    return 1 if any(r.get("errors") for r in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
