"""`exastor scaletest` end to end on a local directory (file://): no server needed."""

import argparse
import json

import pytest

from exastor.cli import main
from exastor.cliargs import parse_size


def test_parse_size():
    assert parse_size("4096") == 4096
    assert parse_size("64KiB") == 65536
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("2 MiB") == 2 << 20
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def _small(tmp_path, *extra):
    return ["scaletest", "--endpoint", f"file://{tmp_path / 'data'}", "--quiet", "--record-length", "8KiB",
            "--record-length-stdev", "1KiB", "--num-files", "40", *extra]


def test_training_run_json_and_report(tmp_path):
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    rc = main(_small(tmp_path, "--workload", "unet3d", "--accelerators", "3", "--duration", "1.5",
                     "--compute-time", "0.05", "--batch-size", "2", "--json", str(out), "--report", str(html)))
    result = json.loads(out.read_text())["result"]
    assert rc == (0 if result["passed"] else 1)
    assert result["accelerators"] == 3 and len(result["au_per_accelerator"]) == 3
    assert 0.0 < result["au_mean"] <= 1.0
    assert result["au_mean"] == pytest.approx(sum(result["au_per_accelerator"]) / 3)
    assert result["throughput_bytes_per_s"] == pytest.approx(result["bytes_read"] / result["duration"], rel=1e-6)
    # every request read one whole sample (8 KiB +/- a bit) and steps x batch <= samples read
    assert 5 * 1024 < result["bytes_read"] / result["requests"] < 12 * 1024
    assert result["steps"] * 2 <= result["requests"]
    assert result["workload"]["compute_time"] == 0.05 and result["workload"]["dataset_files"] == 40
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "AU mean" in page


def test_find_max_probes_up_to_the_limit(tmp_path):
    out = tmp_path / "m.json"
    # compute-bound on a local directory: every count passes, so the search ends at the limit
    rc = main(_small(tmp_path, "--workload", "cosmoflow", "--duration", "0.6", "--compute-time", "0.1",
                     "--au-threshold", "0.5", "--find-max", "--find-max-limit", "4", "--json", str(out)))
    found = json.loads(out.read_text())["find_max"]
    assert rc == 0 and found["best"] == 4
    assert [p["accelerators"] for p in found["probes"]] == [1, 2, 4]
    assert set(found["runs"]) == {"1", "2", "4"}


def test_checkpoint_on_a_directory(tmp_path):
    out = tmp_path / "c.json"
    rc = main(["scaletest", "--endpoint", f"file://{tmp_path / 'ck'}", "--quiet", "--workload", "checkpoint",
               "--accelerators", "3", "--checkpoint-size", "10MiB", "--part-size", "1MiB", "--keep",
               "--json", str(out)])
    result = json.loads(out.read_text())["checkpoint"]
    assert rc == 0 and result["ranks"] == 3 and result["checkpoint_bytes"] == 10 << 20
    assert result["write_bytes_per_s"] == pytest.approx(result["checkpoint_bytes"] / result["write_seconds"])
    shards = sorted((tmp_path / "ck" / "checkpoints" / "llama3-8b").iterdir())
    assert [p.stat().st_size for p in shards] == [3495254, 3495253, 3495253]


def test_aggregate_per_host_files(tmp_path):
    paths = []
    for host in range(2):
        out = tmp_path / f"h{host}.json"
        main(_small(tmp_path, "--workload", "cosmoflow", "--accelerators", "2", "--duration", "0.5",
                    "--rank-offset", str(2 * host), "--total-accelerators", "4", "--json", str(out)))
        paths.append(str(out))
    total = tmp_path / "all.json"
    main(["scaletest", "--aggregate", *paths, "--json", str(total), "--quiet"])
    merged = json.loads(total.read_text())["result"]
    singles = [json.loads(open(p).read())["result"] for p in paths]
    assert merged["accelerators"] == 4 and merged["hosts"] == 2
    assert merged["bytes_read"] == sum(s["bytes_read"] for s in singles)


def test_credentials_are_required_for_s3(monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    assert main(["scaletest", "--endpoint", "http://127.0.0.1:1", "--access-key", "", "--secret-key", ""]) == 2
    assert "credentials" in capsys.readouterr().out
