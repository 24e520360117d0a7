"""``exastor scaletest``: how many accelerators does this storage keep busy?

Emulates MLPerf Storage's accelerators against any S3 endpoint (or a local
directory): generates or reuses the data set, runs N emulated H100s/A100s for
a duration, and reports accelerator utilisation (AU), throughput and request
latency; ``--find-max`` searches the largest N that still passes.
See docs/scaletest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from exastor.cliargs import parse_size
from exastor.tools.scaletest import distributed, workloads
from exastor.tools.scaletest.checkpoint import checkpoint_cycle
from exastor.tools.scaletest.dataset import (
    MEMORY_MULTIPLE,
    DatasetSpec,
    client_memory_bytes,
    default_num_files,
    ensure_dataset,
)
from exastor.tools.scaletest.emulator import EmulationConfig, LoopLag, emulate
from exastor.tools.scaletest.filestore import FileStore
from exastor.tools.scaletest.results import Recorder, RunResult, analyse, summary_rows, write_json
from exastor.tools.scaletest.s3client import S3Client
from exastor.tools.scaletest.search import SearchOutcome, find_max


def add_arguments(parser: argparse.ArgumentParser) -> None:
    target = parser.add_argument_group("target")
    target.add_argument("--endpoint", help="http(s)://host:port of an S3 endpoint, or file://DIR")
    target.add_argument("--bucket", default="scaletest")
    target.add_argument("--region", default="us-east-1")
    target.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", ""))
    target.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    target.add_argument("--pool", type=int, default=64, help="connections (requests in flight) for all accelerators")
    target.add_argument("--sign-payload", action="store_true", help="SHA-256 PUT bodies instead of UNSIGNED-PAYLOAD")

    run = parser.add_argument_group("run")
    run.add_argument("--workload", default="unet3d", choices=[*workloads.TRAINING_WORKLOADS, "checkpoint"])
    run.add_argument("--accelerator", default="h100", choices=workloads.ACCELERATORS)
    run.add_argument("--accelerators", type=int, default=None, help="emulated accelerators (checkpoint: ranks)")
    run.add_argument("--duration", type=float, default=60.0, help="seconds per run (training workloads)")
    run.add_argument("--warmup", type=float, default=0.0, help="seconds at the start left out of AU and throughput")
    run.add_argument("--skip-first-step", action="store_true",
                     help="DLIO's AU: leave each accelerator's first step (pipeline fill) out of its AU")
    run.add_argument("--find-max", action="store_true", help="search the largest accelerator count that passes")
    run.add_argument("--find-max-start", type=int, default=1)
    run.add_argument("--find-max-limit", type=int, default=4096)
    run.add_argument("--find-max-precision", type=float, default=0.0,
                     help="stop bisecting within this fraction (0: exact)")
    run.add_argument("--json", dest="json_out", metavar="OUT", help="write results as JSON")
    run.add_argument("--report", metavar="OUT.html", help="write an HTML report with plots")
    run.add_argument("--quiet", action="store_true", help="no live progress")
    run.add_argument("--seed", type=int, default=0)

    over = parser.add_argument_group("workload overrides (default: MLPerf Storage's values)")
    over.add_argument("--batch-size", type=int)
    over.add_argument("--compute-time", type=float, help="seconds of compute per batch")
    over.add_argument("--record-length", type=parse_size, help="mean sample size")
    over.add_argument("--record-length-stdev", type=parse_size)
    over.add_argument("--samples-per-file", type=int)
    over.add_argument("--read-threads", type=int, help="data-loader workers per accelerator")
    over.add_argument("--prefetch", type=int, help="batches each worker may run ahead")
    over.add_argument("--au-threshold", type=float)
    over.add_argument("--read-pattern", choices=[workloads.READ_WHOLE, workloads.READ_RANGED])
    over.add_argument("--no-shuffle", action="store_true")

    data = parser.add_argument_group("data set")
    data.add_argument("--num-files", type=int, help="files in the data set (overrides the memory rule)")
    data.add_argument("--dataset-size", type=parse_size, help="data set bytes (overrides the memory rule)")
    data.add_argument("--client-memory", type=parse_size, help="client memory for MLPerf's rule (default: this host's)")
    data.add_argument("--memory-multiple", type=float, default=MEMORY_MULTIPLE,
                      help="data set = this x client memory (MLPerf: 5)")
    data.add_argument("--generate-parallel", type=int, default=8, help="files written at once while generating")

    ckpt = parser.add_argument_group("checkpoint workload")
    ckpt.add_argument("--model", default="llama3-8b", choices=sorted(workloads.CHECKPOINT_MODELS))
    ckpt.add_argument("--checkpoint-size", type=parse_size, help="total bytes (default: the model's, 14 B/parameter)")
    ckpt.add_argument("--part-size", type=parse_size, default=64 << 20, help="multipart part size")
    ckpt.add_argument("--parts-in-flight", type=int, default=4, help="parts each rank uploads at once")
    ckpt.add_argument("--keep", action="store_true", help="leave the checkpoint in the bucket")

    multi = parser.add_argument_group("several client hosts (optional)")
    multi.add_argument("--distributed", choices=["auto", "local", "mpi", "ray"], default="auto",
                       help="auto: MPI when launched under mpirun, else local")
    multi.add_argument("--hosts", type=int, default=1, help="Ray: hosts to spread over")
    multi.add_argument("--rank-offset", type=int, default=0, help="by hand: first global accelerator of this host")
    multi.add_argument("--total-accelerators", type=int, help="by hand: accelerators over all hosts")
    multi.add_argument("--aggregate", nargs="+", metavar="JSON", help="combine per-host --json files and stop")


def make_storage(args: argparse.Namespace) -> S3Client | FileStore:
    if args.endpoint.startswith("file://"):
        return FileStore(args.endpoint[len("file://"):], pool=args.pool)
    return S3Client(args.endpoint, args.bucket, args.access_key, args.secret_key, args.region,
                    pool=args.pool, sign_payload=args.sign_payload)


def resolve_workload(args: argparse.Namespace) -> workloads.TrainingWorkload:
    base = workloads.training_workload(args.workload, args.accelerator)
    return base.with_overrides(
        batch_size=args.batch_size, compute_time=args.compute_time, record_length=args.record_length,
        record_length_stdev=args.record_length_stdev, samples_per_file=args.samples_per_file,
        read_threads=args.read_threads, prefetch=args.prefetch, au_threshold=args.au_threshold,
        read_pattern=args.read_pattern, shuffle=False if args.no_shuffle else None,
    )


def resolve_dataset(args: argparse.Namespace, workload: workloads.TrainingWorkload) -> tuple[DatasetSpec, str]:
    """The data set spec, and a note when it is smaller than MLPerf's memory rule asks."""
    memory = args.client_memory or client_memory_bytes()
    rule_files = default_num_files(workload, memory, MEMORY_MULTIPLE)
    if args.num_files:
        num_files = args.num_files
    elif args.dataset_size:
        num_files = max(1, -(-args.dataset_size // workload.file_size))
    else:
        num_files = default_num_files(workload, memory, args.memory_multiple)
    spec = DatasetSpec.for_workload(workload, num_files, seed=args.seed)
    note = ""
    if num_files < rule_files:
        note = (f"data set {spec.total_bytes / 1e9:.2f} GB is below MLPerf's rule "
                f"({MEMORY_MULTIPLE}x client memory = {MEMORY_MULTIPLE * memory / 1e9:.1f} GB): "
                "reads may be served from caches; fine for a smoke test, not for a claim")
    return spec, note


class LiveLine:
    """One refreshing status line while a run is in flight."""

    def __init__(self, console: Console, accelerators: int, enabled: bool) -> None:
        self.console = console
        self.accelerators = accelerators
        self.live = Live(console=console, refresh_per_second=2, transient=True) if enabled else None
        self._last = (0.0, 0)

    def __enter__(self) -> LiveLine:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.live:
            self.live.__exit__(exc_type, exc, traceback)

    def tick(self, recorder: Recorder, elapsed: float) -> None:
        if not self.live:
            return
        last_t, last_bytes = self._last
        rate = (recorder.bytes_read - last_bytes) / max(elapsed - last_t, 1e-9)
        self._last = (elapsed, recorder.bytes_read)
        au = recorder.compute_seconds / max(self.accelerators * elapsed, 1e-9)
        self.live.update(
            f"[bold]{self.accelerators}[/] accelerators  t={elapsed:5.0f}s  steps={recorder.steps_done:,}  "
            f"AU~{au:6.1%}  read {rate / 1e9:6.3f} GB/s  requests={len(recorder.requests):,}"
        )


def results_table(result: RunResult, title: str) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in summary_rows(result):
        table.add_row(key, value)
    return table


class TrainingRunner:
    """Runs training-workload emulations on one host, locally or as one share of several."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.workload = resolve_workload(args)
        self.spec, self.note = resolve_dataset(args, self.workload)

    def workload_record(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self.workload), "accelerator": self.args.accelerator,
                "dataset_files": self.spec.num_files, "dataset_bytes": self.spec.total_bytes,
                "dataset_prefix": self.spec.prefix}

    async def prepare(self, storage: S3Client | FileStore) -> None:
        if self.note:
            self.console.print(f"[yellow]note:[/] {self.note}")
        columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=self.console, disable=self.args.quiet) as progress:
            task = progress.add_task("data set", total=self.spec.total_bytes)
            reused = await ensure_dataset(storage, self.spec, parallel=self.args.generate_parallel,
                                          on_file=lambda n: progress.advance(task, n))
        self.console.print(("reused" if reused else "generated") +
                           f" data set {self.spec.prefix}: {self.spec.num_files:,} files, "
                           f"{self.spec.total_bytes / 1e9:.2f} GB in {storage.description}")

    async def run_once(self, storage: S3Client | FileStore, count: int, offset: int = 0,
                       total: int | None = None) -> RunResult:
        config = EmulationConfig(self.workload, count, self.args.duration, pool=self.args.pool,
                                 seed=self.args.seed, rank_offset=offset, total_accelerators=total)
        lag = LoopLag()
        errors_before = storage.errors
        cpu_before = time.process_time()
        with LiveLine(self.console, count, enabled=not self.args.quiet) as line:
            recorder = await emulate(storage, self.spec, config, on_tick=line.tick, lag=lag)
        cpu = time.process_time() - cpu_before
        result = analyse(recorder, self.workload_record(), self.workload.au_threshold,
                         self.workload.batch_size, warmup=self.args.warmup,
                         errors=storage.errors - errors_before, skip_first_step=self.args.skip_first_step)
        result.client_cpu_seconds = cpu
        result.cpu_seconds_per_gb = cpu / (recorder.bytes_read / 1e9) if recorder.bytes_read else 0.0
        result.loop_lag_ms = lag.summary()
        return result


def _run_async(coroutine: Any) -> Any:
    """uvloop when available: its lower per-callback cost is client headroom at high counts."""
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def _finish(args: argparse.Namespace, console: Console, result: RunResult | None,
            outcome: SearchOutcome | None = None, probes: dict[int, RunResult] | None = None) -> int:
    if result is not None:
        console.print(results_table(result, f"scaletest {result.workload.get('name', '')}: "
                                            f"{result.accelerators} x {result.workload.get('accelerator', '')}"))
    if outcome is not None:
        console.print(f"[bold]largest passing accelerator count: {outcome.best}[/] "
                      f"(first failing: {outcome.first_fail}; probes: "
                      + ", ".join(f"{n}{'✓' if ok else '✗'}{au:.0%}" for n, ok, au in outcome.probes) + ")")
    if args.json_out:
        payload: dict[str, Any] = {"result": result.to_dict() if result else None}
        if outcome is not None:
            payload["find_max"] = {"best": outcome.best, "first_fail": outcome.first_fail,
                                   "probes": [{"accelerators": n, "passed": ok, "au": au} for n, ok, au in outcome.probes],
                                   "runs": {str(n): r.to_dict() for n, r in (probes or {}).items()}}
        write_json(args.json_out, payload)
    if args.report:
        from exastor.tools.scaletest.report import write_report

        write_report(args.report, "exastor scaletest", result=result, outcome=outcome,
                     context={"endpoint": str(args.endpoint), "command": " ".join(sys.argv)})
    if outcome is not None:
        return 0 if outcome.best > 0 else 1
    return 0 if result is None or result.passed else 1


async def _training_local(args: argparse.Namespace, console: Console) -> int:
    runner = TrainingRunner(args, console)
    count = args.accelerators or 1
    async with make_storage(args) as storage:
        if args.rank_offset == 0:
            await runner.prepare(storage)
        if not args.find_max:
            result = await runner.run_once(storage, count, args.rank_offset, args.total_accelerators)
            return _finish(args, console, result)
        probes: dict[int, RunResult] = {}

        async def probe(n: int) -> tuple[bool, float]:
            probes[n] = await runner.run_once(storage, n)
            console.print(f"  {n:>6} accelerators: AU {probes[n].au_mean:6.1%} "
                          f"{'pass' if probes[n].passed else 'FAIL'}  {probes[n].throughput_bytes_per_s / 1e9:.3f} GB/s")
            return probes[n].passed, probes[n].au_mean

        outcome = await find_max(probe, args.find_max_start, args.find_max_limit, args.find_max_precision)
        best = probes.get(outcome.best) or probes[min(probes)]
        return _finish(args, console, best, outcome, probes)


def _training_mpi(args: argparse.Namespace, console: Console) -> int:
    group = distributed.MpiGroup()
    quiet_console = console if group.is_root else Console(file=open(os.devnull, "w"))  # noqa: SIM115
    args.quiet = args.quiet or not group.is_root
    runner = TrainingRunner(args, quiet_console)

    async def main() -> int:
        async with make_storage(args) as storage:
            if group.is_root:
                await runner.prepare(storage)
            group.barrier()

            async def run_total(total: int) -> RunResult | None:
                count, offset = distributed.split(total, group.size, group.rank)
                group.barrier()  # start together
                local = await runner.run_once(storage, count, offset, total)
                return group.gather_results(local)

            if not args.find_max:
                result = await run_total(args.accelerators or group.size)
                return _finish(args, console, result) if group.is_root else 0
            probes: dict[int, RunResult] = {}

            async def probe(n: int) -> tuple[bool, float]:
                result = await run_total(max(n, 1))
                if result is not None:
                    probes[n] = result
                return group.broadcast((result.passed, result.au_mean) if result else None)

            outcome = await find_max(probe, args.find_max_start, args.find_max_limit, args.find_max_precision)
            if not group.is_root:
                return 0
            return _finish(args, console, probes.get(outcome.best) or probes[min(probes)], outcome, probes)

    return _run_async(main())


def _ray_share(args_dict: dict[str, Any]) -> Any:
    def share(count: int, offset: int) -> dict[str, Any]:
        args = argparse.Namespace(**{**args_dict, "quiet": True})
        runner = TrainingRunner(args, Console(file=open(os.devnull, "w")))  # noqa: SIM115

        async def main() -> dict[str, Any]:
            async with make_storage(args) as storage:
                return (await runner.run_once(storage, count, offset, args.accelerators)).to_dict()

        return _run_async(main())

    return share


def _training_ray(args: argparse.Namespace, console: Console) -> int:
    runner = TrainingRunner(args, console)

    async def prepare() -> None:
        async with make_storage(args) as storage:
            await runner.prepare(storage)

    _run_async(prepare())
    share = _ray_share(vars(args))
    if not args.find_max:
        return _finish(args, console, distributed.run_on_ray(args.hosts, share, args.accelerators or args.hosts))
    probes: dict[int, RunResult] = {}

    async def probe(n: int) -> tuple[bool, float]:
        probes[n] = await asyncio.to_thread(distributed.run_on_ray, args.hosts, share, n)
        return probes[n].passed, probes[n].au_mean

    outcome = asyncio.run(find_max(probe, args.find_max_start, args.find_max_limit, args.find_max_precision))
    return _finish(args, console, probes.get(outcome.best) or probes[min(probes)], outcome, probes)


async def _checkpoint(args: argparse.Namespace, console: Console) -> int:
    model = workloads.CHECKPOINT_MODELS[args.model]
    ranks = args.accelerators or model.ranks
    total = args.checkpoint_size or model.total_bytes
    sizes = workloads.shard_sizes(total, ranks)
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    async with make_storage(args) as storage:
        with Progress(*columns, console=console, disable=args.quiet) as progress:
            task = progress.add_task(f"checkpoint {model.name} x{ranks} (write, then read)", total=2 * total)
            result = await checkpoint_cycle(storage, model.name, sizes, part_size=args.part_size,
                                            parts_in_flight=args.parts_in_flight, keep=args.keep, seed=args.seed,
                                            on_bytes=lambda n: progress.advance(task, n))
    table = Table(title=f"checkpoint {model.name}: {ranks} ranks, {total / 1e9:.3f} GB", show_header=False)
    table.add_row("time to checkpoint (write)", f"{result.write_seconds:.2f} s  {result.write_bytes_per_s / 1e9:.3f} GB/s")
    table.add_row("time to restore (read)", f"{result.read_seconds:.2f} s  {result.read_bytes_per_s / 1e9:.3f} GB/s")
    table.add_row("slowest rank write / read", f"{max(result.rank_write_seconds):.2f} s / {max(result.rank_read_seconds):.2f} s")
    table.add_row("client CPU / errors", f"{result.client_cpu_seconds:.1f} s / {result.errors}")
    console.print(table)
    if args.json_out:
        write_json(args.json_out, {"checkpoint": result.to_dict()})
    if args.report:
        from exastor.tools.scaletest.report import write_report

        write_report(args.report, "exastor scaletest: checkpoint", checkpoint=result,
                     context={"endpoint": str(args.endpoint), "command": " ".join(sys.argv)})
    return 0


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=False)
    if args.aggregate:
        result = distributed.aggregate_files(args.aggregate)
        return _finish(args, console, result)
    if not args.endpoint:
        console.print("[red]--endpoint is required[/] (http://host:port or file://DIR)")
        return 2
    if not args.endpoint.startswith("file://") and not (args.access_key and args.secret_key):
        console.print("[red]credentials missing:[/] --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return 2
    if args.workload == "checkpoint":
        return _run_async(_checkpoint(args, console))
    mode = args.distributed
    if mode == "auto":
        mode = "mpi" if distributed.launched_under_mpi() else "local"
    if mode == "mpi":
        return _training_mpi(args, console)
    if mode == "ray":
        return _training_ray(args, console)
    return _run_async(_training_local(args, console))
