"""Per-request metrics as ASGI middleware around each front-end: requests by API, operation and
status, latency, body bytes in and out (exastor/metrics.py defines the series).

The front-ends name the operation in ``scope["exastor"]`` (``{"api", "operation", "principal",
"bucket", "key"}``), filled while they handle the request; it is read after the app returns.
Where a front-end does not fill it (a request refused before routing), the HTTP method stands in.

Cost: one perf_counter pair, a counted receive/send wrapper, and four updates of mmap-backed
values per request (docs/benchmarks.md, "Metrics").
"""

from __future__ import annotations

import time
from typing import Any

from exastor import metrics
from exastor.http import qos
from exastor.http.asgi import Receive, Scope, Send


class RequestMetrics:
    def __init__(self, app: Any, api: str) -> None:
        self.app = app
        self.api = api
        # label children by label values: prometheus_client's .labels() validates and locks each call
        self._children: dict[tuple, Any] = {}

    def _child(self, metric: Any, key: tuple) -> Any:
        child = self._children.get((id(metric), key))
        if child is None:
            child = self._children[(id(metric), key)] = metric.labels(*key)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = metrics.get()
        if m is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        received = sent = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            body = message.get("body")
            if body:
                received += len(body)
            return message

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                body = message.get("body")
                if body:
                    sent += len(body)
            elif kind == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            info = scope.get("exastor") or {}
            api = info.get("api") or self.api
            operation = info.get("operation") or scope.get("method", "OTHER")
            self._child(m.requests, (api, operation, str(status) if status else "none")).inc()
            self._child(m.latency, (api, operation)).observe(time.perf_counter() - started)
            if received:
                self._child(m.received, (api,)).inc(received)
            if sent:
                self._child(m.sent, (api,)).inc(sent)
                qos.settle(scope, sent)  # response bytes count against the byte limits that admitted it
