"""Similarity-delta reduction against a real server: the reducer runs beside it, every object
reads back exactly, `exastor stats` shows the four-way split, `exastor estimate` predicted it
(within 5%; in fact to the byte), and fsck stays clean, before and after rebuilding the index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from conftest import exastor, s3_client, sqlite_only, start_server


def _files(root: Path) -> dict[str, bytes]:
    rng = np.random.default_rng(21)
    w = (rng.standard_normal(200_000) * 0.04).astype("<f4")
    steps = [w]
    for _ in range(2):  # successive "checkpoints": small updates to every weight
        steps.append(steps[-1] + (rng.standard_normal(w.size) * 1e-7).astype("<f4"))
    text = rng.integers(97, 123, 500_000, dtype=np.uint8).tobytes()
    files = {f"ckpt/step-{i}.bin": s.tobytes() for i, s in enumerate(steps)}
    files["ckpt/step-2-bf16.bin"] = (steps[2].view("<u4") >> 16).astype("<u2").tobytes()
    files["text/a.txt"] = text
    files["text/b.txt"] = text[:300_000] + b"a small edit" + text[300_000:]
    files["logs/train.jsonl"] = "".join(json.dumps({"step": i, "loss": 2.0 / (i + 1)}) + "\n"
                                        for i in range(5000)).encode()
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return files


@sqlite_only("runs the standalone reducer (python -m exastor.services.reducer), which opens the SQLite "
             "store under --data and has no --meta")
def test_reducer_stats_and_estimate_agree(tmp_path: Path) -> None:
    files = _files(tmp_path / "corpus")
    server = start_server(tmp_path)
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="red")
        for name in sorted(files):
            s3.put_object(Bucket="red", Key=name, Body=files[name])
        before = json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)
        run = subprocess.run([sys.executable, "-m", "exastor.services.reducer", "--data", str(server.data_dir)],
                             capture_output=True, text=True, timeout=300, check=True)
        reduced = json.loads(run.stdout)
        assert reduced["deltas"] > 0 and reduced["grouped"] > 0
        for name, body in files.items():
            assert s3.get_object(Bucket="red", Key=name)["Body"].read() == body, name
        got = s3.get_object(Bucket="red", Key="ckpt/step-2.bin", Range="bytes=100000-300000")["Body"].read()
        assert got == files["ckpt/step-2.bin"][100000:300001]
        stats = json.loads(exastor("stats", "--json", data_dir=server.data_dir).stdout)
        # The estimator reads the same data straight from the bucket, too.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
               "AWS_DEFAULT_REGION": "us-east-1"}
        from_s3 = json.loads(subprocess.run(
            [sys.executable, "-m", "exastor.cli", "estimate", "s3://red/", "--endpoint-url", server.endpoint,
             "--json", "--quiet"], capture_output=True, text=True, timeout=300, check=True, env=env).stdout)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
    assert stats["reduction_ratio"] > before["reduction_ratio"] * 1.3
    r = stats["reduction"]
    assert r["similarity_delta"] > 1.2 and r["float_transforms"] > 1.0
    assert abs(r["dedupe"] * r["compression"] * r["float_transforms"] * r["similarity_delta"] - r["total"]) < 0.01

    est = json.loads(subprocess.run([sys.executable, "-m", "exastor.cli", "estimate", str(tmp_path / "corpus"),
                                     "--json", "--quiet"], capture_output=True, text=True, timeout=300,
                                    check=True).stdout)
    assert abs(est["reduction_ratio"] / stats["reduction_ratio"] - 1) < 0.05
    assert est["stored_bytes"] == stats["stored_bytes"]
    assert from_s3["stored_bytes"] == est["stored_bytes"] and from_s3["files"] == len(files)

    report = json.loads(exastor("fsck", "--json", data_dir=server.data_dir).stdout)
    assert report["clean"], report
    rebuilt = json.loads(exastor("fsck", "--rebuild-index", "--json", data_dir=server.data_dir).stdout)
    assert rebuilt["clean"] and not rebuilt["lost_chunks"], rebuilt
    assert json.loads(exastor("fsck", "--json", data_dir=server.data_dir).stdout)["clean"]
