"""`exastor reduce run | pause | resume | status`: the operator's controls over the background reducer.

The switch lives in the database (services/reduce_control.py), so the running server's reducer
obeys it within a second, and it survives restarts. `run` asks the running server for a pass and
waits for it; with no server on the data directory, it runs the pass in this process. On PostgreSQL
(``--meta``) the gateways run the passes: `run` asks them, and is refused when none heartbeats (a
pass here would be a second writer of the shared store outside any gateway).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exastor.cliargs import add_action, add_data_argument, add_meta_argument, existing_store, store_directory
from exastor.datadir.lock import DataDirLocked, exclusive, shared
from exastor.datadir.opening import open_metadata
from exastor.errors import CommandError
from exastor.meta import members
from exastor.meta.contract import Metadata
from exastor.services import reduce_control
from exastor.services.store_metrics import backlog


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # a store on PostgreSQL: its gateways' reducers obey the switch
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = add_action(sub, "run", "run a reducer pass now (paused or not) and wait for it to finish", meta=True)
    run.add_argument("--no-wait", action="store_true", help="ask the running server for a pass and return")
    run.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                     help="give up waiting after this long (default 3600; the pass goes on)")
    add_action(sub, "pause", "stop the reducer (within one batch of objects) until `resume`, across restarts",
               meta=True)
    add_action(sub, "resume", "let the reducer run its timed passes again", meta=True)
    status = add_action(sub, "status", "paused or not, the last pass, and the backlog not yet reduced", meta=True)
    status.add_argument("--json", action="store_true", help="machine-readable output")


def summary(meta: Metadata) -> dict[str, Any]:
    objects, size = backlog(meta)
    return {**reduce_control.state(meta).to_json(), "backlog_objects": objects, "backlog_bytes": size}


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds") if ns else "never"


def print_status(st: dict[str, Any]) -> None:
    state = "paused" if st["paused"] else "running a pass" if st["running"] else "active"
    print(f"reducer        : {state}" + (" (a pass was asked for)" if st["run_pending"] else ""))
    print(f"backlog        : {st['backlog_objects']:,} objects, {st['backlog_bytes']:,} bytes not yet reduced")
    print(f"last pass      : started {_when(st['pass_started'])}, ended {_when(st['pass_ended'])}")
    print(f"last pass did  : {st['pass_bytes']:,} bytes evaluated, {st['pass_saved']:,} bytes saved")


def _server_running(data: Path) -> bool:
    try:
        with exclusive(data):
            return False
    except DataDirLocked:
        return True


def _run_here(data: Path) -> int:
    """No server holds the directory: run the pass in this process (beside nothing, under the shared lock)."""
    from exastor.datadir.opening import open_namespace
    from exastor.services.reducer import Reducer, ReducerThread

    shared(data)  # an offline repair (exclusive) must not start meanwhile
    ns = open_namespace(data, recover=False)
    try:
        request = reduce_control.request_run(ns.meta)
        res = ReducerThread(Reducer(ns.chunks), interval=0).run_pass(forced=True, request=request)
    finally:
        ns.close()
    print(f"pass done here (no server running): {res.objects:,} objects, {res.bytes_seen:,} bytes evaluated, "
          f"{res.saved_bytes:,} bytes saved in {res.seconds:.1f} s")
    return 0


def _gateway_running(meta: Metadata) -> bool:
    """Whether a gateway on the shared database heartbeated within the down timeout (its clock)."""
    from exastor.services.cluster import DOWN_AFTER_S

    return any(m.kind == members.GATEWAY and m.age_s <= DOWN_AFTER_S for m in members.members(meta))


def run(args: argparse.Namespace) -> int:
    meta_url = getattr(args, "meta_url", "") or None
    if meta_url:
        data = store_directory(args.data, meta_url)
    else:
        data = existing_store(args.data)
        if args.action == "run" and not _server_running(data):
            return _run_here(data)
    meta = open_metadata(data, meta_url)
    try:
        if meta_url and args.action == "run" and not _gateway_running(meta):
            raise CommandError("no gateway of the store is running: on PostgreSQL the gateways run reducer passes "
                               "(start one; `exastor reduce run` then asks it)", code=1)
        if args.action == "pause":
            reduce_control.pause(meta)
            print("reducer paused (a pass in progress stops within one batch; `exastor reduce resume` undoes it)")
        elif args.action == "resume":
            reduce_control.resume(meta)
            print("reducer resumed")
        elif args.action == "status":
            st = summary(meta)
            print(json.dumps(st, indent=2)) if args.json else print_status(st)
        elif args.action == "run":
            request = reduce_control.request_run(meta)
            if args.no_wait:
                print("a pass was asked for; `exastor reduce status` shows when it ends")
                return 0
            deadline = time.monotonic() + args.timeout
            while reduce_control.state(meta).run_done < request:
                if time.monotonic() > deadline:
                    raise CommandError(f"the pass did not finish within {args.timeout:g} s (it goes on; "
                                       "`exastor reduce status` shows it)", code=1)
                time.sleep(0.2)
            st = summary(meta)
            print(f"pass done: {st['pass_bytes']:,} bytes evaluated, {st['pass_saved']:,} bytes saved; "
                  f"backlog now {st['backlog_objects']:,} objects")
        return 0
    finally:
        meta.close()


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="exastor reduce")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
