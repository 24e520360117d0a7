"""Object Lock: default retention, retention and legal hold per version, protected deletes."""

from __future__ import annotations

import datetime as dt

import pytest
from _s3util import code, status
from botocore.exceptions import ClientError


@pytest.fixture
def locked(s3, bucket):
    name = bucket + "-lock"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _future(days: int = 1) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0)


def test_lock_bucket_is_versioned_and_cannot_suspend(s3, locked, bucket):
    assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_versioning(Bucket=locked, VersioningConfiguration={"Status": "Suspended"})
    assert code(e) == "InvalidBucketState"
    with pytest.raises(ClientError) as e:  # lock cannot be turned on for an existing plain bucket
        s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    assert status(e) == 409
    with pytest.raises(ClientError) as e:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert code(e) == "ObjectLockConfigurationNotFoundError"


def test_default_retention_validation_and_application(s3, locked):
    for rule, want in (({"Mode": "GOVERNANCE", "Days": 0}, "InvalidRetentionPeriod"),
                       ({"Mode": "GOVERNANCE", "Days": 1, "Years": 1}, "MalformedXML"),
                       ({"Mode": "governance", "Days": 1}, "MalformedXML")):
        with pytest.raises(ClientError) as e:
            s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}})
        assert code(e) == want
    conf = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}}
    s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=conf)
    assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == conf
    version = s3.put_object(Bucket=locked, Key="k", Body=b"v")["VersionId"]
    head = s3.head_object(Bucket=locked, Key="k")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert _future(1) < until < _future(3)
    s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)


def test_retention_protects_a_version_until_bypassed(s3, locked):
    version = s3.put_object(Bucket=locked, Key="k", Body=b"v")["VersionId"]
    s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _future(5)})
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=locked, Key="k", VersionId=version)
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:  # shortening governance needs the bypass header
        s3.put_object_retention(Bucket=locked, Key="k", Retention={"Mode": "GOVERNANCE",
                                                                   "RetainUntilDate": _future(2)})
    assert code(e) == "AccessDenied"
    marker = s3.delete_object(Bucket=locked, Key="k")  # a delete marker never breaks the lock
    assert marker["DeleteMarker"] is True
    out = s3.delete_objects(Bucket=locked, Delete={"Objects": [{"Key": "k", "VersionId": version}]})
    assert out["Errors"][0]["Code"] == "AccessDenied" and out["Errors"][0]["VersionId"] == version
    s3.delete_object(Bucket=locked, Key="k", VersionId=version, BypassGovernanceRetention=True)


def test_compliance_and_legal_hold(s3, locked):
    version = s3.put_object(Bucket=locked, Key="c", Body=b"v", ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.get_object_legal_hold(Bucket=locked, Key="c")["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=locked, Key="c", VersionId=version, BypassGovernanceRetention=True)
    assert code(e) == "AccessDenied"
    s3.put_object_legal_hold(Bucket=locked, Key="c", LegalHold={"Status": "OFF"})
    s3.put_object_retention(Bucket=locked, Key="c", Retention={
        "Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)})
    with pytest.raises(ClientError) as e:  # compliance cannot be relaxed, even with the bypass
        s3.put_object_retention(Bucket=locked, Key="c", BypassGovernanceRetention=True,
                                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": _future(1)})
    assert code(e) == "AccessDenied"
    with pytest.raises(ClientError):
        s3.delete_object(Bucket=locked, Key="c", VersionId=version, BypassGovernanceRetention=True)


def test_lock_settings_need_a_lock_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    with pytest.raises(ClientError) as e:
        s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    assert code(e) == "InvalidRequest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k2", Body=b"v", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=_future())
    assert code(e) == "InvalidRequest"
