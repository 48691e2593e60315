#!/bin/bash
# SPDX-License-Identifier: MIT
# The trust policy for names found inside images (docs/architecture.md,
# "Trust policy"), driven through the command line and compared with
# qemu-img 7.2 where it is installed.  Output is TAP.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
HAVE_QEMU=0
command -v qemu-img >/dev/null && HAVE_QEMU=1

TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-trust.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
. "$TESTS/tap-lib.sh"

# unrecord_backing_format IMG: hides a qcow2's backing-format header
# extension (its type becomes an unknown one, which readers skip), so the
# backing file's format is probed as in images made by old tools.
unrecord_backing_format() {
    python3 - "$1" <<'EOF'
import sys
f = open(sys.argv[1], 'r+b')
head = bytearray(f.read(65536))
i = head.find(bytes.fromhex('e2792aca'), 72)
assert i > 0, 'no backing format extension'
head[i:i + 4] = bytes.fromhex('0badf00d')
f.seek(0)
f.write(head)
EOF
}

# rename_in_header IMG OLD NEW: replaces a name of the same length.
rename_in_header() {
    python3 - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode()
assert len(old) == len(new)
f = open(path, 'r+b')
head = f.read(65536)
assert head.count(old) == 1, 'name not found once'
f.seek(head.index(old))
f.write(new)
EOF
}

# ------------------------------------------- protocol names in metadata
"$D" create -q -f raw base.raw 1M
JSONB='json:{"driver":"raw","file":{"driver":"file","filename":"base.raw"}}'
expect 0 "create -u -b accepts a json: name from the user" \
    "$D" create -q -f qcow2 -u -b "$JSONB" -F raw json.qcow2 1M
expect 0 "create -u -b accepts an nbd:// name from the user" \
    "$D" create -q -f qcow2 -u -b nbd://127.0.0.1:1/x -F raw nbd.qcow2 1M
expect 0 "create -u -b accepts a file: name from the user" \
    "$D" create -q -f qcow2 -u -b file:base.raw -F raw filep.qcow2 1M

for img in json nbd filep; do
    expect 0 "info of $img.qcow2 reports its backing name without opening it" \
        "$D" info "$img.qcow2"
    if [ "$HAVE_QEMU" = 1 ]; then
        mv out ours
        qemu-img info "$img.qcow2" > theirs 2>&1
        if diff -u theirs ours > /dev/null; then ok "info of $img.qcow2 as qemu-img"
        else nok "info of $img.qcow2 as qemu-img ($(diff theirs ours | head -c 300))"; fi
    fi
done

expect 1 "info --backing-chain refuses a json: backing name" \
    "$D" info --backing-chain json.qcow2
one_line_err "json: refusal is one line naming the image and the name" \
    "json.qcow2: refusing backing file name 'json:{"
grep_out "only accepted from the command line" "json: refusal says who may give such names" err
expect 1 "convert refuses an nbd:// backing name" "$D" convert -O raw nbd.qcow2 x.raw
one_line_err "nbd:// refusal is one line naming the image and the name" \
    "nbd.qcow2: refusing backing file name 'nbd://127.0.0.1:1/x'"
[ ! -e x.raw ] && ok "refused convert leaves no target" || nok "refused convert leaves no target"
# qemu-img would open base.raw relative to the current directory here.
mkdir -p elsewhere
expect 1 "a recorded file: name is not interpreted either" "$D" map filep.qcow2
grep_out "refusing backing file name 'file:base.raw'" "file: refusal names the name" err

"$D" create -q -f qcow2 -u -b nbd.qcow2 -F qcow2 mid.qcow2 1M
expect 1 "a refused name deeper in the chain" "$D" info --backing-chain mid.qcow2
one_line_err "names the top, then the image that records the name" \
    "Could not open 'mid.qcow2': nbd.qcow2: refusing backing file name 'nbd://"

# The user may still name the backing file (--image-opts backing.file.filename).
expect 0 "the user's backing.file.filename replaces a refused name" \
    "$D" info --backing-chain --image-opts \
    driver=qcow2,file.filename=nbd.qcow2,backing.file.filename=base.raw
grep_out "^image: base.raw" "the user's backing file is opened"

# ------------------------------------------------ names the user types
# A remote protocol without its io plugin names the package that serves it
# (schema/magic.yaml's protocols).
if ! "$D" schema nbd > /dev/null 2>&1; then
    expect 1 "an nbd:// name without the nbd plugin" "$D" info nbd://127.0.0.1/x
    one_line_err "the missing protocol names its package" \
        "Could not open 'nbd://127.0.0.1/x': Unknown protocol 'nbd' (install package diskimg-io-nbd)"
fi
expect 1 "a json: name the user types" "$D" info 'json:{"driver":"raw"}'
one_line_err "json: names point to --image-opts" "json: pseudo-filenames are not supported (use --image-opts)"
cp base.raw 'a:b.img'
expect 1 "a user name with an unknown protocol prefix" "$D" info 'a:b.img'
one_line_err "unknown protocol as qemu-img words it" "Could not open 'a:b.img': Unknown protocol 'a'"
if [ "$HAVE_QEMU" = 1 ]; then
    qemu-img info 'a:b.img' > /dev/null 2> theirs
    grep -q "Unknown protocol 'a'" theirs && ok "qemu-img refuses the same name" ||
        nok "qemu-img refuses the same name ($(cat theirs))"
fi
expect 0 "file: reaches a file whose name has a colon" "$D" info 'file:a:b.img'
expect 0 "./ reaches it too" "$D" info './a:b.img'
expect 0 "create -b file:NAME opens the user's backing file" \
    "$D" create -q -f qcow2 -b file:base.raw -F raw userfile.qcow2

# ------------------------------------- relative names: image's directory
mkdir -p sub/deeper
"$D" create -q -f raw sub/deeper/b.raw 2M
"$D" create -q -f qcow2 -u -b deeper/b.raw -F raw sub/top.qcow2 2M
expect 0 "a relative backing name resolves against the image's directory" \
    "$D" info --backing-chain sub/top.qcow2
grep_out "^image: sub/deeper/b.raw" "backing opened next to the image, not in the cwd"
mkdir -p sub/nbd:
"$D" create -q -f raw 'sub/nbd:/x' 1M
"$D" create -q -f qcow2 -u -b './nbd://x' -F raw sub/dotted.qcow2 1M
expect 0 "a ./ name with '://' in it is a plain relative file name" \
    "$D" info --backing-chain sub/dotted.qcow2
grep_out "^image: sub/./nbd://x" "it is opened in the image's directory"

# ------------------------------------------------ data files: info only
"$D" create -q -f qcow2 -o data_file=data.raw dq.qcow2 1M
mv data.raw data.raw.away
expect 0 "info of a qcow2 whose data file is absent" "$D" info dq.qcow2
grep_out "^    data file: data.raw$" "info names the data file"
if [ "$HAVE_QEMU" = 1 ]; then
    mv out ours
    qemu-img info dq.qcow2 > theirs
    diff -u theirs ours > /dev/null && ok "info without the data file as qemu-img" ||
        nok "info without the data file as qemu-img ($(diff theirs ours | head -c 300))"
    "$D" info --output=json dq.qcow2 > ours.json
    qemu-img info --output=json dq.qcow2 > theirs.json
    same_json ours.json theirs.json "info --output=json without the data file as qemu-img"
    "$D" info --backing-chain dq.qcow2 > ours
    qemu-img info --backing-chain dq.qcow2 > theirs
    diff -u theirs ours > /dev/null && ok "info --backing-chain without the data file as qemu-img" ||
        nok "info --backing-chain without the data file ($(diff theirs ours | head -c 300))"
fi
for cmd in "1 convert -O raw dq.qcow2 y.raw" "1 check dq.qcow2" "1 map dq.qcow2" \
           "2 compare dq.qcow2 base.raw"; do
    set -- $cmd
    want=$1; shift; cmd=$*
    expect "$want" "$cmd still needs the data file" "$D" "$@"
    one_line_err "$cmd: one line naming the data file" "Could not open 'data.raw': No such file or directory"
done
# info does not even open a data file that is there: a directory in its
# place would make any open fail.
mkdir data.raw
expect 0 "info does not open the data file" "$D" info dq.qcow2
rmdir data.raw
mv data.raw.away data.raw
expect 0 "convert reads through the data file again" "$D" convert -O raw dq.qcow2 y.raw
"$D" create -q -f qcow2 -o data_file=nbdd.raw dn.qcow2 1M
rename_in_header dn.qcow2 nbdd.raw nbd:/aaa
expect 0 "info shows a protocol data file name" "$D" info dn.qcow2
grep_out "^    data file: nbd:/aaa$" "as recorded"
expect 1 "convert refuses a protocol data file name" "$D" convert -O raw dn.qcow2 z.raw
one_line_err "one line naming the image and the name" "dn.qcow2: refusing data file name 'nbd:/aaa'"

expect 1 "create refuses a data file name that opening would refuse" \
    "$D" create -q -f qcow2 -o data_file=nbd:x dc.qcow2 1M
one_line_err "one line saying why and what to write instead" \
    "dc.qcow2: data file name 'nbd:x' has a protocol prefix.*write ./nbd:x"
[ ! -e dc.qcow2 ] && [ ! -e nbd:x ] && ok "...leaving no file behind" || nok "...leaving no file behind"

cp dq.qcow2 da.qcow2
expect 1 "amend refuses such a data file name too" "$D" amend -o data_file=nbd:x da.qcow2
one_line_err "one line naming the name" "data file name 'nbd:x' has a protocol prefix"
cmp -s da.qcow2 dq.qcow2 && ok "...and leaves the image unchanged" || nok "...and leaves the image unchanged"

# --------------------------------------- probed raw: block 0 is guarded
# An overlay whose backing format is not recorded, with a qcow2 header at
# guest offset 0, must not turn its raw base into a qcow2 image on commit.
"$D" create -q -f raw pbase.raw 1M
"$D" create -q -f qcow2 hdr.qcow2 1M
for size in 1M 2M; do
    truncate -s "$size" "hdr$size.bin"
    dd if=hdr.qcow2 of="hdr$size.bin" bs=512 count=1 conv=notrunc status=none
    "$D" create -q -f qcow2 -b pbase.raw -F raw "ptop$size.qcow2" "$size"
    "$D" convert -n -f raw -O qcow2 "hdr$size.bin" "ptop$size.qcow2"
    unrecord_backing_format "ptop$size.qcow2"
done
mv ptop1M.qcow2 ptop.qcow2; mv ptop2M.qcow2 ptop2.qcow2
cp pbase.raw pbase.orig; cp ptop.qcow2 ptop.orig
expect 1 "commit that would make a probed raw base look like qcow2 is refused" \
    "$D" commit ptop.qcow2
one_line_err "refusal is one line naming the base" \
    "pbase.raw: Operation not permitted: the image's format was probed as raw"
cmp -s pbase.raw pbase.orig && ok "the base is byte-for-byte unchanged" ||
    nok "the base is byte-for-byte unchanged"
cmp -s ptop.qcow2 ptop.orig && ok "the top is unchanged" || nok "the top is unchanged"
# A bigger top would first grow the base: the check comes before that.
expect 1 "commit of a bigger top is refused too" "$D" commit ptop2.qcow2
cmp -s pbase.raw pbase.orig && ok "...before the base grows" || nok "...before the base grows"
if [ "$HAVE_QEMU" = 1 ]; then
    qemu-img commit ptop.qcow2 > /dev/null 2> theirs
    RC=$?
    [ "$RC" = 1 ] && grep -q "Operation not permitted" theirs &&
        ok "qemu-img refuses the same commit" || nok "qemu-img refuses the same commit ($RC: $(cat theirs))"
    cmp -s pbase.raw pbase.orig && ok "...and leaves the base unchanged as well" ||
        nok "...and leaves the base unchanged as well"
fi
expect 0 "with the base's format given (backing.driver=raw) the commit succeeds" \
    "$D" commit --image-opts driver=qcow2,file.filename=ptop.qcow2,backing.driver=raw
"$D" info pbase.raw > out
grep_out "^file format: qcow2" "the base now holds the qcow2 header, as asked"
cp pbase.orig pbase.raw; cp ptop.orig ptop.qcow2
"$D" rebase -u -b pbase.raw -F raw ptop.qcow2
expect 0 "with the base's format recorded the commit succeeds" "$D" commit ptop.qcow2
# Harmless data at offset 0 of a probed base is committed as before.
"$D" create -q -f raw hbase.raw 1M
"$D" create -q -f qcow2 -b hbase.raw -F raw htop.qcow2 1M
unrecord_backing_format htop.qcow2
printf 'just data' > hd.bin; truncate -s 1M hd.bin
"$D" convert -n -f raw -O qcow2 hd.bin htop.qcow2
expect 0 "commit of ordinary data into a probed raw base works" "$D" commit htop.qcow2
head -c 9 hbase.raw | grep -q "just data" && ok "...and lands in the base" || nok "...and lands in the base"

# The warning about block 0 is printed when a probed raw image is opened
# for writing, worded as qemu-img's.
expect 0 "resize of a probed raw image" "$D" resize hbase.raw 2M
grep_out "probing guessed raw" "the probing warning is printed" err
grep_out "write operations on block 0 will be restricted" "it says block 0 is restricted" err

echo "1..$n"
[ "$failed" = 0 ]
