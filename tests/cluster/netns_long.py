"""The long run of the network-namespace cluster harness (issue 14): seeded fault scenarios against
7 drive-server hosts (erasure 4+2), PostgreSQL on its own host, 2 gateways and a client host.

    sudo nice -n 10 .venv/bin/python tests/cluster/netns_long.py --seed 14 --scenarios 120 [--until 22:05]

Writes bench/results/netns_scenarios_<seed>.json after every scenario (so an interrupted run keeps
what it did): the cluster, each scenario's fault, targets, load acknowledged, reads during the
fault, time to the first acknowledged PUT after the heal, the checks through both gateways and the
drive states; at the end every ledger checked through both gateways and fsck over the metadata.
Exit 0 only if every scenario and the final checks held. ``--keep`` leaves the work directory
(logs, ledgers, stall diagnostics) for inspection; namespaces are always removed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from netns import namespaces_permitted  # noqa: E402
from netns_cluster import (  # noqa: E402
    DRIVE_HOSTS,
    EC,
    FAULTS,
    GATEWAY_HOSTS,
    Cluster,
    final_checks,
    fsck_round,
    run_scenario,
)

REPO = HERE.parent.parent


def _until(text: str | None) -> float | None:
    """Seconds of wall time left until HH:MM UTC today (None: no limit)."""
    if not text:
        return None
    now = datetime.datetime.now(datetime.UTC)
    hh, mm = map(int, text.split(":"))
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if end <= now:  # past midnight: tomorrow's HH:MM
        end += datetime.timedelta(days=1)
    return (end - now).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--scenarios", type=int, default=100)
    parser.add_argument("--until", help="HH:MM UTC: start no scenario that would end after it (the mean so far)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--only", action="append", choices=FAULTS,
                        help="run only these faults, in turn (repeatable; default: drawn from all)")
    parser.add_argument("--fsck-every", type=int, default=10,
                        help="stop both gateways, fsck, start them again after every N scenarios (0: only at the end)")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a shell ignores in background jobs) end the run through its
    # `finally`: processes stopped, namespaces and the blackhole route removed, the summary saved.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    why = namespaces_permitted()
    if why:
        print(f"cannot build the namespaces: {why}", file=sys.stderr)
        return 2
    out = args.out or REPO / "bench" / "results" / f"netns_scenarios_{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"exnetns-{args.seed}-", dir="/tmp"))
    ledgers = work / "ledgers"
    ledgers.mkdir()
    budget = _until(args.until)
    began = time.monotonic()
    summary: dict = {"seed": args.seed, "hosts": {"drive_servers": len(DRIVE_HOSTS), "postgresql": 1, "gateways": 2, "client": 1},
                     "erasure": EC, "started_utc": datetime.datetime.now(datetime.UTC).isoformat(),
                     "load_at_start": os.getloadavg(), "work": str(work), "scenarios": []}

    def save() -> None:
        summary["elapsed_s"] = round(time.monotonic() - began, 1)
        results = summary["scenarios"]
        summary["totals"] = {
            "scenarios": len(results), "ok": sum(r["ok"] for r in results),
            "acknowledged": sum(v.get("acknowledged", 0) for r in results for v in r.get("load", {}).values())
            + sum(v.get("acknowledged", 0) for r in results for v in r.get("after_heal", {}).values()),
            "lost": sum(len(v.get("lost", [])) for r in results for v in r.get("check", {}).values()),
            "half_visible": sum(len(v.get("half_visible", [])) for r in results for v in r.get("check", {}).values()),
            "stalls": sum(any(p.startswith("STALL") for p in r["problems"]) for r in results),
            "fsck_rounds": sum("fsck" in r for r in results),
            "fsck_clean": sum(bool(r.get("fsck", {}).get("ok")) for r in results),
            "by_fault": {k: sum(r["fault"] == k for r in results) for k in sorted({r["fault"] for r in results})},
        }
        out.write_text(json.dumps(summary, indent=1))

    cluster = Cluster(work / "cluster")
    code = 1
    try:
        cluster.start()
        for index in range(args.scenarios):
            if budget is not None and index:
                mean = (time.monotonic() - began) / index
                if time.monotonic() - began + mean > budget:
                    summary["stopped_by"] = f"--until {args.until}"
                    break
            record = run_scenario(cluster, index, args.seed, ledgers,
                                  args.only[index % len(args.only)] if args.only else None)
            if args.fsck_every and (index + 1) % args.fsck_every == 0:
                record["fsck"] = fsck_round(cluster)
                if not record["fsck"]["ok"]:
                    record["problems"].append(f"fsck after scenario {index}: {json.dumps(record['fsck'])[:1500]}")
                    record["ok"] = False
            record["load_avg"] = os.getloadavg()[0]
            summary["scenarios"].append(record)
            print(json.dumps({k: record[k] for k in ("index", "fault", "targets", "ok", "seconds")}
                             | {"problems": record["problems"][:2]}), flush=True)
            save()
        summary["final"] = final_checks(cluster, ledgers)
        summary["load_at_end"] = os.getloadavg()
        save()
        code = 0 if summary["final"]["ok"] and all(r["ok"] for r in summary["scenarios"]) else 1
    finally:
        cluster.stop()
        for name in tuple(f"gateway-{g}" for g in GATEWAY_HOSTS):
            log = cluster.root / f"{name}.log"
            if log.exists():
                summary.setdefault("tracebacks", {})[name] = log.read_text(errors="replace").count("Traceback")
        save()
        if not args.keep and code == 0:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary.get("totals", {})), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
