"""QoS rate limits (issue 15, item 5): token buckets per user and per bucket shared by every worker,
answered S3 503 SlowDown / Blob 503 ServerBusy with Retry-After. The rates themselves are measured
by bench/qos.py (docs/benchmarks.md)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient
from botocore.exceptions import ClientError

from conftest import exastor, free_port, s3_client, start_server
from exastor.http.qos import SharedBuckets


def test_a_shared_token_bucket_refills_at_its_rate(tmp_path):
    a, b = SharedBuckets(tmp_path / "t"), SharedBuckets(tmp_path / "t")  # two processes' views of one file
    assert a.take("k", rate=10, burst=3, cost=1) == 0
    assert b.take("k", rate=10, burst=3, cost=1) == 0
    assert a.take("k", rate=10, burst=3, cost=1) == 0
    wait = b.take("k", rate=10, burst=3, cost=1)  # the burst is spent, whoever draws
    assert 0 < wait <= 0.1
    deadline = time.monotonic() + 5
    while a.take("k", rate=10, burst=3, cost=1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.monotonic() < deadline
    assert a.take("other", rate=1, burst=1, cost=1) == 0  # another key, another bucket
    assert a.take("big", rate=100, burst=100, cost=500, debt=True) == 0  # debt is allowed when asked
    assert a.take("big", rate=100, burst=100, cost=1) >= 3.9  # ... and paid back before the next
    # within max_delay the tokens are reserved (drawn ahead of time) and the caller told how long to wait
    assert b.take("near", rate=100, burst=1, cost=1) == 0
    first = b.take("near", rate=100, burst=1, cost=1, max_delay=0.5)
    second = b.take("near", rate=100, burst=1, cost=1, max_delay=0.5)
    assert -0.011 <= first < 0 and second < first  # served in order: the second waits longer
    assert b.take("near", rate=2, burst=1, cost=1, max_delay=0.1) > 0.1  # too far ahead: refused


def _slow(call) -> ClientError:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    assert response["Error"]["Code"] == "SlowDown" and response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert int(response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]) >= 1
    return err.value


def test_limits_per_user_and_bucket_across_workers(tmp_path):
    admin = free_port()
    server = start_server(tmp_path, "--workers", "2", "--admin-port", str(admin))
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="qos")
        s3.create_bucket(Bucket="free")
        exastor("qos", "set", "bucket", "qos", "--requests", "0.01", "--burst", "5", data_dir=server.data_dir)
        deadline = time.monotonic() + 10  # the workers read the limits within a second
        admitted = 0
        while time.monotonic() < deadline:
            try:
                s3.head_bucket(Bucket="qos") if admitted % 2 else s3.list_objects_v2(Bucket="qos")
                admitted += 1
            except ClientError as exc:
                assert exc.response["Error"]["Code"] in ("SlowDown", "503")
                break
        else:
            pytest.fail("never limited")
        _slow(lambda: s3.put_object(Bucket="qos", Key="k", Body=b"x"))
        s3.put_object(Bucket="free", Key="k", Body=b"x")  # other buckets are not limited
        # Blob: the admin's account under a user limit of its own
        exastor("qos", "clear", "bucket", "qos", data_dir=server.data_dir)
        exastor("qos", "set", "user", "admin", "--requests", "0.01", "--burst", "3", data_dir=server.data_dir)
        blob = BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)
        # A container that never had a limit of its own: a worker may hold the bucket limit just
        # cleared for up to a second, and only the user limit may refuse here.
        container = blob.get_container_client("free")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                container.get_container_properties()
            except HttpResponseError as exc:
                assert exc.status_code == 503 and exc.error_code == "ServerBusy"
                assert int(exc.response.headers["retry-after"]) >= 1
                break
        else:
            pytest.fail("Blob never limited")
        metrics = requests.get(f"http://127.0.0.1:{admin}/metrics", timeout=30).text
        for api, scope in (("blob", "user"), ("s3", "bucket")):
            line = re.search(rf'^exastor_qos_throttled_total{{api="{api}",scope="{scope}"}} (\S+)$', metrics, re.M)
            assert line and float(line.group(1)) >= 1, (api, scope)
        shown = exastor("qos", "show", data_dir=server.data_dir).stdout
        assert "user" in shown and "admin" in shown
        exastor("qos", "clear", "user", "admin", data_dir=server.data_dir)
        bad = exastor("qos", "set", "user", "nobody", "--requests", "1", data_dir=server.data_dir, check=False)
        assert bad.returncode == 1 and "no user 'nobody'" in bad.stderr
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_a_client_a_little_over_its_rate_is_slowed_not_refused(tmp_path):
    server = start_server(tmp_path, "--workers", "1")
    try:
        s3 = s3_client(server)
        for name in ("slow", "probe"):
            s3.create_bucket(Bucket=name)
        s3.put_object(Bucket="slow", Key="k", Body=b"x")
        exastor("qos", "set", "bucket", "slow", "--requests", "20", "--burst", "1", data_dir=server.data_dir)
        exastor("qos", "set", "bucket", "probe", "--requests", "0.01", "--burst", "1", data_dir=server.data_dir)
        deadline = time.monotonic() + 30
        while True:  # once the probe's limit bites, the worker has read both limits (set before it)
            try:
                s3.head_bucket(Bucket="probe")
            except ClientError:
                break
            assert time.monotonic() < deadline, "the limits were never read"
        clients = [s3_client(server) for _ in range(8)]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: [c.head_object(Bucket="slow", Key="k") for _ in range(5)], clients))
        # 40 requests at 20/s, none refused: 8 waiting at once reserve at most 8 x 50 ms < MAX_DELAY
        assert time.monotonic() - started >= 1.9
    finally:
        server.stop()
