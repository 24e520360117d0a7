"""`exastor cluster status`: who is alive, by the database's clock (services/cluster.py)."""

from __future__ import annotations

import argparse
import json
import os

from exastor.cliargs import add_data_argument, existing_store
from exastor.meta import members
from exastor.meta.contract import Metadata
from exastor.services.cluster import MANAGER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    status = sub.add_parser("status", help="gateways and drive servers, alive or down, and the cluster manager")
    add_data_argument(status)
    status.add_argument("--meta", default=os.environ.get("EXASTOR_META_URL", ""),
                        help="the metadata database: postgresql://... (default: EXASTOR_META_URL, else the "
                             "store in --data)")
    status.add_argument("--json", action="store_true", help="machine-readable")


def _open(args: argparse.Namespace) -> Metadata:
    if args.meta:
        from exastor.meta.postgres import PostgresRunner

        return Metadata(PostgresRunner(args.meta, listen=False))
    from exastor.datadir.opening import open_metadata

    return open_metadata(existing_store(args.data))


def run(args: argparse.Namespace) -> int:
    meta = _open(args)
    try:
        rows = members.members(meta)
        manager = members.role(meta, MANAGER)
    finally:
        meta.close()
    if args.json:
        print(json.dumps({
            "members": [{"id": m.id, "kind": m.kind, "address": m.address, "state": m.state,
                         "seen_s_ago": round(m.age_s, 3)} for m in rows],
            "manager": None if manager is None else {"holder": manager.holder, "epoch": manager.epoch,
                                                     "expired": manager.expired},
        }, indent=2))
        return 0
    if not rows:
        print("no members recorded (heartbeats run on gateways whose metadata is PostgreSQL)")
    for m in rows:
        print(f"{m.kind:<13} {m.state:<5} seen {m.age_s:6.1f} s ago  {m.address}  ({m.id})")
    if manager is not None:
        print(f"cluster manager: {manager.holder} (epoch {manager.epoch}{', lease expired' if manager.expired else ''})")
    return 0
