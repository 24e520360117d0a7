"""Store-wide figures for `exastor stats` (services/stats.py), /metrics and the console
(services/store_metrics.py): counts and sums over the tables, each read in one snapshot. The
engine's record header size and codec numbers are passed in (meta/ does not import the engine)."""

from __future__ import annotations

from typing import Any

from exastor.meta.contract import Metadata


def store_totals(meta: Metadata, *, header_size: int, delta_codec: int, grouped_codec: int) -> tuple:
    """(buckets, objects, logical bytes, chunks, unique bytes, stored bytes, live segment ids, bytes as
    written, bytes if only grouped, delta chunks, grouped chunks), over live objects and referenced
    chunks; stored sizes count a record header each."""
    h = int(header_size)

    def q(cur: Any) -> tuple:
        cur.execute("SELECT COUNT(*) FROM buckets")
        buckets = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE delete_marker = 0")
        objects, logical = cur.fetchone()
        cur.execute(f"SELECT COUNT(*), COALESCE(SUM(c.raw_len), 0), COALESCE(SUM(c.stored_len + {h}), 0), "
                    f"COALESCE(SUM(COALESCE(r.plain_len, c.stored_len) + {h}), 0), "
                    f"COALESCE(SUM(COALESCE(r.grouped_len, c.stored_len) + {h}), 0), "
                    f"COALESCE(SUM(CASE WHEN r.codec = {int(delta_codec)} THEN 1 ELSE 0 END), 0), "
                    f"COALESCE(SUM(CASE WHEN r.codec = {int(grouped_codec)} THEN 1 ELSE 0 END), 0) "
                    "FROM chunks c LEFT JOIN reduced_chunks r ON r.fp = c.fp AND r.codec = c.codec "
                    "WHERE c.refs > 0")
        chunks, unique, stored, written, grouped, deltas, grouped_n = cur.fetchone()
        cur.execute("SELECT id FROM segments WHERE state != 'deleted'")
        segs = [r[0] for r in cur.fetchall()]
        return buckets, objects, logical, chunks, unique, stored, segs, written, grouped, deltas, grouped_n

    return meta.runner.read(q)


def sealed_placement(meta: Metadata) -> tuple[list, dict[int, list[int]], dict[int, list[tuple[int, int, int]]]]:
    """Sealed segments (id, size, k, m, shard_len), replicas {segment: [drive]}, and shards
    {segment: [(idx, drive, gen)]}, in one snapshot."""
    def q(cur: Any) -> tuple[list, dict[int, list[int]], dict[int, list[tuple[int, int, int]]]]:
        cur.execute("SELECT s.id, s.size, l.k, l.m, l.shard_len FROM segments s "
                    "LEFT JOIN segment_layout l ON l.segment = s.id WHERE s.state = 'sealed'")
        segs = cur.fetchall()
        cur.execute("SELECT segment, drive FROM replicas")
        reps: dict[int, list[int]] = {}
        for seg, drive in cur.fetchall():
            reps.setdefault(int(seg), []).append(int(drive))
        cur.execute("SELECT segment, idx, drive, gen FROM shards")
        placed: dict[int, list[tuple[int, int, int]]] = {}
        for seg, idx, drive, gen in cur.fetchall():
            placed.setdefault(int(seg), []).append((int(idx), int(drive), int(gen)))
        return segs, reps, placed

    return meta.runner.read(q)


def written_after_counter(meta: Metadata, counter: str) -> tuple[int, int]:
    """(object versions, logical bytes) written after the sequence number a counter row holds (0 when
    absent): the reducer's backlog behind its cursor."""
    def q(cur: Any) -> tuple[int, int]:
        cur.execute("SELECT value FROM counters WHERE name = ?", (counter,))
        row = cur.fetchone()
        cur.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM objects WHERE seq > ? AND delete_marker = 0",
                    (int(row[0]) if row else 0,))
        n, size = cur.fetchone()
        return int(n), int(size)

    return meta.runner.read(q)


def store_health(meta: Metadata) -> tuple[list, dict[str, int], int]:
    """Drives in the store (id, path, state), segments by state {'open', 'sealed', 'erasure_coded'},
    and how many shards need repair, in one snapshot."""
    def q(cur: Any) -> tuple[list, dict[str, int], int]:
        cur.execute("SELECT id, path, state FROM drives WHERE state != 'removed' ORDER BY id")
        drives = cur.fetchall()
        cur.execute("SELECT state, COUNT(*) FROM segments WHERE state IN ('open', 'sealed') GROUP BY state")
        segs = {"open": 0, "sealed": 0, "erasure_coded": 0} | {s: int(n) for s, n in cur.fetchall()}
        cur.execute("SELECT COUNT(*) FROM segment_layout l JOIN segments s ON s.id = l.segment "
                    "WHERE s.state = 'sealed' AND l.shard_len > 0")
        segs["erasure_coded"] = int(cur.fetchone()[0])
        cur.execute("SELECT COUNT(*) FROM shards WHERE state != 'ok'")
        return drives, segs, int(cur.fetchone()[0])

    return meta.runner.read(q)


def segment_counts(meta: Metadata) -> tuple[int, int, int, int]:
    """(shards needing repair, erasure-coded sealed segments, sealed segments, open segments)."""
    def q(cur: Any) -> tuple[int, int, int, int]:
        cur.execute("SELECT COUNT(*) FROM shards WHERE state != 'ok'")
        bad = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM segment_layout l JOIN segments s ON s.id = l.segment "
                    "WHERE s.state = 'sealed' AND l.shard_len > 0")
        coded = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM segments WHERE state = 'sealed'")
        sealed = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM segments WHERE state = 'open'")
        return int(bad), int(coded), int(sealed), int(cur.fetchone()[0])

    return meta.runner.read(q)
