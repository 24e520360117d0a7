"""A process out of descriptors or memory (EMFILE, ENFILE, ENOMEM...) is no fault of its drives: no
drive is recorded failed or offline, no shard bad, and a read that hits it is a 503 (Unavailable)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random

import pytest

from conftest import put_bodies
from exastor import errors
from exastor.datadir.opening import open_namespace
from exastor.drives import identity as drive_identity
from exastor.engine.drives import DriveSet, load_layout
from exastor.namespace.operations import SystemGrant

ADMIN = SystemGrant("admin")


def _store(tmp_path, monkeypatch):
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    monkeypatch.setenv("EXASTOR_FAULTS", str(rules))
    drives = [str(tmp_path / f"d{i}") for i in range(4)]
    ns = open_namespace(tmp_path / "data", segment_size=1 << 20, drives=drives, ec="2+2")
    return ns, rules


def _fill(ns, count: int = 10) -> dict[str, bytes]:
    rng = random.Random(7)
    bodies = {f"k{i}": rng.randbytes(rng.randint(1, 300_000)) for i in range(count)}
    put_bodies(ns, bodies)
    return bodies


def _read(ns, key: str) -> bytes:
    async def main() -> bytes:
        obj = ns.get_object(ADMIN, "bkt", key)
        return b"".join([bytes(p) async for p in ns.read(ADMIN, obj)])

    return asyncio.run(main())


def _rows(ns) -> dict[int, tuple[str, str, int]]:
    return {i: (state, reason, changed) for i, _path, state, reason, changed in
            ns.meta.runner.read(lambda cur: cur.execute("SELECT id, path, state, reason, changed_ns FROM drives")
                                .fetchall())}


def _inject(rules, label: str, rule: dict) -> None:
    rules.write_text(json.dumps({label: rule} if rule else {}))
    st = os.stat(rules)
    os.utime(rules, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # re-read: its mtime changed


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOMEM])
def test_a_process_shortage_never_marks_a_drive_failed(tmp_path, monkeypatch, code):
    ns, _rules_file = _store(tmp_path, monkeypatch)
    try:
        drives: DriveSet = ns.chunks.log.drives
        before = _rows(ns)
        drives.failed_io(2, OSError(code, os.strerror(code)))
        drives.failed_io(1, OSError(code, os.strerror(code)), now=False)
        drives.flush_reports()
        assert _rows(ns) == before
        assert drives.get(2).state == "active" and drives.get(1).state == "active"
        drives.failed_io(3, OSError(errno.EIO, "the drive is bad"))  # what a broken drive says: failed
        assert _rows(ns)[3][0] == "failed"
    finally:
        ns.close()


def test_emfile_on_a_drive_is_a_503_and_changes_nothing_in_the_database(tmp_path, monkeypatch):
    ns, rules = _store(tmp_path, monkeypatch)
    try:
        bodies = _fill(ns)
        log = ns.chunks.log
        log.wait_sealed()
        drives: DriveSet = log.drives
        # A drive that reads must reach: one holding a data shard (not parity) of a sealed stripe.
        sealed = ns.meta.runner.read(lambda cur: [int(r[0]) for r in cur.execute(
            "SELECT id FROM segments WHERE state = 'sealed'")])
        on_read_path = {row.drive for seg in sealed for row in load_layout(ns.meta, seg).shards if row.idx < 2}
        victim = drives.get(min(on_read_path))
        before = _rows(ns)
        _inject(rules, victim.io.label, {"errno": "EMFILE"})
        unavailable = 0
        for key, body in bodies.items():
            try:
                assert _read(ns, key) == body
            except errors.Unavailable:
                unavailable += 1
        assert unavailable >= 1  # the reads that reached the victim
        drives.flush_reports()
        assert _rows(ns) == before  # never failed, never offline
        bad = ns.meta.runner.read(lambda cur: cur.execute("SELECT COUNT(*) FROM shards WHERE state = 'bad'")
                                  .fetchone()[0])
        assert bad == 0  # nothing queued for repair

        # The identity check failing with EMFILE: unreachable from this process only.
        with pytest.raises(drive_identity.Unidentified) as why:
            drive_identity.verify(victim.io, drives.store_id, victim.id)
        assert why.value.unreachable
        drives.refresh()
        assert _rows(ns) == before
        assert drives.get(victim.id).state == "offline"  # this process's view only
        _inject(rules, victim.io.label, {})
        drives.refresh()
        assert drives.get(victim.id).state == "active"
        assert _rows(ns) == before  # no "back online" either: it never went offline for anyone
        for key, body in bodies.items():
            assert _read(ns, key) == body
    finally:
        ns.close()


def test_scrub_short_of_descriptors_marks_no_shard_bad_and_no_drive_failed(tmp_path, monkeypatch):
    from exastor.services.scrub import Scrubber

    ns, rules = _store(tmp_path, monkeypatch)
    try:
        _fill(ns)
        log = ns.chunks.log
        log.wait_sealed()
        victim = next(d for d in log.drives.all if str(d.path).endswith("d2"))
        before = _rows(ns)
        _inject(rules, victim.io.label, {"errno": "EMFILE"})
        monkeypatch.setattr(log.drives, "refresh", lambda: None)  # keep drive 2 in this view: its shards are read
        res = Scrubber(log).run_once()
        assert res.skipped >= 1 and res.bad_shards == [] and res.bad_copies == []
        log.drives.flush_reports()
        assert _rows(ns) == before
        bad = ns.meta.runner.read(lambda cur: cur.execute("SELECT COUNT(*) FROM shards WHERE state = 'bad'")
                                  .fetchone()[0])
        assert bad == 0
    finally:
        ns.close()
