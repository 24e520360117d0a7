"""The operator's controls over the background reducer: pause, resume, run a pass now.

The state lives in the metadata database (rows of ``counters``), not in a process: every gateway
worker, a restarted server and `exastor reduce` on the command line see the same switch. The
reducer thread reads it between batches of objects, so a pause takes effect within one batch
(64 objects) and survives restarts until `exastor reduce resume`.

Rows (``counters.name`` -> ``value``):
  reducer_paused        1 while paused
  reducer_run_request   a request id (time in ns) an operator asked a pass for
  reducer_run_done      the newest request id a finished pass answered
  reducer_pass_started  when the newest pass started (ns)
  reducer_pass_ended    when the newest pass ended (ns)
  reducer_pass_bytes    object bytes that pass evaluated
  reducer_pass_saved    stored bytes that pass saved
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from exastor.meta.contract import Metadata
from exastor.meta.counters import advance_counter, read_counters, set_counters

NAMES = ("reducer_paused", "reducer_run_request", "reducer_run_done", "reducer_pass_started",
         "reducer_pass_ended", "reducer_pass_bytes", "reducer_pass_saved")


@dataclass
class ReducerState:
    paused: bool = False
    run_request: int = 0
    run_done: int = 0
    pass_started: int = 0   # ns
    pass_ended: int = 0     # ns; < pass_started while a pass runs
    pass_bytes: int = 0
    pass_saved: int = 0

    @property
    def running(self) -> bool:
        return self.pass_started > self.pass_ended

    @property
    def run_pending(self) -> bool:
        return self.run_request > self.run_done

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "running": self.running, "run_pending": self.run_pending}


def state(meta: Metadata) -> ReducerState:
    got = read_counters(meta, NAMES)
    return ReducerState(bool(got.get("reducer_paused", 0)), got.get("reducer_run_request", 0),
                        got.get("reducer_run_done", 0), got.get("reducer_pass_started", 0),
                        got.get("reducer_pass_ended", 0), got.get("reducer_pass_bytes", 0),
                        got.get("reducer_pass_saved", 0))


def set_values(meta: Metadata, **values: int) -> None:
    """Set some of the rows, in one transaction."""
    for name in values:
        assert "reducer_" + name in NAMES, name
    set_counters(meta, {"reducer_" + name: int(value) for name, value in values.items()})


def pause(meta: Metadata) -> None:
    set_values(meta, paused=1)


def resume(meta: Metadata) -> None:
    set_values(meta, paused=0)


def request_run(meta: Metadata) -> int:
    """Ask the server's reducer for a pass now (even while paused: the operator asked for it).
    Returns the request id to wait for."""
    return advance_counter(meta, "reducer_run_request", time.time_ns())  # newer than any earlier request
