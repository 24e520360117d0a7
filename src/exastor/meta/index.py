"""The chunk index as fsck sees it (services/fsck.py): every chunk row, the references every manifest
holds, and the repairs — recounted references, relocated chunks, an index rebuilt from the segments.
Named operations, each one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from typing import Any

from exastor.meta import manifest as mf
from exastor.meta.contract import MANIFEST_QUERIES, Metadata
from exastor.meta.records import ChunkLocation


def all_chunks(meta: Metadata) -> list[ChunkLocation]:
    """Every chunk row, in segment and offset order."""
    def q(cur: Any) -> list[ChunkLocation]:
        cur.execute('SELECT fp, segment, "offset", stored_len, raw_len, codec FROM chunks ORDER BY segment, "offset"')
        return [ChunkLocation(bytes(r[0]), *r[1:]) for r in cur.fetchall()]

    return meta.runner.read(q)


def chunk_refs(meta: Metadata) -> dict[bytes, int]:
    """Each chunk's stored reference count."""
    def q(cur: Any) -> dict[bytes, int]:
        cur.execute("SELECT fp, refs FROM chunks")
        return {bytes(fp): int(refs) for fp, refs in cur.fetchall()}

    return meta.runner.read(q)


def referenced_counts(meta: Metadata) -> Counter[bytes]:
    """The references every holder of a manifest (MANIFEST_QUERIES) holds, summed per chunk: what the
    stored counts must be."""
    def q(cur: Any) -> Counter[bytes]:
        total: Counter[bytes] = Counter()
        for sql in MANIFEST_QUERIES:
            cur.execute(sql)
            for (manifest,) in cur.fetchall():
                total.update(mf.ref_counts(manifest))
        return total

    return meta.runner.read(q)


def objects_referencing(meta: Metadata, fps: Collection[bytes]) -> list[str]:
    """'bucket/key version' of every object version whose manifest names one of ``fps``."""
    wanted = set(fps)

    def q(cur: Any) -> list[str]:
        cur.execute("SELECT bucket, key, version_id, manifest FROM objects WHERE manifest IS NOT NULL "
                    "ORDER BY bucket, key")
        return [f"{bucket}/{key} {version or 'null'}" for bucket, key, version, manifest in cur.fetchall()
                if wanted.intersection(mf.ref_counts(manifest))]

    return meta.runner.read(q)


def repair_index(meta: Metadata, refs: Mapping[bytes, int], relocated: Mapping[bytes, ChunkLocation],
                 wanted: Mapping[bytes, int], now_ns: int) -> None:
    """ONE transaction: set the reference counts in ``refs`` (a count of 0 starts the grace period
    now), and point each chunk of ``relocated`` at where a segment scan found it."""
    def tx(cur: Any) -> None:
        for fp, count in refs.items():
            cur.execute("UPDATE chunks SET refs = ?, dead_since_ns = CASE WHEN ? = 0 THEN ? ELSE NULL END "
                        "WHERE fp = ?", (count, count, now_ns, fp))
        for fp, loc in relocated.items():
            cur.execute("DELETE FROM chunks WHERE fp = ?", (fp,))
            cur.execute('INSERT INTO chunks (fp, segment, "offset", stored_len, raw_len, codec, refs, '
                        "dead_since_ns) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                        (fp, loc.segment, loc.offset, loc.stored_len, loc.raw_len, loc.codec, wanted.get(fp, 0)))

    meta.runner.write_sync(tx)


def replace_index(meta: Metadata, found: Mapping[bytes, ChunkLocation], wanted: Mapping[bytes, int],
                  unrecorded_segments: Mapping[int, int], now_ns: int) -> None:
    """ONE transaction: the chunk index becomes ``found`` (a scan of the segments), each chunk counted
    as ``wanted`` says (unreferenced ones dead from now), and segments the database never recorded
    ({id: size}) are recorded as sealed."""
    def tx(cur: Any) -> None:
        cur.execute("DELETE FROM chunks")
        cur.executemany(
            'INSERT INTO chunks (fp, segment, "offset", stored_len, raw_len, codec, refs, dead_since_ns) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(fp, loc.segment, loc.offset, loc.stored_len, loc.raw_len, loc.codec, wanted.get(fp, 0),
              None if wanted.get(fp, 0) else now_ns) for fp, loc in found.items()])
        for seg, size in unrecorded_segments.items():
            cur.execute("SELECT 1 FROM segments WHERE id = ?", (seg,))
            if cur.fetchone() is None:
                cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, 'sealed', ?, ?)",
                            (seg, size, now_ns))

    meta.runner.write_sync(tx)
