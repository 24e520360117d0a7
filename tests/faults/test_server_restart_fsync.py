"""A drive server restarted between a write and its fsync: the fsync fails, final (the writes may have
died with the old process's page cache), so the commits that need those bytes fail (503) and the
replica is never written again - but the drive is healthy and must stay ``active``. Only an EIO from
the disk's own fsync marks a drive failed (tests/faults/test_fsync_final.py; the last test here
checks it through a drive server too).

The availability bug (issue 14, found by the network-namespace harness): the server refused such an
fsync with a plain EIO, the gateway took it for a broken disk and marked the drive failed for every
gateway; a few restarts and m hosts down then left objects unreadable (503) though no disk had failed."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import blake3
import pytest

from drive_servers import DriveServerProcess, cluster_key
from exastor import errors
from exastor.datadir.opening import open_metadata
from exastor.drives import FsyncFailed, ServerRestarted
from exastor.engine.drives import DriveSet, load_layout, segment_name
from exastor.engine.record import CODEC_RAW, encode
from exastor.engine.segments import SegmentLog


def _record(data: bytes) -> bytes:
    return encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data


def _state(data: Path, drive: int) -> str:
    con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return str(con.execute("SELECT state FROM drives WHERE id = ?", (drive,)).fetchone()[0])
    finally:
        con.close()


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    """Three drive servers on three loopback addresses (three hosts), fault rules readable by them."""
    key = cluster_key(tmp_path)
    monkeypatch.setenv("EXASTOR_CLUSTER_KEY_FILE", str(key))
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    servers = [DriveServerProcess({f"d{n}": tmp_path / f"host{n}" / f"d{n}"}, key, tmp_path / f"ds{n}.log",
                                  env={"EXASTOR_FAULTS": str(rules)}) for n in (1, 2, 3)]
    for n, ds in enumerate(servers, 1):
        ds.host = f"127.0.0.{n}"
    try:
        for ds in servers:
            ds.start()
        yield servers, rules
    finally:
        for ds in servers:
            ds.stop()


def _served_by(servers: list[DriveServerProcess], url: str) -> DriveServerProcess:
    return next(ds for ds in servers for name in ds.drives if ds.url(name) == url)


def test_a_server_restart_before_the_fsync_fails_those_commits_but_never_the_drive(tmp_path, hosts):
    servers, _rules = hosts
    data = tmp_path / "data"
    meta = open_metadata(data)
    drives = DriveSet(meta, [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)], ec="2+1", base=data)
    log = SegmentLog(drives, meta, max_size=8 << 20)
    try:
        a = _record(os.urandom(300_000))
        seg, off_a = log.append(a)
        log.sync(seg, off_a + len(a))                # a is durable on every replica: a commit may point at it
        b = _record(os.urandom(400_000))
        seg_b, off_b = log.append(b)                 # b reached both replicas' servers, unsynced
        assert seg_b == seg
        victim = drives.get(load_layout(meta, seg).replicas[0])
        server = _served_by(servers, str(victim.path))
        server.kill()                                # kill -9 after the write, before its fsync
        server.start()                               # back at once, same address, same disk
        with pytest.raises(errors.Unavailable):      # b's commit fails (503): its bytes may be lost there
            log.sync(seg, off_b + len(b))
        drives.flush_reports()
        assert _state(data, victim.id) == "active", "a restarted drive server is not a failed disk"
        assert drives.get(victim.id).state == "active", "nor in this process's view"
        with pytest.raises(FsyncFailed) as refused:  # final for the file: never fsynced again ...
            victim.io.fsync(segment_name(seg))
        assert isinstance(refused.value, ServerRestarted), refused.value  # ... and said why
        log.sync(seg, off_a + len(a))                # what was durable before stays durable
        c = _record(os.urandom(200_000))
        seg_c, off_c = log.append(c)                 # the store goes on: a new segment, any healthy drive
        assert seg_c != seg
        log.sync(seg_c, off_c + len(c))
        log.wait_sealed()
        assert bytes(log.pread(seg, off_a, len(a))) == a, "the abandoned segment sealed with a in it"
        assert bytes(log.pread(seg_c, off_c, len(c))) == c
    finally:
        log.close()
        meta.close()


def test_an_eio_from_the_disks_fsync_through_a_drive_server_still_fails_the_drive(tmp_path, hosts):
    servers, rules = hosts
    data = tmp_path / "data"
    meta = open_metadata(data)
    drives = DriveSet(meta, [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)], ec="2+1", base=data)
    log = SegmentLog(drives, meta, max_size=8 << 20)
    try:
        a = _record(os.urandom(100_000))
        seg, off_a = log.append(a)
        victim = drives.get(load_layout(meta, seg).replicas[0])
        server = _served_by(servers, str(victim.path))
        label = str(next(iter(server.drives.values())))  # the server's FaultyDrive label: the directory
        rules.write_text(json.dumps({label: {"eio_fsync": True}}))
        with pytest.raises(errors.Unavailable):
            log.sync(seg, off_a + len(a))
        with pytest.raises(FsyncFailed) as refused:
            victim.io.fsync(segment_name(seg))
        assert not isinstance(refused.value, ServerRestarted)
        drives.flush_reports()
        assert _state(data, victim.id) == "failed", "a disk whose fsync failed is failed"
    finally:
        log.close()
        meta.close()
