"""TLS on both endpoints with real clients (boto3, aws cli, azure-storage-blob), and X-Forwarded-*
believed only from configured proxies."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from conftest import s3_client, start_server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    server = start_server(tmp, "--tls", "self-signed", tls_ca=tmp / "data" / "tls" / "ca.pem")
    yield server
    server.stop()
    assert "Traceback" not in server.log_text()


def test_self_signed_mode_keeps_its_key_private_and_says_what_to_trust(tls_server):
    folder = tls_server.data_dir / "tls"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "key.pem").stat().st_mode & 0o777 == 0o600
    log = tls_server.log_text()
    assert f"clients trust {tls_server.tls_ca.resolve()}" in log
    assert f"export AWS_CA_BUNDLE={tls_server.tls_ca.resolve()}" in log
    assert f"S3 endpoint : https://127.0.0.1:{tls_server.s3_port}" in log
    assert f"Blob endpoint : https://127.0.0.1:{tls_server.blob_port}/" in log


def test_boto3_over_https_verifies_the_certificate(tls_server):
    s3 = s3_client(tls_server)  # verify=ca.pem
    s3.create_bucket(Bucket="tls-boto3")
    body = os.urandom(3 << 20)
    s3.put_object(Bucket="tls-boto3", Key="k", Body=body)
    assert s3.get_object(Bucket="tls-boto3", Key="k")["Body"].read() == body
    import boto3
    from botocore.config import Config
    from botocore.exceptions import SSLError

    untrusting = boto3.client("s3", endpoint_url=tls_server.endpoint, region_name="us-east-1",
                              aws_access_key_id=tls_server.access_key, aws_secret_access_key=tls_server.secret_key,
                              config=Config(retries={"max_attempts": 1}))
    with pytest.raises(SSLError):  # the system's CAs do not vouch for it
        untrusting.list_buckets()


def test_plain_http_to_a_tls_port_gets_no_answer(tls_server):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.s3_port}/", timeout=10)
    context = ssl.create_default_context(cafile=str(tls_server.tls_ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{tls_server.blob_port}/minio/health/ready",
                                context=context, timeout=10) as r:
        assert r.status == 200


def test_aws_cli_with_a_ca_bundle(tls_server, tmp_path):
    src = tmp_path / "upload.bin"
    src.write_bytes(os.urandom(9 << 20))  # multipart in the cli (8 MiB threshold)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": tls_server.access_key,
           "AWS_SECRET_ACCESS_KEY": tls_server.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    aws = [str(Path(sys.executable).parent / "aws"), "--endpoint-url", tls_server.endpoint,
           "--ca-bundle", str(tls_server.tls_ca)]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*aws, *args], capture_output=True, text=True, env=env, timeout=120)

    made = run("s3", "mb", "s3://tls-cli")
    assert made.returncode == 0, made.stderr
    up = run("s3", "cp", str(src), "s3://tls-cli/upload.bin")
    assert up.returncode == 0, up.stderr
    down = run("s3", "cp", "s3://tls-cli/upload.bin", str(tmp_path / "back.bin"))
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    refused = subprocess.run([aws[0], "--endpoint-url", tls_server.endpoint, "s3", "ls"], capture_output=True,
                             text=True, env={**env, "AWS_MAX_ATTEMPTS": "1"}, timeout=120)
    assert refused.returncode != 0 and "SSL" in refused.stderr


def test_azure_blob_sdk_with_an_https_connection_string(tls_server):
    from azure.core.exceptions import ServiceRequestError
    from azure.storage.blob import BlobServiceClient

    assert tls_server.connection_string.startswith("DefaultEndpointsProtocol=https;")
    svc = BlobServiceClient.from_connection_string(tls_server.connection_string, max_single_put_size=1 << 20,
                                                   connection_verify=str(tls_server.tls_ca))
    container = svc.create_container("tlsblob")
    body = os.urandom(5 << 20)
    container.upload_blob("b", body)  # over max_single_put_size: blocks, then the block list
    assert container.download_blob("b").readall() == body
    untrusting = BlobServiceClient.from_connection_string(tls_server.connection_string, retry_total=0)
    with pytest.raises(ServiceRequestError):
        untrusting.get_service_properties()


def test_operator_certificate_and_key(tls_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(tls_server.data_dir / "tls" / "cert.pem", cert)
    shutil.copy(tls_server.data_dir / "tls" / "key.pem", key)
    server = start_server(tmp_path / "own", "--tls-cert", str(cert), "--tls-key", str(key), tls_ca=tls_server.tls_ca)
    try:
        s3_client(server).create_bucket(Bucket="own-cert")
        assert not (server.data_dir / "tls").exists()  # nothing self-signed made
    finally:
        server.stop()


def _client_seen(access_log: Path, request_id: str) -> str:
    for line in access_log.read_text().splitlines():
        entry = json.loads(line)
        if entry["request_id"] == request_id:
            return entry["client"]
    raise AssertionError(f"{request_id} not in the access log")


@pytest.mark.parametrize("trusted", [False, True])
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path, trusted):
    """A loopback client is not a proxy unless configured: its X-Forwarded-For neither changes the
    address the server sees nor passes a SAS's IP restriction (uvicorn's default trusted 127.0.0.1)."""
    from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

    access = tmp_path / "access.log"
    server = start_server(tmp_path, "--access-log", str(access), *(["--trusted-proxy", "127.0.0.1"] if trusted else []))
    try:
        svc = BlobServiceClient.from_connection_string(server.connection_string)
        svc.create_container("xff").upload_blob("b", b"secret")
        sas = generate_blob_sas(server.account_name, "xff", "b", account_key=server.account_key,
                                permission=BlobSasPermissions(read=True), ip="203.0.113.9",
                                expiry=datetime.now(UTC) + timedelta(hours=1))
        r = requests.get(f"{server.blob_endpoint}/xff/b?{sas}", headers={"x-forwarded-for": "203.0.113.9"},
                         timeout=30)
        s3 = requests.get(f"{server.endpoint}/", headers={"x-forwarded-for": "203.0.113.9"}, timeout=30)
    finally:
        server.stop()
    expected = "203.0.113.9" if trusted else "127.0.0.1"
    assert _client_seen(access, r.headers["x-ms-request-id"]) == expected
    assert _client_seen(access, s3.headers["x-amz-request-id"]) == expected
    if trusted:
        assert r.status_code == 200 and r.content == b"secret"
    else:
        assert r.status_code == 403 and r.headers["x-ms-error-code"] == "AuthorizationSourceIPMismatch"
