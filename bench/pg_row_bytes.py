#!/usr/bin/env python3
"""Bytes per metadata row on a real PostgreSQL, against the figures `exastor plan`'s topology uses.

tools/plan/topology.py derives bytes per row (heap plus every index) from the schema and
PostgreSQL's page layout; this measures them. It starts a throwaway PostgreSQL
(tests/pgcluster.py), creates exastor's schema (the PostgreSQL migrations, as a gateway does),
inserts rows shaped as the store writes them, in the order it writes them (random BLAKE3
fingerprints, so the fingerprint indexes fill as they do in service; 100-byte object keys in
random order; sequential segment ids), then divides each table's `pg_total_relation_size`
(heap, TOAST and indexes) by its rows. Manifests are measured as the TOAST growth of objects with
1,000-entry manifests of random fingerprints.

    python bench/pg_row_bytes.py [--rows 400000]

Writes bench/results/pg_row_bytes.json. Sizes are of freshly loaded tables: no dead tuples, no
bloat from updates (reference counts change in place; give the disks headroom for that).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.lib.machine import machine_info  # noqa: E402

from exastor.tools.plan import topology  # noqa: E402
from pgcluster import PgCluster, pg_bindir  # noqa: E402

KEY_BYTES = 100      # the planner's assumption for object keys
BUCKET = "b" * 20    # and for bucket names
CHUNKS_PER_SEGMENT = 1000  # ~64 MiB segments of ~64 KiB chunks: chunks_by_segment shares keys


def _load(conn, rows: int) -> dict[str, dict[str, float]]:
    rnd = os.urandom
    conn.execute("INSERT INTO buckets (name, owner, created_ns, region) VALUES (%s, 'o', 1, 'r')", (BUCKET,))
    out: dict[str, dict[str, float]] = {}

    def measure(table: str, count: int, start: float, baseline: int = 0) -> None:
        conn.execute(f"VACUUM ANALYZE {table}")
        size = conn.execute(f"SELECT pg_total_relation_size('{table}')").fetchone()[0] - baseline
        heap = conn.execute(f"SELECT pg_relation_size('{table}')").fetchone()[0]
        out[table] = {"rows": count, "total_bytes": size, "bytes_per_row": size / count, "heap_bytes_per_row": heap / count,
                      "load_seconds": round(time.perf_counter() - start, 2)}
        print(f"{table:>10}: {size / count:7.1f} bytes/row ({heap / count:.1f} heap) over {count:,} rows", flush=True)

    t0 = time.perf_counter()
    with conn.cursor().copy('COPY chunks (fp, segment, "offset", stored_len, raw_len, codec, refs) FROM STDIN') as cp:
        for i in range(rows):
            cp.write_row((rnd(32), i // CHUNKS_PER_SEGMENT, (i % CHUNKS_PER_SEGMENT) * 65600, 40000, 65536, 1, 1))
    measure("chunks", rows, t0)

    t0 = time.perf_counter()
    cols = ("fp, seq, sf0, sf1, sf2, sf3, pos0, pos1, pos2, pos3, owner_bucket, owner_key, owner_version, "
            "owner_offset, depth")
    with conn.cursor().copy(f"COPY sketches ({cols}) FROM STDIN") as cp:
        for i in range(rows):
            sf = [int.from_bytes(rnd(8), "little") >> 1 for _ in range(4)]
            cp.write_row((rnd(32), i, *sf, 1, 2, 3, 4, BUCKET, rnd(KEY_BYTES // 2).hex(), rnd(16).hex(), i * 65536, 0))
    measure("sketches", rows, t0)

    t0 = time.perf_counter()
    objects = rows // 4
    cols = "bucket, key, version_id, seq, is_latest, size, etag, mtime_ns, owner"
    with conn.cursor().copy(f"COPY objects ({cols}) FROM STDIN") as cp:
        for i in range(objects):
            cp.write_row((BUCKET, rnd(KEY_BYTES // 2).hex(), rnd(16).hex(), i, 1, 1 << 20, '"' + rnd(16).hex() + '"',
                          1_700_000_000_000_000_000 + i, "owner"))
    measure("objects", objects, t0)

    # Manifests: objects with 1,000 entries of 40 bytes each; what they add beyond their rows.
    before = conn.execute("SELECT pg_total_relation_size('objects')").fetchone()[0]
    t0 = time.perf_counter()
    with_manifest, entries = 1000, 1000
    with conn.cursor().copy(f"COPY objects ({cols}, manifest) FROM STDIN") as cp:
        for i in range(with_manifest):
            cp.write_row((BUCKET, rnd(KEY_BYTES // 2).hex(), rnd(16).hex(), objects + i, 1, 1 << 30, '"x"', 1, "owner",
                          rnd(40 * entries)))
    conn.execute("VACUUM ANALYZE objects")
    grown = conn.execute("SELECT pg_total_relation_size('objects')").fetchone()[0] - before
    rows_part = with_manifest * out["objects"]["bytes_per_row"]
    out["manifest_entries"] = {"rows": with_manifest * entries, "total_bytes": grown - rows_part,
                               "bytes_per_row": (grown - rows_part) / (with_manifest * entries),
                               "load_seconds": round(time.perf_counter() - t0, 2)}
    print(f"manifests : {out['manifest_entries']['bytes_per_row']:7.1f} bytes/entry", flush=True)

    t0 = time.perf_counter()
    segments = rows // 10
    with conn.cursor().copy("COPY segments (id, state, size, created_ns) FROM STDIN") as cp:
        for i in range(segments):
            cp.write_row((i, "sealed", 1 << 30, i))
    with conn.cursor().copy("COPY segment_layout (segment, k, m, shard_len, data_len) FROM STDIN") as cp:
        for i in range(segments):
            cp.write_row((i, 16, 4, 1 << 26, 1 << 30))
    measure("segments", segments, t0)
    measure("segment_layout", segments, t0)
    t0 = time.perf_counter()
    with conn.cursor().copy("COPY shards (segment, idx, drive, state, gen) FROM STDIN") as cp:
        for i in range(segments):
            for j in range(20):
                cp.write_row((i, j, (i * 7 + j * 131) % 10_000, "ok", 1))
    measure("shards", segments * 20, t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=400_000, help="chunk and sketch rows (objects: a quarter)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "pg_row_bytes.json"))
    args = p.parse_args(argv)
    bindir = pg_bindir()
    if bindir is None:
        print("PostgreSQL is not installed (initdb/pg_ctl)", file=sys.stderr)
        return 2
    cluster = PgCluster(bindir, Path(tempfile.mkdtemp(prefix="expg-", dir="/tmp")))
    cluster.start()
    try:
        import psycopg

        from exastor.meta.postgres import PostgresRunner

        dsn = cluster.create_database("rows")
        PostgresRunner(dsn, listen=False).close()  # creates the schema, as a gateway's first start does
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            measured = _load(conn, args.rows)
    finally:
        cluster.stop()
    planned = {"chunks": topology.CHUNK_ROW_BYTES, "sketches": topology.SKETCH_ROW_BYTES,
               "manifest_entries": topology.MANIFEST_ENTRY_BYTES, "objects": topology.OBJECT_ROW_BYTES,
               "segments+segment_layout": topology.SEGMENT_ROW_BYTES, "shards": topology.SHARD_ROW_BYTES}
    seg = measured["segments"]["bytes_per_row"] + measured["segment_layout"]["bytes_per_row"]
    compare = {name: {"planned": planned[name],
                      "measured": round(seg if name == "segments+segment_layout" else measured[name]["bytes_per_row"], 1)}
               for name in planned}
    for name, row in compare.items():
        print(f"{name:>24}: planned {row['planned']:6} measured {row['measured']:8.1f}")
    doc = {"tool": "bench/pg_row_bytes.py", "postgresql": version, "rows": args.rows, "key_bytes": KEY_BYTES,
           "measured": measured, "planned_vs_measured": compare, "machine": machine_info(Path(tempfile.gettempdir()))}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
