"""Garbage collection and fsck against a real server: space comes back, nothing live is lost."""

from __future__ import annotations

import json
import os

import pytest

from conftest import exastor, s3_client, sqlite_only, start_server


def test_delete_reclaims_space_and_keeps_live_objects(tmp_path):
    server = start_server(tmp_path, env={"EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
                                         "EXASTOR_SEGMENT_SIZE": str(2 << 20)})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="gc-bkt")
        bodies = {f"o{i}": os.urandom(600_000) for i in range(30)}
        for key, body in bodies.items():
            s3.put_object(Bucket="gc-bkt", Key=key, Body=body)
        before = json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)
        for i in range(25):
            s3.delete_object(Bucket="gc-bkt", Key=f"o{i}")
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)
            if after["segment_bytes"] < before["segment_bytes"] * 0.5:
                break
            time.sleep(0.5)
        assert after["segment_bytes"] < before["segment_bytes"] * 0.5, (before, after)
        assert after["objects"] == 5
        for i in range(25, 30):
            assert s3.get_object(Bucket="gc-bkt", Key=f"o{i}")["Body"].read() == bodies[f"o{i}"]
    finally:
        server.stop()
    report = json.loads(exastor("fsck", "--json", data_dir=server.data_dir).stdout)
    assert report["clean"], report
    assert "Traceback" not in server.log_text()


@sqlite_only("fsck --rebuild-index rebuilds the SQLite index; with --meta fsck only verifies")
def test_fsck_detects_corruption_and_rebuilds_index(tmp_path):
    server = start_server(tmp_path)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="fsck")
        body = os.urandom(1 << 20)
        s3.put_object(Bucket="fsck", Key="a", Body=body)
        s3.put_object(Bucket="fsck", Key="b", Body=body)  # same bytes: one copy of each chunk
        s3.put_object(Bucket="fsck", Key="other", Body=b"elsewhere" * 1000)
    finally:
        server.stop()
    assert exastor("fsck", "--json", data_dir=server.data_dir).returncode == 0
    # Rebuilding the index from the segments alone gives a clean store again.
    rebuilt = exastor("fsck", "--rebuild-index", "--json", data_dir=server.data_dir)
    assert json.loads(rebuilt.stdout)["clean"]
    # Flip one byte in the middle of the segment: fsck must see it.
    seg = sorted((server.data_dir / "drive0" / "segments").glob("seg-*.log"))[0]
    raw = bytearray(seg.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    seg.write_bytes(bytes(raw))
    bad = exastor("fsck", "--json", data_dir=server.data_dir, check=False)
    assert bad.returncode == 1
    assert len(json.loads(bad.stdout)["corrupt_chunks"]) == 1
    # ...and name the objects that hold the bad chunk (both keys share it; "other" does not)
    assert json.loads(bad.stdout)["damaged_objects"] == ["fsck/a null", "fsck/b null"]
    text = exastor("fsck", data_dir=server.data_dir, check=False).stdout
    assert "damaged objects     : 2" in text and "  fsck/a null" in text, text
    # And the server never serves the corrupt bytes: the GET fails instead.
    server.start()
    try:
        s3 = s3_client(server)
        from botocore.exceptions import ClientError

        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="fsck", Key="a")["Body"].read()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    finally:
        server.stop()


def test_multipart_complete_hands_part_references_over(tmp_path):
    """Completing an upload hands the chosen parts' chunk references to the object and releases
    only the parts left out: with gc at zero grace, everything kept stays readable, and fsck's
    reference counts (recomputed from every manifest) agree."""
    import time

    server = start_server(tmp_path, env={"EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
                                         "EXASTOR_SEGMENT_SIZE": str(2 << 20)})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="mp-refs")
        p1, p2, p2_again, p3 = (os.urandom(n) for n in (5 << 20, 5 << 20, 5 << 20, 300_000))
        s3.put_object(Bucket="mp-refs", Key="shares-part2", Body=p2)  # same chunks as the left-out part
        up = s3.create_multipart_upload(Bucket="mp-refs", Key="mp")["UploadId"]
        etags = {}
        for number, body in ((1, p1), (2, p2), (2, p2_again), (3, p3)):  # part 2 replaced once
            etags[number] = s3.upload_part(Bucket="mp-refs", Key="mp", UploadId=up, PartNumber=number,
                                           Body=body)["ETag"]
        s3.complete_multipart_upload(Bucket="mp-refs", Key="mp", UploadId=up, MultipartUpload={
            "Parts": [{"ETag": etags[1], "PartNumber": 1}, {"ETag": etags[3], "PartNumber": 3}]})
        s3.put_object(Bucket="mp-refs", Key="mp", Body=b"replaced")  # the multipart object's refs go too
        s3.put_object(Bucket="mp-refs", Key="mp-again", Body=p1 + p3)  # dedupes against its chunks
        time.sleep(3)  # a few gc passes at zero grace
        assert s3.get_object(Bucket="mp-refs", Key="shares-part2")["Body"].read() == p2
        assert s3.get_object(Bucket="mp-refs", Key="mp-again")["Body"].read() == p1 + p3
        assert s3.get_object(Bucket="mp-refs", Key="mp")["Body"].read() == b"replaced"
    finally:
        server.stop()
    report = json.loads(exastor("fsck", "--json", data_dir=server.data_dir).stdout)
    assert report["clean"], report


@sqlite_only("fsck --repair rewrites the SQLite store; with --meta fsck only verifies")
def test_blob_holders_keep_their_chunks_through_fsck_repair_and_gc(tmp_path):
    """Snapshots, soft-deleted blobs and uncommitted blocks hold chunk references like objects do:
    fsck must count them (or its repair would zero their counts and gc would reclaim their bytes)."""
    import time

    from azure.storage.blob import BlobBlock, BlobServiceClient, RetentionPolicy

    server = start_server(tmp_path, env={"EXASTOR_GC_INTERVAL": "1", "EXASTOR_GC_GRACE": "0",
                                         "EXASTOR_SEGMENT_SIZE": str(1 << 20)})
    snap_body, deleted_body, block_body = (os.urandom(300_000) for _ in range(3))

    def container():
        svc = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
        return svc, svc.get_container_client("holders")

    try:
        svc, cc = container()
        svc.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=1))
        cc.create_container()
        snapped = cc.get_blob_client("snapped")
        snapped.upload_blob(snap_body)
        snapshot = snapped.create_snapshot()["snapshot"]
        snapped.upload_blob(b"newer", overwrite=True)
        cc.get_blob_client("deleted").upload_blob(deleted_body)
        cc.get_blob_client("deleted").delete_blob()
        cc.get_blob_client("staged").stage_block("YmxvY2sx", block_body)
    finally:
        server.stop()
    report = json.loads(exastor("fsck", "--json", "--repair", data_dir=server.data_dir).stdout)
    assert report["clean"] and report["refcount_mismatches"] == 0, report
    server.start()
    try:
        time.sleep(3)  # gc passes at zero grace: anything counted as unreferenced is gone now
        _, cc = container()
        assert cc.get_blob_client("snapped", snapshot=snapshot).download_blob().readall() == snap_body
        cc.get_blob_client("deleted").undelete_blob()
        assert cc.get_blob_client("deleted").download_blob().readall() == deleted_body
        cc.get_blob_client("staged").commit_block_list([BlobBlock("YmxvY2sx")])
        assert cc.get_blob_client("staged").download_blob().readall() == block_body
    finally:
        server.stop()
    report = json.loads(exastor("fsck", "--json", data_dir=server.data_dir).stdout)
    assert report["clean"], report
