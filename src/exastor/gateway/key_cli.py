"""`exastor key status|rotate|rotate-master`: the store's keys (docs/security.md).

``rotate`` adds a new data key, sealed under the master key: new records are encrypted under it
(a running server picks it up within 30 s), and every older key stays to read the records written
under it, so nothing on the drives is rewritten. It needs the master key, as the server does.

``rotate-master`` reseals every secret in the database (users' secret keys, the Blob account key,
the data keys) under a new master key in one transaction, with the server stopped; the old key is
kept aside (``DATA/master.key.old-<id>``) until the operator removes it (datadir/keys.py). On
PostgreSQL (``--meta``) no file lock reaches the other gateways: the rotation's transaction refuses
while any gateway heartbeated within ``EXASTOR_DOWN_AFTER`` seconds (10; meta/members.py), and a
gateway heartbeats before it opens any secret, so one starting meanwhile is either seen (the rotation
refuses) or reads the new wrapping (and needs the new key)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from exastor.cliargs import add_action, add_data_argument, add_meta_argument, store_directory
from exastor.datadir import keys
from exastor.datadir.lock import DataDirLocked, ServerRunning, exclusive, serving
from exastor.datadir.opening import open_metadata
from exastor.meta import datakeys, members, sealed_rows
from exastor.meta.sealing import SecretsLocked, sealed_key_id
from exastor.services import cluster


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_action(sub, "status", "whether new records are encrypted, and the data keys (never their bytes)")
    add_action(sub, "rotate", "make a new data key for new writes; older keys stay to read older records")
    master = add_action(sub, "rotate-master", "reseal every secret and data key under a new master key "
                        "(server stopped); the old key is kept aside in DATA until you remove it")
    master.add_argument("--new-key-command", default="", metavar="CMD",
                        help="a command that prints the new key (base64), for a master key kept in a KMS or "
                             "secrets manager (required when key_command / EXASTOR_KEY_COMMAND is set); "
                             "without it a new DATA/master.key is made")


def run(args: argparse.Namespace) -> int:
    # On PostgreSQL the database is elsewhere: DATA holds the master key (or key_command names it).
    data = store_directory(args.data, args.meta_url)
    if args.action == "rotate-master":
        return _rotate_master(data, args.new_key_command or None, args.meta_url or None)
    meta = open_metadata(data, args.meta_url or None)
    try:
        if args.action == "rotate":
            if meta.sealer.locked:
                print(f"exastor key rotate: the master key is needed: {meta.sealer.why_locked}", file=sys.stderr)
                return 1
            key_id = datakeys.new_key(meta, meta.sealer)
            print(f"data key {key_id} made; new records are encrypted under it (a running server takes it "
                  f"within 30 s); older keys stay to read what they encrypted")

        rows, encrypt, every = datakeys.key_state(meta)
        print(f"encrypt_at_rest : {'on' if encrypt == '1' else 'off'}"
              + (" (every record encrypted)" if every == "1" else
                 " (records from before it are plaintext)" if encrypt == "1" else ""))
        for key_id, wrapped, created_ns in rows:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_ns / 1e9))
            newest = "  (new writes)" if key_id == rows[-1][0] and encrypt == "1" else ""
            print(f"data key {key_id:<6} made {when}, wrapped by master key {sealed_key_id(wrapped)}{newest}")
        if not rows:
            print("no data keys (`exastor serve` makes the first when the store encrypts)")
        stale = sealed_rows.copies_sealed_under(meta)
        if stale:
            print(f"metadata copies on the drives may still be sealed under master key {stale}: the next "
                  "`exastor serve` replaces them with a fresh copy")
        for kept in keys.kept_old_keys(data):
            print(f"old master key kept aside: {kept} (remove it once no copy needs it; docs/security.md)")
        return 0
    finally:
        meta.close()



def _rotate_master(data: Path, new_command: str | None, meta_url: str | None) -> int:
    try:
        # No server (nor a standalone reducer) may hold the old key meanwhile: its workers could open
        # nothing the new key sealed. Both locks are released when this process exits.
        serving(data)
    except ServerRunning as exc:
        who = f" (pid {exc.pid})" if exc.pid else ""
        print(f"exastor key rotate-master: a server{who} is serving {data}: stop it first (every gateway "
              "of the store, if several share its database)", file=sys.stderr)
        return 2
    try:
        with exclusive(data):
            meta = open_metadata(data, meta_url)
            try:
                # Gateways elsewhere share a PostgreSQL database: their heartbeats, on its clock, say who runs.
                window = int(cluster.DOWN_AFTER_S * 1000) if meta_url else None
                done = keys.rotate_master(data, meta, new_command=new_command, refuse_beside_gateways_ms=window)
            finally:
                meta.close()
    except DataDirLocked:
        print(f"exastor key rotate-master: {data} is in use by an offline repair or reducer: let it finish",
              file=sys.stderr)
        return 2
    except members.GatewaysRunning as exc:
        print(f"exastor key rotate-master: {exc}: stop every gateway of the store first (a stopped gateway "
              f"stops counting {cluster.DOWN_AFTER_S:g} s after its last heartbeat); nothing was changed",
              file=sys.stderr)
        return 2
    except (keys.RotationRefused, SecretsLocked) as exc:
        print(f"exastor key rotate-master: {exc}", file=sys.stderr)
        return 2
    print(f"master key {done['new']} now seals the store's secrets"
          + (f" ({done['resealed']} resealed, were under {done['old']})" if done["resealed"] else
             " (they were already resealed by an interrupted run)"))
    if done["from_command"]:
        print("the new key comes from --new-key-command: set key_command (or EXASTOR_KEY_COMMAND) to it "
              "before the next `exastor serve`")
    else:
        print(f"new key in {data / keys.KEY_FILE}: back it up apart from the drives, now")
    if done["kept"]:
        print(f"old master key kept aside in {done['kept']}")
    elif done["old"]:
        print(f"the old master key ({done['old']}) stays where it was (your secrets manager)")
    if meta_url:
        print("every gateway of the store needs the new key before it starts (copy the key file to each "
              "gateway's DATA, or point key_command at the new key)")
    else:
        print("the next `exastor serve` takes a fresh metadata copy onto the drives and removes the copies sealed "
              "under the old key; keep the old key until then, and remove it yourself afterwards")
    return 0
