"""`exastor serve`: start the server with the embedded default (SQLite, local drive directories)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

from exastor import __version__, errors, metrics
from exastor.config import ConfigError, load
from exastor.crashpoints import crash_point
from exastor.datadir import gateway_id, keys
from exastor.datadir.lock import DataDirLocked, ServerRunning, serving, shared
from exastor.datadir.opening import (
    ensure_account,
    ensure_admin,
    open_metadata,
    open_namespace,
    private_dir,
    private_file,
    recover_segments,
)
from exastor.engine import gf
from exastor.engine.drives import BUFFER, CAPACITY, DriveRefused
from exastor.errors import data_dir_unusable
from exastor.gateway import admin, server, tls
from exastor.gateway.memory import tune_malloc
from exastor.http import qos
from exastor.meta import datakeys, leases, members, sealed_rows
from exastor.meta.contract import Metadata
from exastor.meta.postgres import describe
from exastor.meta.sealing import SecretsLocked
from exastor.meta.sqlite import sqlite_runner
from exastor.services import cluster, metabackup

log = logging.getLogger("exastor.serve")


class StartupHeartbeat(threading.Thread):
    """The master process's own ``members`` row (kind STARTING) while it starts: made before the
    first secret is read, refreshed every heartbeat interval (a start may take long: segment
    recovery), and once more on ``stop`` - just before the workers fork and heartbeat as
    themselves within the down timeout. The cluster manager marks it down, then removes it."""

    def __init__(self, meta: Metadata, address: str) -> None:
        super().__init__(name="exastor-startup-heartbeat", daemon=True)
        self.meta, self.address = meta, address
        self.member_id = f"{members.STARTING} {leases.holder_id()}"
        self._stop_event = threading.Event()
        self._beat()  # synchronously: committed before the caller opens a secret
        self.start()

    def _beat(self) -> None:
        members.heartbeat(self.meta, self.member_id, members.STARTING, self.address)

    def run(self) -> None:
        while not self._stop_event.wait(cluster.HEARTBEAT_S):
            try:
                self._beat()
            except errors.Unavailable as exc:  # the database is away: the start fails elsewhere, or beats later
                log.warning("startup heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)
        try:
            self._beat()
        except errors.Unavailable as exc:
            log.warning("startup heartbeat failed: %s", exc)


def identity_twin(meta: Metadata, identity_prefix: str, own_member: str) -> str | None:
    """Where another running gateway with this gateway's identity was seen (a copied data
    directory, DATA/gateway.id and all), else None.

    Rows with this identity seen lately are this gateway's previous run's (killed, its rows not yet
    marked down) or a twin's. The previous run cannot be beating: its processes held DATA's server
    lock, which this start now holds. So a row whose heartbeat moves on while this start watches for
    a little over two heartbeat intervals - or a new one - is a twin: taking over "its previous
    run's" leases would cut a live gateway's writes, again at every start of either."""
    within_ms = int(cluster.DOWN_AFTER_S * 1000)

    def others() -> dict[str, int]:
        return {m: seen for m, seen in members.gateways_beating(meta, identity_prefix, within_ms).items()
                if m != own_member}

    first = others()
    if not first:
        return None
    deadline = time.monotonic() + 2.5 * cluster.HEARTBEAT_S + 1
    while time.monotonic() < deadline:
        time.sleep(cluster.HEARTBEAT_S / 4)  # the product polls the database; bounded by the deadline
        beating = [m for m, seen in others().items() if seen > first.get(m, -1)]
        if beating:
            return ", ".join(sorted(beating))
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (settings as in docs/operations.md)")
    p.add_argument("--data", help="data directory (default ./data)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--s3-port", type=int, help="S3 port (default 9000)")
    p.add_argument("--blob-port", type=int, help="Azure Blob port (default 10000; 0 disables)")
    p.add_argument("--account-name", help="Azure Blob account name (default exastor)")
    p.add_argument("--account-key", help="Azure Blob account key, base64 (default: generated on first start)")
    p.add_argument("--account-key2", help="a second Azure Blob account key, base64 (Azure's key2: requests and "
                   "SAS signed with either key are accepted; default: none)")
    p.add_argument("--access-key", help="admin access key (default: generated on first start)")
    p.add_argument("--secret-key", help="admin secret key")
    p.add_argument("--region", help="region reported to clients (default us-east-1)")
    p.add_argument("--domain", action="append", dest="domains",
                   help="domain for virtual-host style requests (bucket.DOMAIN); repeatable")
    p.add_argument("--drive", action="append", dest="drives", metavar="PATH",
                   help="a drive directory (one per SSD); repeatable. Default: DATA/drive0 alone (no redundancy)")
    p.add_argument("--buffer-drive", action="append", dest="buffer_drives", metavar="PATH",
                   help="a write-buffer drive (fast, high-endurance flash): it takes the replicated write buffer "
                        "(small writes, tails) and no stripes, so the --drive drives are written once; repeatable")
    p.add_argument("--meta", dest="meta_url", metavar="URL",
                   help="metadata database: a postgresql:// URL shared by many gateways (default: embedded "
                        "SQLite under DATA/meta)")
    p.add_argument("--ec", help="erasure geometry K+M, e.g. 4+2 or 146+4 (default: by drive count, 4+2 at 6 "
                   "drives, 9+3 at 12, 20+4 from 24 on: docs/reliability.md)")
    p.add_argument("--workers", type=int, help="gateway processes (default: one per CPU, at most 8)")
    p.add_argument("--admin-port", type=int,
                   help="serve /metrics and the web console on this port (default: off)")
    p.add_argument("--admin-host", help="address of the admin port (default 127.0.0.1)")
    p.add_argument("--metrics-token", help="bearer token /metrics requires (default: none, loopback clients only)")
    p.add_argument("--log-level", help="critical|error|warning|info|debug")
    p.add_argument("--log-format", choices=["text", "json"], help="server log lines: text (default) or json")
    p.add_argument("--access-log", metavar="FILE",
                   help="one JSON line per request to FILE ('-' for stdout); default off")
    p.add_argument("--shutdown-timeout", type=float,
                   help="seconds SIGTERM lets in-flight requests finish (default 30)")
    p.add_argument("--tls-cert", metavar="PEM", help="TLS certificate (chain) for both endpoints")
    p.add_argument("--tls-key", metavar="PEM", help="TLS private key for --tls-cert")
    p.add_argument("--tls", choices=["self-signed"],
                   help="self-signed: make a development CA and certificate in DATA/tls and serve HTTPS")
    p.add_argument("--trusted-proxy", action="append", dest="trusted_proxies", metavar="ADDR",
                   help="an address or network whose X-Forwarded-For/-Proto are believed; repeatable "
                        "(default: none)")
    p.add_argument("--encrypt-at-rest", choices=["on", "off"],
                   help="encrypt new records with AES-256-GCM (default: on for a new store; an existing store "
                        "keeps what it had; docs/security.md)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config, {
            "data": args.data, "host": args.host, "s3_port": args.s3_port, "blob_port": args.blob_port,
            "account_name": args.account_name, "account_key": args.account_key,
            "account_key2": args.account_key2, "access_key": args.access_key,
            "secret_key": args.secret_key, "region": args.region,
            "domains": ",".join(args.domains) if args.domains else None, "log_level": args.log_level,
            "workers": args.workers, "drives": args.drives, "buffer_drives": args.buffer_drives, "ec": args.ec, "admin_port": args.admin_port,
            "admin_host": args.admin_host, "metrics_token": args.metrics_token, "meta_url": args.meta_url,
            "log_format": args.log_format, "access_log": args.access_log, "shutdown_timeout": args.shutdown_timeout,
            "tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls": args.tls,
            "trusted_proxies": args.trusted_proxies, "encrypt_at_rest": args.encrypt_at_rest,
        })
    except ConfigError as exc:
        print(f"exastor serve: {exc}", file=sys.stderr)
        return 2
    server.configure_logging(cfg.log_level, cfg.log_format)
    if cfg.meta_backup_interval and cfg.gc_grace <= cfg.meta_backup_interval:
        print(f"exastor serve: warning: gc_grace ({cfg.gc_grace} s) <= meta_backup_interval "
              f"({cfg.meta_backup_interval} s): chunks of objects deleted after the newest metadata copy may be "
              "reclaimed before the next copy, and a restore from it would bring those objects back unreadable",
              file=sys.stderr)
    tune_malloc()  # before any thread starts; inherited by the forked workers
    try:
        private_dir(cfg.data)  # it holds the key file, the credentials and the metadata (docs/security.md)
        for name in ("credentials.toml", "blob-account.toml", keys.KEY_FILE):
            private_file(cfg.data / name)
    except OSError as exc:  # a read-only mount, another owner: named, never a traceback
        raise data_dir_unusable(cfg.data, exc) from exc
    try:
        # First of all: one server per data directory. Recovery below seals and cuts open segments,
        # which would wreck the segments another live server is writing.
        serving(cfg.data)  # held (and inherited by the workers) until the last of them exits
    except ServerRunning as exc:
        who = f" (pid {exc.pid})" if exc.pid else ""
        print(f"exastor serve: another exastor server{who} is serving {cfg.data}; one server per data "
              "directory: stop it first", file=sys.stderr)
        return 2
    try:
        shared(cfg.data)  # held until exit: offline repairs (fsck --repair) refuse to run meanwhile
    except DataDirLocked:
        print(f"exastor serve: {cfg.data} is locked by an offline repair (exastor fsck --repair)", file=sys.stderr)
        return 2
    previous_run = None
    if cfg.meta_url:
        # Many gateways share the database: this one's lease holder ids begin with its identity, so
        # the recovery below takes over what its previous run left open, and nothing another holds.
        try:
            identity = gateway_id.ensure(cfg.data)
        except (OSError, gateway_id.GatewayIdUnusable) as exc:
            print(f"exastor serve: {exc}", file=sys.stderr)
            return 2
        leases.set_gateway(identity)  # before the workers fork: they inherit it
        previous_run = leases.gateway_prefix(identity)
    trust_note = ""
    if cfg.tls == "self-signed":
        cert, key, ca, made = tls.self_signed(cfg.data, cfg.host)
        cfg.tls_cert, cfg.tls_key = str(cert), str(key)
        trust_note = f"{'made ' if made else ''}self-signed; clients trust {ca.resolve()}"
    meta = open_metadata(cfg.data, cfg.meta_url, key_command=cfg.key_command)
    # On PostgreSQL, before any secret is opened or sealed: this gateway is seen by a master-key rotation
    # from now until its workers heartbeat as themselves (key_cli.py: it refuses beside a live gateway; one
    # that rotated just before this heartbeat has committed, and the secrets read below are the new ones).
    starting = StartupHeartbeat(meta, cluster.gateway_address(cfg.host, cfg.s3_port)) if cfg.meta_url else None
    try:
        if starting is not None and previous_run is not None:
            twin = identity_twin(meta, previous_run, starting.member_id)
            if twin is not None:
                print(f"exastor serve: another gateway is running with this data directory's identity "
                      f"({cfg.data / gateway_id.GATEWAY_ID_FILE}: {previous_run.rstrip('/')}): {twin}. Was the "
                      "data directory copied? Stop the other gateway, or, if this directory is the copy, remove "
                      f"its {gateway_id.GATEWAY_ID_FILE} (a new identity is made at the next start)",
                      file=sys.stderr)
                return 2
        try:
            key_id = keys.ensure(cfg.data, meta, command=cfg.key_command).key_id
        except SecretsLocked as exc:
            print(f"exastor serve: the secrets in the metadata cannot be opened: {exc}", file=sys.stderr)
            return 2
        sealed_now = keys.seal_plaintext(meta)  # a store from before sealing: its secrets leave the clear
        # Copies on the drives sealed under a master key `exastor key rotate-master` replaced.
        under_old_key = sealed_rows.copies_sealed_under(meta)
        # Encryption at rest: decided (and the first data key made) once, before any worker writes.
        encrypting, all_encrypted = datakeys.decide(meta, meta.sealer, cfg.encrypt_at_rest)
        creds = ensure_admin(meta, cfg.data, cfg.access_key, cfg.secret_key)
        journal = cfg.meta_journal and cfg.meta_backup_interval > 0
        try:  # once, before any worker opens a segment
            drive_set = recover_segments(meta, cfg.data, cfg.drives, cfg.ec, journal=journal,
                                         previous_run=previous_run, buffer_drives=cfg.buffer_drives)
        except DriveRefused as exc:
            print(f"exastor serve: {exc}", file=sys.stderr)
            return 2
        n_drives = sum(d.state != "removed" and d.tier == CAPACITY for d in drive_set.all)
        n_buffer = sum(d.state != "removed" and d.tier == BUFFER for d in drive_set.all)
        geometry = drive_set.geometry()
        hosts = drive_set.hosts_in_service()
        if hosts > 1 and geometry.m and not geometry.host_losses_survived(hosts):
            log.warning("erasure %s over %d hosts puts up to %d shards of a stripe on one host, more than m = %d: "
                        "losing any one host makes data unavailable; add hosts or choose a narrower geometry",
                        geometry, hosts, -(-geometry.width // hosts), geometry.m)
        account = ensure_account(cfg.data, cfg.account_name, cfg.account_key, meta)
        if (sealed_now or under_old_key) and cfg.meta_backup_interval and not cfg.meta_url:
            # The copies (and journal files) on the drives still hold those secrets in the clear, or
            # sealed under the old master key: a new journal generation and one fresh copy, then the
            # older copies and generations go (the fresh copy supersedes them as a restore point).
            if journal:
                metabackup.next_generation(meta)
            fresh = metabackup.take(sqlite_runner(meta).path, metabackup.targets(drive_set))  # not meta_url
            if fresh[0].verify() is None:
                metabackup.retire_older([d.io for d in drive_set.all if drive_set.readable(d.id)],
                                        fresh[0].taken_ns)
                if journal:  # only drives whose identity verified: never sweep an offline or foreign one
                    metabackup.prune_journal([d.io for d in drive_set.all if drive_set.readable(d.id)])
                crash_point("meta.copies_retired")  # the superseded copies and journal files just removed
                if under_old_key:
                    sealed_rows.forget_copies_sealed_under(meta)
                    log.warning("metadata copies sealed under master key %s replaced by a fresh copy: "
                                "the old key is no longer needed by any copy on the drives", under_old_key)
        elif under_old_key and cfg.meta_url:  # PostgreSQL: exastor takes no copies of it
            sealed_rows.forget_copies_sealed_under(meta)
        if journal:  # the journal continues a copy: one must exist that covers every commit made without it
            metabackup.ensure_base_copy(meta, drive_set)
    finally:
        if starting is not None:
            starting.stop()  # after one last heartbeat: it covers the workers' start (DOWN_AFTER_S)
        meta.close()  # no database connection may cross the fork into the workers
    cfg.account_name, cfg.account_key = account.name, account.key
    shown_host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::") else cfg.host
    scheme = "https" if cfg.tls_cert else "http"

    def banner() -> None:
        endpoint = f"{scheme}://{shown_host}:{cfg.s3_port}"  # after binding: --s3-port 0 got a real port
        lines = [
            f"exastor {__version__} is serving",
            f"  S3 endpoint : {endpoint}",
            f"  data        : {cfg.data.resolve()}",
            *([f"  TLS         : {cfg.tls_cert} ({trust_note or 'certificate given'})"] if cfg.tls_cert else []),
            ("  drives      : 1 drive: NO REDUNDANCY - a failed drive loses data; add drives for erasure coding"
             if n_drives == 1 and geometry.m == 0 else
             f"  drives      : {n_drives}"
             + (f" on {hosts} hosts" if hosts > 1 else "")
             + f", erasure {geometry} (survives {geometry.m} drive failures"
             + (f" or {geometry.host_losses_survived(hosts)} host failures" if hosts > 1 else "")
             + "; "
             f"capacity overhead {geometry.overhead:.1%}; open segments on {geometry.m + 1} replicas"
             + (f" on the {n_buffer} write-buffer drives" if n_buffer else "")
             + f"; large writes as full stripes; coded by {gf.kernel_name()})"),
            (f"  metadata    : PostgreSQL {describe(cfg.meta_url)} (its own WAL, backups and standby keep it)"
             if cfg.meta_url else
             f"  metadata    : {cfg.data.resolve() / 'meta'}, "
             + ("every commit journaled and " if journal else "")
             + f"copied every {cfg.meta_backup_interval} s onto "
             f"{geometry.m + 1} drive{'s' if geometry.m else ''} (exastor fsck --restore-meta)"
             if cfg.meta_backup_interval else
             f"  metadata    : {cfg.data.resolve() / 'meta'}, NOT copied (meta_backup_interval = 0)"),
            (f"  admin       : http://{cfg.admin_host}:{cfg.admin_port}/ (console) and /metrics"
             if cfg.admin_port else "  admin       : off (--admin-port N serves /metrics and the console)"),
            f"  secrets     : sealed in the metadata under master key {key_id}, "
            + ("from key_command" if cfg.key_command or os.environ.get("EXASTOR_KEY_COMMAND") else
               f"in {cfg.data.resolve() / keys.KEY_FILE} (back it up apart from the drives)"),
            ("  at rest     : AES-256-GCM under the store's data keys, wrapped by the master key"
             + ("" if all_encrypted else "; records from before it stay plaintext")
             if encrypting else "  at rest     : NOT encrypted (encrypt_at_rest = off)"),
            f"  access key  : {creds.access_key}",
            # Secrets are printed only when made now: the banner goes to logs and terminals.
            (f"  secret key  : {creds.secret_key}   (generated; stored 0600 in {cfg.data / 'credentials.toml'})"
             if creds.generated else f"  secret key  : not shown (exastor user show admin --data {cfg.data})"),
            "",
            "  export AWS_ACCESS_KEY_ID=" + creds.access_key,
            *(["  export AWS_SECRET_ACCESS_KEY=" + creds.secret_key] if creds.generated else []),
            "  export AWS_ENDPOINT_URL=" + endpoint,
            "  export AWS_DEFAULT_REGION=" + cfg.region,
        ]
        if trust_note:
            lines.append("  export AWS_CA_BUNDLE=" + str(ca.resolve()))
        if cfg.blob_port:
            blob_endpoint = f"{scheme}://{shown_host}:{cfg.blob_port}/{account.name}"
            lines += [
                "",
                f"  Blob endpoint : {blob_endpoint}",
                f"  account       : {account.name}",
                (f"  account key   : {account.key}   (generated; stored 0600 in {cfg.data / 'blob-account.toml'})"
                 if account.generated else f"  account key   : not shown (exastor user show admin --data {cfg.data})"),
            ]
            if account.generated:
                lines += [
                    "",
                    f"  export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol={scheme};"
                    f"AccountName={account.name};AccountKey={account.key};BlobEndpoint={blob_endpoint};'",
                ]
        print("\n".join(lines), flush=True)

    try:
        sockets = server.bind_all(cfg)
        try:
            sockets.update(admin.bind(cfg))
        except server.ListenError:
            for sock in sockets.values():
                sock.close()
            raise
    except server.ListenError as exc:
        print(f"exastor serve: {exc}", file=sys.stderr)
        return 1
    # Before the workers fork: each writes its values under DATA/metrics, any of them serves them all.
    metrics.enable(cfg.data / "metrics")
    qos.enable(cfg.data / "qos")  # token buckets shared by the workers, full again after a restart
    banner()  # the sockets already accept: connections wait in the backlog for the workers
    workers = cfg.workers or min(os.cpu_count() or 1, 8)
    return server.serve(cfg, lambda: open_namespace(cfg.data, region=cfg.region, segment_size=cfg.segment_size,
                                                    recover=False, drives=cfg.drives, ec=cfg.ec,
                                                    journal=journal, meta_url=cfg.meta_url,
                                                    key_command=cfg.key_command),
                        sockets, workers)
