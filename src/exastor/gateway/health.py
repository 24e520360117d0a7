"""Readiness: can this server take requests now?

Ready means all of:
- every worker has started serving and its event loop beat within ``supervise.STALE_S``, and the
  server is not draining after SIGTERM (the shared ``Board``);
- the metadata database (its file, for the embedded SQLite) is there and answers a read within
  ``TIMEOUT_S``;
- at least m+1 drives take writes, m being the store's parity count (an open segment is written
  to m+1 replicas: with fewer, every PUT would fail).

Probes are cheap: the answer is computed at most once per ``CACHE_S`` per worker, in a thread
(a stuck database never blocks the event loop), and a check that does not finish in time is an
answer too (not ready).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from exastor.gateway.supervise import Board
from exastor.namespace.operations import Namespace

CACHE_S = 1.0
TIMEOUT_S = 2.0


class Readiness:
    def __init__(self, ns: Namespace, board: Board) -> None:
        self.ns = ns
        self.board = board
        self.draining = False          # this worker's own drain (the board says the master's)
        self._checked = -1e9
        self._local: str | None = "not checked yet"
        self._pending: asyncio.Future | None = None

    async def __call__(self) -> str | None:
        if self.draining:
            return "draining"
        shared = self.board.not_serving()
        if shared is not None:
            return shared
        if time.monotonic() - self._checked > CACHE_S:
            if self._pending is None or self._pending.done():  # one check at a time, whoever asks
                self._pending = asyncio.get_running_loop().run_in_executor(None, self._check_local)
            try:
                self._local = await asyncio.wait_for(asyncio.shield(self._pending), TIMEOUT_S)
            except TimeoutError:
                self._local = f"metadata or drives did not answer within {TIMEOUT_S:.0f} s"
            self._checked = time.monotonic()
        return self._local

    def _check_local(self) -> str | None:
        try:
            # The file first: open connections keep reading a database whose disk was unmounted or
            # whose file was moved away, but nothing new (another worker, a restart) could open it.
            path = getattr(self.ns.meta.runner, "path", None)
            if path is not None:  # the embedded SQLite: its file must be there (PostgreSQL: the read says)
                os.stat(path)  # not a drive: the metadata database in --data
            self.ns.meta.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means the metadata cannot serve
            return f"metadata unreachable ({type(exc).__name__})"
        drives = self.ns.chunks.log.drives
        try:
            drives.maybe_refresh()
            need = drives.geometry().m + 1
            have = len(drives.writable())
        except Exception as exc:  # noqa: BLE001
            return f"drive state unreadable ({type(exc).__name__})"
        if have < need:
            return f"{have} {DRIVES_SHORT}, {need} needed"
        return None


DRIVES_SHORT = "drive(s) take writes"  # the readiness answer of a server up, but with too few writable drives


def wait_ready(endpoints: list[str], *, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True,
               ca: str | None = None, degraded_ok: bool = False) -> None:
    """Poll ``<endpoint>/minio/health/ready`` of each endpoint until it answers 200 (for scripts and
    tests that start a server: a listening port is not a ready server, and it may even be the
    previous server's, still dying). ``degraded_ok``: a server whose every worker serves but whose
    drives are too few to write (an offline drive, on purpose) counts as started: the drive check
    comes after the workers' and the metadata's. Raises TimeoutError after ``timeout`` seconds,
    RuntimeError as soon as ``alive()`` says the server process is gone."""
    import ssl
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = "no answer"
    for endpoint in endpoints:
        url = endpoint.rstrip("/") + "/minio/health/ready"
        while True:
            if not alive():
                raise RuntimeError(f"the server exited before {endpoint} was ready ({last})")
            try:  # the context is made each time: a self-signed server writes its CA file as it starts
                context = ssl.create_default_context(cafile=ca) if ca else None
                with urllib.request.urlopen(url, timeout=2.0, context=context) as reply:
                    if reply.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:200].decode(errors='replace')}"
                if degraded_ok and exc.code == 503 and DRIVES_SHORT in last:
                    break
            except (OSError, ValueError) as exc:  # refused, reset, timed out
                last = str(exc)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{endpoint} not ready within {timeout:.0f} s: {last}")
            time.sleep(0.05)
