"""The master and its workers: who is alive, who can serve, and dying together.

- ``Board``: a page of shared memory (anonymous, ``MAP_SHARED``, made before the fork) where each
  worker says whether it serves and beats once a second, and the master says when the server is
  draining. Any worker answers a readiness probe for all of them from it, without asking anyone.
- ``die_with_parent``: a forked worker asks the kernel for SIGTERM when its master dies
  (``PR_SET_PDEATHSIG``), and also watches a pipe whose only write end the master holds: EOF on
  it means the master is gone, however it went (kill -9 included). Either starts the worker's
  drain; its shutdown watchdog then bounds the drain, so no worker outlives its master by more
  than ``shutdown_timeout`` and the ports and the data directory's lock come free.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import struct
import time

from exastor.gateway.memory import libc

STARTING, READY, STOPPED = 0, 1, 2
_HEADER = 8                 # byte 0: draining flag
_SLOT = struct.Struct("=Bxxxxxxxd")  # state, padding, last heartbeat (CLOCK_MONOTONIC: one clock per host)
STALE_S = 10.0              # a worker that has not beaten for this long cannot serve (its loop is stuck)

PR_SET_PDEATHSIG = 1


class Board:
    """Shared state of one server's workers (must be created before they are forked)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._map = mmap.mmap(-1, _HEADER + self.workers * _SLOT.size)

    # -- the master's side ---------------------------------------------------------------------
    @property
    def draining(self) -> bool:
        return self._map[0] == 1

    def set_draining(self) -> None:
        self._map[0] = 1

    # -- each worker's side ----------------------------------------------------------------------
    def set_state(self, index: int, state: int) -> None:
        _SLOT.pack_into(self._map, _HEADER + index * _SLOT.size, state, time.monotonic())

    def beat(self, index: int) -> None:
        state, _ = _SLOT.unpack_from(self._map, _HEADER + index * _SLOT.size)
        _SLOT.pack_into(self._map, _HEADER + index * _SLOT.size, state, time.monotonic())

    def not_serving(self) -> str | None:
        """Why not every worker can serve now (None: they all can)."""
        if self.draining:
            return "draining"
        now = time.monotonic()
        for index in range(self.workers):
            state, beat = _SLOT.unpack_from(self._map, _HEADER + index * _SLOT.size)
            if state == STARTING:
                return f"worker {index} is starting"
            if state == STOPPED:
                return f"worker {index} stopped"
            if now - beat > STALE_S:
                return f"worker {index} has not answered for {now - beat:.0f} s"
        return None


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """In a freshly forked child: have the kernel send ``sig`` when the parent dies. False where the
    call is not available (not Linux): the liveness pipe alone covers it then."""
    prctl = getattr(libc(), "prctl", None)
    if prctl is None:
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def liveness_pipe() -> tuple[int, int]:
    """(read end for the workers, write end the master keeps and never writes to)."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    return r, w
