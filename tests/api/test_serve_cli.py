"""`exastor serve` as a newcomer runs it: no keys given, port 0. The banner's endpoint, generated
credentials and AWS_* exports must be the ones that work with boto3."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from exastor.gateway.health import wait_ready


def _banner(proc: subprocess.Popen, deadline_s: float = 30) -> dict[str, str]:
    exports: dict[str, str] = {}
    end = time.monotonic() + deadline_s
    lines = []
    while time.monotonic() < end and "AWS_DEFAULT_REGION" not in exports:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.match(r"\s*export (AWS_\w+)=(\S+)", line)
        if found:
            exports[found.group(1)] = found.group(2)
    assert "AWS_DEFAULT_REGION" in exports, "".join(lines)
    return exports


def test_generated_credentials_and_port_zero_work_as_printed(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXASTOR_", "AWS_"))}
    proc = subprocess.Popen([sys.executable, "-m", "exastor.cli", "serve", "--data", str(tmp_path / "data"),
                             "--s3-port", "0", "--blob-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        exports = _banner(proc)  # port 0: only the banner says which port the kernel gave
        port = int(exports["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
        assert port > 0  # the kernel's port, not the 0 that was asked for
        wait_ready([exports["AWS_ENDPOINT_URL"]], alive=lambda: proc.poll() is None)  # the banner is not readiness
        creds = tmp_path / "data" / "credentials.toml"
        assert creds.stat().st_mode & 0o777 == 0o600
        assert exports["AWS_SECRET_ACCESS_KEY"] in creds.read_text()

        def client(secret: str):
            return boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"],
                                aws_access_key_id=exports["AWS_ACCESS_KEY_ID"], aws_secret_access_key=secret,
                                region_name=exports["AWS_DEFAULT_REGION"],
                                config=Config(retries={"max_attempts": 1}))

        s3 = client(exports["AWS_SECRET_ACCESS_KEY"])
        s3.create_bucket(Bucket="first")
        s3.put_object(Bucket="first", Key="k", Body=b"hello")
        assert s3.get_object(Bucket="first", Key="k")["Body"].read() == b"hello"
        with pytest.raises(ClientError) as err:  # never open to anyone else
            client("not-the-secret").list_buckets()
        assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_same_port_for_s3_and_blob_is_refused_clearly(tmp_path):
    from conftest import free_port

    port = str(free_port())
    done = subprocess.run([sys.executable, "-m", "exastor.cli", "serve", "--data", str(tmp_path / "data"),
                           "--s3-port", port, "--blob-port", port], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"are both {port}: S3 and Blob need a port each" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
