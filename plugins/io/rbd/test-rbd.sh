#!/bin/bash
# SPDX-License-Identifier: MIT
# test-rbd.sh DISKIMG CEPH_CLUSTER_SH [TEST_RBD_IO RBD_MODULE] — the rbd io
# plugin against a real
# Ceph cluster: the one $CEPH_CONF names (pool $CEPH_POOL, default rbd), or
# else one that ceph-cluster.sh brings up on loopback for this run and
# tears down at the end; TEST_RBD_IO (the plugin's ops, test-rbd-io.c) runs
# against the same cluster.  qemu-img (with Debian's qemu-block-extra, its own
# rbd driver) and the rbd CLI are the independent witnesses.
# TAP-style lines; exit 0 when all pass, 1 on a failure, 77 (skip) when no
# cluster can be had.
set -u
D=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
CLUSTER_SH=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
abs() { [ -n "$1" ] && echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
IO_TEST=$(abs "${3:-}")
RBD_MODULE=$(abs "${4:-}")
W=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-rbd.XXXXXX") || exit 2
cd "$W" || exit 2
. "$(dirname "$CLUSTER_SH")/../../../tests/cli/tap-lib.sh"
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# expect_long RC DESC CMD...: expect, with 5 minutes instead of 20 s
expect_long() {
    local want=$1 desc=$2; shift 2
    timeout -k 2 300 "$@" > out 2> err; RC=$?
    if [ "$RC" = "$want" ]; then ok "$desc"; else nok "$desc (exit $RC, want $want: $(head -c 300 err))"; fi
}

OWN_CLUSTER=""
cleanup() {
    # Images this run made on a cluster it does not own.
    if [ -z "$OWN_CLUSTER" ] && [ -n "${P:-}" ]; then
        for img in $(rbd -p "$POOL" ls 2>/dev/null | grep "^$P-"); do
            rbd snap purge "$POOL/$img" >/dev/null 2>&1
            rbd rm "$POOL/$img" >/dev/null 2>&1
        done
    fi
    [ -n "$OWN_CLUSTER" ] && "$CLUSTER_SH" stop "$OWN_CLUSTER" >/dev/null 2>&1
    cd / && rm -rf "$W"
}
trap cleanup EXIT
trap "exit 1" INT TERM   # meson's timeout: the EXIT trap still stops the cluster

if [ -z "${CEPH_CONF:-}" ]; then
    start=$(date +%s.%N)
    "$CLUSTER_SH" start "$W/cluster" > cluster.env 2> cluster.err
    rc=$?
    if [ $rc = 77 ]; then echo "SKIP: $(cat cluster.err)"; exit 77; fi
    if [ $rc != 0 ]; then echo "Bail out! no cluster: $(tail -3 cluster.err)"; exit 1; fi
    OWN_CLUSTER="$W/cluster"
    eval "$(cat cluster.env)"
    export CEPH_CONF
    echo "# cluster up in $(elapsed "$start") s"
fi
[ -f "$CEPH_CONF" ] || { echo "Bail out! CEPH_CONF=$CEPH_CONF is no file"; exit 1; }
POOL=${CEPH_POOL:-rbd}
P=diskimg-test-$$            # every image of this run starts so
QEMU_RBD=""
if qemu-img info "rbd:$POOL/$P-none" 2>&1 | grep -q "error reading header"; then
    QEMU_RBD=1               # qemu-img reaches the cluster with its own driver
fi
R() { echo "rbd:$POOL/$1"; }

# A sparse qcow2 source: data at the start, a small run inside an object,
# a run across objects, and the last MiB; holes elsewhere.
qemu-img create -q -f qcow2 src.qcow2 256M
qemu-io -f qcow2 -c "write -P 0x11 0 1M" -c "write -P 0x22 10M 64k" \
    -c "write -P 0x33 100M 6M" -c "write -P 0x44 255M 1M" src.qcow2 >/dev/null
qemu-img convert -O raw src.qcow2 src.raw

# ---------------------------------------------------------- raw round trip
expect 0 "convert a sparse qcow2 onto rbd as raw" "$D" convert -O raw src.qcow2 "$(R "$P-img")"
expect 0 "convert it back to a local raw" "$D" convert -O raw "$(R "$P-img")" back.raw
expect 0 "the round trip is identical (qemu-img compare)" qemu-img compare -q src.qcow2 back.raw
if [ -n "$QEMU_RBD" ]; then
    expect 0 "qemu-img's own rbd driver finds the image identical" \
        qemu-img compare -q -f qcow2 -F raw src.qcow2 "$(R "$P-img")"
    run qemu-img info --output=json "$(R "$P-img")"
    grep_out '"virtual-size": 268435456' "qemu-img info sees 256 MiB"
else
    skip "qemu-img's own rbd driver" "qemu-img has no rbd driver (qemu-block-extra)"
    skip "qemu-img info on rbd" "qemu-img has no rbd driver"
fi

# Holes skipped: what the cluster holds lies within the objects the
# source's data touches (4 MiB objects; a store without sparse objects,
# memstore, reports an object's data from its start).
qemu-img map --output=json src.qcow2 > src.map
rbd diff --format json "$POOL/$P-img" > rbd.diff 2> rbd.err
"$D" map --output=json "$(R "$P-img")" > dimg.map 2> map.err
within_objects() { # DESC EXTENTS_JSON KIND(rbd|map)
    if python3 - src.map "$2" "$3" <<'EOF'
import json, sys
obj = 4 << 20
src = json.load(open(sys.argv[1]))
touched = set()
data_bytes = 0
for e in src:
    if e["data"]:
        data_bytes += e["length"]
        touched.update(range(e["start"] // obj, (e["start"] + e["length"] - 1) // obj + 1))
ext = json.load(open(sys.argv[2]))
if sys.argv[3] == "rbd":
    runs = [(e["offset"], e["length"]) for e in ext if e["exists"] == "true" or e["exists"] is True]
else:
    runs = [(e["start"], e["length"]) for e in ext if e["data"]]
total = sum(l for _, l in runs)
inside = all(o // obj in touched and (o + l - 1) // obj in touched for o, l in runs)
print("# data %d bytes in %d runs; source data %d bytes in %d objects"
      % (total, len(runs), data_bytes, len(touched)))
sys.exit(0 if inside and data_bytes <= total <= len(touched) * obj else 1)
EOF
    then ok "$1"; else nok "$1"; fi
}
within_objects "holes were skipped on the cluster (rbd diff)" rbd.diff rbd
within_objects "block status (map) shows only those extents as data" dimg.map map
run "$D" compare src.qcow2 "$(R "$P-img")"
grep_out "Images are identical" "diskimg compare local qcow2 against rbd"

expect 0 "convert rbd to rbd with -m 4" "$D" convert -m 4 -f raw -O raw "$(R "$P-img")" "$(R "$P-copy")"
expect 0 "...identical (compare of two rbd images)" "$D" compare -f raw -F raw "$(R "$P-img")" "$(R "$P-copy")"

# ------------------------------------------------------------ qcow2 on rbd
expect 0 "convert -O qcow2 onto rbd" "$D" convert -O qcow2 src.qcow2 "$(R "$P-q")"
run "$D" info "$(R "$P-q")"
grep_out "^file format: qcow2" "info probes qcow2 on rbd"
run "$D" check "$(R "$P-q")"
grep_out "No errors were found on the image" "check of the qcow2 on rbd"
run "$D" map --output=json "$(R "$P-q")"
if python3 -c 'import json,sys; m=json.load(open("out")); sys.exit(0 if sum(e["length"] for e in m if e["data"]) == 8454144 else 1)'
then ok "map of the qcow2 on rbd shows the 8.06 MiB of data"; else nok "map of the qcow2 on rbd ($(head -c 300 out))"; fi
expect 0 "qcow2 on rbd converts back" "$D" convert -O raw "$(R "$P-q")" back-q.raw
expect 0 "...identical" cmp src.raw back-q.raw
if [ -n "$QEMU_RBD" ]; then
    expect 0 "qemu-img check of diskimg's qcow2 on rbd" qemu-img check -q "$(R "$P-q")"
    expect 0 "qemu-img writes a qcow2 onto rbd" qemu-img convert -O qcow2 src.qcow2 "$(R "$P-qq")"
    expect 0 "diskimg reads qemu-img's qcow2 on rbd identical" \
        "$D" compare -f qcow2 -F raw "$(R "$P-qq")" src.raw
else
    skip "qemu-img check on rbd" "no rbd driver"; skip "qemu-img qcow2 on rbd" "no rbd driver"
    skip "diskimg reads qemu-img's qcow2" "no rbd driver"
fi

# ------------------------------------------------------------------ resize
expect 0 "resize +64M" "$D" resize -f raw "$(R "$P-img")" +64M
run rbd info --format json "$POOL/$P-img"
grep_out '"size": ?335544320' "rbd info sees 320 MiB"
expect 1 "shrinking without --shrink is refused" "$D" resize -f raw "$(R "$P-img")" 256M
expect 0 "resize --shrink back to 256M" "$D" resize -f raw --shrink "$(R "$P-img")" 256M
run "$D" info --output=json "$(R "$P-img")"
grep_out '"virtual-size": 268435456' "info sees 256 MiB again"
expect 1 "resize with preallocation is refused" \
    "$D" resize -f raw --preallocation=full "$(R "$P-img")" 300M
grep_out "Unsupported preallocation mode 'full'" "...with qemu's message" err

# -------------------------------------------------------------- snapshots
expect 0 "rbd snap create" rbd snap create "$POOL/$P-img@s1"
qemu-img create -q -f raw other.raw 256M
qemu-io -f raw -c "write -P 0x55 4M 8M" other.raw >/dev/null
expect 0 "overwrite the image after the snapshot (convert -n)" \
    "$D" convert -n -f raw -O raw other.raw "$(R "$P-img")"
expect 0 "the image now holds the new data" "$D" compare -f raw -F raw other.raw "$(R "$P-img")"
expect 0 "read the snapshot rbd:pool/img@s1" "$D" convert -O raw "$(R "$P-img@s1")" snap.raw
expect 0 "...it holds the data of before" cmp src.raw snap.raw
expect 0 "the snapshot by --image-opts snapshot=" "$D" compare --image-opts \
    "driver=raw,file.filename=src.raw" \
    "driver=raw,file.driver=rbd,file.pool=$POOL,file.image=$P-img,file.snapshot=s1"
expect 1 "writing to a snapshot is refused" \
    "$D" convert -n -f raw -O raw other.raw "$(R "$P-img@s1")"
grep_out "rbd snapshots are read-only" "...as qemu words it" err

# ---------------------------------------------------------------- options
run "$D" info --output=json --image-opts "driver=rbd,pool=$POOL,image=$P-img"
grep_out '"virtual-size": 268435456' "--image-opts driver=rbd,pool=,image="
expect 0 "conf= and id= in the file name" \
    "$D" info "rbd:$POOL/$P-img:conf=$CEPH_CONF:id=admin"
cp "$CEPH_CONF" "$W/a:b.conf"
expect 0 "an escaped ':' in a conf value (conf=a\\:b.conf) and Ceph settings" \
    "$D" info "rbd:$POOL/$P-img:conf=$W/a\\:b.conf:rbd_cache_policy=writeback:client_mount_timeout=30"
if grep -q "auth client required = cephx" "$CEPH_CONF" && [ -n "$OWN_CLUSTER" ]; then
    # A config without the keyring: only key-secret can authenticate.
    sed 's|^keyring = .*|keyring = /nonexistent|' "$CEPH_CONF" > nokey.conf
    key=$(ceph auth get-key client.admin)
    run "$D" info --image-opts "driver=rbd,pool=$POOL,image=$P-img,conf=$W/nokey.conf"
    one_line_err "no key, no entry" "error connecting"
    expect 0 "key-secret from --object secret (base64)" "$D" info \
        --object "secret,id=k0,data=$key,format=base64" \
        --image-opts "driver=rbd,pool=$POOL,image=$P-img,conf=$W/nokey.conf,key-secret=k0"
    expect 0 "legacy password-secret" "$D" info \
        --object "secret,id=k0,data=$key,format=base64" \
        --image-opts "driver=rbd,pool=$POOL,image=$P-img,conf=$W/nokey.conf,password-secret=k0"
else
    skip "key-secret" "the cluster does not use cephx or is not ours"
    skip "key-secret from --object secret" "see above"; skip "password-secret" "see above"
fi

# ----------------------------------------------------------------- errors
# One-line refusals, each as qemu-img words it (and, where qemu-img has
# its rbd driver, exactly what it prints).
refused() { # DESC MESSAGE ARGS...
    local desc=$1 msg=$2; shift 2
    run "$D" "$@"
    if [ "$RC" != 1 ] || [ "$(wc -l < err)" != 1 ] || ! grep -qF -- "$msg" err; then
        nok "$desc (exit $RC: $(head -c 300 err))"; return
    fi
    [ -z "$QEMU_RBD" ] && { ok "$desc"; return; }
    qemu-img "$@" > q.out 2> q.err
    local dm qm
    dm=$(sed 's/^diskimg: //' err)
    qm=$(grep -v '^[0-9T:.+-]* [0-9a-f]* -1 \|^$' q.err | sed 's/^qemu-img: //' | tail -1)
    # --image-opts: qemu-img names the option string, diskimg the image
    # (json:{...}); the messages after the names must agree.
    if [ "${3:-}" = --image-opts ] || [ "${2:-}" = --image-opts ]; then
        dm=$(echo "$dm" | sed "s/^Could not open .*': //")
        qm=$(echo "$qm" | sed "s/^Could not open .*': //")
    fi
    if [ "$dm" = "$qm" ]; then ok "$desc"; else nok "$desc: diskimg '$dm', qemu-img '$qm'"; fi
}
refused "no such image" "error reading header from $P-nope: No such file or directory" \
    info "$(R "$P-nope")"
refused "no such pool" "error opening pool nopool-$$: No such file or directory" \
    info "rbd:nopool-$$/x"
refused "no pool in the name" "Pool name is required" info "rbd:$P-img"
refused "bad conf option" "invalid conf option no_such_option: No such file or directory" \
    info "$(R "$P-img"):no_such_option=1"
refused "option without value" "conf option foo has no value" info "$(R "$P-img"):foo"
refused "missing conf file" "error reading conf file /nonexistent.conf" \
    info "$(R "$P-img"):conf=/nonexistent.conf"
refused "no such namespace" "namespace 'nons' does not exist" info "rbd:$POOL/nons/$P-img"
refused "no such snapshot" "error reading header from $P-img" info "$(R "$P-img@nosnap")"
refused "create over an existing image" "error rbd create: File exists" \
    create -f raw "$(R "$P-img")" 1M
refused "key-secret naming no secret" "No secret with id 'nosuch'" \
    info --image-opts "driver=rbd,pool=$POOL,image=$P-img,key-secret=nosuch"
refused "key-secret and password-secret together" \
    "Legacy 'password-secret' clashes with 'key-secret'" \
    info --image-opts "driver=rbd,pool=$POOL,image=$P-img,key-secret=a,password-secret=b"
run "$D" info --image-opts "driver=rbd,pool=$POOL"
one_line_err "--image-opts without image" "Parameter 'image' is missing"
run "$D" info --image-opts "driver=rbd,image=$P-img"
one_line_err "--image-opts without pool" "Parameter 'pool' is missing"
run "$D" info --image-opts "driver=rbd,pool=$POOL,image=$P-img,no-such=1"
if [ "$RC" = 1 ] && [ "$(wc -l < err)" = 1 ]; then ok "unknown --image-opts key refused ($(cat err))"
else nok "unknown --image-opts key (exit $RC: $(head -c 300 err))"; fi

# ---------------------------------------------------------- the ops in C
if [ -n "$IO_TEST" ]; then
    if RBD_TEST_PREFIX="$P" CEPH_POOL="$POOL" timeout 300 "$IO_TEST" "$RBD_MODULE" rbd \
            > io.out 2>&1; then
        ok "test-rbd-io: $(grep -c '^ok' io.out) GTest cases on the plugin's ops"
    else
        nok "test-rbd-io: $(grep -v '^ok\|^#' io.out | head -c 600)"
    fi
else
    skip "test-rbd-io" "not given"
fi

# ------------------------------------------------------- create and zeroes
expect 0 "create -f raw on rbd" "$D" create -f raw "$(R "$P-new")" 64M
run rbd info --format json "$POOL/$P-new"
grep_out '"size": ?67108864' "rbd sees the 64 MiB image"
expect 0 "create -f qcow2 on rbd" "$D" create -f qcow2 "$(R "$P-newq")" 1G
run "$D" info --output=json "$(R "$P-newq")"
grep_out '"virtual-size": 1073741824' "the new qcow2 on rbd has 1 GiB"
# -o on an rbd: target: the rbd plugin's create-options, as qemu-img's.
expect 0 "create -o cluster_size=1M (RBD object size)" \
    "$D" create -f raw -o cluster_size=1M "$(R "$P-obj")" 16M
run rbd info --format json "$POOL/$P-obj"
grep_out '"order": ?20' "rbd info sees 1 MiB objects"
run "$D" create -f raw "$(R "$P-help")" -o help
grep_out "cluster_size=<size> +- RBD object size" "-o help with an rbd target lists rbd's options"
if grep -q nocow out; then nok "...and not posix's"; else ok "...and not posix's"; fi
refused "posix's -o nocow is no rbd option" "Invalid parameter 'nocow'" \
    create -f raw -o nocow=on "$(R "$P-nocow")" 1M
refused "-o cluster_size must be a power of 2" "obj size needs to be power of 2" \
    create -f raw -o cluster_size=3000 "$(R "$P-odd")" 1M
# convert -n over data with zeroes: write_zeroes must clear what was there.
expect 0 "fill an image with data" "$D" convert -n -f raw -O raw other.raw "$(R "$P-img")"
expect 0 "convert -n of a sparse image over it zeroes the rest" \
    "$D" convert -n -f qcow2 -O raw src.qcow2 "$(R "$P-img")"
expect 0 "...identical afterwards" "$D" compare -F raw src.qcow2 "$(R "$P-img")"

# --------------------------------------------------------- parallel convert
qemu-img create -q -f raw big.raw 512M
qemu-io -f raw -c "write -P 0x66 0 200M" -c "write -P 0x77 300M 100M" big.raw >/dev/null
t0=$(date +%s.%N)
expect_long 0 "convert -m 8 -W of 300 MiB of data onto rbd" \
    "$D" convert -m 8 -W -f raw -O raw big.raw "$(R "$P-big")"
up=$(elapsed "$t0")
t0=$(date +%s.%N)
expect_long 0 "...and back with -m 8" "$D" convert -m 8 -O raw "$(R "$P-big")" big-back.raw
down=$(elapsed "$t0")
expect 0 "...identical" cmp big.raw big-back.raw
echo "# 300 MiB of data in 512 MiB: onto rbd $up s, back $down s"

echo "1..$n"
[ "$failed" = 0 ]
