#!/usr/bin/env bash
# moto server (PyPI moto[server]): an in-memory S3 mock. No auth: any keys work.
# It keeps every object in RAM, so size big tests accordingly (see run_s3_peers.sh).
# usage: moto.sh install | start PORT [DATADIR, unused] | stop [PORT] | status [PORT]
source "$(dirname "$0")/_common.sh"
VENV="$PEERS/moto-venv"
PIDFILE=$(pidfile_for moto "${2:-none}")
PYTHON=${PYTHON:-python3.11}

install() {
    [[ -x $VENV/bin/moto_server ]] && return 0
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q "moto[server]"
}

case ${1:-} in
    install) install ;;
    start)
        port=${2:?port}
        install >&2
        nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOGS/moto.$port.log" 2>&1 &
        echo $! >"$PIDFILE"
        wait_port "$port" 60 "$(cat "$PIDFILE")"
        echo "access_key=any secret_key=any pid=$(cat "$PIDFILE")"
        ;;
    stop) stop_named moto "${2:-}" ;;
    status) status_named moto "${2:-}" ;;
    *) echo "usage: $0 install | start PORT [DATADIR] | stop [PORT] | status [PORT]" >&2; exit 2 ;;
esac
