"""Store commands as an operator meets them, against real servers (issue 15, item 8): fsck's verdict
always comes with the counter behind it, users who own buckets are not removed from under them, and
`estimate s3://` works without boto3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import exastor, s3_client, start_server


def test_fsck_on_three_drives_with_one_bad_replica_names_the_problem(tmp_path):
    drives = [tmp_path / f"d{i}" for i in range(3)]
    server = start_server(tmp_path, *[a for d in drives for a in ("--drive", str(d))])
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="fsck3")
        s3.put_object(Bucket="fsck3", Key="k", Body=os.urandom(300_000))
    finally:
        server.kill()  # kill -9: the segment stays open, as whole-file replicas on m+1 drives
    replicas = sorted(p for d in drives for p in (d / "segments").glob("seg-*.log") if p.stat().st_size > 200_000)
    assert len(replicas) >= 2, replicas
    with open(replicas[0], "r+b") as f:  # one byte inside the object's records, on one replica only
        f.seek(150_000)
        byte = f.read(1)
        f.seek(150_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    run = exastor("fsck", data_dir=server.data_dir, check=False)
    assert run.returncode == 1 and "PROBLEMS FOUND" in run.stdout, run.stdout + run.stderr
    counters = dict(re.findall(r"^([a-z ]+?)\s+: (\d+)", run.stdout, re.M))
    assert int(counters["degraded chunks"]) > 0, run.stdout  # the counter that explains the verdict
    assert "exastor fsck --repair" in run.stdout


def test_a_user_who_owns_buckets_is_removed_only_with_a_transfer(tmp_path):
    server = start_server(tmp_path)
    try:
        made = exastor("user", "add", "erin", data_dir=server.data_dir).stdout
        keys = dict(re.findall(r"^(access key|secret key)\s*: (\S+)", made, re.M))
        erin = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id=keys["access key"], aws_secret_access_key=keys["secret key"],
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        erin.create_bucket(Bucket="erins")
        erin.put_object(Bucket="erins", Key="k", Body=b"kept")
        refused = exastor("user", "remove", "erin", data_dir=server.data_dir, check=False)
        assert refused.returncode == 1 and "owns 1 bucket(s) (erins)" in refused.stderr
        assert "--transfer-to" in refused.stderr
        assert erin.get_object(Bucket="erins", Key="k")["Body"].read() == b"kept"  # still hers, still working
        bad = exastor("user", "remove", "erin", "--transfer-to", "nobody", data_dir=server.data_dir, check=False)
        assert bad.returncode == 1 and "no user 'nobody'" in bad.stderr
        done = exastor("user", "remove", "erin", "--transfer-to", "admin", data_dir=server.data_dir)
        assert "now owned by admin: erins" in done.stdout
        for _ in range(4):  # refused on the very next requests, by the workers that had her key cached too
            with pytest.raises(ClientError) as gone:
                erin.list_buckets()
            assert gone.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        admin = s3_client(server)
        assert admin.get_object(Bucket="erins", Key="k")["Body"].read() == b"kept"
        # A new user of the same name inherits nothing.
        again = exastor("user", "add", "erin", data_dir=server.data_dir).stdout
        keys = dict(re.findall(r"^(access key|secret key)\s*: (\S+)", again, re.M))
        new_erin = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                                aws_access_key_id=keys["access key"], aws_secret_access_key=keys["secret key"],
                                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        with pytest.raises(ClientError) as denied:
            new_erin.get_object(Bucket="erins", Key="k")
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        server.stop()


def test_estimate_of_an_s3_prefix_runs_without_boto3(exastor_server, s3):
    s3.create_bucket(Bucket="estimate-src")
    for i in range(3):
        s3.put_object(Bucket="estimate-src", Key=f"p/{i}.txt", Body=b"the same line of text\n" * 5000)
    s3.put_object(Bucket="estimate-src", Key="other/x", Body=b"not under the prefix")
    # boto3 made unimportable: the estimator must use the project's own client
    code = ("import sys; sys.modules['boto3'] = None; sys.modules['botocore'] = None; "
            "from exastor.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=exastor_server.access_key, AWS_SECRET_ACCESS_KEY=exastor_server.secret_key,
               AWS_ENDPOINT_URL=exastor_server.endpoint)
    run = subprocess.run([sys.executable, "-c", code, "estimate", "s3://estimate-src/p/", "--json", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["files"] == 3 and result["logical_bytes"] == 3 * 22 * 5000
    assert result["reduction"]["total"] > 10
    # wrong keys and a missing bucket: a clear message, exit 1, no traceback
    for bucket, secret in (("estimate-src", "wrong-secret-0123456789"), ("no-such-bucket-x", None)):
        env2 = {**env, "AWS_SECRET_ACCESS_KEY": secret or exastor_server.secret_key}
        run = subprocess.run([sys.executable, "-c", code, "estimate", f"s3://{bucket}/", "--quiet"],
                             capture_output=True, text=True, env=env2, timeout=120)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert ("SignatureDoesNotMatch" if secret else "NoSuchBucket") in run.stderr
    no_keys = {k: v for k, v in env.items() if not k.startswith("AWS_SECRET")}
    no_keys["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    run = subprocess.run([sys.executable, "-c", code, "estimate", "s3://estimate-src/"], capture_output=True,
                         text=True, env=no_keys, timeout=120)
    assert run.returncode == 2 and "no S3 credentials" in run.stderr
