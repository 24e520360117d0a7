"""The background reducer: re-stores chunks byte-grouped or as deltas against similar chunks.

It walks object versions in write order (``seq``) from a cursor kept in ``counters``, so it is
restartable at any point: a chunk already evaluated (in ``sketches``) or already re-encoded is
skipped. For each new chunk it runs ``engine.similarity.plan_chunk`` and, when that pays:

1. appends the new record to its segment and fsyncs it;
2. in ONE transaction: repoints ``chunks`` at the new record (only if the chunk is still where
   it read it), adds one reference per reference slice to the base chunks (failing if any base
   was reclaimed or became a delta), records the slices in ``reduced_chunks`` and
   ``delta_bases``, and refuses if the chunk has meanwhile become some delta's base.

A crash before 2 leaves an unreferenced record for compaction; after 2 the old record is dead.
Reads reconstruct through ``ChunkStore.read_chunk`` and verify BLAKE3. Chains are at most
``similarity.MAX_DEPTH`` deep (checked again inside the transaction), so a read decodes a
bounded number of records: at most MAX_REFS per level.

It never blocks writers: it holds no lock, and it sleeps between batches so that it uses at
most ``duty`` of one core (writers get the rest).

    python -m exastor.services.reducer --data DIR [--duty 0.5] [--once]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from exastor import errors, metrics
from exastor.engine import codec, similarity
from exastor.engine.chunkstore import ChunkStore
from exastor.engine.record import (
    CODEC_DELTA,
    CODEC_RAW,
    CODEC_ZSTD,
    HEADER_SIZE,
    decode_header,
    encode,
    verify_payload,
)
from exastor.engine.sketch import Sketch
from exastor.meta import manifest as mf
from exastor.meta import reduction
from exastor.meta.counters import read_counters, set_counters
from exastor.meta.records import ChunkLocation
from exastor.services import reduce_control

log = logging.getLogger("exastor.reducer")

CURSOR = "reducer_seq"
BATCH_CHUNKS = 256        # re-encoded chunks per append + fsync + transaction
BATCH_BYTES = 16 << 20
WINDOW_CHUNKS = 4096       # distinct chunks of one object looked up and held at once


@dataclass
class ReduceResult:
    objects: int = 0
    chunks_seen: int = 0
    bytes_seen: int = 0
    grouped: int = 0
    deltas: int = 0
    saved_bytes: int = 0
    released: int = 0
    seconds: float = 0.0


def _entry(row: tuple) -> similarity.Entry:
    fp, seq, s0, s1, s2, s3, p0, p1, p2, p3, b, k, v, off, depth = row
    return similarity.Entry(bytes(fp), Sketch((s0, s1, s2, s3), (p0, p1, p2, p3)), (b, k, v), off, seq, depth)


class Reducer:
    def __init__(self, store: ChunkStore, *, duty: float = 1.0) -> None:
        self.store = store
        self.meta = store.meta
        self.duty = max(0.01, min(1.0, duty))
        self._layouts: OrderedDict[tuple, mf.Layout | None] = OrderedDict()
        self._bytes: OrderedDict[bytes, bytes | memoryview] = OrderedDict()
        self._pending: list[tuple] = []  # sketch rows evaluated in this batch, committed with it
        self._pending_by_super: dict[tuple[int, int], list[tuple]] = {}
        # The batch's decisions, visible to later chunks before they commit (as the estimator sees them).
        self._batch: list[tuple[ChunkLocation, similarity.Plan]] = []
        self._batch_bytes = 0
        self._overlay_depth: dict[bytes, int] = {}
        self._overlay_bases: set[bytes] = set()

    # --- the sketch index, in SQL --------------------------------------------------------
    def _candidates(self, sk: Sketch) -> list[similarity.Entry]:
        found = {e.fp: e for e in map(_entry, reduction.sketch_candidates(self.meta, sk.supers,
                                                                            similarity.PER_FEATURE))}
        for k, sf in enumerate(sk.supers):  # evaluated in this batch, not yet committed: newer than any row
            for row in self._pending_by_super.get((k, sf), [])[-similarity.PER_FEATURE:]:
                e = _entry(row)
                found[e.fp] = e
        return similarity.rank(sk, list(found.values()))

    @staticmethod
    def _sketch_row(fp: bytes, seq: int, sk: Sketch, owner: tuple[str, str, str], offset: int,
                    depth: int) -> tuple:
        return (fp, seq, *sk.supers, *sk.positions, *owner, offset, depth)

    # --- reference bytes -----------------------------------------------------------------
    def _layout(self, owner: tuple[str, str, str]) -> mf.Layout | None:
        if owner in self._layouts:
            self._layouts.move_to_end(owner)
            return self._layouts[owner]
        obj = self.meta.get_object(*owner)
        lay = mf.Layout(obj.manifest) if obj is not None and obj.manifest else None
        self._layouts[owner] = lay
        if len(self._layouts) > 16:
            self._layouts.popitem(last=False)
        return lay

    def _chunk(self, fp: bytes) -> bytes | memoryview | None:
        if fp in self._bytes:
            self._bytes.move_to_end(fp)
            return self._bytes[fp]
        loc = self.meta.lookup_chunks([fp]).get(fp)
        if loc is None:
            return None
        try:  # a delta base is reconstructed (and verified) like any read; one that moves is followed
            data, _ = self.store.read_current(loc)
        except errors.DataCorrupted:
            if self.meta.lookup_chunks([fp]).get(fp) is None:
                return None  # reaped meanwhile (nothing references it any more): not a candidate
            raise
        self._bytes[fp] = data
        if len(self._bytes) > 64:
            self._bytes.popitem(last=False)
        return data

    def _depth(self, fp: bytes) -> int | None:
        if fp in self._overlay_depth:
            return self._overlay_depth[fp]

        return reduction.chunk_depth(self.meta, fp, CODEC_DELTA)

    def _fetch(self, owner: tuple[str, str, str], start: int, end: int) -> similarity.Reference | None:
        lay = self._layout(owner)
        if lay is None:
            return None
        return similarity.reference_from_layout(lay, start, end, self._depth, self._chunk)

    # --- committing a batch ---------------------------------------------------------------
    def _is_base_in_db(self, fp: bytes) -> bool:
        return reduction.is_delta_base(self.meta, fp)

    def _commit(self, result: ReduceResult) -> None:
        """Write the batch's records durably (one append, one fsync), then in ONE transaction
        repoint the index at each of them whose checks still hold, and index the batch's sketches."""
        batch, rows = self._batch, self._pending
        if not batch and not rows:
            return
        placed: list[tuple[ChunkLocation, similarity.Plan, int]] = []
        seg = -1
        if batch:
            parts: list[bytes | bytearray | memoryview] = []
            pos = 0
            for loc, plan in batch:
                # Encrypted like the write path's records (below the reduction), under the newest key.
                key_id, stored = self.store.keys.seal(loc.fp, plan.codec, plan.flags, loc.raw_len, plan.payload)
                # stats' "grouped" stage must be sized like a stored record, nonce and tag included:
                # plain_len is the written record's stored length (sealed already), and grouped_len is
                # that same length unless byte grouping paid, when it is a plaintext payload's.
                sealing = len(stored) - len(plan.payload)
                grouped_len = plan.grouped_len if plan.grouped_len == plan.plain_len else plan.grouped_len + sealing
                plan = replace(plan, payload=stored, grouped_len=grouped_len)
                parts.append(encode(loc.fp, plan.codec, loc.raw_len, plan.payload, plan.flags, key_id=key_id))
                parts.append(plan.payload)
                placed.append((loc, plan, pos))
                pos += HEADER_SIZE + len(plan.payload)
            seg, base = self.store.log.append(b"".join(parts))
            self.store.log.sync(seg, base + pos)
            placed = [(loc, plan, base + rel) for loc, plan, rel in placed]

        repoints = [reduction.Repoint(loc, plan.codec, len(plan.payload), plan.plain_len, plan.grouped_len,
                                      plan.depth, mf.pack(plan.refs) if plan.refs else None, off)
                    for loc, plan, off in placed]
        try:
            switched = reduction.commit_batch(self.meta, seg, repoints, rows, delta_codec=CODEC_DELTA,
                                              max_depth=similarity.MAX_DEPTH)
        except errors.Unavailable:
            switched = []
        done = [(placed[i][0], placed[i][1]) for i in switched]
        for loc, plan in done:
            result.saved_bytes += loc.stored_len - len(plan.payload)
            if plan.codec == CODEC_DELTA:
                result.deltas += 1
            else:
                result.grouped += 1
        batch.clear()
        rows.clear()
        self._pending_by_super.clear()
        self._overlay_depth.clear()
        self._overlay_bases.clear()
        self._batch_bytes = 0

    # --- one object ----------------------------------------------------------------------
    def _object(self, bucket: str, key: str, version: str, seq: int, manifest: bytes,
                result: ReduceResult) -> None:
        owner = (bucket, key, version)
        layout = mf.Layout(manifest)
        firsts = layout.first_uses()
        # A window of distinct chunks at a time: the per-object state of a 10 GiB object (160,000
        # chunks) would otherwise be ~45 MiB of Python objects in the serving worker.
        for w in range(0, len(firsts), WINDOW_CHUNKS):
            window = [layout.entry(int(i)) for i in firsts[w:w + WINDOW_CHUNKS]]
            fps = [s.fp for s, _ in window]
            chunk_offset = {s.fp: pos - s.start for s, pos in window}

            known = reduction.sketched(self.meta, fps)
            locs = self.meta.lookup_chunks(fps)
            for j, fp in enumerate(fps):
                loc = locs.get(fp)
                if fp in known or loc is None or loc.codec not in (CODEC_RAW, CODEC_ZSTD):
                    continue
                self._chunk_of_object(fp, loc, owner, seq * 1_000_000 + w + j, chunk_offset[fp], result)
        self._commit(result)

    def _chunk_of_object(self, fp: bytes, loc: ChunkLocation, owner: tuple[str, str, str], sketch_seq: int,
                         offset: int, result: ReduceResult) -> None:
        began = time.monotonic()
        try:
            # Compaction in any process may move the record after the lookup: read it where it is now
            # (the repoint below is conditional on that location).
            raw, loc = self.store.read_current(loc)
        except errors.DataCorrupted:
            if self.meta.lookup_chunks([fp]).get(fp) is None:
                return  # reaped meanwhile (its objects were deleted): nothing to reduce
            raise
        if loc.codec not in (CODEC_RAW, CODEC_ZSTD):
            return  # another reducer re-stored it meanwhile
        view = similarity.inspect(raw)
        cands = self._candidates(view.sketch) if view.sketch is not None else []
        plan = similarity.plan_chunk(raw, loc.stored_len, cands, view.sketch, view.layout, self._fetch,
                                     self._depth, fp)
        if plan is not None and plan.codec == CODEC_DELTA and (
                fp in self._overlay_bases or self._is_base_in_db(fp)):
            plan = None  # a base already: its dependants' depth must not change
        depth = plan.depth if plan is not None else 0
        result.chunks_seen += 1
        result.bytes_seen += loc.raw_len
        if plan is not None:
            self._batch.append((loc, plan))
            self._batch_bytes += len(plan.payload)
            self._overlay_depth[fp] = depth
            self._overlay_bases.update(s.fp for s in plan.refs)
        if view.sketch is not None and depth < similarity.MAX_DEPTH:
            row = self._sketch_row(fp, sketch_seq, view.sketch, owner, offset, depth)
            self._pending.append(row)
            for k, sf in enumerate(view.sketch.supers):
                self._pending_by_super.setdefault((k, sf), []).append(row)
        if len(self._batch) >= BATCH_CHUNKS or self._batch_bytes >= BATCH_BYTES or len(self._pending) >= 1024:
            self._commit(result)
        self._throttle(time.monotonic() - began)

    def _throttle(self, busy: float) -> None:
        if self.duty < 1.0:
            time.sleep(busy * (1.0 / self.duty - 1.0))

    # --- passes --------------------------------------------------------------------------
    def release_orphans(self) -> int:
        """Drop the references of deltas whose chunk is gone (reaped) or no longer that record."""
        return reduction.release_orphans(self.meta)

    def adopt_orphans(self) -> int:
        """Re-register deltas the index points at without a ``reduced_chunks`` row (possible after
        ``fsck --rebuild-index`` revived a delta record): their references must be held again, or
        their bases could be reclaimed. Returns how many were adopted."""
        adopted = 0
        for loc in reduction.unregistered_deltas(self.meta, CODEC_DELTA):
            try:
                raw = self.store.log.pread(loc.segment, loc.offset, HEADER_SIZE + loc.stored_len)
                head = decode_header(raw)
                verify_payload(head, memoryview(raw)[HEADER_SIZE:])
                slices, _pad = codec.delta_refs(codec.open_payload(head, memoryview(raw)[HEADER_SIZE:],
                                                                   self.store.keys))
            except (errors.DataCorrupted, OSError):
                log.error("delta chunk %s unreadable; run exastor fsck", loc.fp.hex())
                continue
            try:
                outcome = reduction.register_delta(self.meta, loc, mf.pack(slices), delta_codec=CODEC_DELTA)
            except errors.Unavailable:
                continue
            if outcome == "lost-base":
                log.error("delta chunk %s lost a base; run exastor fsck", loc.fp.hex())
            adopted += outcome == "adopted"
        return adopted

    def run_once(self, max_objects: int | None = None, stop: Callable[[], bool] | None = None) -> ReduceResult:
        """One pass from the cursor to the newest object. ``stop()`` is asked between batches of
        objects (an operator's pause): the cursor keeps what was done, the next pass goes on from it."""
        started = time.monotonic()
        result = ReduceResult(released=self.release_orphans())
        self.adopt_orphans()

        cursor = read_counters(self.meta, [CURSOR]).get(CURSOR, 0)
        while max_objects is None or result.objects < max_objects:
            batch = reduction.objects_after(self.meta, cursor, 64)
            if not batch or (stop is not None and stop()):
                break
            for bucket, key, version, seq, manifest in batch:
                if manifest:
                    self._object(bucket, key, version, seq, bytes(manifest), result)
                result.objects += 1
                cursor = seq

                set_counters(self.meta, {CURSOR: seq})
                if max_objects is not None and result.objects >= max_objects:
                    break
        result.seconds = time.monotonic() - started
        return result


class ReducerThread(threading.Thread):
    """Runs a pass every ``interval`` seconds (0: only when an operator asks) until stopped, next to
    the garbage collector, and obeys the operator's controls in the database (reduce_control):
    a pause stops a pass between batches and skips the timed ones; `exastor reduce run` gets a pass
    within a second, paused or not."""

    def __init__(self, reducer: Reducer, interval: float, tick: float = 1.0) -> None:
        super().__init__(name="exastor-reducer", daemon=True)
        self.reducer = reducer
        self.interval = interval
        self.tick = tick
        self.ticks = 0  # times it looked at the controls (tests wait on it instead of sleeping)
        self._halt = threading.Event()

    def run(self) -> None:
        meta = self.reducer.meta
        due = time.monotonic() + self.interval if self.interval > 0 else float("inf")
        while not self._halt.wait(self.tick):
            self.ticks += 1
            try:
                control = reduce_control.state(meta)
                asked = control.run_pending
                if not asked and (control.paused or time.monotonic() < due):
                    continue
                self.run_pass(forced=asked, request=control.run_request)
            except errors.Unavailable as exc:  # the metadata database or a drive is down: one line, not a trace
                log.warning("reducer pass skipped: %s; will retry", exc.detail)
            except Exception:
                log.exception("reducer pass failed; will retry")
            due = time.monotonic() + self.interval if self.interval > 0 else float("inf")

    def run_pass(self, *, forced: bool = False, request: int = 0) -> ReduceResult:
        """One pass, recorded in the database (reduce_control) and the metrics."""
        meta = self.reducer.meta
        reduce_control.set_values(meta, pass_started=time.time_ns())

        def paused() -> bool:
            return self._halt.is_set() or (not forced and reduce_control.state(meta).paused)

        res = ReduceResult()
        try:
            res = self.reducer.run_once(stop=paused)
        finally:
            done = {"run_done": request} if forced else {}
            reduce_control.set_values(meta, pass_ended=time.time_ns(), pass_bytes=res.bytes_seen,
                                      pass_saved=res.saved_bytes, **done)
            m = metrics.get()
            if m is not None:
                m.reducer_passes.inc()
                m.reducer_bytes.inc(res.bytes_seen)
                m.reducer_saved.inc(res.saved_bytes)
                m.reducer_last.set(time.time())
        if res.chunks_seen:
            log.info("reducer: %s", res)
        return res

    def stop(self) -> None:
        self._halt.set()


def main(argv: list[str] | None = None) -> int:
    import json
    from dataclasses import asdict

    from exastor.datadir.opening import open_namespace

    ap = argparse.ArgumentParser(prog="python -m exastor.services.reducer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="./data")
    ap.add_argument("--duty", type=float, default=1.0, help="share of one core to use (default 1.0)")
    ap.add_argument("--max-objects", type=int, default=None)
    args = ap.parse_args(argv)
    from exastor.cliargs import existing_store
    from exastor.datadir import lock
    from exastor.errors import CommandError

    try:
        data = existing_store(args.data)  # never a new, empty store; never an embedded one beside PostgreSQL
    except CommandError as exc:
        print(f"{ap.prog}: {exc}", file=sys.stderr)
        return 2
    lock.shared(data)  # beside servers, never beside an offline repair (exclusive)
    # recover=False: a running server may have segments open; this process opens its own.
    ns = open_namespace(data, recover=False)
    try:
        res = Reducer(ns.chunks, duty=args.duty).run_once(args.max_objects)
    finally:
        ns.close()
    print(json.dumps(asdict(res)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
