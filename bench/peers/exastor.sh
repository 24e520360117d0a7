#!/usr/bin/env bash
# exastor itself, started the same way as the peers: `exastor serve` on 127.0.0.1
# from the project venv (.venv), an admin user and a second user 'alt' (for s3-tests).
# EXASTOR_BENCH_EC=K+M (e.g. 4+2): K+M drive directories DATADIR/d0.. with that erasure
# geometry; unset: the default, one drive directory (DATADIR/drive0), no redundancy.
# Gateway workers: one per core, at most 8 (serve's default), passed explicitly and reported.
# usage: exastor.sh start PORT DATADIR | stop [PORT] | status [PORT]
source "$(dirname "$0")/_common.sh"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
PY=${PY:-$REPO/.venv/bin/python}
PIDFILE=$(pidfile_for exastor "${2:-none}")
AK=${EXASTOR_BENCH_ACCESS_KEY:-EXBENCHADMIN}
SK=${EXASTOR_BENCH_SECRET_KEY:-exastor-bench-secret-0123456789}
ALT_AK=${EXASTOR_BENCH_ALT_ACCESS_KEY:-EXBENCHALT}
ALT_SK=${EXASTOR_BENCH_ALT_SECRET_KEY:-exastor-bench-alt-secret-0123456789}

case ${1:-} in
    install) "$PY" -m exastor.cli serve --help >/dev/null ;;
    start)
        port=${2:?port}; dir=${3:?data dir}
        mkdir -p "$dir"
        layout=()
        if [[ -n ${EXASTOR_BENCH_EC:-} ]]; then
            ec=$EXASTOR_BENCH_EC
            for ((i = 0; i < ${ec%+*} + ${ec#*+}; i++)); do layout+=(--drive "$dir/d$i"); done
            layout+=(--ec "$ec")
        fi
        workers=$(nproc); ((workers > 8)) && workers=8
        # --blob-port 0: the S3 benchmarks do not need the Blob listener (and its port may clash)
        nohup "$PY" -m exastor.cli serve --data "$dir" --s3-port "$port" --access-key "$AK" --secret-key "$SK" \
            "${layout[@]}" --workers "$workers" --blob-port 0 --log-level warning >"$LOGS/exastor.$port.log" 2>&1 &
        echo $! >"$PIDFILE"
        # a listening port is not a ready server: wait for its readiness probe (docs/operations.md)
        "$PY" -c "import sys; from exastor.gateway.health import wait_ready; wait_ready([sys.argv[1]], timeout=60)" \
            "http://127.0.0.1:$port"
        "$PY" -m exastor.cli user --data "$dir" add alt --access-key "$ALT_AK" --secret-key "$ALT_SK" >/dev/null \
            || echo "could not add user alt (already there?)" >&2
        echo "access_key=$AK secret_key=$SK alt_access_key=$ALT_AK alt_secret_key=$ALT_SK pid=$(cat "$PIDFILE") workers=$workers"
        ;;
    stop) stop_named exastor "${2:-}" ;;
    status) status_named exastor "${2:-}" ;;
    *) echo "usage: $0 start PORT DATADIR | stop [PORT] | status [PORT]" >&2; exit 2 ;;
esac
