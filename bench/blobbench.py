#!/usr/bin/env python3
"""Azure Blob throughput and small-blob rate: exastor beside Azurite in the same run.

    python bench/blobbench.py [--mib 256] [--small 3000] [--repeat 3] [--out bench/results/blobbench.json]
        [--geometry 1 --geometry 4+2] [--no-azurite]
    python bench/blobbench.py --render RESULT.json [EARLIER.json ...]   # docs/benchmarks/blob.md only

exastor runs once per ``--geometry`` (default: both "1", one drive directory with no redundancy, and
"4+2", 4+2 erasure over 6 drive directories on the same disk), each its own server and column.

Workloads, each run against every server (all persist to the same disk; fresh random bytes every
time, so a deduplicating store cannot shortcut):

1. Large: one ``--mib`` MiB blob uploaded with azure-storage-blob (8 MiB blocks: Put Block x N + Put
   Block List, concurrency 4) and downloaded (8 MiB ranged GETs, concurrency 4). MB/s, best of --repeat.
2. Small: ``--small`` distinct 4 KiB blobs uploaded (Put Blob) then downloaded (Get Blob) at
   concurrency 16 by a lean aiohttp client that signs Shared Key itself; the SDK's own per-request
   Python cost would otherwise dominate on a 2-core machine and hide both servers. Blobs/s.

Same-run baselines: raw sequential write+fsync / read of the same size and 4 KiB file create/read on
the data disk. Each phase also records the server's process-tree CPU seconds (per GiB, per 1000 blobs):
on a shared 2-core machine those move far less than the rates. Writes JSON (machine info, inputs, results), a PNG plot, and prints a table; the
Markdown in docs/benchmarks/blob.md is rendered from the JSON with --render.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from bench.blob_compat import Servers, exastor_label  # noqa: E402
from bench.lib.datagen import payload  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.rawdisk import sequential_write_read, small_files  # noqa: E402
from bench.lib.results import read_result, utc_stamp, write_result  # noqa: E402
from bench.lib.rss import tree_cpu_seconds  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
BLOCK = 8 * MiB
VERSION = "2025-11-05"


# --- large: the SDK -----------------------------------------------------------------

def rates(n: int, edges: list[tuple[float, float]], unit: str = "MBps") -> dict[str, float]:
    """An upload then a download phase of ``n`` bytes (unit MBps: CPU per GiB) or ``n`` blobs (unit
    per_s: CPU per 1000), from (time, server CPU seconds) at the start, between and at the end."""
    (t0, c0), (t1, c1), (t2, c2) = edges
    scale, per, cpu_key = (1e6, n / GiB, "cpu_s_per_GiB") if unit == "MBps" else (1, n / 1000, "cpu_s_per_1000")
    return {f"upload_{unit}": n / (t1 - t0) / scale, f"download_{unit}": n / (t2 - t1) / scale,
            f"upload_{cpu_key}": (c1 - c0) / per, f"download_{cpu_key}": (c2 - c1) / per}


def large_sdk(cs: str, mib: int, cpu: Callable[[], float]) -> dict[str, float]:
    """One upload + download of a fresh blob with azure-storage-blob: MB/s and server CPU-s per GiB."""
    from azure.storage.blob import BlobServiceClient
    svc = BlobServiceClient.from_connection_string(cs, max_block_size=BLOCK, max_single_put_size=BLOCK,
                                                   max_chunk_get_size=BLOCK, max_single_get_size=BLOCK)
    cc = svc.create_container(f"large{int(time.time() * 1000)}")
    try:
        data = payload(mib * MiB)
        bc = cc.get_blob_client("big")
        edges = [(time.perf_counter(), cpu())]
        bc.upload_blob(data, max_concurrency=4)
        edges.append((time.perf_counter(), cpu()))
        got = bc.download_blob(max_concurrency=4).readall()
        edges.append((time.perf_counter(), cpu()))
        if hashlib.md5(got).digest() != hashlib.md5(data).digest():
            raise AssertionError("downloaded bytes differ")
    finally:
        cc.delete_container()
    return rates(len(data), edges)


async def large_lean(cs: str, mib: int, cpu: Callable[[], float]) -> dict[str, float]:
    """The same transfer with the lean client (Put Block x N + Put Block List; ranged Get Blob), so the
    numbers show the server rather than the SDK's Python cost: MB/s and server CPU-s per GiB."""
    import aiohttp
    from azure.storage.blob import BlobServiceClient
    parts = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
    client = LeanClient(parts["BlobEndpoint"], parts["AccountName"], parts["AccountKey"])
    container = f"lean{int(time.time() * 1000)}"
    svc = BlobServiceClient.from_connection_string(cs)
    svc.create_container(container)
    data = payload(mib * MiB)
    view = memoryview(data)
    ids = [base64.b64encode(f"{i:08d}".encode()).decode() for i in range(len(data) // BLOCK)]
    sem = asyncio.Semaphore(4)
    try:
        async with aiohttp.ClientSession() as session:
            async def put_block(i: int) -> None:
                async with sem:
                    await client.put_block(session, container, "big", ids[i], view[i * BLOCK:(i + 1) * BLOCK])

            async def get_range(i: int) -> int:
                async with sem:
                    return await client.get_range(session, container, "big", i * BLOCK, (i + 1) * BLOCK - 1)

            edges = [(time.perf_counter(), cpu())]
            await asyncio.gather(*(put_block(i) for i in range(len(ids))))
            await client.put_block_list(session, container, "big", ids)
            edges.append((time.perf_counter(), cpu()))
            got = sum(await asyncio.gather(*(get_range(i) for i in range(len(ids)))))
            edges.append((time.perf_counter(), cpu()))
            if got != len(data):
                raise AssertionError("short download")
    finally:
        svc.delete_container(container)
    return rates(len(data), edges)


# --- small: a lean Shared Key client --------------------------------------------------

class LeanClient:
    """Just enough Blob client for Put Blob / Get Blob: Shared Key per the spec, aiohttp underneath."""

    def __init__(self, endpoint: str, account: str, key: str) -> None:
        self.endpoint, self.account, self.key = endpoint.rstrip("/"), account, base64.b64decode(key)
        self.path_prefix = "/" + endpoint.split("/", 3)[3]

    def _headers(self, method: str, path: str, length: int, extra: dict[str, str],
                 query: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": VERSION, **extra}
        xms = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
        ctype = headers.get("Content-Type", "")
        q = "".join(f"\n{k}:{v}" for k, v in sorted((query or {}).items()))
        sts = f"{method}\n\n\n{length or ''}\n\n{ctype}\n\n\n\n\n\n\n{xms}/{self.account}{path}{q}"
        sig = base64.b64encode(hmac.new(self.key, sts.encode(), hashlib.sha256).digest()).decode()
        headers["Authorization"] = f"SharedKey {self.account}:{sig}"
        return headers

    async def put(self, session, container: str, name: str, data: bytes) -> None:  # noqa: ANN001
        path = f"{self.path_prefix}/{container}/{name}"
        headers = self._headers("PUT", path, len(data), {"x-ms-blob-type": "BlockBlob",
                                                          "Content-Type": "application/octet-stream"})
        async with session.put(self.endpoint.rsplit("/", 1)[0] + path, data=data, headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"PUT {r.status}: {await r.text()}")

    async def put_block(self, session, container: str, name: str, block_id: str, data) -> None:  # noqa: ANN001
        path = f"{self.path_prefix}/{container}/{name}"
        from urllib.parse import quote
        query = f"comp=block&blockid={quote(block_id, safe='')}"
        headers = self._headers("PUT", path, len(data), {"Content-Type": "application/octet-stream"},
                               query={"blockid": block_id, "comp": "block"})
        async with session.put(self.endpoint.rsplit("/", 1)[0] + path + "?" + query, data=data,
                               headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"Put Block {r.status}: {await r.text()}")

    async def put_block_list(self, session, container: str, name: str, ids: list[str]) -> None:  # noqa: ANN001
        path = f"{self.path_prefix}/{container}/{name}"
        body = ("<?xml version='1.0' encoding='utf-8'?><BlockList>"
                + "".join(f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>").encode()
        headers = self._headers("PUT", path, len(body), {"Content-Type": "application/xml"},
                               query={"comp": "blocklist"})
        async with session.put(self.endpoint.rsplit("/", 1)[0] + path + "?comp=blocklist", data=body,
                               headers=headers) as r:
            if r.status != 201:
                raise RuntimeError(f"Put Block List {r.status}: {await r.text()}")

    async def get_range(self, session, container: str, name: str, start: int, end: int) -> int:  # noqa: ANN001
        path = f"{self.path_prefix}/{container}/{name}"
        headers = self._headers("GET", path, 0, {"x-ms-range": f"bytes={start}-{end}"})
        n = 0
        async with session.get(self.endpoint.rsplit("/", 1)[0] + path, headers=headers) as r:
            if r.status != 206:
                raise RuntimeError(f"GET range {r.status}: {await r.text()}")
            async for chunk in r.content.iter_chunked(1 << 20):
                n += len(chunk)
        return n

    async def get(self, session, container: str, name: str) -> bytes:  # noqa: ANN001
        path = f"{self.path_prefix}/{container}/{name}"
        async with session.get(self.endpoint.rsplit("/", 1)[0] + path,
                               headers=self._headers("GET", path, 0, {})) as r:
            if r.status != 200:
                raise RuntimeError(f"GET {r.status}: {await r.text()}")
            return await r.read()


async def small(cs: str, count: int, cpu: Callable[[], float], concurrency: int = 16,
                size: int = 4096) -> dict[str, float]:
    import aiohttp
    from azure.storage.blob import BlobServiceClient
    parts = dict(p.split("=", 1) for p in cs.split(";") if "=" in p)
    container = f"small{int(time.time() * 1000)}"
    svc = BlobServiceClient.from_connection_string(cs)
    svc.create_container(container)
    client = LeanClient(parts["BlobEndpoint"], parts["AccountName"], parts["AccountKey"])
    blob = payload(count * size)
    bodies = [blob[i * size:(i + 1) * size] for i in range(count)]
    sem = asyncio.Semaphore(concurrency)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def one_put(i: int) -> None:
                async with sem:
                    await client.put(session, container, f"o/{i:07d}", bodies[i])

            async def one_get(i: int) -> None:
                async with sem:
                    if await client.get(session, container, f"o/{i:07d}") != bodies[i]:
                        raise AssertionError("small blob differs")

            await asyncio.gather(*(one_put(i) for i in range(min(64, count))))  # warm connections
            edges = [(time.perf_counter(), cpu())]
            await asyncio.gather(*(one_put(i) for i in range(count)))
            edges.append((time.perf_counter(), cpu()))
            await asyncio.gather(*(one_get(i) for i in range(count)))
            edges.append((time.perf_counter(), cpu()))
    finally:
        svc.delete_container(container)
    return rates(count, edges, unit="per_s")


# --- the write path without HTTP ----------------------------------------------------------

async def namespace_ceiling(directory: Path, mib: int, count: int) -> dict[str, float]:
    """exastor's namespace layer called in-process (no HTTP, no Blob front-end): the ceiling any
    front-end on this store can reach on this machine. 4 concurrent writers of mib/4 MiB each, then
    ``count`` 4 KiB puts at concurrency 16, then reading it all back."""
    from exastor.datadir.opening import open_namespace
    from exastor.namespace.operations import PutSpec, SystemGrant
    ADMIN = SystemGrant("admin")  # the namespace used directly, outside any request

    ns = open_namespace(directory)

    async def source(data: bytes):
        view = memoryview(data)
        for i in range(0, len(data), MiB):
            yield view[i:i + MiB]

    try:
        await ns.create_bucket(ADMIN, "ceiling")
        data = payload(mib * MiB)
        quarter = len(data) // 4
        t0 = time.perf_counter()
        objs = await asyncio.gather(*(ns.put_object(ADMIN, "ceiling", f"big{i}",
                                                    source(data[i * quarter:(i + 1) * quarter]), PutSpec())
                                      for i in range(4)))
        write = len(data) / (time.perf_counter() - t0) / 1e6

        async def drain(obj) -> int:  # noqa: ANN001
            return sum([len(p) async for p in ns.read(ADMIN, obj)])

        t0 = time.perf_counter()
        assert sum(await asyncio.gather(*(drain(o) for o in objs))) == len(data)
        read = len(data) / (time.perf_counter() - t0) / 1e6
        small_blob = payload(count * 4096)
        sem = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            async with sem:
                await ns.put_object(ADMIN, "ceiling", f"s{i}", source(small_blob[i * 4096:(i + 1) * 4096]),
                                    PutSpec(expected_size=4096))

        t0 = time.perf_counter()
        await asyncio.gather(*(put(i) for i in range(count)))
        puts = count / (time.perf_counter() - t0)
    finally:
        ns.close()
    return {"write_MBps": write, "read_MBps": read, "small_put_per_s": puts}


# --- report ---------------------------------------------------------------------------

# (workload, direction, label): rates are MB/s for large transfers, blobs/s for small ones
WORKLOADS = [("large", "upload", "{mib} MiB upload, azure-storage-blob"),
             ("large", "download", "{mib} MiB download, azure-storage-blob"),
             ("large_lean", "upload", "{mib} MiB upload, lean client"),
             ("large_lean", "download", "{mib} MiB download, lean client"),
             ("small", "upload", "4 KiB uploads"), ("small", "download", "4 KiB downloads")]
TARGETS = {"large": 4, "large_lean": 4, "small": 10}  # the store issue's targets vs Azurite


def keys(workload: str, direction: str) -> tuple[str, str, str]:
    """(rate key, CPU key, unit of the CPU figure) of one row."""
    if workload == "small":
        return f"{direction}_per_s", f"{direction}_cpu_s_per_1000", "1000 blobs"
    return f"{direction}_MBps", f"{direction}_cpu_s_per_GiB", "GiB"


def geometry_text(geometry: str) -> str:
    """What an exastor column ran on; serve's default gateway workers: one per core, at most 8."""
    k, _, m = geometry.partition("+")
    layout = ("1 drive directory, no redundancy" if geometry == "1"
              else f"{geometry} erasure over {int(k) + int(m)} drive directories on one disk")
    return f"{layout}; {min(os.cpu_count() or 1, 8)} gateway workers; SQLite metadata"


def geometry_of(result: dict, name: str) -> str:
    """A column's data layout, as its run recorded it (runs before 2026-12-06 ran exastor on one drive)."""
    recorded = result.get("geometry", {}).get(name)
    if recorded:
        return recorded
    return {"exastor": "1 drive directory, no redundancy; SQLite metadata",
            "azurite": "Azurite's disk persistence (one directory)"}.get(name, "?")


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    servers = list(result["servers"])
    width = 0.8 / len(servers)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = [(axes[0], [w for w in WORKLOADS if w[0] != "small"],
               f"{result['inputs']['mib']} MiB blob, 8 MiB blocks, concurrency 4 (MB/s)"),
              (axes[1], [w for w in WORKLOADS if w[0] == "small"], "4 KiB blobs, concurrency 16 (blobs/s)")]
    for ax, rows, title in panels:
        xs = range(len(rows))
        for j, name in enumerate(servers):
            vals = [result["servers"][name][w][keys(w, d)[0]] for w, d, _ in rows]
            ax.bar([x + j * width for x in xs], vals, width=width, label=name)
        ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in xs],
                      [("lean " if w == "large_lean" else "SDK " if w == "large" else "") + d for w, d, _ in rows])
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def render_run(result: dict) -> list[str]:
    """One run's section: a throughput table and a CPU table, each with every column's geometry."""
    servers = result["servers"]
    names = list(servers)
    m = result["machine"]
    inputs = result["inputs"]
    mib = inputs["mib"]
    az = servers.get("azurite")
    ex = servers.get("exastor")
    vs = [n for n in names if n != "azurite"] if az else []
    geometry_row = "| geometry | " + " | ".join(geometry_of(result, n) for n in names) + " |"
    lines = [f"## Run {result['when']}: " + ", ".join(names), "",
             f"`python bench/blobbench.py --mib {mib} --small {inputs['small']} --repeat {inputs['repeat']}"
             + "".join(f" --geometry {g}" for g in inputs.get("geometry") or [])
             + ("" if inputs.get("azurite", True) else " --no-azurite")
             + f"` (raw JSON: `bench/results/{Path(inputs['out']).name}`, plot: "
             f"`bench/results/{Path(inputs['out']).with_suffix('.png').name}`).", "",
             f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_count', '?')} cores, "
             f"{(m.get('mem_total_bytes') or 0) / 2**30:.0f} GiB RAM, load average at start "
             f"{' / '.join(f'{x:.1f}' for x in m.get('loadavg_at_start') or [])}"
             + (f", at end {' / '.join(f'{x:.1f}' for x in result['loadavg_at_end'])}"
                if result.get("loadavg_at_end") else "")
             + "; client and servers share it. "
             + (f"Azurite {result['azurite_version']} on Node {result['node_version']} (disk persistence, "
                "`--skipApiVersionCheck`)." if az else
                "Azurite was not part of this run (`--no-azurite`), so no column is compared with it.")
             + (f" {inputs['note']}" if inputs.get("note") else ""), "",
             "| " + " | ".join(["workload", *names, *(f"{n} / azurite" for n in vs), *(["target"] if az else [])])
             + " |",
             "|---|" + "---:|" * (len(names) + len(vs) + (1 if az else 0)),
             geometry_row + " |" * (len(vs) + (1 if az else 0))]
    for workload, direction, label in WORKLOADS:
        rate = keys(workload, direction)[0]
        unit = "blobs/s" if workload == "small" else "MB/s"
        cells = [f"{servers[n][workload][rate]:,.0f}" for n in names]
        cells += [f"{servers[n][workload][rate] / az[workload][rate]:.1f}x" for n in vs]
        cells += [f">= {TARGETS[workload]}x"] if az else []
        lines.append(f"| {label.format(mib=mib)} ({unit}) | " + " | ".join(cells) + " |")
    if any(keys(w, d)[1] in servers[n][w] for n in names for w, d, _ in WORKLOADS):
        lines += ["", "Server CPU-seconds (the server's process tree, from /proc) per GiB or per 1000 blobs, "
                  "median of the repeats; lower is better, and unlike the rates above it hardly moves when "
                  "other work shares the machine:", "",
                  "| workload | per | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names),
                  "| geometry | | " + " | ".join(geometry_of(result, n) for n in names) + " |"]
        for workload, direction, label in WORKLOADS:
            _, cpu, per = keys(workload, direction)
            cells = [f"{servers[n][workload][cpu]:.2f}" if cpu in servers[n][workload] else "–" for n in names]
            lines.append(f"| {label.format(mib=mib)} | {per} | " + " | ".join(cells) + " |")
    load = (m.get("loadavg_at_start") or [0])[0]
    if load and load > (m.get("cpu_count") or 1):
        lines += ["", f"**Caution:** the load average was {load:.1f} on {m.get('cpu_count')} cores when this run "
                  "started (other jobs on the shared machine), so every rate above is depressed and noisy, "
                  "exastor's (several busy threads per transfer: chunking, hashing, compression) more than "
                  "Azurite's. The per-repeat samples are in the JSON."]
    base = result["baseline"]
    lines += ["", "Same-run baselines on the data disk: "
              f"sequential write+fsync {base['sequential']['write_fsync_MBps']:,.0f} MB/s, "
              f"read {base['sequential']['read_MBps']:,.0f} MB/s ({base['sequential']['read_was']}); "
              f"4 KiB files: {base['small_files'].get('create_per_s', 0):,.0f} creates/s, "
              f"{base['small_files'].get('read_per_s', 0):,.0f} reads/s (one thread).", ""]
    ns = base.get("namespace")
    if ns and ex:
        lines += [f"exastor's namespace layer called in-process on one drive directory, without HTTP or the "
                  "Blob front-end (same run, best of the same repeats): "
                  f"{ns['write_MBps']:,.0f} MB/s write and {ns['read_MBps']:,.0f} MB/s read for the same "
                  f"{mib} MiB in 4 streams, {ns['small_put_per_s']:,.0f} 4 KiB puts/s at concurrency 16. "
                  "No front-end on this store can exceed these on this machine: the write path chunks, "
                  "hashes (BLAKE3 and the MD5 ETag), compresses and fsyncs every byte, and commits each "
                  "object durably before answering. Over HTTP the Blob front-end (1 drive) reached "
                  f"{ex['large_lean']['upload_MBps'] / ns['write_MBps']:.0%} of the write rate, "
                  f"{ex['large_lean']['download_MBps'] / ns['read_MBps']:.0%} of the read rate and "
                  f"{ex['small']['upload_per_s'] / ns['small_put_per_s']:.0%} of the small-put rate; the rest is "
                  "the per-request cost of HTTP, Shared Key and the Blob handlers on one Python event loop "
                  "that shares the 2 cores with the client (best-of samples on a busy machine: rough ratios)."]
        need = [("upload", 4 * az["large_lean"]["upload_MBps"], ns["write_MBps"], "MB/s"),
                ("download", 4 * az["large_lean"]["download_MBps"], ns["read_MBps"], "MB/s"),
                ("4 KiB upload", 10 * az["small"]["upload_per_s"], ns["small_put_per_s"], "/s")] if az else []
        out = [f"{what} needs {want:,.0f} {unit} against a ceiling of {have:,.0f} {unit}"
               for what, want, have, unit in need if want > have]
        if out:
            lines += ["", "Targets beyond the store's own ceiling on this machine, so unreachable by any "
                      "protocol layer here: " + "; ".join(out) + "."]
        lines += [""]
    return lines


def render(results: list[dict]) -> str:
    """docs/benchmarks/blob.md: one section per run, newest first."""
    lines = ["# Azure Blob benchmark: exastor (per geometry) beside Azurite", "",
             "Each run's tables name the data layout (geometry) every column ran on. Runs on different days "
             "or machines are not compared with each other, only with their own same-run baselines.", ""]
    for result in results:
        lines += render_run(result)
    lines += [
              "How: large transfers use azure-storage-blob exactly as an application would (upload_blob with "
              "max_block_size 8 MiB and max_concurrency 4 is Put Block x 32 + Put Block List; download_blob "
              "with 8 MiB chunks and max_concurrency 4 is ranged Get Blob); the best of the repeats is "
              "reported, every repeat uses fresh random bytes, and the servers take turns (exastor, Azurite, "
              "exastor, ...) so a busy neighbour on the shared machine hits all alike. The lean-client rows "
              "do the same transfers (Put Block x 32 + Put Block List, 8 MiB ranged GETs, concurrency 4) with "
              "a minimal aiohttp client that signs Shared Key itself, and small blobs always use it (concurrency "
              "16): on 2 cores the SDK's own Python cost per request would otherwise cap every server at the "
              "same client-bound number.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--small", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--geometry", action="append", help='exastor geometry, repeatable: "1" (one drive directory, '
                    'no redundancy) or K+M (K+M drive directories, erasure coded); default: 1 and 4+2')
    ap.add_argument("--azurite", action=argparse.BooleanOptionalAction, default=True,
                    help="run Azurite beside exastor (bench/peers/azurite.sh installs it with npm)")
    ap.add_argument("--note", help="a sentence about this run, printed with its results")
    ap.add_argument("--out", default=str(REPO / "bench/results/blobbench.json"))
    ap.add_argument("--also", action="append", default=[], metavar="EARLIER.json",
                    help="earlier result JSONs kept on the page below this run (repeatable)")
    ap.add_argument("--md", default=str(REPO / "docs/benchmarks/blob.md"))
    ap.add_argument("--render", nargs="+", metavar="RESULT.json", help="only render these result JSONs to --md")
    args = ap.parse_args()
    if args.render:
        Path(args.md).write_text(render([read_result(r) for r in args.render]))
        return 0
    args.geometry = args.geometry or ["1", "4+2"]
    from rich.console import Console
    from rich.table import Table
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="blobbench-", dir=str(REPO / "bench/results/tmp")))
    result: dict = {"when": utc_stamp(), "inputs": vars(args), "machine": machine_info(tmp),
                    "azurite_version": "3.35.0" if args.azurite else None, "servers": {},
                    "geometry": {exastor_label(g): geometry_text(g) for g in args.geometry}}
    result["node_version"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    try:
        _run(args, result, tmp, console)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["loadavg_at_end"] = list(os.getloadavg())
    write_result(args.out, result)
    plot(result, Path(args.out).with_suffix(".png"))
    Path(args.md).write_text(render([result] + [read_result(r) for r in args.also]))
    names = list(result["servers"])
    table = Table("workload", *names, *(f"{n} CPU-s" for n in names))
    for workload, direction, _ in WORKLOADS:
        rate, cpu, per = keys(workload, direction)
        row = [result["servers"][n][workload] for n in names]
        table.add_row(f"{workload} {rate}", *(f"{r[rate]:,.1f}" for r in row), *(f"{r[cpu]:.2f}/{per}" for r in row))
    console.print(table)
    return 0


def _run(args: argparse.Namespace, result: dict, tmp: Path, console) -> None:  # noqa: ANN001
    from rich.progress import Progress
    with Progress(console=console) as progress:
        task = progress.add_task("baselines", total=5)
        result["baseline"] = {"sequential": sequential_write_read(tmp, payload(args.mib * MiB)),
                              "small_files": small_files(tmp, args.small)}
        progress.advance(task)
        ceilings = []
        with Servers(tmp, tuple(args.geometry), azurite=args.azurite) as servers:
            targets = servers.targets()
            runs: dict[str, dict[str, list]] = {n: {"large": [], "large_lean": [], "small": []} for n in targets}
            progress.update(task, total=1 + args.repeat * (len(targets) * 3 + 1))
            # Interleaved (ceiling, exastor, exastor-4+2, Azurite, ceiling, ...) so a noisy neighbour hits all alike.
            for rep in range(args.repeat):
                progress.update(task, description=f"namespace ceiling, in-process ({rep + 1})")
                ceilings.append(asyncio.run(namespace_ceiling(tmp / f"ceiling{rep}", args.mib, args.small)))
                shutil.rmtree(tmp / f"ceiling{rep}", ignore_errors=True)
                progress.advance(task)
                for name, cs in targets.items():
                    def cpu(pid: int = servers.pids[name]) -> float:
                        return tree_cpu_seconds(pid)
                    progress.update(task, description=f"{name}: {args.mib} MiB via SDK ({rep + 1})")
                    runs[name]["large"].append(large_sdk(cs, args.mib, cpu))
                    progress.advance(task)
                    progress.update(task, description=f"{name}: {args.mib} MiB via lean client ({rep + 1})")
                    runs[name]["large_lean"].append(asyncio.run(large_lean(cs, args.mib, cpu)))
                    progress.advance(task)
                    progress.update(task, description=f"{name}: 4 KiB blobs ({rep + 1})")
                    runs[name]["small"].append(asyncio.run(small(cs, args.small, cpu)))
                    progress.advance(task)
            result["baseline"]["namespace"] = {k: max(c[k] for c in ceilings) for k in ceilings[0]}
            result["baseline"]["namespace"]["runs"] = ceilings
            # best of the repeats for rates, median for CPU seconds
            for name, workloads in runs.items():
                result["servers"][name] = {
                    w: {**{k: (statistics.median if "cpu" in k else max)(r[k] for r in samples) for k in samples[0]},
                        "runs": samples}
                    for w, samples in workloads.items()}


if __name__ == "__main__":
    sys.exit(main())
