"""Listing and names as Azure answers them, with azure-storage-blob against the real server:
continuation markers, include= values, uncommitted and sealed blobs, and the errors for container
names no container can have."""

from __future__ import annotations

import pytest
from _blob_target import unique
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from api.test_blob_sdk import raw


@pytest.fixture(scope="module")
def svc(exastor_server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(exastor_server.connection_string, retry_total=0)


@pytest.fixture
def cc(svc):
    client = svc.create_container(unique())
    yield client
    client.delete_container()


def error_of(fn) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    return ei.value.status_code, ei.value.error_code


def test_markers_walk_every_blob_once(cc):
    names = [f"d{i // 4}/f{i:02d}" for i in range(13)] + ["top"]
    for name in names:
        cc.upload_blob(name, b"x")
    pages = list(cc.list_blobs(results_per_page=3).by_page())
    flat = [b.name for page in pages for b in page]
    assert flat == sorted(names) and len(pages) == 5
    # Hierarchical: prefixes count toward a page, and a marker resumes after them.
    walked = [item.name for page in cc.walk_blobs(delimiter="/", results_per_page=2).by_page() for item in page]
    assert walked == ["d0/", "d1/", "d2/", "d3/", "top"]
    url = f"{cc.url}?restype=container&comp=list&marker=not-a-marker"
    resp = raw(cc, "GET", url)
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "InvalidQueryParameterValue"


def test_include_values(svc, cc):
    cc.upload_blob("b", b"x", metadata={"k": "v"}, tags={"t": "1"})
    base = f"{cc.url}?restype=container&comp=list"
    assert raw(cc, "GET", base + "&include=").status_code == 200  # an empty include is no include
    for good in ("metadata", "snapshots,metadata,tags", "uncommittedblobs,copy,deleted", "deleted,tags"):
        assert raw(cc, "GET", f"{base}&include={good}").status_code == 200, good
    for bad in ("bogus", "metadata,bogus"):
        resp = raw(cc, "GET", f"{base}&include={bad}")
        assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "InvalidQueryParameterValue", bad
    listed = next(iter(cc.list_blobs(include=["metadata", "tags"])))
    assert listed.metadata == {"k": "v"} and listed.tags == {"t": "1"}
    # List Containers: its own include values.
    assert raw(svc, "GET", f"{svc.url}?comp=list&include=metadata").status_code == 200
    resp = raw(svc, "GET", f"{svc.url}?comp=list&include=snapshots")
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "InvalidQueryParameterValue"


def test_uncommitted_and_sealed_blobs_listed(cc):
    cc.upload_blob("committed", b"x")
    cc.get_blob_client("staged").stage_block("YQ==", b"a")
    app = cc.get_blob_client("sealed")
    app.create_append_blob()
    app.seal_append_blob()
    assert sorted(b.name for b in cc.list_blobs()) == ["committed", "sealed"]
    listed = {b.name: b for b in cc.list_blobs(include=["uncommittedblobs"])}
    assert sorted(listed) == ["committed", "sealed", "staged"]
    assert listed["staged"].size == 0
    assert listed["sealed"].is_append_blob_sealed is True
    assert listed["committed"].blob_tier == "Hot" and listed["committed"].blob_tier_inferred is True


def test_container_names_no_container_can_have(svc):
    for name, code in (("Bad_Name", "InvalidResourceName"), ("ab", "OutOfRangeInput"),
                       ("a" * 64, "OutOfRangeInput"), ("bad--dash", "InvalidResourceName"),
                       ("-lead", "InvalidResourceName")):
        assert error_of(lambda name=name: svc.create_container(name)) == (400, code), name
    # Reading, listing or writing under a name no container can have: the same answers, not 404.
    assert error_of(lambda: svc.get_container_client("Bad_Name").get_container_properties()) == \
        (400, "InvalidResourceName")
    assert error_of(lambda: list(svc.get_container_client("UPPER").list_blobs())) == (400, "InvalidResourceName")
    assert error_of(lambda: svc.get_blob_client("x_y", "b").upload_blob(b"x")) == (400, "InvalidResourceName")
    assert error_of(lambda: svc.get_container_client("ab").get_container_properties()) == (400, "OutOfRangeInput")
    # A well-formed name that does not exist is still 404, and S3's dotted bucket names are reachable.
    assert error_of(lambda: svc.get_container_client(unique()).get_container_properties()) == \
        (404, "ContainerNotFound")
    assert error_of(lambda: svc.get_container_client("has.dots").get_container_properties()) == \
        (404, "ContainerNotFound")
