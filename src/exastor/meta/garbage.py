"""Reclaiming space (services/gc.py): chunks no object references any more, and segments whose live
records were copied out. Named operations, each one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from exastor import errors
from exastor.meta.contract import Metadata


def reap_dead_chunks(meta: Metadata, dead_before_ns: int) -> int:
    """Forget the chunks unreferenced since before ``dead_before_ns`` (their bytes become garbage in
    their segments). Returns how many."""
    def tx(cur: Any) -> int:
        cur.execute("DELETE FROM chunks WHERE refs <= 0 AND dead_since_ns IS NOT NULL AND dead_since_ns <= ?",
                    (dead_before_ns,))
        return int(cur.rowcount)

    return meta.runner.write_sync(tx)


def sealed_segment_usage(meta: Metadata, created_before_ns: int, header_size: int) -> list[tuple[int, int, int]]:
    """(segment, file size, live bytes) of each sealed segment made before ``created_before_ns``; a
    live record counts its header of ``header_size`` bytes."""
    def q(cur: Any) -> list[tuple[int, int, int]]:
        cur.execute(f"SELECT s.id, s.size, COALESCE(SUM(c.stored_len + {int(header_size)}), 0) FROM segments s "
                    "LEFT JOIN chunks c ON c.segment = s.id WHERE s.state = 'sealed' AND s.created_ns <= ? "
                    "GROUP BY s.id, s.size", (created_before_ns,))
        return [(int(a), int(b), int(c)) for a, b, c in cur.fetchall()]

    return meta.runner.read(q)


def segment_records(meta: Metadata, segment: int) -> list[tuple[bytes, int, int]]:
    """The live records of ``segment`` in file order: (fingerprint, offset, stored length)."""
    def q(cur: Any) -> list[tuple[bytes, int, int]]:
        cur.execute('SELECT fp, "offset", stored_len FROM chunks WHERE segment = ? ORDER BY "offset"', (segment,))
        return [(bytes(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()]

    return meta.runner.read(q)


def finish_compaction(meta: Metadata, segment: int, moves: Sequence[tuple[bytes, int, int, int]]) -> int:
    """ONE transaction: repoint each moved record (fp, old offset, new segment, new offset) and mark
    ``segment`` deleted with its shards and replicas forgotten. Unavailable (nothing changed) when a
    chunk in it gained a reference meanwhile. Returns the segment's size, now reclaimable."""
    def tx(cur: Any) -> int:
        for fp, old, seg, new in moves:
            cur.execute('UPDATE chunks SET segment = ?, "offset" = ? WHERE fp = ? AND segment = ? '
                        'AND "offset" = ?', (seg, new, fp, segment, old))
        cur.execute("SELECT COUNT(*) FROM chunks WHERE segment = ?", (segment,))
        if cur.fetchone()[0]:
            raise errors.Unavailable("segment gained references during compaction; retry later")
        cur.execute("SELECT size FROM segments WHERE id = ?", (segment,))
        reclaimed = int(cur.fetchone()[0])
        cur.execute("UPDATE segments SET state = 'deleted' WHERE id = ?", (segment,))
        cur.execute("DELETE FROM shards WHERE segment = ?", (segment,))
        cur.execute("DELETE FROM replicas WHERE segment = ?", (segment,))
        return reclaimed

    return meta.runner.write_sync(tx)
