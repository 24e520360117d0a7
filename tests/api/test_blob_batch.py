"""Blob Batch (SubmitBatch) with azure-storage-blob against the real server: Delete Blob and Set Blob
Tier in one request, at container and service scope, each sub-request authenticated and authorized
on its own (Shared Key or its own SAS), answered in order with its own status."""

from __future__ import annotations

import http.client
from datetime import UTC, datetime, timedelta

import pytest
from _blob_target import unique
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    PartialBatchErrorException,
    ResourceTypes,
    StandardBlobTier,
    generate_account_sas,
    generate_container_sas,
)
from azure.storage.blob._container_client_helpers import _generate_delete_blobs_options

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def server(exastor_server):
    return exastor_server


@pytest.fixture(scope="module")
def svc(server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


@pytest.fixture
def cc(svc):
    client = svc.create_container(unique())
    yield client
    client.delete_container()


def names(cc: ContainerClient) -> list[str]:
    return sorted(b.name for b in cc.list_blobs())


def test_delete_blobs_in_container(cc):
    for i in range(5):
        cc.upload_blob(f"d{i}", b"x")
    cc.get_blob_client("d0").create_snapshot()
    responses = list(cc.delete_blobs("d0", "d1", "d2", delete_snapshots="include"))
    assert [r.status_code for r in responses] == [202, 202, 202]
    assert all(r.headers["x-ms-request-id"] for r in responses)
    assert names(cc) == ["d3", "d4"]


def test_one_failure_is_reported_the_others_done(cc):
    cc.upload_blob("a", b"x")
    cc.upload_blob("b", b"x")
    with pytest.raises(PartialBatchErrorException) as ei:
        cc.delete_blobs("a", "missing", "b")
    parts = ei.value.parts
    assert [p.status_code for p in parts] == [202, 404, 202]
    assert parts[1].headers["x-ms-error-code"] == "BlobNotFound"
    assert names(cc) == []
    results = list(cc.delete_blobs("missing", raise_on_any_failure=False))
    assert [r.status_code for r in results] == [404]


def test_set_tier_batch(cc):
    for name in ("t1", "t2", "t3"):
        cc.upload_blob(name, b"x")
    responses = list(cc.set_standard_blob_tier_blobs(StandardBlobTier.COOL, "t1", "t2"))
    assert [r.status_code for r in responses] == [200, 200]
    tiers = {b.name: b.blob_tier for b in cc.list_blobs()}
    assert tiers["t1"] == tiers["t2"] == "Cool" and tiers["t3"] != "Cool"


def test_sub_requests_keep_their_conditions_and_leases(cc):
    cc.upload_blob("leased", b"x").acquire_lease(lease_duration=15)
    cc.upload_blob("tagged", b"x", tags={"k": "v"})
    cc.upload_blob("free", b"x")
    results = list(cc.delete_blobs("leased", "free", raise_on_any_failure=False))
    assert [(r.status_code, r.headers.get("x-ms-error-code")) for r in results] == [(412, "LeaseIdMissing"),
                                                                                   (202, None)]
    results = list(cc.delete_blobs("tagged", if_tags_match_condition="\"k\"='other'", raise_on_any_failure=False))
    assert results[0].status_code == 412
    assert sorted(names(cc)) == ["leased", "tagged"]
    BlobLeaseClient(cc.get_blob_client("leased")).break_lease(0)  # so the fixture can delete the container


def test_service_scope_batch_across_containers(svc):
    """SubmitBatch on the account (POST /account?comp=batch): sub-requests for blobs in any container."""
    one, two = svc.create_container(unique()), svc.create_container(unique())
    try:
        one.upload_blob("x", b"1")
        two.upload_blob("y", b"2")
        reqs1, _ = _generate_delete_blobs_options(one._query_str, one.container_name, one._client, "x",
                                                  url_prepend=one.account_name)
        reqs2, _ = _generate_delete_blobs_options(two._query_str, two.container_name, two._client, "y",
                                                  url_prepend=two.account_name)
        responses = list(svc._batch_send(*reqs1, *reqs2))
        assert [r.status_code for r in responses] == [202, 202]
        assert names(one) == [] and names(two) == []
    finally:
        one.delete_container()
        two.delete_container()


def test_host_style_sub_request_paths(svc, cc):
    """Against a host that is not local the SDK writes sub-request paths without the account
    (``/container/blob``) and signs them so; they name the same blobs."""
    cc.upload_blob("h", b"x")
    reqs, options = _generate_delete_blobs_options(cc._query_str, cc.container_name, cc._client, "h")
    responses = list(cc._batch_send(*reqs, **options))
    assert [r.status_code for r in responses] == [202]
    assert names(cc) == []


def test_each_sub_request_is_authorized_on_its_own(server, cc):
    for name in ("s1", "s2"):
        cc.upload_blob(name, b"x")
    # A container SAS that may delete: the batch and its sub-requests (the SDK puts the SAS on each).
    deleter = generate_container_sas(server.account_name, cc.container_name, account_key=server.account_key,
                                     permission=ContainerSasPermissions(delete=True), expiry=datetime.now(UTC) + HOUR)
    by_sas = ContainerClient.from_container_url(f"{cc.url}?{deleter}", retry_total=0)
    assert [r.status_code for r in by_sas.delete_blobs("s1")] == [202]
    # A SAS that may only read: the batch is accepted, each delete in it refused on its own.
    reader = generate_account_sas(server.account_name, server.account_key, ResourceTypes(container=True, object=True),
                                  AccountSasPermissions(read=True, list=True, write=True), datetime.now(UTC) + HOUR)
    by_reader = ContainerClient.from_container_url(f"{cc.url}?{reader}", retry_total=0)
    results = list(by_reader.delete_blobs("s2", raise_on_any_failure=False))
    assert [(r.status_code, r.headers.get("x-ms-error-code")) for r in results] == [
        (403, "AuthorizationPermissionMismatch")]
    # ...while set-tier (w) is allowed to it.
    assert [r.status_code for r in by_reader.set_standard_blob_tier_blobs("Cool", "s2")] == [200]
    assert names(cc) == ["s2"]


def raw_batch(server, path: str, body: bytes, boundary: str = "b") -> tuple[int, dict, bytes]:
    from api._blobutil import blob_signed
    return blob_signed(server, "POST", f"/{server.account_name}/{path}",
                       {"Content-Type": f"multipart/mixed; boundary={boundary}", "Content-Length": str(len(body))},
                       body=body)


def _sub(content_id: int, request_line: str, *headers: str) -> str:
    return ("--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {content_id}\r\n\r\n{request_line}\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n")


def _single_error(status: int, headers: dict, body: bytes) -> str:
    assert status == 202, body[:300]
    boundary = headers["content-type"].split("boundary=")[1]
    parts = body.split(f"--{boundary}".encode())
    assert len(parts) == 3 and parts[-1].strip() == b"--", body[:500]
    assert b"HTTP/1.1 400" in parts[1], parts[1][:300]
    return parts[1].split(b"x-ms-error-code: ")[1].split(b"\r\n")[0].decode()


def test_malformed_batches_are_answered_not_run(server, cc):
    cc.upload_blob("keep", b"x")
    acct, c = server.account_name, cc.container_name
    cases = {
        "InvalidInput": [
            "--b--\r\n",                                                  # no sub-request
            "garbage without a boundary",
            _sub(0, "DELETE /nothttp") + "--b--\r\n",                     # malformed request line
            _sub(0, f"GET /{acct}/{c}/keep HTTP/1.1") + "--b--\r\n",      # not a batch operation
            _sub(0, f"DELETE /{acct}/{unique()}/keep HTTP/1.1") + "--b--\r\n",  # outside the container
            "--b\r\nContent-Type: text/plain\r\nContent-ID: 0\r\n\r\n"
            f"DELETE /{acct}/{c}/keep HTTP/1.1\r\n\r\n--b--\r\n",          # a part that is not application/http
            _sub(0, f"DELETE /{acct}/{c}/keep HTTP/1.1"),                 # no closing delimiter
        ],
        "AllBatchSubRequestsShouldBeSameApi": [
            _sub(0, f"DELETE /{acct}/{c}/keep HTTP/1.1")
            + _sub(1, f"PUT /{acct}/{c}/keep?comp=tier HTTP/1.1", "x-ms-access-tier: Cool") + "--b--\r\n"],
        "ExceedsMaxBatchRequestCount": [
            "".join(_sub(i, f"DELETE /{acct}/{c}/n{i} HTTP/1.1") for i in range(257)) + "--b--\r\n"],
    }
    for code, bodies in cases.items():
        for body in bodies:
            status, headers, data = raw_batch(server, f"{c}?restype=container&comp=batch", body.encode())
            assert _single_error(status, headers, data) == code, body[:200]
    assert names(cc) == ["keep"]
    # The batch's own headers are checked before anything.
    from api._blobutil import blob_signed
    status, headers, _ = blob_signed(server, "POST", f"/{acct}/{c}?restype=container&comp=batch",
                                     {"Content-Type": "application/xml", "Content-Length": "0"})
    assert (status, headers.get("x-ms-error-code")) == (400, "InvalidHeaderValue")
    status, headers, _ = raw_batch(server, f"{unique()}?restype=container&comp=batch", b"--b--\r\n")
    assert (status, headers.get("x-ms-error-code")) == (404, "ContainerNotFound")
    status, headers, _ = blob_signed(server, "GET", f"/{acct}/?comp=batch")
    assert (status, headers.get("x-ms-error-code")) == (405, "UnsupportedHttpVerb")


def test_unsigned_sub_request_is_refused_alone(server, cc):
    """A sub-request without credentials is anonymous, whatever signed the batch."""
    cc.upload_blob("u", b"x")
    body = _sub(0, f"DELETE /{server.account_name}/{cc.container_name}/u HTTP/1.1", "Content-Length: 0") + "--b--\r\n"
    status, headers, data = raw_batch(server, f"{cc.container_name}?restype=container&comp=batch", body.encode())
    assert status == 202
    assert b"HTTP/1.1 401" in data and b"NoAuthenticationInformation" in data
    assert names(cc) == ["u"]


def test_anonymous_batch_refused(server, cc):
    conn = http.client.HTTPConnection("127.0.0.1", server.blob_port, timeout=30)
    try:
        conn.request("POST", f"/{server.account_name}/{cc.container_name}?restype=container&comp=batch",
                     body=b"--b--\r\n", headers={"Content-Type": "multipart/mixed; boundary=b",
                                                "x-ms-version": "2025-11-05"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401 and resp.getheader("x-ms-error-code") == "NoAuthenticationInformation"
    finally:
        conn.close()


def test_missing_container_batch(svc):
    with pytest.raises((ResourceNotFoundError, HttpResponseError)) as ei:
        list(svc.get_container_client(unique()).delete_blobs("x"))
    assert ei.value.status_code == 404


def test_aio_client_batches(server):
    """The aiohttp transport of the SDK parses the same multipart answer."""
    import asyncio

    from azure.storage.blob.aio import BlobServiceClient as AioService

    async def run() -> tuple[list[int], list[int]]:
        async with AioService.from_connection_string(server.connection_string, retry_total=0) as svc:
            cc = await svc.create_container(unique())
            try:
                for name in ("a", "b", "c"):
                    await cc.upload_blob(name, b"x")
                deleted = [r.status_code async for r in await cc.delete_blobs("a", "b", "gone",
                                                                             raise_on_any_failure=False)]
                tiered = [r.status_code async for r in await cc.set_standard_blob_tier_blobs("Cool", "c")]
                return deleted, tiered
            finally:
                await cc.delete_container()
    assert asyncio.run(run()) == ([202, 202, 404], [200])
