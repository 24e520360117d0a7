"""Capacity quotas (issue 15, item 6): per bucket and per user, in logical bytes and object versions,
enforced inside the write's metadata transaction (no overshoot under concurrent writers), answered
403 QuotaExceeded on S3 and on Blob."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from botocore.exceptions import ClientError

from conftest import exastor, meta_rows, s3_client, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("quota"))
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text()


def _refused(call) -> ClientError:
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == "QuotaExceeded"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return err.value


def _usage(server) -> dict[str, dict]:
    rows = json.loads(exastor("quota", "show", "--json", data_dir=server.data_dir).stdout)
    return {f"{r['scope']}/{r['name']}": r for r in rows}


def _true_usage(server, bucket: str) -> tuple[int, int]:
    (used,) = meta_rows(server, "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM objects WHERE bucket = ? "
                        "AND delete_marker = 0", (bucket,))
    return used


def test_a_bucket_quota_in_bytes_and_objects(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="quota1")
    exastor("quota", "set", "bucket", "quota1", "--bytes", "250KB", data_dir=server.data_dir)
    s3.put_object(Bucket="quota1", Key="a", Body=b"a" * 100_000)
    s3.put_object(Bucket="quota1", Key="b", Body=b"b" * 100_000)
    _refused(lambda: s3.put_object(Bucket="quota1", Key="c", Body=b"c" * 100_000))
    with pytest.raises(ClientError):
        s3.head_object(Bucket="quota1", Key="c")  # nothing of the refused write is visible
    s3.put_object(Bucket="quota1", Key="a", Body=b"a" * 10_000)  # an overwrite that shrinks always goes through
    s3.put_object(Bucket="quota1", Key="c", Body=b"c" * 100_000)  # now it fits
    _refused(lambda: s3.copy_object(Bucket="quota1", Key="d", CopySource={"Bucket": "quota1", "Key": "b"}))
    s3.delete_object(Bucket="quota1", Key="b")
    s3.copy_object(Bucket="quota1", Key="d", CopySource={"Bucket": "quota1", "Key": "c"})
    assert _usage(server)["bucket/quota1"]["used_bytes"] == 210_000 == _true_usage(server, "quota1")[0]
    exastor("quota", "set", "bucket", "quota1", "--objects", "4", data_dir=server.data_dir)  # replaces the bytes limit
    s3.put_object(Bucket="quota1", Key="e", Body=b"e" * 500_000)
    _refused(lambda: s3.put_object(Bucket="quota1", Key="f", Body=b"f"))
    s3.put_object(Bucket="quota1", Key="e", Body=b"e2")  # replacing a version adds no object
    exastor("quota", "clear", "bucket", "quota1", data_dir=server.data_dir)
    s3.put_object(Bucket="quota1", Key="f", Body=b"f")


def test_multipart_completion_and_versions_are_counted(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="quota2")
    s3.put_bucket_versioning(Bucket="quota2", VersioningConfiguration={"Status": "Enabled"})
    exastor("quota", "set", "bucket", "quota2", "--bytes", "14MiB", data_dir=server.data_dir)
    s3.put_object(Bucket="quota2", Key="k", Body=b"1" * 3_000_000)
    s3.put_object(Bucket="quota2", Key="k", Body=b"2" * 3_000_000)  # every version counts
    s3.delete_object(Bucket="quota2", Key="k")  # a delete marker frees nothing and costs nothing
    assert _true_usage(server, "quota2") == (6_000_000, 2)
    up = s3.create_multipart_upload(Bucket="quota2", Key="mp")["UploadId"]
    parts = [s3.upload_part(Bucket="quota2", Key="mp", UploadId=up, PartNumber=n, Body=bytes([n]) * (5 << 20))["ETag"]
             for n in (1, 2)]
    done = {"Parts": [{"ETag": e, "PartNumber": n + 1} for n, e in enumerate(parts)]}
    _refused(lambda: s3.complete_multipart_upload(Bucket="quota2", Key="mp", UploadId=up, MultipartUpload=done))
    versions = s3.list_object_versions(Bucket="quota2")["Versions"]
    s3.delete_object(Bucket="quota2", Key="k", VersionId=versions[-1]["VersionId"])  # frees 3 MB
    s3.complete_multipart_upload(Bucket="quota2", Key="mp", UploadId=up, MultipartUpload=done)
    assert _usage(server)["bucket/quota2"]["used_bytes"] == 3_000_000 + (10 << 20) == _true_usage(server, "quota2")[0]


def test_concurrent_writers_never_overshoot(server):
    s3 = s3_client(server)
    s3.create_bucket(Bucket="quota3")
    exastor("quota", "set", "bucket", "quota3", "--bytes", "1000000", data_dir=server.data_dir)

    def put(i: int) -> bool:
        try:
            s3_client(server).put_object(Bucket="quota3", Key=f"k{i}", Body=bytes([i % 256]) * 70_000)
            return True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "QuotaExceeded"
            return False

    with ThreadPoolExecutor(8) as pool:
        accepted = sum(pool.map(put, range(40)))
    assert accepted == 1_000_000 // 70_000  # 14: exactly as many as fit, not one more
    assert _true_usage(server, "quota3") == (accepted * 70_000, accepted)


def test_a_user_quota_spans_the_users_buckets_and_blob_gets_the_same_answer(server):
    s3 = s3_client(server)
    made = exastor("user", "add", "quser", data_dir=server.data_dir).stdout
    assert "quser" in made
    exastor("quota", "set", "user", "admin", "--bytes", "1TB", "--objects", "100000", data_dir=server.data_dir)
    rows = _usage(server)
    used = rows["user/admin"]["used_bytes"]
    exastor("quota", "set", "user", "admin", "--bytes", str(used + 50_000), data_dir=server.data_dir)
    s3.create_bucket(Bucket="quota4")
    s3.put_object(Bucket="quota4", Key="k", Body=b"k" * 40_000)
    _refused(lambda: s3.put_object(Bucket="quota4", Key="k2", Body=b"k" * 40_000))
    blob = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
    container = blob.create_container("quota4blob")
    with pytest.raises(HttpResponseError) as err:
        container.upload_blob("b", b"b" * 40_000)
    assert err.value.status_code == 403 and err.value.error_code == "QuotaExceeded"
    container.upload_blob("small", b"s" * 5_000)  # what fits goes through
    bad = exastor("quota", "set", "user", "nobody", "--bytes", "1", data_dir=server.data_dir, check=False)
    assert bad.returncode == 1 and "no user 'nobody'" in bad.stderr
    bad = exastor("quota", "set", "bucket", "quota4", data_dir=server.data_dir, check=False)
    assert bad.returncode == 2 and "--bytes" in bad.stderr
    exastor("quota", "clear", "user", "admin", data_dir=server.data_dir)
    s3.put_object(Bucket="quota4", Key="k2", Body=b"k" * 40_000)
