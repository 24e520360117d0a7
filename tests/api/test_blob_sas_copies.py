"""Account SAS from the current azure-storage-blob, the account's second key, and copies authorized
by account or blob SAS, against a real server started with a second key (``--account-key2``).

Azure accepts Shared Key and SAS signed with either of an account's two keys; a copy's source is
read with its own credentials (a SAS in its URL, or public access), and the destination with the
request's (Shared Key, an account SAS, or a SAS for the destination blob).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from _blob_target import unique
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

from conftest import start_server

KEY2 = base64.b64encode(bytes(range(64))).decode()
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("blobsas"), "--account-key2", KEY2)
    yield srv
    srv.stop()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-5000:]


@pytest.fixture(scope="module")
def svc(server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string, retry_total=0)


@pytest.fixture
def cc(svc):
    client = svc.create_container(unique())
    yield client
    client.delete_container()


def account_sas(server, key: str, *, perms: str = "rwdlac", types: str = "sco", **kw) -> str:
    return generate_account_sas(server.account_name, key, ResourceTypes.from_string(types),
                                AccountSasPermissions.from_string(perms), datetime.now(UTC) + HOUR, **kw)


def blob_sas(server, container: str, blob: str, perms: str, key: str | None = None) -> str:
    return generate_blob_sas(server.account_name, container, blob, account_key=key or server.account_key,
                             permission=BlobSasPermissions.from_string(perms), expiry=datetime.now(UTC) + HOUR)


def test_account_sas_every_field_current_sdk(server, cc):
    """An account SAS with start, IP range, protocol and every permission letter the SDK knows."""
    cc.upload_blob("a", b"account sas")
    token = account_sas(server, server.account_key, perms="rwdxylacuptfi", start=datetime.now(UTC) - HOUR,
                        ip="0.0.0.0-255.255.255.255", protocol="https,http")
    sas_svc = BlobServiceClient(server.blob_endpoint, credential=token, retry_total=0)
    assert sas_svc.get_blob_client(cc.container_name, "a").download_blob().readall() == b"account sas"
    assert cc.container_name in [c.name for c in sas_svc.list_containers(name_starts_with=cc.container_name)]
    sas_svc.get_blob_client(cc.container_name, "b").upload_blob(b"new")
    assert sas_svc.get_service_properties() is not None  # srt=s


def test_second_key_signs_shared_key_and_every_sas(server, cc):
    cc.upload_blob("k2", b"second key")
    conn2 = server.connection_string.replace(server.account_key, KEY2)
    by_key2 = BlobServiceClient.from_connection_string(conn2, retry_total=0)
    assert by_key2.get_blob_client(cc.container_name, "k2").download_blob().readall() == b"second key"
    token = account_sas(server, KEY2, perms="rl")
    assert BlobClient.from_blob_url(f"{cc.url}/k2?{token}").download_blob().readall() == b"second key"
    ctoken = generate_container_sas(server.account_name, cc.container_name, account_key=KEY2,
                                    permission=ContainerSasPermissions(read=True, list=True),
                                    expiry=datetime.now(UTC) + HOUR)
    assert [b.name for b in BlobServiceClient(server.blob_endpoint, credential=ctoken)
            .get_container_client(cc.container_name).list_blobs()] == ["k2"]
    btoken = blob_sas(server, cc.container_name, "k2", "r", key=KEY2)
    assert BlobClient.from_blob_url(f"{cc.url}/k2?{btoken}").download_blob().readall() == b"second key"
    # A third key is still nobody's.
    stranger = base64.b64encode(b"z" * 64).decode()
    with pytest.raises(HttpResponseError) as ei:
        BlobClient.from_blob_url(f"{cc.url}/k2?{account_sas(server, stranger, perms='r')}").download_blob()
    assert ei.value.status_code == 403 and ei.value.error_code == "AuthenticationFailed"
    with pytest.raises(HttpResponseError) as ei:
        BlobServiceClient.from_connection_string(server.connection_string.replace(server.account_key, stranger),
                                                 retry_total=0).get_service_properties()
    assert ei.value.status_code == 403 and ei.value.error_code == "AuthenticationFailed"


def test_copies_authorized_by_account_sas(server, cc):
    src = cc.upload_blob("src", b"copy me" * 100)
    token = account_sas(server, server.account_key, perms="rwc", types="o")
    token2 = account_sas(server, KEY2, perms="r", types="o")
    sas_svc = BlobServiceClient(server.blob_endpoint, credential=token, retry_total=0)
    dest = sas_svc.get_blob_client(cc.container_name, "dst")
    assert dest.start_copy_from_url(f"{src.url}?{token2}")["copy_status"] == "success"
    assert cc.get_blob_client("dst").download_blob().readall() == b"copy me" * 100
    sas_svc.get_blob_client(cc.container_name, "dst2").upload_blob_from_url(f"{src.url}?{token}")
    assert cc.get_blob_client("dst2").download_blob().readall() == b"copy me" * 100
    staged = sas_svc.get_blob_client(cc.container_name, "dst3")
    staged.stage_block_from_url("YmxvY2sx", f"{src.url}?{token}", source_offset=0, source_length=7)
    staged.commit_block_list([BlobBlock("YmxvY2sx")])
    assert cc.get_blob_client("dst3").download_blob().readall() == b"copy me"
    # Under a SAS the source needs credentials of its own: a private source without one is refused.
    with pytest.raises(HttpResponseError) as ei:
        sas_svc.get_blob_client(cc.container_name, "dst4").start_copy_from_url(src.url)
    assert ei.value.status_code == 403 and ei.value.error_code == "CannotVerifyCopySource"
    # A source SAS that does not allow reading does not either.
    no_read = account_sas(server, server.account_key, perms="w", types="o")
    with pytest.raises(HttpResponseError) as ei:
        sas_svc.get_blob_client(cc.container_name, "dst5").start_copy_from_url(f"{src.url}?{no_read}")
    assert ei.value.status_code == 403


def test_copies_authorized_by_blob_sas(server, cc):
    src = cc.upload_blob("src", b"blob sas copy")
    read_src = blob_sas(server, cc.container_name, "src", "r")
    write_dst = blob_sas(server, cc.container_name, "dst", "cw", key=KEY2)
    dest = BlobClient.from_blob_url(f"{cc.url}/dst?{write_dst}", retry_total=0)
    assert dest.start_copy_from_url(f"{src.url}?{read_src}")["copy_status"] == "success"
    assert cc.get_blob_client("dst").download_blob().readall() == b"blob sas copy"
    dest.upload_blob_from_url(f"{src.url}?{read_src}", overwrite=True)
    # The destination's SAS is for dst only: it neither writes another blob...
    other = BlobClient.from_blob_url(f"{cc.url}/other?{write_dst}", retry_total=0)
    with pytest.raises(HttpResponseError) as ei:
        other.start_copy_from_url(f"{src.url}?{read_src}")
    assert ei.value.status_code == 403
    # ...nor reads a source that has no SAS of its own (a SAS for one blob never reads another).
    with pytest.raises(HttpResponseError) as ei:
        dest.start_copy_from_url(src.url)
    assert ei.value.status_code == 403 and ei.value.error_code == "CannotVerifyCopySource"
    # A public source needs no SAS.
    pub = unique()
    public = BlobServiceClient.from_connection_string(server.connection_string).create_container(
        pub, public_access="blob")
    try:
        public.upload_blob("open", b"public bytes")
        dest.start_copy_from_url(public.get_blob_client("open").url)
        assert cc.get_blob_client("dst").download_blob().readall() == b"public bytes"
    finally:
        public.delete_container()


def test_source_content_md5_checked(cc):
    """x-ms-source-content-md5 on Put Blob / Block / Append Block From URL: the source's bytes (the
    range copied) must have that MD5, or nothing is written (400 Md5Mismatch)."""
    import hashlib

    data = b"0123456789" * 100
    src = cc.upload_blob("src", data)
    good, bad = hashlib.md5(data[:100]).digest(), hashlib.md5(b"other").digest()
    blob = cc.get_blob_client("b")
    with pytest.raises(HttpResponseError) as ei:
        blob.stage_block_from_url("YQ==", src.url, source_offset=0, source_length=100, source_content_md5=bad)
    assert (ei.value.status_code, ei.value.error_code) == (400, "Md5Mismatch")
    blob.stage_block_from_url("YQ==", src.url, source_offset=0, source_length=100, source_content_md5=good)
    with pytest.raises(HttpResponseError) as ei:
        cc.get_blob_client("whole").upload_blob_from_url(src.url, source_content_md5=bad)
    assert ei.value.error_code == "Md5Mismatch"
    cc.get_blob_client("whole").upload_blob_from_url(src.url, source_content_md5=hashlib.md5(data).digest())
    app = cc.get_blob_client("app")
    app.create_append_blob()
    with pytest.raises(HttpResponseError) as ei:
        app.append_block_from_url(src.url, source_offset=0, source_length=100, source_content_md5=bad)
    assert ei.value.error_code == "Md5Mismatch"
    app.append_block_from_url(src.url, source_offset=0, source_length=100, source_content_md5=good)
    assert app.download_blob().readall() == data[:100]
