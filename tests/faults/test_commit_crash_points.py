"""kill -9 at each named crash point of a metadata commit (exastor/crashpoints.py): a PUT, a DELETE, an
UploadPart and a multipart complete, each once before its transaction commits (data durable) and once after it
committed but before the client was answered. The client never gets an answer; after a restart the
operation either did not happen at all or happened completely, exactly as the point says, and what
is there is byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from conftest import exastor, s3_client, start_server

BUCKET = "points"


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _exists(s3, key: str) -> bool:
    try:
        s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False


def _alive_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a worker that outlived the kill would keep serving)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry))
    return alive


def _kill_at(server: Any, points: Path, crash_log: Path, point: str, op: Callable[[], object],
             client_errors: tuple[type[BaseException], ...]) -> None:
    """Arm ``point``, run ``op`` (the server kills its own process group: no answer), check that the
    whole group died at that point, disarm, restart."""
    points.write_text(f"{point}=1")
    with pytest.raises(client_errors):
        op()
    server.proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _alive_in_group(server.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_in_group(server.proc.pid), f"{point}: the whole process group must die"
    assert crash_log.read_text().split()[-1] == point
    points.write_text("")
    server.start()


def test_kill9_at_each_metadata_commit_crash_point(tmp_path):
    drives = [a for i in range(3) for a in ("--drive", str(tmp_path / f"d{i}"))]
    points, crash_log = tmp_path / "crash-points", tmp_path / "crash-log"
    points.write_text("")
    server = start_server(tmp_path, *drives, env={
        "EXASTOR_CRASH_POINTS": str(points), "EXASTOR_CRASH_LOG": str(crash_log),
        "EXASTOR_SEGMENT_SIZE": str(1 << 20)})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket=BUCKET)
        kept = {}  # acknowledged objects that must survive everything below
        for i in range(4):
            body = os.urandom(200_000 + i)
            s3.put_object(Bucket=BUCKET, Key=f"kept{i}", Body=body)
            kept[f"kept{i}"] = _md5(body)
        victims = {}
        for name in ("del-before", "del-committed"):
            body = os.urandom(150_000)
            s3.put_object(Bucket=BUCKET, Key=name, Body=body)
            victims[name] = _md5(body)
        parts = [os.urandom(5 << 20), os.urandom(70_000)]
        uploads = {}
        for name in ("mp-before", "mp-committed"):
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=name)["UploadId"]
            etags = [s3.upload_part(Bucket=BUCKET, Key=name, UploadId=up, PartNumber=n + 1, Body=p)["ETag"]
                     for n, p in enumerate(parts)]
            uploads[name] = (up, {"Parts": [{"ETag": e, "PartNumber": n + 1} for n, e in enumerate(etags)]})
        put_bodies = {"put-before": os.urandom(300_000), "put-committed": os.urandom(300_000)}
        part_uploads = {name: s3.create_multipart_upload(Bucket=BUCKET, Key=name)["UploadId"]
                        for name in ("part-before", "part-committed")}
        part_bodies = {name: os.urandom(250_000) for name in part_uploads}

        def put(key: str) -> None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=put_bodies[key])

        def delete(key: str) -> None:
            s3.delete_object(Bucket=BUCKET, Key=key)

        def complete(key: str) -> None:
            up, mp = uploads[key]
            s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up, MultipartUpload=mp)

        def upload_part(key: str) -> str:
            return s3.upload_part(Bucket=BUCKET, Key=key, UploadId=part_uploads[key], PartNumber=1,
                                  Body=part_bodies[key])["ETag"]

        cases = [("put.before_commit", put, "put-before"), ("put.committed", put, "put-committed"),
                 ("delete.before_commit", delete, "del-before"), ("delete.committed", delete, "del-committed"),
                 ("part.before_commit", upload_part, "part-before"),
                 ("part.committed", upload_part, "part-committed"),
                 ("multipart.before_commit", complete, "mp-before"),
                 ("multipart.committed", complete, "mp-committed")]
        for point, op, key in cases:
            _kill_at(server, points, crash_log, point, lambda op=op, key=key: op(key), (BotoCoreError, ClientError))
            s3 = s3_client(server)
            committed = point.endswith(".committed")
            if op is put:
                assert _exists(s3, key) == committed, point
                if committed:
                    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    assert _md5(data) == _md5(put_bodies[key]), point
            elif op is upload_part:
                listed = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=part_uploads[key]).get("Parts", [])
                assert len(listed) == int(committed), point
                etag = listed[0]["ETag"] if committed else upload_part(key)  # not there: send it again
                assert etag.strip('"') == _md5(part_bodies[key]), point
                s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=part_uploads[key],
                                             MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
                data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                assert _md5(data) == _md5(part_bodies[key]), point
            elif op is delete:
                assert _exists(s3, key) == (not committed), point
                if not committed:
                    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    assert _md5(data) == victims[key], point
            else:
                open_uploads = {u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])}
                assert _exists(s3, key) == committed, point
                assert (uploads[key][0] in open_uploads) == (not committed), point
                if not committed:
                    complete(key)  # the upload survived whole: completing it again works
                data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                assert _md5(data) == _md5(b"".join(parts)), point
            for k, digest in kept.items():
                assert _md5(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()) == digest, (point, k)
    finally:
        server.stop()
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(report.stdout)["clean"], report.stdout


def test_kill9_at_each_blob_commit_crash_point(tmp_path):
    """The same for the Blob API's own commits: Put Block, Put Block List, Append Block."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.blob import BlobBlock, BlobServiceClient

    points, crash_log = tmp_path / "crash-points", tmp_path / "crash-log"
    points.write_text("")
    server = start_server(tmp_path, *[a for i in range(3) for a in ("--drive", str(tmp_path / f"d{i}"))],
                          env={"EXASTOR_CRASH_POINTS": str(points), "EXASTOR_CRASH_LOG": str(crash_log)})

    def blob(key: str) -> Any:
        svc = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
        return svc.get_blob_client("blobpoints", key)

    def uncommitted(key: str) -> list[int]:
        try:
            return [b.size for b in blob(key).get_block_list("uncommitted")[1]]
        except ResourceNotFoundError:  # no blob and no staged block: Azure says the blob is not there
            return []

    block, head, tail = os.urandom(200_000), os.urandom(100_000), os.urandom(50_000)
    try:
        BlobServiceClient.from_connection_string(server.connection_string).create_container("blobpoints")
        for key in ("list-before", "list-committed"):
            blob(key).stage_block("YmxvY2sx", block)
        for key in ("append-before", "append-committed"):
            blob(key).create_append_blob()
            blob(key).append_block(head)
        cases = [("block.before_commit", "block-before", lambda k: blob(k).stage_block("YmxvY2sx", block)),
                 ("block.committed", "block-committed", lambda k: blob(k).stage_block("YmxvY2sx", block)),
                 ("blocklist.before_commit", "list-before", lambda k: blob(k).commit_block_list([BlobBlock("YmxvY2sx")])),
                 ("blocklist.committed", "list-committed", lambda k: blob(k).commit_block_list([BlobBlock("YmxvY2sx")])),
                 ("append.before_commit", "append-before", lambda k: blob(k).append_block(tail)),
                 ("append.committed", "append-committed", lambda k: blob(k).append_block(tail))]
        for point, key, op in cases:
            _kill_at(server, points, crash_log, point, lambda op=op, key=key: op(key), (AzureError,))
            committed = point.endswith(".committed")
            if point.startswith("block."):
                assert uncommitted(key) == ([len(block)] if committed else []), point
            elif point.startswith("blocklist."):
                if not committed:
                    with pytest.raises(ResourceNotFoundError):
                        blob(key).get_blob_properties()
                    assert uncommitted(key) == [len(block)], point  # the staged block survived
                    blob(key).commit_block_list([BlobBlock("YmxvY2sx")])
                assert blob(key).download_blob().readall() == block, point
            else:
                assert blob(key).download_blob().readall() == (head + tail if committed else head), point
    finally:
        server.stop()
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(report.stdout)["clean"], report.stdout


def test_kill9_at_each_blob_property_snapshot_and_delete_crash_point(tmp_path):
    """Set Blob Metadata, Snapshot Blob, a soft Delete Blob and Undelete Blob: killed before their
    commit nothing changed; killed after it the change is whole. Soft-deleted and snapshot bytes stay
    readable through both (their chunk references move with the rows, in the same transaction)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient, RetentionPolicy

    points, crash_log = tmp_path / "crash-points", tmp_path / "crash-log"
    points.write_text("")
    server = start_server(tmp_path, *[a for i in range(3) for a in ("--drive", str(tmp_path / f"d{i}"))],
                          env={"EXASTOR_CRASH_POINTS": str(points), "EXASTOR_CRASH_LOG": str(crash_log)})

    def service() -> Any:
        return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)

    def blob(key: str) -> Any:
        return service().get_blob_client("blobstate", key)

    def listed(key: str, include: str) -> list[Any]:
        return [b for b in service().get_container_client("blobstate").list_blobs(name_starts_with=key,
                                                                                  include=[include])
                if b.name == key]

    bodies = {}
    try:
        service().set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=1))
        service().create_container("blobstate")
        for point in ("props", "snapshot", "blobdelete", "undelete"):
            for when in ("before", "committed"):
                key = f"{point}-{when}"
                bodies[key] = os.urandom(120_000)
                blob(key).upload_blob(bodies[key], metadata={"v": "old"})
                if point == "undelete":
                    blob(key).delete_blob()
        etags = {key: blob(key).get_blob_properties().etag for key in bodies if not key.startswith("undelete")}
        ops = {"props": lambda k: blob(k).set_blob_metadata({"v": "new"}),
               "snapshot": lambda k: blob(k).create_snapshot(),
               "blobdelete": lambda k: blob(k).delete_blob(),
               "undelete": lambda k: blob(k).undelete_blob()}
        for point, op in ops.items():
            for when in ("before", "committed"):
                key, committed = f"{point}-{when}", when == "committed"
                crash = f"{point}.before_commit" if not committed else f"{point}.committed"
                _kill_at(server, points, crash_log, crash, lambda op=op, key=key: op(key), (AzureError,))
                if point == "props":
                    props = blob(key).get_blob_properties()
                    assert props.metadata == {"v": "new" if committed else "old"}, crash
                    assert (props.etag != etags[key]) == committed, crash
                elif point == "snapshot":
                    snaps = [b for b in listed(key, "snapshots") if b.snapshot]
                    assert len(snaps) == int(committed), crash
                    if committed:
                        snap = service().get_blob_client("blobstate", key, snapshot=snaps[0].snapshot)
                        assert snap.download_blob().readall() == bodies[key], crash
                elif point == "blobdelete":
                    if committed:
                        with pytest.raises(ResourceNotFoundError):
                            blob(key).get_blob_properties()
                        assert [b.deleted for b in listed(key, "deleted")] == [True], crash
                        blob(key).undelete_blob()  # soft-deleted whole: its bytes come back
                    assert blob(key).get_blob_properties().etag == etags[key], crash
                else:
                    if not committed:
                        with pytest.raises(ResourceNotFoundError):
                            blob(key).get_blob_properties()
                        blob(key).undelete_blob()
                assert blob(key).download_blob().readall() == bodies[key], crash
        # Seal Blob commits through the same ``props`` points: sealed whole or not at all.
        for when in ("before", "committed"):
            key, crash = f"seal-{when}", f"props.{'before_commit' if when == 'before' else 'committed'}"
            blob(key).create_append_blob()
            blob(key).append_block(b"sealed bytes")
            _kill_at(server, points, crash_log, crash, lambda key=key: blob(key).seal_append_blob(), (AzureError,))
            assert blob(key).get_blob_properties().is_append_blob_sealed == (when == "committed"), crash
            assert blob(key).download_blob().readall() == b"sealed bytes", crash
    finally:
        server.stop()
    report = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert json.loads(report.stdout)["clean"], report.stdout
