"""One process of background services for the concurrency stress (test_concurrent_services.py).

``python services_worker.py DATA SEED SECONDS LOG``: until SECONDS have passed, run a seeded random
choice of repair, scrub, garbage collection, the reducer, a layout rebuild from the drives, a drive
drain (as ``exastor drive remove`` does, then back to active) or a shard marked bad (as a scrub or a
degraded read would), against the store in DATA while a server and another such process run. One
JSON line per pass (pid, service, start and end on the system-wide monotonic clock) goes to LOG.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from exastor.datadir import lock  # noqa: E402
from exastor.datadir.opening import open_namespace  # noqa: E402
from exastor.engine.drives import load_layout, mark_shard  # noqa: E402
from exastor.services import relayout  # noqa: E402
from exastor.services.gc import Collector  # noqa: E402
from exastor.services.reducer import Reducer  # noqa: E402
from exastor.services.repair import Repairer  # noqa: E402
from exastor.services.scrub import Scrubber  # noqa: E402

SERVICES = ["repair", "scrub", "gc", "reduce", "relayout", "drain", "bad"]


def main(data: Path, seed: int, seconds: float, log_path: Path) -> int:
    lock.shared(data)  # beside servers, never beside an offline repair
    ns = open_namespace(data, recover=False)
    log, meta, drives = ns.chunks.log, ns.meta, ns.chunks.log.drives
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    with open(log_path, "a") as out:
        while time.monotonic() < deadline:
            svc = rng.choice(SERVICES)
            t0 = time.monotonic()
            try:
                detail = run(svc, rng, ns, log, meta, drives)
            except Exception as exc:  # noqa: BLE001 - recorded: the test decides which failures are tolerable
                detail = {"error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps({"pid": os.getpid(), "svc": svc, "t0": t0, "t1": time.monotonic(),
                                  "detail": detail}) + "\n")
            out.flush()
    ns.close()
    return 0


def run(svc: str, rng: random.Random, ns: Any, log: Any, meta: Any, drives: Any) -> Any:
    if svc == "repair":
        return Repairer(log, offline_after_s=0).run_once().to_json()
    if svc == "scrub":
        return len(Scrubber(log).run_once().bad_shards)
    if svc == "gc":
        return Collector(ns.chunks, grace_s=0).run_once().__dict__
    if svc == "reduce":
        return Reducer(ns.chunks).run_once(max_objects=20).__dict__
    if svc == "relayout":
        return relayout.rebuild_layout(meta, drives).__dict__
    if svc == "drain":
        drives.refresh()
        active = [d for d in drives.all if d.state == "active"]
        if len(active) < len(drives.all) or not active:  # one drain at a time keeps 4+2 placeable
            return "skipped"
        victim = rng.choice(active)
        drives.set_state(victim.id, "draining", "stress: drive remove")
        moved = Repairer(log, offline_after_s=0).run_once().to_json()
        drives.set_state(victim.id, "active", "stress: drive add")
        return {"drive": victim.id, **moved}
    coded = [s for s, st, _ in meta.segments() if st == "sealed"]
    rng.shuffle(coded)
    for seg in coded[:5]:
        lay = load_layout(meta, seg)
        if lay is not None and lay.kind == "ec" and lay.shards:
            row = rng.choice(lay.shards)
            mark_shard(meta, seg, row.idx, state="bad", expect_drive=row.drive, expect_gen=row.gen)
            return [seg, row.idx]
    return None


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])))
