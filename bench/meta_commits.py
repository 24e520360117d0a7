#!/usr/bin/env python3
"""Metadata commits per second against concurrent writers, SQLite and PostgreSQL, same run.

Each commit is the transaction of a small PUT (meta/contract.py ``put_version``: the bucket's
versioning, the current version, the new version's write order number, one object row), every
writer its own keys in one bucket, no chunks. Writers are threads calling ``write_sync`` on one
runner per backend, as a gateway's requests do: on SQLite they share the writer thread (group
commit, one fsync per batch); on PostgreSQL each borrows a pooled connection and commits on its own
(PostgreSQL's group commit shares the WAL flushes).

Same-run baseline for the hot spot: PostgreSQL with the write order number taken from a counter row
(``UPDATE counters SET value = value + 1``, what every commit did before the sequence) instead of
``nextval`` - every writer then waits on that one row.

    python bench/meta_commits.py [--seconds 4] [--clients 1,4,8,16]

Starts its own throwaway PostgreSQL (tests/pgcluster.py: initdb, fsync and synchronous_commit on,
Unix socket); the SQLite file is on the same disk. Reports commits/s and CPU-ms per commit (this
process plus the PostgreSQL server processes). Writes bench/results/meta_commits.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.smallops import tree_cpu_seconds  # noqa: E402

from exastor.meta.contract import Metadata, put_version  # noqa: E402
from exastor.meta.records import ObjectVersion  # noqa: E402
from pgcluster import PgCluster, pg_bindir  # noqa: E402


class CounterRowCursor:
    """A PostgreSQL cursor without ``nextval``: next_seq falls back to the counter row (the baseline)."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def __getattr__(self, name: str) -> Any:
        if name == "nextval":
            raise AttributeError(name)
        return getattr(self._cur, name)


def measure(meta: Metadata, clients: int, seconds: float, tag: str, *, counter_row: bool = False,
            server_pid: int | None = None) -> dict[str, float]:
    keys = itertools.count()
    stop = threading.Event()
    done = [0] * clients
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            while not stop.is_set():
                obj = ObjectVersion("bench", f"{tag}/{i}/{next(keys):09d}", "", 0, True, False, 4096, "e",
                                    time.time_ns(), "bench", {}, b"")

                def tx(cur: Any, obj: ObjectVersion = obj) -> None:
                    put_version(CounterRowCursor(cur) if counter_row else cur, obj, [], None, lambda: "v")

                meta.runner.write_sync(tx)
                done[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    cpu0 = time.process_time() + tree_cpu_seconds(server_pid)
    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)  # the measurement window itself, not a wait for readiness
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - started
    cpu = time.process_time() + tree_cpu_seconds(server_pid) - cpu0
    if errors:
        raise RuntimeError(f"{tag}: {errors[0]!r}")
    total = sum(done)
    return {"commits_per_s": total / elapsed, "cpu_ms_per_commit": 1000 * cpu / max(1, total), "commits": total}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--clients", default="1,4,8,16")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "meta_commits.json"))
    args = p.parse_args(argv)
    levels = [int(c) for c in args.clients.split(",")]
    bindir = pg_bindir()
    if bindir is None:
        print("PostgreSQL is not installed (initdb/pg_ctl)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="exastor-meta-commits-"))
    cluster = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expg-", dir="/tmp")))
    cluster.start()
    info = machine_info(work)
    try:
        from exastor.meta.postgres import PostgresRunner
        from exastor.meta.sqlite import SqliteRunner

        pg_pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        backends = {
            "sqlite": Metadata(SqliteRunner(work / "meta.sqlite")),
            "postgres": Metadata(PostgresRunner(cluster.create_database("bench"), pool_max=max(levels))),
        }
        for meta in backends.values():
            meta.runner.write_sync(lambda cur: cur.execute(
                "INSERT INTO buckets (name, owner, created_ns, region, versioning, attrs) "
                "VALUES ('bench', 'bench', 1, 'r', '', '{}')"))
        backends["postgres"].runner.write_sync(lambda cur: cur.execute(
            "INSERT INTO counters (name, value) VALUES ('seq', 0)"))
        rows = []
        for clients in levels:  # the variants alternate at each level: a busy moment falls on all alike
            row: dict[str, Any] = {"clients": clients}
            row["sqlite"] = measure(backends["sqlite"], clients, args.seconds, f"s{clients}")
            row["postgres"] = measure(backends["postgres"], clients, args.seconds, f"p{clients}", server_pid=pg_pid)
            row["postgres_counter_row"] = measure(backends["postgres"], clients, args.seconds, f"c{clients}",
                                                  counter_row=True, server_pid=pg_pid)
            rows.append(row)
            print(f"{clients:>3} clients: sqlite {row['sqlite']['commits_per_s']:8.0f}/s   "
                  f"postgres {row['postgres']['commits_per_s']:8.0f}/s   "
                  f"postgres+counter row {row['postgres_counter_row']['commits_per_s']:8.0f}/s", flush=True)
        for meta in backends.values():
            meta.close()
    finally:
        cluster.stop()
    info["loadavg_at_end"] = os.getloadavg()
    result = {"seconds_per_point": args.seconds, "rows": rows, "machine": info,
              "postgres": "15, initdb defaults (fsync on, synchronous_commit on), Unix socket, same disk"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
