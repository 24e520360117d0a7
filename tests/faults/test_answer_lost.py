"""A write whose answer was lost (the drive server killed or partitioned mid-request) makes that file
final - never written or fsynced again, as after a failed fsync - but it is no evidence against the
drive: the drive must not be marked failed.

Found by the network-namespace harness (tests/cluster/netns_long.py, seed 14): after a drive server
was killed with -9 and restarted, a gateway's fsync of a segment replica it had been appending to
when the server died was refused locally ("an earlier write ... failed") with EIO, and the gateway
marked the drive *failed* in the metadata for every gateway. Two such drives and one more host down
left objects unreadable (503) though no disk had failed."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from drive_servers import DriveServerProcess, cluster_key
from exastor.datadir.opening import open_metadata
from exastor.drives import AnswerLost, DriveUnreachable, FsyncFailed
from exastor.engine.drives import DriveSet


def test_a_write_that_lost_its_answer_is_final_for_the_file_but_never_fails_the_drive(tmp_path, monkeypatch):
    key = cluster_key(tmp_path)
    monkeypatch.setenv("EXASTOR_CLUSTER_KEY_FILE", str(key))
    servers = [DriveServerProcess({f"d{n}": tmp_path / f"host{n}" / f"d{n}"}, key, tmp_path / f"ds{n}.log")
               for n in (1, 2, 3)]
    for n, ds in enumerate(servers, 1):
        ds.host = f"127.0.0.{n}"
    meta = None
    try:
        for ds in servers:
            ds.start()
        meta = open_metadata(tmp_path / "data")
        drives = DriveSet(meta, [ds.url(f"d{n}") for n, ds in enumerate(servers, 1)], ec="2+1",
                          base=tmp_path / "data")
        victim = next(d for d in drives.all if str(d.path) == servers[0].url("d1"))
        victim.io.create("segments/answer-lost.log", b"first")
        servers[0].kill()                      # -9: the next append gets no answer
        with pytest.raises(DriveUnreachable):
            victim.io.append("segments/answer-lost.log", 5, b"second")
        servers[0].start()                     # back, same address: the drive is fine
        assert victim.io.probe()
        with pytest.raises(FsyncFailed) as refused:   # still final for that file: never fsynced again
            victim.io.fsync("segments/answer-lost.log")
        assert isinstance(refused.value, AnswerLost) and refused.value.errno == errno.EIO
        drives.failed_io(victim.id, refused.value)    # what the segment writer does with it
        state = sqlite3.connect(tmp_path / "data" / "meta" / "exastor.sqlite").execute(
            "SELECT state FROM drives WHERE id = ?", (victim.id,)).fetchone()[0]
        assert state == "active", "a lost answer is unavailability, never a failed drive"
    finally:
        if meta is not None:
            meta.close()
        for ds in servers:
            ds.stop()
