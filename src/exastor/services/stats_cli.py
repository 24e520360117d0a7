"""`exastor stats`: what the store holds and how much flash reduction saved."""

from __future__ import annotations

import argparse
import json

from exastor.cliargs import add_data_argument, add_meta_argument, store_directory
from exastor.datadir.opening import drive_dirs, open_metadata
from exastor.services.reduce_cli import summary
from exastor.services.stats import collect


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # a store on PostgreSQL: read-only, so it runs beside the gateways
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n):,} B"
        n /= 1024
    return f"{n} B"


def run(args: argparse.Namespace) -> int:
    data = store_directory(args.data, args.meta_url)
    meta = open_metadata(data, args.meta_url or None)
    try:
        # the segment files are measured on the store's first drive; on PostgreSQL the database names it
        first = data / "drive0" if args.meta_url else drive_dirs(data)[0]
        stats = collect(meta, first / "segments", base=data)
        reducer = summary(meta)
    finally:
        meta.close()
    if args.json:
        print(json.dumps({**stats.to_json(), "reducer": reducer}, indent=2))
        return 0
    rows = [
        ("buckets", f"{stats.buckets:,}"),
        ("objects", f"{stats.objects:,}"),
        ("logical bytes", _size(stats.logical_bytes)),
        ("after dedupe", _size(stats.unique_bytes)),
        ("after compression (as written)", _size(stats.written_bytes)),
        ("after float transforms", _size(stats.grouped_bytes)),
        ("after similarity delta (stored)", _size(stats.stored_bytes)),
        ("segment files on disk", _size(stats.segment_bytes)),
        ("chunks / segments", f"{stats.chunks:,} / {stats.segments:,}"),
        ("drives / erasure geometry", f"{stats.drives} / {stats.geometry}"),
        ("capacity overhead (redundancy)", f"{stats.capacity_overhead:.1%}"),
        ("write amplification", f"{stats.write_amplification:.2f}x = {stats.write_amplification_buffer:.2f}x "
                                f"write buffer + {stats.write_amplification_final:.2f}x final form"
         if stats.written_data_bytes else
         f"{stats.write_amplification:.2f}x (estimated: sealed before the write ledger; replicas, then the stripe)"),
        ("reduction (total)", f"{stats.reduction_ratio:.2f}x"),
        ("  dedupe", f"{stats.dedupe_ratio:.2f}x"),
        ("  compression", f"{stats.compression_ratio:.2f}x"),
        ("  float transforms", f"{stats.float_transform_ratio:.2f}x"),
        ("  similarity delta", f"{stats.delta_ratio:.2f}x"),
        ("reducer backlog (not yet reduced)", f"{reducer['backlog_objects']:,} objects, "
                                              f"{_size(reducer['backlog_bytes'])}"),
        ("reducer", "paused (exastor reduce resume)" if reducer["paused"] else
                    "running a pass" if reducer["running"] else "active"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
