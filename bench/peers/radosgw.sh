#!/usr/bin/env bash
# Ceph radosgw 16.2 (Debian bookworm): the production-grade S3 peer.
# One monitor, one memstore OSD (RAM-backed, sized by RGW_MEMSTORE_BYTES) and a
# radosgw with the beast frontend, all on 127.0.0.1, cephx off.
# Best effort: the apt install is large (~2 min of set-up afterwards).
# usage: radosgw.sh install | start PORT DATADIR | stop | status | users
# Users created at start (uid:access:secret): $RGW_MAIN and $RGW_ALT below.
source "$(dirname "$0")/_common.sh"
PIDFILE="$RUN/radosgw.pid"          # radosgw itself (sampled for RSS)
PIDS="$RUN/radosgw.all.pids"        # mon, osd, rgw: all stopped together
CONFFILE="$RUN/radosgw.conffile"     # where the running cluster's ceph.conf is
RGW_MAIN=${RGW_MAIN:-"tester:RGWMAINACCESSKEY0001:rgwmainsecretkey0000000000000000000001"}
RGW_ALT=${RGW_ALT:-"alttester:RGWALTACCESSKEY00001:rgwaltsecretkey00000000000000000000001"}
MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-$((8 << 30))}

install() {
    command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd ceph-mgr
}

start() {
    local port=$1 dir=$2 fsid conf i
    install >&2
    rm -rf "$dir"; mkdir -p "$dir"/{mon,osd0,run,log}
    dir=$(cd "$dir" && pwd)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    conf="$dir/ceph.conf"
    cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:3300
mon initial members = a
public addr = 127.0.0.1
run dir = $dir/run
log file = $dir/log/\$name.log
admin socket = $dir/run/\$name.asok
# cephx off, but then clients must use crc mode or radosgw loops on
# "get_initial_auth_request returned -13"
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms cluster mode = crc
ms mon service mode = crc
ms service mode = crc
# one OSD on one host: size 1 pools, replicate across OSDs not hosts
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
mon warn on pool no redundancy = false
[mon.a]
mon data = $dir/mon
[osd.0]
osd data = $dir/osd0
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw data = $dir/rgw
rgw dns name = 127.0.0.1
rgw thread pool size = 64
# lifecycle "days" become 10-second units, matching lc_debug_interval in the s3-tests config
rgw lc debug interval = 10
CONF
    echo "$conf" >"$CONFFILE"
    : >"$PIDS"
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:3300]" "$dir/monmap" >/dev/null
    ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
    ceph-mon -c "$conf" -i a
    sleep 1; pgrep -f "ceph-mon -c $conf" >>"$PIDS"
    for ((i = 0; i < 60; i++)); do timeout 10 ceph -c "$conf" mon stat >/dev/null 2>&1 && break; sleep 1; done
    local uuid; uuid=$(cat /proc/sys/kernel/random/uuid)
    ceph -c "$conf" osd new "$uuid" >/dev/null
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" 2>>"$dir/log/osd-mkfs.log"
    ceph-osd -c "$conf" -i 0
    sleep 1; pgrep -f "ceph-osd -c $conf" >>"$PIDS"
    for ((i = 0; i < 120; i++)); do
        ceph -c "$conf" osd stat 2>/dev/null | grep -q "1 up" && break; sleep 1
    done
    # radosgw daemonises; -n picks [client.rgw.a]
    radosgw -c "$conf" -n client.rgw.a
    for ((i = 0; i < 300; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi; sleep 1
    done
    pgrep -f "radosgw -c $conf" >"$PIDFILE"
    cat "$PIDFILE" >>"$PIDS"
    wait_port "$port" 5
    for u in "$RGW_MAIN" "$RGW_ALT"; do
        IFS=: read -r uid ak sk <<<"$u"
        radosgw-admin -c "$conf" user create --uid="$uid" --display-name="$uid" --email="$uid@example.com" \
            --access-key="$ak" --secret-key="$sk" >/dev/null
    done
    IFS=: read -r _ ak sk <<<"$RGW_MAIN"
    echo "access_key=$ak secret_key=$sk pid=$(cat "$PIDFILE")"
}

stop() {
    local pid
    if [[ -f $PIDS ]]; then
        # radosgw first, then the OSD, then the monitor
        for pid in $(tac "$PIDS"); do kill "$pid" 2>/dev/null || true; done
        sleep 2
        for pid in $(cat "$PIDS"); do kill -9 "$pid" 2>/dev/null || true; done
        rm -f "$PIDS" "$PIDFILE"
    fi
}

case ${1:-} in
    install) install ;;
    start) start "${2:?port}" "${3:?data dir}" ;;
    stop) stop ;;
    status) status_pidfile "$PIDFILE" ;;
    users) echo "$RGW_MAIN"; echo "$RGW_ALT" ;;
    *) echo "usage: $0 install | start PORT DATADIR | stop | status | users" >&2; exit 2 ;;
esac
