"""Power cuts at the exact steps the load-driven power-cut scenario (harness.py ``power``) reaches too
rarely to judge: each test arms one named crash point (exastor/crashpoints.py) on drives in power-cut
recording mode (exastor/drives/faulty.py) and lets the server kill itself there (or kills it right after
the writes it acknowledged, where the step is a moment with no crash point of its own), cuts the power
(``power_cut``, ``drop``: every unsynced byte and every directory change no directory fsync covered
is lost) and checks what the step's fsync is for. Each one fails with that fsync removed
(tests/faults/fsync_mutation.py runs them on the mutated tree; docs/reliability.md lists which)."""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import ACCOUNT_KEY, SECRET_KEY, exastor, s3_client, start_server, unseal_as_before_sealing
from exastor.drives import open_drive, power_cut
from exastor.engine.drives import segment_name
from exastor.meta import journal as jr
from exastor.services import metabackup

BUCKET = "cut"


class Recorded:
    """Drive directories whose every change is journaled for ``power_cut``, and a crash-point file."""

    def __init__(self, tmp_path: Path, drives: int) -> None:
        self.drives = [(tmp_path / f"d{i}").resolve() for i in range(drives)]
        self.journal = tmp_path / "power-journal"
        self.faults = tmp_path / "faults.json"
        self.faults.write_text(json.dumps({str(d): {"record": str(self.journal)} for d in self.drives}))
        self.crash_file = tmp_path / "crash-points"
        self.crash_file.write_text("")
        self.env = {"EXASTOR_FAULTS": str(self.faults), "EXASTOR_CRASH_POINTS": str(self.crash_file),
                    "EXASTOR_CRASH_LOG": str(tmp_path / "crash-log")}
        self.crash_log = tmp_path / "crash-log"

    def args(self) -> list[str]:
        return [a for d in self.drives for a in ("--drive", str(d))]

    def arm(self, point: str) -> None:
        self.crash_file.write_text(f"{point}=1")

    def cut(self) -> None:
        """The power goes (every process of the server is already dead): rewind every drive."""
        self.crash_file.write_text("")
        power_cut(self.journal, random.Random(0), "drop")

    def hit(self, point: str) -> bool:
        return self.crash_log.exists() and point in self.crash_log.read_text().split()


def _segments(data: Path) -> dict[int, tuple[str, int]]:
    with sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True) as con:
        return {seg: (state, size) for seg, state, size in con.execute("SELECT id, state, size FROM segments")}


def _fsck(server) -> dict:  # noqa: ANN001
    return json.loads(exastor("fsck", "--json", data_dir=server.data_dir, check=False).stdout)


def _wait_dead(server) -> None:  # noqa: ANN001
    """The server killed its own process group at the crash point: wait for it, then release it."""
    assert server.proc is not None
    server.proc.wait(timeout=60)
    server.kill()


def test_a_segment_created_just_before_the_power_went_is_sealed_at_the_next_start(tmp_path):
    """The power goes right after an open segment's files were made (header written and fsynced,
    directory entry fsynced) and before any record: its replicas must keep their header, or the next
    start can neither seal the segment (no header to check) nor ever prove the files garbage (a file
    that does not name itself is never deleted) - it would stay open, and on the drives, for good."""
    rec = Recorded(tmp_path, 1)
    server = start_server(tmp_path, *rec.args(), env=rec.env)
    s3 = s3_client(server)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="before", Body=b"acknowledged before the cut")
    server.stop()  # its open segment sealed; the next PUT makes a new one
    rec.cut()
    rec.arm("segment.created")
    server.start()
    with pytest.raises(Exception):  # noqa: B017 - the connection drops: the server killed itself
        s3_client(server).put_object(Bucket=BUCKET, Key="during", Body=b"x" * 1000)
    _wait_dead(server)
    assert rec.hit("segment.created")
    new = [seg for seg, (state, _) in _segments(server.data_dir).items() if state == "open"]
    assert len(new) == 1, _segments(server.data_dir)
    rec.cut()
    server.start()
    try:
        assert s3_client(server).get_object(Bucket=BUCKET, Key="before")["Body"].read() == b"acknowledged before the cut"
        s3_client(server).put_object(Bucket=BUCKET, Key="after", Body=b"after")
    finally:
        server.stop()
    state, _ = _segments(server.data_dir)[new[0]]
    assert state in ("sealed", "deleted"), (f"segment {new[0]} left {state}: its replica lost its header "
                                            f"with the power\n{server.log_text()[-3000:]}")
    assert "could not be sealed" not in server.log_text()
    report = _fsck(server)
    assert report.get("clean", not report.get("problems")), report


def test_a_replica_cut_back_when_sealed_as_it_is_stays_cut_back_after_a_power_cut(tmp_path):
    """One drive (1+0): at start, the segment a crash left open is sealed as its own final form, cut
    back after its last record (the torn tail, a record only half written when the power went) and its
    size committed. That cut must be durable before the size is: a power cut right after the commit
    must not bring the torn bytes back past the size the database records for the sealed segment
    (bytes no record and no checksum covers, which nothing would ever remove)."""
    rec = Recorded(tmp_path, 1)
    server = start_server(tmp_path, *rec.args(), env=rec.env)
    s3 = s3_client(server)
    s3.create_bucket(Bucket=BUCKET)
    bodies = {f"k{i}": os.urandom(3000 + i) for i in range(5)}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    server.kill()
    rec.cut()
    open_segs = [seg for seg, (state, _) in _segments(server.data_dir).items() if state == "open"]
    assert len(open_segs) == 1
    replica = rec.drives[0] / segment_name(open_segs[0])
    intact = replica.stat().st_size
    with open(replica, "ab") as f:  # the power went in the middle of the next record: its first bytes made it
        f.write(os.urandom(700))
    rec.arm("seal.committed")
    with pytest.raises(RuntimeError):  # recovery seals it at start, and the server dies right after
        server.start(timeout=60)
    _wait_dead(server)
    assert rec.hit("seal.committed")
    assert _segments(server.data_dir)[open_segs[0]] == ("sealed", intact)
    rec.cut()
    assert replica.stat().st_size == intact, "the torn tail came back past the sealed size"
    server.start()
    try:
        for key, body in bodies.items():
            assert s3_client(server).get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    finally:
        server.stop()


def _secret_forms() -> list[bytes]:
    return [SECRET_KEY.encode(), ACCOUNT_KEY.encode(), base64.b64decode(ACCOUNT_KEY)]


def test_copies_and_journal_files_retired_for_holding_secrets_in_the_clear_stay_gone_after_a_power_cut(tmp_path):
    """A store from before sealing: its metadata copies and an old journal file hold secrets in the
    clear. The start that seals them takes a fresh copy and removes every older copy and journal
    generation; the power going right after must not bring any of them back."""
    rec = Recorded(tmp_path, 3)
    server = start_server(tmp_path, *rec.args(), env={"EXASTOR_ENCRYPT_AT_REST": "off",
                                                      "EXASTOR_META_BACKUP_INTERVAL": "1"})
    try:
        s3_client(server).create_bucket(Bucket=BUCKET)
        s3_client(server).put_object(Bucket=BUCKET, Key="k", Body=b"still here")
    finally:
        server.stop()
    # As the previous version left it: secrets in the clear in the database, in a copy on the drives
    # and in a journal file (a commit that wrote them), and no key file.
    db = unseal_as_before_sealing(server.data_dir)
    for old in metabackup.backups(rec.drives):
        old.path.unlink()
    clear_copies = metabackup.take(db, rec.drives[:2])
    old_journals = [d / name for d in rec.drives for _gen, name in jr.gens_on(open_drive(d))]
    assert old_journals
    statement = ("UPDATE users SET secret_key = ?", [SECRET_KEY], False)
    with open(old_journals[0], "ab") as f:  # past its last record: never replayed, but on the disk
        f.write(jr.encode_record(jr.COMMIT, 1, jr.new_record_id(), 0, time.time_ns(),
                                 jr.encode_statements([statement])))
    server.env.update(rec.env)  # from here on every drive change is recorded
    rec.arm("meta.copies_retired")
    with pytest.raises(RuntimeError):  # the start seals, copies, retires - and dies there
        server.start(timeout=60)
    _wait_dead(server)
    assert rec.hit("meta.copies_retired")
    assert not any(c.path.exists() for c in clear_copies) and not any(p.exists() for p in old_journals)
    rec.cut()
    came_back = [str(p) for d in rec.drives for p in d.rglob("*") if p.is_file()
                 and any(s in p.read_bytes() for s in _secret_forms())]
    assert not came_back, f"files holding secrets in the clear came back with the power cut: {came_back}"
    assert not any(p.exists() for p in old_journals), "journal generations the fresh copy retired came back"
    server.start()
    try:
        assert s3_client(server).get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"still here"
    finally:
        server.stop()


def test_objects_acknowledged_into_a_journal_file_created_after_the_last_copy_survive_a_power_cut_that_takes_the_database(
        tmp_path):
    """The start takes a base copy of the metadata database and moves the journal to a new generation;
    the first commit after it creates that generation's journal file. Objects acknowledged from then
    on live only in the journal until the next copy. The power goes (and the metadata database with
    it, its disk dying): the journal file's directory entry must have been made durable when it was
    created, or the file - and with it every acknowledged object it holds - is gone, and the restore
    installs the copy from before them. No directory fsync of the journal's folder happens between
    the file's creation and the cut here (the next copy, whose pruning fsyncs that folder too, is an
    hour away), so only the one at its creation stands behind it."""
    rec = Recorded(tmp_path, 1)
    server = start_server(tmp_path, *rec.args(), env={**rec.env, "EXASTOR_META_BACKUP_INTERVAL": "3600"})
    copies = metabackup.backups(rec.drives)
    assert len(copies) == 1 and copies[0].gen is not None, copies  # the base copy the start took
    bodies = {f"k{i}": os.urandom(2000 + i) for i in range(5)}
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)  # the first commit after the copy: it creates the journal file
        for key, body in bodies.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    finally:
        server.kill()
    journal_files = jr.gens_on(open_drive(rec.drives[0]))
    # The objects' commits went to the file of the copy's own generation, made after the copy.
    assert journal_files and journal_files[-1][0] == copies[0].gen, (journal_files, copies)
    assert metabackup.backups(rec.drives) == copies, "a copy was taken after the PUTs: nothing to judge"
    rec.cut()
    db = server.data_dir / "meta" / "exastor.sqlite"  # the --data disk died with the power
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    restored = exastor("fsck", "--restore-meta", "--json", *rec.args(), data_dir=server.data_dir, check=False)
    report = json.loads(restored.stdout) if restored.stdout.strip() else {}
    assert report.get("restored_meta"), restored.stderr[-3000:]
    server.start()
    try:
        s3 = s3_client(server)
        got = {}
        for key in bodies:
            try:
                got[key] = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except Exception as exc:  # noqa: BLE001 - collected: the assertion below names every lost one
                got[key] = repr(exc).encode()
        lost = [key for key, body in bodies.items() if got[key] != body]
        assert not lost, (f"acknowledged objects lost with the journal file the power cut took: {lost} "
                          f"(journal commits replayed: {report.get('journal_replayed')})")
    finally:
        server.stop()
