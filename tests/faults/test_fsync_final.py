"""A failed write or fsync is final (PostgreSQL's fsyncgate): every commit that needs bytes the failure
may have lost fails with the protocol's 503, never a 200; the replica is never appended to or fsynced
again; the segment rolls over and the rest of the store keeps serving."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import blake3
import pytest
from botocore.exceptions import ClientError

from conftest import s3_client, start_server, wait_until
from exastor import errors
from exastor.datadir.opening import open_metadata
from exastor.engine.drives import DriveSet, load_layout, segment_name
from exastor.engine.record import CODEC_RAW, encode
from exastor.engine.segments import SegmentLog


def _record(data: bytes) -> bytes:
    return encode(blake3.blake3(data).digest(), CODEC_RAW, len(data), data) + data


def _rules(path: Path, rules: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rules))
    os.replace(tmp, path)


def test_a_failed_fsync_at_rollover_fails_every_commit_that_needs_those_bytes(tmp_path, monkeypatch):
    """The rollover fsyncs the full segment's replicas; an EIO there used to be swallowed, and a later
    ``sync`` of that segment returned normally: PUTs acknowledged on bytes that may be gone."""
    rules = tmp_path / "faults.json"
    _rules(rules, {})
    monkeypatch.setenv("EXASTOR_FAULTS", str(rules))
    meta = open_metadata(tmp_path / "data")
    drives = DriveSet(meta, [tmp_path / f"d{i}" for i in range(3)], ec="2+1", base=tmp_path / "data")
    log = SegmentLog(drives, meta, max_size=1 << 20)
    try:
        a, b = _record(os.urandom(500_000)), _record(os.urandom(600_000))
        seg, off_a = log.append(a)
        seg_b, off_b = log.append(b)  # still the same segment: it was under max_size when b arrived
        assert seg_b == seg
        end_b = off_b + len(b)
        victim = drives.get(load_layout(meta, seg).replicas[0])
        name = segment_name(seg)
        _rules(rules, {victim.io.label: {"eio_fsync": True}})
        log.append(_record(os.urandom(1000)))  # the segment is full: rollover fsyncs it, and that fails
        assert log.open_segment != seg
        attempts = victim.io.calls[("fsync", name)]
        with pytest.raises(errors.Unavailable):
            log.sync(seg, end_b)              # the commit of b fails: its bytes may be lost on the victim
        with pytest.raises(errors.Unavailable):
            log.sync(seg, off_a + len(a))     # so does a's: it was not durable before the failure either
        _rules(rules, {})                     # the drive "recovers": the failure stays final all the same
        with pytest.raises(errors.Unavailable):
            log.sync(seg, end_b)
        seg2 = log.open_segment
        assert victim.id not in load_layout(meta, seg2).replicas, "the failed drive takes no new segment"
    finally:
        log.close()
    assert victim.io.calls[("fsync", name)] == attempts, "the failed fsync was never retried on that file"
    assert victim.io.calls[("append", name)] == 2, "nothing was appended to the failed replica after the failure"
    state = sqlite3.connect(tmp_path / "data" / "meta" / "exastor.sqlite").execute(
        "SELECT state FROM drives WHERE id = ?", (victim.id,)).fetchone()[0]
    assert state == "failed"


def test_a_failed_fsync_fails_the_put_with_503_on_both_protocols_and_the_store_goes_on(tmp_path):
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient

    rules = tmp_path / "faults.json"
    _rules(rules, {})
    drives = [tmp_path / f"d{i}" for i in range(4)]
    server = start_server(tmp_path, *[a for d in drives for a in ("--drive", str(d))], "--ec", "2+1",
                          "--workers", "1",
                          env={"EXASTOR_FAULTS": str(rules), "EXASTOR_SEGMENT_SIZE": str(8 << 20)})
    db = server.data_dir / "meta" / "exastor.sqlite"

    def open_replicas() -> list[str]:
        """The healthy drives under the segment the next write goes to (the newest open one): the
        segment an earlier failure left open sits on a failed drive that no write touches."""
        with sqlite3.connect(db) as con:
            rows = con.execute("SELECT d.path FROM replicas r JOIN segments s ON s.id = r.segment "
                               "JOIN drives d ON d.id = r.drive WHERE s.state = 'open' AND d.state = 'active' "
                               "AND s.id = (SELECT MAX(id) FROM segments WHERE state = 'open') "
                               "ORDER BY d.id").fetchall()
        return [r[0] for r in rows]

    try:
        s3 = s3_client(server, retry=False)
        s3.create_bucket(Bucket="fsync")
        s3.put_object(Bucket="fsync", Key="before", Body=b"x" * 100_000)
        _rules(rules, {open_replicas()[0]: {"eio_fsync": True}})
        with pytest.raises(ClientError) as failed:
            s3.put_object(Bucket="fsync", Key="lost", Body=os.urandom(200_000))
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert failed.value.response["Error"]["Code"] == "ServiceUnavailable"
        s3.put_object(Bucket="fsync", Key="after", Body=b"y" * 100_000)  # a new segment on healthy drives
        # The failed segment is sealed in the background (lease, fence, shards, commit): let that finish
        # first, or its commit's journal write meets the next fault and fails the drive before the upload.
        def open_segments() -> int:
            with sqlite3.connect(db) as con:
                return int(con.execute("SELECT COUNT(*) FROM segments WHERE state = 'open'").fetchone()[0])

        wait_until(lambda: open_segments() <= 1, "the segment with the failed replica to be sealed")
        blob = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
        _rules(rules, {p: {"eio_fsync": True} for p in open_replicas()[:1]})
        with pytest.raises(HttpResponseError) as busy:
            blob.get_blob_client("fsync", "lost").upload_blob(os.urandom(200_000))
        assert busy.value.status_code == 503 and busy.value.error_code == "ServerBusy"
        _rules(rules, {})
        assert s3.get_object(Bucket="fsync", Key="before")["Body"].read() == b"x" * 100_000
        assert s3.get_object(Bucket="fsync", Key="after")["Body"].read() == b"y" * 100_000
        with pytest.raises(ClientError):
            s3.head_object(Bucket="fsync", Key="lost")  # never acknowledged, never visible
    finally:
        server.stop()
    server.start()
    try:
        s3 = s3_client(server)
        assert s3.get_object(Bucket="fsync", Key="before")["Body"].read() == b"x" * 100_000
        assert s3.get_object(Bucket="fsync", Key="after")["Body"].read() == b"y" * 100_000
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
