"""`exastor drive-server`: serve this host's drives to the cluster's gateways (drives/server.py).

    exastor drive-server --new-key /etc/exastor/cluster.key          # once per cluster; copy it (0600)
    exastor drive-server --drive /srv/ssd0 --drive /srv/ssd1 --listen 10.0.0.5:9100 \\
        --key-file /etc/exastor/cluster.key

then, on a gateway's store, ``exastor drive add http://10.0.0.5:9100/ssd0`` (the gateway reads the
key from DATA/cluster.key or ``EXASTOR_CLUSTER_KEY_FILE``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from exastor.drives import open_drive
from exastor.drives.server import DriveServer, parse_drives
from exastor.drives.wire import ClusterKeyError, create_key, load_key


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--drive", action="append", default=[], metavar="[NAME=]PATH",
                   help="a drive directory to serve (repeat); its URL is http://LISTEN/NAME (NAME: the "
                        "directory's base name unless given)")
    p.add_argument("--listen", default="127.0.0.1:9100", metavar="HOST:PORT")
    p.add_argument("--key-file", type=Path, help="the cluster key (mode 0600), the same on every host")
    p.add_argument("--new-key", type=Path, metavar="PATH", help="write a new cluster key to PATH and exit")
    p.add_argument("--threads", type=int, default=32, help="file calls run at once (default 32)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain); drive URLs are "
                                                     "then https://...")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    if args.new_key:
        try:
            create_key(args.new_key)
        except FileExistsError:
            print(f"exastor drive-server: {args.new_key} exists: not replacing a cluster key", file=sys.stderr)
            return 2
        print(f"cluster key written to {args.new_key} (mode 0600): copy it to every gateway and drive server")
        return 0
    if not args.drive or not args.key_file:
        print("exastor drive-server: --drive and --key-file are required (there is no unauthenticated mode)",
              file=sys.stderr)
        return 2
    try:
        key = load_key(args.key_file)
        paths = parse_drives(args.drive)
    except (ClusterKeyError, ValueError) as exc:
        print(f"exastor drive-server: {exc}", file=sys.stderr)
        return 2
    host, _, port_text = args.listen.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        print(f"exastor drive-server: --listen {args.listen}: HOST:PORT expected", file=sys.stderr)
        return 2
    host = host.strip("[]") or "127.0.0.1"
    if bool(args.tls_cert) != bool(args.tls_key):
        print("exastor drive-server: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    scheme = "https" if args.tls_cert else "http"
    tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key} if args.tls_cert else {}
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = DriveServer({name: open_drive(path) for name, path in paths.items()}, key, threads=args.threads)
    import uvicorn  # the server's own import, not the command line's

    config = uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", lifespan="off",
                            log_config=None, access_log=False, log_level=args.log_level,
                            timeout_keep_alive=120, server_header=False, date_header=False, backlog=1024,
                            # SIGTERM: requests in flight get this long, then connections are cut (a
                            # client then sees the drive unreachable, and a write it sent is final)
                            timeout_graceful_shutdown=10, **tls)
    server = uvicorn.Server(config)
    print(f"exastor drive-server: serving {', '.join(f'{scheme}://{args.listen}/{n}' for n in paths)}", flush=True)
    server.run()
    return 0 if server.started else 2
