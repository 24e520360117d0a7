"""Background services side by side: the metadata transaction is the only arbiter of which copy wins,
and a loser deletes only what it alone wrote and never published.

Deterministic part: two actors run on threads and stop at the engine's crash points (``repair.written``,
``repair.moved``, ``seal.shards_written``, ``seal.committed``, ``gc.copied``, ``gc.committed``), which
here become barriers; a schedule says which actor runs to its next barrier, and every interleaving of
their steps is run (no sleeps, no timing). Before shard generations, two repairers of one shard wrote
the same path and the loser unlinked the winner's file: the database said ``ok``, the file was gone.

Stress part (bounded): a live server under S3 + Blob load, its own gc/repair/scrub threads, and two more
processes running repair, scrub, relayout, gc and drive drains at random (tests/faults/services_worker.py);
every acknowledged object must read back and fsck must be clean."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import put_bodies
from exastor.datadir.opening import open_namespace
from exastor.engine import segments as segments_module
from exastor.engine import shards
from exastor.engine.drives import DriveSet, load_layout, mark_shard
from exastor.engine.segments import SegmentLog
from exastor.namespace.operations import SystemGrant
from exastor.services import fsck
from exastor.services import gc as gc_module
from exastor.services import repair as repair_module
from exastor.services.gc import Collector
from exastor.services.repair import Repairer, RepairResult
from exastor.services.scrub import Scrubber

HERE = Path(__file__).resolve().parent
BARRIERS = {"repair.written", "repair.moved", "seal.shards_written", "seal.committed", "gc.copied", "gc.committed"}


class Scheduler:
    """Runs actors on threads, each stopping at every barrier until the schedule gives it the turn."""

    def __init__(self, timeout: float = 60.0) -> None:
        self.cv = threading.Condition()
        self.turn: str | None = None
        self.waiting: dict[str, str] = {}
        self.done: set[str] = set()
        self.errors: list[BaseException] = []
        self.local = threading.local()
        self.timeout = timeout

    def barrier(self, point: str) -> None:
        actor = getattr(self.local, "actor", None)
        if actor is None or point not in BARRIERS:
            return  # another thread (the sealer, the metadata writer): not part of the schedule
        self._pause(actor, point)

    def _pause(self, actor: str, point: str) -> None:
        with self.cv:
            self.waiting[actor] = point
            if self.turn == actor:
                self.turn = None
            self.cv.notify_all()
            if not self.cv.wait_for(lambda: self.turn == actor, self.timeout):
                raise TimeoutError(f"{actor} never got its turn at {point}")
            del self.waiting[actor]

    def run(self, actors: dict[str, Callable[[], object]], order: list[str]) -> list[str]:
        """Run ``actors`` following ``order``; returns the points each step stopped at (the trace)."""
        self.turn, self.waiting, self.done, self.errors = None, {}, set(), []
        def body(name: str, fn: Callable[[], object]) -> None:
            self.local.actor = name
            try:
                self._pause(name, "start")
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by run()
                self.errors.append(exc)
            finally:
                with self.cv:
                    self.done.add(name)
                    if self.turn == name:
                        self.turn = None
                    self.cv.notify_all()

        threads = [threading.Thread(target=body, args=(n, f), daemon=True) for n, f in actors.items()]
        for t in threads:
            t.start()
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.waiting) == len(actors), self.timeout)
        trace = []
        for name in itertools.chain(order, itertools.cycle(actors)):
            with self.cv:
                if len(self.done) == len(actors):
                    break
                if name in self.done:
                    continue
                self.turn = name
                self.cv.notify_all()
                assert self.cv.wait_for(lambda: self.turn is None, self.timeout), f"{name} is stuck"
                trace.append(f"{name}:{self.waiting.get(name, 'end')}")
        for t in threads:
            t.join(self.timeout)
        assert not self.errors, self.errors
        return trace


def interleavings(a: int, b: int) -> list[list[str]]:
    """Every order of ``a`` steps of actor A and ``b`` of actor B."""
    return [["A" if i in picks else "B" for i in range(a + b)] for picks in map(set, itertools.combinations(
        range(a + b), a))]


def _fill(ns, bodies: dict[str, bytes]) -> None:
    put_bodies(ns, bodies)


@pytest.fixture
def store(tmp_path, monkeypatch):
    sched = Scheduler()
    for module in (segments_module, repair_module, gc_module):
        monkeypatch.setattr(module, "crash_point", sched.barrier)
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20, ec="4+2",
                        drives=[str(tmp_path / f"d{i}") for i in range(7)])
    rng = random.Random(1)
    bodies = {f"k{i}": rng.randbytes(rng.randint(100_000, 400_000)) for i in range(24)}
    _fill(ns, bodies)
    ns.chunks.log.wait_sealed()
    yield ns, bodies, sched
    ns.close()


def _read_all(ns, bodies: dict[str, bytes]) -> None:
    async def main() -> None:
        for key, body in bodies.items():
            obj = ns.get_object(SystemGrant("admin"), "bkt", key)
            assert b"".join([bytes(p) async for p in ns.read(SystemGrant("admin"), obj)]) == body, key

    asyncio.run(main())


def _shard_files(ns, segment: int, idx: int) -> list[tuple[int, str]]:
    """(drive, file name) of every copy of shard ``idx`` of ``segment`` on any drive."""
    prefix = shards.shard_name(segment, idx)
    found = []
    for d in ns.chunks.log.drives.all:
        for name in d.io.list("shards"):
            full = f"shards/{name}"
            if full == prefix or full.startswith(prefix + ".g"):
                found.append((d.id, full))
    return found


def _one_copy_as_the_database_says(ns, segment: int, idx: int) -> None:
    row = next(r for r in load_layout(ns.meta, segment).shards if r.idx == idx)
    files = _shard_files(ns, segment, idx)
    assert files == [(row.drive, shards.shard_name(segment, idx, row.gen))], (row, files)
    d = ns.chunks.log.drives.get(row.drive)
    info = shards.read_info(d.io, files[0][1])
    assert (info.segment, info.index) == (segment, idx)


def test_two_repairers_of_one_shard_in_every_interleaving(store):
    """4 steps each (start, written, moved, end): all 70 orders. Whoever commits first wins; the other
    deletes only its own file; exactly one copy remains, the one the database names."""
    ns, bodies, sched = store
    lay = next(load_layout(ns.meta, s) for s, st, _ in ns.meta.segments()
               if st == "sealed" and load_layout(ns.meta, s).kind == "ec")
    seg, idx = lay.segment, 1
    logs = [ns.chunks.log, SegmentLog(DriveSet(ns.meta), ns.meta)]  # two repairers, two views of the drives
    outcomes: dict[str, int] = {}
    schedules = interleavings(4, 4)
    for n, order in enumerate(schedules):
        row = next(r for r in load_layout(ns.meta, seg).shards if r.idx == idx)
        mark_shard(ns.meta, seg, idx, state="bad")  # both see it pending
        won = {}

        def repair(name: str, log: SegmentLog, drive: int = row.drive, won: dict = won) -> None:
            won[name] = Repairer(log).repair_shard(seg, idx, drive, "bad", RepairResult())

        trace = sched.run({"A": lambda: repair("A", logs[0]), "B": lambda: repair("B", logs[1])}, order)
        # one wins when both found the same copy; the second wins too when it started after the first ended
        assert sum(won.values()) >= 1, (order, trace, won)
        outcomes[" ".join(trace)] = outcomes.get(" ".join(trace), 0) + 1
        for log in logs:
            log.forget(seg)
        _one_copy_as_the_database_says(ns, seg, idx)
        if n % 10 == 0:
            _read_all(ns, bodies)
    _read_all(ns, bodies)
    assert len(schedules) == 70 and len(outcomes) > 10  # distinct traces actually taken
    logs[1].drives.close()
    assert fsck.check(ns.meta, Path()).clean


def test_repair_beside_compaction_in_every_interleaving(store):
    """A repairer of one shard and the garbage collector compacting that very segment: the compaction's
    commit wins or the repair's does; either way no file another one published is deleted and every
    object reads back."""
    ns, bodies, sched = store
    collector = Collector(ns.chunks, grace_s=0, live_threshold=2.0)  # every sealed segment is a candidate
    coded = [s for s, st, _ in ns.meta.segments() if st == "sealed" and load_layout(ns.meta, s).kind == "ec"]
    schedules = interleavings(4, 3)
    assert len(coded) >= 4
    for order, seg in zip(schedules, itertools.cycle(coded), strict=False):
        lay = load_layout(ns.meta, seg)
        if lay is None or lay.state != "sealed":
            continue
        row = lay.shards[0]

        def repair(seg: int = seg, drive: int = row.drive) -> None:
            Repairer(ns.chunks.log).repair_shard(seg, 0, drive, "bad", RepairResult())

        def compact(seg: int = seg) -> None:
            try:
                collector.compact(seg)
            except Exception as exc:  # noqa: BLE001 - a compaction that gives way (Unavailable) is fine
                if type(exc).__name__ != "Unavailable":
                    raise

        sched.run({"A": repair, "B": compact}, order)
        ns.chunks.log.forget(seg)
        after = load_layout(ns.meta, seg)
        if after is not None and after.state == "sealed":
            _one_copy_as_the_database_says(ns, seg, 0)
        _read_all(ns, bodies)
    ns.chunks.log.sweep()
    assert fsck.check(ns.meta, Path()).clean


def test_scrub_marks_only_the_copy_it_read(store):
    """A scrub that read the old copy of a shard must not mark the new one bad after a repair moved it."""
    ns, _bodies, sched = store
    lay = next(load_layout(ns.meta, s) for s, st, _ in ns.meta.segments()
               if st == "sealed" and load_layout(ns.meta, s).kind == "ec")
    row = lay.shards[2]
    old = ns.chunks.log.drives.get(row.drive)
    raw = bytearray(old.io.read(shards.shard_name(lay.segment, 2, row.gen)))
    raw[10] ^= 1
    (old.path / shards.shard_name(lay.segment, 2, row.gen)).write_bytes(bytes(raw))  # the old copy is bad
    old.io.release(["shards/*"])
    found = Scrubber(ns.chunks.log).run_once(mark=False)
    assert (lay.segment, 2) in {(s, i) for s, i, _ in found.bad_shards}
    Repairer(ns.chunks.log).repair_shard(lay.segment, 2, row.drive, "bad", RepairResult())
    mark_shard(ns.meta, lay.segment, 2, state="bad", expect_drive=row.drive, expect_gen=row.gen)  # the late mark
    assert next(r for r in load_layout(ns.meta, lay.segment).shards if r.idx == 2).state == "ok"


def test_two_reprotections_of_one_segment(tmp_path, monkeypatch):
    """Two processes erasure-coding the same plain-copy segment (a one-drive store that gained drives):
    one commit wins, the other's shard files are removed by their writer, the replicas go once."""
    sched = Scheduler()
    monkeypatch.setattr(segments_module, "crash_point", sched.barrier)
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20)
    rng = random.Random(2)
    bodies = {f"p{i}": rng.randbytes(300_000) for i in range(8)}
    _fill(ns, bodies)
    ns.close()
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20, ec="2+1",
                        drives=[str(tmp_path / "data" / "drive0")] + [str(tmp_path / f"d{i}") for i in range(3)])
    try:
        plain = [s for s, st, _ in ns.meta.segments() if st == "sealed" and load_layout(ns.meta, s).kind != "ec"]
        assert plain
        other = SegmentLog(DriveSet(ns.meta), ns.meta)
        for order, seg in zip(interleavings(3, 3), itertools.cycle(plain), strict=False):
            if load_layout(ns.meta, seg).kind == "ec":
                continue
            sched.run({"A": lambda seg=seg: ns.chunks.log.seal(seg, expect_state="sealed"),
                       "B": lambda seg=seg: other.seal(seg, expect_state="sealed")}, order)
            lay = load_layout(ns.meta, seg)
            assert lay.kind == "ec"
            for row in lay.shards:
                _one_copy_as_the_database_says(ns, seg, row.idx)
        other.drives.close()
        _read_all(ns, bodies)
        assert fsck.check(ns.meta, Path()).clean
    finally:
        ns.close()


# --- stress: two more processes beside a live server -------------------------------------------------

def overlapping_pairs(passes: list[dict]) -> tuple[int, dict[str, int]]:
    """Pairs of passes of different processes whose times overlap: the interleavings reached."""
    by_pid: dict[int, list[dict]] = {}
    for p in passes:
        by_pid.setdefault(p["pid"], []).append(p)
    pids = sorted(by_pid)
    count, kinds = 0, {}
    for i, a_pid in enumerate(pids):
        for b_pid in pids[i + 1:]:
            for a in by_pid[a_pid]:
                for b in by_pid[b_pid]:
                    if a["t0"] < b["t1"] and b["t0"] < a["t1"]:
                        count += 1
                        key = "+".join(sorted((a["svc"], b["svc"])))
                        kinds[key] = kinds.get(key, 0) + 1
    return count, kinds


def run_stress(work: Path, seconds: float, seed: int, live_cap: int = 0) -> dict:
    """A server under load plus two service processes for ``seconds``; returns what it reached.
    ``live_cap``: the load keeps about that many objects live (harness.load): without it the store
    grows all run long, every scrub, relayout and repair pass covers more, and the interleavings per
    minute fall (328 in a run's first 10 minutes, 128 in its next 50)."""
    sys.path.insert(0, str(HERE))
    import harness

    from conftest import exastor, s3_client, start_server

    drives = [work / f"d{i}" for i in range(8)]
    env = {"EXASTOR_SEGMENT_SIZE": str(1 << 20), "EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
           "EXASTOR_REPAIR_INTERVAL": "0.5", "EXASTOR_SCRUB_INTERVAL": "2", "EXASTOR_OFFLINE_REPAIR_AFTER": "0"}
    server = start_server(work, *[a for d in drives for a in ("--drive", str(d))], "--ec", "4+2", env=env)
    oracle = harness.Oracle()
    harness._create_bucket(server)
    stop = threading.Event()
    threads = harness.start_load(server, oracle, seed, stop, live_cap)
    logs = [work / f"services-{i}.jsonl" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, str(HERE / "services_worker.py"), str(server.data_dir),
                                 str(seed * 10 + i), str(seconds), str(logs[i])],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    res = harness.Results(seed=seed)
    try:
        for w in workers:
            out, _ = w.communicate(timeout=seconds + 300)
            assert w.returncode == 0, out.decode(errors="replace")[-4000:]
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    oracle.settle(s3_client(server))
    oracle.check(s3_client(server), res)
    oracle.check_snapshots(server, res)
    server.stop()
    passes = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    pairs, kinds = overlapping_pairs(passes)
    repaired = exastor("fsck", "--repair", "--json", data_dir=server.data_dir, check=False)
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    return {"seed": seed, "seconds": seconds, "live_cap": live_cap, "passes": len(passes), "interleavings": pairs, "by_kind": kinds,
            "acked_objects": len([k for k in oracle.acked if k not in oracle.deleted]),
            "acked_lost": res.acked_lost, "half_visible": res.half_visible, "violations": res.violations,
            "fsck_clean": json.loads(report.stdout)["clean"], "fsck_after_repair": repaired.stdout[-2000:],
            "traceback_in_server_log": "Traceback" in server.log_text(),
            # ERROR lines other than a compaction giving way to one the other process finished first
            "server_errors": [line for line in server.log_text().splitlines() if " ERROR " in line
                              and not re.search(r"not compacting segment (\d+): segment \1 missing", line)][:20]}


def test_services_in_two_processes_beside_a_live_server_lose_nothing(tmp_path):
    got = run_stress(tmp_path, seconds=20, seed=3)
    assert got["acked_lost"] == 0 and got["half_visible"] == 0 and not got["violations"], got
    assert got["fsck_clean"], got
    assert not got["traceback_in_server_log"] and not got["server_errors"], got
    assert got["acked_objects"] > 0 and got["interleavings"] > 10, got


if __name__ == "__main__":  # the long run: python tests/faults/test_concurrent_services.py SECONDS SEED [LIVE_CAP]
    import tempfile

    sys.path.insert(0, str(HERE.parent))
    work = Path(tempfile.mkdtemp(prefix="exastor-services-"))
    started = time.monotonic()
    result = run_stress(work, float(sys.argv[1]) if len(sys.argv) > 1 else 300, int(sys.argv[2]) if len(sys.argv) > 2
                        else 1, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
