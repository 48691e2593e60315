#!/bin/bash
# SPDX-License-Identifier: MIT
# Metadata commands on huge sparse images run in bounded memory: a 1 TiB and
# a 64 TiB qcow2 with a few written clusters are created, written and then
# inspected; peak RSS must stay small and equal for both sizes.  TAP output.
set -u
D=${1:?usage: bounded-memory.sh DISKIMG}
[ -x /usr/bin/time ] || { echo "1..0 # SKIP /usr/bin/time (package time) not installed"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/bounded.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
n=0 failed=0
ok()  { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $1"; }
LIMIT_KB=$((64 * 1024))
declare -A rss
for size in 1T 64T; do
    img=big-$size.qcow2
    "$D" create -q -f qcow2 "$img" "$size" || { nok "create $size"; continue; }
    # a few clusters spread over the whole disk (qemu-io writes them; we
    # have no byte-poking command of our own)
    if command -v qemu-io >/dev/null; then
        qemu-io -f qcow2 -c 'write -P 0x5a 0 64k' -c 'write -P 0x5b 7G 64k' \
            -c 'write -P 0x5c 300G 64k' -c 'write -P 0x5d 900G 64k' "$img" >/dev/null
    fi
    for cmd in "info --output=json" "map --output=json" "check --output=json"; do
        /usr/bin/time -f %M -o rss.txt "$D" $cmd "$img" > out.json 2> err.txt
        rc=$?
        kb=$(tail -n 1 rss.txt)
        rss["$size $cmd"]=$kb
        if [ "$rc" = 0 ] && [ "$kb" -lt "$LIMIT_KB" ]; then ok "$size: $cmd in $kb KiB"
        else nok "$size: $cmd exit $rc, $kb KiB (limit $LIMIT_KB): $(head -c 200 err.txt)"; fi
    done
done
for cmd in "info --output=json" "map --output=json" "check --output=json"; do
    a=${rss["1T $cmd"]:-0} b=${rss["64T $cmd"]:-0}
    # equal up to noise: 64 times the disk may not cost more than 8 MiB extra
    if [ "$b" -le $((a + 8192)) ]; then ok "$cmd: 64T ($b KiB) costs about what 1T ($a KiB) does"
    else nok "$cmd: 64T uses $b KiB, 1T $a KiB"; fi
done
echo "1..$n"
[ "$failed" = 0 ]
