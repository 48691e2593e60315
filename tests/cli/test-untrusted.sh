#!/bin/bash
# SPDX-License-Identifier: MIT
# diskimg inspect and --untrusted (docs/untrusted.md) on a corpus of
# hostile-but-valid images this script makes.  Every file an image names
# is a FIFO: opening one for reading blocks until a writer comes, which
# none does, so a command that opens it hangs and `timeout` (exit 124)
# catches it (the posix backend already refuses non-regular files before
# opening them, so this guards the other code paths).  Where strace is
# installed, every system call that takes a file name is watched: no
# command may open, stat or even look up a file the image names.
# Output is TAP.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
SRC=${DISKIMG_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-untrusted.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
. "$TESTS/tap-lib.sh"
HAVE_STRACE=0
command -v strace >/dev/null && HAVE_STRACE=1

mkdir img
mkfifo target.fifo img/near.fifo      # outside and inside the images' directory
ABS="$T/target.fifo"

# poke FILE OFFSET HEX: overwrites bytes of FILE.
poke() {
    python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(bytes.fromhex(sys.argv[3]))' "$@"
}
# set_bits_be64 FILE OFFSET MASK: ORs MASK into the big-endian u64 at OFFSET.
set_bits_be64() {
    python3 - "$@" <<'EOF'
import struct, sys
path, off, mask = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
with open(path, 'r+b') as f:
    f.seek(off); v = struct.unpack('>Q', f.read(8))[0]
    f.seek(off); f.write(struct.pack('>Q', v | mask))
EOF
}
# descriptor EXTENT_LINE: a monolithicFlat vmdk descriptor.
descriptor() {
    printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
    printf 'createType="monolithicFlat"\n\n# Extent description\n%s\n\n' "$1"
    printf 'ddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "2"\n'
    printf 'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n'
}

# ------------------------------------------------------------- the corpus
mk() { "$@" > /dev/null || echo "# corpus step failed: $*"; }
mk "$D" create -q -f qcow2 -u -b "$ABS" -F raw img/backing-host.qcow2 1M
mk "$D" create -q -f qcow2 -u -b ../target.fifo -F raw img/backing-up.qcow2 1M
mk "$D" create -q -f qcow2 -u -b "json:{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"$ABS\"}}" \
    -F raw img/backing-json.qcow2 1M
mk "$D" create -q -f qcow2 -u -b nbd://127.0.0.1:1/x -F raw img/backing-nbd.qcow2 1M
mk "$D" create -q -f qcow2 -o data_file=near.fifo.tmp img/datafile.qcow2 1M
# The data file becomes a FIFO under the recorded name.
rm -f img/near.fifo.tmp
mkfifo img/near.fifo.tmp
descriptor "RW 2048 FLAT \"$ABS\" 0" > img/flat-abs.vmdk
descriptor 'RW 2048 FLAT "../target.fifo" 0' > img/flat-up.vmdk
descriptor 'RW 2048 SPARSE "near.fifo"' > img/sparse-near.vmdk
# qcow2 inside an ISO 9660 volume: the volume descriptors at 32 KiB lie in
# the qcow2 header cluster, which qcow2 leaves unused.
mk "$D" create -q -f qcow2 img/qcow2-in-iso.qcow2 1M
poke img/qcow2-in-iso.qcow2 32768 014344303031
poke img/qcow2-in-iso.qcow2 34816 ff4344303031
# A raw disk whose first sector is a vmdk descriptor (as uploaded "raw").
truncate -s 1M img/raw-desc.img
descriptor 'RW 2048 FLAT "near.fifo" 0' | dd of=img/raw-desc.img conv=notrunc status=none
# vmdk descriptor at the start, fixed VHD footer at the end.
mk "$D" create -q -f vpc -o subformat=fixed img/vmdk-vpc.img 1M
descriptor 'RW 2048 FLAT "near.fifo" 0' | dd of=img/vmdk-vpc.img conv=notrunc status=none
mk "$D" create -q -f qcow2 img/unknown-incompat.qcow2 1M
set_bits_be64 img/unknown-incompat.qcow2 72 0x10000000000
mk "$D" create -q -f qcow2 img/dirty.qcow2 1M
set_bits_be64 img/dirty.qcow2 72 0x1
mk "$D" create -q -f qcow2 img/corrupt.qcow2 1M
set_bits_be64 img/corrupt.qcow2 72 0x2
mk "$D" create -q -f qed img/dirty.qed 1M
poke img/dirty.qed 16 02
mk "$D" create -q --object secret,id=s,data=pw -f luks -o key-secret=s img/enc.luks 1M
mk "$D" create -q --object secret,id=s,data=pw -f qcow2 \
    -o encrypt.format=luks,encrypt.key-secret=s img/enc.qcow2 1M
mk "$D" create -q -f qcow2 img/clean.qcow2 1M
mk "$D" create -q -f raw img/plain.iso 1M
poke img/plain.iso 32768 014344303031

# ---------------------------------------------------------------- inspect
# inspect_ids IMG WANT_RC ID...: inspect --output=json reports every ID,
# and exits WANT_RC, without hanging on a FIFO.
inspect_ids() {
    local img=$1 want=$2; shift 2
    expect "$want" "inspect $img exits $want" "$D" inspect --output=json "img/$img"
    local got
    got=$(python3 -c 'import json,sys; print(" ".join(f["id"] for f in json.load(open("out"))["findings"]))' 2>/dev/null)
    for id in "$@"; do
        case " $got " in
        *" $id "*) ok "inspect $img reports $id" ;;
        *) nok "inspect $img reports $id (got: $got)" ;;
        esac
    done
}
inspect_ids backing-host.qcow2 2 backing-file
inspect_ids backing-up.qcow2 2 backing-file
inspect_ids backing-json.qcow2 2 backing-file json-name
inspect_ids backing-nbd.qcow2 2 backing-file protocol-name
inspect_ids datafile.qcow2 2 data-file
inspect_ids flat-abs.vmdk 2 descriptor-only-vmdk external-extent absolute-extent extent-outside-dir
inspect_ids flat-up.vmdk 2 descriptor-only-vmdk external-extent extent-outside-dir
inspect_ids sparse-near.vmdk 2 descriptor-only-vmdk external-extent
inspect_ids qcow2-in-iso.qcow2 2 multiple-formats
inspect_ids raw-desc.img 2 descriptor-only-vmdk external-extent
inspect_ids vmdk-vpc.img 2 multiple-formats external-extent
inspect_ids unknown-incompat.qcow2 2 unknown-incompatible-features
inspect_ids corrupt.qcow2 2 corrupt
inspect_ids dirty.qcow2 0 dirty
inspect_ids dirty.qed 0 dirty
inspect_ids enc.luks 0 encrypted
inspect_ids enc.qcow2 0 encrypted
inspect_ids plain.iso 0 raw-looks-like-iso9660

expect 2 "inspect -f raw of a file that starts with a vmdk descriptor is unsafe" \
    "$D" inspect -f raw --output=json img/raw-desc.img
grep_out '"raw-looks-like-vmdk"' "... and says it looks like vmdk"
expect 0 "inspect of a clean qcow2 exits 0" "$D" inspect img/clean.qcow2
grep_out '^findings: none' "... and lists no findings"
grep_out '^file format: qcow2' "... and names the format"
expect 0 "inspect --output=json of a clean qcow2" "$D" inspect --output=json img/clean.qcow2
python3 - <<'EOF' && ok "... reports formats, the decision and the virtual size" || nok "... reports formats, the decision and the virtual size"
import json
d = json.load(open('out'))
assert [f['format'] for f in d['formats']] == ['qcow2'], d
assert d['format'] == 'qcow2' and d['virtual-size'] == 1048576 and d['findings'] == [], d
assert d['unsafe'] is False
EOF
run "$D" inspect --output=json img/qcow2-in-iso.qcow2
python3 -c 'import json; d=json.load(open("out")); assert {f["format"] for f in d["formats"]} == {"qcow2","iso9660"}; assert d["format"] == "qcow2"' 2>/dev/null \
    && ok "inspect of qcow2-in-iso lists qcow2 and iso9660 and decides qcow2" \
    || nok "inspect of qcow2-in-iso lists qcow2 and iso9660 ($(head -c 300 out))"
expect 1 "inspect of a missing file exits 1" "$D" inspect img/missing.img
one_line_err "... with one line naming it" missing.img
expect 1 "inspect of a FIFO exits 1 at once instead of blocking" "$D" inspect target.fifo

# Every inspect output validates against the documented JSON Schema.
if python3 -c 'import jsonschema' 2>/dev/null; then
    bad=""
    for f in img/*; do
        [ -p "$f" ] && continue
        timeout 20 "$D" inspect --output=json "$f" > js.json 2>/dev/null
        python3 - "$SRC/docs/introspection/inspect.schema.json" js.json <<'EOF' || bad="$bad $f"
import json, sys, jsonschema
jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))
EOF
    done
    [ -z "$bad" ] && ok "inspect JSON of every corpus image matches docs/introspection/inspect.schema.json" \
        || nok "inspect JSON schema mismatch:$bad"
else
    skip "inspect JSON schema validation" "python3-jsonschema is not installed"
fi

# ------------------------------------------ which files the commands open
# opened_others TRACE NAMED: files other than NAMED the traced command
# touched among the corpus (the images' directory and the FIFO targets).
opened_others() {
    grep -oE '"[^"]*"' "$1" | tr -d '"' | sort -u |
        grep -E "(^|/)(img/|target\.fifo|near\.fifo)" | grep -vxF "$2" | grep -vxF "$T/$2" || true
}
# watch NAME CMD...: CMD must not hang (no FIFO opened) and, under strace,
# must open no corpus file but NAME.
watch() {
    local name=$1; shift
    if [ "$HAVE_STRACE" = 1 ]; then
        run strace -f -qq -e trace=%file -o trace "$@"
    else
        run "$@"
    fi
    if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
        nok "$* hangs (it opened a FIFO the image names)"
        return
    fi
    if [ "$HAVE_STRACE" = 1 ]; then
        local others; others=$(opened_others trace "$name")
        if [ -n "$others" ]; then nok "$* touched $others"; else ok "$* touches only $name (exit $RC)"; fi
    else
        ok "$* does not hang (exit $RC; strace missing, FIFOs only)"
    fi
}
[ "$HAVE_STRACE" = 1 ] || skip "strace -e trace=openat proof" "strace is not installed"

# The proof proves something: strace does see a trusted convert reach the
# backing file its image names.
if [ "$HAVE_STRACE" = 1 ]; then
    mk "$D" create -q -f raw img/control-base.raw 1M
    mk "$D" create -q -f qcow2 -b control-base.raw -F raw img/control.qcow2 1M
    run strace -f -qq -e trace=%file -o trace "$D" convert -O raw img/control.qcow2 out.raw
    [ -n "$(opened_others trace img/control.qcow2)" ] \
        && ok "control: strace sees a trusted convert open the backing file" \
        || nok "control: strace sees a trusted convert open the backing file"
fi

HOSTILE="backing-host.qcow2 backing-up.qcow2 backing-json.qcow2 backing-nbd.qcow2 datafile.qcow2
         flat-abs.vmdk flat-up.vmdk sparse-near.vmdk qcow2-in-iso.qcow2 raw-desc.img vmdk-vpc.img"
for img in $HOSTILE unknown-incompat.qcow2 corrupt.qcow2 dirty.qcow2 dirty.qed enc.luks enc.qcow2; do
    watch "img/$img" "$D" inspect "img/$img"
    watch "img/$img" "$D" --untrusted info "img/$img"
    watch "img/$img" "$D" --untrusted check "img/$img"
    watch "img/$img" "$D" --untrusted map "img/$img"
    watch "img/$img" "$D" --untrusted convert -O raw "img/$img" out.raw
done
# A hostile image's convert fails under --untrusted, naming why.
for img in $HOSTILE; do
    run "$D" --untrusted convert -O raw "img/$img" out.raw
    if [ "$RC" = 1 ] && grep -qE "untrusted|refusing|does not open" err; then
        ok "--untrusted convert of $img fails: $(head -c 160 err)"
    else
        nok "--untrusted convert of $img (exit $RC: $(head -c 300 err))"
    fi
done
run env DISKIMG_UNTRUSTED=1 "$D" convert -O raw img/backing-host.qcow2 out.raw
[ "$RC" = 1 ] && grep -q untrusted err && ok "DISKIMG_UNTRUSTED=1 acts as --untrusted" \
    || nok "DISKIMG_UNTRUSTED=1 acts as --untrusted (exit $RC: $(head -c 300 err))"
expect 1 "--untrusted refuses to guess between qcow2 and iso9660" \
    "$D" --untrusted info img/qcow2-in-iso.qcow2
grep_out "qcow2, iso9660|iso9660, qcow2" "... and names both candidates" err
expect 0 "... but -f qcow2 names the format" "$D" --untrusted info -f qcow2 img/qcow2-in-iso.qcow2

# ------------------------------------- what --untrusted still lets through
truncate -s 1M img/clean-data
printf 'hello, world' | dd of=img/clean-data bs=1 conv=notrunc status=none 2>/dev/null
mk "$D" convert -O qcow2 -f raw img/clean-data img/content.qcow2
expect 0 "diskimg --untrusted convert -O raw of a self-contained qcow2 works" \
    "$D" --untrusted convert -O raw img/content.qcow2 out.raw
cmp -s out.raw img/clean-data && ok "... and copies the content" || nok "... and copies the content"
watch img/content.qcow2 "$D" --untrusted convert -O raw img/content.qcow2 out.raw

# Files the user names on the command line are opened.
mk "$D" create -q -f raw img/base.raw 1M
mk "$D" create -q -f qcow2 -b base.raw -F raw img/top.qcow2 1M
expect 1 "--untrusted convert of an overlay refuses its recorded backing file" \
    "$D" --untrusted convert -O raw img/top.qcow2 out.raw
expect 0 "... and opens it when the user names it (backing.file.filename)" \
    "$D" --untrusted convert -O raw --image-opts \
    driver=qcow2,file.filename=img/top.qcow2,backing.file.filename=img/base.raw out.raw
mk "$D" create -q -f qcow2 -o data_file=df.raw img/df-ok.qcow2 1M
expect 1 "--untrusted convert refuses the data file the image names" \
    "$D" --untrusted convert -O raw img/df-ok.qcow2 out.raw
expect 0 "... and opens it when the user names it (data-file.filename)" \
    "$D" --untrusted convert -O raw --image-opts \
    driver=qcow2,file.filename=img/df-ok.qcow2,data-file.filename=img/df.raw out.raw
expect 0 "trusted convert of the same image is unchanged" "$D" convert -O raw img/df-ok.qcow2 out.raw

echo "1..$n"
[ "$failed" = 0 ]
