"""A read holds a snapshot of the metadata (a chunk's location, its segment's layout) while sealing,
repair, compaction and the reducer commit new ones and delete the files the old ones named. Every
interleaving of a read with them must return the acknowledged bytes: never a 500.

The rule these check (docs/design.md, "Readers and the files they were told about"): a writer of a
layout or a location commits the new one before it deletes a file, so a reader that finds a file
missing looks again *after* the failure - the layout, then the chunk's location - and only a
failure under what it finds then is one.

Deterministic like test_concurrent_services.py: actors stop at named points (the engine's crash
points, and the reader's layout look-ups) and a schedule says who runs next; every order is run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from test_concurrent_services import Scheduler, interleavings

from exastor.datadir.opening import open_namespace
from exastor.engine import segments as segments_module
from exastor.engine.drives import DriveSet, load_layout, segment_name
from exastor.engine.record import HEADER_SIZE
from exastor.engine.segments import SegmentLog
from exastor.meta import manifest as mf
from exastor.namespace.operations import PutSpec, SystemGrant
from exastor.services import fsck
from exastor.services.gc import Collector
from exastor.services.reducer import Reducer

ADMIN = SystemGrant("admin")


def _put(ns, key: str, body: bytes) -> None:
    async def main() -> None:
        async def source():
            yield body
        await ns.put_object(ADMIN, "bkt", key, source(), PutSpec())

    asyncio.run(main())


def _get(ns, key: str) -> bytes:
    async def main() -> bytes:
        obj = ns.get_object(ADMIN, "bkt", key)
        return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])

    return asyncio.run(main())


def _pause_reader_at_layout_lookups(monkeypatch, sched: Scheduler, reader: str) -> None:
    """The reader stops right after each look-up of a segment's layout: what it holds from then on is
    a snapshot that others may change before it reads the files."""
    real = segments_module.load_layout

    def looked_up(meta, segment):  # noqa: ANN001, ANN202
        lay = real(meta, segment)
        if getattr(sched.local, "actor", None) == reader:
            sched._pause(reader, "read.layout")
        return lay

    monkeypatch.setattr(segments_module, "load_layout", looked_up)


def test_a_read_around_a_bad_replica_beside_the_seal_of_its_segment(tmp_path, monkeypatch):
    """A GET of an object in an open segment whose first replica has a flipped byte reads around it
    (the other replica) - while the segment is sealed: shards written, the stripe committed, the
    replicas deleted. Before the fix, a read that had looked the layout up (replicas) before the
    commit and read after the deletion found every replica gone and answered 500."""
    sched = Scheduler()
    monkeypatch.setattr(segments_module, "crash_point", sched.barrier)
    _pause_reader_at_layout_lookups(monkeypatch, sched, "A")
    ns = open_namespace(tmp_path / "data", segment_size=64 << 20, ec="2+1",
                        drives=[str(tmp_path / f"d{i}") for i in range(4)])
    sealer = SegmentLog(DriveSet(ns.meta), ns.meta)  # the seal as another process runs it
    try:
        asyncio.run(ns.create_bucket(ADMIN, "bkt"))
        traces: set[str] = set()
        schedules = interleavings(3, 3)
        for n, order in enumerate(schedules):
            body = os.urandom(100_000)  # under the inline read limit: read on the reader's own thread
            _put(ns, f"k{n}", body)
            seg = ns.chunks.log.open_segment
            lay = load_layout(ns.meta, seg)
            assert lay.kind == "replicas" and len(lay.replicas) == 2
            obj = ns.get_object(ADMIN, "bkt", f"k{n}")
            first = next(mf.Layout(obj.manifest).covering(0, obj.size - 1))[0].fp
            _flip_a_byte(ns, lay, ns.meta.lookup_chunks([first])[first].offset + HEADER_SIZE + 10)
            got: dict[str, bytes] = {}

            def read(key: str = f"k{n}", got: dict = got) -> None:
                got["body"] = _get(ns, key)

            trace = sched.run({"A": read, "B": lambda seg=seg: sealer.seal(seg)}, order)
            traces.add(" ".join(trace))
            assert got["body"] == body, (order, trace)
            assert load_layout(ns.meta, seg).kind == "ec"
            assert _get(ns, f"k{n}") == body
            ns.chunks.log._rollover(seg)  # the writer moves on to a new segment (its old one is sealed)
            ns.chunks.log.wait_sealed()
        assert len(traces) >= 10, traces  # distinct interleavings actually taken
    finally:
        sealer.drives.close()
        ns.close()
    ns = open_namespace(tmp_path / "data", ec="2+1", drives=[str(tmp_path / f"d{i}") for i in range(4)])
    try:
        assert fsck.check(ns.meta, Path()).clean
    finally:
        ns.close()


def _flip_a_byte(ns, lay, offset: int) -> None:
    """A flipped byte in the first replica of an open segment (what scrub or a read would find)."""
    d = ns.chunks.log.drives.get(lay.replicas[0])
    path = d.path / segment_name(lay.segment)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    d.io.release([segment_name(lay.segment)])


def test_the_reducer_follows_a_chunk_compacted_after_it_looked_it_up(tmp_path, monkeypatch):
    """The reducer looks an object's chunks up, then reads them: compaction (in any process) may copy a
    record out and delete its segment in between - here twice over, the copy's segment compacted in
    turn. The read follows the chunk to where the index puts it after the failure. Before, the reducer
    read where it had looked and its pass failed with a traceback (seen under the services stress)."""
    ns = open_namespace(tmp_path / "data", segment_size=64 << 20, ec="2+1",
                        drives=[str(tmp_path / f"d{i}") for i in range(4)])
    collector = Collector(ns.chunks, grace_s=0, live_threshold=2.0)  # every sealed segment is a candidate
    log = ns.chunks.log
    try:
        asyncio.run(ns.create_bucket(ADMIN, "bkt"))
        body = os.urandom(300_000)
        _put(ns, "keep", body)
        obj = ns.get_object(ADMIN, "bkt", "keep")
        fps = [s.fp for s, _, _ in mf.Layout(obj.manifest).covering(0, obj.size - 1)]
        real_read = ns.chunks.read_chunk
        moves: list[tuple[int, int]] = []

        def compact_twice_first(loc):  # noqa: ANN001, ANN202 - the reducer's first read, after its look-up
            if not moves:
                for _move in range(2):
                    seg = ns.meta.lookup_chunks([loc.fp])[loc.fp].segment
                    log._rollover(seg)  # sealed, so compaction may take it
                    log.wait_sealed()
                    moves.append(collector.compact(seg))
            return real_read(loc)

        monkeypatch.setattr(ns.chunks, "read_chunk", compact_twice_first)
        located = ns.meta.lookup_chunks(fps)
        Reducer(ns.chunks).run_once(max_objects=20)
        assert len(moves) == 2 and all(n >= len(fps) for n, _ in moves), moves
        now = ns.meta.lookup_chunks(fps)
        assert all(now[fp].segment != located[fp].segment for fp in fps)
        assert _get(ns, "keep") == body
        data, at = ns.chunks.read_current(located[fps[0]])  # followed to where the index puts it now
        assert at == now[fps[0]] and bytes(data) == body[:len(data)]
    finally:
        ns.close()
