"""Other real clients against the same server: the aws cli and s3fs/fsspec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def aws(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    cli = os.path.join(os.path.dirname(sys.executable), "aws")
    return subprocess.run([cli, "--endpoint-url", server.endpoint, *args], env=env, capture_output=True,
                          text=True, check=check, timeout=300)


def test_aws_cli_cp_ls_sync_rm(exastor_server, tmp_path, bucket):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "sub").mkdir()
    (src / "sub" / "b.bin").write_bytes(os.urandom(20 << 20))  # large enough for the cli's multipart path
    aws(exastor_server, "s3", "cp", str(src / "a.txt"), f"s3://{bucket}/a.txt")
    aws(exastor_server, "s3", "sync", str(src), f"s3://{bucket}/tree/")
    listing = aws(exastor_server, "s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    assert "a.txt" in listing and "tree/sub/b.bin" in listing
    dst = tmp_path / "dst"
    aws(exastor_server, "s3", "sync", f"s3://{bucket}/tree/", str(dst))
    assert (dst / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    aws(exastor_server, "s3", "rm", "--recursive", f"s3://{bucket}/tree/")
    assert "tree/" not in aws(exastor_server, "s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    api = aws(exastor_server, "s3api", "head-object", "--bucket", bucket, "--key", "a.txt").stdout
    assert '"ContentLength": 5' in api


def test_aws_cli_mb_rb(exastor_server):
    aws(exastor_server, "s3", "mb", "s3://cli-made-bucket")
    assert "cli-made-bucket" in aws(exastor_server, "s3", "ls").stdout
    aws(exastor_server, "s3", "rb", "s3://cli-made-bucket")
    assert "cli-made-bucket" not in aws(exastor_server, "s3", "ls").stdout


def test_s3fs(exastor_server, bucket):
    s3fs = pytest.importorskip("s3fs")
    fs = s3fs.S3FileSystem(key=exastor_server.access_key, secret=exastor_server.secret_key,
                           client_kwargs={"endpoint_url": exastor_server.endpoint, "region_name": "us-east-1"},
                           use_listings_cache=False)
    data = os.urandom(7 << 20)
    with fs.open(f"{bucket}/fs/data.bin", "wb", block_size=5 << 20) as f:  # multipart through s3fs
        f.write(data)
    fs.pipe(f"{bucket}/fs/small.txt", b"small")
    assert fs.cat(f"{bucket}/fs/data.bin") == data
    assert sorted(fs.ls(f"{bucket}/fs", detail=False)) == [f"{bucket}/fs/data.bin", f"{bucket}/fs/small.txt"]
    with fs.open(f"{bucket}/fs/data.bin", "rb") as f:
        f.seek(1000)
        assert f.read(100) == data[1000:1100]
    assert fs.info(f"{bucket}/fs/small.txt")["size"] == 5
    fs.rm(f"{bucket}/fs", recursive=True)
    assert not fs.exists(f"{bucket}/fs/small.txt")


def test_aws_cli_checksums_and_conditional_writes(exastor_server, tmp_path, bucket):
    """What the CLI sends today: a multipart upload with CRC32C per part (a FULL_OBJECT or COMPOSITE
    checksum on the object, returned with --checksum-mode), and put-object --if-none-match '*'."""
    import json

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 << 20))  # above the cli's 8 MiB multipart threshold
    aws(exastor_server, "s3", "cp", str(big), f"s3://{bucket}/big.bin", "--checksum-algorithm", "CRC32C")
    head = json.loads(aws(exastor_server, "s3api", "head-object", "--bucket", bucket, "--key", "big.bin",
                          "--checksum-mode", "ENABLED").stdout)
    assert head["ChecksumCRC32C"] and head["ChecksumType"] in ("FULL_OBJECT", "COMPOSITE"), head
    small = tmp_path / "commit.json"
    small.write_text("{}")
    aws(exastor_server, "s3api", "put-object", "--bucket", bucket, "--key", "_commit", "--body", str(small),
        "--if-none-match", "*")
    again = aws(exastor_server, "s3api", "put-object", "--bucket", bucket, "--key", "_commit", "--body", str(small),
                "--if-none-match", "*", check=False)
    assert again.returncode != 0 and "PreconditionFailed" in again.stderr, again.stderr
