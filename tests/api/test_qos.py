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

from conftest import exastor, free_port, s3_client, start_server, wait_until
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


NOISY_KEY, NOISY_SECRET = "AKNOISYTENANT0000001", "noisy-secret-0123456789-0123456789-abcdef"


def _client(server, access_key: str, secret_key: str):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                        verify=str(server.tls_ca) if server.tls_ca else None,
                        aws_secret_access_key=secret_key,
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def _noisy_tenant(server) -> None:
    """User ``noisy`` with bucket ``noisy`` and object ``k``; bucket ``probe`` of the admin's."""
    exastor("user", "add", "noisy", "--access-key", NOISY_KEY, "--secret-key", NOISY_SECRET, data_dir=server.data_dir)
    noisy = _client(server, NOISY_KEY, NOISY_SECRET)
    noisy.create_bucket(Bucket="noisy")
    noisy.put_object(Bucket="noisy", Key="k", Body=b"x" * 4096)
    s3_client(server).create_bucket(Bucket="probe")


def _limits_read(server) -> None:
    """Set a bucket limit after the others and wait until it bites: the worker has read them all
    (without spending a token of the limits under test)."""
    exastor("qos", "set", "bucket", "probe", "--requests", "0.01", "--burst", "1", data_dir=server.data_dir)
    probe = s3_client(server, retry=False)

    def refused() -> bool:
        try:
            probe.head_bucket(Bucket="probe")
        except ClientError:
            return True
        return False

    wait_until(refused, "the worker to read the limits")


def test_a_limited_tenant_parked_in_numbers_cannot_take_a_quiet_tenants_request_slots(tmp_path):
    """Requests waiting for tokens or held before their refusal cost no CPU and leave the worker's
    in-flight count: a limited tenant flooding from many connections gets its 503s, and the quiet
    tenant beside it none, although the flood parks more requests than max_requests."""
    server = start_server(tmp_path, "--workers", "1", env={"EXASTOR_MAX_REQUESTS": "4"})
    try:
        _noisy_tenant(server)
        s3_client(server).create_bucket(Bucket="quiet")
        s3_client(server).put_object(Bucket="quiet", Key="k", Body=b"y")
        exastor("qos", "set", "user", "noisy", "--requests", "0.5", "--burst", "1", data_dir=server.data_dir)
        _limits_read(server)
        flood_url = _client(server, NOISY_KEY, NOISY_SECRET).generate_presigned_url(
            "get_object", Params={"Bucket": "noisy", "Key": "k"}, ExpiresIn=600)
        quiet_url = s3_client(server).generate_presigned_url(
            "get_object", Params={"Bucket": "quiet", "Key": "k"}, ExpiresIn=600)  # the admin: no limit
        flooding, stop = 16, time.monotonic() + 60
        codes: dict[int, int] = {}
        quiet: list[int] = []

        def flood() -> None:
            with requests.Session() as session:
                while time.monotonic() < stop and not quiet[20:]:
                    status = session.get(flood_url, timeout=30).status_code
                    codes[status] = codes.get(status, 0) + 1

        with ThreadPoolExecutor(flooding) as pool:
            floods = [pool.submit(flood) for _ in range(flooding)]
            wait_until(lambda: codes.get(503, 0) >= flooding, "the flood to be refused", timeout=30)
            with requests.Session() as session:
                while not quiet[20:]:  # 21 requests while the flood goes on
                    assert time.monotonic() < stop
                    quiet.append(session.get(quiet_url, timeout=30).status_code)
            for f in floods:
                f.result()
        assert quiet == [200] * 21, quiet
        assert set(codes) <= {200, 503} and codes[503] >= flooding, codes
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_an_over_limit_tenant_is_refused_before_its_signature_but_forgers_spend_nothing(tmp_path):
    """Requests that claim a limited user's access key but fail its signature draw none of its tokens;
    once the user is far over its rate, its requests are refused before their signatures are checked
    (a forged one too: refused either way, and the flood of a throttled tenant costs no SigV4)."""
    server = start_server(tmp_path, "--workers", "1")
    try:
        _noisy_tenant(server)
        exastor("qos", "set", "user", "noisy", "--requests", "0.01", "--burst", "3", data_dir=server.data_dir)
        _limits_read(server)
        forger, noisy = _client(server, NOISY_KEY, "not-the-secret"), _client(server, NOISY_KEY, NOISY_SECRET)
        for _ in range(6):
            with pytest.raises(ClientError) as err:
                forger.head_object(Bucket="noisy", Key="k")
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        for _ in range(3):  # the burst is whole: the forgeries drew nothing
            noisy.head_object(Bucket="noisy", Key="k")
        _slow(lambda: noisy.get_object(Bucket="noisy", Key="k"))
        _slow(lambda: forger.get_object(Bucket="noisy", Key="k"))  # refused before its signature is checked
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def _worker_of(response) -> str:
    """The worker that answered: an S3 request id starts with its pid (gateway/middleware.py)."""
    return response.headers["x-amz-request-id"][:6]


def _throttled_url(server) -> str:
    """A presigned GET of the noisy tenant's object, the tenant limited to 40 requests/s (burst 1)."""
    _noisy_tenant(server)
    exastor("qos", "set", "user", "noisy", "--requests", "40", "--burst", "1", data_dir=server.data_dir)
    _limits_read(server)
    return _client(server, NOISY_KEY, NOISY_SECRET).generate_presigned_url(
        "get_object", Params={"Bucket": "noisy", "Key": "k"}, ExpiresIn=600)


def test_a_throttled_tenants_connections_move_to_a_worker_of_their_own(tmp_path):
    """gateway/handoff.py: between requests, the connections of a tenant a limit throttles are handed
    to the last worker and the other tenants' away from it, so a quiet tenant never shares an event
    loop with a noisy one; the clients see nothing but answers on their kept-alive connections."""
    server = start_server(tmp_path, "--workers", "2")
    try:
        s3_client(server).create_bucket(Bucket="quiet")
        s3_client(server).put_object(Bucket="quiet", Key="k", Body=b"y")
        noisy_url = _throttled_url(server)
        quiet_url = s3_client(server).generate_presigned_url(
            "get_object", Params={"Bucket": "quiet", "Key": "k"}, ExpiresIn=600)
        stop = time.monotonic() + 60
        noisy_workers: list[str] = []
        quiet_workers: list[str] = []

        def noisy() -> None:  # four connections, over the limit together: throttled all along
            with requests.Session() as session:
                while time.monotonic() < stop and len(quiet_workers) < 200:
                    response = session.get(noisy_url, timeout=30)
                    assert response.status_code in (200, 503)
                    noisy_workers.append(_worker_of(response))

        with ThreadPoolExecutor(4) as pool:
            floods = [pool.submit(noisy) for _ in range(4)]
            wait_until(lambda: len(noisy_workers) >= 40, "the noisy tenant to be served", timeout=30)
            with requests.Session() as session:  # one kept-alive connection, as an SDK's
                while len(quiet_workers) < 200:
                    assert time.monotonic() < stop
                    response = session.get(quiet_url, timeout=30)
                    assert response.status_code == 200 and response.content == b"y"
                    quiet_workers.append(_worker_of(response))
            for f in floods:
                f.result()  # no connection error on either side
        throttled_worker = set(noisy_workers[-20:])
        assert len(throttled_worker) == 1, noisy_workers[-20:]
        assert throttled_worker.isdisjoint(quiet_workers[-100:]), (throttled_worker, quiet_workers[-100:])
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_with_the_handoff_switched_off_every_connection_stays_on_its_worker(tmp_path):
    """``qos_handoff = false`` (EXASTOR_QOS_HANDOFF): a throttled tenant's kept-alive connections are
    served where they were accepted, each by one worker throughout (with it on, those accepted by
    another worker than the last move to the last)."""
    server = start_server(tmp_path, "--workers", "2", env={"EXASTOR_QOS_HANDOFF": "off"})
    try:
        noisy_url = _throttled_url(server)
        seen: dict[int, set[str]] = {}

        def noisy(lane: int) -> None:  # eight connections, over the limit together: throttled all along
            with requests.Session() as session:
                for _ in range(12):
                    response = session.get(noisy_url, timeout=30)
                    assert response.status_code in (200, 503)
                    seen.setdefault(lane, set()).add(_worker_of(response))

        with ThreadPoolExecutor(8) as pool:
            for f in [pool.submit(noisy, lane) for lane in range(8)]:
                f.result()
        assert all(len(workers) == 1 for workers in seen.values()), seen
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_tls_connections_of_a_throttled_tenant_stay_where_they_are(tmp_path):
    """A TLS session cannot move between processes: its connections are served where they were
    accepted, throttled or not, and every request is answered on them."""
    server = start_server(tmp_path, "--workers", "2", "--tls", "self-signed",
                          tls_ca=tmp_path / "data" / "tls" / "ca.pem")
    try:
        noisy_url = _throttled_url(server)
        answered: list[int] = []

        def noisy() -> None:
            with requests.Session() as session:
                for _ in range(15):  # verify per request: requests lets the environment override the session's
                    answered.append(session.get(noisy_url, timeout=30, verify=str(server.tls_ca)).status_code)

        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(noisy) for _ in range(4)]:
                f.result()  # no connection error
        assert len(answered) == 60 and set(answered) <= {200, 503}, answered
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
