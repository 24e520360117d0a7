"""Clocks for the emulator: the real one, and a virtual one that makes tests exact.

The emulator only ever asks a clock for ``now()`` and ``await sleep(dt)``.
With the virtual clock, time moves only when every task is waiting on it, so
a timeline with 0.3 s compute steps and 0.1 s reads comes out exactly as it
would on paper, in milliseconds of real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Monotonic wall time and the event loop's own timers."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """Discrete-event time: ``sleep`` parks a task until the driver advances time to it.

    Use ``VirtualClock().run(coro)`` to run a coroutine under virtual time.
    Anything that blocks on something other than this clock (real sockets)
    must not be mixed in: it would look like a deadlock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._sequence), future))
        await future

    async def _settle(self) -> None:
        """Let every runnable callback run until all tasks wait on the clock (or are done)."""
        loop = asyncio.get_running_loop()
        for _ in range(10_000):
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)  # CPython's run queue; fall back to many yields
            if ready is not None and len(ready) == 0:
                return

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(self._drive(main))

    async def _drive(self, main: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(main)
        while True:
            await self._settle()
            if task.done():
                return task.result()
            # Drop timers whose sleepers were cancelled; then jump to the next live one.
            while self._timers and self._timers[0][2].done():
                heapq.heappop(self._timers)
            if not self._timers:
                task.cancel()
                raise RuntimeError("virtual clock: every task is waiting, and not on the clock")
            when = self._timers[0][0]
            self._now = when
            while self._timers and self._timers[0][0] == when:
                _, _, future = heapq.heappop(self._timers)
                if not future.done():
                    future.set_result(None)
