#!/usr/bin/env bash
# s3rver (npm): a lightweight Node.js S3 server on the filesystem. Keys S3RVER/S3RVER.
# usage: s3rver.sh install | start PORT DATADIR | stop | status
source "$(dirname "$0")/_common.sh"
NODE_DIR="$PEERS/node"
BIN="$NODE_DIR/node_modules/s3rver/bin/s3rver.js"
PIDFILE="$RUN/s3rver.pid"

install() {
    [[ -f $BIN ]] && return 0
    mkdir -p "$NODE_DIR"
    [[ -f $NODE_DIR/package.json ]] || (cd "$NODE_DIR" && npm init -y >/dev/null)
    (cd "$NODE_DIR" && npm install --no-audit --no-fund s3rver@3.7.1)
}

case ${1:-} in
    install) install ;;
    start)
        port=${2:?port}; dir=${3:?data dir}
        install >&2
        mkdir -p "$dir"
        # exec so that the pid we record is node's, the process whose RSS we sample
        nohup node "$BIN" -d "$dir" -a 127.0.0.1 -p "$port" --silent >"$LOGS/s3rver.log" 2>&1 &
        echo $! >"$PIDFILE"
        wait_port "$port" 30 "$(cat "$PIDFILE")"
        echo "access_key=S3RVER secret_key=S3RVER pid=$(cat "$PIDFILE")"
        ;;
    stop) stop_pidfile "$PIDFILE" ;;
    status) status_pidfile "$PIDFILE" ;;
    *) echo "usage: $0 install | start PORT DATADIR | stop | status" >&2; exit 2 ;;
esac
