#!/usr/bin/env bash
# Azurite (npm azurite 3.35; 3.37 needs Node 22): the Azure Blob emulator, for the Blob API peers.
# Default account devstoreaccount1 with the well-known key; extra accounts via AZURITE_ACCOUNTS.
# usage: azurite.sh install | start PORT DATADIR | stop [PORT] | status [PORT]
source "$(dirname "$0")/_common.sh"
NODE_DIR="$PEERS/node"
BIN="$NODE_DIR/node_modules/azurite/dist/src/blob/main.js"
PIDFILE=$(pidfile_for azurite "${2:-none}")

install() {
    [[ -f $BIN ]] && return 0
    mkdir -p "$NODE_DIR"
    [[ -f $NODE_DIR/package.json ]] || (cd "$NODE_DIR" && npm init -y >/dev/null)
    (cd "$NODE_DIR" && npm install --no-audit --no-fund azurite@3.35.0)
}

case ${1:-} in
    install) install ;;
    start)
        port=${2:?port}; dir=${3:?data dir}
        install >&2
        mkdir -p "$dir"
        # --skipApiVersionCheck: current azure-storage-blob sends an API version 3.35 does not know
        nohup node "$BIN" --blobHost 127.0.0.1 --blobPort "$port" --location "$dir" --silent \
            --disableTelemetry --skipApiVersionCheck >"$LOGS/azurite.$port.log" 2>&1 &
        echo $! >"$PIDFILE"
        wait_port "$port" 30 "$(cat "$PIDFILE")"
        echo "account=devstoreaccount1 pid=$(cat "$PIDFILE")"
        ;;
    stop) stop_named azurite "${2:-}" ;;
    status) status_named azurite "${2:-}" ;;
    *) echo "usage: $0 install | start PORT DATADIR | stop [PORT] | status [PORT]" >&2; exit 2 ;;
esac
