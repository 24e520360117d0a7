"""`exastor serve`: start the server with the embedded default (SQLite, local drive directories)."""

from __future__ import annotations

import argparse
import os
import sys

from exastor import __version__
from exastor.config import ConfigError, load
from exastor.engine import gf
from exastor.engine.drives import DriveRefused
from exastor.gateway import server
from exastor.gateway.lock import DataDirLocked, shared
from exastor.gateway.memory import tune_malloc
from exastor.gateway.store import (
    ensure_account,
    ensure_admin,
    open_metadata,
    open_namespace,
    recover_segments,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (settings as in docs/operations.md)")
    p.add_argument("--data", help="data directory (default ./data)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--s3-port", type=int, help="S3 port (default 9000)")
    p.add_argument("--blob-port", type=int, help="Azure Blob port (default 10000; 0 disables)")
    p.add_argument("--account-name", help="Azure Blob account name (default exastor)")
    p.add_argument("--account-key", help="Azure Blob account key, base64 (default: generated on first start)")
    p.add_argument("--access-key", help="admin access key (default: generated on first start)")
    p.add_argument("--secret-key", help="admin secret key")
    p.add_argument("--region", help="region reported to clients (default us-east-1)")
    p.add_argument("--domain", action="append", dest="domains",
                   help="domain for virtual-host style requests (bucket.DOMAIN); repeatable")
    p.add_argument("--drive", action="append", dest="drives", metavar="PATH",
                   help="a drive directory (one per SSD); repeatable. Default: DATA/drive0 alone (no redundancy)")
    p.add_argument("--ec", help="erasure geometry K+M, e.g. 4+2 or 146+4 (default: chosen by drive count)")
    p.add_argument("--workers", type=int, help="gateway processes (default: one per CPU, at most 8)")
    p.add_argument("--log-level", help="critical|error|warning|info|debug")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config, {
            "data": args.data, "host": args.host, "s3_port": args.s3_port, "blob_port": args.blob_port,
            "account_name": args.account_name, "account_key": args.account_key, "access_key": args.access_key,
            "secret_key": args.secret_key, "region": args.region,
            "domains": ",".join(args.domains) if args.domains else None, "log_level": args.log_level,
            "workers": args.workers, "drives": args.drives, "ec": args.ec,
        })
    except ConfigError as exc:
        print(f"exastor serve: {exc}", file=sys.stderr)
        return 2
    server.configure_logging(cfg.log_level)
    if cfg.meta_backup_interval and cfg.gc_grace <= cfg.meta_backup_interval:
        print(f"exastor serve: warning: gc_grace ({cfg.gc_grace} s) <= meta_backup_interval "
              f"({cfg.meta_backup_interval} s): chunks of objects deleted after the newest metadata copy may be "
              "reclaimed before the next copy, and a restore from it would bring those objects back unreadable",
              file=sys.stderr)
    tune_malloc()  # before any thread starts; inherited by the forked workers
    try:
        shared(cfg.data)  # held until exit: offline repairs (fsck --repair) refuse to run meanwhile
    except DataDirLocked:
        print(f"exastor serve: {cfg.data} is locked by an offline repair (exastor fsck --repair)", file=sys.stderr)
        return 2
    meta = open_metadata(cfg.data)
    try:
        creds = ensure_admin(meta, cfg.data, cfg.access_key, cfg.secret_key)
        try:
            drive_set = recover_segments(meta, cfg.data, cfg.drives, cfg.ec)  # once, before any worker opens a segment
        except DriveRefused as exc:
            print(f"exastor serve: {exc}", file=sys.stderr)
            return 2
        n_drives = sum(d.state != "removed" for d in drive_set.all)
        geometry = drive_set.geometry()
        account = ensure_account(cfg.data, cfg.account_name, cfg.account_key, meta)
    finally:
        meta.close()  # no database connection may cross the fork into the workers
    cfg.account_name, cfg.account_key = account.name, account.key
    shown_host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host

    def banner() -> None:
        endpoint = f"http://{shown_host}:{cfg.s3_port}"  # after binding: --s3-port 0 got a real port
        lines = [
            f"exastor {__version__} is serving",
            f"  S3 endpoint : {endpoint}",
            f"  data        : {cfg.data.resolve()}",
            ("  drives      : 1 drive: NO REDUNDANCY - a failed drive loses data; add drives for erasure coding"
             if n_drives == 1 and geometry.m == 0 else
             f"  drives      : {n_drives}, erasure {geometry} (survives {geometry.m} drive failures; "
             f"capacity overhead {geometry.overhead:.1%}; open segments on {geometry.m + 1} replicas; "
             f"coded by {gf.kernel_name()})"),
            (f"  metadata    : {cfg.data.resolve() / 'meta'}, copied every {cfg.meta_backup_interval} s onto "
             f"{geometry.m + 1} drive{'s' if geometry.m else ''} (exastor fsck --restore-meta)"
             if cfg.meta_backup_interval else
             f"  metadata    : {cfg.data.resolve() / 'meta'}, NOT copied (meta_backup_interval = 0)"),
            f"  access key  : {creds.access_key}",
            f"  secret key  : {creds.secret_key}"
            + (f"   (generated; stored 0600 in {cfg.data / 'credentials.toml'})" if creds.generated else ""),
            "",
            "  export AWS_ACCESS_KEY_ID=" + creds.access_key,
            "  export AWS_SECRET_ACCESS_KEY=" + creds.secret_key,
            "  export AWS_ENDPOINT_URL=" + endpoint,
            "  export AWS_DEFAULT_REGION=" + cfg.region,
        ]
        if cfg.blob_port:
            blob_endpoint = f"http://{shown_host}:{cfg.blob_port}/{account.name}"
            lines += [
                "",
                f"  Blob endpoint : {blob_endpoint}",
                f"  account       : {account.name}",
                f"  account key   : {account.key}"
                + (f"   (generated; stored 0600 in {cfg.data / 'blob-account.toml'})" if account.generated else ""),
                "",
                "  export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=http;"
                f"AccountName={account.name};AccountKey={account.key};BlobEndpoint={blob_endpoint};'",
            ]
        print("\n".join(lines), flush=True)

    try:
        sockets = server.bind_all(cfg)
    except server.ListenError as exc:
        print(f"exastor serve: {exc}", file=sys.stderr)
        return 1
    banner()  # the sockets already accept: connections wait in the backlog for the workers
    workers = cfg.workers or min(os.cpu_count() or 1, 8)
    return server.serve(cfg, lambda: open_namespace(cfg.data, region=cfg.region, segment_size=cfg.segment_size,
                                                    recover=False, drives=cfg.drives, ec=cfg.ec),
                        sockets, workers)
