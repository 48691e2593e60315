#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A throw-away single-node Ceph cluster on loopback for the rbd tests:
# one monitor and one memstore OSD, run in the foreground (-f) as children
# of this script's caller, with every file under one temporary directory.
#
#   ceph-cluster.sh start [DIR]   bring it up; prints CEPH_CONF=DIR/ceph.conf
#                                 and CEPH_POOL=rbd (eval-able lines)
#   ceph-cluster.sh stop DIR|CONF tear it down: kill the daemons by their pid
#                                 files, remove DIR
#
# Environment: CEPH_AUTH=cephx (default) or none; CEPH_OSD_BYTES (memstore
# size, default 3G).  Needs ceph-mon, ceph-osd and ceph-common (Debian).
# Exit 77 when those programs are missing, so a test can skip.
set -euo pipefail

die() { echo "ceph-cluster: $*" >&2; exit 1; }

need_programs() {
    local p
    for p in ceph-mon ceph-osd ceph ceph-authtool monmaptool rados; do
        command -v "$p" >/dev/null || { echo "ceph-cluster: $p not installed" >&2; exit 77; }
    done
}

# A TCP port nobody listens on (ports in /proc/net/tcp are hexadecimal).
free_port() {
    local port hex
    for _ in $(seq 50); do
        port=$((40000 + RANDOM % 20000))
        hex=$(printf ':%04X ' "$port")
        if ! grep -qi "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free TCP port found"
}

write_conf() {
    local dir=$1 port=$2 fsid=$3 auth=$4
    cat > "$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
mon initial members = a
auth cluster required = $auth
auth service required = $auth
auth client required = $auth
keyring = $dir/keyring
run dir = $dir/run
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = true
ms bind msgr1 = false
# One copy of everything on the only OSD, and no warnings about it.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
# 2 cores shared with the rest of the build: keep the daemons small.
osd op num shards = 1
osd op num threads per shard = 2
[client]
# Clients (rbd, diskimg...) run many at a time: no shared admin socket.
admin socket =
[mon]
mon data = $dir/mon/\$name
admin socket = $dir/run/\$name.asok
[osd]
osd objectstore = memstore
memstore device bytes = ${CEPH_OSD_BYTES:-3G}
osd data = $dir/osd/\$name
admin socket = $dir/run/\$name.asok
keyring = $dir/osd/\$name/keyring
public addr = 127.0.0.1
cluster addr = 127.0.0.1
osd check max object name len on startup = false
EOF
}

make_keys() {
    local dir=$1
    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool "$dir/keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
}

# Runs a daemon in the foreground in the background of this shell, its
# output in the log directory, so `stop` finds it by its pid file.
start_daemon() {
    local dir=$1 name=$2; shift 2
    "$@" -f -c "$dir/ceph.conf" >"$dir/log/$name.out" 2>&1 &
    echo $! > "$dir/run/$name.daemon-pid"
}

start_mon() {
    local dir=$1 port=$2 fsid=$3
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
    ceph-mon --mkfs -i a -c "$dir/ceph.conf" --monmap "$dir/monmap" --keyring "$dir/keyring" \
        >"$dir/log/mon-mkfs.out" 2>&1 || die "mon mkfs failed: $(tail -3 "$dir/log/mon-mkfs.out")"
    start_daemon "$dir" mon.a ceph-mon -i a
}

start_osd() {
    local dir=$1 uuid id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(ceph -c "$dir/ceph.conf" --connect-timeout 30 osd new "$uuid") ||
        die "ceph osd new failed"
    mkdir -p "$dir/osd/osd.$id"
    ceph-osd -i "$id" --mkfs --mkkey --no-mon-config --osd-uuid "$uuid" -c "$dir/ceph.conf" \
        >"$dir/log/osd-mkfs.out" 2>&1 || die "osd mkfs failed: $(tail -3 "$dir/log/osd-mkfs.out")"
    if [ "${CEPH_AUTH:-cephx}" = cephx ]; then
        ceph -c "$dir/ceph.conf" auth add "osd.$id" osd 'allow *' mon 'allow profile osd' \
            -i "$dir/osd/osd.$id/keyring" >"$dir/log/osd-auth.out" 2>&1 ||
            die "ceph auth add osd.$id failed: $(tail -2 "$dir/log/osd-auth.out")"
    fi
    start_daemon "$dir" "osd.$id" ceph-osd -i "$id"
}

# The pool is usable once a write to it returns (the client waits for the
# placement groups to peer); bounded so a broken cluster fails the start.
make_pool() {
    local dir=$1
    ceph -c "$dir/ceph.conf" osd pool create rbd 8 8 >/dev/null 2>&1 || die "pool create failed"
    ceph -c "$dir/ceph.conf" osd pool application enable rbd rbd >/dev/null 2>&1 ||
        die "pool application enable failed"
    echo ready > "$dir/probe"
    timeout 120 rados -c "$dir/ceph.conf" -p rbd put ceph-cluster-probe "$dir/probe" ||
        die "the pool did not become writable in 120 s (see $dir/log)"
    rados -c "$dir/ceph.conf" -p rbd rm ceph-cluster-probe
}

cmd_start() {
    need_programs
    local dir=${1:-} port fsid auth=${CEPH_AUTH:-cephx}
    [ "$auth" = cephx ] || [ "$auth" = none ] || die "CEPH_AUTH must be cephx or none"
    if [ -z "$dir" ]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/ceph-cluster.XXXXXX")
    fi
    mkdir -p "$dir/run" "$dir/log" "$dir/mon" "$dir/osd"
    dir=$(cd "$dir" && pwd)
    port=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    write_conf "$dir" "$port" "$fsid" "$auth"
    make_keys "$dir"
    # Any failure from here on leaves no daemon behind (die exits).
    trap 'cmd_stop "$dir" >/dev/null 2>&1 || true' EXIT
    start_mon "$dir" "$port" "$fsid"
    start_osd "$dir"
    make_pool "$dir"
    trap - EXIT
    echo "CEPH_CONF=$dir/ceph.conf"
    echo "CEPH_POOL=rbd"
}

cmd_stop() {
    local dir=${1:-${CEPH_CONF:-}}
    [ -n "$dir" ] || die "usage: $0 stop DIR|CONF"
    [ -f "$dir" ] && dir=$(dirname "$dir")
    [ -f "$dir/ceph.conf" ] || die "$dir holds no ceph.conf"
    # The OSD is killed outright: on a clean stop memstore would first
    # write its whole store to disk, only for it to be removed.
    local f pid
    for f in "$dir"/run/*.daemon-pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        case "$f" in
        */osd.*) kill -9 "$pid" 2>/dev/null || true ;;
        *) kill "$pid" 2>/dev/null || true ;;
        esac
    done
    # Give the monitor a few seconds to go, then insist.
    local alive
    for _ in $(seq 30); do
        alive=0
        for f in "$dir"/run/*.daemon-pid; do
            [ -e "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for f in "$dir"/run/*.daemon-pid; do
        [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
    rm -rf "$dir"
}

case "${1:-}" in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) echo "usage: $0 start [DIR] | stop DIR|CONF" >&2; exit 2 ;;
esac
