"""CORS (preflight and response headers from the bucket's rules) and lifecycle configuration."""

from __future__ import annotations

import pytest
import requests
from _s3util import code
from botocore.exceptions import ClientError

CORS = {"CORSRules": [
    {"AllowedMethods": ["GET"], "AllowedOrigins": ["https://*.example.com"], "ExposeHeaders": ["x-amz-meta-a"],
     "MaxAgeSeconds": 60},
    {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"], "AllowedHeaders": ["content-*"]},
]}


def test_cors_preflight_and_actual_requests(exastor_server, s3, bucket):
    url = f"{exastor_server.endpoint}/{bucket}/obj"
    assert requests.options(url, headers={"Origin": "https://a.example.com",
                                          "Access-Control-Request-Method": "GET"}, timeout=30).status_code == 403
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["https://*.example.com"]
    r = requests.options(url, headers={"Origin": "https://a.example.com", "Access-Control-Request-Method": "GET"},
                         timeout=30)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://a.example.com"
    assert r.headers["access-control-allow-methods"] == "GET"
    assert r.headers["access-control-expose-headers"] == "x-amz-meta-a"
    assert r.headers["access-control-max-age"] == "60"
    r = requests.options(url, headers={"Origin": "https://other.org", "Access-Control-Request-Method": "PUT",
                                       "Access-Control-Request-Headers": "Content-Type"}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    r = requests.options(url, headers={"Origin": "https://other.org", "Access-Control-Request-Method": "PUT",
                                       "Access-Control-Request-Headers": "x-amz-meta-b"}, timeout=30)
    assert r.status_code == 403                                     # header not allowed by the rule
    assert requests.options(url, headers={"Origin": "https://x.example.com"}, timeout=30).status_code == 400
    # an actual request (here a 403: anonymous, private bucket) still carries the CORS headers
    r = requests.get(url, headers={"Origin": "https://b.example.com"}, timeout=30)
    assert r.status_code == 403 and r.headers["access-control-allow-origin"] == "https://b.example.com"
    assert "access-control-allow-origin" not in requests.get(url, timeout=30).headers
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(e) == "NoSuchCORSConfiguration"


def test_lifecycle_rules_are_validated_and_named(s3, bucket):
    rules = [{"Expiration": {"Days": 30}, "Filter": {"Prefix": "logs/"}, "Status": "Enabled"},
             {"ID": "old", "NoncurrentVersionExpiration": {"NoncurrentDays": 7}, "Filter": {"Prefix": ""},
              "Status": "Disabled"}]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(got) == 2 and got[1]["ID"] == "old" and len(got[0]["ID"]) > 0
    assert got[0]["Expiration"] == {"Days": 30}
    bad = [([{"ID": "x" * 256, "Expiration": {"Days": 1}, "Filter": {"Prefix": ""}, "Status": "Enabled"}],
            "InvalidArgument"),
           ([{"ID": "a", "Expiration": {"Days": 1}, "Filter": {"Prefix": ""}, "Status": "Enabled"},
             {"ID": "a", "Expiration": {"Days": 2}, "Filter": {"Prefix": ""}, "Status": "Enabled"}],
            "InvalidArgument"),
           ([{"ID": "a", "Expiration": {"Days": 1}, "Filter": {"Prefix": ""}, "Status": "enabled"}], "MalformedXML"),
           ([{"ID": "a", "Expiration": {"Days": 0}, "Filter": {"Prefix": ""}, "Status": "Enabled"}],
            "InvalidArgument")]
    for rules, want in bad:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        assert code(e) == want
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert code(e) == "NoSuchLifecycleConfiguration"
