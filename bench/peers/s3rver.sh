#!/usr/bin/env bash
# s3rver (npm): a lightweight Node.js S3 server on the filesystem. Keys S3RVER/S3RVER.
# usage: s3rver.sh install | start PORT DATADIR | stop [PORT] | status [PORT]
source "$(dirname "$0")/_common.sh"
NODE_DIR="$PEERS/node"
BIN="$NODE_DIR/node_modules/s3rver/bin/s3rver.js"
PIDFILE=$(pidfile_for s3rver "${2:-none}")

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
        if [[ ${S3RVER_RESPAWN:-0} == 1 ]]; then
            # s3rver crashes on some requests (an unknown part number in CompleteMultipartUpload);
            # for conformance runs restart it, counting crashes in the log, so one crash does not
            # fail every later test. The pid recorded is the loop's (its own process group).
            setsid bash -c 'while :; do node "$0" "$@"; echo "s3rver exited with $?: respawning" >&2; sleep 0.5; done' \
                "$BIN" -d "$dir" -a 127.0.0.1 -p "$port" --silent >"$LOGS/s3rver.$port.log" 2>&1 &
            echo $! >"$PIDFILE"; echo group >"$PIDFILE.group"
        else
            # node itself, so that the pid we record is the process whose RSS we sample
            nohup node "$BIN" -d "$dir" -a 127.0.0.1 -p "$port" --silent >"$LOGS/s3rver.$port.log" 2>&1 &
            echo $! >"$PIDFILE"; rm -f "$PIDFILE.group"
        fi
        wait_port "$port" 30 "$(cat "$PIDFILE")"
        echo "access_key=S3RVER secret_key=S3RVER pid=$(cat "$PIDFILE")"
        ;;
    stop) stop_named s3rver "${2:-}" ;;
    status) status_named s3rver "${2:-}" ;;
    *) echo "usage: $0 install | start PORT DATADIR | stop [PORT] | status [PORT]" >&2; exit 2 ;;
esac
