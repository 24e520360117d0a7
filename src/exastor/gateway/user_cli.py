"""`exastor user add|list|show|remove`: identities and their access-key pairs.

Secrets are sealed in the database (datadir/keys.py): `list` never shows them; `show NAME` opens
them on demand (it needs the master key, as the server does)."""

from __future__ import annotations

import argparse
import sys
import time

from exastor import errors
from exastor.cliargs import add_action, add_data_argument, add_meta_argument, store_directory
from exastor.datadir import keys
from exastor.datadir.opening import ADMIN, new_access_key, new_secret_key, open_metadata, stored_account
from exastor.meta.records import User


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    add_meta_argument(p)  # users of a store on PostgreSQL: every gateway sees them at once
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = add_action(sub, "add", "create a user and print its keys", meta=True)
    add.add_argument("name")
    add.add_argument("--access-key", help="use this access key instead of a generated one")
    add.add_argument("--secret-key", help="use this secret key instead of a generated one")
    add.add_argument("--email", help="the user's e-mail address (S3 ACL grants by e-mail name it)")
    add_action(sub, "list", "list users and their access keys (secrets are not shown)", meta=True)
    show = add_action(sub, "show", "print a user's access key and secret key (admin: also the Blob account key "
                                   "and connection settings)", meta=True)
    show.add_argument("name")
    rm = add_action(sub, "remove", "remove a user; its keys stop working within seconds. Refused while the "
                                   "user owns buckets, unless --transfer-to names who takes them", meta=True)
    rm.add_argument("name")
    rm.add_argument("--transfer-to", metavar="USER",
                    help="hand the user's buckets (and the objects in them) to USER in the same transaction")


def run(args: argparse.Namespace) -> int:
    data = store_directory(args.data, args.meta_url)
    meta = open_metadata(data, args.meta_url or None)
    try:
        if args.action == "add":
            access = args.access_key or new_access_key()
            secret = args.secret_key or new_secret_key()
            keys.ensure(data, meta)  # the secret is sealed: a store without a key yet gets one
            try:
                meta.add_user(User(args.name, access, secret, time.time_ns()))
                if args.email:
                    meta.set_user_email(args.name, args.email)
            except errors.InvalidArgument as exc:
                print(f"exastor user add: {exc.detail}", file=sys.stderr)
                return 1
            print(f"user       : {args.name}\naccess key : {access}\nsecret key : {secret}")
        elif args.action == "list":
            for user in meta.list_users(secrets=False):
                print(f"{user.name:<24} {user.access_key}")
        elif args.action == "show":
            found = {u.name: u for u in meta.list_users(secrets=False)}.get(args.name)
            if found is None:
                print(f"exastor user show: no user {args.name!r}", file=sys.stderr)
                return 1
            shown = meta.user_by_access_key(found.access_key)
            assert shown is not None
            print(f"user       : {shown.name}\naccess key : {shown.access_key}\nsecret key : {shown.secret_key}")
            if args.name == ADMIN:
                name, key = stored_account(meta)
                if key is not None:
                    print(f"\nBlob account     : {name}\nBlob account key : {key}")
        elif args.action == "remove":
            if args.name == ADMIN:
                print("exastor user remove: the admin user is managed by `exastor serve`", file=sys.stderr)
                return 1
            try:
                moved = meta.remove_user(args.name, transfer_to=args.transfer_to)
            except errors.InvalidArgument as exc:
                print(f"exastor user remove: {exc.detail}", file=sys.stderr)
                return 1
            if moved is None:
                print(f"exastor user remove: no user {args.name!r}", file=sys.stderr)
                return 1
            print(f"removed {args.name}" + (f"; {len(moved)} bucket(s) now owned by {args.transfer_to}: "
                                             + ", ".join(moved) if moved else ""))
        return 0
    finally:
        meta.close()
