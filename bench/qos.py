#!/usr/bin/env python3
"""QoS under a noisy neighbour (http/qos.py): does a tenant limited to N requests/s get N while it
saturates, and what happens to a quiet tenant's latency meanwhile?

Starts `exastor serve` (2 workers, one drive) on loopback, with two users: ``noisy`` (limited to
``--rate`` requests/s, burst ``--rate/10``) and ``quiet`` (no limit). Each tenant GETs one 4 KiB
object through a pre-signed URL (so the client spends nothing on signing) from its own process:
noisy with ``--noisy-conc`` connections in a closed loop that ignores Retry-After (the worst case),
quiet with one connection. Phases, in the same run:

1. quiet alone (its baseline p50/p99);
2. noisy alone (its admitted rate);
3. noisy and quiet together (admitted rate, quiet's p50/p99);
4. the same without the limit (what QoS prevents: noisy unlimited, quiet's p99).

Also the cost of the admission check itself, in-process: ``admit`` per request with and without a
limit on the caller. Writes bench/results/qos.json; docs/benchmarks.md has the table.

    python bench/qos.py [--rate 200] [--seconds 10] [--noisy-conc 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

EXASTOR = [sys.executable, "-m", "exastor.cli"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port}")


# --- one tenant's load, in a process of its own ------------------------------------------------

async def _load(url: str, seconds: float, conc: int, polite: bool) -> dict[str, Any]:
    """A closed loop of GETs on ``conc`` connections. ``polite``: after a 503, wait a jittered backoff
    that doubles from 10 ms (at most 1 s), as SDK retry policies do; otherwise go again at once."""
    import random

    import aiohttp

    latencies: list[float] = []
    codes: dict[int, int] = {}
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def lane() -> None:
            backoff = 0.01
            while time.monotonic() < end:
                started = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    status = resp.status
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                    backoff = 0.01
                elif polite:
                    await asyncio.sleep(random.uniform(0, backoff))
                    backoff = min(1.0, backoff * 2)
                codes[status] = codes.get(status, 0) + 1

        await asyncio.gather(*(lane() for _ in range(conc)))
    return {"seconds": seconds, "codes": codes, "ok_per_s": codes.get(200, 0) / seconds,
            "latencies": latencies}


def tenant_main(url: str, seconds: float, conc: int, out: str, polite: bool) -> None:
    res = asyncio.run(_load(url, seconds, conc, polite))
    Path(out).write_text(json.dumps(res))


def _spawn(url: str, seconds: float, conc: int, tmp: Path, name: str, polite: bool = False
           ) -> tuple[subprocess.Popen, Path]:
    out = tmp / f"{name}-{time.monotonic_ns()}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--tenant", url, str(seconds), str(conc), str(out),
                             "polite" if polite else "greedy"])
    return proc, out


def _collect(proc: subprocess.Popen, out: Path) -> dict[str, Any]:
    assert proc.wait(timeout=600) == 0
    return json.loads(out.read_text())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    lat = res.pop("latencies")
    return {**res, "p50_ms": round(_pct(lat, 0.5) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None}


# --- the admission check alone ------------------------------------------------------------------

def admit_cost(tmp: Path, n: int = 50_000) -> dict[str, float]:
    from exastor.gateway.store import open_metadata
    from exastor.http import qos
    from exastor.meta.records import User

    meta = open_metadata(tmp / "admit")
    meta.add_user(User("limited", "AKLIMITED", "x" * 40, 0))
    qos.enable(tmp / "admit" / "qos")
    out = {}
    for label, principal in (("no limits in the store", "limited"), ("caller without a limit", "other"),
                             ("caller with a limit", "limited")):
        if label == "caller without a limit":
            meta.set_qos("user", "limited", 1e9, 1e9, None, None)
        qos._limits_at = -1e9  # reread the limits now
        scope: dict[str, Any] = {}
        started = time.perf_counter()

        async def many(scope: dict[str, Any] = scope, principal: str = principal) -> None:
            for _ in range(n):
                await qos.admit(scope, meta, "s3", principal, "b", {})

        asyncio.run(many())
        out[label] = round((time.perf_counter() - started) / n * 1e6, 2)
    meta.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="noisy's limit, requests/s")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    ap.add_argument("--noisy-conc", type=int, default=16)
    ap.add_argument("--out", default=str(REPO / "bench/results/qos.json"))
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="exastor-qos-"))
    data = tmp / "data"
    s3_port, blob_port = _port(), _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXASTOR_")}
    server = subprocess.Popen([*EXASTOR, "serve", "--data", str(data), "--s3-port", str(s3_port),
                               "--blob-port", str(blob_port), "--workers", "2", "--access-key", "BENCHADMIN",
                               "--secret-key", "bench-admin-secret-0123456789"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_port(s3_port)
        import boto3
        from botocore.config import Config

        urls = {}
        for name in ("noisy", "quiet"):
            made = subprocess.run([*EXASTOR, "user", "add", name, "--data", str(data)], capture_output=True,
                                  text=True, check=True).stdout
            keys = dict(re.findall(r"^(access key|secret key)\s*: (\S+)", made, re.M))
            s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                              aws_access_key_id=keys["access key"], aws_secret_access_key=keys["secret key"],
                              config=Config(s3={"addressing_style": "path"}))
            s3.create_bucket(Bucket=f"{name}-bucket")
            s3.put_object(Bucket=f"{name}-bucket", Key="obj", Body=os.urandom(4096))
            urls[name] = s3.generate_presigned_url("get_object", Params={"Bucket": f"{name}-bucket", "Key": "obj"},
                                                   ExpiresIn=3600)

        def limit(on: bool) -> None:
            action = ["set", "user", "noisy", "--requests", str(args.rate), "--burst", str(max(1.0, args.rate / 10))] \
                if on else ["clear", "user", "noisy"]
            subprocess.run([*EXASTOR, "qos", *action, "--data", str(data)], check=True, capture_output=True)
            time.sleep(1.5)  # the workers reread the limits once a second (a bench, not a test)

        phases: dict[str, Any] = {}
        cpu0 = tree_cpu_seconds(server.pid)
        limit(True)
        phases["quiet alone"] = {"quiet": _summary(_collect(*_spawn(urls["quiet"], args.seconds, 1, tmp, "q")))}
        phases["noisy alone"] = {"noisy": _summary(_collect(*_spawn(urls["noisy"], args.seconds, args.noisy_conc,
                                                                    tmp, "n")))}
        both = [_spawn(urls["noisy"], args.seconds, args.noisy_conc, tmp, "n"),
                _spawn(urls["quiet"], args.seconds, 1, tmp, "q")]
        got = [_summary(_collect(*p)) for p in both]
        phases["noisy + quiet, noisy limited"] = {"noisy": got[0], "quiet": got[1]}
        both = [_spawn(urls["noisy"], args.seconds, args.noisy_conc, tmp, "n", polite=True),
                _spawn(urls["quiet"], args.seconds, 1, tmp, "q")]
        got = [_summary(_collect(*p)) for p in both]
        phases["polite noisy + quiet, noisy limited"] = {"noisy": got[0], "quiet": got[1]}
        limit(False)
        both = [_spawn(urls["noisy"], args.seconds, args.noisy_conc, tmp, "n"),
                _spawn(urls["quiet"], args.seconds, 1, tmp, "q")]
        got = [_summary(_collect(*p)) for p in both]
        phases["noisy + quiet, no limit"] = {"noisy": got[0], "quiet": got[1]}
        cpu = tree_cpu_seconds(server.pid) - cpu0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    limited = phases["noisy + quiet, noisy limited"]
    result = {
        "label": "qos", "started_at": utc_stamp(), "machine": machine_info(tmp),
        "geometry": "1 drive (no erasure), 2 gateway workers, SQLite metadata",
        "params": vars(args), "phases": phases, "server_cpu_seconds": round(cpu, 2),
        "admit_us": admit_cost(tmp),
        "checks": {
            "noisy_rate_within_10pct": abs(limited["noisy"]["ok_per_s"] - args.rate) <= 0.1 * args.rate,
            "noisy_alone_rate_within_10pct": abs(phases["noisy alone"]["noisy"]["ok_per_s"] - args.rate)
            <= 0.1 * args.rate,
            "quiet_p99_within_2x": limited["quiet"]["p99_ms"] <= 2 * phases["quiet alone"]["quiet"]["p99_ms"],
            "polite_noisy_rate_within_10pct": abs(phases["polite noisy + quiet, noisy limited"]["noisy"]["ok_per_s"]
                                                  - args.rate) <= 0.1 * args.rate,
            "quiet_p99_within_2x_of_polite_noisy": phases["polite noisy + quiet, noisy limited"]["quiet"]["p99_ms"]
            <= 2 * phases["quiet alone"]["quiet"]["p99_ms"],
        },
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--tenant":
        tenant_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "polite")
        sys.exit(0)
    sys.exit(main())
