"""Copies from outside the account (another account on another host), with azure-storage-blob against
two real servers, and the guard against server-side request forgery: a source on a loopback,
private or link-local address is fetched only from networks the operator allowed."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from _blob_target import unique
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobBlock,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    generate_blob_sas,
)

from conftest import ServerProcess, free_port

HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """Another account on another endpoint: the copy source."""
    tmp = tmp_path_factory.mktemp("remoteacct")
    (tmp / "data").mkdir()
    srv = ServerProcess(tmp / "data", free_port(), free_port(), tmp / "server.log", account_name="remoteacct")
    srv.start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-5000:]


@pytest.fixture(scope="module")
def allowing(tmp_path_factory):
    """This account, configured to fetch copy sources from loopback (where the tests' remote is)."""
    tmp = tmp_path_factory.mktemp("allowing")
    (tmp / "data").mkdir()
    srv = ServerProcess(tmp / "data", free_port(), free_port(), tmp / "server.log",
                        env={"EXASTOR_COPY_SOURCE_NETWORKS": "127.0.0.0/8,::1/128"})
    srv.start()
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-5000:]


def client(server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


@pytest.fixture(scope="module")
def source(remote):
    """A private container on the remote with one blob, and a read SAS for it."""
    cc = client(remote).create_container(unique())
    data = bytes(range(256)) * 1000
    blob = cc.upload_blob("src.bin", data, metadata={"origin": "remote"},
                          content_settings=ContentSettings(content_type="application/x-test"))
    sas = generate_blob_sas(remote.account_name, cc.container_name, "src.bin", account_key=remote.account_key,
                            permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + HOUR)
    return blob, f"{blob.url}?{sas}", data


def error_of(fn) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    return ei.value.status_code, ei.value.error_code


@pytest.fixture
def dest(allowing):
    cc = client(allowing).create_container(unique())
    yield cc
    cc.delete_container()


def test_copy_blob_from_another_account(dest, source):
    _, url, data = source
    blob = dest.get_blob_client("copy")
    result = blob.start_copy_from_url(url)
    assert result["copy_status"] == "success"
    assert blob.download_blob().readall() == data
    props = blob.get_blob_properties()
    assert props.metadata == {"origin": "remote"} and props.content_settings.content_type == "application/x-test"
    assert props.copy.status == "success" and props.copy.source == url


def test_put_blob_from_url_another_account(dest, source):
    _, url, data = source
    blob = dest.get_blob_client("fromurl")
    blob.upload_blob_from_url(url)
    assert blob.download_blob().readall() == data
    assert blob.get_blob_properties().content_settings.content_md5 == hashlib.md5(data).digest()


def test_blocks_and_appends_from_another_account(dest, source):
    _, url, data = source
    blob = dest.get_blob_client("blocks")
    blob.stage_block_from_url("YQ==", url, source_offset=0, source_length=1000)
    blob.stage_block_from_url("Yg==", url, source_offset=5000, source_length=24)
    blob.commit_block_list([BlobBlock("YQ=="), BlobBlock("Yg==")])
    assert blob.download_blob().readall() == data[:1000] + data[5000:5024]
    app = dest.get_blob_client("app")
    app.create_append_blob()
    app.append_block_from_url(url, source_offset=100, source_length=50)
    app.append_block_from_url(url, source_offset=0, source_length=10)
    assert app.download_blob().readall() == data[100:150] + data[:10]


def test_source_answers_are_reported(dest, source, remote):
    blob, url, _ = source
    # No SAS on a private source: the remote refuses, and so does the copy.
    status, code = error_of(lambda: dest.get_blob_client("x").start_copy_from_url(blob.url))
    assert status in (403, 404) and code == "CannotVerifyCopySource"
    missing = url.replace("src.bin", "missing.bin")
    status, code = error_of(lambda: dest.get_blob_client("x").upload_blob_from_url(missing))
    assert code == "CannotVerifyCopySource" and status in (403, 404)
    # Source conditions are decided by the source's store.
    status, code = error_of(lambda: dest.get_blob_client("x").upload_blob_from_url(
        url, source_etag='"nope"', source_match_condition=MatchConditions.IfNotModified))
    assert (status, code) == (412, "SourceConditionNotMet")
    # A public source needs no SAS.
    pub = client(remote).create_container(unique(), public_access="blob")
    try:
        pub.upload_blob("open", b"public bytes")
        dest.get_blob_client("p").start_copy_from_url(pub.get_blob_client("open").url)
        assert dest.get_blob_client("p").download_blob().readall() == b"public bytes"
    finally:
        pub.delete_container()
    assert [b.name for b in dest.list_blobs()] == ["p"]


def test_ssrf_guard_refuses_inner_addresses(exastor_server, allowing, source):
    """Without copy_source_networks nothing on loopback, private or link-local addresses is fetched;
    with it, only the networks listed (the cloud metadata address stays refused)."""
    _, url, _ = source
    guarded = client(exastor_server).create_container(unique())
    try:
        targets = [
            url,                                                           # loopback, by address
            url.replace("127.0.0.1", "localhost"),                         # loopback, by name
            "http://169.254.169.254/latest/meta-data/iam/remoteacct/x",   # link-local: cloud metadata
            "http://10.1.2.3/remoteacct/c/b",                              # private
            "http://[::1]:1/remoteacct/c/b",
            "http://[::ffff:127.0.0.1]:1/remoteacct/c/b",                  # loopback in IPv6 clothing
            "ftp://example.com/remoteacct/c/b",                            # not http(s)
            "http://user:pw@example.com/remoteacct/c/b",
        ]
        for target in targets:
            status, code = error_of(lambda target=target: guarded.get_blob_client("x").start_copy_from_url(target))
            assert (status, code) == (403, "CannotVerifyCopySource"), target
            status, code = error_of(lambda target=target: guarded.get_blob_client("x").upload_blob_from_url(target))
            assert (status, code) == (403, "CannotVerifyCopySource"), target
        assert list(guarded.list_blobs()) == []
        allowed = client(allowing).create_container(unique())
        try:
            for target in targets[2:4]:
                status, code = error_of(lambda target=target: allowed.get_blob_client("x").start_copy_from_url(target))
                assert (status, code) == (403, "CannotVerifyCopySource"), target
        finally:
            allowed.delete_container()
    finally:
        guarded.delete_container()


def test_md5_of_fetched_block_is_reported(dest, source):
    _, url, data = source
    blob = dest.get_blob_client("md5")
    resp = blob.stage_block_from_url("Yw==", url, source_offset=0, source_length=256)
    assert bytes(resp["content_md5"]) == hashlib.md5(data[:256]).digest()


def test_copy_of_an_outside_append_blob_stays_one(dest, remote):
    cc = client(remote).create_container(unique())
    try:
        app = cc.get_blob_client("log")
        app.create_append_blob()
        app.append_block(b"one ")
        app.append_block(b"two")
        sas = generate_blob_sas(remote.account_name, cc.container_name, "log", account_key=remote.account_key,
                                permission=BlobSasPermissions(read=True), expiry=datetime.now(UTC) + HOUR)
        copy = dest.get_blob_client("log")
        copy.start_copy_from_url(f"{app.url}?{sas}")
        props = copy.get_blob_properties()
        assert props.blob_type == "AppendBlob" and props.append_blob_committed_block_count == 2
        copy.append_block(b" three")
        assert copy.download_blob().readall() == b"one two three"
    finally:
        cc.delete_container()


def test_source_content_md5_of_outside_sources(dest, source):
    _, url, data = source
    bad = hashlib.md5(b"other").digest()
    with pytest.raises(HttpResponseError) as ei:
        dest.get_blob_client("m").upload_blob_from_url(url, source_content_md5=bad)
    assert (ei.value.status_code, ei.value.error_code) == (400, "Md5Mismatch")
    with pytest.raises(HttpResponseError) as ei:
        dest.get_blob_client("m").stage_block_from_url("YQ==", url, source_offset=0, source_length=10,
                                                       source_content_md5=bad)
    assert ei.value.error_code == "Md5Mismatch"
    dest.get_blob_client("m").upload_blob_from_url(url, source_content_md5=hashlib.md5(data).digest())
    assert dest.get_blob_client("m").download_blob().readall() == data
