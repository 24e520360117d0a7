# Shared by the peer scripts: where things live and how to wait for a port.
# Each peer script: `NAME.sh install|start PORT DATADIR|stop|status`.
# `start` runs the peer in the background on 127.0.0.1 only, writes its pid to
# $PEERS/run/NAME.pid and returns once the port answers.

set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$BENCH_DIR/.peers"          # gitignored: everything we install lives here
RUN="$PEERS/run"
LOGS="$PEERS/logs"
mkdir -p "$PEERS" "$RUN" "$LOGS"

wait_port() {  # wait_port PORT SECONDS [PID]: until something accepts on 127.0.0.1:PORT
    local port=$1 secs=$2 pid=${3:-} i
    for ((i = 0; i < secs * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            echo "process $pid died before port $port opened" >&2; return 1
        fi
        sleep 0.1
    done
    echo "port $port did not open within ${secs}s" >&2
    return 1
}

stop_pidfile() {  # stop_pidfile FILE: TERM the recorded pid (its group if FILE.group exists), KILL after 10 s
    local file=$1 pid i
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    if [[ -f $file.group ]]; then kill -- "-$pid" 2>/dev/null || true; rm -f "$file.group"; fi
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

status_pidfile() {
    local file=$1
    if [[ -f $file ]] && kill -0 "$(cat "$file")" 2>/dev/null; then
        echo "running (pid $(cat "$file"))"
    else
        echo "stopped"; return 1
    fi
}

# Pid files are per port (NAME.PORT.pid), so two people benchmarking from one
# checkout on different ports never stop each other's servers.
pidfile_for() { echo "$RUN/$1.$2.pid"; }   # pidfile_for NAME PORT

stop_named() {  # stop_named NAME [PORT]: that instance, or every NAME instance started from this checkout
    local f
    if [[ -n ${2:-} ]]; then stop_pidfile "$RUN/$1.$2.pid"; return; fi
    for f in "$RUN/$1".*.pid; do [[ -e $f ]] && stop_pidfile "$f"; done
    return 0
}

status_named() {  # status_named NAME [PORT]
    local f found=1
    if [[ -n ${2:-} ]]; then status_pidfile "$RUN/$1.$2.pid"; return; fi
    for f in "$RUN/$1".*.pid; do
        [[ -e $f ]] || continue
        echo -n "$(basename "$f" .pid): "; status_pidfile "$f" && found=0
    done
    return $found
}
