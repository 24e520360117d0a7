"""Runs the protocol front-ends on one event loop (uvloop + httptools)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import uvicorn

from exastor.config import Config
from exastor.namespace.store import Namespace
from exastor.s3.app import S3App
from exastor.services.gc import Collector, CollectorThread


class ListenError(RuntimeError):
    """A front-end could not bind its port."""


def _uvicorn_server(app: object, host: str, port: int, log_level: str, http: object = "httptools"
                    ) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http=http, lifespan="off",
                            access_log=False, log_level=log_level, timeout_keep_alive=75,
                            server_header=False, date_header=True, limit_concurrency=4096, backlog=4096)
    return uvicorn.Server(config)


async def run(cfg: Config, ns: Namespace, *, on_ready: Callable[[], None] | None = None) -> None:
    servers = [_uvicorn_server(S3App(ns, domains=tuple(cfg.domains)), cfg.host, cfg.s3_port, cfg.log_level)]
    if cfg.blob_port and cfg.account_name and cfg.account_key:
        from exastor.blob.app import BlobApp
        from exastor.blob.protocol import CasePreservingHttpToolsProtocol
        blob_app = BlobApp(ns, account=cfg.account_name, key=cfg.account_key)
        servers.append(_uvicorn_server(blob_app, cfg.host, cfg.blob_port, cfg.log_level,
                                       http=CasePreservingHttpToolsProtocol))
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    gc = None
    if cfg.gc_interval > 0:
        gc = CollectorThread(Collector(ns.chunks, grace_s=cfg.gc_grace), cfg.gc_interval)
        gc.start()
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.02)
    if not all(s.started for s in servers):
        for s in servers:
            s.should_exit = True
        if gc is not None:
            gc.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        ports = ", ".join(str(s.config.port) for s in servers if not s.started)
        raise ListenError(f"cannot listen on {cfg.host} port {ports} (in use, or not permitted)")
    if on_ready:
        on_ready()
    try:
        await asyncio.gather(*tasks)
    finally:
        for s in servers:
            s.should_exit = True
        if gc is not None:
            gc.stop()


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
