"""Where a store's bytes are, as the database records it: the store id and erasure geometry, the
drives (path, state, failure domains), and each segment's layout, replicas and shards. Named
operations for engine/drives.py, engine/segments.py and the services that place, seal, repair and
scrub segments; each function is one transaction (docs/design.md, "Metadata")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from exastor.meta import leases, members
from exastor.meta.contract import Metadata


class ShardRow(NamedTuple):
    idx: int
    drive: int
    state: str
    gen: int = 0    # names the file (engine/shards.py): unique per write, so racing writers never share a file


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a segment's bytes are. ``kind``: 'plain' (legacy file on drive 0), 'replicas', 'ec'."""

    segment: int
    state: str
    k: int
    m: int
    shard_len: int
    data_len: int
    replicas: tuple[int, ...] = ()                   # drive ids
    shards: tuple[ShardRow, ...] = ()                # by idx

    @property
    def kind(self) -> str:
        if self.k == 0:
            return "plain"
        return "ec" if self.shard_len else "replicas"


# --- the store's identity and geometry ------------------------------------------------------

def stored_geometry(meta: Metadata) -> dict[str, int]:
    """The explicit erasure geometry stored by --ec: {'ec_k': k, 'ec_m': m}, or {} when none was."""
    def q(cur: Any) -> dict[str, int]:
        cur.execute("SELECT name, value FROM counters WHERE name IN ('ec_k', 'ec_m')")
        return {n: int(v) for n, v in cur.fetchall()}

    return meta.runner.read(q, snapshot=False)


def store_geometry(meta: Metadata, k: int, m: int) -> None:
    """Store an explicit geometry (--ec), so every tool and later start agrees on it."""
    def tx(cur: Any) -> None:
        for name, value in (("ec_k", k), ("ec_m", m)):
            cur.execute("UPDATE counters SET value = ? WHERE name = ?", (value, name))
            if cur.rowcount == 0:
                cur.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))

    meta.runner.write_sync(tx)


def store_id(meta: Metadata) -> str | None:
    """The store id the drives' identity files name, or None before the first drive joined."""
    def q(cur: Any) -> str | None:
        cur.execute("SELECT value FROM store_info WHERE name = 'store_id'")
        row = cur.fetchone()
        return str(row[0]) if row else None

    return meta.runner.read(q, snapshot=False)


def ensure_store_id(meta: Metadata, proposed: str) -> str:
    """The store id: the stored one, else ``proposed`` stored now (one transaction: two processes
    racing to make it agree on the first)."""
    def tx(cur: Any) -> str:
        cur.execute("SELECT value FROM store_info WHERE name = 'store_id'")
        row = cur.fetchone()
        if row is not None:
            return str(row[0])
        cur.execute("INSERT INTO store_info (name, value) VALUES ('store_id', ?)", (proposed,))
        return proposed

    return meta.runner.write_sync(tx)


# --- drives ------------------------------------------------------------------------------------

def drive_rows(meta: Metadata) -> list[tuple[int, str, str, str, int]]:
    """Every drive the store knows: (id, stored path, state, reason, changed_ns), by id."""
    def q(cur: Any) -> list[tuple[int, str, str, str, int]]:
        cur.execute("SELECT id, path, state, reason, changed_ns FROM drives ORDER BY id")
        return [(int(a), str(b), str(c), str(d), int(e)) for a, b, c, d, e in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


TIERS = ("capacity", "buffer")  # drives.tier: sealed stripes, or only the replicated write buffer


def drive_domains(meta: Metadata) -> dict[int, tuple[str, str, str]]:
    """Each drive's failure domains and tier: {id: (host, rack, tier)}."""
    def q(cur: Any) -> dict[int, tuple[str, str, str]]:
        cur.execute("SELECT id, host, rack, tier FROM drives")
        return {int(a): (str(b), str(c), str(t)) for a, b, c, t in cur.fetchall()}

    return meta.runner.read(q, snapshot=False)


def set_drive_tier(meta: Metadata, drive: int, tier: str) -> None:
    """Make ``drive`` a capacity drive or a write-buffer drive (``TIERS``); what it holds stays."""
    assert tier in TIERS, tier
    meta.runner.write_sync(lambda cur: cur.execute("UPDATE drives SET tier = ? WHERE id = ?", (tier, drive)))


def set_drive_domain(meta: Metadata, drive: int, host: str | None, rack: str = "") -> None:
    """Record where ``drive`` is; ``host`` None keeps the one recorded."""
    meta.runner.write_sync(lambda cur: cur.execute(
        "UPDATE drives SET host = COALESCE(?, host), rack = ? WHERE id = ?", (host, rack, drive)))


def next_drive_id(meta: Metadata) -> int:
    """The id the next drive to join would get (a guess: add_drive decides inside its transaction)."""
    return meta.runner.read(lambda cur: int(cur.execute(
        "SELECT COALESCE(MAX(id), -1) + 1 FROM drives").fetchone()[0]), snapshot=False)


def add_drive(meta: Metadata, stored: str, state: str, host: str, now_ns: int) -> int:
    """A new drive row (reason 'joined'); its id, the next free one, chosen in the transaction."""
    def tx(cur: Any) -> int:
        cur.execute("SELECT COALESCE(MAX(id), -1) + 1 FROM drives")
        new = int(cur.fetchone()[0])
        cur.execute("INSERT INTO drives (id, path, state, reason, changed_ns, host) "
                    "VALUES (?, ?, ?, 'joined', ?, ?)", (new, stored, state, now_ns, host))
        return new

    return meta.runner.write_sync(tx)


def place_known_drive(meta: Metadata, drive: int, stored: str, state: str, host: str, now_ns: int) -> None:
    """A drive whose identity file names it: its row is made when missing (a database rebuilt from
    the drives), or its path and host updated when it moved."""
    def tx(cur: Any) -> None:
        cur.execute("SELECT path FROM drives WHERE id = ?", (drive,))
        row = cur.fetchone()
        if row is None:
            cur.execute("INSERT INTO drives (id, path, state, reason, changed_ns, host) VALUES (?, ?, ?, ?, ?, ?)",
                        (drive, stored, state, "identity verified", now_ns, host))
        elif str(row[0]) != stored:  # it moved: to another host, perhaps
            cur.execute("UPDATE drives SET path = ?, host = ? WHERE id = ?", (stored, host, drive))

    meta.runner.write_sync(tx)


def set_drive_path(meta: Metadata, drive: int, stored: str) -> None:
    meta.runner.write_sync(lambda cur: cur.execute("UPDATE drives SET path = ? WHERE id = ?", (stored, drive)))


def set_drive_state(meta: Metadata, drive: int, state: str, reason: str, now_ns: int, *,
                    refuse_beside_gateways_ms: int | None = None) -> None:
    """``refuse_beside_gateways_ms``: in the same transaction, raise members.GatewaysRunning (nothing
    changed) if any gateway heartbeated that recently - for changes a running gateway's cached view
    of the drives could contradict (a drive leaving a database shared by gateways)."""
    def tx(cur: Any) -> None:
        if refuse_beside_gateways_ms is not None:
            members.refuse_beside_live_gateways(cur, refuse_beside_gateways_ms)
        cur.execute("UPDATE drives SET state = ?, reason = ?, changed_ns = ? WHERE id = ?",
                    (state, reason, now_ns, drive))

    meta.runner.write_sync(tx)


def mark_drive_offline(meta: Metadata, drive: int, reason: str, now_ns: int) -> bool:
    """Record ``drive`` offline for every process if the database has it active, full or read-only;
    True if it changed."""
    def tx(cur: Any) -> bool:
        cur.execute("UPDATE drives SET state = 'offline', reason = ?, changed_ns = ? "
                    "WHERE id = ? AND state IN ('active', 'full', 'readonly')", (reason, now_ns, drive))
        return bool(cur.rowcount > 0)

    return bool(meta.runner.write_sync(tx))


def shard_counts(meta: Metadata) -> dict[int, int]:
    """Shards placed per drive: {drive id: count}."""
    def q(cur: Any) -> dict[int, int]:
        cur.execute("SELECT drive, COUNT(*) FROM shards GROUP BY drive")
        return {int(a): int(b) for a, b in cur.fetchall()}

    return meta.runner.read(q, snapshot=False)


def ownership_evidence(meta: Metadata, drive: int
                       ) -> tuple[dict[int, tuple[int, ...]], dict[tuple[int, int], int], bool]:
    """What the database says a drive should hold, in one snapshot: every live segment's layout
    {segment: (k, m, shard_len, data_len)}, the shards placed on ``drive`` {(segment, idx): drive},
    and whether anything at all (a replica or a shard) is placed there."""
    def q(cur: Any) -> tuple[dict[int, tuple[int, ...]], dict[tuple[int, int], int], bool]:
        cur.execute("SELECT s.id, COALESCE(l.k, 0), COALESCE(l.m, 0), COALESCE(l.shard_len, 0), "
                    "COALESCE(l.data_len, 0) FROM segments s LEFT JOIN segment_layout l ON l.segment = s.id "
                    "WHERE s.state != 'deleted'")
        layouts = {int(r[0]): tuple(int(x) for x in r[1:]) for r in cur.fetchall()}
        cur.execute("SELECT segment, idx FROM shards WHERE drive = ?", (drive,))
        placed = {(int(a), int(b)): drive for a, b in cur.fetchall()}
        cur.execute("SELECT COUNT(*) FROM replicas r JOIN segments s ON s.id = r.segment "
                    "WHERE r.drive = ? AND s.state != 'deleted'", (drive,))
        return layouts, placed, bool(cur.fetchone()[0]) or bool(placed)

    return meta.runner.read(q)


def chunks_in_segment(meta: Metadata, segment: int, limit: int) -> list[tuple[bytes, int]]:
    """Up to ``limit`` chunks the index places in ``segment``: (fingerprint, offset)."""
    rows = meta.runner.read(lambda cur: cur.execute(
        'SELECT fp, "offset" FROM chunks WHERE segment = ? LIMIT ?', (segment, limit)).fetchall())
    return [(bytes(fp), int(offset)) for fp, offset in rows]


# --- segments: layouts, replicas, shards ---------------------------------------------------------

def new_segment(meta: Metadata, m: int, drive_ids: list[int], created_ns: int | None = None, *,
                holder: str | None = None) -> int:
    """Allocate a segment id, open, replicated on ``drive_ids`` (m+1 drives), its first write lease
    (epoch 1) held by ``holder`` (this process by default): one transaction."""
    holder = holder or leases.holder_id()
    return meta.runner.write_sync(lambda cur: _new_segment(cur, m, drive_ids, created_ns or time.time_ns(), holder))


def new_stripe(meta: Metadata, m: int, shards: int, created_ns: int) -> tuple[int, list[int]]:
    """A segment for a full stripe written directly (open, no replicas, its lease ours) and the
    generations of its ``shards`` shard files: one transaction where two would be (one round of
    waiting on the database's sync less per stripe)."""
    def tx(cur: Any) -> tuple[int, list[int]]:
        return _new_segment(cur, m, [], created_ns, leases.holder_id()), _allocate_gens(cur, shards)

    return meta.runner.write_sync(tx)


def _new_segment(cur: Any, m: int, drive_ids: list[int], created_ns: int, holder: str) -> int:
    cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM segments")
    seg = int(cur.fetchone()[0])
    cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, 'open', 0, ?)", (seg, created_ns))
    cur.execute("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (?, 1, ?, 0, 0)", (seg, m))
    cur.executemany("INSERT INTO replicas (segment, drive) VALUES (?, ?)", [(seg, d) for d in drive_ids])
    leases.grant_first(cur, seg, holder)
    return seg


def allocate_gens(meta: Metadata, count: int) -> list[int]:
    """``count`` shard generations, increasing across every process: a shard file written later
    always has a higher one, so a file whose generation is below its row's is provably superseded."""
    return meta.runner.write_sync(lambda cur: _allocate_gens(cur, count))


def _allocate_gens(cur: Any, count: int) -> list[int]:
    cur.execute("SELECT value FROM counters WHERE name = 'shard_gen'")
    row = cur.fetchone()
    start = int(row[0]) if row else 0
    if row is None:
        cur.execute("INSERT INTO counters (name, value) VALUES ('shard_gen', ?)", (start + count,))
    else:
        cur.execute("UPDATE counters SET value = ? WHERE name = 'shard_gen'", (start + count,))
    return list(range(start + 1, start + count + 1))


def load_layout(meta: Metadata, segment: int) -> Layout | None:
    def q(cur: Any) -> Layout | None:
        cur.execute("SELECT state, size FROM segments WHERE id = ?", (segment,))
        row = cur.fetchone()
        if row is None:
            return None
        state, size = row
        cur.execute("SELECT k, m, shard_len, data_len FROM segment_layout WHERE segment = ?", (segment,))
        lay = cur.fetchone()
        if lay is None:
            return Layout(segment, state, 0, 0, 0, int(size))
        cur.execute("SELECT drive FROM replicas WHERE segment = ? ORDER BY drive", (segment,))
        reps = tuple(int(r[0]) for r in cur.fetchall())
        cur.execute("SELECT idx, drive, state, gen FROM shards WHERE segment = ? ORDER BY idx", (segment,))
        shs = tuple(ShardRow(int(a), int(b), c, int(g)) for a, b, c, g in cur.fetchall())
        return Layout(segment, state, int(lay[0]), int(lay[1]), int(lay[2]), int(lay[3]), reps, shs)

    return meta.runner.read(q, snapshot=True)


# The write ledger (``counters`` rows, added to by every seal in its own transaction): the bytes that
# went into segments, the bytes written to drives for them while they were a replicated write buffer,
# and the bytes of their final form (shards; the one file of a 1+0 store). ``exastor stats`` divides
# them: write amplification as it happened, split into the buffer's part and the stripe's.
LEDGER = ("written_data_bytes", "written_buffer_bytes", "written_final_bytes")


@dataclass(frozen=True, slots=True)
class Written:
    """What one seal adds to the write ledger."""

    data: int     # the segment's bytes
    buffer: int   # bytes written to its replicas before the seal (0: a full stripe written directly)
    final: int    # bytes of its final form on the drives


def _add_counters(cur: Any, amounts: dict[str, int]) -> None:
    for name, amount in amounts.items():
        cur.execute("UPDATE counters SET value = value + ? WHERE name = ?", (amount, name))
        if cur.rowcount == 0:
            cur.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, amount))


def commit_seal(meta: Metadata, segment: int, k: int, m: int, shard_len: int, data_len: int,
                placed: list[tuple[int, int]], *, expect_state: str = "open", epoch: int | None = None,
                written: Written | None = None) -> bool:
    """Point the database at the shards ((drive, gen) by index, all fsynced already) and forget the
    replicas, in one transaction. False when the segment is no longer in ``expect_state``, or (with
    ``epoch``) its lease was taken over since this sealer fenced it: the later taker seals it.
    ``written``: added to the write ledger (``LEDGER``) in the same transaction (not for a
    re-protection: that is repair, not the cost of a write)."""
    def tx(cur: Any) -> bool:
        cur.execute("SELECT state FROM segments WHERE id = ?", (segment,))
        row = cur.fetchone()
        if row is None or row[0] != expect_state:
            return False
        if epoch is not None and not leases.holds(cur, segment, epoch):
            return False
        cur.execute("SELECT shard_len FROM segment_layout WHERE segment = ?", (segment,))
        current = cur.fetchone()
        if shard_len and current is not None and int(current[0]) > 0:
            return False  # another sealer (a re-protect in another process) won
        cur.execute("DELETE FROM segment_layout WHERE segment = ?", (segment,))
        cur.execute("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (?, ?, ?, ?, ?)",
                    (segment, k, m, shard_len, data_len))
        cur.execute("DELETE FROM shards WHERE segment = ?", (segment,))
        cur.executemany("INSERT INTO shards (segment, idx, drive, state, gen) VALUES (?, ?, ?, 'ok', ?)",
                        [(segment, i, d, g) for i, (d, g) in enumerate(placed)])
        if shard_len:
            cur.execute("DELETE FROM replicas WHERE segment = ?", (segment,))
        cur.execute("UPDATE segments SET state = 'sealed', size = ? WHERE id = ?", (data_len, segment))
        leases.drop(cur, segment)
        if written is not None:
            _add_counters(cur, dict(zip(LEDGER, (written.data, written.buffer, written.final), strict=True)))
        return True

    return meta.runner.write_sync(tx)


def abandon_stripe(meta: Metadata, segment: int) -> bool:
    """Mark deleted a segment opened for a full stripe written directly (open, no replica rows) whose
    writer never committed it - it failed, or died - when the index places no chunk in it (none can:
    a writer commits chunk rows only after the stripe's seal). Conditional in one transaction, so a
    stripe whose seal committed is never touched. True if it was marked."""
    return _abandon(meta, segment, stripe=True)


def abandon_segment(meta: Metadata, segment: int) -> bool:
    """Mark deleted an open segment nothing was ever written into (its files could not all be made,
    or none exists: ``SegmentLog._create``, ``recover``) when the index places no chunk in it.
    Conditional in one transaction: a segment another process sealed meanwhile - it took the lease
    over once it expired, while this one still waited on a slow drive - is never touched. Marking
    that one deleted would leave its shard rows pointing into a deleted segment, rows that no
    repair, drain or check looks at (they look at sealed segments) and that keep a drive they are on
    from ever being removed. True if it was marked."""
    return _abandon(meta, segment, stripe=False)


def _abandon(meta: Metadata, segment: int, *, stripe: bool) -> bool:
    """Mark ``segment`` deleted if it is open and no chunk points into it (a stripe: and it has no
    replica rows either)."""
    where = "id = ? AND state = 'open' AND NOT EXISTS (SELECT 1 FROM chunks WHERE segment = ?)"
    if stripe:
        where += " AND NOT EXISTS (SELECT 1 FROM replicas WHERE segment = ?)"

    def tx(cur: Any) -> bool:
        cur.execute(f"UPDATE segments SET state = 'deleted', size = 0 WHERE {where}",
                    (segment,) * where.count("?"))
        if cur.rowcount != 1:
            return False
        leases.drop(cur, segment)
        return True

    return meta.runner.write_sync(tx)


def shards_on(meta: Metadata, drive: int) -> list[tuple[int, int, str | None]]:
    """Every shard row on ``drive``: (segment, idx, the segment's state; None: no segment row)."""
    def q(cur: Any) -> list[tuple[int, int, str | None]]:
        cur.execute("SELECT s.segment, s.idx, g.state FROM shards s LEFT JOIN segments g ON g.id = s.segment "
                    "WHERE s.drive = ? ORDER BY s.segment, s.idx", (drive,))
        return [(int(a), int(b), None if c is None else str(c)) for a, b, c in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


def forget_deleted_shards(meta: Metadata, drive: int) -> int:
    """Delete the shard rows on ``drive`` of segments marked deleted: nothing reads a deleted segment
    (no chunk points into it), and the sweep removes its files by their names alone. Compaction
    forgets a segment's rows in the transaction that deletes it; rows left by a segment marked deleted
    without that (before ``abandon_segment`` was conditional) would otherwise hold the drive forever.
    Returns how many."""
    def tx(cur: Any) -> int:
        cur.execute("DELETE FROM shards WHERE drive = ? AND segment IN "
                    "(SELECT id FROM segments WHERE state = 'deleted')", (drive,))
        return int(cur.rowcount)

    return meta.runner.write_sync(tx)


def names_shard(meta: Metadata, segment: int, idx: int, drive: int, gen: int) -> bool:
    """Whether the database points at this copy of a shard: a writer that lost its own conditional
    update checks this before deleting its file (a rebuild from the drives may have published it)."""
    return bool(meta.runner.read(lambda cur: cur.execute(
        "SELECT 1 FROM shards WHERE segment = ? AND idx = ? AND drive = ? AND gen = ?",
        (segment, idx, drive, gen)).fetchone(), snapshot=False))


def mark_shard(meta: Metadata, segment: int, idx: int, *, state: str, drive: int | None = None,
               gen: int | None = None, expect_drive: int | None = None, expect_gen: int | None = None) -> bool:
    """Set a shard's state (and move it to ``drive``/``gen``); with ``expect_*``, only if the row
    still names that copy. True if the row changed: the transaction is the only arbiter of which
    of two racing copies wins."""
    sets = [("state", state), ("drive", drive), ("gen", gen)]
    where = [("segment", segment), ("idx", idx), ("drive", expect_drive), ("gen", expect_gen)]
    sets, where = [(c, v) for c, v in sets if v is not None], [(c, v) for c, v in where if v is not None]
    params = [v for _, v in sets] + [v for _, v in where]

    def tx(cur: Any) -> bool:
        cur.execute(f"UPDATE shards SET {', '.join(f'{c} = ?' for c, _ in sets)} "
                    f"WHERE {' AND '.join(f'{c} = ?' for c, _ in where)}", params)
        return cur.rowcount == 1

    return meta.runner.write_sync(tx)


def indexed_end(meta: Metadata, segment: int, header_size: int) -> int:
    """Where the last record the chunk index places in ``segment`` ends (0: none): a seal must keep
    at least that much."""
    end = meta.runner.read(lambda cur: cur.execute(
        f'SELECT MAX("offset" + stored_len + {int(header_size)}) FROM chunks WHERE segment = ?',
        (segment,)).fetchone()[0])
    return int(end or 0)


def segment_has_chunks(meta: Metadata, segment: int) -> bool:
    """Whether the chunk index places any chunk in ``segment``."""
    return meta.runner.read(lambda cur: cur.execute(
        "SELECT 1 FROM chunks WHERE segment = ? LIMIT 1", (segment,)).fetchone()) is not None


def sweep_evidence(meta: Metadata) -> tuple[dict[int, str], set[int], dict[int, dict[int, tuple[int, int]]]]:
    """What the garbage sweep proves files against, in one snapshot: each segment's state, the
    erasure-coded segments, and each shard row {segment: {idx: (drive, gen)}}."""
    def q(cur: Any) -> tuple[dict[int, str], set[int], dict[int, dict[int, tuple[int, int]]]]:
        cur.execute("SELECT id, state FROM segments")
        states = {int(a): str(b) for a, b in cur.fetchall()}
        cur.execute("SELECT segment FROM segment_layout WHERE shard_len > 0")
        coded = {int(r[0]) for r in cur.fetchall()}
        cur.execute("SELECT segment, idx, drive, gen FROM shards")
        rows: dict[int, dict[int, tuple[int, int]]] = {}
        for seg, idx, drive, gen in cur.fetchall():
            rows.setdefault(int(seg), {})[int(idx)] = (int(drive), int(gen))
        return states, coded, rows

    return meta.runner.read(q)


def shards_needing_repair(meta: Metadata, offline_before_ns: int) -> list[tuple[int, int, int, str]]:
    """(segment, idx, drive, why) for every shard of a sealed segment that needs work: its row is not
    'ok' (why: its state), or its drive is failed, draining, removed, or offline since before
    ``offline_before_ns`` (why: the drive's state)."""
    def q(cur: Any) -> list[tuple[int, int, int, str]]:
        cur.execute("SELECT s.segment, s.idx, s.drive, s.state, COALESCE(d.state, 'removed') FROM shards s "
                    "JOIN segments g ON g.id = s.segment LEFT JOIN drives d ON d.id = s.drive "
                    "WHERE g.state = 'sealed' AND (s.state != 'ok' OR d.state IS NULL OR "
                    "d.state IN ('failed', 'draining', 'removed') OR "
                    "(d.state = 'offline' AND d.changed_ns <= ?)) ORDER BY s.segment, s.idx", (offline_before_ns,))
        return [(int(a), int(b), int(c), st if st != "ok" else ds) for a, b, c, st, ds in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


def unprotected_sealed_segments(meta: Metadata) -> list[int]:
    """Sealed segments kept as plain copies (no erasure-coded shards), by id."""
    def q(cur: Any) -> list[int]:
        cur.execute("SELECT s.id FROM segments s LEFT JOIN segment_layout l ON l.segment = s.id "
                    "WHERE s.state = 'sealed' AND (l.segment IS NULL OR l.shard_len = 0) ORDER BY s.id")
        return [int(r[0]) for r in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


def healthy_shards_off(meta: Metadata, drive: int) -> list[tuple[int, int, int]]:
    """(segment, idx, drive) of every 'ok' shard of a sealed segment on another drive than ``drive``."""
    def q(cur: Any) -> list[tuple[int, int, int]]:
        cur.execute("SELECT s.segment, s.idx, s.drive FROM shards s JOIN segments g ON g.id = s.segment "
                    "WHERE g.state = 'sealed' AND s.state = 'ok' AND s.drive != ? ORDER BY s.segment, s.idx",
                    (drive,))
        return [(int(a), int(b), int(c)) for a, b, c in cur.fetchall()]

    return meta.runner.read(q, snapshot=False)


def live_segment_holders(meta: Metadata) -> tuple[list[tuple[int, int, int]], dict[int, list[int]],
                                                   dict[int, list[int]]]:
    """In one snapshot: live segments (id, k, shard_len), their replicas {segment: [drive]}, and the
    drives of their 'ok' shards {segment: [drive]}."""
    def q(cur: Any) -> tuple[list[tuple[int, int, int]], dict[int, list[int]], dict[int, list[int]]]:
        cur.execute("SELECT s.id, COALESCE(l.k, 0), COALESCE(l.shard_len, 0) FROM segments s "
                    "LEFT JOIN segment_layout l ON l.segment = s.id WHERE s.state != 'deleted'")
        segs = [(int(a), int(b), int(c)) for a, b, c in cur.fetchall()]
        cur.execute("SELECT segment, drive FROM replicas")
        reps: dict[int, list[int]] = {}
        for seg, drive in cur.fetchall():
            reps.setdefault(int(seg), []).append(int(drive))
        cur.execute("SELECT segment, drive FROM shards WHERE state = 'ok'")
        placed: dict[int, list[int]] = {}
        for seg, drive in cur.fetchall():
            placed.setdefault(int(seg), []).append(int(drive))
        return segs, reps, placed

    return meta.runner.read(q)


def replicas_on(meta: Metadata, drive: int) -> int:
    """How many replicas of live segments ``drive`` holds."""
    def q(cur: Any) -> int:
        cur.execute("SELECT COUNT(*) FROM replicas r JOIN segments s ON s.id = r.segment "
                    "WHERE r.drive = ? AND s.state != 'deleted'", (drive,))
        return int(cur.fetchone()[0])

    return meta.runner.read(q)


LayoutSnapshot = tuple[dict[int, tuple[str, int, int]], dict[int, tuple[int, ...]],
                       dict[int, dict[int, tuple[int, str, int]]], dict[int, set[int]]]


def layout_snapshot(meta: Metadata) -> LayoutSnapshot:
    """Every segment's rows, in one snapshot: segments {id: (state, size, created_ns)}, layouts
    {id: (k, m, shard_len, data_len)}, shards {id: {idx: (drive, state, gen)}}, replicas {id: {drive}}."""
    def q(cur: Any) -> LayoutSnapshot:
        cur.execute("SELECT id, state, size, created_ns FROM segments")
        segs = {int(a): (str(b), int(c), int(d)) for a, b, c, d in cur.fetchall()}
        cur.execute("SELECT segment, k, m, shard_len, data_len FROM segment_layout")
        lays = {int(r[0]): tuple(int(x) for x in r[1:]) for r in cur.fetchall()}
        cur.execute("SELECT segment, idx, drive, state, gen FROM shards")
        shs: dict[int, dict[int, tuple[int, str, int]]] = {}
        for seg, idx, drive, state, gen in cur.fetchall():
            shs.setdefault(int(seg), {})[int(idx)] = (int(drive), str(state), int(gen))
        cur.execute("SELECT segment, drive FROM replicas")
        reps: dict[int, set[int]] = {}
        for seg, drive in cur.fetchall():
            reps.setdefault(int(seg), set()).add(int(drive))
        return segs, lays, shs, reps

    return meta.runner.read(q)


def _rows_unchanged(cur: Any, seg: int, old: LayoutSnapshot) -> bool:
    old_segs, old_lays, old_shards, old_reps = old
    cur.execute("SELECT state, size, created_ns FROM segments WHERE id = ?", (seg,))
    row = cur.fetchone()
    if (None if row is None else (row[0], int(row[1]), int(row[2]))) != old_segs.get(seg):
        return False
    cur.execute("SELECT k, m, shard_len, data_len FROM segment_layout WHERE segment = ?", (seg,))
    lay = cur.fetchone()
    if (tuple(int(x) for x in lay) if lay else None) != old_lays.get(seg):
        return False
    cur.execute("SELECT idx, drive, state, gen FROM shards WHERE segment = ?", (seg,))
    if {int(i): (int(d), st, int(g)) for i, d, st, g in cur.fetchall()} != old_shards.get(seg, {}):
        return False
    cur.execute("SELECT drive FROM replicas WHERE segment = ?", (seg,))
    return {int(r[0]) for r in cur.fetchall()} == old_reps.get(seg, set())


def rewrite_layouts(meta: Metadata, plans: list[tuple[int, tuple, tuple, list[tuple[int, int, str, int]], list[int]]],
                    old: LayoutSnapshot) -> int:
    """ONE transaction: for each plan (segment, (state, size, created_ns), (k, m, shard_len, data_len),
    shard rows [(idx, drive, state, gen)], replica drives) replace the segment's rows — only where they
    are still what ``old`` (the snapshot the plan was made from) says: no seal, repair, move or
    compaction committed meanwhile (the transaction is the arbiter). Returns how many plans were
    dropped for that."""
    def tx(cur: Any) -> int:
        dropped = 0
        for seg, (state, size, created), (k, m, shard_len, data_len), rows, holders in plans:
            if not _rows_unchanged(cur, seg, old):
                dropped += 1
                continue
            cur.execute("DELETE FROM segments WHERE id = ?", (seg,))
            cur.execute("INSERT INTO segments (id, state, size, created_ns) VALUES (?, ?, ?, ?)",
                        (seg, state, size, created))
            cur.execute("DELETE FROM segment_layout WHERE segment = ?", (seg,))
            cur.execute("INSERT INTO segment_layout (segment, k, m, shard_len, data_len) VALUES (?, ?, ?, ?, ?)",
                        (seg, k, m, shard_len, data_len))
            cur.execute("DELETE FROM shards WHERE segment = ?", (seg,))
            cur.executemany("INSERT INTO shards (segment, idx, drive, state, gen) VALUES (?, ?, ?, ?, ?)",
                            [(seg, idx, drive, st, gen) for idx, drive, st, gen in rows])
            cur.execute("DELETE FROM replicas WHERE segment = ?", (seg,))
            cur.executemany("INSERT INTO replicas (segment, drive) VALUES (?, ?)", [(seg, d) for d in holders])
        return dropped

    return meta.runner.write_sync(tx)
