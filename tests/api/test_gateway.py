"""What the gateway middleware adds to every request: request ids (headers, error bodies, logs),
health probes, the access log and JSON logs."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from conftest import ACCOUNT_KEY, SECRET_KEY, s3_client, start_server


def test_every_s3_response_carries_a_request_id_and_the_error_body_names_the_same(exastor_server, s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ResponseMetadata"]
    head = s3.head_object(Bucket=bucket, Key="k")["ResponseMetadata"]
    for meta in (put, head):
        assert re.fullmatch(r"[0-9A-F]{16}", meta["RequestId"]), meta
        assert meta["HostId"] and meta["HTTPHeaders"]["x-amz-id-2"] == meta["HostId"]
    assert put["RequestId"] != head["RequestId"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="missing")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    header_id = err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    assert err.value.response["ResponseMetadata"]["RequestId"] == header_id  # botocore reads it from the body
    anonymous = requests.put(f"{exastor_server.endpoint}/{bucket}/anon", data=b"x", timeout=30)
    assert anonymous.status_code == 403
    assert f"<RequestId>{anonymous.headers['x-amz-request-id']}</RequestId>" in anonymous.text
    assert anonymous.headers["x-amz-id-2"]


def test_every_blob_response_carries_a_request_id_and_echoes_the_clients(exastor_server):
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    seen: list[dict[str, str]] = []
    svc = BlobServiceClient.from_connection_string(
        exastor_server.connection_string, raw_response_hook=lambda r: seen.append(dict(r.http_response.headers)))
    container = svc.get_container_client(f"ids-{uuid.uuid4().hex[:8]}")
    container.create_container()
    container.upload_blob("b", b"data")
    with pytest.raises(ResourceNotFoundError) as err:
        container.get_blob_client("missing").download_blob()
    for headers in seen:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", lowered["x-ms-request-id"])
        assert lowered["x-ms-client-request-id"]  # the SDK sends one on every request; it comes back
    failed = err.value.response.headers
    assert f"RequestId:{failed['x-ms-request-id']}" in err.value.response.text()
    mine = "my-trace-0001"
    r = requests.get(f"{exastor_server.blob_endpoint}/nosuchcontainer?restype=container",
                     headers={"x-ms-client-request-id": mine, "x-ms-version": "2021-08-06"}, timeout=30)
    assert r.headers["x-ms-client-request-id"] == mine and r.headers["x-ms-request-id"]


def test_health_probes_are_anonymous_cheap_and_tell_no_secrets(exastor_server, s3):
    for base in (f"http://127.0.0.1:{exastor_server.s3_port}", f"http://127.0.0.1:{exastor_server.blob_port}"):
        for path in ("/minio/health/live", "/minio/health/ready"):
            r = requests.get(base + path, timeout=30)
            assert r.status_code == 200 and r.content == b""
            assert r.headers["cache-control"] == "no-store"
            assert SECRET_KEY not in str(r.headers) and ACCOUNT_KEY not in str(r.headers)
            assert requests.head(base + path, timeout=30).status_code == 200
    # Signed, the same path is a request for an object (bucket "minio", key "health/live").
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="minio", Key="health/live")
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_access_log_and_json_logs_carry_the_request_ids(tmp_path):
    access = tmp_path / "access.log"
    server = start_server(tmp_path, "--access-log", str(access), "--log-format", "json", "--log-level", "debug")
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="logged")
        put = s3.put_object(Bucket="logged", Key="dir/obj", Body=b"12345")["ResponseMetadata"]["RequestId"]
        get = s3.get_object(Bucket="logged", Key="dir/obj")
        assert get["Body"].read() == b"12345"
        with pytest.raises(ClientError) as err:
            s3.get_object(Bucket="logged", Key="missing")
        missing = err.value.response["ResponseMetadata"]["RequestId"]
        blob = requests.get(f"{server.blob_endpoint}/nosuch?restype=container", timeout=30)
        blob_id = blob.headers["x-ms-request-id"]
    finally:
        server.stop()
    assert access.stat().st_mode & 0o777 == 0o600
    lines = {e["request_id"]: e for e in map(json.loads, access.read_text().splitlines())}
    entry = lines[put]
    assert entry["api"] == "s3" and entry["method"] == "PUT" and entry["status"] == 200
    assert (entry["bucket"], entry["key"]) == ("logged", "dir/obj")
    assert entry["bytes_in"] == 5 and entry["latency_ms"] > 0 and entry["client"] == "127.0.0.1"
    assert {"time", "principal", "operation", "bytes_out"} <= set(entry)
    assert lines[get["ResponseMetadata"]["RequestId"]]["bytes_out"] == 5
    assert lines[missing]["status"] == 404
    assert lines[blob_id]["api"] == "blob" and lines[blob_id]["bucket"] == "nosuch"
    assert lines[blob_id]["status"] in (403, 404)
    logged = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    assert logged and all({"time", "level", "logger", "message", "pid"} <= set(e) for e in logged)
    assert {put, missing, blob_id} <= {e.get("request_id") for e in logged}
