"""The background reducer's tables (services/reducer.py): the sketch index (``sketches``), re-encoded
chunks (``reduced_chunks``), which chunks are delta bases (``delta_bases``), and the repointing of a
chunk at its re-encoded record. Named operations, each one transaction (``repoint_chunk`` is the
step of ``commit_batch``'s transaction for one chunk). The engine's codec numbers are passed in:
meta/ sits below the engine and does not import it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from exastor import errors
from exastor.meta import manifest as mf
from exastor.meta.contract import Metadata, add_refs, drop_refs
from exastor.meta.records import ChunkLocation

SKETCH_COLUMNS = ("fp, seq, sf0, sf1, sf2, sf3, pos0, pos1, pos2, pos3, owner_bucket, owner_key, owner_version, "
                  "owner_offset, depth")
_SKETCH_INSERT = f"INSERT INTO sketches ({SKETCH_COLUMNS}) VALUES ({','.join('?' * 15)}) ON CONFLICT (fp) DO NOTHING"


@dataclass(frozen=True, slots=True)
class Repoint:
    """One chunk to switch to its re-encoded record (written and fsynced already at ``offset`` of the
    batch's segment)."""

    loc: ChunkLocation          # where the index must still place it, else nothing changes
    codec: int
    stored_len: int
    plain_len: int
    grouped_len: int
    depth: int
    refs: bytes | None          # a delta's bases, as a packed manifest
    offset: int


def sketch_candidates(meta: Metadata, supers: Sequence[int], per_feature: int) -> list[tuple]:
    """Sketch rows sharing a super-feature with ``supers`` (position k against column sf<k>), the
    ``per_feature`` newest per feature, as SKETCH_COLUMNS tuples."""
    def q(cur: Any) -> list[tuple]:
        rows: list[tuple] = []
        for k, sf in enumerate(supers):
            cur.execute(f"SELECT {SKETCH_COLUMNS} FROM sketches WHERE sf{k} = ? ORDER BY seq DESC LIMIT ?",
                        (sf, per_feature))
            rows.extend(tuple(r) for r in cur.fetchall())
        return rows

    return meta.runner.read(q, snapshot=False)


def sketched(meta: Metadata, fps: Sequence[bytes]) -> set[bytes]:
    """Which of ``fps`` the sketch index holds already."""
    def q(cur: Any) -> set[bytes]:
        out: set[bytes] = set()
        for i in range(0, len(fps), 500):
            batch = list(fps[i:i + 500])
            cur.execute(f"SELECT fp FROM sketches WHERE fp IN ({','.join('?' * len(batch))})", batch)
            out.update(bytes(r[0]) for r in cur.fetchall())
        return out

    return meta.runner.read(q, snapshot=False)


def chunk_depth(meta: Metadata, fp: bytes, delta_codec: int) -> int | None:
    """A chunk's delta-chain depth (0: not a delta), or None when the index has no such chunk."""
    def q(cur: Any) -> int | None:
        cur.execute("SELECT c.codec, r.depth FROM chunks c LEFT JOIN reduced_chunks r "
                    "ON r.fp = c.fp AND r.codec = c.codec WHERE c.fp = ?", (fp,))
        row = cur.fetchone()
        if row is None:
            return None
        return int(row[1] or 0) if row[0] == delta_codec else 0

    return meta.runner.read(q, snapshot=False)


def is_delta_base(meta: Metadata, fp: bytes) -> bool:
    def q(cur: Any) -> bool:
        cur.execute("SELECT 1 FROM delta_bases WHERE base = ?", (fp,))
        return cur.fetchone() is not None

    return meta.runner.read(q, snapshot=False)


def _deepest(cur: Any, refs: Counter[bytes], delta_codec: int) -> tuple[int, int]:
    """(how many of ``refs`` the index has, the deepest chain among them)."""
    marks = ",".join("?" * len(refs))
    cur.execute(f"SELECT c.codec, r.depth FROM chunks c LEFT JOIN reduced_chunks r "
                f"ON r.fp = c.fp AND r.codec = c.codec WHERE c.fp IN ({marks})", list(refs))
    found = cur.fetchall()
    deepest = max((int(d or 0) if c == delta_codec else 0) for c, d in found) if found else 0
    return len(found), deepest


def _rollback(cur: Any) -> bool:
    cur.execute("ROLLBACK TO SAVEPOINT reduce_one")
    cur.execute("RELEASE SAVEPOINT reduce_one")
    return False


def repoint_chunk(cur: Any, r: Repoint, segment: int, *, delta_codec: int, max_depth: int) -> bool:
    """Switch one chunk to its new record, if every rule still holds (inside commit_batch's
    transaction, in a savepoint of its own: a chunk that fails leaves the others)."""
    refs = mf.ref_counts(r.refs) if r.refs else Counter()
    fp = r.loc.fp
    cur.execute("SAVEPOINT reduce_one")
    if r.codec == delta_codec:
        if fp in refs:
            return _rollback(cur)  # never its own base
        cur.execute("SELECT 1 FROM delta_bases WHERE base = ?", (fp,))
        if cur.fetchone() is not None:
            return _rollback(cur)  # a base: its dependants' depth must not change
        found, deepest = _deepest(cur, refs, delta_codec)
        if found != len(refs) or 1 + deepest != r.depth or r.depth > max_depth:
            return _rollback(cur)  # a base was reclaimed or re-encoded meanwhile
    cur.execute('UPDATE chunks SET segment = ?, "offset" = ?, stored_len = ?, codec = ? '
                'WHERE fp = ? AND segment = ? AND "offset" = ? AND codec = ?',
                (segment, r.offset, r.stored_len, r.codec, fp, r.loc.segment, r.loc.offset, r.loc.codec))
    if cur.rowcount != 1:
        return _rollback(cur)  # moved (compaction), reaped or re-encoded meanwhile
    if refs:
        try:
            add_refs(cur, refs)
        except errors.Unavailable:
            return _rollback(cur)
    cur.execute("DELETE FROM reduced_chunks WHERE fp = ?", (fp,))
    cur.execute("INSERT INTO reduced_chunks (fp, codec, plain_len, grouped_len, depth, manifest) "
                "VALUES (?, ?, ?, ?, ?, ?)", (fp, r.codec, r.plain_len, r.grouped_len, r.depth, r.refs))
    if refs:
        cur.executemany("INSERT INTO delta_bases (base, fp) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        [(b, fp) for b in refs])
    cur.execute("RELEASE SAVEPOINT reduce_one")
    return True


def commit_batch(meta: Metadata, segment: int, repoints: Sequence[Repoint], sketch_rows: Iterable[tuple], *,
                 delta_codec: int, max_depth: int) -> list[int]:
    """ONE transaction: repoint each chunk of ``repoints`` whose checks still hold (their records are in
    ``segment``), and index the batch's sketches. Returns the positions in ``repoints`` that switched;
    none when the segment was compacted away under the batch."""
    rows = list(sketch_rows)

    def tx(cur: Any) -> list[int]:
        done: list[int] = []
        if repoints:
            cur.execute("SELECT state FROM segments WHERE id = ?", (segment,))
            got = cur.fetchone()
            if got is not None and got[0] != "deleted":  # else compacted: nothing points at these records
                done = [i for i, r in enumerate(repoints)
                        if repoint_chunk(cur, r, segment, delta_codec=delta_codec, max_depth=max_depth)]
        if rows:
            cur.executemany(_SKETCH_INSERT, rows)
        return done

    return meta.runner.write_sync(tx)


def release_orphans(meta: Metadata) -> int:
    """Drop the references of deltas whose chunk is gone (reaped) or no longer that record, and the
    sketches of chunks that are gone. Returns how many deltas were released."""
    def tx(cur: Any) -> int:
        cur.execute("SELECT r.fp, r.manifest FROM reduced_chunks r LEFT JOIN chunks c ON c.fp = r.fp "
                    "WHERE c.fp IS NULL OR c.codec != r.codec")
        rows = [(bytes(fp), m) for fp, m in cur.fetchall()]
        for fp, manifest in rows:
            drop_refs(cur, mf.ref_counts(manifest))
            cur.execute("DELETE FROM reduced_chunks WHERE fp = ?", (fp,))
            cur.execute("DELETE FROM delta_bases WHERE fp = ?", (fp,))
        cur.execute("DELETE FROM sketches WHERE fp NOT IN (SELECT fp FROM chunks)")
        return len(rows)

    return meta.runner.write_sync(tx)


def unregistered_deltas(meta: Metadata, delta_codec: int) -> list[ChunkLocation]:
    """Delta chunks the index points at without a ``reduced_chunks`` row (``fsck --rebuild-index``
    revived their records): their references are not held."""
    def q(cur: Any) -> list[ChunkLocation]:
        cur.execute('SELECT c.fp, c.segment, c."offset", c.stored_len, c.raw_len, c.codec FROM chunks c '
                    "LEFT JOIN reduced_chunks r ON r.fp = c.fp AND r.codec = c.codec "
                    "WHERE c.codec = ? AND r.fp IS NULL", (delta_codec,))
        return [ChunkLocation(bytes(r[0]), *r[1:]) for r in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


def register_delta(meta: Metadata, loc: ChunkLocation, refs_manifest: bytes, *, delta_codec: int) -> str:
    """Hold a revived delta's references again and record it: 'adopted'; 'present' when another
    process did it first; 'lost-base' when a base is gone from the index (fsck must look)."""
    refs = mf.ref_counts(refs_manifest)

    def tx(cur: Any) -> str:
        cur.execute("SELECT 1 FROM reduced_chunks WHERE fp = ?", (loc.fp,))
        if cur.fetchone() is not None:
            return "present"
        found, deepest = _deepest(cur, refs, delta_codec)
        if found != len(refs):
            return "lost-base"
        add_refs(cur, refs)
        cur.execute("INSERT INTO reduced_chunks (fp, codec, plain_len, grouped_len, depth, manifest) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (loc.fp, delta_codec, loc.stored_len, loc.stored_len,
                                                 1 + deepest, refs_manifest))
        cur.executemany("INSERT INTO delta_bases (base, fp) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        [(b, loc.fp) for b in refs])
        return "adopted"

    return meta.runner.write_sync(tx)


def objects_after(meta: Metadata, seq: int, limit: int) -> list[tuple[str, str, str, int, bytes | None]]:
    """The next ``limit`` object versions (not delete markers) after write sequence ``seq``, in order:
    (bucket, key, version id, seq, manifest)."""
    def q(cur: Any) -> list[tuple[str, str, str, int, bytes | None]]:
        cur.execute("SELECT bucket, key, version_id, seq, manifest FROM objects WHERE seq > ? "
                    "AND delete_marker = 0 ORDER BY seq LIMIT ?", (seq, limit))
        return [(str(b), str(k), str(v), int(s), bytes(m) if m is not None else None) for b, k, v, s, m in
                cur.fetchall()]

    return meta.runner.read(q, snapshot=False)
