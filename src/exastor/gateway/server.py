"""Runs the protocol front-ends on one event loop (uvloop + httptools), in one or more workers.

Process model (docs/operations.md, "Processes and signals"):

- The master binds the ports, forks the workers and supervises them; with one worker it serves
  itself. It holds the data directory's server lock (datadir/lock.py), which its workers inherit.
- A worker that dies makes the master stop the others and exit 1 (a supervisor such as systemd
  restarts the service). A master that dies (kill -9 included) makes its workers drain and exit:
  ``PR_SET_PDEATHSIG`` and EOF on a liveness pipe (gateway/supervise.py).
- SIGTERM or SIGINT starts a drain: readiness turns false, the listeners close, idle connections
  close, requests in flight may finish for ``shutdown_timeout`` seconds; then what is left is cut
  and the process exits. A watchdog ends a worker whose drain itself hangs shortly after. A second
  SIGINT (Ctrl-C twice) exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypedDict, cast

import uvicorn
import uvloop
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exastor import metrics
from exastor.config import Config
from exastor.gateway import admin, logs, supervise
from exastor.gateway.handoff import Handoff
from exastor.gateway.health import Readiness
from exastor.gateway.listen import ListenError, bind
from exastor.gateway.memory import Trimmer
from exastor.gateway.metrics import RequestMetrics
from exastor.gateway.middleware import Gateway, InFlight, reset_ids
from exastor.gateway.protocol import Guard, Limits, guarded, reset
from exastor.meta.sqlite import sqlite_runner
from exastor.meta.versions import SharedVersions
from exastor.namespace.operations import Namespace
from exastor.s3.app import S3App
from exastor.services.cluster import ClusterService, ClusterThread, gateway_address
from exastor.services.gc import Collector, CollectorThread
from exastor.services.metabackup import MetaBackupThread, targets
from exastor.services.reducer import Reducer, ReducerThread

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application

log = logging.getLogger("exastor.server")

WATCHDOG_GRACE_S = 5.0  # after shutdown_timeout: for closing the namespace and the background threads
EXIT_WATCHDOG = 3       # a worker whose drain overran (docs/operations.md)


class _Server(uvicorn.Server):
    """uvicorn's server, minus its signal handling: one process runs two of them (S3 and Blob),
    and uvicorn's handlers would each replace the other's, so SIGTERM reached only the last one.
    ``Worker`` handles the signals for both."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._on_started()


class TLSFiles(TypedDict, total=False):
    """uvicorn.Config's TLS arguments, as ``ssl_options`` gives them (none without a certificate)."""
    ssl_certfile: str
    ssl_keyfile: str


def _uvicorn_config(app: Any, cfg: Config, port: int, protocol: type[HttpToolsProtocol], ssl: TLSFiles
                    ) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=cfg.host, port=port, loop="uvloop", http=protocol, lifespan="off", log_config=None,
        access_log=False, log_level=cfg.log_level, timeout_keep_alive=75, server_header=False, date_header=True,
        # The limits are ours (gateway/protocol.py): uvicorn's answers a plain-text 503 that no SDK parses.
        limit_concurrency=None, backlog=4096,
        # X-Forwarded-* only from the configured proxies (uvicorn trusts 127.0.0.1 by default): see _wrap.
        # Worker.stop cuts the connections still open at shutdown_timeout (their requests see a
        # disconnect and return); uvicorn cancels a request task stuck even past that.
        # uvicorn annotates the timeout int but hands it to asyncio.wait_for, which takes seconds as a float.
        proxy_headers=False, timeout_graceful_shutdown=cfg.shutdown_timeout + 1,  # type: ignore[arg-type]
        **ssl)


def bind_all(cfg: Config) -> dict[str, socket.socket]:
    if cfg.blob_port and cfg.account_name and cfg.account_key and cfg.blob_port == cfg.s3_port:
        raise ListenError(f"the S3 and Blob ports are both {cfg.s3_port}: give them different ports "
                          "(--s3-port, --blob-port; --blob-port 0 turns Blob off)")
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


class Worker:
    """One gateway process: the front-ends on this event loop, over the shared listening sockets."""

    def __init__(self, cfg: Config, ns: Namespace, sockets: dict[str, socket.socket], *, index: int,
                 board: supervise.Board, run_gc: bool, master_fd: int | None = None,
                 ssl: TLSFiles | None = None, handoff: Handoff | None = None) -> None:
        self.cfg, self.ns, self.sockets, self.index, self.board = cfg, ns, sockets, index, board
        self.handoff = handoff or Handoff(1)  # throttled tenants' connections to one worker (gateway/handoff.py)
        self._adopting: set[asyncio.Task[Any]] = set()
        self.run_gc, self.master_fd = run_gc, master_fd
        self.ssl: TLSFiles = ssl or {}
        self.readiness = Readiness(ns, board)
        self.in_flight = InFlight(cfg.max_requests)  # shared by the S3 and Blob front-ends
        self.access_log = logs.AccessLog(cfg.access_log) if cfg.access_log else None
        self.servers: list[tuple[_Server, socket.socket]] = []
        self.guard: Guard | None = None
        self._started = 0
        self._stopping = False

    def _wrap(self, app: Any, api: str) -> Any:
        gateway = Gateway(RequestMetrics(app, api), api, ready=self.readiness, in_flight=self.in_flight,
                          access_log=self.access_log)
        if self.cfg.trusted_proxies:  # uvicorn's own, applied only to the configured proxies' connections
            # Gateway takes the ASGI scope and messages as the plain dicts they are; uvicorn types them as
            # TypedDicts, which a dict[str, Any] parameter does not accept: the same objects at run time.
            return ProxyHeadersMiddleware(cast("ASGI3Application", gateway),
                                          trusted_hosts=",".join(self.cfg.trusted_proxies))
        return gateway

    def _server_started(self) -> None:
        self._started += 1
        if self._started == len(self.servers):
            self.board.set_state(self.index, supervise.READY)

    def build(self) -> None:
        cfg = self.cfg
        self.guard = guard = Guard(Limits.from_config(cfg))
        guard.handoff = self.handoff
        s3 = self._wrap(S3App(self.ns, domains=tuple(cfg.domains), regions=(cfg.region, *cfg.extra_regions)), "s3")
        self.servers = [(_Server(_uvicorn_config(s3, cfg, cfg.s3_port,
                                                 guarded(HttpToolsProtocol, guard, "s3", movable=True),
                                                 self.ssl), self._server_started), self.sockets["s3"])]
        if "blob" in self.sockets:
            from exastor.blob.app import BlobApp
            from exastor.blob.protocol import CasePreservingHttpToolsProtocol
            blob = self._wrap(BlobApp(self.ns, account=cfg.account_name or "", key=cfg.account_key or "",
                                      key2=cfg.account_key2, copy_source_networks=cfg.copy_source_networks),
                              "blob")
            protocol = guarded(CasePreservingHttpToolsProtocol, guard, "blob", movable=True)
            self.servers.append((_Server(_uvicorn_config(blob, cfg, cfg.blob_port, protocol, self.ssl),
                                         self._server_started), self.sockets["blob"]))
        # /metrics and the console, when --admin-port is set: plain HTTP on its own (loopback) address,
        # under the same limits as the front-ends.
        for app, sock in admin.apps(cfg, self.ns, self.sockets):
            self.servers.append((_Server(_uvicorn_config(app, cfg, cfg.admin_port,
                                                         guarded(HttpToolsProtocol, guard, "s3"), {}),
                                         self._server_started), sock))

    def stop(self, why: str) -> None:
        """Start the drain (idempotent): readiness false, listeners closed, in-flight requests get
        ``shutdown_timeout`` seconds; a watchdog ends the process if even that overruns."""
        if self._stopping:
            return
        self._stopping = True
        self.handoff.stopping = True
        log.info("worker %d draining: %s", self.index, why)
        self.readiness.draining = True
        for srv, _ in self.servers:
            srv.should_exit = True
        loop = asyncio.get_running_loop()
        loop.call_later(self.cfg.shutdown_timeout, self._cut_connections)
        loop.call_soon(self._reap_finished)
        timer = threading.Timer(self.cfg.shutdown_timeout + WATCHDOG_GRACE_S, self._overran)
        timer.daemon = True
        timer.start()

    def _adopt(self, api: str, sock: socket.socket) -> None:
        """A connection another worker handed over (gateway/handoff.py): served by this worker's
        server for ``api`` (the front-ends are the first one or two servers, in build order)."""
        position = {"s3": 0, "blob": 1 if "blob" in self.sockets else None}.get(api)
        srv = self.servers[position][0] if position is not None else None
        if srv is None or srv.should_exit:
            sock.close()
            return
        sock.setblocking(False)
        config = srv.config

        def protocol() -> Any:
            return config.http_protocol_class(config=config, server_state=srv.server_state,  # type: ignore[call-arg]
                                              app_state=srv.lifespan.state)

        task = asyncio.get_running_loop().create_task(
            asyncio.get_running_loop().connect_accepted_socket(protocol, sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[Any]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("worker %d: a handed-over connection could not be adopted: %s", self.index,
                        task.exception())

    def _reap_finished(self) -> None:
        """While draining: connections that answered their last request go at once, not after a
        TLS close_notify their clients may never send (the drain waits for every connection)."""
        for conn in list(self.guard.connections if self.guard else ()):
            if conn.finished():
                reset(conn.transport)
        if self.guard and self.guard.connections:
            asyncio.get_running_loop().call_later(0.1, self._reap_finished)

    def _cut_connections(self) -> None:
        left = list(self.guard.connections) if self.guard else []
        if left:
            log.warning("worker %d: shutdown_timeout (%.0f s) reached; cutting %d connection(s)", self.index,
                        self.cfg.shutdown_timeout, len(left))
        for conn in left:
            reset(conn.transport)

    def _overran(self) -> None:
        logging.getLogger("exastor.server").error("worker %d: drain overran shutdown_timeout; exiting", self.index)
        os._exit(EXIT_WATCHDOG)

    def _signal(self, signum: int) -> None:
        if self._stopping and signum == signal.SIGINT:
            os._exit(130)  # Ctrl-C twice: now
        self.stop(signal.Signals(signum).name)

    async def _heartbeat(self) -> None:
        while True:
            self.board.beat(self.index)
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        self.build()  # first: a stop() must find the servers it stops
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._signal, signum)
        if self.master_fd is not None:
            loop.add_reader(self.master_fd, self._master_gone)
        # Background services run in one worker only (worker 0): each pass is idempotent and safe
        # beside the other workers' writes, but doing it twice would only waste the disk.
        cfg, ns = self.cfg, self.ns
        background: list[CollectorThread | ReducerThread | MetaBackupThread | ClusterThread] = []
        if self.run_gc and getattr(ns.meta.runner, "backend", "") == "postgres":
            # Many gateways share the store: heartbeats, membership and the cluster manager (services/cluster.py).
            background.append(ClusterThread(ClusterService(ns.chunks.log, gateway_address(cfg.host, cfg.s3_port))))
        if self.run_gc and cfg.gc_interval > 0:
            background.append(CollectorThread(Collector(ns.chunks, grace_s=cfg.gc_grace), cfg.gc_interval))
        if self.run_gc:  # interval 0: no timed passes, but `exastor reduce run` still gets one
            background.append(ReducerThread(Reducer(ns.chunks, duty=cfg.reduce_duty), cfg.reduce_interval))
        if self.run_gc and cfg.meta_backup_interval > 0:
            # SQLite only: config.py turns the copies off on PostgreSQL, whose runner has no file
            background.append(MetaBackupThread(sqlite_runner(ns.meta).path,
                                               lambda: targets(ns.chunks.log.drives),
                                               cfg.meta_backup_interval, meta=ns.meta))
        for thread in background:
            thread.start()
        trimmer = Trimmer(lambda: ns.chunks.moved).start()
        self.handoff.start(self.index, loop, self._adopt)
        beat = asyncio.create_task(self._heartbeat())
        try:
            await asyncio.gather(*(srv.serve(sockets=[sock]) for srv, sock in self.servers))
        finally:
            beat.cancel()
            self.board.set_state(self.index, supervise.STOPPED)
            trimmer.stop()
            for thread in background:
                thread.stop()
            if self.access_log is not None:
                self.access_log.close()

    def _master_gone(self) -> None:
        assert self.master_fd is not None
        with contextlib.suppress(BlockingIOError):
            if os.read(self.master_fd, 1) == b"":  # not a drive; EOF: the master's write end closed with it
                asyncio.get_running_loop().remove_reader(self.master_fd)
                self.stop("the master process is gone")


def ssl_options(cfg: Config) -> TLSFiles:
    """uvicorn's TLS settings for the configured certificate (the self-signed one is made by serve)."""
    if not cfg.tls_cert:
        return {}
    return {"ssl_certfile": str(cfg.tls_cert), "ssl_keyfile": str(cfg.tls_key)}


def serve(cfg: Config, open_ns: Callable[[], Namespace], sockets: dict[str, socket.socket], workers: int) -> int:
    """Run ``workers`` gateway processes over the sockets. With one worker, run in this process.

    Workers share nothing but the sockets, the drives, the database and the ``Board``: each has its
    own open segment, caches and metadata connections."""
    ssl = ssl_options(cfg)
    board = supervise.Board(max(1, workers))
    versions = SharedVersions(workers)  # each worker's own bucket changes, seen by the others at once
    if workers <= 1:
        ns = open_ns()
        try:
            uvloop.run(Worker(cfg, ns, sockets, index=0, board=board, run_gc=True, ssl=ssl).run())
        finally:
            ns.close()
        return 0
    master = os.getpid()
    alive_r, alive_w = supervise.liveness_pipe()
    # Its channels, made before the fork, are shared by the workers; none (inactive) when switched off.
    handoff = Handoff(workers if cfg.qos_handoff else 0)
    children: dict[int, int] = {}  # pid -> worker index
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                supervise.die_with_parent()
                os.close(alive_w)
                if os.getppid() != master:  # the master died before the line above took effect
                    os._exit(1)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                reset_ids()
                ns = open_ns()
                ns.meta.runner.share_versions(versions, index)
                try:
                    uvloop.run(Worker(cfg, ns, sockets, index=index, board=board, run_gc=index == 0,
                                      master_fd=alive_r, ssl=ssl, handoff=handoff).run())
                finally:
                    ns.close()
            except BaseException:  # noqa: BLE001 - report, then leave without running the parent's cleanup
                logging.getLogger("exastor").exception("worker %d failed", index)
                code = 1
            os._exit(code)
        children[pid] = index
    os.close(alive_r)  # alive_w stays open, unwritten, for as long as this process lives
    for sock in sockets.values():
        sock.close()
    handoff.close()  # the workers hold their own copies

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping and signum == signal.SIGINT:  # Ctrl-C twice: now
            kill_all(signal.SIGKILL, None)
            return
        stopping = True
        board.set_draining()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        # The workers' own watchdogs end an overrunning drain; this is the backstop for a worker
        # too stuck even for that (SIGKILL cannot be ignored).
        signal.alarm(int(cfg.shutdown_timeout + 2 * WATCHDOG_GRACE_S) + 1)

    def kill_all(_signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGALRM, kill_all)
    status = 0
    while children:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        if pid not in children:
            continue
        index = children.pop(pid)
        board.set_state(index, supervise.STOPPED)
        metrics.worker_exited(pid)
        if not stopping:  # a worker only ends on its own when it failed
            log.error("worker %d (pid %d) exited with status %s; stopping the server", index, pid,
                      os.waitstatus_to_exitcode(code))
            status = 1
            forward(signal.SIGTERM, None)
    signal.alarm(0)
    os.close(alive_w)
    return status


def configure_logging(level: str, fmt: str = "text") -> None:
    logs.configure(level, fmt)
