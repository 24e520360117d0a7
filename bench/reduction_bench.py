#!/usr/bin/env python3
"""Data reduction on a real AI corpus: exastor against zstd, CDC dedupe + zstd, and byte grouping.

    python bench/reduction_bench.py [--corpus bench/.corpus/data] [--duty 0.5] [--quick]

In one run, on the corpus built by ``bench/corpus/build.py`` (real MiniLM weights, real
fine-tuning checkpoints, fp16/bf16 conversions, a second fine-tuned variant, tokenized shards,
JSONL logs, compressed images):

1. baselines, computed here over the same files:
   - ``zstd3-file``: zstd level 3 per file (what a compressing file system or tar+zstd gives);
   - ``cdc-zstd``: FastCDC (exastor's parameters) + BLAKE3 dedupe + zstd-3 per unique chunk
     (the restic / borg approach);
   - ``grouping-zstd``: ZipNN's approach: byte grouping of float data (per 1 MiB block, width
     and phase detected) + zstd-3 per byte stream; other files zstd-3 per file;
2. exastor for real: a server on loopback; every file PUT in sorted order (timed); all GETs
   (timed); the background reducer run as its own process (timed), while a foreground PUT load
   runs, compared with the same load without it; GETs again (delta-stored objects, timed against
   the same objects before reduction); ``exastor stats --json``; ``exastor estimate --json``
   on the same files; ``exastor fsck`` after the server stops.

Ratios are logical bytes / stored bytes. Baselines count payload bytes only; exastor counts
its 64-byte record headers too. Results: ``bench/results/reduction.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import blake3
import numpy as np
import zstandard

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402

from exastor.engine import chunker, codec, detect  # noqa: E402
from exastor.meta import manifest as mf  # noqa: E402

MiB = 1 << 20
PY = sys.executable


def corpus_files(root: Path) -> list[tuple[str, Path, str]]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            name = p.relative_to(root).as_posix()
            with open(p, "rb") as f:
                head = f.read(65536)
            out.append((name, p, detect.file_type(head, name)))
    return sorted(out)


def family(kind: str) -> str:
    """Report groups: a safetensors file with no single dtype is the original fp32 release."""
    return {"safetensors": "safetensors-f32", "safetensors-f32": "safetensors-f32", "pytorch": "pytorch-f32"}.get(
        kind, kind)


# --- baselines ----------------------------------------------------------------------------
def zstd3_file(data: bytes) -> int:
    return len(zstandard.ZstdCompressor(level=3).compress(data))


def grouping_zstd(data: bytes) -> int:
    """ZipNN-style: group bytes of float blocks, compress each byte stream; else plain zstd-3."""
    if detect.float_layout(data[len(data) // 2: len(data) // 2 + (1 << 20)]) is None:
        return zstd3_file(data)
    total = 0
    for i in range(0, len(data), MiB):
        block = data[i:i + MiB]
        layout = detect.float_layout(block)
        total += len(codec.pack_streams(block, *layout, level=3)) if layout else zstd3_file(block)
    return total


def baselines(files: list[tuple[str, Path, str]]) -> dict[str, dict[str, dict[str, int]]]:
    """method -> family -> {logical, stored}."""
    out: dict[str, dict[str, dict[str, int]]] = {m: defaultdict(lambda: {"logical": 0, "stored": 0})
                                                 for m in ("zstd3-file", "cdc-zstd", "grouping-zstd")}
    seen: set[bytes] = set()
    comp = zstandard.ZstdCompressor(level=3)
    for _name, path, kind in files:
        data = path.read_bytes()
        fam = family(kind)
        for m in out:
            out[m][fam]["logical"] += len(data)
        out["zstd3-file"][fam]["stored"] += zstd3_file(data)
        out["grouping-zstd"][fam]["stored"] += grouping_zstd(data)
        chunks, _ = chunker.cut(chunker.new_chunker(), data, True)
        for c in chunks:
            fp = blake3.blake3(c).digest()
            if fp in seen:
                continue
            seen.add(fp)
            out["cdc-zstd"][fam]["stored"] += min(len(c), len(comp.compress(c)))
    return {m: dict(v) for m, v in out.items()}


# --- exastor --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.key, self.secret = "BENCHKEY", secrets.token_hex(16)
        self.log = open(data.parent / "server.log", "ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "exastor.cli", "serve", "--data", str(data), "--s3-port", str(self.port), "--blob-port", "0",
             "--access-key", self.key, "--secret-key", self.secret],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "EXASTOR_GC_INTERVAL": "0"},
            start_new_session=True)
        from exastor.gateway.health import wait_ready

        wait_ready([f"http://127.0.0.1:{self.port}"], alive=lambda: self.proc.poll() is None)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def exastor_json(*args: str) -> dict[str, Any]:
    out = subprocess.run([PY, "-m", "exastor.cli", *args], capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout)


def timed_gets(s3: Any, bucket: str, keys: list[str], expect: dict[str, int]) -> float:
    """MB/s of sequential whole-object GETs (each fully read and length-checked)."""
    began = time.perf_counter()
    total = 0
    for k in keys:
        body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
        assert len(body) == expect[k], k
        total += len(body)
    return total / 1e6 / (time.perf_counter() - began)


def put_load(s3: Any, bucket: str, rounds: int, size: int) -> float:
    """MB/s of a foreground PUT load of fresh unique 8 MiB objects (the rate a reducer must not eat)."""
    rng = np.random.default_rng()
    bodies = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(rounds)]
    began = time.perf_counter()
    for i, body in enumerate(bodies):
        s3.put_object(Bucket=bucket, Key=f"load-{secrets.token_hex(4)}-{i}", Body=body)
    return rounds * size / 1e6 / (time.perf_counter() - began)


def per_family_stored(data: Path, files: list[tuple[str, Path, str]]) -> dict[str, dict[str, int]]:
    """Stored bytes per family from the store's own index: each chunk counted once, for the object
    that first wrote it (as the estimator attributes them)."""
    fam_of = {name: family(kind) for name, _, kind in files}
    con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True)
    chunks = {bytes(fp): (stored, codec_) for fp, stored, codec_ in
              con.execute("SELECT fp, stored_len, codec FROM chunks WHERE refs > 0")}
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"logical": 0, "stored": 0, "delta_chunks": 0})
    seen: set[bytes] = set()
    for key, size, manifest in con.execute("SELECT key, size, manifest FROM objects WHERE bucket = 'corpus' "
                                           "AND delete_marker = 0 ORDER BY seq"):
        fam = fam_of[key]
        out[fam]["logical"] += size
        for s in mf.unpack(manifest):
            if s.fp in seen:
                continue
            seen.add(s.fp)
            stored, codec_ = chunks[s.fp]
            out[fam]["stored"] += stored + 64
            out[fam]["delta_chunks"] += codec_ == 3
    con.close()
    return dict(out)


def delta_heavy_keys(data: Path) -> list[str]:
    """Objects at least half of whose chunks are delta records."""
    con = sqlite3.connect(f"file:{data / 'meta' / 'exastor.sqlite'}?mode=ro", uri=True)
    codecs = {bytes(fp): c for fp, c in con.execute("SELECT fp, codec FROM chunks")}
    keys = []
    for key, manifest in con.execute("SELECT key, manifest FROM objects WHERE bucket = 'corpus' AND manifest IS NOT NULL"):
        sl = mf.unpack(manifest)
        if sl and sum(codecs.get(s.fp) == 3 for s in sl) * 2 >= len(sl):
            keys.append(key)
    con.close()
    return sorted(keys)


def run_exastor(files: list[tuple[str, Path, str]], corpus: Path, work: Path, duty: float,
                load_rounds: int) -> dict[str, Any]:
    data = work / "data"
    data.mkdir(parents=True)
    server = Server(data)
    res: dict[str, Any] = {}
    try:
        s3 = server.client()
        s3.create_bucket(Bucket="corpus")
        s3.create_bucket(Bucket="load")
        sizes = {name: p.stat().st_size for name, p, _ in files}
        began = time.perf_counter()
        for name, path, _ in files:
            s3.put_object(Bucket="corpus", Key=name, Body=path.read_bytes())
        res["put_corpus_mb_s"] = sum(sizes.values()) / 1e6 / (time.perf_counter() - began)
        keys = sorted(sizes)
        timed_gets(s3, "corpus", keys, sizes)  # warm the page cache the same way for both runs
        res["get_all_before_mb_s"] = timed_gets(s3, "corpus", keys, sizes)
        res["stats_before"] = exastor_json("stats", "--data", str(data), "--json")["reduction"]
        res["put_load_alone_mb_s"] = put_load(s3, "load", load_rounds, 8 * MiB)

        # The reducer as its own process, beside the server, while the same PUT load runs.
        began = time.perf_counter()
        proc = subprocess.Popen([PY, "-m", "exastor.services.reducer", "--data", str(data), "--duty", str(duty)],
                                stdout=subprocess.PIPE, text=True)
        loads: list[float] = []
        while proc.poll() is None and len(loads) < 3:
            loads.append(put_load(s3, "load", load_rounds, 8 * MiB))
        out, _ = proc.communicate(timeout=7200)
        reducer_s = time.perf_counter() - began
        # The same load again with the reducer done: "alone" is the mean of before and after, so a
        # change in the machine's other load during the run does not pass for the reducer's cost.
        res["put_load_alone_after_mb_s"] = put_load(s3, "load", load_rounds, 8 * MiB)
        red = json.loads(out)
        res["reducer"] = red
        res["reducer_duty"] = duty
        res["reducer_mb_s"] = red["bytes_seen"] / 1e6 / red["seconds"] if red["seconds"] else None
        res["reducer_wall_s"] = reducer_s
        res["put_load_during_reducer_mb_s"] = loads
        # Drop the load objects: the ratio is about the corpus.
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="load"):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket="load", Key=o["Key"])

        heavy = delta_heavy_keys(data)
        res["delta_heavy_objects"] = heavy
        res["get_all_after_mb_s"] = timed_gets(s3, "corpus", keys, sizes)
        if heavy:
            heavy_sizes = {k: sizes[k] for k in heavy}
            res["get_delta_objects_after_mb_s"] = max(timed_gets(s3, "corpus", heavy, heavy_sizes) for _ in range(2))
        # The same objects stored plainly: a second bucket written before any reduction of it.
        s3.create_bucket(Bucket="plain")
        for k in heavy:
            s3.put_object(Bucket="plain", Key=k, Body=(corpus / k).read_bytes())
        if heavy:
            res["get_same_objects_plain_mb_s"] = max(timed_gets(s3, "plain", heavy, {k: sizes[k] for k in heavy})
                                                     for _ in range(2))
        for k in heavy:
            s3.delete_object(Bucket="plain", Key=k)
        for name, path, _ in files[:: max(1, len(files) // 8)]:  # spot-check exact bytes after reduction
            assert s3.get_object(Bucket="corpus", Key=name)["Body"].read() == path.read_bytes(), name
        res["stats"] = exastor_json("stats", "--data", str(data), "--json")
    finally:
        server.stop()
    res["by_family"] = per_family_stored(data, files)
    res["fsck"] = exastor_json("fsck", "--data", str(data), "--json")
    return res


def ratio(d: dict[str, int]) -> float:
    return d["logical"] / d["stored"] if d["stored"] else 1.0


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = ["zstd3-file", "grouping-zstd", "cdc-zstd", "exastor"]
    fams = sorted(result["families"], key=lambda f: -result["families"][f]["logical"]) + ["overall"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 1]})
    w = 0.2
    for i, m in enumerate(methods):
        vals = [result["ratios"][m].get(f, 1.0) for f in fams]
        ax.bar(np.arange(len(fams)) + (i - 1.5) * w, vals, w, label=m)
    ax.set_xticks(np.arange(len(fams)), fams, rotation=25, ha="right")
    ax.set_ylabel("logical / stored")
    ax.set_yscale("log")
    ax.set_title("Reduction by data type (higher is better)")
    ax.legend()
    ex = result["exastor"]
    labels = ["PUT corpus", "GET plain", "GET delta", "reducer"]
    vals = [ex["put_corpus_mb_s"], ex.get("get_same_objects_plain_mb_s", 0), ex.get("get_delta_objects_after_mb_s", 0),
            ex["reducer_mb_s"] or 0]
    ax2.bar(labels, vals, color=["#888", "#48c", "#a4c", "#c84"])
    ax2.set_ylabel("MB/s")
    ax2.set_title("Throughput")
    for i, v in enumerate(vals):
        ax2.text(i, v, f"{v:.0f}", ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=str(REPO / "bench" / ".corpus" / "data"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "reduction.json"))
    ap.add_argument("--duty", type=float, default=0.5, help="reducer's share of one core (default 0.5)")
    ap.add_argument("--load-rounds", type=int, default=16, help="8 MiB PUTs per foreground load round")
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if not corpus.exists():
        subprocess.run([PY, str(REPO / "bench" / "corpus" / "build.py"), "--out", str(corpus)], check=True)
    files = corpus_files(corpus)
    t0 = time.perf_counter()
    print(f"{len(files)} files, {sum(p.stat().st_size for _, p, _ in files) / 1e6:.1f} MB", flush=True)
    base = baselines(files)
    print(f"baselines in {time.perf_counter() - t0:.0f}s", flush=True)
    with tempfile.TemporaryDirectory(prefix="exastor-reduction-") as tmp:
        ex = run_exastor(files, corpus, Path(tmp), args.duty, args.load_rounds)
    print("exastor done", flush=True)
    estimate = exastor_json("estimate", str(corpus), "--json", "--quiet")
    fams = {f: {"logical": v["logical"], "files": 0} for f, v in base["cdc-zstd"].items()}
    for _, _, kind in files:
        fams[family(kind)]["files"] += 1
    ratios: dict[str, dict[str, float]] = {}
    for m, per in base.items():
        ratios[m] = {f: ratio(v) for f, v in per.items()}
        ratios[m]["overall"] = (sum(v["logical"] for v in per.values()) / sum(v["stored"] for v in per.values()))
    ratios["exastor"] = {f: ratio(v) for f, v in ex["by_family"].items()}
    ratios["exastor"]["overall"] = ex["stats"]["reduction_ratio"]
    result = {
        "when": utc_stamp(), "machine": machine_info(), "corpus": str(corpus),
        "corpus_manifest": json.loads((corpus.parent / "corpus.json").read_text()) if (corpus.parent / "corpus.json").exists() else None,
        "families": fams, "baselines": base, "exastor": ex, "ratios": ratios,
        "estimate": {"reduction": estimate["reduction"], "stored_bytes": estimate["stored_bytes"],
                     "seconds": estimate["seconds"], "throughput_mb_s": estimate["throughput_mb_s"]},
        "targets": {
            "overall_vs_cdc_zstd": ratios["exastor"]["overall"] / ratios["cdc-zstd"]["overall"],
            "bf16_ratio": ratios["exastor"].get("safetensors-bf16"),
            "delta_get_vs_plain_get": (ex.get("get_delta_objects_after_mb_s", 0) / ex["get_same_objects_plain_mb_s"]
                                       if ex.get("get_same_objects_plain_mb_s") else None),
            "estimate_error": estimate["reduction_ratio"] / ex["stats"]["reduction_ratio"] - 1,
            "put_drop_with_reducer": 1 - (sum(ex["put_load_during_reducer_mb_s"]) / len(ex["put_load_during_reducer_mb_s"]))
            / ((ex["put_load_alone_mb_s"] + ex["put_load_alone_after_mb_s"]) / 2)
            if ex["put_load_during_reducer_mb_s"] else None,
        },
    }
    out = write_result(args.out, result)
    plot(result, out.with_suffix(".png"))
    print(json.dumps({"ratios": ratios, "targets": result["targets"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
