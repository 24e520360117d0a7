#!/usr/bin/env python3
"""S3 throughput, small-object rate and server memory, with same-run disk baselines.

    python bench/s3bench.py --endpoint http://127.0.0.1:9000 --access-key K --secret-key S \
        --label exastor --server-pid 1234 --data-dir /path/to/server/data [--quick]

Steps (each records its own error and the run goes on if it fails):

1. raw disk baseline: sequential write+fsync and (evicted, checked cold) read of
   the same 256 MiB random payload on the filesystem holding ``--data-dir``;
   4 KiB small-file create/read rate there.
2. 256 MiB single PUT and GET, once with incompressible ``random`` data and
   once with ``half-entropy`` data (zstd ~2:1). Payloads are freshly generated
   per object and per run, so a deduplicating store cannot skip the writes.
3. 1 GiB multipart upload, 8 parts of 128 MiB uploaded in parallel; then a
   single-stream GET of it.
4. 4 KiB PUT then GET of ``--small-count`` unique objects at concurrency 16.
5. with ``--server-pid``: the server's process-tree RSS is sampled from /proc
   during the whole run, and separately while a ``--stream-gib`` (10 GiB;
   1 GiB with ``--quick``) object is streamed in (multipart, 64 MiB parts, at
   most 4 in flight, generated on the fly) and streamed back out.

Every GET is verified against an xxh3-128 digest of what was sent. Results go
to ``--out`` (default ``bench/results/<label>.json``) with machine info and
inputs, and a table is printed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import boto3
import xxhash
from botocore.config import Config
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.lib import datagen, rawdisk  # noqa: E402
from bench.lib.machine import machine_info  # noqa: E402
from bench.lib.results import utc_stamp, write_result  # noqa: E402
from bench.lib.rss import RssSampler, tree_cpu_seconds  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
# a fixed width when not on a terminal keeps the table readable in logs
console = Console(width=None if sys.stdout.isatty() else 140)


def make_client(endpoint: str, access_key: str, secret_key: str, region: str) -> Any:
    """A boto3 client tuned for benchmarking a local S3 server.

    Path-style addressing (no DNS per bucket), a connection pool larger than
    our concurrency, and checksums only when the operation requires them: the
    newer botocore default (CRC32 trailers with aws-chunked bodies) is not
    understood by every peer and would add client CPU to every byte.
    """
    config = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        max_pool_connections=32,
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=600,
        tcp_keepalive=True,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=config,
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def digest(data: bytes) -> bytes:
    return xxhash.xxh3_128_digest(data)


def get_digest(client: Any, bucket: str, key: str, progress: Progress | None = None) -> tuple[bytes, int]:
    """Stream an object back, hashing as it comes; never holds the whole body."""
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    h = xxhash.xxh3_128()
    n = 0
    task = progress.add_task(f"GET {key}", total=None) if progress else None
    for chunk in body.iter_chunks(chunk_size=4 * MiB):
        h.update(chunk)
        n += len(chunk)
        if progress is not None:
            progress.advance(task, len(chunk))
    return h.digest(), n


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.client = make_client(args.endpoint, args.access_key, args.secret_key, args.region)
        self.bucket = f"s3bench-{secrets.token_hex(4)}"
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        self.baselines: dict[str, Any] = {}
        self.keys: list[str] = []
        self.rss: dict[str, Any] = {}

    # -- bookkeeping -------------------------------------------------------
    def cpu(self) -> tuple[float, float]:
        """(server process-tree CPU seconds, this client's CPU seconds) so far."""
        t = os.times()
        pids = set(([self.args.server_pid] if self.args.server_pid else []) + list(self.args.cpu_pid or []))
        server = sum(tree_cpu_seconds(p) for p in pids) if pids else float("nan")
        return server, t.user + t.system

    def record(self, name: str, value: float, unit: str, cpu0: tuple[float, float] | None = None,
               cpu1: tuple[float, float] | None = None, **extra: Any) -> None:
        """Keep one result. With ``cpu0`` (from :meth:`cpu` at the start of the timed region) the
        server's and the client's CPU seconds for the region are kept too, per GiB or per 1000
        objects: unlike rates, these hardly move when other work shares the machine."""
        if cpu0 is not None:
            s1, c1 = cpu1 or self.cpu()
            extra["server_cpu_s"], extra["client_cpu_s"] = s1 - cpu0[0], c1 - cpu0[1]
            per = extra["bytes"] / GiB if "bytes" in extra else extra["count"] / 1000
            extra["server_cpu_s_per_unit"] = extra["server_cpu_s"] / per
            extra["client_cpu_s_per_unit"] = extra["client_cpu_s"] / per
            extra["cpu_unit"] = "GiB" if "bytes" in extra else "1000 objects"
        self.results[name] = {"value": value, "unit": unit, **extra}
        note = ""
        if "server_cpu_s_per_unit" in extra:
            note = (f"  (server {extra['server_cpu_s_per_unit']:.2f} CPU-s, client "
                    f"{extra['client_cpu_s_per_unit']:.2f} CPU-s per {extra['cpu_unit']})")
        console.print(f"  [green]{name}[/]: {value:,.1f} {unit}{note}")

    def step(self, name: str, fn: Callable[[], None]) -> None:
        console.rule(f"[bold]{name}")
        try:
            fn()
        except Exception as exc:  # a failing step must not hide the others' numbers
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            console.print(f"  [red]{name} failed:[/] {self.errors[name]}")
            if self.args.verbose:
                traceback.print_exc()

    def before_get(self) -> str:
        """Drop the page cache before a GET phase so that a server's GET reads its disk, like the
        raw read baseline does; servers that keep objects in RAM (moto, memstore) are unaffected."""
        if self.args.warm_gets:
            return "warm (not dropped)"
        return "page cache dropped before GET" if rawdisk.drop_caches() else "drop_caches not allowed: maybe warm"

    # -- steps ---------------------------------------------------------------
    def baseline(self) -> None:
        data = datagen.payload(256 * MiB, "random")
        # three tries, median kept: one fsync'd write on a shared VM disk varies by 2x between tries
        tries = [rawdisk.sequential_write_read(self.args.data_dir, data) for _ in range(3)]
        median = {key: sorted(t[key] for t in tries)[1] for key in ("write_fsync_MBps", "read_MBps")}
        self.baselines["raw_disk_seq"] = {**tries[0], **median, "tries": tries, "kept": "median of 3"}
        self.baselines["raw_disk_small"] = rawdisk.small_files(self.args.data_dir, self.args.small_count)
        b = self.baselines["raw_disk_seq"]
        console.print(
            f"  raw disk: write+fsync {b['write_fsync_MBps']:,.0f} MB/s, read {b['read_MBps']:,.0f} MB/s "
            f"({b['read_was']}, drop_caches allowed: {b['drop_caches_allowed']})"
        )

    def put_get_single(self, kind: str) -> None:
        size = 256 * MiB
        data = datagen.payload(size, kind)
        ratio = datagen.zstd_ratio(data[: 8 * MiB])
        key = f"single-{kind}"
        t0, cpu0 = time.perf_counter(), self.cpu()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        put_s = time.perf_counter() - t0
        self.keys.append(key)
        self.record(f"put_256MiB_{kind}", size / put_s / 1e6, "MB/s", cpu0=cpu0, seconds=put_s, bytes=size, data=kind,
                    zstd1_ratio=ratio)
        want = digest(data)
        del data
        cache = self.before_get()
        t0, cpu0 = time.perf_counter(), self.cpu()
        got, n = get_digest(self.client, self.bucket, key)
        get_s = time.perf_counter() - t0
        if got != want or n != size:
            raise AssertionError(f"GET {key} returned different bytes ({n} bytes)")
        self.record(f"get_256MiB_{kind}", size / get_s / 1e6, "MB/s", cpu0=cpu0, seconds=get_s, bytes=size, data=kind,
                    zstd1_ratio=ratio, cache=cache)

    def multipart(self) -> None:
        parts, part_size = 8, 128 * MiB
        bodies = [datagen.payload(part_size, "random") for _ in range(parts)]
        h = xxhash.xxh3_128()
        for b in bodies:
            h.update(b)
        want = h.digest()
        key = "multipart-1GiB"
        t0, cpu0 = time.perf_counter(), self.cpu()
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

        def upload(i: int) -> dict[str, Any]:
            r = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=i + 1,
                                        Body=bodies[i])
            return {"PartNumber": i + 1, "ETag": r["ETag"]}

        with ThreadPoolExecutor(parts) as pool:
            done = list(pool.map(upload, range(parts)))
        self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              MultipartUpload={"Parts": done})
        put_s = time.perf_counter() - t0
        self.keys.append(key)
        total = parts * part_size
        self.record("multipart_put_1GiB_random", total / put_s / 1e6, "MB/s", cpu0=cpu0, seconds=put_s, bytes=total,
                    data="random", parts=parts, part_size=part_size, concurrency=parts)
        bodies.clear()  # free 1 GiB before the GET
        cache = self.before_get()
        t0, cpu0 = time.perf_counter(), self.cpu()
        got, n = get_digest(self.client, self.bucket, key)
        get_s = time.perf_counter() - t0
        if got != want or n != total:
            raise AssertionError(f"GET {key} returned different bytes ({n} bytes)")
        self.record("get_1GiB_random", total / get_s / 1e6, "MB/s", cpu0=cpu0, seconds=get_s, bytes=total, data="random",
                    cache=cache)

    def small_objects(self) -> None:
        count, size, conc = self.args.small_count, 4096, 16
        blob = datagen.payload(count * size, "random")
        bodies = [blob[i * size : (i + 1) * size] for i in range(count)]
        keys = [f"small/{i:06d}" for i in range(count)]

        def put(i: int) -> None:
            self.client.put_object(Bucket=self.bucket, Key=keys[i], Body=bodies[i])

        def get(i: int) -> None:
            body = self.client.get_object(Bucket=self.bucket, Key=keys[i])["Body"].read()
            if body != bodies[i]:
                raise AssertionError(f"GET {keys[i]} returned different bytes")

        for name, fn in (("put_4KiB_c16", put), ("get_4KiB_c16", get)):
            cache = self.before_get() if fn is get else None
            with _progress() as progress, ThreadPoolExecutor(conc) as pool:
                task = progress.add_task(name, total=count)
                t0, cpu0 = time.perf_counter(), self.cpu()
                for fut in [pool.submit(fn, i) for i in range(count)]:
                    fut.result()
                    progress.advance(task)
                secs = time.perf_counter() - t0
            self.record(name, count / secs, "obj/s", cpu0=cpu0, seconds=secs, count=count, size=size, concurrency=conc,
                        data="random", cache=cache)
        self.keys.extend(keys)

    def stream(self) -> None:
        """Stream a large object in and out while sampling the server's RSS.

        The body is generated part by part and at most ``in_flight`` parts exist
        at once, so the client's memory stays bounded (~4 x 64 MiB) whatever the
        object size. Multipart because S3 caps a single PUT at 5 GiB.
        """
        total = int(self.args.stream_gib * GiB)
        part_size, in_flight = 64 * MiB, 4
        key = "stream-large"
        sampler = RssSampler(self.args.server_pid) if self.args.server_pid else None
        h = xxhash.xxh3_128()
        lock = threading.Lock()
        parts: list[dict[str, Any]] = []
        with _progress() as progress:
            if sampler:
                sampler.__enter__()
            try:
                t0, cpu0 = time.perf_counter(), self.cpu()
                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
                task = progress.add_task(f"PUT {total / GiB:g} GiB", total=total)

                def upload(number: int, body: bytes) -> None:
                    r = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                PartNumber=number, Body=body)
                    with lock:
                        parts.append({"PartNumber": number, "ETag": r["ETag"]})
                    progress.advance(task, len(body))

                source: Iterator[bytes] = datagen.stream(total, part_size, "random")
                with ThreadPoolExecutor(in_flight) as pool:
                    pending: set[Any] = set()
                    for number, body in enumerate(source, start=1):
                        h.update(body)  # parts are hashed in order, so this is the object's digest
                        pending.add(pool.submit(upload, number, body))
                        del body
                        if len(pending) >= in_flight:
                            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for f in finished:
                                f.result()
                    for f in pending:
                        f.result()
                parts.sort(key=lambda p: p["PartNumber"])
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": parts})
                put_s = time.perf_counter() - t0
                put_cpu0, put_cpu1 = cpu0, self.cpu()  # client CPU here includes generating the data
                self.keys.append(key)
                put_peak = sampler.peak_tree if sampler else None
                cache = self.before_get()
                t0, cpu0 = time.perf_counter(), self.cpu()
                got, n = get_digest(self.client, self.bucket, key, progress)
                get_s = time.perf_counter() - t0
                get_cpu1 = self.cpu()
            finally:
                if sampler:
                    sampler.__exit__(None, None, None)
        if got != h.digest() or n != total:
            raise AssertionError(f"GET {key} returned different bytes ({n} bytes)")
        self.record("stream_put_large", total / put_s / 1e6, "MB/s", cpu0=put_cpu0, cpu1=put_cpu1,
                    seconds=put_s, bytes=total,
                    data="random", part_size=part_size, in_flight=in_flight, peak_tree_rss_bytes=put_peak)
        self.record("stream_get_large", total / get_s / 1e6, "MB/s", cpu0=cpu0, cpu1=get_cpu1,
                    seconds=get_s, bytes=total, data="random",
                    cache=cache)
        if sampler:
            self.rss["stream"] = sampler.summary()
            self.record("peak_rss_stream", sampler.peak_tree / MiB, "MiB", object_bytes=total,
                        start_tree_rss_MiB=sampler.start_tree / MiB)

    def cleanup(self) -> None:
        for i in range(0, len(self.keys), 1000):
            batch = self.keys[i : i + 1000]
            try:
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception:  # some peers lack DeleteObjects: fall back to one at a time
                for k in batch:
                    self.client.delete_object(Bucket=self.bucket, Key=k)
        self.client.delete_bucket(Bucket=self.bucket)

    # -- the whole run -------------------------------------------------------
    def run(self) -> dict[str, Any]:
        args = self.args
        started = utc_stamp()
        machine = machine_info(args.data_dir)  # before the run, so its load average is the one at start
        whole = RssSampler(args.server_pid) if args.server_pid else None
        self.step("raw disk baseline", self.baseline)
        self.client.create_bucket(Bucket=self.bucket)
        if whole:
            whole.__enter__()
        try:
            for kind in datagen.KINDS:
                self.step(f"256 MiB PUT/GET ({kind})", lambda kind=kind: self.put_get_single(kind))
            self.step("1 GiB multipart (8 parallel parts)", self.multipart)
            self.step(f"4 KiB x {args.small_count} at concurrency 16", self.small_objects)
            if args.stream_gib > 0:
                self.step(f"stream {args.stream_gib:g} GiB (RSS)", self.stream)
        finally:
            if whole:
                whole.__exit__(None, None, None)
                self.rss["whole_run"] = whole.summary()
        if not args.keep:
            self.step("cleanup", self.cleanup)
        return {
            "label": args.label,
            "endpoint": args.endpoint,
            "started_at": started,
            "finished_at": utc_stamp(),
            # other work on a shared machine skews numbers: keep the evidence with them
            "loadavg_at_end": os.getloadavg(),
            "inputs": {
                "quick": args.quick,
                "gets": "warm" if args.warm_gets else "page cache dropped before each GET phase (when allowed)",
                "small_count": args.small_count,
                "stream_gib": args.stream_gib,
                "data_dir": str(args.data_dir),
                "geometry": args.geometry,
                "server_pid": args.server_pid,
                "cpu_pids": args.cpu_pid,
                "bucket": self.bucket,
                "client": "boto3, path-style, max_pool_connections=32, checksums when_required, SigV4 signed payloads",
                "data_note": "payloads are fresh SFC64 output per object and per run, so dedupe cannot skip writes;"
                " 'random' is incompressible, 'half-entropy' compresses ~2:1 with zstd but never repeats",
            },
            "machine": machine,
            "baselines": self.baselines,
            "results": self.results,
            "server_rss": self.rss,
            "errors": self.errors,
        }


def print_table(result: dict[str, Any]) -> None:
    seq = result["baselines"].get("raw_disk_seq", {})
    small = result["baselines"].get("raw_disk_small", {})
    table = Table(title=f"s3bench: {result['label']} ({result['endpoint']})")
    for col in ("metric", "value", "unit", "data", "same-run baseline", "ratio", "server CPU-s", "client CPU-s"):
        table.add_column(col, justify="left" if col in ("metric", "unit", "data", "same-run baseline") else "right")
    for name, r in result["results"].items():
        base_name, base = None, None
        if r["unit"] == "MB/s":
            if "put" in name:
                base_name, base = "raw write+fsync", seq.get("write_fsync_MBps")
            else:
                base_name, base = f"raw read ({seq.get('read_was', '?')})", seq.get("read_MBps")
        elif r["unit"] == "obj/s":
            if "put" in name:
                base_name, base = "4 KiB file create", small.get("create_per_s")
            else:
                base_name, base = "4 KiB file read (warm)", small.get("read_per_s")
        table.add_row(
            name,
            f"{r['value']:,.1f}",
            r["unit"],
            str(r.get("data", "")),
            f"{base_name} {base:,.0f}" if base else "",
            f"{r['value'] / base:.3g}x" if base else "",
            f"{r['server_cpu_s_per_unit']:.2f}/{r['cpu_unit']}" if "server_cpu_s_per_unit" in r else "",
            f"{r['client_cpu_s_per_unit']:.2f}/{r['cpu_unit']}" if "client_cpu_s_per_unit" in r else "",
        )
    console.print(table)
    for step, err in result["errors"].items():
        console.print(f"[red]error[/] in {step}: {err}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", required=True, help="S3 endpoint URL, e.g. http://127.0.0.1:9000")
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--label", default="server", help="name of the server under test (file name of the result)")
    p.add_argument("--server-pid", type=int, help="pid of the server; its process tree's RSS is sampled")
    p.add_argument("--cpu-pid", type=int, action="append",
                   help="another process of the server whose CPU counts (e.g. radosgw's OSD and monitor); repeatable")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the server's data directory: the raw disk baseline runs on the same filesystem")
    p.add_argument("--out", type=Path, help="result JSON (default bench/results/<label>.json)")
    p.add_argument("--geometry", help="the server's data layout, recorded with the results "
                   "(e.g. '4+2 erasure over 6 drive directories on one disk')")
    p.add_argument("--quick", action="store_true", help="500 small objects and a 1 GiB stream instead of 10 GiB")
    p.add_argument("--small-count", type=int, help="number of 4 KiB objects (default 2000; 500 with --quick)")
    p.add_argument("--stream-gib", type=float,
                   help="size of the streamed RSS object in GiB (default 10; 1 with --quick; 0 skips)")
    p.add_argument("--warm-gets", action="store_true",
                   help="do not drop the page cache before GET phases (default: drop it when allowed)")
    p.add_argument("--keep", action="store_true", help="leave the bucket and objects behind")
    p.add_argument("-v", "--verbose", action="store_true", help="print tracebacks of failing steps")
    args = p.parse_args(argv)
    if args.small_count is None:
        args.small_count = 500 if args.quick else 2000
    if args.stream_gib is None:
        args.stream_gib = 1.0 if args.quick else 10.0
    if args.data_dir is None:
        args.data_dir = REPO / "bench" / "results" / "tmp"
        console.print(f"[yellow]--data-dir not given: raw disk baseline runs in {args.data_dir}[/]")
    if args.out is None:
        args.out = REPO / "bench" / "results" / f"{args.label}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = Bench(args).run()
    path = write_result(args.out, result)
    print_table(result)
    console.print(f"result written to {path}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
