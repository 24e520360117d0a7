"""The authorization holes of issue 12, each driven with real clients against a live server.

Every test here passed at the issue's main (so failed to protect anything): a SAS for one blob copied
any other blob of the account in, a create-only SAS overwrote, Shared Key requests dated 2001 were
served, multipart uploads skipped the bucket policy and ACLs, and X-Forwarded-For from loopback moved
the client address a SAS's sip and a policy's aws:SourceIp are checked against."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from _blob_target import unique
from _blobutil import blob_signed
from _s3util import code, status
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import (
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from botocore.exceptions import ClientError


@pytest.fixture(scope="module")
def svc(exastor_server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(exastor_server.connection_string)


def _sas(server, container: str, blob: str, **perms: bool) -> str:
    return generate_blob_sas(server.account_name, container, blob, account_key=server.account_key,
                             permission=BlobSasPermissions(**perms), expiry=datetime.now(UTC) + timedelta(hours=1))


def _error_code(exc: HttpResponseError) -> str | None:
    return exc.response.headers.get("x-ms-error-code") if exc.response is not None else None


# --- Shared Key dates -------------------------------------------------------------------------------

@pytest.mark.parametrize("date", ["Mon, 01 Jan 2001 00:00:00 GMT", "garbage", "Fri, 01 Jan 2100 00:00:00 GMT"])
def test_shared_key_request_must_be_current(exastor_server, date):
    """A captured request cannot be replayed later: Azure allows 15 minutes either way."""
    status_code, headers, _ = blob_signed(exastor_server, "GET", f"/{exastor_server.account_name}/?comp=list",
                                          date=date)
    assert status_code == 403 and headers.get("x-ms-error-code") == "AuthenticationFailed"
    assert blob_signed(exastor_server, "GET", f"/{exastor_server.account_name}/?comp=list")[0] == 200


# --- copy sources are read with their own credentials -----------------------------------------------

@pytest.fixture
def drop_and_secret(svc):
    """A container the attacker has a SAS into, and a private one they have nothing for."""
    drop, private = svc.create_container(unique("drop")), svc.create_container(unique("private"))
    drop.upload_blob("mine", b"my own bytes")
    private.upload_blob("secret.bin", b"the private weights")
    drop.get_blob_client("appendable").create_append_blob()
    yield drop, private
    drop.delete_container()
    private.delete_container()


def _as_sas(bc: BlobClient, server, **perms: bool) -> BlobClient:
    return BlobClient.from_blob_url(f"{bc.url}?{_sas(server, bc.container_name, bc.blob_name, **perms)}")


def test_sas_for_one_blob_cannot_copy_another_in(exastor_server, drop_and_secret):
    drop, private = drop_and_secret
    secret_url = private.get_blob_client("secret.bin").url
    mine = _as_sas(drop.get_blob_client("mine"), exastor_server, read=True, write=True, create=True)
    attempts = {
        "CopyBlob": lambda: mine.start_copy_from_url(secret_url, requires_sync=False),
        "PutBlobFromURL": lambda: mine.upload_blob_from_url(secret_url, overwrite=True),
        "PutBlockFromURL": lambda: mine.stage_block_from_url("QUJD", secret_url),
        "AppendBlockFromURL": lambda: _as_sas(drop.get_blob_client("appendable"), exastor_server,
                                              read=True, write=True, add=True).append_block_from_url(secret_url),
    }
    for name, attempt in attempts.items():
        with pytest.raises(HttpResponseError) as ei:
            attempt()
        assert ei.value.status_code == 403 and _error_code(ei.value) == "CannotVerifyCopySource", name
    assert drop.download_blob("mine").readall() == b"my own bytes"
    assert drop.download_blob("appendable").readall() == b""
    # The source's own SAS (read) opens it, as in Azure
    readable = f"{secret_url}?{_sas(exastor_server, private.container_name, 'secret.bin', read=True)}"
    mine.upload_blob_from_url(readable, overwrite=True)
    assert drop.download_blob("mine").readall() == b"the private weights"
    # ... but a SAS for another blob in the URL does not
    wrong = f"{secret_url}?{_sas(exastor_server, drop.container_name, 'mine', read=True)}"
    with pytest.raises(HttpResponseError) as ei:
        mine.start_copy_from_url(wrong, requires_sync=False)
    assert _error_code(ei.value) == "CannotVerifyCopySource"


def test_public_source_and_shared_key_copies_still_work(exastor_server, svc, drop_and_secret):
    drop, private = drop_and_secret
    secret_url = private.get_blob_client("secret.bin").url
    # the account key may copy within its own account (Azure allows Shared Key there)
    drop.get_blob_client("by-key").start_copy_from_url(secret_url)
    assert drop.download_blob("by-key").readall() == b"the private weights"
    private.set_container_access_policy({}, public_access="blob")
    mine = _as_sas(drop.get_blob_client("mine"), exastor_server, write=True, create=True)
    mine.start_copy_from_url(secret_url)
    assert drop.download_blob("mine").readall() == b"the private weights"


# --- create-only SAS ----------------------------------------------------------------------------------

def test_create_only_sas_never_overwrites(exastor_server, svc, drop_and_secret):
    drop, _ = drop_and_secret
    existing = _as_sas(drop.get_blob_client("mine"), exastor_server, create=True)
    with pytest.raises(HttpResponseError) as ei:
        existing.upload_blob(b"overwritten", overwrite=True)
    assert ei.value.status_code == 403 and _error_code(ei.value) == "AuthorizationPermissionMismatch"
    existing.stage_block("QUJD", b"staged")  # staging replaces nothing ...
    with pytest.raises(HttpResponseError) as ei:  # ... committing over the blob would
        existing.commit_block_list(["QUJD"])
    assert ei.value.status_code == 403
    assert drop.download_blob("mine").readall() == b"my own bytes"
    fresh = _as_sas(drop.get_blob_client("fresh"), exastor_server, create=True)
    fresh.upload_blob(b"new")
    with pytest.raises(HttpResponseError) as ei:
        fresh.upload_blob(b"again", overwrite=True)
    assert ei.value.status_code == 403
    assert drop.download_blob("fresh").readall() == b"new"
    # create + write may overwrite
    _as_sas(drop.get_blob_client("fresh"), exastor_server, create=True, write=True).upload_blob(b"w", overwrite=True)
    assert drop.download_blob("fresh").readall() == b"w"
    # a container SAS with c alone: new names only
    token = generate_container_sas(exastor_server.account_name, drop.container_name,
                                   account_key=exastor_server.account_key,
                                   permission=ContainerSasPermissions(create=True),
                                   expiry=datetime.now(UTC) + timedelta(hours=1))
    via = BlobClient.from_blob_url(f"{drop.get_blob_client('fresh').url}?{token}")
    with pytest.raises(HttpResponseError):
        via.upload_blob(b"c over w", overwrite=True)
    BlobClient.from_blob_url(f"{drop.get_blob_client('brand-new').url}?{token}").upload_blob(b"ok")


# --- the client address is the TCP peer's --------------------------------------------------------------

def test_forwarded_for_does_not_move_the_client(exastor_server, svc, s3, bucket):
    cc = svc.create_container(unique("xff"))
    try:
        bc = cc.upload_blob("b", b"only from 10.1.2.3")
        token = generate_blob_sas(exastor_server.account_name, cc.container_name, "b",
                                  account_key=exastor_server.account_key, permission=BlobSasPermissions(read=True),
                                  expiry=datetime.now(UTC) + timedelta(hours=1), ip="10.1.2.3")
        r = requests.get(f"{bc.url}?{token}", headers={"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3",
                                                       "Forwarded": "for=10.1.2.3"}, timeout=30)
        assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthorizationSourceIPMismatch"
    finally:
        cc.delete_container()
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "10.1.2.0/24"}}}]}))
    r = requests.get(f"{exastor_server.endpoint}/{bucket}/k", headers={"X-Forwarded-For": "10.1.2.3"}, timeout=30)
    assert r.status_code == 403


# --- multipart uploads answer to the bucket policy and ACLs like PutObject -------------------------------

def test_multipart_obeys_the_bucket_policy(s3, bucket):
    done = s3.create_multipart_upload(Bucket=bucket, Key="before")["UploadId"]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    for attempt in (lambda: s3.create_multipart_upload(Bucket=bucket, Key="k"),
                    lambda: s3.upload_part(Bucket=bucket, Key="before", UploadId=done, PartNumber=1, Body=b"x"),
                    lambda: s3.complete_multipart_upload(Bucket=bucket, Key="before", UploadId=done,
                                                         MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                                     "ETag": '"x"'}]})):
        with pytest.raises(ClientError) as e:
            attempt()
        assert status(e) == 403 and code(e) == "AccessDenied"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.delete_bucket_policy(Bucket=bucket)
    s3.abort_multipart_upload(Bucket=bucket, Key="before", UploadId=done)


def test_multipart_obeys_acl_grants(s3, s3_alt, bucket):
    with pytest.raises(ClientError) as e:
        s3_alt.create_multipart_upload(Bucket=bucket, Key="alt")
    assert status(e) == 403
    s3.put_bucket_acl(Bucket=bucket, GrantWrite='id="alt"', GrantFullControl='id="admin"')
    upload = s3_alt.create_multipart_upload(Bucket=bucket, Key="alt")["UploadId"]
    etag = s3_alt.upload_part(Bucket=bucket, Key="alt", UploadId=upload, PartNumber=1, Body=b"alt part")["ETag"]
    s3_alt.complete_multipart_upload(Bucket=bucket, Key="alt", UploadId=upload,
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3_alt.get_object(Bucket=bucket, Key="alt")["Body"].read() == b"alt part"


# --- S3 copy sources are read with the caller's own rights ------------------------------------------

def test_s3_copy_source_needs_read_on_the_source(s3, s3_alt, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"owner only")
    theirs = f"alt-own-{bucket}"
    s3_alt.create_bucket(Bucket=theirs)
    source = {"Bucket": bucket, "Key": "private"}
    with pytest.raises(ClientError) as e:
        s3_alt.copy_object(Bucket=theirs, Key="stolen", CopySource=source)
    assert status(e) == 403
    upload = s3_alt.create_multipart_upload(Bucket=theirs, Key="stolen")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3_alt.upload_part_copy(Bucket=theirs, Key="stolen", UploadId=upload, PartNumber=1, CopySource=source)
    assert status(e) == 403
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/alt"}, "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/private"}]}))
    s3_alt.copy_object(Bucket=theirs, Key="stolen", CopySource=source)
    assert s3_alt.get_object(Bucket=theirs, Key="stolen")["Body"].read() == b"owner only"
    s3_alt.abort_multipart_upload(Bucket=theirs, Key="stolen", UploadId=upload)
