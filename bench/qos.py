#!/usr/bin/env python3
"""QoS under a noisy neighbour (http/qos.py): does a tenant limited to N requests/s get N while it
saturates, and what happens to a quiet tenant's latency meanwhile?

Starts `exastor serve` (2 workers, one drive) on loopback, with three users: ``noisy`` (limited to
``--rate`` requests/s, burst ``--rate/10``), ``quiet`` and ``loud`` (no limit). Each tenant GETs one 4 KiB
object through a pre-signed URL (so the client spends nothing on signing) from its own process:
noisy in a closed loop that ignores Retry-After (the worst case), quiet with one connection.
Phases, in the same run:

1. quiet alone (its baseline p50/p99);
2. noisy alone, ``--noisy-conc`` connections (its admitted rate);
3. noisy and quiet together (admitted rate, quiet's p50/p99);
4. noisy flooding with ``--flood-conc`` connections (more waiting requests than MAX_DELAY holds,
   so most are refused with 503) and quiet;
5. a polite noisy (backs off after a 503 as SDKs do) and quiet;
6. the same load from a tenant without a limit (``loud``) beside quiet (what QoS prevents).

The phases run ``--rounds`` times, interleaved, and the quiet tenant's p99 in each phase is taken
relative to its p99 alone in the same round (median over the rounds): the machine is shared, and
its load changes between phases more than QoS does.

Also the cost of the admission check itself, in-process: ``admit`` per request with and without a
limit on the caller. Writes bench/results/qos.json; docs/benchmarks.md has the table.

    python bench/qos.py [--rate 200] [--seconds 5] [--rounds 3] [--noisy-conc 16] [--flood-conc 256]
    python bench/qos.py --render bench/results/qos.json     # the table
    python bench/qos.py --doc bench/results/qos.json        # rewrite the section of docs/benchmarks.md
    python bench/qos.py --compare LABEL=RESULT.json ...      # one row per run: ratios and load
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
    # The admitted rate counts the 200s that completed within the phase. The lanes' last requests,
    # sent before the end, complete after it, up to MAX_DELAY (0.5 s) later when their tokens were
    # reserved: counted over the phase's seconds they would add up to conc of them, e.g. +100/s*0.5 s
    # over a 5 s phase with 256 lanes (the +10.6% of the 2026-12-06 quiet run), a limit the limiter
    # never exceeded. They are reported apart (ok_after_end).
    in_window = 0
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def lane() -> None:
            nonlocal in_window
            backoff = 0.01
            while time.monotonic() < end:
                started = time.perf_counter()
                async with session.get(url) as resp:
                    await resp.read()
                    status = resp.status
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                    backoff = 0.01
                    if time.monotonic() <= end:
                        in_window += 1
                elif polite:
                    await asyncio.sleep(random.uniform(0, backoff))
                    backoff = min(1.0, backoff * 2)
                codes[status] = codes.get(status, 0) + 1

        await asyncio.gather(*(lane() for _ in range(conc)))
    return {"seconds": seconds, "codes": codes, "ok_per_s": in_window / seconds,
            "ok_after_end": codes.get(200, 0) - in_window, "latencies": latencies}


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


def _aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each phase over the rounds: rates averaged, 503s added, percentiles and the quiet tenant's p99
    relative to its own round's baseline as medians (robust to a round the machine was busy)."""
    out: dict[str, Any] = {}
    for name in rounds[0]:
        phase: dict[str, Any] = {}
        for tenant in rounds[0][name]:
            runs = [r[name][tenant] for r in rounds]
            phase[tenant] = {"ok_per_s": statistics.fmean(x["ok_per_s"] for x in runs),
                             "ok_after_end": sum(x.get("ok_after_end", 0) for x in runs),
                             "codes": {c: sum(x["codes"].get(c, 0) for x in runs)
                                       for c in sorted({c for x in runs for c in x["codes"]})},
                             "p50_ms": statistics.median(x["p50_ms"] for x in runs),
                             "p99_ms": statistics.median(x["p99_ms"] for x in runs)}
            if tenant == "quiet":
                phase[tenant]["p99_vs_alone"] = statistics.median(
                    r[name]["quiet"]["p99_ms"] / r["quiet alone"]["quiet"]["p99_ms"] for r in rounds)
        out[name] = phase
    return out


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    lat = res.pop("latencies")
    return {**res, "p50_ms": round(_pct(lat, 0.5) * 1000, 3), "p99_ms": round(_pct(lat, 0.99) * 1000, 3),
            "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None}


# --- the admission check alone ------------------------------------------------------------------

def admit_cost(tmp: Path, n: int = 50_000) -> dict[str, float]:
    from exastor.datadir import keys
    from exastor.datadir.opening import open_metadata
    from exastor.http import qos
    from exastor.meta.records import User

    meta = open_metadata(tmp / "admit")
    meta.sealer = keys.sealer(tmp / "admit", meta, create=True)  # a user's secret is sealed, as `serve` does
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


def refusal_cost(tmp: Path, n: int = 3000) -> dict[str, float]:
    """CPU time (process time, which the machine's load hardly moves) per request a user's rate limit
    refuses, through the S3 app in-process, presigned GETs, with the hold before a refusal set to
    zero: refused before its signature is checked (http/qos.py ``refuse_before_auth``, as served) and,
    in the same run, refused only by ``admit`` after SigV4, routing and authorization (as before)."""
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from exastor.datadir import keys
    from exastor.datadir.opening import open_namespace
    from exastor.http import qos
    from exastor.meta.records import User
    from exastor.namespace.operations import SystemGrant
    from exastor.s3.app import S3App

    data = tmp / "refusal"
    ns = open_namespace(data)
    ns.meta.sealer = keys.sealer(data, ns.meta, create=True)
    ns.meta.add_user(User("limited", "AKREFUSED", "r" * 40, 0))
    asyncio.run(ns.create_bucket(SystemGrant("limited"), "limited-bucket"))
    qos.enable(data / "qos")
    ns.meta.set_qos("user", "limited", 0.001, 1, None, None)
    qos._limits_at = -1e9  # reread the limits now
    request = AWSRequest("GET", "http://127.0.0.1:9000/limited-bucket/k")
    S3SigV4QueryAuth(Credentials("AKREFUSED", "r" * 40), "s3", "us-east-1", expires=3600).add_auth(request)
    query = request.url.split("?", 1)[1]
    app = S3App(ns)
    statuses: dict[int, int] = {}

    async def refused(count: int) -> None:
        for _ in range(count):
            scope = {"type": "http", "method": "GET", "path": "/limited-bucket/k", "raw_path": b"/limited-bucket/k",
                     "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1:9000")],
                     "client": ("127.0.0.1", 40000), "scheme": "http"}

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any], scope: dict[str, Any] = scope) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(scope, receive, send)

    async def no_early_refusal(call: Any) -> None:
        return None

    held, qos.MAX_DELAY = qos.MAX_DELAY, 0.0
    try:
        asyncio.run(refused(10))  # the burst drawn, caches warm
        statuses.clear()
        out = {}
        for label in ("refused before the signature", "refused after SigV4, route and authorization"):
            if label.startswith("refused after"):
                app._refuse_over_limit_early = no_early_refusal  # type: ignore[method-assign]
            started = time.process_time()
            asyncio.run(refused(n))
            out[label] = round((time.process_time() - started) / n * 1e6, 1)
        assert statuses == {503: 2 * n}, statuses
    finally:
        qos.MAX_DELAY = held
        ns.close()
    return out


def metrics_cost(tmp: Path, n: int = 20_000) -> dict[str, float]:
    """The per-request metrics middleware (gateway/metrics.py) around a trivial ASGI app, in-process."""
    from exastor import metrics
    from exastor.gateway.metrics import RequestMetrics

    metrics.enable(tmp / "metrics-cost")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 100})

    async def receive() -> dict:
        return {"type": "http.request", "body": b"y" * 100}

    async def send(message: dict) -> None:
        return None

    async def timed(handler: Any) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await handler({"type": "http", "method": "GET"}, receive, send)
        return (time.perf_counter() - started) / n * 1e6

    async def both() -> dict[str, float]:
        wrapped = RequestMetrics(app, "s3")
        await timed(wrapped)  # warm: label children created
        bare, with_metrics = await timed(app), await timed(wrapped)
        return {"bare_app_us": round(bare, 2), "with_metrics_us": round(with_metrics, 2),
                "metrics_cost_us": round(with_metrics - bare, 2)}

    return asyncio.run(both())


def render(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md table of a result JSON."""
    rate = result["params"]["rate"]
    lines = [f"| phase | noisy admitted/s (limit {rate:g}) | noisy 503s | noisy p50 / p99 ms | quiet p50 / p99 ms | "
             "quiet p99 vs alone (same round) |", "|---|---|---|---|---|---|"]
    for name, tenants in result["phases"].items():
        n, q = tenants.get("noisy"), tenants.get("quiet")
        lines.append("| " + " | ".join([
            name,
            f"{n['ok_per_s']:,.0f}" if n else "",
            f"{n['codes'].get('503', 0):,}" if n else "",
            f"{n['p50_ms']:.1f} / {n['p99_ms']:.1f}" if n else "",
            f"{q['p50_ms']:.2f} / {q['p99_ms']:.2f}" if q else "",
            f"{q['p99_vs_alone']:.2f}x" if q else "",
        ]) + " |")
    cost = result["admit_us"]
    if "refusal_cpu_us" in result:
        lines += ["", "CPU per refused request, S3 app in-process (process time): "
                  + "; ".join(f"{k}: {v} µs" for k, v in result["refusal_cpu_us"].items()) + "."]
    lines += ["", "Admission check per request, in-process: " + "; ".join(f"{k}: {v} µs" for k, v in cost.items())
              + f". Server CPU for the whole run: {result['server_cpu_seconds']} s.",
              "", "Metrics middleware per request, in-process: "
              + "; ".join(f"{k}: {v}" for k, v in result.get("metrics_middleware", {}).items()) + ".",
              "", "Checks: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result["checks"].items()) + "."]
    return "\n".join(lines)


def write_doc(result_path: Path, doc_path: Path = REPO / "docs/benchmarks.md") -> None:
    """Replace the text between the qos markers of docs/benchmarks.md with this result's section."""
    d = json.loads(result_path.read_text())
    m, params = d["machine"], d["params"]
    load_start, load_end = _loads(d)
    rate = params["rate"]
    phases = d["phases"]
    rates = [phases[name]["noisy"]["ok_per_s"] for name in ("noisy + quiet, noisy limited",
                                                            "flooding noisy + quiet, noisy limited")]
    within = all(abs(r - rate) <= 0.1 * rate for r in rates)
    holds = "The limit holds." if within else "The limit is never exceeded."
    admitted = " and ".join(f"{r:.0f}" for r in rates)
    capacity = "" if within else (
        f" (below the limit by more than 10%: the machine, at load {load_start:.0f}, served this tenant "
        f"{phases['noisy alone']['noisy']['ok_per_s']:.0f}/s even alone)")
    alone_p99 = phases["quiet alone"]["quiet"]["p99_ms"]
    admit_free, admit_limited = d["admit_us"]["caller without a limit"], d["admit_us"]["caller with a limit"]
    metrics_us = d.get("metrics_middleware", {}).get("metrics_cost_us", float("nan"))
    rate = params["rate"]
    ratio = {name: phase["quiet"]["p99_vs_alone"] for name, phase in d["phases"].items() if "quiet" in phase}
    limited, polite = ratio["noisy + quiet, noisy limited"], ratio["polite noisy + quiet, noisy limited"]
    flood, loud = ratio["flooding noisy + quiet, noisy limited"], ratio["noisy + quiet, no limit"]
    text = f"""
Run {d['started_at']} by `python bench/qos.py --rate {rate:g} --seconds {params['seconds']:g} \
--rounds {params['rounds']}` (raw JSON: `bench/results/qos.json`) on this machine ({m['cpu_model']},
{m['cpu_count']} cores, shared with other work: load average {load_start:.1f} at start).
Geometry: {d['geometry']}. Each tenant GETs a 4 KiB object through a pre-signed URL from its own
process: `noisy` is limited to {rate:g} requests/s (burst {rate / 10:g}) and runs a closed loop on
{params['noisy_conc']} connections that ignores `Retry-After`; the *flooding* phase uses
{params['flood_conc']} connections (more waiting requests than the 0.5 s reservation window holds, so
most are refused); the *polite* phase backs off after a 503 as SDKs do; `loud` is the same load from
a tenant without a limit. `quiet` (no limit) runs one connection beside them. Every phase ran
{params['rounds']} times, interleaved, and the quiet tenant's p99 is taken relative to its p99 alone in
the same round (median over rounds); rates are means, 503s sums.

{render(d)}

What it shows:

- **{holds}** The limited tenant got {admitted} requests/s with {params['noisy_conc']} or \
{params['flood_conc']} connections{capacity}: requests within 0.5 s of their tokens
  wait for them (reserved, served in order, no CPU spent waiting), the rest are refused after being
  held the same 0.5 s, so a client that retries at once gets a few refusals per second per
  connection instead of as many as the server can answer.
- **A quiet tenant's p99** beside the limited noisy tenant is {limited:.2f}x its p99 alone in this run
  (polite noisy: {polite:.2f}x; flooding: {flood:.2f}x), against {loud:.2f}x beside the same load without
  a limit. On this 2-core machine the noisy tenant's admitted {rate:g} requests/s and its client
  process are themselves enough to move a {alone_p99:.1f} ms p99: the limiter bounds the noisy tenant's share,
  it cannot make that share free. Flooding costs more: its refusals are refused before their
  signatures are checked (http/qos.py `refuse_before_auth`), but each is still parsed and answered,
  and the flooding client takes a core of its own. The load average was {load_start:.1f} at the start
  and {load_end:.1f} at the end of this run; p99s move with it (see the runs below).
- **Admission costs** {admit_free} µs per request when the caller has no limit and {admit_limited} µs when it has
  one (two byte-range-locked slot updates of the shared file); the metrics middleware {metrics_us} µs per
  request (four mmap-backed value updates), in this run; both move with the machine's load.
"""
    doc = doc_path.read_text()
    start = doc.index("<!-- qos:begin -->") + len("<!-- qos:begin -->")
    end = doc.index("<!-- qos:end -->")
    doc_path.write_text(doc[:start] + text + doc[end:])


def _loads(d: dict[str, Any]) -> tuple[float, float]:
    """The 1-minute load average at the start and at the end of a run. machine_info() is taken when
    the result is written, after the phases: in results without ``loadavg_at_start`` of their own
    its "loadavg_at_start" is the load at the end (nan where unknown)."""
    at_end = d.get("loadavg_at_end") or d["machine"]["loadavg_at_start"]
    return (d["loadavg_at_start"][0] if "loadavg_at_start" in d else float("nan")), at_end[0]


def compare(runs: list[tuple[str, Path]]) -> str:
    """One row per result JSON (``label=path``): the quiet tenant's p99 relative to alone (median of
    the rounds) in each phase, the limited tenant's rate, and the machine's load around the run."""
    lines = ["| run | recorded (UTC) | load start / end | quiet alone p99 ms | noisy limited admitted/s | "
             "quiet p99 vs alone: limited | flooding | polite | no limit | flooding 503s | server CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, path in runs:
        d = json.loads(path.read_text())
        ph = d["phases"]

        def ratio(name: str, ph: dict[str, Any] = ph) -> str:
            return f"{ph[name]['quiet']['p99_vs_alone']:.2f}x"

        start, end = _loads(d)
        lines.append("| " + " | ".join([
            label, d["started_at"][:16], f"{start:.1f} / {end:.1f}",
            f"{ph['quiet alone']['quiet']['p99_ms']:.2f}", f"{ph['noisy + quiet, noisy limited']['noisy']['ok_per_s']:.0f}",
            ratio("noisy + quiet, noisy limited"), ratio("flooding noisy + quiet, noisy limited"),
            ratio("polite noisy + quiet, noisy limited"), ratio("noisy + quiet, no limit"),
            f"{ph['flooding noisy + quiet, noisy limited']['noisy']['codes'].get('503', 0):,}",
            f"{d['server_cpu_seconds']:.1f}"]) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0, help="noisy's limit, requests/s")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--rounds", type=int, default=3, help="times every phase runs, interleaved")
    ap.add_argument("--noisy-conc", type=int, default=16)
    ap.add_argument("--flood-conc", type=int, default=256,
                    help="connections of the flooding phase: more waiting requests than MAX_DELAY holds, so 503s")
    ap.add_argument("--out", default=str(REPO / "bench/results/qos.json"))
    args = ap.parse_args()

    load_at_start = os.getloadavg()
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
        for name in ("noisy", "quiet", "loud"):
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

        # (tenant, connections, polite, with quiet beside it); quiet alone is each round's baseline
        plan = {"noisy alone": ("noisy", args.noisy_conc, False, False),
                "noisy + quiet, noisy limited": ("noisy", args.noisy_conc, False, True),
                "flooding noisy + quiet, noisy limited": ("noisy", args.flood_conc, False, True),
                "polite noisy + quiet, noisy limited": ("noisy", args.noisy_conc, True, True),
                "noisy + quiet, no limit": ("loud", args.noisy_conc, False, True)}
        rounds: list[dict[str, Any]] = []
        cpu0 = tree_cpu_seconds(server.pid)
        limit(True)
        for _ in range(args.rounds):  # interleaved, so a change in the machine's load hits every phase alike
            got_round: dict[str, Any] = {"quiet alone": {"quiet": _summary(_collect(*_spawn(
                urls["quiet"], args.seconds, 1, tmp, "q")))}}
            for name, (tenant, conc, polite, with_quiet) in plan.items():
                procs = [_spawn(urls[tenant], args.seconds, conc, tmp, "n", polite=polite)]
                if with_quiet:
                    procs.append(_spawn(urls["quiet"], args.seconds, 1, tmp, "q"))
                got = [_summary(_collect(*p)) for p in procs]
                got_round[name] = {"noisy": got[0], **({"quiet": got[1]} if with_quiet else {})}
            rounds.append(got_round)
        phases = _aggregate(rounds)
        cpu = tree_cpu_seconds(server.pid) - cpu0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)

    limited = phases["noisy + quiet, noisy limited"]
    result = {
        "label": "qos", "started_at": utc_stamp(), "machine": machine_info(tmp),
        "geometry": "1 drive (no erasure), 2 gateway workers, SQLite metadata",
        "params": vars(args), "phases": phases, "rounds": rounds, "server_cpu_seconds": round(cpu, 2),
        "loadavg_at_start": load_at_start, "loadavg_at_end": os.getloadavg(),
        "admit_us": admit_cost(tmp),
        "refusal_cpu_us": refusal_cost(tmp),
        "metrics_middleware": metrics_cost(tmp),
        "checks": {
            "noisy_rate_within_10pct": abs(limited["noisy"]["ok_per_s"] - args.rate) <= 0.1 * args.rate,
            "noisy_alone_rate_within_10pct": abs(phases["noisy alone"]["noisy"]["ok_per_s"] - args.rate)
            <= 0.1 * args.rate,
            "quiet_p99_within_2x": limited["quiet"]["p99_vs_alone"] <= 2,
            "flooding_noisy_rate_within_10pct": abs(phases["flooding noisy + quiet, noisy limited"]["noisy"]["ok_per_s"]
                                                    - args.rate) <= 0.1 * args.rate,
            "quiet_p99_within_2x_of_flooding_noisy":
                phases["flooding noisy + quiet, noisy limited"]["quiet"]["p99_vs_alone"] <= 2,
            "polite_noisy_rate_within_10pct": abs(phases["polite noisy + quiet, noisy limited"]["noisy"]["ok_per_s"]
                                                  - args.rate) <= 0.1 * args.rate,
            "quiet_p99_within_2x_of_polite_noisy":
                phases["polite noisy + quiet, noisy limited"]["quiet"]["p99_vs_alone"] <= 2,
        },
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        print(render(json.loads(Path(sys.argv[2]).read_text())))
        sys.exit(0)
    if len(sys.argv) >= 3 and sys.argv[1] == "--compare":
        print(compare([(arg.split("=", 1)[0], Path(arg.split("=", 1)[1])) for arg in sys.argv[2:]]))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--doc":
        write_doc(Path(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) == 7 and sys.argv[1] == "--tenant":
        tenant_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "polite")
        sys.exit(0)
    sys.exit(main())
