"""`exastor key status|rotate`: the store's data keys (encryption at rest, docs/security.md).

``rotate`` adds a new data key, sealed under the master key: new records are encrypted under it
(a running server picks it up within 30 s), and every older key stays to read the records written
under it, so nothing on the drives is rewritten. It needs the master key, as the server does."""

from __future__ import annotations

import argparse
import sys
import time

from exastor.cliargs import add_action, add_data_argument, existing_store
from exastor.datadir.opening import open_metadata
from exastor.meta import datakeys
from exastor.meta.sealing import sealed_key_id


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_action(sub, "status", "whether new records are encrypted, and the data keys (never their bytes)")
    add_action(sub, "rotate", "make a new data key for new writes; older keys stay to read older records")


def run(args: argparse.Namespace) -> int:
    data = existing_store(args.data)
    meta = open_metadata(data)
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
        return 0
    finally:
        meta.close()
