"""Runs the protocol front-ends on one event loop (uvloop + httptools)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable

import uvicorn
import uvloop

from exastor import metrics
from exastor.config import Config
from exastor.gateway import admin
from exastor.gateway.memory import Trimmer
from exastor.gateway.metrics import RequestMetrics
from exastor.namespace.store import Namespace
from exastor.s3.app import S3App
from exastor.services.gc import Collector, CollectorThread
from exastor.services.metabackup import MetaBackupThread, targets
from exastor.services.reducer import Reducer, ReducerThread


class ListenError(RuntimeError):
    """A front-end could not bind its port."""


def _uvicorn_server(app: object, host: str, port: int, log_level: str, http: object = "httptools"
                    ) -> uvicorn.Server:
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from loopback and hand the
    # authorizer (SAS sip, aws:SourceIp) a client address anyone can write.
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=http, lifespan="off",
                            proxy_headers=False,
                            access_log=False, log_level=log_level, timeout_keep_alive=75,
                            server_header=False, date_header=True, limit_concurrency=4096, backlog=4096)
    return uvicorn.Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, made before the workers fork so they all accept from it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host} port {port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def bind_all(cfg: Config) -> dict[str, socket.socket]:
    sockets = {"s3": bind(cfg.host, cfg.s3_port)}
    if cfg.blob_port and cfg.account_name and cfg.account_key:
        try:
            sockets["blob"] = bind(cfg.host, cfg.blob_port)
        except ListenError:
            sockets["s3"].close()
            raise
    # Port 0 asks the kernel for a free port: record the one we got, for the banner and the workers.
    cfg.s3_port = sockets["s3"].getsockname()[1]
    if "blob" in sockets:
        cfg.blob_port = sockets["blob"].getsockname()[1]
    return sockets


async def run_worker(cfg: Config, ns: Namespace, sockets: dict[str, socket.socket], *, run_gc: bool) -> None:
    """One gateway worker: the front-ends on this event loop, over the shared listening sockets."""
    s3_app = S3App(ns, domains=tuple(cfg.domains), regions=(cfg.region, *cfg.extra_regions))
    servers = [(_uvicorn_server(RequestMetrics(s3_app, "s3"), cfg.host, cfg.s3_port, cfg.log_level),
                sockets["s3"])]
    if "blob" in sockets:
        from exastor.blob.app import BlobApp
        from exastor.blob.protocol import CasePreservingHttpToolsProtocol
        blob_app = BlobApp(ns, account=cfg.account_name or "", key=cfg.account_key or "")
        servers.append((_uvicorn_server(RequestMetrics(blob_app, "blob"), cfg.host, cfg.blob_port, cfg.log_level,
                                        http=CasePreservingHttpToolsProtocol), sockets["blob"]))
    servers += admin.servers(cfg, ns, sockets)  # /metrics and the console, when --admin-port is set
    # Background services run in one worker only (worker 0): each pass is idempotent and safe
    # beside the other workers' writes, but doing it twice would only waste the disk.
    background: list[CollectorThread | ReducerThread | MetaBackupThread] = []
    if run_gc and cfg.gc_interval > 0:
        background.append(CollectorThread(Collector(ns.chunks, grace_s=cfg.gc_grace), cfg.gc_interval))
    if run_gc:  # interval 0: no timed passes, but `exastor reduce run` still gets one
        background.append(ReducerThread(Reducer(ns.chunks, duty=cfg.reduce_duty), cfg.reduce_interval))
    if run_gc and cfg.meta_backup_interval > 0:
        background.append(MetaBackupThread(ns.meta.runner.path, lambda: targets(ns.chunks.log.drives),
                                           cfg.meta_backup_interval, meta=ns.meta))
    for thread in background:
        thread.start()
    trimmer = Trimmer(lambda: ns.chunks.moved).start()
    try:
        await asyncio.gather(*(srv.serve(sockets=[sock]) for srv, sock in servers))
    finally:
        trimmer.stop()
        for thread in background:
            thread.stop()


def serve(cfg: Config, open_ns: Callable[[], Namespace], sockets: dict[str, socket.socket], workers: int) -> int:
    """Run ``workers`` gateway processes over the sockets. With one worker, run in this process.

    Workers share nothing but the sockets, the drives and the database: each has its own open
    segment, caches and metadata connections. If a worker dies, the others are stopped and the
    exit status says so (a supervisor such as systemd restarts the service)."""
    if workers <= 1:
        ns = open_ns()
        try:
            uvloop.run(run_worker(cfg, ns, sockets, run_gc=True))
        except KeyboardInterrupt:
            pass
        finally:
            ns.close()
        return 0
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                ns = open_ns()
                try:
                    uvloop.run(run_worker(cfg, ns, sockets, run_gc=index == 0))
                finally:
                    ns.close()
            except KeyboardInterrupt:
                pass
            except BaseException:  # noqa: BLE001 - report, then leave without running the parent's cleanup
                logging.getLogger("exastor").exception("worker %d failed", index)
                code = 1
            os._exit(code)
        children.append(pid)
    for sock in sockets.values():
        sock.close()

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    alive = set(children)
    while alive:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        alive.discard(pid)
        metrics.worker_exited(pid)
        if os.waitstatus_to_exitcode(code) != 0 and not stopping:
            status = 1
            forward(signal.SIGTERM, None)
    return status


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
