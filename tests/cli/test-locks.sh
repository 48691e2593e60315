#!/bin/bash
# SPDX-License-Identifier: MIT
# qemu's image locks against real qemu processes, both ways: an image that a
# running qemu-io holds is refused as qemu-img refuses it (and -U reads it),
# and an image diskimg holds is refused by qemu-img.  Output is TAP.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-locks.XXXXXX")
HOLDER=
trap '[ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null; rm -rf "$T"' EXIT
cd "$T" || exit 1
. "$TESTS/tap-lib.sh"

if ! command -v qemu-img >/dev/null || ! command -v qemu-io >/dev/null; then
    echo "1..0 # SKIP qemu-img or qemu-io is not installed"
    exit 0
fi

# hold ARGS...: runs ARGS in the background until release; returns once
# it holds its locks on img.qcow2 (taken at open, before the first command).
hold() {
    "$@" > /dev/null 2>&1 &
    HOLDER=$!
    wait_locked img.qcow2 || echo "# the holder took no lock in 60 s: $*"
}
release() { kill "$HOLDER" 2>/dev/null; wait "$HOLDER" 2>/dev/null; HOLDER=; }

qemu-img create -q -f qcow2 img.qcow2 16M
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" img.qcow2 > /dev/null
sha_before=$(sha256sum < img.qcow2)

# --------------------------------------------- a qemu writer holds the image
hold qemu-io -f qcow2 -c "sleep 60000" img.qcow2
qemu-img info img.qcow2 > /dev/null 2> q.err; qrc=$?
expect 1 "info of an image a running qemu writes to" "$D" info img.qcow2
grep -q "$(sed -n 's/^qemu-img: //p' q.err | head -n 1)" err &&
    ok "refused in qemu-img's words ($(head -n 1 err))" || nok "refused in qemu-img's words (ours: $(cat err); qemu-img $qrc: $(cat q.err))"
expect 0 "info -U reads it anyway" "$D" info -U img.qcow2
expect 0 "convert -U copies it" "$D" convert -U -O raw img.qcow2 copy.raw
qemu-img compare -q -f qcow2 -F raw -U img.qcow2 copy.raw && ok "the copy holds the image's bytes" ||
    nok "the copy holds the image's bytes"
expect 1 "resize of an image in use is refused" "$D" resize img.qcow2 32M
grep_out "Failed to get \"write\" lock" "the write lock is what is missing" err
expect 1 "-U cannot write either" "$D" resize -U img.qcow2 32M
release
[ "$(sha256sum < img.qcow2)" = "$sha_before" ] && ok "nothing was written while qemu held it" ||
    nok "nothing was written while qemu held it"

# ----------------------------------------- a read-only qemu reader holds it
hold qemu-io -r -f qcow2 -c "sleep 60000" img.qcow2
expect 0 "info beside a read-only qemu" "$D" info img.qcow2
expect 1 "writing beside a read-only qemu is refused (it does not share writes)" \
    "$D" resize img.qcow2 32M
release

# ------------------------------------------------- diskimg holds the image
hold "$D" bench -w -f qcow2 -c 100000000 -d 1 -s 512 img.qcow2
qemu-img info img.qcow2 > /dev/null 2> q.err
[ $? = 1 ] && grep -q 'Failed to get shared "write" lock' q.err &&
    ok "qemu-img refuses an image diskimg writes to" || nok "qemu-img refuses an image diskimg writes to ($(cat q.err))"
qemu-img info -U img.qcow2 > /dev/null 2>&1 && ok "qemu-img -U reads it" || nok "qemu-img -U reads it"
qemu-io -f qcow2 -c "read 0 512" img.qcow2 > /dev/null 2> q.err
[ -s q.err ] && ok "qemu-io cannot open it for writing" || nok "qemu-io cannot open it for writing"
release

echo "1..$n"
[ "$failed" = 0 ]
