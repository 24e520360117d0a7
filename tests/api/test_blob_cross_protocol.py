"""One namespace: what S3 (boto3, admin keys) writes, Blob reads, and the other way round."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from azure.storage.blob import BlobServiceClient, ContentSettings


@pytest.fixture(scope="module")
def svc(exastor_server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(exastor_server.connection_string, retry_total=0)


def test_s3_object_is_a_blob(s3, svc, bucket):
    data = os.urandom(70_000)
    s3.put_object(Bucket=bucket, Key="from/s3.bin", Body=data, ContentType="application/x-s3",
                  Metadata={"origin": "s3"}, CacheControl="max-age=60")
    bc = svc.get_blob_client(bucket, "from/s3.bin")
    assert bc.download_blob().readall() == data
    props = bc.get_blob_properties()
    assert props.content_settings.content_type == "application/x-s3"
    assert props.content_settings.cache_control == "max-age=60"
    assert props.metadata == {"origin": "s3"}
    assert bytes(props.content_settings.content_md5) == hashlib.md5(data).digest()
    head = s3.head_object(Bucket=bucket, Key="from/s3.bin")
    assert props.etag == head["ETag"]  # one ETag for both APIs
    assert bucket in [c.name for c in svc.list_containers(name_starts_with=bucket)]


def test_blob_is_an_s3_object(s3, svc):
    cc = svc.create_container("xproto-blob-side")
    try:
        data = os.urandom(40_000)
        cc.upload_blob("from/blob.bin", data, metadata={"writer": "blob"},
                       content_settings=ContentSettings(content_type="text/x-blob", content_language="de"))
        got = s3.get_object(Bucket="xproto-blob-side", Key="from/blob.bin")
        assert got["Body"].read() == data
        assert got["ContentType"] == "text/x-blob" and got["ContentLanguage"] == "de"
        assert got["Metadata"] == {"writer": "blob"}
        assert got["ETag"].strip('"') == hashlib.md5(data).hexdigest()
        assert "xproto-blob-side" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        cc.delete_container()


def test_listing_consistent_across_apis(s3, svc, bucket):
    for k in ("a/1", "a/2", "b/3"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    svc.get_blob_client(bucket, "a/4").upload_blob(b"a/4")
    svc.get_blob_client(bucket, "c").upload_blob(b"c")
    s3_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    blob_keys = [b.name for b in svc.get_container_client(bucket).list_blobs()]
    assert s3_keys == blob_keys == ["a/1", "a/2", "a/4", "b/3", "c"]
    s3_sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert s3_sizes == {b.name: b.size for b in svc.get_container_client(bucket).list_blobs()}
    s3_prefixes = [p["Prefix"] for p in s3.list_objects_v2(Bucket=bucket, Delimiter="/")["CommonPrefixes"]]
    blob_prefixes = sorted(b.name for b in svc.get_container_client(bucket).walk_blobs() if b.name.endswith("/"))
    assert s3_prefixes == blob_prefixes == ["a/", "b/"]


def test_block_list_is_an_s3_object_and_parts_are_blocks(s3, svc, bucket):
    bc = svc.get_blob_client(bucket, "blocks")
    ids = [base64.b64encode(f"b{i}".encode()).decode() for i in range(3)]
    chunks = [os.urandom(5000 + i) for i in range(3)]
    for bid, c in zip(ids, chunks, strict=True):
        bc.stage_block(bid, c)
    bc.commit_block_list(ids)
    assert s3.get_object(Bucket=bucket, Key="blocks")["Body"].read() == b"".join(chunks)
    # An S3 multipart object shows its parts as committed blocks, and Blob can re-commit them.
    part = os.urandom(5 * 1024 * 1024)
    up = s3.create_multipart_upload(Bucket=bucket, Key="mpu")
    etags = [s3.upload_part(Bucket=bucket, Key="mpu", UploadId=up["UploadId"], PartNumber=n, Body=part)["ETag"]
             for n in (1, 2)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]})
    mb = svc.get_blob_client(bucket, "mpu")
    committed, _ = mb.get_block_list("committed")
    assert [b.size for b in committed] == [len(part), len(part)]
    mb.commit_block_list([committed[1].id])  # keep only the second part: no bytes move
    assert mb.download_blob().readall() == part
    assert s3.head_object(Bucket=bucket, Key="mpu")["ContentLength"] == len(part)


def test_tags_and_deletes_cross(s3, svc, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="team=ml&stage=raw")
    bc = svc.get_blob_client(bucket, "t")
    assert bc.get_blob_tags() == {"team": "ml", "stage": "raw"}
    bc.set_blob_tags({"team": "infra"})
    tagset = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert tagset == [{"Key": "team", "Value": "infra"}]
    bc.delete_blob()
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="t")
    s3.put_object(Bucket=bucket, Key="u", Body=b"y")
    s3.delete_object(Bucket=bucket, Key="u")
    assert not svc.get_blob_client(bucket, "u").exists()


def test_blob_container_delete_removes_s3_objects(s3, svc):
    cc = svc.create_container("xproto-delete")
    s3.put_object(Bucket="xproto-delete", Key="k", Body=b"v")
    cc.delete_container()
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="xproto-delete")


def test_blob_property_change_gives_s3_a_non_md5_etag(s3, svc, bucket):
    """A Blob metadata change gives the object a new ETag, in the multipart form (``hex-N``), so S3
    clients that check a plain ETag against the body's MD5 never see a wrong one."""
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="k", Body=data)
    bc = svc.get_blob_client(bucket, "k")
    bc.set_blob_metadata({"changed": "yes"})
    head = s3.head_object(Bucket=bucket, Key="k")
    etag = head["ETag"].strip('"')
    assert etag != hashlib.md5(data).hexdigest() and etag.endswith("-1")
    assert head["Metadata"] == {"changed": "yes"}
    assert f'"{etag}"' == bc.get_blob_properties().etag
    assert bytes(bc.get_blob_properties().content_settings.content_md5) == hashlib.md5(data).digest()
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=head["ETag"])["Body"].read() == data


def test_appended_blob_etag_is_not_an_md5(s3, svc, bucket):
    ab = svc.get_blob_client(bucket, "log")
    ab.create_append_blob()
    etags = [ab.append_block(f"line {i}\n".encode())["etag"] for i in range(3)]
    assert len(set(etags)) == 3 and all(e.strip('"').endswith(f"-{i + 1}") for i, e in enumerate(etags))
    assert s3.head_object(Bucket=bucket, Key="log")["ETag"] == etags[-1]


def test_sse_c_object_is_never_read_as_ciphertext_over_blob(s3, svc, bucket):
    """An object written over S3 with a customer key is stored encrypted under a key the server does
    not keep: Blob reads and copies get 409 BlobUsesCustomerSpecifiedEncryption, never the ciphertext."""
    from azure.core.exceptions import HttpResponseError

    key = os.urandom(32)
    sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
           "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode()}
    s3.put_object(Bucket=bucket, Key="secret", Body=b"plaintext" * 1000, **sse)
    bc = svc.get_blob_client(bucket, "secret")
    with pytest.raises(HttpResponseError) as err:
        bc.download_blob().readall()
    assert err.value.status_code == 409 and err.value.error_code == "BlobUsesCustomerSpecifiedEncryption"
    copy = svc.get_blob_client(bucket, "copy-of-secret")
    with pytest.raises(HttpResponseError) as err:
        copy.start_copy_from_url(bc.url)
    assert err.value.status_code == 409 and err.value.error_code == "BlobUsesCustomerSpecifiedEncryption"
    assert bc.get_blob_properties().size == 9000  # properties stay visible, like S3's listing
    assert s3.get_object(Bucket=bucket, Key="secret", **sse)["Body"].read() == b"plaintext" * 1000
