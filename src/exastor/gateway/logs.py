"""Server logs (text or JSON lines, each carrying the request id it was written under) and the
optional access log (one JSON line per request).

The request id travels in a context variable set by the gateway middleware for the task that
serves the request, so every log call made while serving it (a handler's ``log.exception``, a
drive warning from the same task) carries it without being passed along.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from typing import Any

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("exastor_request_id", default="")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id, pid,
    and the traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", "")
        return f"{text} [request {request_id}]" if request_id else text


def configure(level: str, fmt: str = "text") -> None:
    """The root logger for `exastor serve` (the workers inherit it across the fork)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


class AccessLog:
    """One JSON line per request, appended to a file (``O_APPEND``: lines from several workers
    never interleave) or written to stdout (``"-"``). The file is created 0600: it names principals
    and keys."""

    def __init__(self, target: str) -> None:
        if target == "-":
            self.fd = sys.stdout.fileno()
            self._owned = False
        else:
            self.fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # not a drive: the access log
            self._owned = True

    def write(self, entry: dict[str, Any]) -> None:
        try:
            os.write(self.fd, (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode())  # not a drive: the access log
        except OSError:
            logging.getLogger("exastor.access").warning("access log write failed", exc_info=True)

    def close(self) -> None:
        if self._owned:
            os.close(self.fd)
