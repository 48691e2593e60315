#!/bin/bash
# SPDX-License-Identifier: MIT
# qcow2 check against qemu-img on damaged images: for each kind of damage
# (L2 entries, refcounts, header fields) both tools must give the same
# verdict (exit code and JSON counts), and after `diskimg check -r all`
# qemu-img must find the image clean.  TAP output.
set -u
D=${1:?usage: qcow2-corruption.sh DISKIMG}
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
    { echo "1..0 # SKIP qemu-img/qemu-io not installed"; exit 0; }
T=$(mktemp -d "${TMPDIR:-/tmp}/qcow2-corrupt.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
n=0 failed=0
ok()  { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $1"; }

# damage IMG KIND: edits the qcow2 metadata in place
damage() {
    python3 - "$1" "$2" <<'EOF'
import struct, sys
path, kind = sys.argv[1], sys.argv[2]
f = open(path, 'r+b')
h = f.read(112)
be = lambda fmt, off: struct.unpack_from(fmt, h, off)[0]
cluster_bits = be('>I', 20)
cs = 1 << cluster_bits
l1_off = be('>Q', 40)
rt_off = be('>Q', 48)
refcount_order = be('>I', 96)
OFF = 0x00fffffffffffe00
f.seek(l1_off)
l2_off = struct.unpack('>Q', f.read(8))[0] & OFF
def l2(i, value=None):
    f.seek(l2_off + 8 * i)
    if value is None:
        return struct.unpack('>Q', f.read(8))[0]
    f.write(struct.pack('>Q', value))
def set_refcount(host, value):
    assert refcount_order == 4          # 16-bit refcounts (the default)
    idx = host // cs
    per_block = cs * 8 // 16
    f.seek(rt_off + 8 * (idx // per_block))
    block = struct.unpack('>Q', f.read(8))[0] & OFF
    f.seek(block + 2 * (idx % per_block))
    f.write(struct.pack('>H', value))
e0, e1 = l2(0), l2(1)
if kind == 'l2-unaligned':
    l2(0, e0 + 512)
elif kind == 'l2-shared':            # two guest clusters, one host cluster
    l2(1, e0)
elif kind == 'l2-copied-flag':       # refcount 1 but OFLAG_COPIED cleared
    l2(0, e0 & ~(1 << 63))
elif kind == 'l2-beyond-eof':
    f.seek(0, 2)
    l2(0, (e0 & ~OFF) | ((f.tell() + 64 * cs) & OFF))
elif kind == 'refcount-zero':
    set_refcount(e0 & OFF, 0)
elif kind == 'refcount-two':
    set_refcount(e0 & OFF, 2)
elif kind == 'header-corrupt-bit':
    f.seek(72)
    f.write(struct.pack('>Q', be('>Q', 72) | 2))
else:
    sys.exit('unknown damage ' + kind)
EOF
}

check_json_equal() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for d in (a, b):
    d.pop('filename', None)
sys.exit(0 if a == b else 1)
EOF
}

for kind in l2-unaligned l2-shared l2-copied-flag l2-beyond-eof refcount-zero refcount-two \
            header-corrupt-bit; do
    rm -f base.qcow2 q.qcow2 t.qcow2
    qemu-img create -q -f qcow2 base.qcow2 16M
    qemu-io -c 'write -P 0x11 0 256k' -c 'write -P 0x22 1M 64k' base.qcow2 >/dev/null
    damage base.qcow2 "$kind" || { nok "$kind: could not damage the image"; continue; }
    cp base.qcow2 q.qcow2; cp base.qcow2 t.qcow2
    qemu-img check --output=json q.qcow2 > q.json 2>/dev/null; qrc=$?
    "$D" check --output=json t.qcow2 > t.json 2>/dev/null; trc=$?
    if [ "$qrc" = "$trc" ]; then ok "$kind: same exit code ($qrc)"
    else nok "$kind: exit code $trc, qemu-img gives $qrc"; fi
    if check_json_equal q.json t.json; then ok "$kind: same check JSON"
    else nok "$kind: check JSON differs: $(tr -d ' \n' < t.json) vs $(tr -d ' \n' < q.json)"; fi
    # Our repair must leave the image at least as healthy as qemu-img's own
    # repair does (qemu cannot repair every kind of damage either).
    qemu-img check -r all q.qcow2 > /dev/null 2>&1
    qemu-img check q.qcow2 > /dev/null 2>&1; qafter=$?
    "$D" check -r all t.qcow2 > /dev/null 2>&1
    qemu-img check t.qcow2 > after.txt 2>&1; tafter=$?
    if [ "$tafter" = 0 ] || [ "$tafter" -le "$qafter" ]; then
        ok "$kind: qemu-img rates our repair ($tafter) at least as well as its own ($qafter)"
    else nok "$kind: after diskimg check -r all, qemu-img check exits $tafter (its own repair: $qafter): $(grep -m1 -E 'ERROR|Leaked|leaked|error' after.txt)"; fi
done

echo "1..$n"
[ "$failed" = 0 ]
