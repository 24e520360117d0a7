#!/usr/bin/env bash
# Benchmark every S3 peer and exastor in one run, then render docs/benchmarks.md.
#
#   bench/run_s3_peers.sh [--quick] [--only "s3rver moto radosgw exastor exastor-4+2"]
#
# exastor runs on one drive directory (no redundancy, the default); exastor-K+M (e.g.
# exastor-4+2) runs with K+M drive directories under its data directory and that erasure
# geometry (bench/peers/exastor.sh with EXASTOR_BENCH_EC=K+M). The geometry goes into the JSON.
#
# Each server is started alone on loopback, measured by bench/s3bench.py (which
# also measures the raw disk under its data directory in the same run), and
# stopped before the next starts, so they never compete for the 2 cores.
# Servers that keep objects in RAM (moto; radosgw on a memstore OSD) stream a
# 2 GiB object instead of 10 GiB for the RSS step; the JSON records the size.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
QUICK=()
ALL="s3rver moto radosgw exastor exastor-4+2"
ONLY=$ALL
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=(--quick); shift ;;
        --only) ONLY=$2; shift 2 ;;
        *) echo "usage: $0 [--quick] [--only \"names\"]" >&2; exit 2 ;;
    esac
done
PY=${PY:-$REPO/.venv/bin/python}
RESULTS=$REPO/bench/results
WORK=$RESULTS/tmp            # gitignored; same disk as the repository
mkdir -p "$WORK"
PORT=19100
ran=()

bench_one() {  # bench_one LABEL PORT ACCESS SECRET PID DATADIR [extra s3bench args]
    local label=$1 port=$2 ak=$3 sk=$4 pid=$5 dir=$6; shift 6
    "$PY" bench/s3bench.py --endpoint "http://127.0.0.1:$port" --access-key "$ak" --secret-key "$sk" \
        --label "$label" --server-pid "$pid" --data-dir "$dir" --out "$RESULTS/$label.json" \
        "${QUICK[@]}" "$@"
    # a step that failed is recorded in the JSON's "errors"; the other numbers still count
    [[ -f $RESULTS/$label.json ]] && ran+=("$RESULTS/$label.json")
}

kv() { tr " " "\n" <<<"$2" | sed -n "s/^$1=//p"; }  # kv KEY "k=v k2=v2"

for name in $ONLY; do
    PORT=$((PORT + 1))
    dir=$WORK/$name-data
    rm -rf "$dir"; mkdir -p "$dir"
    echo "=== $name on 127.0.0.1:$PORT"
    case $name in
        s3rver | moto | radosgw | exastor | exastor-*)
            peer=${name%%-*}
            unset EXASTOR_BENCH_EC
            [[ $name == exastor-* ]] && export EXASTOR_BENCH_EC=${name#exastor-}
            if ! info=$(bench/peers/$peer.sh start "$PORT" "$dir" | tail -n 1); then
                echo "!!! $name did not start; see bench/.peers/logs" >&2
                bench/peers/$peer.sh stop "$PORT"; rm -rf "$dir"; continue
            fi
            extra=()
            if [[ $peer == exastor ]]; then
                ec=${EXASTOR_BENCH_EC:-}
                layout="1 drive directory, no redundancy"
                [[ -n $ec ]] && layout="$ec erasure over $((${ec%+*} + ${ec#*+})) drive directories on one disk"
                extra=(--geometry "$layout; $(kv workers "$info") gateway workers; SQLite metadata")
            fi
            # RAM-backed peers: a 10 GiB object would measure their data, not their overhead
            [[ $name == moto || $name == radosgw ]] && extra+=(--stream-gib 2)
            # radosgw's OSD and monitor do part of each request's work: count their CPU too
            if [[ $name == radosgw ]]; then
                for p in $(cat bench/.peers/run/radosgw.all.pids); do extra+=(--cpu-pid "$p"); done
            fi
            ak=$(kv access_key "$info"); sk=$(kv secret_key "$info")
            [[ $name == moto ]] && { ak=benchkey; sk=benchsecret; }
            bench_one "$name" "$PORT" "$ak" "$sk" "$(kv pid "$info")" "$dir" "${extra[@]}"
            bench/peers/$peer.sh stop "$PORT"
            ;;
        *) echo "unknown server $name" >&2 ;;
    esac
    rm -rf "$dir"
done

# Render every server's latest result, not only this run's, so a partial rerun (--only) keeps the
# other columns; each column names its run's date and machine.
files=()
for name in $ALL $ONLY; do
    f=$RESULTS/$name.json
    [[ -f $f && " ${files[*]} " != *" $f "* ]] && files+=("$f")
done
if [[ ${#ran[@]} -gt 0 ]]; then
    "$PY" bench/render_benchmarks.py "${files[@]}"
fi
