"""The admin listener: /metrics for Prometheus (and, with the console, the operator's web pages).

Off unless ``admin_port`` is set; it listens on ``admin_host`` (127.0.0.1 by default), apart from
the S3 and Blob ports, so a firewall rule or a load balancer never has to tell them apart by path.
Who may scrape: with ``metrics_token`` set, a request carrying ``Authorization: Bearer TOKEN``;
without one, only clients on the loopback interface (deny when unsure: an admin listener bound
to the network without a token does not hand the store's figures to anyone who asks).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
from typing import Any

from exastor import metrics
from exastor.config import Config
from exastor.http.asgi import Receive, Request, Scope, Send, respond
from exastor.namespace.operations import Namespace
from exastor.services.store_metrics import StoreFigures

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


class AdminApp:
    def __init__(self, ns: Namespace, cfg: Config) -> None:
        self.ns = ns
        self.cfg = cfg
        self.figures = StoreFigures(ns.meta, ns.chunks.log.drives)
        self._registry: Any = None
        from exastor.gateway.console import Console

        self.console = Console(self)

    def registry(self) -> Any:
        if self._registry is None:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry(auto_describe=False)
            directory = metrics.directory()
            if directory is not None:
                MultiProcessCollector(registry, str(directory))
            registry.register(self.figures)
            self._registry = registry
        return self._registry

    def scrape(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry())

    def may_scrape(self, req: Request) -> bool:
        token = self.cfg.metrics_token
        if token:
            given = req.headers.get("authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
        return is_loopback(req.client_host)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        if req.path == "/metrics":
            if req.method not in ("GET", "HEAD"):
                await respond(send, 405, [("allow", "GET, HEAD")])
            elif not self.may_scrape(req):
                await respond(send, 401, [("www-authenticate", 'Bearer realm="exastor metrics"'),
                                          ("content-type", "text/plain")],
                              b"metrics need Authorization: Bearer <metrics_token> (or a loopback client)\n")
            else:
                body = await asyncio.to_thread(self.scrape)
                await respond(send, 200, [("content-type", METRICS_TYPE), ("cache-control", "no-store")], body,
                              head=req.method == "HEAD")
            return
        await self.console(req, send)


def bind(cfg: Config) -> dict[str, socket.socket]:
    """The admin listening socket (before the workers fork), or nothing when it is off."""
    if not cfg.admin_port:
        return {}
    from exastor.gateway.listen import bind as bind_port

    sock = bind_port(cfg.admin_host, cfg.admin_port)
    cfg.admin_port = sock.getsockname()[1]
    return {"admin": sock}


def apps(cfg: Config, ns: Namespace, sockets: dict[str, socket.socket]) -> list[tuple[Any, socket.socket]]:
    """The admin listener's app and socket for this worker, if there is one (the worker serves it)."""
    if "admin" not in sockets:
        return []
    return [(AdminApp(ns, cfg), sockets["admin"])]
