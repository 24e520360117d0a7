"""Drives are known by their identity files, never guessed from a path: a drive whose directory or
identity is missing or another's is offline - never written, repaired into or swept, never re-created -
and what lives only there is unavailable (503), not lost, until it returns. Each scenario is what an
operator would do to a running store, with a real server and real clients."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import exastor, s3_client, start_server

BUCKET = "drives"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (size, mtime_ns) - what 'untouched' is checked against."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _status(server) -> dict:
    return json.loads(exastor("drive", "status", "--json", data_dir=server.data_dir).stdout)


def _blob(server):
    from azure.storage.blob import BlobServiceClient

    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


def _put_all(s3, bodies: dict[str, bytes]) -> None:
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def _check_all(s3, bodies: dict[str, bytes]) -> None:
    for key, body in bodies.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key


def _assert_503(call, code: str = "ServiceUnavailable") -> None:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.value.response
    assert err.value.response["Error"]["Code"] == code


def _serve(tmp_path: Path, n: int, bodies: dict[str, bytes], env: dict[str, str], *, kill: bool = False):
    """A server on ``n`` drives (2+1, 1 MiB segments) holding ``bodies``, then stopped (or killed)."""
    drives = [tmp_path / f"d{i}" for i in range(n)]
    args = [a for d in drives for a in ("--drive", str(d))] + ["--ec", "2+1"]
    server = start_server(tmp_path, *args, env={"EXASTOR_SEGMENT_SIZE": str(1 << 20), **env})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        _put_all(s3, bodies)
    finally:
        server.kill() if kill else server.stop()
    return server, drives


def _fsck_clean(server) -> None:
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(report.stdout)["clean"], report.stdout


def test_a_drive_unmounted_at_start_is_offline_its_data_unavailable_never_deleted(tmp_path):
    """The issue's repro: one drive, acknowledged PUTs, kill -9, start with the drive's directory gone
    (an unmounted disk), stop, mount it back, start: every object is there, byte for byte."""
    from azure.core.exceptions import HttpResponseError

    server = start_server(tmp_path)
    drive = server.data_dir / "drive0"
    bodies = {f"k{i}": os.urandom(50_000 * (i + 1)) for i in range(5)}
    s3 = s3_client(server)
    s3.create_bucket(Bucket=BUCKET)
    _put_all(s3, bodies)
    server.kill()
    open_files = sorted(p.name for p in (drive / "segments").iterdir())
    assert open_files, "the acknowledged bytes are in an open segment"
    away = tmp_path / "unmounted"
    drive.rename(away)

    server.start(degraded=True)
    try:
        s3 = s3_client(server, retry=False)
        for key in bodies:
            _assert_503(lambda key=key: s3.get_object(Bucket=BUCKET, Key=key))
        with pytest.raises(HttpResponseError) as busy:
            _blob(server).get_blob_client(BUCKET, "k0").download_blob().readall()
        assert busy.value.status_code == 503 and busy.value.error_code == "ServerBusy"
        _assert_503(lambda: s3.put_object(Bucket=BUCKET, Key="new", Body=b"x"))
        status = _status(server)
        assert [d["id"] for d in status["offline"]] == [0]
        assert status["offline"][0]["unavailable_segments"], status
        text = exastor("drive", "status", data_dir=server.data_dir).stdout
        assert "OFFLINE" in text and "Bring it back" in text and "unavailable" in text, text
        assert not drive.exists(), "the server never re-creates a drive's directory"
    finally:
        server.stop()
    assert not drive.exists()

    away.rename(drive)  # mounted back
    assert sorted(p.name for p in (drive / "segments").iterdir()) == open_files, "nothing was deleted"
    server.start()
    try:
        _check_all(s3_client(server), bodies)
        assert _status(server)["offline"] == []
    finally:
        server.stop()
    _fsck_clean(server)
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


def test_swapped_drives_are_offline_and_untouched_until_put_back(tmp_path):
    bodies = {f"s{i}": os.urandom(300_000) for i in range(8)}
    server, drives = _serve(tmp_path, 3, bodies, {})  # 2+1 stripes on the three drives
    drives[0].rename(tmp_path / "swap")
    drives[1].rename(drives[0])
    (tmp_path / "swap").rename(drives[1])
    before = {d.name: _tree(d) for d in drives[:2]}

    server.start(degraded=True)
    try:
        s3 = s3_client(server, retry=False)
        status = _status(server)
        reasons = {d["id"]: d["reason"] for d in status["offline"]}
        assert set(reasons) == {0, 1} and "drives swapped" in reasons[0], status
        unavailable = 0
        for key, body in bodies.items():
            # In a 2+1 stripe with two of its drives offline: unavailable (503), never lost or wrong. (What
            # an open segment held may still be readable from its replica on the one drive left.)
            try:
                assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503, exc.response
                assert exc.response["Error"]["Code"] == "ServiceUnavailable"
                unavailable += 1
        assert unavailable, "every object was readable with two of three drives offline?"
        _assert_503(lambda: s3.put_object(Bucket=BUCKET, Key="new", Body=b"x"))
    finally:
        server.stop()
    assert {d.name: _tree(d) for d in drives[:2]} == before, "an offline drive is neither written nor swept"

    drives[0].rename(tmp_path / "swap")
    drives[1].rename(drives[0])
    (tmp_path / "swap").rename(drives[1])
    server.start()
    try:
        _check_all(s3_client(server), bodies)
    finally:
        server.stop()
    _fsck_clean(server)


def test_a_copied_data_directory_never_touches_the_originals_files(tmp_path):
    """`cp -a data4 data6` and run both: each is a store of its own drives (drive paths inside the data
    directory are stored relative to it), neither writes, sweeps or fails the other's files."""
    original = start_server(tmp_path / "s4")
    first = {f"a{i}": os.urandom(100_000) for i in range(4)}
    try:
        s3 = s3_client(original)
        s3.create_bucket(Bucket=BUCKET)
        _put_all(s3, first)
    finally:
        original.kill()  # an open segment in the copy too
    (tmp_path / "s6").mkdir()
    shutil.copytree(original.data_dir, tmp_path / "s6" / "data", symlinks=True)
    before = _tree(original.data_dir / "drive0")

    copy = start_server(tmp_path / "s6")
    try:
        s3 = s3_client(copy)
        _check_all(s3, first)
        _put_all(s3, {"copy-only": b"c" * 200_000})
    finally:
        copy.stop()
    assert _tree(original.data_dir / "drive0") == before, "the copy wrote into the original's drive"

    original.start()
    copy.start()
    try:
        s4, s6 = s3_client(original), s3_client(copy)
        _put_all(s4, {"original-only": b"o" * 200_000})
        _put_all(s6, {"copy-too": b"t" * 200_000})
        _check_all(s4, {**first, "original-only": b"o" * 200_000})
        _check_all(s6, {**first, "copy-only": b"c" * 200_000, "copy-too": b"t" * 200_000})
        for client, absent in ((s4, "copy-only"), (s6, "original-only")):
            with pytest.raises(ClientError):
                client.head_object(Bucket=BUCKET, Key=absent)
        assert _status(original)["offline"] == [] and _status(copy)["offline"] == []
    finally:
        original.stop()
        copy.stop()
    _fsck_clean(original)
    _fsck_clean(copy)
    for server in (original, copy):
        assert "Traceback" not in server.log_text() and "failed" not in json.dumps(_status(server)["drives"])


def test_a_read_only_drive_serves_reads_takes_no_writes_and_is_never_swept(tmp_path):
    rules = tmp_path / "faults.json"
    rules.write_text("{}")
    bodies = {f"r{i}": os.urandom(250_000) for i in range(6)}
    # killed: an open segment is left, maybe on the drive that now goes read-only
    server, drives = _serve(tmp_path, 4, bodies, {"EXASTOR_FAULTS": str(rules)}, kill=True)
    rules.write_text(json.dumps({str(drives[1]): {"readonly": True}}))
    before = _tree(drives[1])
    server.start()
    try:
        s3 = s3_client(server)
        _check_all(s3, bodies)
        more = {f"m{i}": os.urandom(250_000) for i in range(6)}
        _put_all(s3, more)  # routed around the read-only drive
        _check_all(s3, {**bodies, **more})
    finally:
        server.stop()
    after = _tree(drives[1])
    assert set(after) <= set(before) | {"exastor-drive.json"}, "nothing new was written to the read-only drive"
    assert all(name in after for name in before), "nothing was deleted from it either"
    server.start()
    try:
        _check_all(s3_client(server), {**bodies, **more})
    finally:
        server.stop()


def test_a_drive_that_returns_after_its_data_was_repaired_elsewhere(tmp_path):
    """The drive was offline long enough for its shards to be rebuilt elsewhere; when it comes back,
    the copies the database proves superseded are removed and everything else on it stays: the live
    shards written after it returned, and a file of a segment the database does not know."""
    first = {f"a{i}": os.urandom(300_000) for i in range(10)}
    server, drives = _serve(tmp_path, 4, first, {"EXASTOR_OFFLINE_REPAIR_AFTER": "0",
                                                  "EXASTOR_REPAIR_INTERVAL": "0.5", "EXASTOR_GC_INTERVAL": "1"})
    db = server.data_dir / "meta" / "exastor.sqlite"

    def shards_on(drive: int) -> int:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT COUNT(*) FROM shards WHERE drive = ?", (drive,)).fetchone()[0]

    stale = sorted(p.name for p in (drives[3] / "shards").iterdir())
    assert stale and shards_on(3) == len(stale)
    drives[3].rename(tmp_path / "away")
    server.start()
    try:
        deadline = time.monotonic() + 60
        while shards_on(3) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert shards_on(3) == 0, "the offline drive's shards were not rebuilt elsewhere"
        _check_all(s3_client(server), first)
    finally:
        server.stop()

    (tmp_path / "away").rename(drives[3])
    stranger = drives[3] / "shards" / "seg-00000000000f4240.s000.g00000000000f4240"  # a segment nobody knows
    stranger.write_bytes(b"not this store's business")
    server.start()
    try:
        assert _status(server)["offline"] == []
        left = {p.name for p in (drives[3] / "shards").iterdir()}
        assert not left & set(stale), "superseded copies are garbage by the database: removed"
        assert stranger.exists(), "a file the database knows nothing about is not proven garbage"
        s3 = s3_client(server)
        second = {f"b{i}": os.urandom(300_000) for i in range(10)}
        _put_all(s3, second)
    finally:
        server.stop()
    live = {p.name for p in (drives[3] / "shards").iterdir()} - {stranger.name}
    assert live and shards_on(3) == len(live), "the returned drive takes new shards"
    server.start()
    try:
        _check_all(s3_client(server), {**first, **second})
    finally:
        server.stop()
    assert live <= {p.name for p in (drives[3] / "shards").iterdir()}, "live shards are kept"
    _fsck_clean(server)
