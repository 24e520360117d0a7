"""ACLs and bucket policies, enforced for the other user and for anonymous callers."""

from __future__ import annotations

import json

import pytest
import requests
from _s3util import code, status
from botocore.exceptions import ClientError

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _anonymous_get(server, bucket: str, key: str = "") -> requests.Response:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=30)


def _grants(acl: dict) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"]}


def test_default_acl_is_owner_full_control(s3, bucket):
    owner = s3.list_buckets()["Owner"]["ID"]
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {(owner, "FULL_CONTROL")}
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert _grants(s3.get_object_acl(Bucket=bucket, Key="k")) == {(owner, "FULL_CONTROL")}


def test_canned_public_read_opens_reads_to_anonymous_only(exastor_server, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    assert _anonymous_get(exastor_server, bucket).status_code == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read")
    owner = s3.list_buckets()["Owner"]["ID"]
    assert _grants(s3.get_bucket_acl(Bucket=bucket)) == {(ALL_USERS, "READ"), (owner, "FULL_CONTROL")}
    assert _anonymous_get(exastor_server, bucket).status_code == 200          # list
    r = _anonymous_get(exastor_server, bucket, "k")
    assert r.status_code == 200 and r.content == b"hello"
    put = requests.put(f"{exastor_server.endpoint}/{bucket}/new", data=b"x", timeout=30)
    assert put.status_code == 403                                              # READ is not WRITE
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert _anonymous_get(exastor_server, bucket).status_code == 403


def test_grant_to_other_user_by_id(s3, s3_alt, bucket):
    with pytest.raises(ClientError) as e:
        s3_alt.list_objects_v2(Bucket=bucket)
    assert status(e) == 403
    acl = s3.get_bucket_acl(Bucket=bucket)
    acl["Grants"].append({"Grantee": {"ID": "alt", "Type": "CanonicalUser"}, "Permission": "READ"})
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Grants": acl["Grants"], "Owner": acl["Owner"]})
    assert s3_alt.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    with pytest.raises(ClientError) as e:                                      # READ does not give WRITE
        s3_alt.put_object(Bucket=bucket, Key="x", Body=b"1")
    assert status(e) == 403
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, GrantRead='id="no-such-user"')
    assert code(e) == "InvalidArgument"


def test_object_written_by_other_user_belongs_to_them(s3, s3_alt, bucket):
    s3.put_bucket_acl(Bucket=bucket, GrantWrite='id="alt"')
    s3_alt.put_object(Bucket=bucket, Key="theirs", Body=b"alt data", ACL="bucket-owner-read")
    acl = s3_alt.get_object_acl(Bucket=bucket, Key="theirs")
    owner = s3.list_buckets()["Owner"]["ID"]
    assert acl["Owner"]["ID"] == "alt" and _grants(acl) == {("alt", "FULL_CONTROL"), (owner, "READ")}
    assert s3.get_object(Bucket=bucket, Key="theirs")["Body"].read() == b"alt data"
    with pytest.raises(ClientError) as e:                                      # READ is not READ_ACP
        s3.get_object_acl(Bucket=bucket, Key="theirs")
    assert status(e) == 403


def test_bad_canned_acl_and_mixed_headers_are_rejected(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-everything")
    assert status(e) == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"", ACL="public-read", GrantRead='id="alt"')
    assert code(e) == "InvalidRequest"


def test_bucket_policy_allows_and_denies(exastor_server, s3, s3_alt, bucket):
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="private/b", Body=b"b")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/private/*"},
    ]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert _anonymous_get(exastor_server, bucket, "public/a").content == b"a"
    assert s3_alt.get_object(Bucket=bucket, Key="public/a")["Body"].read() == b"a"
    assert _anonymous_get(exastor_server, bucket, "private/b").status_code == 403
    with pytest.raises(ClientError) as e:                                      # an explicit Deny binds the owner too
        s3.get_object(Bucket=bucket, Key="private/b")
    assert status(e) == 403
    assert _anonymous_get(exastor_server, bucket).status_code == 403          # ListBucket was not granted
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="private/b")["Body"].read() == b"b"


def test_policy_conditions_on_existing_tags(s3, s3_alt, bucket):
    s3.put_object(Bucket=bucket, Key="open", Body=b"1", Tagging="security=public")
    s3.put_object(Bucket=bucket, Key="closed", Body=b"2", Tagging="security=private")
    policy = {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                             "Resource": f"arn:aws:s3:::{bucket}/*",
                             "Condition": {"StringEquals": {"s3:ExistingObjectTag/security": "public"}}}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert s3_alt.get_object(Bucket=bucket, Key="open")["Body"].read() == b"1"
    with pytest.raises(ClientError) as e:
        s3_alt.get_object(Bucket=bucket, Key="closed")
    assert status(e) == 403


def test_malformed_policy_is_rejected(s3, bucket):
    for doc in ("not json", json.dumps({"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "s3:*",
                                                        "Resource": "*"}]}),
                json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                           "Resource": "arn:aws:s3:::some-other-bucket/*"}]})):
        with pytest.raises(ClientError) as e:
            s3.put_bucket_policy(Bucket=bucket, Policy=doc)
        assert code(e) == "MalformedPolicy"
