"""Losing the metadata database: the server keeps verified copies of it on the drives, and
`exastor fsck --restore-meta` brings the newest good one back and rebuilds the index around it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import harness
import pytest
from botocore.exceptions import ClientError

from conftest import exastor, s3_client, start_server
from exastor.services import metabackup

BUCKET = "names"


def _drives(tmp_path: Path) -> list[Path]:
    return [tmp_path / f"d{i}" for i in range(3)]


def _serve(tmp_path: Path, journal: bool = True):
    args = [a for d in _drives(tmp_path) for a in ("--drive", str(d))]
    return start_server(tmp_path, *args, env={"EXASTOR_META_BACKUP_INTERVAL": "1",
                                              "EXASTOR_META_JOURNAL": "1" if journal else "0",
                                              "EXASTOR_SEGMENT_SIZE": str(1 << 20)})


def _wait_for_copy(drives: list[Path], after_ns: int, copies: int = 2) -> list[metabackup.Backup]:
    """The copies (one per drive it went to) of the first backup taken after ``after_ns``, once it is
    on ``copies`` drives (a backup is put on its drives one after the other: a look between two puts
    sees it on fewer) - or as found at the deadline, for the caller's assertion to report."""
    deadline = time.monotonic() + 90  # a copy a second once the database changed; a loaded machine is slower
    found: list[metabackup.Backup] = []
    while time.monotonic() < deadline:
        fresh = [b for b in metabackup.backups(drives) if b.taken_ns > after_ns]
        if fresh:
            newest = fresh[0].taken_ns
            found = [b for b in fresh if b.taken_ns == newest]
            if len(found) >= copies:
                return found
        time.sleep(0.2)
    if found:
        return found
    raise AssertionError("no metadata copy was taken")


@pytest.mark.parametrize("journal", [True, False], ids=["journaled", "copies-only"])
def test_restore_meta_brings_every_object_of_the_copy_back(tmp_path, journal):
    """With the journal (the default) the restore ends exactly where the lost database was; with
    copies alone it ends at the copy."""
    server = _serve(tmp_path, journal)
    drives = _drives(tmp_path)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        kept = {f"kept/{i}": os.urandom(300_000 * (i + 1)) for i in range(6)}  # several seals of 1 MiB segments
        kept["kept/dup"] = kept["kept/0"]  # deduplicated against another key
        for key, body in kept.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        s3.put_object(Bucket=BUCKET, Key="gone-before", Body=os.urandom(50_000))
        s3.delete_object(Bucket=BUCKET, Key="gone-before")
        mark = time.time_ns()
        # A change after the mark: a copy that began between the delete and the mark (which the wait
        # skips) leaves the database changed since, so another copy follows.
        s3.create_bucket(Bucket="tick")
        copies = _wait_for_copy(drives, mark)
        # After the copy: new objects (their names are in no copy; 3 MiB seal the segments that were open
        # when the copy was taken, so the copy's layout rows are stale) and a delete (the copy still
        # names that object).
        after = {f"after-copy/{i}": os.urandom(1 << 20) for i in range(3)}
        for key, body in after.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        s3.delete_object(Bucket=BUCKET, Key="kept/1")
    finally:
        server.stop()
    assert len({c.path.parent.parent for c in copies}) == 2, "a copy on m+1 = 2 of the 3 drives"
    status = json.loads(exastor("drive", "status", "--json", data_dir=server.data_dir).stdout)["metadata_copies"]
    assert status["newest_ns"] >= copies[0].taken_ns and len(status["newest_on_drives"]) == 2
    damaged = bytearray(copies[0].path.read_bytes())
    damaged[100] ^= 0x01  # the first copy is damaged
    copies[0].path.write_bytes(damaged)
    harness.damage_database(server.data_dir, random.Random(1))
    with pytest.raises(RuntimeError, match="fsck --restore-meta"):  # a clear refusal, not a traceback
        server.start()
    assert "Traceback" not in server.log_text()

    report = exastor("fsck", "--restore-meta", "--json", *[a for d in drives for a in ("--drive", str(d))],
                     data_dir=server.data_dir, check=False)
    result = json.loads(report.stdout)
    assert report.returncode == 0 and result["clean"], report.stdout + report.stderr
    assert result["restored_meta"] == str(copies[1].path), "the damaged copy was skipped for its twin"
    kept_aside = list((server.data_dir / "meta").glob("replaced-*/exastor.sqlite"))
    assert len(kept_aside) == 1, "the damaged database is moved aside, not deleted"

    server.start()
    try:
        s3 = s3_client(server)
        if journal:  # every acknowledged change after the copy is back: the new objects, the delete
            expected = {k: v for k, v in kept.items() if k != "kept/1"} | after
        else:  # kept/1 too: deleted after the copy, its chunks within gc_grace
            expected = kept
        for key, body in expected.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
        names = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
        assert names == set(expected), "journaled: as before the loss; copies only: as in the copy"
        assert result["journal_replayed"] > 0 if journal else result["journal_replayed"] == 0
        s3.put_object(Bucket=BUCKET, Key="new", Body=b"writes work after a restore")
    finally:
        server.stop()
    after = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(after.stdout)["clean"], after.stdout


def test_restore_meta_refuses_when_no_copy_verifies(tmp_path):
    server = _serve(tmp_path)
    drives = _drives(tmp_path)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="k", Body=b"v" * 1000)
        _wait_for_copy(drives, time.time_ns())
    finally:
        server.stop()
    for copy in metabackup.backups(drives):
        damaged = bytearray(copy.path.read_bytes())
        damaged[len(damaged) // 2] ^= 0x40
        copy.path.write_bytes(damaged)
    db = server.data_dir / "meta" / "exastor.sqlite"
    before = db.read_bytes()
    report = exastor("fsck", "--restore-meta", data_dir=server.data_dir, check=False)
    assert report.returncode == 2 and "no metadata copy on the drives verifies" in report.stderr, report.stderr
    assert db.read_bytes() == before, "the database in place is left alone"
    server.start()
    try:
        assert s3_client(server).get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v" * 1000
    except ClientError as exc:
        raise AssertionError(exc) from exc
    finally:
        server.stop()


def test_restore_meta_into_a_new_data_directory(tmp_path):
    """The device holding --data died with everything on it: a new, empty --data and the drives are
    enough (the drives named with --drive, as the database that listed them is gone)."""
    server = _serve(tmp_path)
    drives = _drives(tmp_path)
    bodies = {f"k{i}": os.urandom(200_000) for i in range(5)}
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        for key, body in bodies.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        _wait_for_copy(drives, time.time_ns())
    finally:
        server.stop()
    # The operator's backup of the master key, kept apart from the drives and --data (docs/security.md).
    key_backup = tmp_path / "vault" / "master.key"
    key_backup.parent.mkdir()
    shutil.copy(server.data_dir / "master.key", key_backup)
    shutil.rmtree(server.data_dir)
    drive_args = [a for d in drives for a in ("--drive", str(d))]
    report = exastor("fsck", "--restore-meta", *drive_args, data_dir=server.data_dir, check=False)
    # The copies on the drives hold the secrets sealed: the key does not come from them, and without it
    # the index cannot be rebuilt from the (encrypted) records: fsck stops and says what to do.
    assert report.returncode == 2, report.stdout + report.stderr
    assert "master.key is missing and the database's secrets are sealed under master key" in report.stderr
    assert "put the master key back and run `exastor fsck --restore-meta` again" in report.stderr
    with pytest.raises(RuntimeError, match="put that key back"):
        server.start()
    assert not (server.data_dir / "master.key").exists()
    key_command = f"cat {key_backup}"  # the KMS hook hands the key back
    env = {**os.environ, "EXASTOR_KEY_COMMAND": key_command}
    report = subprocess.run([sys.executable, "-m", "exastor.cli", "fsck", "--data", str(server.data_dir),
                             "--restore-meta", *drive_args], capture_output=True, text=True, timeout=300, env=env)
    assert report.returncode == 0 and "restored metadata copy taken" in report.stdout, report.stdout + report.stderr
    server.env["EXASTOR_KEY_COMMAND"] = key_command
    server.start()
    try:
        s3 = s3_client(server)
        for key, body in bodies.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
    finally:
        server.stop()


def test_a_commit_made_without_the_journal_gets_a_copy_at_once(tmp_path):
    """`exastor user add` beside a running server commits without the journal (it opens no drives):
    the server sees the gap and takes a copy within seconds, so a restore still loses nothing -
    the new user's keys work after the database is destroyed."""
    server = start_server(tmp_path, *[a for d in _drives(tmp_path) for a in ("--drive", str(d))],
                          env={"EXASTOR_META_BACKUP_INTERVAL": "3600"})  # no copy by the clock
    drives = _drives(tmp_path)
    try:
        s3_client(server).create_bucket(Bucket=BUCKET)
        mark = time.time_ns()
        exastor("user", "add", "late", "--access-key", "EXLATEUSER", "--secret-key", "late-secret-key-0123456789",
                data_dir=server.data_dir)
        copies = _wait_for_copy(drives, mark)  # bounded: fails after 30 s
        assert copies, "the gap was closed by a copy"
        s3_client(server).put_object(Bucket=BUCKET, Key="after", Body=b"journaled after the copy")
    finally:
        server.stop()
    harness.damage_database(server.data_dir, random.Random(2))
    report = exastor("fsck", "--restore-meta", "--json", *[a for d in drives for a in ("--drive", str(d))],
                     data_dir=server.data_dir, check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    server.start()
    try:
        late = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id="EXLATEUSER", aws_secret_access_key="late-secret-key-0123456789")
        assert s3_client(server).get_object(Bucket=BUCKET, Key="after")["Body"].read() == b"journaled after the copy"
        late.list_buckets()  # authenticates: the user came back
    finally:
        server.stop()
