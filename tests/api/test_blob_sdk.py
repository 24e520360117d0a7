"""The Azure Blob API driven by azure-storage-blob (sync client), against the real server.

This module also runs unchanged against Azurite (bench/blob_compat.py sets
EXASTOR_BLOB_TEST_CONNECTION_STRING), which is how docs/compatibility-blob.md is kept honest.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from _blob_target import BlobTarget, external_target, unique
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.rest import HttpRequest
from azure.storage.blob import (
    AccessPolicy,
    AccountSasPermissions,
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    CorsRule,
    ResourceTypes,
    RetentionPolicy,
    StandardBlobTier,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)


@pytest.fixture(scope="module")
def target(request) -> BlobTarget:
    ext = external_target()
    if ext is not None:
        return ext
    server = request.getfixturevalue("exastor_server")
    return BlobTarget.from_connection_string(server.connection_string, is_exastor=True)


@pytest.fixture(scope="module")
def svc(target) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(target.connection_string, retry_total=0)


@pytest.fixture
def cc(svc) -> ContainerClient:
    client = svc.create_container(unique())
    yield client
    try:
        client.delete_container()
    except HttpResponseError:
        pass


def code_of(exc: HttpResponseError) -> str | None:
    return exc.error_code


def raw(client, method: str, url: str, *, headers: dict | None = None, body: bytes = b""):
    """A request through the SDK's pipeline (so Shared Key signs it) with headers we choose."""
    req = HttpRequest(method, url, headers={"x-ms-version": "2025-11-05", **(headers or {})}, content=body)
    resp = client._client._client.send_request(req, stream=True)
    resp.read()
    return resp


# --- service and containers ---------------------------------------------------------

def test_list_containers_prefix_marker_metadata(svc):
    base = unique("lc")
    names = [f"{base}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        svc.create_container(n, metadata={"idx": str(i)})
    try:
        listed = list(svc.list_containers(name_starts_with=base, include_metadata=True))
        assert [c.name for c in listed] == names
        assert [c.metadata["idx"] for c in listed] == ["0", "1", "2", "3", "4"]
        pages = svc.list_containers(name_starts_with=base, results_per_page=2).by_page()
        seen = [[c.name for c in page] for page in pages]
        assert seen == [names[:2], names[2:4], names[4:]]
    finally:
        for n in names:
            svc.delete_container(n)


def test_container_lifecycle_and_errors(svc):
    name = unique()
    cc = svc.create_container(name, metadata={"Owner": "team"})
    with pytest.raises(ResourceExistsError) as ei:
        svc.create_container(name)
    assert code_of(ei.value) == "ContainerAlreadyExists"
    props = cc.get_container_properties()
    assert props.name == name and {k.lower(): v for k, v in props.metadata.items()} == {"owner": "team"}
    assert props.lease.state == "available"
    cc.set_container_metadata({"stage": "two"})
    assert cc.get_container_properties().metadata == {"stage": "two"}
    cc.upload_blob("inside", b"x")
    cc.delete_container()  # deletes the blobs with it, as Azure does
    with pytest.raises(ResourceNotFoundError) as ei:
        cc.get_container_properties()
    assert code_of(ei.value) == "ContainerNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        svc.get_container_client(name).upload_blob("b", b"x")
    assert code_of(ei.value) == "ContainerNotFound"


def test_invalid_container_name(svc):
    with pytest.raises(HttpResponseError) as ei:
        svc.create_container("Bad_Name")
    assert code_of(ei.value) == "InvalidResourceName"


def test_account_information(svc):
    info = svc.get_account_information()
    assert info["sku_name"] and info["account_kind"]


def test_service_properties_roundtrip_and_cors(svc, target):
    before = svc.get_service_properties()
    rule = CorsRule(["https://app.example"], ["GET", "PUT"], allowed_headers=["x-ms-meta-*"],
                    exposed_headers=["x-ms-request-id"], max_age_in_seconds=300)
    try:
        svc.set_service_properties(cors=[rule])
        got = svc.get_service_properties()
        assert len(got["cors"]) == 1
        assert got["cors"][0].allowed_origins == "https://app.example"
        cc = svc.create_container(unique())
        try:
            url = f"{target.endpoint}/{cc.container_name}/x"
            ok = requests.options(url, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                                "Access-Control-Request-Headers": "x-ms-meta-a"}, timeout=10)
            assert ok.status_code == 200
            assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example"
            bad = requests.options(url, headers={"Origin": "https://evil.example",
                                                 "Access-Control-Request-Method": "PUT"}, timeout=10)
            assert bad.status_code == 403
        finally:
            cc.delete_container()
    finally:
        svc.set_service_properties(cors=before["cors"])


# --- block blobs: put/get/properties/metadata ----------------------------------------

def test_upload_download_properties_metadata(cc):
    data = os.urandom(100_000)
    bc = cc.get_blob_client("dir/file.bin")
    res = bc.upload_blob(data, metadata={"purpose": "test"},
                         content_settings=ContentSettings(content_type="application/x-test", cache_control="no-cache",
                                                          content_language="en", content_disposition="inline"))
    assert res["etag"] and res["last_modified"]
    assert bc.download_blob().readall() == data
    props = bc.get_blob_properties()
    assert props.size == len(data)
    assert props.blob_type == "BlockBlob"
    assert props.content_settings.content_type == "application/x-test"
    assert props.content_settings.cache_control == "no-cache"
    assert props.content_settings.content_language == "en"
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()
    assert props.metadata == {"purpose": "test"}
    assert props.etag == res["etag"]
    bc.set_blob_metadata({"k1": "v1", "CamelCase": "v2"})
    assert bc.get_blob_properties().metadata == {"k1": "v1", "CamelCase": "v2"}  # names keep their case
    assert {b.name: b.metadata for b in cc.list_blobs(include=["metadata"])}["dir/file.bin"]["CamelCase"] == "v2"
    bc.set_http_headers(ContentSettings(content_type="text/plain"))
    p2 = bc.get_blob_properties()
    assert p2.content_settings.content_type == "text/plain"
    assert p2.content_settings.cache_control is None  # Set Blob Properties replaces every content header


def test_empty_blob_and_overwrite_rules(cc):
    bc = cc.get_blob_client("empty")
    bc.upload_blob(b"")
    assert bc.download_blob().readall() == b""
    assert bc.get_blob_properties().size == 0
    with pytest.raises(ResourceExistsError) as ei:
        bc.upload_blob(b"again")
    assert code_of(ei.value) == "BlobAlreadyExists"
    bc.upload_blob(b"again", overwrite=True)
    assert bc.download_blob().readall() == b"again"


def test_blob_not_found_and_delete(cc):
    bc = cc.get_blob_client("missing")
    with pytest.raises(ResourceNotFoundError) as ei:
        bc.download_blob()
    assert code_of(ei.value) == "BlobNotFound"
    with pytest.raises(ResourceNotFoundError) as ei:
        bc.get_blob_properties()
    assert code_of(ei.value) == "BlobNotFound"
    bc.upload_blob(b"x")
    bc.delete_blob()
    assert not bc.exists()


def test_unicode_and_special_names(cc):
    names = ["a b/c+d", "ünï/cødé", "q?x=1&y", "percent%20sign", "tilde~bang!"]
    for n in names:
        cc.upload_blob(n, n.encode())
    for n in names:
        assert cc.download_blob(n).readall() == n.encode()
    assert sorted(b.name for b in cc.list_blobs()) == sorted(names)


# --- listing --------------------------------------------------------------------------

def test_list_flat_hierarchical_pagination(cc):
    keys = ["a/1", "a/2", "a/b/3", "b/4", "c"]
    for k in keys:
        cc.upload_blob(k, k.encode(), metadata={"name": k.replace("/", "_")})
    assert [b.name for b in cc.list_blobs()] == keys
    assert [b.name for b in cc.list_blobs(name_starts_with="a/")] == ["a/1", "a/2", "a/b/3"]
    top = [(b.name, type(b).__name__) for b in cc.walk_blobs()]
    assert top == [("a/", "BlobPrefix"), ("b/", "BlobPrefix"), ("c", "BlobProperties")]
    under_a = [b.name for b in cc.walk_blobs(name_starts_with="a/")]
    assert sorted(under_a) == ["a/1", "a/2", "a/b/"]  # the SDK puts a page's prefixes first
    pages = [[b.name for b in p] for p in cc.list_blobs(results_per_page=2).by_page()]
    assert pages == [keys[:2], keys[2:4], keys[4:]]
    with_meta = {b.name: b.metadata for b in cc.list_blobs(include=["metadata"])}
    assert with_meta["a/b/3"] == {"name": "a_b_3"}
    sizes = {b.name: b.size for b in cc.list_blobs()}
    assert sizes == {k: len(k) for k in keys}


# --- blocks ---------------------------------------------------------------------------

def _bid(i: int) -> str:
    return base64.b64encode(f"block-{i:06d}".encode()).decode()


def test_blocks_stage_commit_get_list(cc):
    bc = cc.get_blob_client("blocks")
    parts = [os.urandom(1000 + i) for i in range(4)]
    for i, p in enumerate(parts):
        bc.stage_block(_bid(i), p)
    committed, uncommitted = bc.get_block_list("all")
    assert committed == [] and sorted(b.id for b in uncommitted) == sorted(_bid(i) for i in range(4))
    assert {b.id: b.size for b in uncommitted} == {_bid(i): len(p) for i, p in enumerate(parts)}
    with pytest.raises(ResourceNotFoundError):
        bc.download_blob()  # nothing committed yet
    assert list(cc.list_blobs()) == []
    assert [b.name for b in cc.list_blobs(include=["uncommittedblobs"])] == ["blocks"]
    bc.commit_block_list([BlobBlock(_bid(2)), BlobBlock(_bid(0))],
                         content_settings=ContentSettings(content_type="text/x-blocks"), metadata={"m": "1"})
    assert bc.download_blob().readall() == parts[2] + parts[0]
    committed, uncommitted = bc.get_block_list("all")
    assert [b.id for b in committed] == [_bid(2), _bid(0)] and uncommitted == []  # discarded at commit
    props = bc.get_blob_properties()
    assert props.content_settings.content_type == "text/x-blocks" and props.metadata == {"m": "1"}
    # Reuse committed blocks (Latest falls back to committed) and add a new one.
    bc.stage_block(_bid(9), b"tail")
    bc.commit_block_list([BlobBlock(_bid(0)), BlobBlock(_bid(9)), BlobBlock(_bid(2))])
    assert bc.download_blob().readall() == parts[0] + b"tail" + parts[2]


def test_invalid_block_list_keeps_blob(cc):
    bc = cc.get_blob_client("keep")
    bc.upload_blob(b"original")
    bc.stage_block(_bid(1), b"one")
    with pytest.raises(HttpResponseError) as ei:
        bc.commit_block_list([BlobBlock(_bid(1)), BlobBlock(_bid(7))])
    assert code_of(ei.value) == "InvalidBlockList"
    assert bc.download_blob().readall() == b"original"  # nothing half-written


def test_invalid_block_id(cc):
    bc = cc.get_blob_client("badid")
    resp = raw(bc, "PUT", bc.url + "?comp=block&blockid=not*base64", headers={"Content-Length": "3"}, body=b"abc")
    assert resp.status_code == 400
    assert resp.headers["x-ms-error-code"] in ("InvalidBlockId", "InvalidQueryParameterValue")


def test_chunked_upload_uses_blocks(target):
    svc = BlobServiceClient.from_connection_string(target.connection_string, max_single_put_size=256 * 1024,
                                                   max_block_size=256 * 1024, retry_total=0)
    cc = svc.create_container(unique())
    try:
        data = os.urandom(1_000_000 + 17)
        bc = cc.get_blob_client("chunked")
        bc.upload_blob(data, max_concurrency=3)
        committed, _ = bc.get_block_list("committed")
        assert len(committed) == 4 and sum(b.size for b in committed) == len(data)
        assert bc.download_blob(max_concurrency=3).readall() == data
        # Ranged parallel download with small chunks
        svc2 = BlobServiceClient.from_connection_string(target.connection_string, max_chunk_get_size=100_000,
                                                        max_single_get_size=100_000)
        assert svc2.get_blob_client(cc.container_name, "chunked").download_blob(max_concurrency=4).readall() == data
    finally:
        cc.delete_container()


# --- conditions, ranges, integrity ----------------------------------------------------

def test_conditions(cc):
    bc = cc.get_blob_client("cond")
    etag = bc.upload_blob(b"v1")["etag"]
    with pytest.raises(ResourceModifiedError) as ei:
        bc.upload_blob(b"v2", overwrite=True, etag='"nope"', match_condition=_match("IfNotModified"))
    assert code_of(ei.value) == "ConditionNotMet"
    bc.upload_blob(b"v2", overwrite=True, etag=etag, match_condition=_match("IfNotModified"))
    assert bc.download_blob().readall() == b"v2"
    etag2 = bc.get_blob_properties().etag
    with pytest.raises(ResourceModifiedError):
        bc.download_blob(etag=etag, match_condition=_match("IfNotModified"))
    # If-None-Match on a read of an unchanged blob: 304
    with pytest.raises(HttpResponseError) as ei:
        bc.get_blob_properties(etag=etag2, match_condition=_match("IfModified"))
    assert ei.value.status_code == 304
    future = datetime.now(UTC) + timedelta(hours=1)
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ResourceModifiedError):
        bc.set_blob_metadata({"a": "b"}, if_unmodified_since=past)
    bc.set_blob_metadata({"a": "b"}, if_unmodified_since=future)
    with pytest.raises(ResourceModifiedError):
        bc.delete_blob(if_modified_since=future)
    bc.delete_blob(if_modified_since=past)


def test_metadata_and_properties_changes_change_the_etag(cc):
    """As in Azure: Set Blob Metadata / Properties give the blob a new ETag and Last-Modified, so
    If-Match with the ETag read before the change fails (metadata updates guard each other)."""
    bc = cc.get_blob_client("etags")
    data = b"same bytes"
    first = bc.upload_blob(data)
    time.sleep(1.1)  # Last-Modified has one-second resolution
    meta = bc.set_blob_metadata({"a": "1"}, etag=first["etag"], match_condition=_match("IfNotModified"))
    assert meta["etag"] != first["etag"] and meta["last_modified"] > first["last_modified"]
    props = bc.get_blob_properties()
    assert props.etag == meta["etag"] and props.last_modified == meta["last_modified"]
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()  # the body's MD5 stays
    with pytest.raises(ResourceModifiedError) as ei:
        bc.set_blob_metadata({"a": "2"}, etag=first["etag"], match_condition=_match("IfNotModified"))
    assert code_of(ei.value) == "ConditionNotMet"
    headers = bc.set_http_headers(ContentSettings(content_type="text/x-new", content_md5=props.content_settings.content_md5),
                                  etag=meta["etag"], match_condition=_match("IfNotModified"))
    assert headers["etag"] not in (first["etag"], meta["etag"])
    with pytest.raises(ResourceModifiedError):
        bc.set_http_headers(ContentSettings(content_type="text/x-lost"), etag=meta["etag"],
                            match_condition=_match("IfNotModified"))
    props = bc.get_blob_properties()
    assert props.etag == headers["etag"] and props.metadata == {"a": "1"}
    assert props.content_settings.content_type == "text/x-new"
    assert bc.download_blob().readall() == data


def _match(name: str):
    from azure.core import MatchConditions
    return getattr(MatchConditions, name)


def test_ranges_and_range_md5(cc):
    data = bytes(range(256)) * 100
    bc = cc.get_blob_client("ranged")
    bc.upload_blob(data)
    assert bc.download_blob(offset=10, length=20).readall() == data[10:30]
    assert bc.download_blob(offset=25_000).readall() == data[25_000:]
    got = bc.download_blob(offset=100, length=1000, validate_content=True).readall()
    assert got == data[100:1100]
    resp = raw(bc, "GET", bc.url, headers={"x-ms-range": "bytes=5-9", "x-ms-range-get-content-md5": "true"})
    assert resp.status_code == 206 and resp.content == data[5:10]
    assert resp.headers["Content-MD5"] == base64.b64encode(hashlib.md5(data[5:10]).digest()).decode()
    assert resp.headers["Content-Range"] == f"bytes 5-9/{len(data)}"
    bad = raw(bc, "GET", bc.url, headers={"x-ms-range": f"bytes={len(data) + 5}-{len(data) + 10}"})
    assert bad.status_code == 416 and bad.headers["x-ms-error-code"] == "InvalidRange"


def test_content_md5_and_crc64_verified(cc):
    bc = cc.get_blob_client("integrity")
    bc.upload_blob(b"checked", validate_content=True)
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    resp = raw(bc, "PUT", bc.url, headers={"x-ms-blob-type": "BlockBlob", "Content-MD5": wrong_md5}, body=b"data")
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "Md5Mismatch"
    resp = raw(bc, "PUT", bc.url + f"?comp=block&blockid={_bid(1)}",
               headers={"x-ms-content-crc64": base64.b64encode(b"\0" * 8).decode()}, body=b"data")
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] in ("Crc64Mismatch", "InvalidHeaderValue")
    from azure.storage.extensions import checksums
    good = base64.b64encode(checksums.crc64.compute(b"data", 0).to_bytes(8, "little")).decode()
    resp = raw(bc, "PUT", bc.url + f"?comp=block&blockid={_bid(1)}", headers={"x-ms-content-crc64": good},
               body=b"data")
    assert resp.status_code == 201
    assert bc.download_blob().readall() == b"checked"  # failed writes left the blob alone


def test_crc64_structured_messages(cc):
    """validate_content="crc64": streamed uploads and downloads travel as XSM/1.0 structured messages."""
    pytest.importorskip("azure.storage.extensions")
    data = os.urandom(5 * 1024 * 1024 + 123)  # more than one 4 MiB segment
    bc = cc.get_blob_client("crc64")
    bc.upload_blob(io.BytesIO(data), length=len(data), validate_content="crc64")
    assert bc.download_blob(validate_content="crc64").readall() == data
    part = bc.download_blob(offset=7, length=4_500_000, validate_content="crc64").readall()
    assert part == data[7:4_500_007]
    bc.stage_block(_bid(3), b"small block", validate_content="crc64")  # bytes: x-ms-content-crc64
    bc.commit_block_list([_bid(3)])
    assert bc.download_blob(validate_content="crc64").readall() == b"small block"


def test_every_response_has_request_id_and_version(cc):
    bc = cc.get_blob_client("hdrs")
    bc.upload_blob(b"x")
    for method, url in (("GET", bc.url), ("HEAD", bc.url), ("GET", bc.url + "-missing")):
        resp = raw(bc, method, url)
        assert resp.headers.get("x-ms-request-id") and resp.headers.get("x-ms-version")
        if resp.status_code < 300:
            assert resp.headers.get("ETag") and resp.headers.get("Last-Modified")


def test_request_body_too_large(cc, target):
    """An Append Block over 100 MiB is refused from its headers, before any byte of body is read."""
    import socket
    from email.utils import formatdate
    from urllib.parse import urlsplit

    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest as LegacyRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    cc.get_blob_client("huge").create_append_blob()
    url = f"{cc.url}/huge?comp=appendblock"
    req = LegacyRequest("PUT", url)
    req.headers.update({"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2025-11-05",
                        "Content-Length": str(200 << 20)})
    SharedKeyCredentialPolicy(target.account_name, target.account_key).on_request(
        PipelineRequest(req, PipelineContext(None)))
    parts = urlsplit(url)
    head = f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413")
    assert "x-ms-error-code: requestbodytoolarge" in reply.lower()


def test_page_blobs_refused_clearly(cc):
    with pytest.raises(HttpResponseError) as ei:
        cc.get_blob_client("disk.vhd").create_page_blob(512)
    assert ei.value.status_code in (400, 409)


# --- leases ---------------------------------------------------------------------------

def test_blob_lease_lifecycle(cc):
    bc = cc.get_blob_client("leased")
    bc.upload_blob(b"v1")
    lease = bc.acquire_lease(lease_duration=15)
    assert bc.get_blob_properties().lease.state == "leased"
    with pytest.raises(HttpResponseError) as ei:
        bc.upload_blob(b"v2", overwrite=True)
    assert ei.value.status_code == 412 and code_of(ei.value) == "LeaseIdMissing"
    bc.upload_blob(b"v2", overwrite=True, lease=lease)
    with pytest.raises(HttpResponseError) as ei:  # staging a block of a leased blob needs the id too
        bc.stage_block("YmxvY2sx", b"block")
    assert ei.value.status_code == 412 and code_of(ei.value) == "LeaseIdMissing"
    bc.stage_block("YmxvY2sx", b"block", lease=lease)
    with pytest.raises(HttpResponseError) as ei:
        bc.delete_blob()
    assert code_of(ei.value) == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as ei:
        bc.acquire_lease(lease_duration=15)
    assert code_of(ei.value) == "LeaseAlreadyPresent"
    lease.renew()
    old_id = lease.id
    new_id = "f3b0c442-98fc-4c5e-8f7e-7f7a2c8e9d01"
    lease.change(new_id)
    assert lease.id == new_id != old_id
    other = bc.get_blob_client() if hasattr(bc, "get_blob_client") else None
    del other
    from azure.storage.blob import BlobLeaseClient
    wrong = BlobLeaseClient(bc, lease_id="00000000-0000-0000-0000-000000000001")
    with pytest.raises(HttpResponseError) as ei:
        wrong.release()
    assert code_of(ei.value) == "LeaseIdMismatchWithLeaseOperation"
    lease.release()
    assert bc.get_blob_properties().lease.state == "available"
    lease2 = bc.acquire_lease(lease_duration=-1)
    assert lease2.break_lease(lease_break_period=0) == 0
    assert bc.get_blob_properties().lease.state == "broken"
    bc.delete_blob()


def test_container_lease(svc):
    cc = svc.create_container(unique())
    lease = cc.acquire_lease(lease_duration=-1)
    with pytest.raises(HttpResponseError) as ei:
        cc.delete_container()
    assert code_of(ei.value) == "LeaseIdMissing"
    assert cc.get_container_properties().lease.state == "leased"
    cc.delete_container(lease=lease)


# --- snapshots ------------------------------------------------------------------------

def test_snapshots(cc):
    bc = cc.get_blob_client("snap")
    bc.upload_blob(b"version one", metadata={"v": "1"})
    snap = bc.create_snapshot()
    bc.upload_blob(b"version two", overwrite=True)
    sc = cc.get_blob_client("snap", snapshot=snap["snapshot"])
    assert sc.download_blob().readall() == b"version one"
    assert sc.get_blob_properties().metadata == {"v": "1"}
    listed = [(b.name, b.snapshot) for b in cc.list_blobs(include=["snapshots"])]
    assert listed == [("snap", snap["snapshot"]), ("snap", None)]
    with pytest.raises(HttpResponseError) as ei:
        bc.delete_blob()
    assert code_of(ei.value) == "SnapshotsPresent"
    bc.delete_blob(delete_snapshots="only")
    assert [b.snapshot for b in cc.list_blobs(include=["snapshots"])] == [None]
    bc.create_snapshot()
    bc.delete_blob(delete_snapshots="include")
    assert list(cc.list_blobs(include=["snapshots"])) == []


# --- tags, tier -----------------------------------------------------------------------

def test_tags_and_find_by_tags(cc):
    a, b = cc.get_blob_client("tag-a"), cc.get_blob_client("tag-b")
    a.upload_blob(b"a", tags={"project": "alpha", "stage": "raw"})
    b.upload_blob(b"b")
    b.set_blob_tags({"project": "beta", "stage": "raw"})
    assert a.get_blob_tags() == {"project": "alpha", "stage": "raw"}
    assert b.get_blob_properties().tag_count == 2
    found = sorted(x.name for x in cc.find_blobs_by_tags("\"stage\"='raw'"))
    assert found == ["tag-a", "tag-b"]
    assert [x.name for x in cc.find_blobs_by_tags("\"project\"='beta' AND \"stage\"='raw'")] == ["tag-b"]
    listed = {x.name: x.tags for x in cc.list_blobs(include=["tags"])}
    assert listed["tag-a"] == {"project": "alpha", "stage": "raw"}
    with pytest.raises(ResourceModifiedError):
        a.set_blob_metadata({"x": "y"}, if_tags_match_condition="\"project\"='beta'")
    a.set_blob_metadata({"x": "y"}, if_tags_match_condition="\"project\"='alpha'")
    assert a.download_blob(if_tags_match_condition="\"stage\"='raw'").readall() == b"a"
    with pytest.raises(ResourceModifiedError):
        a.download_blob(if_tags_match_condition="\"stage\"='done'")


def test_set_tier_recorded(cc):
    bc = cc.get_blob_client("tier")
    bc.upload_blob(b"x")
    bc.set_standard_blob_tier(StandardBlobTier.COOL)
    assert bc.get_blob_properties().blob_tier == "Cool"
    assert bc.download_blob().readall() == b"x"


# --- copy -----------------------------------------------------------------------------

def test_copy_blob_sync_and_from_url(cc):
    src = cc.get_blob_client("src")
    data = os.urandom(50_000)
    src.upload_blob(data, metadata={"origin": "src"}, content_settings=ContentSettings(content_type="image/png"))
    dst = cc.get_blob_client("dst")
    result = dst.start_copy_from_url(src.url)
    assert result["copy_status"] == "success"
    props = dst.get_blob_properties()
    assert props.copy.status == "success" and props.metadata == {"origin": "src"}
    assert props.copy.id == result["copy_id"]
    listed = {b.name: b for b in cc.list_blobs(include=["copy"])}
    assert listed["dst"].copy.status == "success" and listed["dst"].copy.id == result["copy_id"]
    assert props.content_settings.content_type == "image/png"
    assert dst.download_blob().readall() == data
    dst2 = cc.get_blob_client("dst2")
    dst2.upload_blob_from_url(src.url)
    assert dst2.download_blob().readall() == data
    dst3 = cc.get_blob_client("dst3")
    dst3.stage_block_from_url(_bid(0), src.url, source_offset=100, source_length=1000)
    dst3.stage_block(_bid(1), b"!")
    dst3.commit_block_list([_bid(0), _bid(1)])
    assert dst3.download_blob().readall() == data[100:1100] + b"!"


# --- append blobs ---------------------------------------------------------------------

def test_append_blob(cc):
    ab = cc.get_blob_client("log")
    ab.create_append_blob(metadata={"kind": "log"})
    r1 = ab.append_block(b"line1\n")
    r2 = ab.append_block(b"line2\n")
    assert r1["blob_append_offset"] == "0" and r2["blob_append_offset"] == "6"
    assert r2["blob_committed_block_count"] == 2
    assert ab.download_blob().readall() == b"line1\nline2\n"
    props = ab.get_blob_properties()
    assert props.blob_type == "AppendBlob" and props.size == 12
    with pytest.raises(HttpResponseError) as ei:
        ab.append_block(b"x", appendpos_condition=5)
    assert ei.value.status_code == 412 and code_of(ei.value) == "AppendPositionConditionNotMet"
    with pytest.raises(HttpResponseError) as ei:
        ab.append_block(b"xyz", maxsize_condition=13)
    assert code_of(ei.value) == "MaxBlobSizeConditionNotMet"
    ab.append_block(b"ok", appendpos_condition=12)
    ab.seal_append_blob()
    with pytest.raises(HttpResponseError) as ei:
        ab.append_block(b"late")
    assert code_of(ei.value) == "BlobIsSealed"
    assert ab.download_blob().readall() == b"line1\nline2\nok"
    bb = cc.get_blob_client("block")
    bb.upload_blob(b"block")
    with pytest.raises(HttpResponseError) as ei:
        bb.append_block(b"x")
    assert code_of(ei.value) == "InvalidBlobType"


# --- soft delete ----------------------------------------------------------------------

def test_soft_delete_and_undelete(svc, cc):
    before = svc.get_service_properties()["delete_retention_policy"]
    svc.set_service_properties(delete_retention_policy=RetentionPolicy(enabled=True, days=2))
    try:
        time.sleep(0.1)
        bc = cc.get_blob_client("soft")
        bc.upload_blob(b"keep me")
        bc.delete_blob()
        assert not bc.exists()
        deleted = [(b.name, b.deleted) for b in cc.list_blobs(include=["deleted"])]
        assert ("soft", True) in deleted
        bc.undelete_blob()
        assert bc.download_blob().readall() == b"keep me"
    finally:
        svc.set_service_properties(delete_retention_policy=before)


# --- ACL, public access, SAS ----------------------------------------------------------

def test_container_acl_and_public_access(svc, target):
    cc = svc.create_container(unique())
    try:
        cc.upload_blob("pub", b"public bytes")
        anon_blob = BlobClient(f"{target.endpoint}", cc.container_name, "pub")
        with pytest.raises(HttpResponseError):
            anon_blob.download_blob()
        start = datetime.now(UTC) - timedelta(minutes=5)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        cc.set_container_access_policy({"readers": AccessPolicy(permission="r", start=start, expiry=expiry)},
                                       public_access="blob")
        acl = cc.get_container_access_policy()
        assert acl["public_access"] == "blob"
        assert [i.id for i in acl["signed_identifiers"]] == ["readers"]
        assert acl["signed_identifiers"][0].access_policy.permission == "r"
        assert anon_blob.download_blob().readall() == b"public bytes"
        anon_container = ContainerClient(target.endpoint, cc.container_name)
        with pytest.raises(HttpResponseError):
            list(anon_container.list_blobs())  # 'blob' level: no listing
        cc.set_container_access_policy({}, public_access="container")
        assert [b.name for b in anon_container.list_blobs()] == ["pub"]
        with pytest.raises(HttpResponseError):
            anon_container.upload_blob("anon-write", b"x")
    finally:
        cc.delete_container()


def test_service_sas(cc, target):
    bc = cc.get_blob_client("sas")
    bc.upload_blob(b"sas bytes")
    expiry = datetime.now(UTC) + timedelta(hours=1)
    read = generate_blob_sas(target.account_name, cc.container_name, "sas", account_key=target.account_key,
                             permission=BlobSasPermissions(read=True), expiry=expiry)
    client = BlobClient.from_blob_url(f"{bc.url}?{read}")
    assert client.download_blob().readall() == b"sas bytes"
    typed = generate_blob_sas(target.account_name, cc.container_name, "sas", account_key=target.account_key,
                              permission=BlobSasPermissions(read=True), expiry=expiry, content_type="text/csv",
                              content_disposition="attachment")
    got = requests.get(f"{bc.url}?{typed}", timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"] == "text/csv"
    assert got.headers["Content-Disposition"] == "attachment"
    with pytest.raises(HttpResponseError) as ei:
        client.upload_blob(b"nope", overwrite=True)
    assert ei.value.status_code == 403
    expired = generate_blob_sas(target.account_name, cc.container_name, "sas", account_key=target.account_key,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(UTC) - timedelta(minutes=1))
    with pytest.raises(HttpResponseError) as ei:
        BlobClient.from_blob_url(f"{bc.url}?{expired}").download_blob()
    assert ei.value.status_code == 403
    forged = read.replace("sig=", "sig=AAAA")
    with pytest.raises(HttpResponseError) as ei:
        BlobClient.from_blob_url(f"{bc.url}?{forged}").download_blob()
    assert ei.value.status_code == 403
    wrong_ip = generate_blob_sas(target.account_name, cc.container_name, "sas", account_key=target.account_key,
                                 permission=BlobSasPermissions(read=True), expiry=expiry, ip="10.1.2.3")
    with pytest.raises(HttpResponseError) as ei:
        BlobClient.from_blob_url(f"{bc.url}?{wrong_ip}").download_blob()
    assert ei.value.status_code == 403
    write = generate_container_sas(target.account_name, cc.container_name, account_key=target.account_key,
                                   permission=ContainerSasPermissions(write=True, create=True, list=True),
                                   expiry=expiry)
    wc = ContainerClient.from_container_url(f"{cc.url}?{write}")
    wc.upload_blob("via-sas", b"w")
    assert "via-sas" in [b.name for b in wc.list_blobs()]


def test_stored_access_policy_sas(cc, target):
    cc.upload_blob("pol", b"policy")
    cc.set_container_access_policy({"p1": AccessPolicy(permission="r",
                                                       expiry=datetime.now(UTC) + timedelta(hours=1))})
    time.sleep(0.2)
    token = generate_blob_sas(target.account_name, cc.container_name, "pol", account_key=target.account_key,
                              policy_id="p1")
    url = f"{cc.url}/pol?{token}"
    assert BlobClient.from_blob_url(url).download_blob().readall() == b"policy"
    unknown = generate_blob_sas(target.account_name, cc.container_name, "pol", account_key=target.account_key,
                                policy_id="nope")
    with pytest.raises(HttpResponseError):
        BlobClient.from_blob_url(f"{cc.url}/pol?{unknown}").download_blob()


def test_account_sas(svc, target):
    token = generate_account_sas(target.account_name, target.account_key,
                                 resource_types=ResourceTypes(service=True, container=True, object=True),
                                 permission=AccountSasPermissions(read=True, list=True, write=True, create=True,
                                                                  delete=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    sas_svc = BlobServiceClient(target.endpoint, credential=token)
    name = unique()
    cc = sas_svc.create_container(name)
    cc.upload_blob("x", b"account sas")
    assert cc.download_blob("x").readall() == b"account sas"
    assert name in [c.name for c in sas_svc.list_containers(name_starts_with=name)]
    only_objects = generate_account_sas(target.account_name, target.account_key,
                                        resource_types=ResourceTypes(object=True),
                                        permission=AccountSasPermissions(read=True, list=True),
                                        expiry=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(HttpResponseError) as ei:
        list(BlobServiceClient(target.endpoint, credential=only_objects).list_containers())
    assert ei.value.status_code == 403
    cc.delete_container()


def test_wrong_account_key_rejected(target):
    bad = BlobServiceClient.from_connection_string(
        target.connection_string.replace(target.account_key, base64.b64encode(b"k" * 64).decode()), retry_total=0)
    with pytest.raises(HttpResponseError) as ei:
        list(bad.list_containers())
    assert ei.value.status_code == 403 and code_of(ei.value) == "AuthenticationFailed"
