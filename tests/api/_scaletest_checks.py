"""Checks shared by the scale-test API tests: the same assertions against any S3 server."""

from __future__ import annotations

import asyncio
import json

from exastor.cli import main
from exastor.tools.scaletest.dataset import DatasetSpec, ensure_dataset, payload
from exastor.tools.scaletest.s3client import S3Client
from exastor.tools.scaletest.workloads import training_workload


def scaletest(endpoint, access_key, secret_key, bucket, *extra):
    return main(["scaletest", "--endpoint", endpoint, "--access-key", access_key, "--secret-key", secret_key,
                 "--bucket", bucket, "--quiet", *extra])


def check_training_compute_bound(tmp_path, endpoint, access_key, secret_key, bucket):
    """Tiny samples and 0.5 s of compute: storage keeps up, AU must be near 1 and the arithmetic consistent.
    (With 0.2 s, a slow peer on a busy 2-core machine, moto at 40 ms a GET, fell just under the 90 % pass.)"""
    out = tmp_path / "train.json"
    rc = scaletest(endpoint, access_key, secret_key, bucket, "--workload", "unet3d", "--accelerators", "4",
                   "--duration", "4", "--record-length", "16KiB", "--record-length-stdev", "4KiB",
                   "--num-files", "32", "--batch-size", "3", "--compute-time", "0.5", "--json", str(out))
    result = json.loads(out.read_text())["result"]
    assert rc == 0 and result["passed"]
    assert result["au_mean"] > 0.85 and result["errors"] == 0
    assert result["throughput_bytes_per_s"] * result["duration"] == result["bytes_read"] or abs(
        result["throughput_bytes_per_s"] * result["duration"] - result["bytes_read"]) < 1
    # whole-object reads: each request is one sample, within the generator's clip bounds
    assert 4 * 1024 <= result["bytes_read"] / result["requests"] <= 28 * 1024
    assert result["steps"] * 3 <= result["requests"]
    # 4 accelerators x ~4 s / 0.5 s per step: about 32 steps, and never more than the clock allows
    assert 24 <= result["steps"] <= 4 * (4 / 0.5 + 1)
    return result


def check_ranged_reads_and_content(endpoint, access_key, secret_key, bucket):
    """Ranged GETs return exactly the sample, and the stored bytes are the generator's."""
    workload = training_workload("resnet50", "h100").with_overrides(
        record_length=3000, record_length_stdev=700, samples_per_file=6)
    spec = DatasetSpec.for_workload(workload, num_files=4, seed=3)

    async def go():
        async with S3Client(endpoint, bucket, access_key, secret_key, pool=8) as client:
            assert await ensure_dataset(client, spec) is False
            assert await ensure_dataset(client, spec) is True  # reused, not rewritten
            for file_index in range(spec.num_files):
                for sample in range(spec.samples_per_file):
                    offset = int(spec.sample_offsets[file_index, sample])
                    length = int(spec.sample_sizes[file_index, sample])
                    assert await client.get(spec.key(file_index), offset, length) == length
            stored = await client.get_bytes(spec.key(1))
            assert stored == payload(3 * 1_000_003 + 1, 0, int(spec.file_sizes[1]))

    asyncio.run(go())


def check_checkpoint_multipart(tmp_path, endpoint, access_key, secret_key, bucket):
    out = tmp_path / "ckpt.json"
    rc = scaletest(endpoint, access_key, secret_key, bucket, "--workload", "checkpoint", "--accelerators", "2",
                   "--checkpoint-size", "24MiB", "--part-size", "5MiB", "--json", str(out))
    result = json.loads(out.read_text())["checkpoint"]
    assert rc == 0 and result["errors"] == 0
    assert result["checkpoint_bytes"] == 24 << 20 and result["ranks"] == 2
    assert result["write_seconds"] >= max(result["rank_write_seconds"]) * 0.99
    assert result["read_bytes_per_s"] > 0
