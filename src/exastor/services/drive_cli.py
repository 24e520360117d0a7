"""`exastor drive add | remove | replace | status`: the drive lifecycle.

Every step is a conditional database update after the data it points at is durable (see
services/repair.py), so each command can be interrupted and simply run again; it is safe while the
server runs (workers pick up drive states within seconds) or while it is stopped.

On PostgreSQL (``--meta``) several gateways share the drive rows, each with a view of them it
refreshes every few seconds. ``status`` and ``add`` run beside them (a new drive is used by each
gateway from its next refresh; shards moved onto it are arbitrated by the repairer's conditional
updates). ``remove`` and ``replace`` are refused while any gateway heartbeats: a gateway whose view
still has the drive active may place a new segment's replicas on it after the drain looked, and the
drive would be marked removed under them. The check and each state change are one transaction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from exastor.cliargs import add_action, add_data_argument, add_meta_argument, store_directory
from exastor.datadir.opening import open_drives, open_metadata
from exastor.drives import SUBDIRS, is_url
from exastor.engine.drives import BUFFER, Drive, DriveRefused, DriveSet
from exastor.engine.segments import SegmentLog
from exastor.errors import CommandError
from exastor.meta import figures, members, placement
from exastor.meta.contract import Metadata
from exastor.services import metabackup
from exastor.services.cluster import DOWN_AFTER_S
from exastor.services.repair import Repairer


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # a store on PostgreSQL: status and add beside the gateways, remove/replace without them
    p.add_argument("--ec", help="erasure geometry K+M if the store uses an explicit one")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = add_action(sub, "status", "drives, their state and load, the geometry, pending repairs, and which "
                                      "offline drives segments wait for", meta=True)
    s.add_argument("--json", action="store_true")
    a = add_action(sub, "add", "add a drive (or bring a failed one back, or vouch for one of this store "
                                   "that lacks its identity file) and rebalance shards onto it", meta=True)
    a.add_argument("path", help="a directory, or a drive server's URL http://HOST:PORT/NAME")
    a.add_argument("--no-rebalance", action="store_true")
    a.add_argument("--host", help="the drive's host, its failure domain (default: the URL's host; '' for a "
                                  "directory: this host)")
    a.add_argument("--rack", default="", help="the drive's rack, the failure domain above hosts")
    a.add_argument("--buffer", action="store_true",
                   help="a write-buffer drive: it takes only the open segments' replicas (small writes), never "
                        "stripes (docs/design.md, \"Placement\")")
    r = add_action(sub, "remove", "drain a drive (move its shards to others), then remove it (--meta: every "
                                  "gateway stopped)", meta=True)
    r.add_argument("drive", help="drive id or path")
    rp = add_action(sub, "replace", "add NEW and drain OLD onto it (--meta: every gateway stopped)", meta=True)
    rp.add_argument("old", help="drive id or path")
    rp.add_argument("new", help="path of the new drive")


def _find(drives: DriveSet, ref: str) -> Drive | None:
    for d in drives.all:
        if ref == str(d.id) or ref == str(d.path) or (isinstance(d.path, Path) and not is_url(ref)
                                                       and Path(ref).resolve() == d.path.resolve()):
            return d
    return None


def _bytes_on(d: Drive) -> int:
    total = 0
    for sub in SUBDIRS:
        try:
            names = d.io.list(sub)
        except OSError:
            continue
        for name in names:
            if name.startswith("seg-"):
                try:
                    total += d.io.stat(f"{sub}/{name}").size
                except OSError:
                    pass
    return total


def waiting_on_offline(meta: Metadata, drives: DriveSet) -> dict[int, list[int]]:
    """segment -> the offline drives it waits for: open segments whose every replica is offline,
    sealed ones with fewer than k shards readable (or whole copies only on offline drives)."""
    offline = {d.id for d in drives.all if d.state == "offline"}
    if not offline:
        return {}
    readable = {d.id for d in drives.all if drives.readable(d.id)}

    segs, reps, placed = placement.live_segment_holders(meta)
    out: dict[int, list[int]] = {}
    first = drives.first.id if drives.all else 0
    for seg, k, shard_len in segs:
        if shard_len:
            holders = placed.get(seg, [])
            if sum(d in readable for d in holders) < k and any(d in offline for d in holders):
                out[seg] = sorted({d for d in holders if d in offline})
        else:
            holders = reps.get(seg, [first] if k == 0 else [])
            if holders and not any(d in readable for d in holders) and any(d in offline for d in holders):
                out[seg] = sorted({d for d in holders if d in offline})
    return out


def _status(meta: Metadata, drives: DriveSet) -> dict[str, Any]:
    """``metadata_copies`` is None on PostgreSQL: exastor copies only the SQLite file onto the drives."""
    counts = drives.shard_counts()

    bad, coded, sealed, open_ = figures.segment_counts(meta)
    rows = []
    for d in drives.all:
        free = total = None
        online = drives.readable(d.id)
        if online:
            try:
                space = d.io.space()
                free, total = space.free, space.total
            except OSError:
                pass
        rows.append({"id": d.id, "path": str(d.path), "host": d.host, "rack": d.rack, "tier": d.tier,
                     "state": d.state, "reason": d.reason,
                     "shards": counts.get(d.id, 0), "bytes": _bytes_on(d) if online else None,
                     "free": free, "total": total})
    g = drives.geometry()
    meta_copies: dict[str, Any] | None = None
    if not drives.shared:
        copies = metabackup.backups(d.io for d in drives.all if drives.readable(d.id))
        newest = [c for c in copies if c.taken_ns == copies[0].taken_ns] if copies else []
        by_label = {d.io.label: d.id for d in drives.all}
        meta_copies = {"newest_ns": newest[0].taken_ns if newest else None,
                       "newest_on_drives": sorted(by_label[c.label] for c in newest)}
    waiting = waiting_on_offline(meta, drives)
    offline = [{"id": d.id, "path": str(d.path), "reason": d.reason,
                "unavailable_segments": sorted(s for s, ds in waiting.items() if d.id in ds)}
               for d in drives.all if d.state == "offline"]
    hosts = drives.hosts_in_service()
    buffers = [d for d in drives.all if d.tier == BUFFER and d.state != "removed"]
    # Open segments need m+1 writable buffer drives; with fewer, new writes are buffered on the
    # capacity drives (never refused) and the operator must hear of it.
    buffer_tier = {"drives": len(buffers), "writable": len(drives.writable(BUFFER)), "needed": g.m + 1,
                   "in_use": drives.buffer_tier(g.m + 1) == BUFFER} if buffers else None
    return {"drives": rows, "geometry": str(g), "capacity_overhead": round(g.overhead, 4),
            "buffer_tier": buffer_tier,
            "hosts": hosts, "host_losses_survived": g.host_losses_survived(hosts) if hosts > 1 else None,
            "metadata_copies": meta_copies, "offline": offline,
            "unavailable_segments": sorted(waiting),
            "segments": {"open": open_, "sealed": sealed, "erasure_coded": coded}, "shards_needing_repair": bad,
            "pending_repairs": len(Repairer(SegmentLog(drives, meta)).pending())}


def _print_status(st: dict[str, Any]) -> None:
    con = Console()
    t = Table(title=f"drives (erasure {st['geometry']}, overhead {st['capacity_overhead']:.1%})")
    for col in ("id", "path", "host", "tier", "state", "shards", "bytes", "free"):
        t.add_column(col)
    for r in st["drives"]:
        t.add_row(str(r["id"]), r["path"], r["host"] or "(here)", r["tier"], r["state"], str(r["shards"]),
                  "-" if r["bytes"] is None else f"{r['bytes'] / 1e6:,.1f} MB",
                  "-" if r["free"] is None else f"{r['free'] / 1e9:,.1f} GB")
    con.print(t)
    for off in st["offline"]:
        waits = off["unavailable_segments"]
        con.print(f"drive {off['id']} ({off['path']}) is OFFLINE: {off['reason']}. Bring it back (mount it); "
                  + (f"{len(waits)} segment(s) are unavailable until then: {', '.join(map(str, waits[:20]))}"
                     + (" ..." if len(waits) > 20 else "") if waits else "no segment waits for it")
                  , soft_wrap=True)
    tier = st["buffer_tier"]
    if tier is not None and not tier["in_use"]:
        con.print(f"write-buffer drives: {tier['writable']} of {tier['drives']} take writes, open segments need "
                  f"{tier['needed']}: NEW WRITES ARE BUFFERED ON THE CAPACITY DRIVES - add write-buffer drives "
                  "(exastor drive add --buffer) or bring them back", soft_wrap=True)
    if st["host_losses_survived"] is not None:
        survived = st["host_losses_survived"]
        con.print(f"hosts: {st['hosts']}; a stripe survives losing {survived} whole host(s)"
                  + ("" if survived else ": LOSING ANY ONE HOST MAKES DATA UNAVAILABLE - add hosts or choose a "
                     "narrower geometry"))
    s = st["segments"]
    con.print(f"segments: {s['open']} open, {s['sealed']} sealed ({s['erasure_coded']} erasure-coded); "
              f"shards needing repair: {st['pending_repairs']}")
    copies = st["metadata_copies"]
    if copies is None:
        con.print("metadata: in PostgreSQL (its WAL, base backups and standby keep it; no copies on the drives)")
    elif copies["newest_ns"] is None:
        con.print("metadata copies: none yet (the server takes one every meta_backup_interval seconds)")
    else:
        age = time.time() - copies["newest_ns"] / 1e9
        con.print(f"metadata copies: newest {age:,.0f} s old, on drives "
                  + ", ".join(map(str, copies["newest_on_drives"])))


def _repair_all(log: SegmentLog, label: str) -> dict[str, Any]:
    rep = Repairer(log)
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(label, total=len(rep.pending()))
        res = rep.run_once(lambda n: bar.advance(task, n))
    return res.to_json()


def run(args: argparse.Namespace) -> int:
    meta_url = getattr(args, "meta_url", "") or None
    data = store_directory(args.data, meta_url)
    meta = open_metadata(data, meta_url)
    try:
        if meta_url and not meta.drive_count():  # never register DATA/drive0 into a database by mistake
            raise CommandError(f"the database {placement_where(meta)} records no drives: is it this store's "
                               "(the URL `exastor serve --meta` ran with)?")
        # adopt: the one-time steps of a process that has the store to itself; never beside gateways
        drives = open_drives(meta, data, None, args.ec, adopt=args.action != "status" and not meta_url)
        log = SegmentLog(drives, meta)
        try:
            return _run(args, meta, drives, log)
        finally:
            log.close()
    finally:
        meta.close()


def placement_where(meta: Metadata) -> str:
    return str(getattr(meta.runner, "where", "") or "named by --meta")


def _gateways_running(meta: Metadata) -> list[members.Member]:
    """The gateways (starting ones included) that heartbeated within the down timeout, by the
    database's clock: a look before a long command; the state changes check again in their transaction."""
    return [m for m in members.members(meta)
            if m.kind in (members.GATEWAY, members.STARTING) and m.age_s <= DOWN_AFTER_S]


def _refused_beside_gateways(action: str, why: str) -> int:
    print(f"exastor drive {action}: {why}: stop every gateway of the store first (a stopped gateway stops "
          f"counting {DOWN_AFTER_S:g} s after its last heartbeat). Each gateway keeps a view of the drives that "
          "lags the database by seconds and could place new data on the drive after the drain looked; "
          "nothing was changed", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, meta: Metadata, drives: DriveSet, log: SegmentLog) -> int:
    # On a database shared by gateways (PostgreSQL), a drive may leave only while none runs.
    guard = int(DOWN_AFTER_S * 1000) if drives.shared else None
    if guard is not None and args.action in ("remove", "replace"):
        running = _gateways_running(meta)
        if running:
            return _refused_beside_gateways(args.action, str(members.GatewaysRunning(running, guard)))
    try:
        return _act(args, meta, drives, log, guard)
    except members.GatewaysRunning as exc:
        return _refused_beside_gateways(args.action, str(exc))


def _act(args: argparse.Namespace, meta: Metadata, drives: DriveSet, log: SegmentLog, guard: int | None) -> int:
    if args.action == "status":
        st = _status(meta, drives)
        print(json.dumps(st, indent=2)) if args.json else _print_status(st)
        return 0
    if args.action in ("add", "replace"):
        where = args.path if args.action == "add" else args.new
        path: Path | str = where if is_url(where) else Path(where)
        try:
            (new_id,) = drives.register([path])
            if args.action == "add" and (args.host is not None or args.rack):
                drives.set_domain(new_id, args.host, args.rack)
            if args.action == "add" and args.buffer:
                drives.set_tier([new_id], BUFFER)
            drives.refresh()
            drives.vouch(new_id)  # a drive of this store without its identity file: the operator says it is
        except DriveRefused as exc:
            print(f"exastor drive: {exc}", file=sys.stderr)
            return 2
        drives.set_state(new_id, "active", "added")
        added = drives.get(new_id)
        if added is not None and added.state == "offline":
            print(f"exastor drive: drive {new_id} stays offline: {added.reason}", file=sys.stderr)
            return 2
        new = drives.get(new_id)
        assert new is not None
        print(f"drive {new_id} ({new.path}) is active")
        if drives.shared and not is_url(str(new.path)):
            print(f"note: every gateway that should use drive {new_id} must see it at {new.path} (gateways on "
                  "other hosts reach drives through drive servers: http://HOST:PORT/NAME)", file=sys.stderr)
        if args.action == "add":
            if not args.no_rebalance and new.tier != BUFFER:  # a write-buffer drive holds no shards
                res = Repairer(log).rebalance(new)
                print(f"rebalanced {res.moved_shards} shards onto drive {new_id}")
            res = Repairer(log).run_once()  # also re-protects plain segments now that there are drives
            print(f"repaired {res.repaired_shards} shards, erasure-coded {res.reprotected_segments} segments")
            return 0
    old = _find(drives, args.drive if args.action == "remove" else args.old)
    if old is None:
        print("exastor drive: no such drive", file=sys.stderr)
        return 2
    drives.set_state(old.id, "draining", f"{args.action} requested", refuse_beside_gateways_ms=guard)
    drained = _repair_all(log, f"draining drive {old.id}")
    # The repair moves the shards of sealed segments; rows of deleted segments are garbage (nothing
    # reads them) and are forgotten; any other row left is named, never passed over in silence.
    forgotten = placement.forget_deleted_shards(meta, old.id)
    if forgotten:
        print(f"forgot {forgotten} shard rows of deleted segments on drive {old.id}")
    rows = placement.shards_on(meta, old.id)
    left = len(rows)

    reps = placement.replicas_on(meta, old.id)
    if left or reps:
        unmoved = {(seg, idx) for seg, idx, _why in drained["unrepairable"]}
        named = [f"segment {seg} shard {idx} ({state or 'no segment row'})" for seg, idx, state in rows
                 if (seg, idx) not in unmoved]
        print(f"drive {old.id} still holds {left} shards and {reps} segment replicas "
              f"({len(drained['unrepairable'])} could not move: too few other drives?)"
              + (f"; not moved by the drain: {', '.join(named[:10])}{' ...' if len(named) > 10 else ''}"
                 if named else "")
              + "; it stays draining - run the command again", file=sys.stderr)
        return 1
    drives.set_state(old.id, "removed", f"{args.action} done", refuse_beside_gateways_ms=guard)
    print(f"drive {old.id} ({old.path}) drained ({drained['moved_shards'] + drained['repaired_shards']} shards moved) "
          f"and removed")
    return 0
