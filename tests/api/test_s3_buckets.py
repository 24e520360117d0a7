"""Buckets, users and isolation, listing, versioning, multi-delete."""

from __future__ import annotations

import pytest
from _s3util import code, status
from botocore.exceptions import ClientError


def test_bucket_lifecycle(s3):
    s3.create_bucket(Bucket="life-cycle-bkt")
    assert "life-cycle-bkt" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="life-cycle-bkt")
    assert s3.get_bucket_location(Bucket="life-cycle-bkt")["LocationConstraint"] is None
    s3.put_object(Bucket="life-cycle-bkt", Key="x", Body=b"1")
    # us-east-1: the owner re-creating its bucket succeeds and leaves the contents alone
    s3.create_bucket(Bucket="life-cycle-bkt")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="life-cycle-bkt")["Contents"]] == ["x"]
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="life-cycle-bkt")
    assert code(e) == "BucketNotEmpty"
    s3.delete_object(Bucket="life-cycle-bkt", Key="x")
    s3.delete_bucket(Bucket="life-cycle-bkt")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="life-cycle-bkt")
    assert status(e) == 404


@pytest.mark.parametrize("name", ["ab", "UPPER", "a" * 64, "-lead", "trail-", "192.168.1.1", "a..b", "under_score"])
def test_invalid_bucket_names(s3, name):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert code(e) == "InvalidBucketName"


def test_users_cannot_touch_each_others_buckets(s3, s3_alt, bucket):
    s3.put_object(Bucket=bucket, Key="secret", Body=b"s")
    for op in (lambda: s3_alt.get_object(Bucket=bucket, Key="secret"),
               lambda: s3_alt.put_object(Bucket=bucket, Key="x", Body=b"x"),
               lambda: s3_alt.list_objects_v2(Bucket=bucket),
               lambda: s3_alt.delete_object(Bucket=bucket, Key="secret"),
               lambda: s3_alt.delete_bucket(Bucket=bucket)):
        with pytest.raises(ClientError) as e:
            op()
        assert code(e) == "AccessDenied"
    assert bucket not in [b["Name"] for b in s3_alt.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3_alt.create_bucket(Bucket=bucket)
    assert code(e) == "BucketAlreadyExists"


def test_list_v2_prefix_delimiter_pagination(s3, bucket):
    keys = [f"a/{i:03d}" for i in range(25)] + ["b/1", "b/2", "c", "d/e/f"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    res = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [o["Key"] for o in res["Contents"]] == ["c"]
    assert res["KeyCount"] == 4
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, Prefix="a/", MaxKeys=7, **kw)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys[:25]
    res = s3.list_objects_v2(Bucket=bucket, StartAfter="b/1")
    assert [o["Key"] for o in res["Contents"]] == ["b/2", "c", "d/e/f"]
    res = s3.list_objects_v2(Bucket=bucket, Prefix="d/", Delimiter="/", FetchOwner=True)
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["d/e/"]
    paginated = [k for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/",
                                                                           PaginationConfig={"PageSize": 1})
                 for k in [p["Prefix"] for p in page.get("CommonPrefixes", [])] + [o["Key"] for o in page.get("Contents", [])]]
    assert paginated == ["a/", "b/", "c", "d/"]


def test_list_v1_markers(s3, bucket):
    for k in ["x/1", "x/2", "y", "z/1"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    res = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert res["IsTruncated"] and res["NextMarker"] == "x/"
    res = s3.list_objects(Bucket=bucket, Delimiter="/", Marker="x/")
    assert [o["Key"] for o in res["Contents"]] == ["y"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["z/"]
    res = s3.list_objects(Bucket=bucket, EncodingType="url", Prefix="x")
    assert [o["Key"] for o in res["Contents"]] == ["x/1", "x/2"]


def test_delete_objects(s3, bucket):
    for k in ["k1", "k2", "k3"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"1")
    res = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k1"}, {"Key": "k2"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in res["Deleted"]) == ["k1", "k2", "missing"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k3"]


def test_versioning(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    marker = s3.delete_object(Bucket=bucket, Key="v")
    assert marker["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="v")
    assert code(e) == "NoSuchKey"
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in versions["Versions"]] == [v2, v1]
    assert versions["DeleteMarkers"][0]["IsLatest"] is True
    s3.delete_object(Bucket=bucket, Key="v", VersionId=marker["VersionId"])
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"one"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=bucket, Key="v", Body=b"null1").get("VersionId") in (None, "null")
    s3.put_object(Bucket=bucket, Key="v", Body=b"null2")
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert ids == ["null", v1]


def test_bucket_tagging(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(e) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "ml"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "ml"}]
    s3.delete_bucket_tagging(Bucket=bucket)
