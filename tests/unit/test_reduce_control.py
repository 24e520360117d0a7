"""The reducer obeys the operator's controls kept in the database (issue 15, item 7): a pause
skips timed passes and stops a pass between batches, a run request gets a pass even while paused,
and the backlog is what lies past the reducer's cursor."""

from __future__ import annotations

import asyncio
import time

from test_reducer import _corpus, _put

from exastor.datadir.opening import open_namespace
from exastor.namespace.operations import SystemGrant
from exastor.services import reduce_control
from exastor.services.reducer import Reducer, ReducerThread
from exastor.services.store_metrics import backlog


def _wait(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_pause_run_and_resume(tmp_path) -> None:
    ns = open_namespace(tmp_path, recover=True)
    corpus = _corpus()

    async def fill() -> None:
        await ns.create_bucket(SystemGrant("admin"), "red")
        for key, body in corpus.items():
            await _put(ns, key, body)

    asyncio.run(fill())
    assert backlog(ns.meta) == (len(corpus), sum(map(len, corpus.values())))
    reduce_control.pause(ns.meta)
    thread = ReducerThread(Reducer(ns.chunks), interval=0.01, tick=0.01)
    thread.start()
    try:
        _wait(lambda: thread.ticks >= 30)  # thirty chances for a timed pass: none taken while paused
        assert backlog(ns.meta)[0] == len(corpus)
        assert reduce_control.state(ns.meta).pass_started == 0
        request = reduce_control.request_run(ns.meta)  # the operator's `reduce run`: paused or not
        _wait(lambda: reduce_control.state(ns.meta).run_done >= request)
        state = reduce_control.state(ns.meta)
        assert backlog(ns.meta) == (0, 0) and state.paused and not state.running
        assert state.pass_bytes > 0 and state.pass_saved > 0 and state.pass_ended >= state.pass_started
        reduce_control.resume(ns.meta)
        assert not reduce_control.state(ns.meta).paused
    finally:
        thread.stop()
        thread.join(timeout=30)
        ns.close()


def test_a_pause_stops_a_pass_between_batches(tmp_path) -> None:
    ns = open_namespace(tmp_path, recover=True)

    async def fill() -> None:
        await ns.create_bucket(SystemGrant("admin"), "red")
        for i in range(3):
            await _put(ns, f"k{i}", bytes([i]) * 1000)

    asyncio.run(fill())
    try:
        res = Reducer(ns.chunks).run_once(stop=lambda: True)
        assert res.objects == 0 and backlog(ns.meta)[0] == 3  # the cursor kept its place
        assert Reducer(ns.chunks).run_once().objects == 3 and backlog(ns.meta) == (0, 0)
    finally:
        ns.close()
