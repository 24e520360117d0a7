"""The benchmark helpers in bench/lib measure what they claim to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.lib import datagen, rawdisk, rss  # noqa: E402
from bench.lib.results import read_result, write_result  # noqa: E402


def test_payloads_are_fresh_and_of_the_right_kind() -> None:
    a, b = datagen.payload(1 << 20, "random"), datagen.payload(1 << 20, "random")
    assert len(a) == len(b) == 1 << 20 and a != b  # a deduplicating store must not see repeats
    assert datagen.zstd_ratio(a) < 1.01  # incompressible
    h = datagen.payload(1 << 20 | 3, "half-entropy")  # odd size: trimmed exactly
    assert len(h) == (1 << 20) + 3 and max(h) <= 15
    assert 1.6 < datagen.zstd_ratio(h) < 2.2  # 4 random bits per byte: about 2:1, not more
    with pytest.raises(ValueError):
        datagen.payload(10, "zeros")


def test_stream_yields_exact_total_in_blocks() -> None:
    blocks = list(datagen.stream(10_000, 4096))
    assert [len(b) for b in blocks] == [4096, 4096, 1808]
    assert len(set(blocks[:2])) == 2


def test_raw_baseline_reads_back_and_reports_cold_or_warm(tmp_path: Path) -> None:
    r = rawdisk.sequential_write_read(tmp_path, datagen.payload(8 << 20))
    assert r["bytes"] == 8 << 20 and r["write_fsync_MBps"] > 0 and r["read_MBps"] > 0
    assert r["read_was"] in ("cold", "warm", "unknown")
    assert not list(tmp_path.iterdir())  # cleans up after itself


def test_resident_fraction_sees_a_freshly_read_file(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(os.urandom(1 << 20))
    f.read_bytes()
    assert rawdisk.resident_fraction(f) == pytest.approx(1.0)


def test_rss_sampler_follows_children_and_sees_growth() -> None:
    # a parent whose child allocates ~200 MiB: the tree peak must include the child
    code = ("import subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c',"
            "'import time; b=bytearray(200<<20); b[::4096]=b\"x\"*len(b[::4096]); time.sleep(3)']); c.wait()")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.3)
        with rss.RssSampler(proc.pid, interval_s=0.02, tree_refresh_s=0.1) as s:
            time.sleep(2.0)
        assert len(rss.process_tree(proc.pid)) == 2
    finally:
        proc.wait()
    assert s.peak_tree >= 200 << 20
    assert s.peak_root < 100 << 20  # the parent itself stays small


def test_tree_minor_faults_counts_a_childs_first_touches() -> None:
    # a parent whose child touches 64 MiB of fresh pages when told to: 16,384 pages at least
    code = ("import subprocess,sys; c=subprocess.Popen([sys.executable,'-c',"
            "'import sys; sys.stdin.readline(); b=bytearray(64<<20); print(\"touched\", flush=True); "
            "sys.stdin.readline()'], stdin=sys.stdin, stdout=sys.stdout); c.wait()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        before = rss.tree_minor_faults(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "touched"
        grown = rss.tree_minor_faults(proc.pid) - before
    finally:
        proc.stdin.write("done\n")
        proc.stdin.close()
        proc.wait(timeout=30)
    assert grown >= (64 << 20) // 4096
    assert rss.tree_minor_faults(None) == 0


def test_result_json_roundtrip(tmp_path: Path) -> None:
    p = write_result(tmp_path / "r.json", {"label": "x", "results": {}})
    assert read_result(p)["label"] == "x"
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError):
        read_result(tmp_path / "bad.json")


def test_put_floor_times_every_mandatory_stage_and_sums_them():
    from bench import put_floor
    from bench.write_path import floor_line

    got = put_floor.measure(mib=4, ec="4+2", repeat=1)
    assert set(got["stages"]) == {"receive", "md5", "sha256", "crc32", "cdc", "blake3", "aes_gcm", "parity"}
    assert all(v > 0 for v in got["stages"].values()), got  # each stage did its work (none skipped)
    assert abs(got["total"] - sum(got["stages"].values())) < 0.01
    assert got["chunks"] > 1
    assert put_floor.measure(mib=4, ec="1+0", repeat=1)["stages"]["parity"] == 0  # 1+0 codes nothing
    rgw = {"server": "radosgw", "steps": {"large_put": {"server_cpu_s_per_GiB": 2 * got["total"]}}}
    assert "= 0.50x RGW's" in floor_line(got, [rgw])
