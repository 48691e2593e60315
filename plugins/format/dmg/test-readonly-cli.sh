#!/bin/bash
# SPDX-License-Identifier: MIT
# test-readonly-cli.sh DISKIMG — the read-only formats (bochs, cloop, dmg)
# through the command line: every writing command refused with qemu-img's
# text, and convert -O raw agreeing with qemu-img, dmg2img and the input
# of create_compressed_fs where those are installed.  TAP output.
set -u
D=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
W=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-readonly.XXXXXX") || exit 2
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 2
n=0 failed=0
ok()  { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $1"; }
skip() { n=$((n+1)); echo "ok $n - $1 # SKIP $2"; }
QEMU=$(command -v qemu-img || true)

# A small UDIF image: a raw, a zero and a zlib chunk, plist block table
# (with the Attributes, ID and Name that dmg2img needs).
python3 - <<'EOF' || exit 2
import base64, struct, zlib
raw = bytes((i * 13 + i // 512) & 0xff for i in range(8 * 512))
text = b''.join(b'line %06d of a compressible chunk\n' % i for i in range(300))[:16 * 512]
z = zlib.compress(text)
fork = raw + z
chunks = [(1, 0, 8, 0, len(raw)), (0, 8, 24, 0, 0), (0x80000005, 32, 16, len(raw), len(z)),
          (0xffffffff, 48, 0, len(fork), 0)]
mish = bytearray(204)
struct.pack_into('>4sIQQQII', mish, 0, b'mish', 1, 0, 48, 0, 0, 0)
struct.pack_into('>I', mish, 200, len(chunks))
for c in chunks:
    mish += struct.pack('>IIQQQQ', c[0], 0, c[1], c[2], c[3], c[4])
xml = ('<?xml version="1.0"?><plist version="1.0"><dict><key>resource-fork</key><dict>'
       '<key>blkx</key><array><dict><key>Attributes</key><string>0x0050</string>'
       '<key>Data</key><data>%s</data><key>ID</key><string>0</string>'
       '<key>Name</key><string>whole disk</string></dict></array>'
       '</dict></dict></plist>' % base64.b64encode(bytes(mish)).decode()).encode()
koly = bytearray(512)
struct.pack_into('>4sIII', koly, 0, b'koly', 4, 512, 1)
struct.pack_into('>QQ', koly, 0xd8, len(fork), len(xml))
struct.pack_into('>Q', koly, 0x1ec, 48)
open('a.dmg', 'wb').write(fork + xml + koly)
open('a.raw', 'wb').write(raw + bytes(24 * 512) + text)
EOF

# Compares diskimg's and qemu-img's exit status and message for one
# command line (messages without the program name).
same_refusal() {
    local desc=$1; shift
    "$D" "$@" > d.out 2> d.err; local drc=$?
    if [ "$drc" = 0 ] || [ "$(wc -l < d.err)" != 1 ]; then
        nok "$desc: expected a one-line refusal, got $drc: $(cat d.err)"; return
    fi
    if [ -z "$QEMU" ]; then ok "$desc (qemu-img not installed: refused)"; return; fi
    "$QEMU" "$@" > q.out 2> q.err; local qrc=$?
    local dm qm
    dm=$(sed 's/^diskimg: //' d.err)
    qm=$(grep -v '^qemu: module' q.err | sed 's/^qemu-img: //')
    if [ "$drc" = "$qrc" ] && [ "$dm" = "$qm" ]; then ok "$desc"
    else nok "$desc: diskimg $drc '$dm', qemu-img $qrc '$qm'"; fi
}

for fmt in bochs cloop dmg; do
    same_refusal "$fmt: create" create -f $fmt x.$fmt 1M
    same_refusal "$fmt: create without size" create -f $fmt x.$fmt
    same_refusal "$fmt: create -o help" create -f $fmt -o help
    same_refusal "$fmt: convert -O" convert -O $fmt a.raw x.$fmt
    same_refusal "$fmt: measure -O" measure -O $fmt --size 1M
    [ -e x.$fmt ] && nok "$fmt: a refused create left x.$fmt behind" || ok "$fmt: no file left behind"
done
for cmd in "resize a.dmg 1M" "snapshot -c s a.dmg" "amend -o size=1M a.dmg" "commit a.dmg" \
           "rebase -u -b x a.dmg" "bitmap --add a.dmg b0"; do
    # shellcheck disable=SC2086
    same_refusal "dmg: $cmd" $cmd
done
same_refusal "dmg: check" check a.dmg

"$D" --list-formats --output=json > formats.json
if python3 -c "
import json, sys
f = {p['name']: p for p in json.load(open('formats.json'))['plugins']}
sys.exit(0 if all('read-only' in f[n]['capabilities'] and not f[n]['writable']
                  for n in ('bochs', 'cloop', 'dmg')) else 1)"
then ok "--list-formats reports bochs, cloop and dmg read-only"
else nok "--list-formats does not report them read-only: $(cat formats.json)"; fi

"$D" convert -O raw a.dmg d.raw 2> err && cmp -s d.raw a.raw && ok "dmg: convert -O raw gives the input" ||
    nok "dmg: convert -O raw differs from the input: $(cat err)"
if [ -n "$QEMU" ]; then
    "$QEMU" convert -f dmg -O raw a.dmg q.raw 2> /dev/null
    cmp -s q.raw d.raw && ok "dmg: same bytes as qemu-img" || nok "dmg: bytes differ from qemu-img's"
    "$QEMU" info --output=json a.dmg 2> /dev/null | grep -v actual-size > q.json
    "$D" info --output=json a.dmg | grep -v actual-size > d.json
    cmp -s q.json d.json && ok "dmg: info JSON as qemu-img's" || nok "dmg: info JSON differs: $(diff q.json d.json)"
    "$QEMU" map --output=json a.dmg 2> /dev/null > q.map; "$D" map --output=json a.dmg > d.map
    cmp -s q.map d.map && ok "dmg: map JSON as qemu-img's" || nok "dmg: map JSON differs: $(diff q.map d.map)"
else
    skip "dmg: same bytes as qemu-img" "qemu-img not installed"
fi
if command -v dmg2img > /dev/null; then
    dmg2img -s a.dmg i.raw > /dev/null 2>&1
    cmp -s i.raw d.raw && ok "dmg: same bytes as dmg2img" || nok "dmg: bytes differ from dmg2img's"
else
    skip "dmg: same bytes as dmg2img" "dmg2img not installed"
fi
if command -v create_compressed_fs > /dev/null; then
    python3 -c "
import sys
d = open('a.raw', 'rb').read()
open('c.in', 'wb').write((d * 20)[:5 * 65536])"
    create_compressed_fs -q -B 65536 c.in c.cloop > /dev/null 2>&1
    "$D" convert -O raw c.cloop c.out 2> err && cmp -s c.in c.out && ok "cloop: create_compressed_fs image reads back" ||
        nok "cloop: create_compressed_fs image reads differently: $(cat err)"
else
    skip "cloop: create_compressed_fs image reads back" "cloop-utils not installed"
fi

echo "1..$n"
[ "$failed" = 0 ]
