"""A full drive: writes fail with a clear 507, nothing partial becomes visible, reads keep working.

507 (InsufficientStorage) is the answer when the store is out of space; 503 is for drives that
failed (too few healthy drives to write safely). A single full drive is the former."""

from __future__ import annotations

import os
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import s3_client, start_server


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_gives_507_and_keeps_serving(small_fs, tmp_path):
    server = start_server(small_fs, env={"EXASTOR_SEGMENT_SIZE": str(4 << 20), "EXASTOR_LOG_LEVEL": "info"})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="full")
        stored: dict[str, bytes] = {}
        failure = None
        for i in range(100):
            body = os.urandom(1 << 20)
            try:
                s3.put_object(Bucket="full", Key=f"o{i}", Body=body)
                stored[f"o{i}"] = body
            except ClientError as exc:
                failure = (f"o{i}", exc)
                break
        assert failure is not None, "the 24 MiB drive never filled up"
        key, exc = failure
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 507, (exc.response, server.log_text()[-3000:])
        assert exc.response["Error"]["Code"] == "InsufficientStorage"
        with pytest.raises(ClientError) as missing:
            s3.head_object(Bucket="full", Key=key)
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert stored, "nothing fit at all"
        for k, body in stored.items():
            assert s3.get_object(Bucket="full", Key=k)["Body"].read() == body
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="full").get("Contents", [])] == sorted(
            stored, key=lambda k: k.encode())
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]
