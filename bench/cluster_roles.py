#!/usr/bin/env python3
"""Server CPU per role and network bytes per stored byte with 1, 2 and 4 gateways over drive servers
(issue 14, "How we will know"): one machine, everything on loopback.

Per configuration (``--configs``, alternated in that order so that the machine's changing load falls
on every configuration alike), a fresh store: a fresh PostgreSQL database in one throwaway cluster
(tests/pgcluster.py), ``--drive-servers`` `exastor drive-server` processes on 127.0.1.N (one drive
each: N hosts, so placement puts every replica and shard on its own host), and N `exastor serve
--meta postgresql://... --workers 1` gateways (the first one adds the drives and the geometry, the
others find them in the metadata). Then:

0. Each fresh gateway PUTs and GETs one 1 MiB object (``--warmup``, the default: a new process's
   one-time costs stay outside the windows), then 5 s of idle CPU per role are sampled
   (``--idle-s``): the per-process background cost, reported beside ("less idle").
1. *PUT*: ``--put-mib`` MiB of fresh random objects of ``--object-mib`` MiB, ``--concurrency`` at a
   time, round-robin over the gateways; then every gateway is stopped (SIGTERM), which seals the
   segments still open. The window ends when the last gateway has exited, so it holds every replica
   append, every seal (read back from a replica, erasure coded, shards written) and the metadata
   commits. Gateway CPU is the exited process tree's own rusage (``os.wait4``: the master and the
   workers it reaped), so nothing done while stopping is lost.
2. *GET*: the gateways are started again (outside the window) and every object is read back, each
   through a gateway other than the one that wrote it (with N > 1), and checked (SHA-256), in
   ``--get-passes`` passes: the first pass is the GET of earlier runs (``get``); the passes after it
   (``get_steady``) read the same bytes again through the same processes, so what a process pays
   once for its first bytes (connections, layouts, its heap) is not spread over one short window.
   Each pass also records the gateways' minor page faults.
3. *4 KiB*: ``--small`` fresh 4 KiB objects PUT, then GET, round-robin over the gateways at the
   same client concurrency (``--small-concurrency``) for every N: the small-object rates of 2
   gateways against 1 in the same run.

Server CPU per role: gateway process trees, drive-server process trees, and the PostgreSQL cluster's
tree (postmaster and backends) - never the client's. Network bytes: the drive servers' own counters
(drives/server.py, ``GET /NAME/traffic``): request and answer *body* bytes per operation (HTTP headers
not included), i.e. what gateways send to and fetch from drive servers. Client bytes to gateways are
the objects themselves. The client is aiohttp with presigned SigV4 URLs (bench/smallops.py's
approach), one process, niced like the rest.

    nice -n 10 python bench/cluster_roles.py [--configs 1,2,4,4,2,1] [--put-mib 1024] [--object-mib 16]
        [--drive-servers 6] [--ec 4+2] [--get-passes 3] [--small 2000] [--out bench/results/cluster_roles.json] [--plot]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import aiohttp  # noqa: E402
import boto3  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.lib.rss import tree_cpu_seconds, tree_minor_faults  # noqa: E402
from botocore.config import Config  # noqa: E402

GIB = 1 << 30
SMALL = 4096
GATEWAY_ENV = {"EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0", "EXASTOR_SCRUB_INTERVAL": "0",
               "EXASTOR_REPAIR_INTERVAL": "3600"}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- the client -------------------------------------------------------------------------
async def _transfer(jobs: list[tuple[str, str, Any]], concurrency: int) -> float:
    """Run (method, url, body maker | expected sha256) jobs, ``concurrency`` at a time; seconds taken.
    A PUT must answer 200; a GET must answer 200 with the bytes whose SHA-256 was recorded."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        it = iter(jobs)

        async def worker() -> None:
            for method, url, what in it:
                if method == "PUT":
                    assert callable(what)
                    async with session.put(url, data=what(), skip_auto_headers=["Content-Type"]) as r:
                        text = await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"PUT {url.split('?')[0]}: {r.status} {text[:300]!r}")
                else:
                    async with session.get(url) as r:
                        data = await r.read()
                        if r.status != 200:
                            raise RuntimeError(f"GET {url.split('?')[0]}: {r.status} {data[:300]!r}")
                        if hashlib.sha256(data).hexdigest() != what:
                            raise RuntimeError(f"GET {url.split('?')[0]}: other bytes than were written")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def _body(size: int, rng: random.Random, digests: dict[int, str], index: int) -> Callable[[], bytes]:
    """Fresh random bytes (nothing to dedupe or compress), made when sent; their SHA-256 kept."""
    def make() -> bytes:
        data = rng.randbytes(size)
        digests[index] = hashlib.sha256(data).hexdigest()
        return data
    return make


# --- the cluster ------------------------------------------------------------------------
class Cluster:
    """One store: a database, drive servers, and ``gateways`` gateway processes."""

    def __init__(self, pg: Any, base: Path, index: int, gateways: int, drive_servers: int, ec: str) -> None:
        from conftest import ServerProcess, free_port
        from drive_servers import DriveServerProcess, cluster_key

        self.pg, self.base, self.index, self.ec = pg, base, index, ec
        self.db = f"roles{index}"
        self.dsn = pg.create_database(self.db)
        self.key = cluster_key(base)
        self.servers = []
        for n in range(1, drive_servers + 1):
            ds = DriveServerProcess({f"d{n}": base / f"host{n}" / f"d{n}"}, self.key, base / f"ds{n}.log")
            ds.host = f"127.0.1.{n}"
            self.servers.append(ds)
        env = {"EXASTOR_CLUSTER_KEY_FILE": str(self.key), "EXASTOR_META_URL": self.dsn, **GATEWAY_ENV}
        drive_args = [x for n, ds in enumerate(self.servers, 1) for x in ("--drive", ds.url(f"d{n}"))]
        self.gateways = [ServerProcess(base / f"gw{g}", free_port(), free_port(), base / f"gw{g}.log", env=env,
                                       extra_args=["--workers", "1", *(drive_args + ["--ec", ec] if g == 0 else [])])
                         for g in range(gateways)]
        self.gateway_cpu_at_exit: list[float] = []

    def start(self) -> None:
        for ds in self.servers:
            ds.start()
        self.start_gateways()

    def start_gateways(self) -> None:
        for g, gw in enumerate(self.gateways):
            gw.data_dir.mkdir(mode=0o700, exist_ok=True)
            if g > 0 and not (gw.data_dir / "master.key").exists():  # one store, one master key
                shutil.copy2(self.gateways[0].data_dir / "master.key", gw.data_dir / "master.key")
            gw.start()

    def stop_gateways(self, timeout: float = 300.0) -> list[float]:
        """SIGTERM every gateway (they seal what they hold open) and reap each: CPU seconds of each
        whole tree (its rusage, with the workers it reaped)."""
        for gw in self.gateways:
            os.killpg(gw.proc.pid, signal.SIGTERM)
        cpu = []
        for gw in self.gateways:
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(gw.proc.pid, os.WNOHANG)
                if pid:
                    gw.proc.returncode = os.waitstatus_to_exitcode(status)
                    cpu.append(usage.ru_utime + usage.ru_stime)
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gateway did not stop in {timeout} s:\n{gw.log_text()[-3000:]}")
                time.sleep(0.05)
        return cpu

    def s3(self, gw: Any) -> Any:
        return boto3.client("s3", endpoint_url=gw.endpoint, region_name="us-east-1",
                            aws_access_key_id=gw.access_key, aws_secret_access_key=gw.secret_key,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each role's process trees (gateways while they run)."""
        return {"gateway": sum(tree_cpu_seconds(gw.proc.pid) for gw in self.gateways),
                "drive_server": sum(tree_cpu_seconds(ds.proc.pid) for ds in self.servers),
                "postgresql": tree_cpu_seconds(self.pg_pid())}

    def gateway_faults(self) -> int:
        """Minor page faults so far of the gateways' process trees (pages first touched or touched
        again after ``malloc_trim`` gave them back)."""
        return sum(tree_minor_faults(gw.proc.pid) for gw in self.gateways)

    def pg_pid(self) -> int:
        return int((self.pg.data / "postmaster.pid").read_text().split()[0])

    def traffic(self) -> dict[str, dict[str, int]]:
        """Summed over the drive servers: op -> requests, received_bytes, sent_bytes."""
        from exastor.drives.remote import RemoteDrive
        from exastor.drives.wire import load_key

        total: dict[str, dict[str, int]] = {}
        for n, ds in enumerate(self.servers, 1):
            drive = RemoteDrive(ds.url(f"d{n}"), load_key(self.key))
            try:
                for op, row in drive.traffic().items():
                    acc = total.setdefault(op, {"requests": 0, "received_bytes": 0, "sent_bytes": 0})
                    for k, v in row.items():
                        acc[k] += v
            finally:
                drive.close()
        return total

    def segment_states(self) -> dict[str, list[int]]:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as con:
            rows = con.execute("SELECT state, COUNT(*), COALESCE(SUM(size), 0) FROM segments GROUP BY state").fetchall()
            coded = con.execute("SELECT COUNT(*), COALESCE(SUM(data_len), 0) FROM segment_layout WHERE m > 0").fetchone()
        out = {state: [int(n), int(size)] for state, n, size in rows}
        out["erasure_coded"] = [int(coded[0]), int(coded[1])] if coded else [0, 0]
        return out

    def close(self) -> None:
        for gw in self.gateways:
            gw.kill()
        for ds in self.servers:
            ds.stop()
        problems = [p.name for p in [*(gw.log_path for gw in self.gateways), *(ds.log_path for ds in self.servers)]
                    if p.exists() and "Traceback" in p.read_text(errors="replace")]
        self.pg.drop_database(self.db)
        if problems:
            raise RuntimeError(f"tracebacks in {problems}: see {self.base}")
        shutil.rmtree(self.base, ignore_errors=True)


def _delta(a: dict[str, dict[str, int]], b: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {op: {k: v - a.get(op, {}).get(k, 0) for k, v in row.items()} for op, row in b.items()
            if any(v - a.get(op, {}).get(k, 0) for k, v in row.items())}


def _bytes(t: dict[str, dict[str, int]]) -> dict[str, int]:
    return {"to_drive_servers": sum(r["received_bytes"] for r in t.values()),
            "from_drive_servers": sum(r["sent_bytes"] for r in t.values())}


# --- one configuration ------------------------------------------------------------------
def warm_up(clients: list[Any], phase: str) -> None:
    """One 1 MiB PUT (phase "put") or GET of it ("get") through each gateway, checked (boto3)."""
    for g, s3 in enumerate(clients):
        key = f"warm/{g}"
        body = random.Random(f"warm-up {g}").randbytes(1 << 20)  # a seed no measured object uses: no dedupe
        if phase == "put":
            s3.put_object(Bucket="roles", Key=key, Body=body)
        elif s3.get_object(Bucket="roles", Key=key)["Body"].read() != body:
            raise RuntimeError(f"warm-up GET {key}: other bytes than were written")


def run_config(pg: Any, work: Path, index: int, gateways: int, args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(dir=work, prefix=f"c{index}-"))
    cluster = Cluster(pg, base, index, gateways, args.drive_servers, args.ec)
    out: dict[str, Any] = {"round": index, "gateways": gateways, "uptime_before": uptime()}
    try:
        cluster.start()
        clients = [cluster.s3(gw) for gw in cluster.gateways]
        clients[0].create_bucket(Bucket="roles")
        size = args.object_mib << 20
        count = max(1, args.put_mib // args.object_mib)
        keys = [f"big/{i:05d}" for i in range(count)]
        rng = random.Random(index)
        digests: dict[int, str] = {}
        puts = [("PUT", clients[i % gateways].generate_presigned_url(
            "put_object", Params={"Bucket": "roles", "Key": k}, ExpiresIn=7200), _body(size, rng, digests, i))
            for i, k in enumerate(keys)]
        stored = count * size

        # 0a. Warm-up (--warmup): each gateway PUTs and GETs one 1 MiB object first, so that what a
        # fresh process pays once (imports, connection pools, its first segment) is outside the window.
        # Those bytes are sealed inside it (1 MiB per gateway, under 1% of --put-mib at 4 gateways).
        if args.warmup:
            warm_up(clients, "put")

        # 0b. What the processes burn idle (heartbeats, lease and membership rows, the manager's
        # checks): a per-process cost, not a per-byte one, that a slow window on a loaded machine adds.
        a = cluster.cpu()
        time.sleep(args.idle_s)  # a measuring interval, not a wait for something to happen
        idle = {k: (v - a[k]) / args.idle_s for k, v in cluster.cpu().items()}
        out["idle_cpu_s_per_s"] = {k: round(v, 4) for k, v in idle.items()}

        # 1. PUT, seals included
        t0, c0 = cluster.traffic(), cluster.cpu()
        wall = asyncio.run(_transfer(puts, args.concurrency))
        c_sent = cluster.cpu()  # every object acknowledged; the segments still open are sealed at the stop
        stop_started = time.perf_counter()
        gw_cpu = sum(cluster.stop_gateways())
        stop_s = time.perf_counter() - stop_started
        c1, t1 = cluster.cpu(), cluster.traffic()
        traffic = _delta(t0, t1)
        put_cpu = {"gateway": gw_cpu - c0["gateway"], "drive_server": c1["drive_server"] - c0["drive_server"],
                   "postgresql": c1["postgresql"] - c0["postgresql"]}
        out["put"] = {"objects": count, "object_bytes": size, "bytes": stored, "seconds": round(wall, 2),
                      "stop_and_seal_seconds": round(stop_s, 2), "MBps_client": round(stored / wall / 1e6, 1),
                      "cpu_s": {k: round(v, 2) for k, v in put_cpu.items()},
                      "cpu_s_per_gib": {k: round(v / (stored / GIB), 3) for k, v in put_cpu.items()},
                      "cpu_s_until_acknowledged": {k: round(c_sent[k] - c0[k], 2) for k in c0},
                      "cpu_s_per_gib_less_idle": {k: round((v - idle[k] * (wall + stop_s)) / (stored / GIB), 3)
                                                  for k, v in put_cpu.items()},
                      "traffic": traffic, **{k: v for k, v in _bytes(traffic).items()},
                      "network_bytes_per_stored_byte": round(sum(_bytes(traffic).values()) / stored, 3),
                      # an operation that did not happen is 0 (large PUTs as full stripes: no appends, no seal reads)
                      "per_stored_byte": {op: round((traffic[op]["received_bytes"] + traffic[op]["sent_bytes"]) / stored, 3)
                                          if op in traffic else 0.0 for op in ("append", "pread", "put")},
                      "segments_after": cluster.segment_states()}

        # 2. GET, each object through another gateway than wrote it
        cluster.start_gateways()
        clients = [cluster.s3(gw) for gw in cluster.gateways]
        if args.warmup:
            warm_up(clients, "get")
        gets = [("GET", clients[(i + 1) % gateways].generate_presigned_url(
            "get_object", Params={"Bucket": "roles", "Key": k}, ExpiresIn=7200), digests[i])
            for i, k in enumerate(keys)]
        out["uptime_get"] = uptime()
        passes = []
        for _ in range(args.get_passes):
            t0, c0, f0 = cluster.traffic(), cluster.cpu(), cluster.gateway_faults()
            wall = asyncio.run(_transfer(gets, args.concurrency))
            c1, t1, f1 = cluster.cpu(), cluster.traffic(), cluster.gateway_faults()
            passes.append({"seconds": wall, "cpu_s": {k: c1[k] - c0[k] for k in c0},
                           "gateway_minor_faults": f1 - f0, "traffic": _delta(t0, t1)})
        out["get_passes"] = [{"seconds": round(p["seconds"], 2), "cpu_s": {k: round(v, 2) for k, v in p["cpu_s"].items()},
                              "gateway_minor_faults": p["gateway_minor_faults"]} for p in passes]
        # the first pass: the GET window of earlier runs; the others together: the steady passes
        for name, chosen in (("get", passes[:1]), ("get_steady", passes[1:])):
            if not chosen:
                continue
            read = stored * len(chosen)
            wall = sum(p["seconds"] for p in chosen)
            get_cpu = {k: sum(p["cpu_s"][k] for p in chosen) for k in chosen[0]["cpu_s"]}
            traffic: dict[str, dict[str, int]] = {}
            for p in chosen:
                for op, row in p["traffic"].items():
                    acc = traffic.setdefault(op, dict.fromkeys(row, 0))
                    for k, v in row.items():
                        acc[k] += v
            out[name] = {"passes": len(chosen), "bytes": read, "seconds": round(wall, 2),
                         "MBps_client": round(read / wall / 1e6, 1),
                         "cpu_s": {k: round(v, 2) for k, v in get_cpu.items()},
                         "cpu_s_per_gib": {k: round(v / (read / GIB), 3) for k, v in get_cpu.items()},
                         "cpu_s_per_gib_less_idle": {k: round((v - idle[k] * wall) / (read / GIB), 3)
                                                     for k, v in get_cpu.items()},
                         "gateway_minor_faults_per_gib": round(sum(p["gateway_minor_faults"] for p in chosen)
                                                               / (read / GIB)),
                         "traffic": traffic, **{k: v for k, v in _bytes(traffic).items()},
                         "network_bytes_per_read_byte": round(sum(_bytes(traffic).values()) / read, 3)}

        # 3. 4 KiB objects, same client concurrency for every number of gateways
        small_keys = [f"small/{i:06d}" for i in range(args.small)]
        small_digests: dict[int, str] = {}
        srng = random.Random(1000 + index)
        small_puts = [("PUT", clients[i % gateways].generate_presigned_url(
            "put_object", Params={"Bucket": "roles", "Key": k}, ExpiresIn=7200), _body(SMALL, srng, small_digests, i))
            for i, k in enumerate(small_keys)]
        out["uptime_small"] = uptime()
        jobs: list[tuple[str, str, Any]] | None
        for method, jobs in (("PUT", small_puts), ("GET", None)):
            if jobs is None:
                jobs = [("GET", clients[(i + 1) % gateways].generate_presigned_url(
                    "get_object", Params={"Bucket": "roles", "Key": k}, ExpiresIn=7200), small_digests[i])
                    for i, k in enumerate(small_keys)]
            t0, c0 = cluster.traffic(), cluster.cpu()
            wall = asyncio.run(_transfer(jobs, args.small_concurrency))
            c1, t1 = cluster.cpu(), cluster.traffic()
            traffic = _delta(t0, t1)
            out[f"small_{method.lower()}"] = {
                "count": args.small, "seconds": round(wall, 2), "per_s": round(args.small / wall, 1),
                "cpu_us_per_request": {k: round((c1[k] - c0[k]) / args.small * 1e6) for k in c0},
                "drive_server_requests_per_object": round(sum(r["requests"] for r in traffic.values()) / args.small, 2),
                "network_bytes_per_object": round(sum(_bytes(traffic).values()) / args.small),
                "traffic": traffic}
        out["uptime_after"] = uptime()
    finally:
        cluster.close()
    return out


def _median(rows: list[dict[str, Any]], *path: str) -> float:
    values = []
    for row in rows:
        v: Any = row
        for p in path:
            v = v[p]
        values.append(v)
    return round(statistics.median(values), 3)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sorted({r["gateways"] for r in rounds}):
        rows = [r for r in rounds if r["gateways"] == n]
        s: dict[str, Any] = {"rounds": len(rows)}
        for phase in ("put", "get", "get_steady"):
            if any(phase not in r for r in rows):
                continue  # a run from before --get-passes
            s[phase] = {}
            for what in ("cpu_s_per_gib", "cpu_s_per_gib_less_idle"):
                s[phase][what] = {role: _median(rows, phase, what, role)
                                  for role in ("gateway", "drive_server", "postgresql")}
                s[phase][what]["servers"] = round(sum(s[phase][what].values()), 3)
            s[phase]["MBps_client"] = _median(rows, phase, "MBps_client")
            if phase != "put" and "gateway_minor_faults_per_gib" in rows[0][phase]:
                s[phase]["gateway_minor_faults_per_gib"] = _median(rows, phase, "gateway_minor_faults_per_gib")
        s["put"]["network_bytes_per_stored_byte"] = _median(rows, "put", "network_bytes_per_stored_byte")
        s["put"]["per_stored_byte"] = {op: _median(rows, "put", "per_stored_byte", op)
                                       for op in ("append", "pread", "put")}
        s["get"]["network_bytes_per_read_byte"] = _median(rows, "get", "network_bytes_per_read_byte")
        for phase in ("small_put", "small_get"):
            s[phase] = {"per_s": _median(rows, phase, "per_s"),
                        "cpu_us_per_request": {role: _median(rows, phase, "cpu_us_per_request", role)
                                               for role in ("gateway", "drive_server", "postgresql")}}
        out[str(n)] = s
    if "1" in out:
        one = out["1"]
        for s in out.values():
            s["vs_1_gateway"] = {
                "put_server_cpu_per_gib": _ratio(s, one, "put", "cpu_s_per_gib", "servers"),
                "put_gateway_cpu_per_gib": _ratio(s, one, "put", "cpu_s_per_gib", "gateway"),
                "get_server_cpu_per_gib": _ratio(s, one, "get", "cpu_s_per_gib", "servers"),
                "get_gateway_cpu_per_gib": _ratio(s, one, "get", "cpu_s_per_gib", "gateway"),
                "small_put_rate": _ratio(s, one, "small_put", "per_s"),
                "small_get_rate": _ratio(s, one, "small_get", "per_s"),
                "put_server_cpu_per_gib_less_idle": _ratio(s, one, "put", "cpu_s_per_gib_less_idle", "servers"),
                "put_gateway_cpu_per_gib_less_idle": _ratio(s, one, "put", "cpu_s_per_gib_less_idle", "gateway")}
            if "get_steady" in s and "get_steady" in one:
                for role, key in (("servers", "server"), ("gateway", "gateway"), ("drive_server", "drive_server")):
                    s["vs_1_gateway"][f"get_steady_{key}_cpu_per_gib"] = _ratio(s, one, "get_steady", "cpu_s_per_gib",
                                                                               role)
            for phase in ("put", "get"):
                s["vs_1_gateway"][f"{phase}_drive_server_cpu_per_gib"] = _ratio(s, one, phase, "cpu_s_per_gib",
                                                                                "drive_server")
        s["idle_cpu_s_per_s"] = {role: _median(rows, "idle_cpu_s_per_s", role)
                                 for role in ("gateway", "drive_server", "postgresql")}
    return out


def _ratio(config: dict[str, Any], one: dict[str, Any], *path: str) -> float | None:
    """``config``'s value at ``path`` over the 1-gateway configuration's, or None where the latter is
    0 (a phase too short for the 10 ms CPU ticks to count, as in the CI smoke run)."""
    mine, base = config, one
    for part in path:
        mine, base = mine[part], base[part]
    return round(mine / base, 3) if base else None


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    ns = sorted(summary, key=int)
    roles = ("gateway", "drive_server", "postgresql")
    phases = [p for p in ("put", "get", "get_steady") if all(p in summary[n] for n in ns)]
    titles = {"put": "PUT (seal included)", "get": "GET, first pass (through another gateway)",
              "get_steady": "GET, steady passes"}
    fig, axes = plt.subplots(1, len(phases), figsize=(5 * len(phases), 4))
    for ax, phase in zip(axes, phases, strict=True):
        bottom = [0.0] * len(ns)
        for role in roles:
            vals = [summary[n][phase]["cpu_s_per_gib"][role] for n in ns]
            ax.bar(ns, vals, bottom=bottom, label=role.replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_title(titles[phase], fontsize=10)
        ax.set_xlabel("gateway processes")
        ax.set_ylabel("server CPU-s per GiB (median)")
    axes[0].legend()
    fig.suptitle(f"{result['inputs']['drive_servers']} drive servers, EC {result['inputs']['ec']}, "
                 f"{result['inputs']['put_mib']} MiB per configuration per round")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def render(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md tables of a result (medians per number of gateways)."""
    summary = result["summary"]
    ns = sorted(summary, key=int)
    per_role = any(f"{p}_drive_server_cpu_per_gib" in summary[n].get("vs_1_gateway", {}) for n in ns for p in ("put", "get"))
    lines = ["| gateways | rounds | phase | gateway CPU-s/GiB | drive servers | PostgreSQL | all servers "
             f"| vs 1 gateway (all / gateway{' / drive servers' if per_role else ''}) | all servers less idle "
             f"| client MB/s |{' gateway minor faults per GiB |' if per_role else ''}",
             f"|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|{'---:|' if per_role else ''}"]
    labels = {"put": "PUT", "get": "GET" if "get_steady" not in summary[ns[0]] else "GET, first pass",
              "get_steady": "GET, steady passes"}
    for phase in ("put", "get", "get_steady"):
        for n in ns:
            s = summary[n]
            if phase not in s:
                continue
            c = s[phase]["cpu_s_per_gib"]
            vs = s.get("vs_1_gateway", {})
            ratios = [vs.get(f"{phase}_{role}_cpu_per_gib") for role in
                      ("server", "gateway", *(["drive_server"] if per_role else []))]
            lines.append(f"| {n} | {s['rounds']} | {labels[phase]} | {c['gateway']:.2f} | {c['drive_server']:.2f} | "
                         f"{c['postgresql']:.2f} | **{c['servers']:.2f}** | {' / '.join(_times(r) for r in ratios)}"
                         f" | {s[phase]['cpu_s_per_gib_less_idle']['servers']:.2f} | {s[phase]['MBps_client']:.0f} |"
                         + (f" {_count(s[phase].get('gateway_minor_faults_per_gib'))} |" if per_role else ""))
    lines += ["", "| gateways | network bytes per stored byte | replica appends | seal's replica reads | shard puts "
              "| GET: bytes from drive servers per byte read |", "|---:|---:|---:|---:|---:|---:|"]
    for n in ns:
        p, g = summary[n]["put"], summary[n]["get"]
        lines.append(f"| {n} | **{p['network_bytes_per_stored_byte']:.3f}** | {p['per_stored_byte']['append']:.3f} | "
                     f"{p['per_stored_byte']['pread']:.3f} | {p['per_stored_byte']['put']:.3f} | "
                     f"{g['network_bytes_per_read_byte']:.3f} |")
    lines += ["", "| gateways | 4 KiB PUT/s | vs 1 | CPU-µs per PUT (gateway + drive servers + PostgreSQL) "
              "| 4 KiB GET/s | vs 1 | CPU-µs per GET (gateway + drive servers + PostgreSQL) |",
              "|---:|---:|---:|---|---:|---:|---|"]
    for n in ns:
        s = summary[n]
        vs = s.get("vs_1_gateway", {})

        def us(phase: str, s: dict[str, Any] = s) -> str:
            c = s[phase]["cpu_us_per_request"]
            return f"{c['gateway']:,.0f} + {c['drive_server']:,.0f} + {c['postgresql']:,.0f}"
        lines.append(f"| {n} | {s['small_put']['per_s']:.0f} | {_times(vs.get('small_put_rate'))} | {us('small_put')} | "
                     f"{s['small_get']['per_s']:.0f} | {_times(vs.get('small_get_rate'))} | {us('small_get')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="1,2,4,4,2,1", help="gateway counts, in the order run")
    ap.add_argument("--drive-servers", type=int, default=6)
    ap.add_argument("--ec", default="4+2")
    ap.add_argument("--put-mib", type=int, default=1024, help="MiB PUT (then GET) per configuration and round")
    ap.add_argument("--object-mib", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8, help="large objects in flight")
    ap.add_argument("--get-passes", type=int, default=3,
                    help="times every object is read back: the first pass is reported alone (the GET of "
                         "earlier runs), the others together as the steady GET")
    ap.add_argument("--small", type=int, default=2000, help="4 KiB objects per configuration and round")
    ap.add_argument("--small-concurrency", type=int, default=16)
    ap.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                    help="one 1 MiB PUT/GET through each fresh gateway before each window")
    ap.add_argument("--idle-s", type=float, default=5.0, help="seconds of idle CPU sampled before the PUTs")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cluster_roles.json"))
    ap.add_argument("--plot", help="write a PNG of the medians here (needs matplotlib)")
    ap.add_argument("--render", metavar="JSON", help="print the markdown tables of a result and exit")
    args = ap.parse_args(argv)
    if args.render:
        from bench.lib.results import read_result

        print(render(read_result(args.render)))
        return 0
    from pgcluster import PgCluster, pg_bindir

    bindir = pg_bindir()
    if bindir is None:
        print("cluster_roles: PostgreSQL is not installed (initdb, pg_ctl)", file=sys.stderr)
        return 2
    configs = [int(x) for x in args.configs.split(",")]
    started = utc_stamp()
    pg = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="excr-", dir="/tmp")))  # a short socket path
    work = Path(tempfile.mkdtemp(dir=REPO / "bench", prefix=".cluster-roles-"))
    rounds = []
    partial = REPO / "bench" / "results" / "tmp" / "cluster_roles.partial.json"  # gitignored
    try:
        pg.start()
        for index, n in enumerate(configs):
            rounds.append(run_config(pg, work, index, n, args))
            r = rounds[-1]
            print(f"[{index}] {n} gateway(s): PUT {r['put']['cpu_s_per_gib']} CPU-s/GiB, "
                  f"net {r['put']['network_bytes_per_stored_byte']}x; GET {r['get']['cpu_s_per_gib']}; "
                  f"GET steady {r.get('get_steady', {}).get('cpu_s_per_gib')}; "
                  f"4 KiB PUT {r['small_put']['per_s']}/s GET {r['small_get']['per_s']}/s | {r['uptime_after']}",
                  flush=True)
            write_result(partial, {"bench": "cluster_roles", "when": started, "rounds": rounds})  # if cut off
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    from exastor.engine.erasure import parse

    g = parse(args.ec)
    minimum = {"write_buffer_replicas": g.m + 1, "erasure_coding": round((g.k + g.m) / g.k, 3),
               "replicas_then_erasure_coding": round(g.m + 1 + (g.k + g.m) / g.k, 3),
               "note": "bytes to drive servers per byte stored: m+1 replica appends, then k+m shards of "
                       "1/k each; a seal that erasure-codes from the gateway's memory reads nothing back"}
    result = {"bench": "cluster_roles", "when": started, "finished": utc_stamp(), "machine": machine_info(REPO),
              "inputs": {**vars(args), "configs": configs, "gateway_workers": 1, "segment_bytes": 64 << 20,
                         "write_buffer_replicas": "m+1", "encryption_at_rest": "on (default for a new store)"},
              "network_minimum": minimum, "rounds": rounds, "summary": summarise(rounds)}
    write_result(args.out, result)
    partial.unlink(missing_ok=True)
    print(f"wrote {args.out}")
    if args.plot:
        plot(result, Path(args.plot))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
