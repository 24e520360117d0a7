"""Two `exastor serve` processes (separate masters) on one PostgreSQL database and the same drives
serve one namespace (issue 13): what one decides, the other sees, and the decisions that only one
of many racing requests may win are won exactly once even when the racers come through different
gateways.

Gateways A and B each run one worker, share a throwaway PostgreSQL database and three drive
directories (A registers them; B finds them in the metadata), and one master key (copied from A).
boto3 and azure-storage-blob drive them:

- If-None-Match: * and If-Match PUTs of one key, split over A and B: exactly one 200, the rest 412
  (or 409 ConditionalRequestConflict), and both gateways then return the winner's body.
- Multipart: parts uploaded through both, completed through the other gateway; a complete through A
  racing an abort through B has exactly one outcome, never a half object.
- Blob leases taken through one gateway bind writes through the other; a lease race over both has
  one winner; break and release through one are seen through the other.
- Buckets and containers created or deleted through one gateway are seen through the other at once,
  also when the other had just cached the old state (bucket caches follow PostgreSQL NOTIFY).
"""

from __future__ import annotations

import random
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient
from botocore.exceptions import ClientError

from conftest import ServerProcess, free_port, s3_client

RACERS = 6              # threads per race, split evenly over A and B
RACE_TIMEOUT_S = 60.0   # no racer waits longer than this for the others, or for its answer
LOSER_CODES = {412: "PreconditionFailed", 409: "ConditionalRequestConflict"}


@pytest.fixture(scope="module")
def gateways(tmp_path_factory, pg_cluster):
    tmp = tmp_path_factory.mktemp("two-gateways")
    dsn = pg_cluster.create_database("exastor_two_gateways")
    env = {"EXASTOR_META_URL": dsn, "EXASTOR_GC_INTERVAL": "0", "EXASTOR_REDUCE_INTERVAL": "0",
           "EXASTOR_REPAIR_INTERVAL": "3600", "EXASTOR_SCRUB_INTERVAL": "0"}
    drives = [x for i in range(3) for x in ("--drive", str(tmp / "drives" / f"d{i}"))]
    a = ServerProcess(tmp / "a", free_port(), free_port(), tmp / "a.log", env=env,
                      extra_args=["--workers", "1", *drives])
    b = ServerProcess(tmp / "b", free_port(), free_port(), tmp / "b.log", env=env, extra_args=["--workers", "1"])
    for server in (a, b):
        server.data_dir.mkdir(mode=0o700)
    try:
        a.start()
        shutil.copy2(a.data_dir / "master.key", b.data_dir / "master.key")  # one store, one master key
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()
        pg_cluster.drop_database("exastor_two_gateways")
    for server in (a, b):
        assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


@pytest.fixture
def bucket(gateways) -> str:
    name = f"two-{uuid.uuid4().hex[:12]}"
    s3_client(gateways[0]).create_bucket(Bucket=name)
    return name


def race(calls: list[Callable[[], object]]) -> list[object]:
    """Run ``calls`` at once (one thread each, released together by a barrier); each result is the
    call's return value or the exception it raised."""
    barrier = threading.Barrier(len(calls), timeout=RACE_TIMEOUT_S)

    def one(call: Callable[[], object]) -> object:
        barrier.wait()
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the test sorts the answers
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(one, call) for call in calls]
        return [f.result(timeout=RACE_TIMEOUT_S * 2) for f in futures]


def s3_answer(result: object) -> tuple[int, str]:
    if isinstance(result, ClientError):
        return result.response["ResponseMetadata"]["HTTPStatusCode"], result.response["Error"]["Code"]
    assert isinstance(result, dict), repr(result)
    return result["ResponseMetadata"]["HTTPStatusCode"], ""


def split_racers(a: ServerProcess, b: ServerProcess) -> list:
    """One boto3 client per racer (clients are not shared between threads), alternating A and B."""
    return [s3_client(a if i % 2 == 0 else b, retry=False) for i in range(RACERS)]


def one_winner(answers: list[tuple[int, str]]) -> int:
    """The index of the one 200; every other answer is a precondition loss."""
    winners = [i for i, (st, _) in enumerate(answers) if st == 200]
    assert len(winners) == 1, answers
    assert all(LOSER_CODES.get(st) == code for i, (st, code) in enumerate(answers) if i != winners[0]), answers
    return winners[0]


def read_both(a: ServerProcess, b: ServerProcess, bucket: str, key: str) -> tuple[bytes, bytes]:
    return (s3_client(a).get_object(Bucket=bucket, Key=key)["Body"].read(),
            s3_client(b).get_object(Bucket=bucket, Key=key)["Body"].read())


# --- conditional writes ------------------------------------------------------------------------

def test_if_none_match_race_across_gateways_has_one_winner(gateways, bucket):
    a, b = gateways
    rng = random.Random(1301)
    for round_ in range(3):
        key = f"create-once/{round_}"
        bodies = [rng.randbytes(rng.randrange(1_000, 40_000)) for _ in range(RACERS)]
        clients = split_racers(a, b)
        results = race([partial(c.put_object, Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
                        for c, body in zip(clients, bodies, strict=True)])
        winner = one_winner([s3_answer(r) for r in results])
        assert read_both(a, b, bucket, key) == (bodies[winner], bodies[winner]), f"round {round_}: not the winner's body"
        assert results[winner]["ETag"] == s3_client(b).head_object(Bucket=bucket, Key=key)["ETag"]


def test_if_match_race_across_gateways_has_one_winner(gateways, bucket):
    a, b = gateways
    rng = random.Random(1302)
    key = "replace-once"
    etag = s3_client(b).put_object(Bucket=bucket, Key=key, Body=rng.randbytes(5_000))["ETag"]
    for round_ in range(3):
        bodies = [rng.randbytes(rng.randrange(1_000, 40_000)) for _ in range(RACERS)]
        clients = split_racers(a, b)
        results = race([partial(c.put_object, Bucket=bucket, Key=key, Body=body, IfMatch=etag)
                        for c, body in zip(clients, bodies, strict=True)])
        winner = one_winner([s3_answer(r) for r in results])
        assert read_both(a, b, bucket, key) == (bodies[winner], bodies[winner]), f"round {round_}: not the winner's body"
        etag = results[winner]["ETag"]
    # The old ETag no longer matches, through either gateway.
    with pytest.raises(ClientError) as exc:
        s3_client(a, retry=False).put_object(Bucket=bucket, Key=key, Body=b"late", IfMatch='"0123"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


# --- multipart ---------------------------------------------------------------------------------

def test_multipart_parts_through_both_completed_through_the_other(gateways, bucket):
    a, b = gateways
    rng = random.Random(1303)
    s3a, s3b = s3_client(a), s3_client(b)
    upload = s3a.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    bodies = [rng.randbytes(5 << 20), rng.randbytes(5 << 20), rng.randbytes(300_000)]
    parts = []
    for n, (body, client) in enumerate(zip(bodies, (s3a, s3b, s3a), strict=True), start=1):
        parts.append({"PartNumber": n, "ETag": client.upload_part(Bucket=bucket, Key="mp", UploadId=upload,
                                                                   PartNumber=n, Body=body)["ETag"]})
    listed = s3b.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == [(p["PartNumber"], p["ETag"]) for p in parts]
    s3b.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    whole = b"".join(bodies)
    assert read_both(a, b, bucket, "mp") == (whole, whole)
    with pytest.raises(ClientError) as exc:
        s3a.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
    assert exc.value.response["Error"]["Code"] == "NoSuchUpload"


def test_multipart_complete_racing_an_abort_on_the_other_gateway(gateways, bucket):
    a, b = gateways
    rng = random.Random(1304)
    s3a = s3_client(a)
    for round_ in range(8):  # the abort wins most rounds (measured: 8 of 10); the complete some
        key = f"race/{round_}"
        upload = s3a.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        body = rng.randbytes(rng.randrange(50_000, 200_000))
        etag = s3_client(b).upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=body)["ETag"]
        ca, cb = s3_client(a, retry=False), s3_client(b, retry=False)
        completed, aborted = race([
            partial(ca.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}),
            partial(cb.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload)])
        c, ab = s3_answer(completed), s3_answer(aborted)
        assert (c, ab) in {((200, ""), (404, "NoSuchUpload")), ((404, "NoSuchUpload"), (204, ""))}, (round_, c, ab)
        for server in (a, b):
            s3 = s3_client(server)
            if c[0] == 200:
                assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, (round_, server.log_path.name)
            else:
                with pytest.raises(ClientError) as exc:
                    s3.head_object(Bucket=bucket, Key=key)
                assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            with pytest.raises(ClientError) as exc:
                s3.list_parts(Bucket=bucket, Key=key, UploadId=upload)
            assert exc.value.response["Error"]["Code"] == "NoSuchUpload"
    assert s3_client(b).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- Blob leases -------------------------------------------------------------------------------

def blob_service(server: ServerProcess) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


def blob_error(fn: Callable[[], object]) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    return ei.value.status_code, ei.value.error_code


def test_blob_lease_taken_through_one_gateway_binds_the_other(gateways):
    a, b = gateways
    container = f"lease{uuid.uuid4().hex[:12]}"
    blob_service(a).create_container(container)
    via_a = blob_service(a).get_blob_client(container, "leased")
    via_b = blob_service(b).get_blob_client(container, "leased")
    via_a.upload_blob(b"v1")

    lease = via_a.acquire_lease(lease_duration=-1)
    assert via_b.get_blob_properties().lease.state == "leased"
    assert blob_error(lambda: via_b.upload_blob(b"v2", overwrite=True)) == (412, "LeaseIdMissing")
    assert blob_error(lambda: via_b.delete_blob()) == (412, "LeaseIdMissing")
    assert blob_error(lambda: via_b.upload_blob(b"v2", overwrite=True, lease=str(uuid.uuid4()))) == \
        (412, "LeaseIdMismatchWithBlobOperation")
    via_b.upload_blob(b"v2", overwrite=True, lease=lease.id)
    assert via_a.download_blob().readall() == b"v2"
    assert blob_error(lambda: via_b.acquire_lease(lease_duration=15)) == (409, "LeaseAlreadyPresent")

    BlobLeaseClient(via_b, lease_id=lease.id).release()  # released through B: A sees it free
    assert via_a.get_blob_properties().lease.state == "available"
    via_a.upload_blob(b"v3", overwrite=True)

    again = via_a.acquire_lease(lease_duration=-1)  # taken through A again, broken through B
    assert blob_error(lambda: via_b.upload_blob(b"v4", overwrite=True)) == (412, "LeaseIdMissing")
    assert BlobLeaseClient(via_b).break_lease(lease_break_period=0) == 0
    assert via_a.get_blob_properties().lease.state == "broken"
    via_a.upload_blob(b"v4", overwrite=True)  # a broken lease binds no one, through either gateway
    assert via_b.download_blob().readall() == b"v4"
    assert blob_error(lambda: via_b.upload_blob(b"v5", overwrite=True, lease=again.id)) == \
        (412, "LeaseNotPresentWithBlobOperation")
    taken = via_b.acquire_lease(lease_duration=-1)  # and a new one may be taken through the other
    assert blob_error(lambda: via_a.acquire_lease(lease_duration=15)) == (409, "LeaseAlreadyPresent")
    via_a.upload_blob(b"v6", overwrite=True, lease=taken.id)
    assert via_b.download_blob().readall() == b"v6"


def test_blob_lease_race_across_gateways_has_one_holder(gateways):
    a, b = gateways
    container = f"leaserace{uuid.uuid4().hex[:8]}"
    blob_service(a).create_container(container)
    blob_service(b).get_blob_client(container, "contended").upload_blob(b"x")
    for round_ in range(3):
        clients = [blob_service(a if i % 2 == 0 else b).get_blob_client(container, "contended") for i in range(RACERS)]
        results = race([lambda c=c: c.acquire_lease(lease_duration=-1) for c in clients])
        holders = [r for r in results if isinstance(r, BlobLeaseClient)]
        assert len(holders) == 1, (round_, results)
        losers = [(r.status_code, r.error_code) for r in results if isinstance(r, HttpResponseError)]
        assert losers == [(409, "LeaseAlreadyPresent")] * (RACERS - 1), (round_, losers)
        for client in clients[:2]:  # the holder's id, and only it, writes through either gateway
            client.upload_blob(f"round {round_}".encode(), overwrite=True, lease=holders[0].id)
        holders[0].release()


# --- buckets and containers --------------------------------------------------------------------

def test_buckets_created_and_deleted_through_one_are_seen_through_the_other(gateways):
    a, b = gateways
    s3a, s3b = s3_client(a, retry=False), s3_client(b, retry=False)
    for round_ in range(5):
        name = f"seen-{round_}-{uuid.uuid4().hex[:8]}"
        # B looks first (and may cache "no such bucket"); A creates it; B serves it at once.
        with pytest.raises(ClientError) as exc:
            s3b.head_bucket(Bucket=name)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        s3a.create_bucket(Bucket=name)
        s3b.put_object(Bucket=name, Key="k", Body=b"through B")
        assert s3a.get_object(Bucket=name, Key="k")["Body"].read() == b"through B"
        # B has the bucket cached; A empties and deletes it; B must not serve it from its cache.
        s3b.head_bucket(Bucket=name)
        s3a.delete_object(Bucket=name, Key="k")
        s3a.delete_bucket(Bucket=name)
        with pytest.raises(ClientError) as exc:
            s3b.put_object(Bucket=name, Key="k2", Body=b"after the delete")
        assert s3_answer(exc.value) == (404, "NoSuchBucket"), round_
        with pytest.raises(ClientError) as exc:
            s3b.head_bucket(Bucket=name)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert name not in [x["Name"] for x in s3b.list_buckets()["Buckets"]]


def test_containers_created_and_deleted_through_one_are_seen_through_the_other(gateways):
    a, b = gateways
    svc_a, svc_b = blob_service(a), blob_service(b)
    for round_ in range(5):
        name = f"seen{round_}{uuid.uuid4().hex[:8]}"
        assert not svc_b.get_container_client(name).exists()
        svc_a.create_container(name)
        svc_b.get_blob_client(name, "k").upload_blob(b"through B")
        assert svc_a.get_blob_client(name, "k").download_blob().readall() == b"through B"
        assert svc_b.get_container_client(name).exists()
        svc_a.delete_container(name)
        assert blob_error(lambda name=name: svc_b.get_blob_client(name, "k2").upload_blob(b"after")) == \
            (404, "ContainerNotFound"), round_
        assert not svc_b.get_container_client(name).exists()
