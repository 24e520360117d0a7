#!/usr/bin/env python3
"""A bucket of many objects on each metadata backend: PUT rate as it fills, full and delimiter listings.

In process, below the HTTP layer (the API path, ~170-300 small PUTs/s on this 2-core machine, would
need hours for a million objects):

* **Fill:** object rows inserted in bulk, 5,000 per transaction (``executemany``), as a 0-byte
  object's row looks after its PUT (no chunks): unversioned, latest, one row per key. Then the write
  order counter / sequence and the bucket's usage are set to match. The fill is a loader, not what
  is measured.
* **PUT rate at each checkpoint** (0 objects, then each ``--checkpoints`` size): ``--writers`` threads
  for ``--seconds`` each commit one PUT transaction at a time through the metadata contract
  (meta/contract.py ``put_version``, the transaction a 0-byte S3 PUT commits: bucket, usage, current
  version, write order number, object row), on new keys spread over the whole key space.
* **Full listing** in 1,000-key pages through the namespace's listing (namespace/listing.py
  ``list_objects``, what ListObjectsV2 calls), each page resuming from the previous page's cursor.
* **Delimiter listing of a deep prefix:** ``run/t3/`` with ``/`` (100 common prefixes, each a seek
  past a subtree of N/1,000 keys) and ``run/t3/d42/`` with ``/`` (the N/1,000 keys of one leaf).
  The first also as listing read before ``_SEEK_PAGE``, a full page after each seek: the same-run
  baseline of that change.

Keys are ``run/t{n%10}/d{(n//10)%100:02d}/f{n:09d}``: the bulk rows land all over the key space,
not appended at its end. Backends take turns at every checkpoint (SQLite file on the same disk;
PostgreSQL a throwaway cluster, tests/pgcluster.py, fsync on, Unix socket).

    python bench/many_objects.py [--checkpoints 250000,500000,1000000] [--seconds 6] [--writers 16] \
        [--budget-s 1800] [--out bench/results/many_objects.json]

Writes bench/results/many_objects.json.
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
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

from exastor.meta.contract import Metadata, put_version  # noqa: E402
from exastor.meta.records import ObjectVersion  # noqa: E402
from exastor.namespace import listing  # noqa: E402
from exastor.namespace.listing import list_objects  # noqa: E402
from pgcluster import PgCluster, pg_bindir  # noqa: E402

BUCKET = "many"
BATCH = 5000
INSERT = ("INSERT INTO objects (bucket, key, version_id, seq, is_latest, delete_marker, size, etag, mtime_ns, "
          "owner, attrs, manifest) VALUES (?, ?, 'null', ?, 1, 0, 0, ?, ?, 'bench', '{}', ?)")
ETAG = "d41d8cd98f00b204e9800998ecf8427e"  # MD5 of nothing: a 0-byte object


def key_of(n: int) -> str:
    return f"run/t{n % 10}/d{(n // 10) % 100:02d}/f{n:09d}"


def fill(meta: Metadata, start: int, stop: int) -> float:
    """Bulk rows ``start`` .. ``stop``-1; seconds taken."""
    began = time.monotonic()
    now = time.time_ns()
    for low in range(start, stop, BATCH):
        rows = [(BUCKET, key_of(n), n + 1, ETAG, now, b"") for n in range(low, min(stop, low + BATCH))]
        rows.sort(key=lambda row: row[1])  # key order: each index's insertion points visited once, in turn
        meta.runner.write_sync(lambda cur, rows=rows: cur.executemany(INSERT, rows))
    return time.monotonic() - began


def settle(meta: Metadata, backend: str) -> None:
    """After a fill: the write order number above every row, the bucket's usage recomputed."""
    def tx(cur: Any) -> None:
        cur.execute("SELECT COALESCE(MAX(seq), 0) FROM objects")
        top = int(cur.fetchone()[0])
        if backend == "postgres":
            cur.execute("SELECT setval('object_seq', GREATEST(?, (SELECT last_value FROM object_seq)))", (top,))
        else:
            cur.execute("INSERT INTO counters (name, value) VALUES ('seq', ?) ON CONFLICT (name) DO UPDATE "
                        "SET value = MAX(value, excluded.value)", (top,))
        cur.execute("DELETE FROM bucket_usage WHERE bucket = ?", (BUCKET,))
        cur.execute("INSERT INTO bucket_usage (bucket, shard, bytes, objects) SELECT ?, 0, COALESCE(SUM(size), 0), "
                    "COUNT(*) FROM objects WHERE bucket = ? AND delete_marker = 0", (BUCKET, BUCKET))

    meta.runner.write_sync(tx)


def _read_syscalls() -> int:
    """This process's read system calls so far (/proc/self/io ``syscr``): SQLite reads a page that
    is not in its own cache with one pread (of the database or its WAL)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("syscr:"))


def _thread_cpu_ns(tid: int) -> int:
    """CPU time of one thread of this process (/proc schedstat, ns)."""
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def put_rate(meta: Metadata, writers: int, seconds: float, tag: str, pg_pid: int | None) -> dict[str, float]:
    """PUT transactions per second from ``writers`` threads for ``seconds``. SQLite also: the
    writer thread's own CPU per PUT (the transactions, without the 16 client threads' Python) and
    read system calls per PUT (the writer's page cache misses)."""
    writer_tid = getattr(getattr(meta.runner, "_thread", None), "native_id", None)
    counter = itertools.count()
    stop = threading.Event()
    done = [0] * writers
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            while not stop.is_set():
                n = next(counter)
                # new keys all over the key space (a prefix per tag, spread by n like the fill)
                obj = ObjectVersion(BUCKET, f"run/t{n % 10}/d{(n // 10) % 100:02d}/p{tag}-{n:09d}", "", 0, True,
                                    False, 0, ETAG, time.time_ns(), "bench", {}, b"")
                meta.runner.write_sync(lambda cur, obj=obj: put_version(cur, obj, [], None, lambda: "v"))
                done[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    cpu0 = time.process_time() + tree_cpu_seconds(pg_pid)
    reads0 = _read_syscalls()
    wcpu0 = _thread_cpu_ns(writer_tid) if writer_tid else 0
    began = time.monotonic()
    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    for t in threads:
        t.start()
    time.sleep(seconds)  # the measurement window itself, not a wait for readiness
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - began
    cpu = time.process_time() + tree_cpu_seconds(pg_pid) - cpu0
    reads = _read_syscalls() - reads0
    wcpu = (_thread_cpu_ns(writer_tid) - wcpu0) / 1e9 if writer_tid else 0.0
    if errors:
        raise RuntimeError(f"{tag}: {errors[0]!r}")
    total = sum(done)
    out = {"puts_per_s": total / elapsed, "cpu_ms_per_put": 1000 * cpu / max(1, total), "puts": total}
    if writer_tid:
        out |= {"writer_cpu_ms_per_put": 1000 * wcpu / max(1, total), "reads_per_put": reads / max(1, total)}
    return out


def cache_rates(meta: Metadata, caches: list[int], writers: int, seconds: float, tag: str) -> dict[str, Any]:
    """SQLite: the PUT rate with each writer page cache size, in the order A B B A (B A A B ... for
    more) so that drift in the machine's load falls on both; each size's rate is over its two
    windows together. Without sizes, one window with the runner's own cache."""
    runner = meta.runner
    if not caches:
        caches = [runner.writer_cache_kib]  # type: ignore[attr-defined]
        order = caches
    else:
        order = caches + caches[::-1]
    runs: dict[int, list[dict[str, float]]] = {kib: [] for kib in caches}
    for i, kib in enumerate(order):
        runner.writer_cache_kib = kib  # type: ignore[attr-defined]
        # warm-up: the new cache size fills (or the old one is cut); not reported
        put_rate(meta, writers, min(2.0, seconds / 3), f"w{tag}-{i}", None)
        runs[kib].append(put_rate(meta, writers, seconds, f"{tag}-{i}", None) | {"loadavg_1m": os.getloadavg()[0]})
    merged: dict[str, Any] = {}
    for kib, rs in runs.items():
        puts = sum(r["puts"] for r in rs)
        merged[str(kib)] = {"puts_per_s": sum(r["puts_per_s"] for r in rs) / len(rs),
                            **{k: sum(r[k] * r["puts"] for r in rs) / max(1, puts)
                               for k in ("cpu_ms_per_put", "writer_cpu_ms_per_put", "reads_per_put")},
                            "puts": puts, "windows": rs}
    first = merged[str(caches[0])]
    return {"puts_per_s": first["puts_per_s"], "cpu_ms_per_put": first["cpu_ms_per_put"], "puts": first["puts"],
            "writer_caches": merged}


def full_listing(meta: Metadata) -> dict[str, float]:
    began = time.monotonic()
    cursor, keys, pages = None, 0, 0
    while True:
        page = list_objects(meta, BUCKET, cursor=cursor, max_keys=1000)
        keys += len(page.objects)
        pages += 1
        if not page.truncated:
            break
        cursor = page.next_cursor
    seconds = time.monotonic() - began
    return {"keys": keys, "pages": pages, "seconds": seconds, "keys_per_s": keys / seconds}


def delimiter_listing(meta: Metadata, prefix: str, *, full_page_after_seek: bool = False) -> dict[str, Any]:
    """``full_page_after_seek``: read a full page after each common prefix, as listing did before
    _SEEK_PAGE (the same-run baseline)."""
    seek_page = getattr(listing, "_SEEK_PAGE", None)
    if full_page_after_seek and seek_page is not None:
        listing._SEEK_PAGE = listing._PAGE
    try:
        return _delimiter_listing(meta, prefix) | {"full_page_after_seek": full_page_after_seek}
    finally:
        if seek_page is not None:
            listing._SEEK_PAGE = seek_page


def _delimiter_listing(meta: Metadata, prefix: str) -> dict[str, Any]:
    began = time.monotonic()
    cursor, keys, prefixes, pages = None, 0, 0, 0
    while True:
        page = list_objects(meta, BUCKET, prefix=prefix, delimiter="/", cursor=cursor, max_keys=1000)
        keys += len(page.objects)
        prefixes += len(page.prefixes)
        pages += 1
        if not page.truncated:
            break
        cursor = page.next_cursor
    seconds = time.monotonic() - began
    return {"prefix": prefix, "keys": keys, "common_prefixes": prefixes, "pages": pages,
            "ms": 1000 * seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", default="250000,500000,1000000")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--writers", type=int, default=16)
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--budget-s", type=float, default=1800.0,
                   help="stop before a checkpoint that the fill rates so far say would end past this (the listings follow)")
    p.add_argument("--writer-caches", default="",
                   help="SQLite only: writer page cache sizes in KiB, e.g. 8192,65536; each checkpoint measures them "
                        "A B B A (two: first, second, second, first) in the same run; default: the runner's own")
    p.add_argument("--fill-cache-kib", type=int, default=0,
                   help="SQLite only: the writer's page cache during the bulk fill (a loader; speeds it up); 0: unchanged")
    p.add_argument("--no-listings", action="store_true", help="PUT rates only")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "many_objects.json"))
    args = p.parse_args(argv)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    caches = [int(c) for c in args.writer_caches.split(",") if c]
    names = args.backends.split(",")
    bindir = pg_bindir()
    if "postgres" in names and bindir is None:
        print("PostgreSQL is not installed (initdb/pg_ctl)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="exastor-many-objects-"))
    info = machine_info(work)
    cluster = None
    backends: dict[str, Metadata] = {}
    pg_pid = None
    results: dict[str, Any] = {name: {"checkpoints": []} for name in names}
    try:
        from exastor.meta.sqlite import SqliteRunner

        if "sqlite" in names:
            backends["sqlite"] = Metadata(SqliteRunner(work / "meta.sqlite"))
        if "postgres" in names:
            from exastor.meta.postgres import PostgresRunner

            cluster = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expg-", dir="/tmp")))  # type: ignore[arg-type]
            cluster.start()
            pg_pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
            backends["postgres"] = Metadata(PostgresRunner(cluster.create_database("many"), pool_max=args.writers))
        for meta in backends.values():
            meta.runner.write_sync(lambda cur: cur.execute(
                "INSERT INTO buckets (name, owner, created_ns, region, versioning, attrs) "
                f"VALUES ('{BUCKET}', 'bench', 1, 'r', '', '{{}}')"))
        filled = 0
        began = time.monotonic()
        fill_rate: dict[str, float] = {}
        for target in [0, *checkpoints]:
            if fill_rate:
                needed = sum((target - filled) / rate + 2 * args.seconds for rate in fill_rate.values())
                if time.monotonic() - began + needed > args.budget_s:
                    print(f"stopping at {filled:,} objects: {target:,} would need ~{needed:.0f} s more "
                          f"(budget {args.budget_s:.0f} s)", flush=True)
                    break
            for name, meta in backends.items():  # the backends take turns at every checkpoint
                if name == "sqlite" and args.fill_cache_kib:
                    meta.runner.writer_cache_kib = args.fill_cache_kib  # type: ignore[attr-defined]
                fill_s = fill(meta, filled, target)
                if target > filled:
                    fill_rate[name] = (target - filled) / fill_s
                settle(meta, name)
                row = {"objects": target, "fill_seconds": fill_s, "loadavg": os.getloadavg()}
                if name == "sqlite":
                    row |= cache_rates(meta, caches, args.writers, args.seconds, f"{target}")
                else:
                    put_rate(meta, args.writers, 1.0, f"w{target}", None)  # warm-up: pool, caches; not reported
                    row |= put_rate(meta, args.writers, args.seconds, f"{target}", pg_pid if name == "postgres" else None)
                results[name]["checkpoints"].append(row)
                print(f"{name:8} at {target:>10,} objects: {row['puts_per_s']:7.0f} PUT/s "
                      f"({row['cpu_ms_per_put']:.3f} CPU-ms/PUT), fill {fill_s:6.1f} s, load {row['loadavg'][0]:.1f}"
                      + "".join(f"; writer cache {kib} KiB: {r['puts_per_s']:.0f} PUT/s, {r['cpu_ms_per_put']:.3f} CPU-ms/PUT, "
                                f"writer thread {r['writer_cpu_ms_per_put']:.3f} CPU-ms/PUT, {r['reads_per_put']:.1f} reads/PUT"
                                for kib, r in row.get("writer_caches", {}).items()), flush=True)
            filled = target
        for name, meta in backends.items():
            first, last = results[name]["checkpoints"][0], results[name]["checkpoints"][-1]
            results[name]["put_rate_change"] = last["puts_per_s"] / first["puts_per_s"] - 1
            results[name]["cpu_per_put_change"] = last["cpu_ms_per_put"] / first["cpu_ms_per_put"] - 1
            if "writer_caches" in first:
                results[name]["writer_cache_changes"] = {
                    kib: {"put_rate_change": last["writer_caches"][kib]["puts_per_s"] / r["puts_per_s"] - 1,
                          "cpu_per_put_change": last["writer_caches"][kib]["cpu_ms_per_put"] / r["cpu_ms_per_put"] - 1,
                          "writer_cpu_per_put_change": last["writer_caches"][kib]["writer_cpu_ms_per_put"]
                          / r["writer_cpu_ms_per_put"] - 1}
                    for kib, r in first["writer_caches"].items()}
                print(f"{name:8}: " + "; ".join(
                    f"writer cache {kib} KiB: PUT rate {c['put_rate_change']:+.0%}, CPU per PUT {c['cpu_per_put_change']:+.0%}"
                    f" (writer thread {c['writer_cpu_per_put_change']:+.0%})"
                    for kib, c in results[name]["writer_cache_changes"].items()) + f" from 0 to {filled:,}", flush=True)
            if args.no_listings:
                continue
            results[name]["full_listing"] = full_listing(meta)
            results[name]["delimiter_listings"] = [delimiter_listing(meta, "run/t3/", full_page_after_seek=True),
                                                   delimiter_listing(meta, "run/t3/"),
                                                   delimiter_listing(meta, "run/t3/d42/")]
            fl = results[name]["full_listing"]
            print(f"{name:8}: PUT rate {results[name]['put_rate_change']:+.0%} from 0 to {filled:,}; "
                  f"full listing {fl['keys']:,} keys in {fl['pages']} pages, {fl['keys_per_s']:,.0f} keys/s; "
                  + "; ".join(f"{d['prefix']} /: {d['common_prefixes']} prefixes + {d['keys']} keys in {d['ms']:.0f} ms"
                            + (" (full page after each seek)" if d["full_page_after_seek"] else "")
                              for d in results[name]["delimiter_listings"]), flush=True)
        for meta in backends.values():
            meta.close()
    finally:
        if cluster is not None:
            cluster.stop()
    info["loadavg_at_end"] = os.getloadavg()
    out = {"machine": info, "largest": filled, "budget_s": args.budget_s, "writers": args.writers, "seconds_per_rate": args.seconds,
           "fill": f"bulk rows, {BATCH} per transaction (0-byte objects' rows); rates: put_version per transaction",
           "writer_caches_kib": caches, "fill_cache_kib": args.fill_cache_kib,
           "postgres": "15, initdb defaults (fsync and synchronous_commit on), Unix socket, same disk",
           **results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
