"""`exastor serve --meta postgresql://...`: a real server on a real PostgreSQL, driven by boto3 and
the Azure SDK. The representative slice; the full API suites on PostgreSQL: docs/operations.md."""

from __future__ import annotations

import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from conftest import exastor, s3_client, start_server, wait_until


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory, pg_cluster):
    dsn = pg_cluster.create_database("exastor_gateway")
    server = start_server(tmp_path_factory.mktemp("pg-gateway"), "--meta", dsn, "--workers", "2")
    yield server
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]
    pg_cluster.drop_database("exastor_gateway")


def test_objects_listing_and_deletes(pg_server):
    s3 = s3_client(pg_server)
    s3.create_bucket(Bucket="pgb")
    body = os.urandom(700_000)
    s3.put_object(Bucket="pgb", Key="dir/a", Body=body)
    s3.put_object(Bucket="pgb", Key="dir/b", Body=b"small")
    s3.put_object(Bucket="pgb", Key="top", Body=body)  # the same chunks again: deduplicated
    assert s3.get_object(Bucket="pgb", Key="dir/a")["Body"].read() == body
    assert s3.head_object(Bucket="pgb", Key="dir/b")["ContentLength"] == 5
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="pgb")["Contents"]] == ["dir/a", "dir/b", "top"]
    listed = s3.list_objects_v2(Bucket="pgb", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["dir/"] and [o["Key"] for o in listed["Contents"]] == ["top"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="pgb", Key="top", Body=b"x", IfNoneMatch="*")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    s3.delete_object(Bucket="pgb", Key="dir/a")
    s3.delete_objects(Bucket="pgb", Delete={"Objects": [{"Key": "dir/b"}, {"Key": "top"}]})
    assert s3.list_objects_v2(Bucket="pgb")["KeyCount"] == 0
    s3.delete_bucket(Bucket="pgb")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="pgb")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_versions_and_multipart(pg_server):
    s3 = s3_client(pg_server)
    s3.create_bucket(Bucket="pgmp")
    s3.put_bucket_versioning(Bucket="pgmp", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="pgmp", Key="v", Body=b"one")["VersionId"]
    s3.put_object(Bucket="pgmp", Key="v", Body=b"two")
    assert s3.get_object(Bucket="pgmp", Key="v")["Body"].read() == b"two"
    assert s3.get_object(Bucket="pgmp", Key="v", VersionId=first)["Body"].read() == b"one"
    assert len(s3.list_object_versions(Bucket="pgmp")["Versions"]) == 2

    upload = s3.create_multipart_upload(Bucket="pgmp", Key="big")["UploadId"]
    parts, whole = [], b""
    for n, size in ((1, 5 << 20), (2, 123_456)):
        data = os.urandom(size)
        whole += data
        etag = s3.upload_part(Bucket="pgmp", Key="big", UploadId=upload, PartNumber=n, Body=data)["ETag"]
        parts.append({"PartNumber": n, "ETag": etag})
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="pgmp")["Uploads"]] == [upload]
    assert len(s3.list_parts(Bucket="pgmp", Key="big", UploadId=upload)["Parts"]) == 2
    s3.complete_multipart_upload(Bucket="pgmp", Key="big", UploadId=upload, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket="pgmp", Key="big")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()

    aborted = s3.create_multipart_upload(Bucket="pgmp", Key="gone")["UploadId"]
    s3.abort_multipart_upload(Bucket="pgmp", Key="gone", UploadId=aborted)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="pgmp", Key="gone", UploadId=aborted)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


def test_blob_front_end(pg_server):
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(pg_server.connection_string)
    container = service.create_container("pgctr")
    container.upload_blob("b", b"hello blob")
    assert container.download_blob("b").readall() == b"hello blob"
    lease = container.get_blob_client("b").acquire_lease(lease_duration=15)
    with pytest.raises(Exception) as exc:
        container.get_blob_client("b").upload_blob(b"other", overwrite=True)
    assert getattr(exc.value, "status_code", None) == 412
    lease.release()
    assert [b.name for b in container.list_blobs()] == ["b"]
    service.delete_container("pgctr")


def test_fsck_over_postgresql(pg_server):
    """`exastor fsck --meta URL` verifies a store whose metadata is in PostgreSQL; repairs are refused."""
    s3 = s3_client(pg_server)
    s3.create_bucket(Bucket="pgfsck")
    s3.put_object(Bucket="pgfsck", Key="k", Body=os.urandom(300_000))
    url = pg_server.extra_args[pg_server.extra_args.index("--meta") + 1]
    checked = exastor("fsck", "--meta", url, data_dir=pg_server.data_dir, check=False)
    assert checked.returncode == 0 and checked.stdout.rstrip().endswith("clean"), checked.stdout + checked.stderr
    assert "corrupt chunks      : 0" in checked.stdout
    refused = exastor("fsck", "--meta", url, "--repair", data_dir=pg_server.data_dir, check=False)
    assert refused.returncode == 2 and "only verification" in refused.stderr


def test_users_managed_over_postgresql(pg_server):
    """`exastor user ... --meta URL` manages the users every gateway on that database serves: a user
    added there signs requests at once, and after `remove` its key is refused."""
    import boto3
    from botocore.config import Config

    url = pg_server.extra_args[pg_server.extra_args.index("--meta") + 1]
    access, secret = "EXPGUSERCAROL0000001", "pg-user-carol-secret-0123456789abcdef"
    exastor("user", "add", "carol", "--access-key", access, "--secret-key", secret, "--meta", url,
            data_dir=pg_server.data_dir)
    listed = exastor("user", "list", "--meta", url, data_dir=pg_server.data_dir)
    assert "carol" in listed.stdout and access in listed.stdout and secret not in listed.stdout
    shown = exastor("user", "show", "carol", "--meta", url, data_dir=pg_server.data_dir)
    assert secret in shown.stdout
    carol = boto3.client("s3", endpoint_url=pg_server.endpoint, region_name="us-east-1", aws_access_key_id=access,
                         aws_secret_access_key=secret,
                         config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    carol.create_bucket(Bucket="carols")
    carol.put_object(Bucket="carols", Key="k", Body=b"hers")
    assert carol.get_object(Bucket="carols", Key="k")["Body"].read() == b"hers"
    refused = exastor("user", "remove", "carol", "--meta", url, data_dir=pg_server.data_dir, check=False)
    assert refused.returncode == 1 and "bucket" in refused.stderr  # she owns a bucket: refused, nothing changed
    exastor("user", "remove", "carol", "--transfer-to", "admin", "--meta", url, data_dir=pg_server.data_dir)

    def denied() -> bool:
        try:
            carol.list_buckets()
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "InvalidAccessKeyId"
        return False

    wait_until(denied, timeout=30, what="a removed user's key refused")
    assert s3_client(pg_server).get_object(Bucket="carols", Key="k")["Body"].read() == b"hers"


def test_database_down_answers_503_and_recovers(tmp_path, pg_cluster):
    """PostgreSQL stopping under a running gateway: requests get 503 (never a 500 or a traceback);
    once it is back, the same gateway serves again without a restart."""
    dsn = pg_cluster.create_database("exastor_down")
    # The request path only: the background passes (gc, reducer) are off here; a pass that fails
    # while the database is down is the services' own concern (logged by them).
    server = start_server(tmp_path, "--meta", dsn, "--workers", "1",
                          env={"EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0"})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="down")
        s3.put_object(Bucket="down", Key="k", Body=b"v")
        pg_cluster.sql("ALTER DATABASE exastor_down ALLOW_CONNECTIONS false")
        pg_cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'exastor_down'")
        for call in (lambda: s3.get_object(Bucket="down", Key="k"),
                     lambda: s3.put_object(Bucket="down", Key="k2", Body=b"v")):
            with pytest.raises(ClientError) as exc:
                call()
            assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        pg_cluster.sql("ALTER DATABASE exastor_down ALLOW_CONNECTIONS true")
        # The pool reconnects with a back-off: the gateway serves again within it (503 until then,
        # never anything else), without a restart.
        def served() -> bytes | None:
            try:
                return s3.get_object(Bucket="down", Key="k")["Body"].read()
            except ClientError as exc:
                assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 503, exc.response
                return None

        assert wait_until(served, "the gateway to serve again", timeout=60.0, interval=0.5) == b"v"
        s3.put_object(Bucket="down", Key="k2", Body=b"v2")
    finally:
        server.stop()
        pg_cluster.drop_database("exastor_down")
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


def test_a_nul_character_in_a_name_is_a_bad_request_not_a_server_error(pg_server):
    """PostgreSQL text cannot hold NUL: a key or container name with ``%00`` (found by the seeded fuzz
    slice on PostgreSQL) is answered 400, on S3 and Blob, never 500."""
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobServiceClient

    s3 = s3_client(pg_server)
    s3.create_bucket(Bucket="pgnul")
    for call in (lambda: s3.put_object(Bucket="pgnul", Key="k\x00x", Body=b"v"),
                 lambda: s3.get_object(Bucket="pgnul", Key="k\x00x"),
                 lambda: s3.list_objects_v2(Bucket="pgnul", Prefix="a\x00")):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, exc.value.response
    service = BlobServiceClient.from_connection_string(pg_server.connection_string, retry_total=0)
    service.create_container("pgnulc")
    with pytest.raises(HttpResponseError) as blob_exc:
        service.get_blob_client("pgnulc", "k\x00x").get_blob_properties()
    assert blob_exc.value.status_code == 400
    with pytest.raises(HttpResponseError) as blob_exc:
        service.get_blob_client("pgnulc", "k\x00x").upload_blob(b"v")
    assert blob_exc.value.status_code == 400
