"""S3 features today's SDKs use (issue 16), driven by boto3 against a live server: conditional
writes and deletes (with racing clients), flexible checksums, GetObjectAttributes and partNumber,
idempotent multipart completion, Object Ownership and Block Public Access, ListBuckets pagination,
presigned-URL expiry and Content-Encoding lists. docs/compatibility.md says what each answers."""

from __future__ import annotations

import base64
import json
import threading
import zlib
from datetime import timedelta

import pytest
import requests
from _s3util import code, signed_request, status
from botocore.exceptions import ClientError

from conftest import exastor, read_response, s3_client, signed_head, start_server

PART = 5 * 1024 * 1024
RACERS = 8


def _race(fn, n: int = RACERS) -> list[object]:
    """Run ``fn(i)`` in n threads released together; each result or the ClientError it raised."""
    start = threading.Barrier(n, timeout=60)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = fn(i)
        except ClientError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a racing client hung"
    return results


def _codes(results: list[object]) -> list[str]:
    return sorted("ok" if not isinstance(r, ClientError) else r.response["Error"]["Code"] for r in results)


# --- conditional writes ---------------------------------------------------------------------------

def test_if_none_match_racing_writers_have_exactly_one_winner(exastor_server, bucket):
    clients = [s3_client(exastor_server) for _ in range(RACERS)]
    results = _race(lambda i: clients[i].put_object(Bucket=bucket, Key="commit", Body=f"writer {i}".encode(),
                                                    IfNoneMatch="*"))
    assert _codes(results) == ["PreconditionFailed"] * (RACERS - 1) + ["ok"]
    winner = next(i for i, r in enumerate(results) if not isinstance(r, ClientError))
    assert clients[0].get_object(Bucket=bucket, Key="commit")["Body"].read() == f"writer {winner}".encode()


def test_if_match_racing_writers_have_exactly_one_winner(exastor_server, bucket):
    clients = [s3_client(exastor_server) for _ in range(RACERS)]
    etag = clients[0].put_object(Bucket=bucket, Key="log", Body=b"v0")["ETag"]
    results = _race(lambda i: clients[i].put_object(Bucket=bucket, Key="log", Body=f"v1 from {i}".encode(),
                                                    IfMatch=etag))
    assert _codes(results) == ["PreconditionFailed"] * (RACERS - 1) + ["ok"]


def test_if_match_on_put(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfMatch='"0123"')
    assert code(exc) == "NoSuchKey" and status(exc) == 404
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch='"00000000000000000000000000000000"')
    assert code(exc) == "PreconditionFailed" and status(exc) == 412
    s3.put_object(Bucket=bucket, Key="k", Body=b"two", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_delete_while_a_conditional_write_streams_is_a_conflict(exastor_server, s3, bucket):
    """If-Match held when the write arrived; a delete committed while its body streamed in: 409
    ConditionalRequestConflict (S3), not a 404 and not an overwrite. The server asks for the body
    (100 Continue) only after its early check, so the delete lands exactly in between."""
    import socket

    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v0")["ETag"]
    body = b"new"
    head = signed_head(exastor_server, "PUT", f"/{bucket}/c", len(body),
                       {"If-Match": etag, "Expect": "100-continue"})
    with socket.create_connection(("127.0.0.1", exastor_server.s3_port), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(30)
        first = b""
        while b"\r\n\r\n" not in first:  # bounded by the socket timeout
            piece = sock.recv(1024)
            assert piece, "connection closed before 100 Continue"
            first += piece
        assert first.startswith(b"HTTP/1.1 100"), first
        s3.delete_object(Bucket=bucket, Key="c")
        sock.sendall(body)
        st, _, answer = read_response(sock)
    assert st == 409 and b"<Code>ConditionalRequestConflict</Code>" in answer, answer
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c")
    assert status(exc) == 404


def test_conditional_complete_multipart_and_copy(s3, bucket):
    s3.put_object(Bucket=bucket, Key="taken", Body=b"here first")
    up = s3.create_multipart_upload(Bucket=bucket, Key="taken")
    etag = s3.upload_part(Bucket=bucket, Key="taken", UploadId=up["UploadId"], PartNumber=1, Body=b"p")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="taken", UploadId=up["UploadId"], MultipartUpload=parts,
                                     IfNoneMatch="*")
    assert code(exc) == "PreconditionFailed"
    # the upload survives a failed condition: completing it unconditionally still works
    s3.complete_multipart_upload(Bucket=bucket, Key="taken", UploadId=up["UploadId"], MultipartUpload=parts)
    assert s3.get_object(Bucket=bucket, Key="taken")["Body"].read() == b"p"

    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="taken", CopySource={"Bucket": bucket, "Key": "taken"}, IfNoneMatch="*",
                       MetadataDirective="REPLACE")
    assert code(exc) == "PreconditionFailed"
    s3.copy_object(Bucket=bucket, Key="fresh", CopySource={"Bucket": bucket, "Key": "taken"}, IfNoneMatch="*")


def test_conditional_deletes(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="d", Body=b"12345")
    head = s3.head_object(Bucket=bucket, Key="d")
    for kwargs in ({"IfMatch": '"ffffffffffffffffffffffffffffffff"'}, {"IfMatchSize": 4},
                   {"IfMatchLastModifiedTime": head["LastModified"] - timedelta(seconds=5)}):
        with pytest.raises(ClientError) as exc:
            s3.delete_object(Bucket=bucket, Key="d", **kwargs)
        assert code(exc) == "PreconditionFailed", kwargs
    assert s3.head_object(Bucket=bucket, Key="d")["ETag"] == put["ETag"]
    s3.delete_object(Bucket=bucket, Key="d", IfMatch=put["ETag"], IfMatchSize=5,
                     IfMatchLastModifiedTime=head["LastModified"])
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="d")
    assert status(exc) == 404
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="d", IfMatch="*")
    assert code(exc) == "NoSuchKey"


def test_conditional_delete_objects_decides_each_entry(s3, bucket):
    a = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["ETag"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "ETag": a}, {"Key": "b", "ETag": '"ffffffffffffffffffffffffffffffff"'}]})
    assert [d["Key"] for d in out.get("Deleted", [])] == ["a"]
    assert [(e["Key"], e["Code"]) for e in out.get("Errors", [])] == [("b", "PreconditionFailed")]
    assert s3.get_object(Bucket=bucket, Key="b")["Body"].read() == b"b"


def test_racing_conditional_deletes_of_one_version(exastor_server, bucket):
    clients = [s3_client(exastor_server) for _ in range(RACERS)]
    etag = clients[0].put_object(Bucket=bucket, Key="once", Body=b"x")["ETag"]
    clients[0].put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    results = _race(lambda i: clients[i].delete_object(Bucket=bucket, Key="once", IfMatch=etag))
    # the first places a delete marker; the others find no live object to match
    assert _codes(results).count("ok") == 1, _codes(results)


# --- flexible checksums ----------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksum_trailers_from_the_sdk(s3, bucket, algorithm):
    body = bytes(range(256)) * 1000
    put = s3.put_object(Bucket=bucket, Key="t", Body=body, ChecksumAlgorithm=algorithm)
    got = s3.get_object(Bucket=bucket, Key="t", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]
    assert got.get("ChecksumType") == "FULL_OBJECT"


def test_checksum_mismatch_is_bad_digest_and_stores_nothing(s3, bucket):
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"payload", ChecksumCRC32=wrong)
    assert code(exc) == "BadDigest" and status(exc) == 400
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="bad")
    assert status(exc) == 404


def test_invalid_checksum_value_is_refused(exastor_server, bucket):
    st, _, body = signed_request(exastor_server, "PUT", f"/{bucket}/inv", body=b"x",
                                 headers={"x-amz-checksum-crc32": "not-base64!"})
    assert st == 400 and b"InvalidRequest" in body


def _multipart(s3, bucket, key, algorithm, checksum_type):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=algorithm,
                                    ChecksumType=checksum_type)
    parts = []
    bodies = [b"a" * PART, b"b" * 1000]
    for n, body in enumerate(bodies, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm=algorithm)
        parts.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{algorithm}": r[f"Checksum{algorithm}"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts}, ChecksumType=checksum_type)
    return up["UploadId"], parts, b"".join(bodies), done


def test_multipart_full_object_crc_is_the_crc_of_the_whole(s3, bucket):
    _, _, whole, done = _multipart(s3, bucket, "full", "CRC32", "FULL_OBJECT")
    expected = base64.b64encode(zlib.crc32(whole).to_bytes(4, "big")).decode()
    assert done["ChecksumCRC32"] == expected and done["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected and head["ChecksumType"] == "FULL_OBJECT"


def test_multipart_composite_checksum(s3, bucket):
    _, parts, _, done = _multipart(s3, bucket, "comp", "SHA256", "COMPOSITE")
    import hashlib
    digest = hashlib.sha256(b"".join(base64.b64decode(p["ChecksumSHA256"]) for p in parts)).digest()
    assert done["ChecksumSHA256"] == f"{base64.b64encode(digest).decode()}-2"
    assert done["ChecksumType"] == "COMPOSITE"


# --- GetObjectAttributes and partNumber --------------------------------------------------------------

def test_get_object_attributes_and_part_numbers(s3, bucket):
    _, parts, whole, done = _multipart(s3, bucket, "mp", "CRC32C", "COMPOSITE")
    attrs = s3.get_object_attributes(Bucket=bucket, Key="mp", MaxParts=1,
                                     ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass",
                                                       "ObjectSize"])
    assert attrs["ObjectSize"] == len(whole) and attrs["StorageClass"] == "STANDARD"
    assert attrs["ETag"] == done["ETag"].strip('"')
    op = attrs["ObjectParts"]
    assert op["TotalPartsCount"] == 2 and op["IsTruncated"] and len(op["Parts"]) == 1
    assert op["Parts"][0]["PartNumber"] == 1 and op["Parts"][0]["Size"] == PART
    assert op["Parts"][0]["ChecksumCRC32C"] == parts[0]["ChecksumCRC32C"]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    PartNumberMarker=op["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["ObjectParts"]["Parts"]] == [2]

    second = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert second["Body"].read() == b"b" * 1000 and second["PartsCount"] == 2
    assert second["ContentRange"] == f"bytes {PART}-{PART + 999}/{len(whole)}"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="mp", PartNumber=3)
    assert status(exc) == 416

    s3.put_object(Bucket=bucket, Key="single", Body=b"abc")
    assert s3.get_object(Bucket=bucket, Key="single", PartNumber=1)["Body"].read() == b"abc"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert status(exc) == 416


# --- idempotent multipart completion ------------------------------------------------------------------

def test_completing_twice_answers_with_the_same_object(s3, bucket):
    upload_id, parts, _, done = _multipart(s3, bucket, "twice", "CRC32", "FULL_OBJECT")
    plain = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    again = s3.complete_multipart_upload(Bucket=bucket, Key="twice", UploadId=upload_id,
                                         MultipartUpload={"Parts": plain})
    assert again["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as exc:  # another part list is not the completion that happened
        s3.complete_multipart_upload(Bucket=bucket, Key="twice", UploadId=upload_id,
                                     MultipartUpload={"Parts": plain[:1]})
    assert code(exc) == "NoSuchUpload"


def test_list_multipart_uploads_names_owner_and_initiator(s3, bucket):
    s3.create_multipart_upload(Bucket=bucket, Key="open")
    up = s3.list_multipart_uploads(Bucket=bucket)["Uploads"][0]
    assert up["Owner"]["ID"] and up["Initiator"]["ID"] == up["Owner"]["ID"]


# --- ownership and public access -----------------------------------------------------------------

def test_bucket_owner_enforced_disables_acls(s3, s3_alt, exastor_server):
    name = f"enforced-{id(s3) % 100000}"
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    rule = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"][0]
    assert rule["ObjectOwnership"] == "BucketOwnerEnforced"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=name, ACL="public-read")
    assert code(exc) == "AccessControlListNotSupported"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="k", Body=b"x", ACL="public-read")
    assert code(exc) == "AccessControlListNotSupported"
    s3.put_object(Bucket=name, Key="k", Body=b"x", ACL="bucket-owner-full-control")  # still accepted
    s3.delete_bucket_ownership_controls(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_ownership_controls(Bucket=name)
    assert code(exc) == "OwnershipControlsNotFoundError"


def test_public_access_block_refuses_public_acls_and_policies(s3, bucket, exastor_server):
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    assert requests.get(f"{exastor_server.endpoint}/{bucket}/pub", timeout=30).status_code == 200
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    conf = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(conf.values())
    # IgnorePublicAcls: the stored public-read grant counts for nothing
    assert requests.get(f"{exastor_server.endpoint}/{bucket}/pub", timeout=30).status_code == 403
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="p2", Body=b"x", ACL="public-read")
    assert code(exc) == "AccessDenied"
    public = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert code(exc) == "AccessDenied"
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=public)
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True


def test_acl_grant_by_email_names_the_user(s3, bucket, exastor_server):
    exastor("user", "add", "mailed", "--email", "Mailed@Example.com", data_dir=exastor_server.data_dir)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='emailAddress="mailed@example.com"')
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert {"Type": "CanonicalUser", "ID": "mailed"} in [
        {k: v for k, v in g["Grantee"].items() if k in ("Type", "ID")} for g in grants]
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(Bucket=bucket, Key="k", GrantRead='emailAddress="nobody@example.com"')
    assert code(exc) == "UnresolvableGrantByEmailAddress"


def test_expected_bucket_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner=s3.list_buckets()["Owner"]["ID"])
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner="someone-else")
    assert code(exc) == "AccessDenied"


# --- listing, presigned URLs, headers ---------------------------------------------------------------

def test_list_buckets_pagination(exastor_server):
    s3 = s3_client(exastor_server, alt=True)
    names = [f"page-{i}-{id(s3) % 100000}" for i in range(5)]
    for n in names:
        s3.create_bucket(Bucket=n)
    seen, token = [], None
    for _ in range(10):
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_buckets(MaxBuckets=2, Prefix="page-", **kw)
        assert len(page["Buckets"]) <= 2 and page["Prefix"] == "page-"
        seen += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert sorted(seen) == sorted(names)
    st, _, body = signed_request(exastor_server, "GET", "/?max-buckets=0", alt=True)
    assert st == 400 and b"<Code>InvalidArgument</Code>" in body


def test_bucket_location_in_a_configured_region(tmp_path):
    """A LocationConstraint naming one of the endpoint's regions is kept and read back; one it does
    not serve, and us-east-1 named explicitly, are InvalidLocationConstraint (as S3)."""
    server = start_server(tmp_path, env={"EXASTOR_EXTRA_REGIONS": "eu-west-1"})
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="in-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert s3.get_bucket_location(Bucket="in-eu")["LocationConstraint"] == "eu-west-1"
        head = s3.head_bucket(Bucket="in-eu")["ResponseMetadata"]["HTTPHeaders"]
        assert head["x-amz-bucket-region"] == "eu-west-1"
        for region in ("ap-south-1", "us-east-1"):
            with pytest.raises(ClientError) as exc:
                s3.create_bucket(Bucket=f"nowhere-{region}", CreateBucketConfiguration={"LocationConstraint": region})
            assert code(exc) == "InvalidLocationConstraint"
        assert [b["Name"] for b in s3.list_buckets(BucketRegion="eu-west-1")["Buckets"]] == ["in-eu"]
    finally:
        server.stop()


@pytest.mark.parametrize("expires", ["-1", "604801", "abc", None])
def test_presigned_expires_out_of_range(exastor_server, bucket, expires):
    """S3 answers 400 AuthorizationQueryParametersError for a missing, negative, non-numeric or
    over-a-week X-Amz-Expires (the URL as signed works: 404 for a missing key)."""
    import urllib.parse

    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="GET", url=f"{exastor_server.endpoint}/{bucket}/k")
    S3SigV4QueryAuth(Credentials(exastor_server.access_key, exastor_server.secret_key), "s3", "us-east-1",
                     expires=60).add_auth(req)
    assert requests.get(req.url, timeout=30).status_code == 404
    parts = urllib.parse.urlsplit(req.url)
    query = [(k, expires if k == "X-Amz-Expires" else v) for k, v in urllib.parse.parse_qsl(parts.query)
             if expires is not None or k != "X-Amz-Expires"]
    r = requests.get(urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query))), timeout=30)
    assert r.status_code == 400 and b"<Code>AuthorizationQueryParametersError</Code>" in r.content


def test_content_encoding_list_is_kept_as_sent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="enc", Body=b"x", ContentEncoding="deflate, gzip")
    assert s3.head_object(Bucket=bucket, Key="enc")["ContentEncoding"] == "deflate, gzip"


def test_cors_on_presigned_urls(s3, bucket):
    """A browser fetches a presigned URL: its preflight (OPTIONS, no signature for that method) and
    the GET itself get the bucket's CORS headers."""
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://app.example"], "AllowedMethods": ["GET", "PUT"], "AllowedHeaders": ["*"]}]})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    pre = requests.options(url, headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
                           timeout=30)
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    got = requests.get(url, headers={"Origin": "https://app.example"}, timeout=30)
    assert got.status_code == 200 and got.content == b"x"
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_not_principal_denies_everyone_else_and_cannot_allow(s3, s3_alt, bucket):
    owner = s3.list_buckets()["Owner"]["ID"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert s3_alt.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": owner},
                                                     "Action": "s3:GetObject",
                                                     "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(allow))
    assert code(exc) == "MalformedPolicy"
    deny = {"Version": "2012-10-17", "Statement": [{**allow["Statement"][0], "Effect": "Deny"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    with pytest.raises(ClientError) as exc:
        s3_alt.get_object(Bucket=bucket, Key="k")
    assert code(exc) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
