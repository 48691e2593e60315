#!/bin/bash
# SPDX-License-Identifier: MIT
# Command-line tests: drive the built diskimg like a user and a program
# would, and compare with the real qemu-img where it is installed.
# Output is TAP; meson counts it.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
BUILD=${DISKIMG_BUILD_ROOT:?}
FAKE=${DISKIMG_FAKE_PLUGINS:-$BUILD/tests/plugins}
HAVE_QEMU=0
command -v qemu-img >/dev/null && HAVE_QEMU=1

TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-cli.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

# ok/nok/skip, run, expect, grep_out, one_line_err, same_json
. "$TESTS/tap-lib.sh"

# ----------------------------------------------------------- basics
expect 0 "--version" "$D" --version
grep_out "diskimg version" "--version names the program"
expect 0 "--help" "$D" --help
grep_out "Supported formats: .*raw" "--help lists the installed formats"
expect 0 "--list-formats" "$D" --list-formats
grep_out "^raw " "--list-formats lists raw"
expect 0 "--list-formats --output=json" "$D" --list-formats --output=json
if python3 -c 'import json,sys; d=json.load(open("out")); assert d["introspection-version"]==1; assert any(p["name"]=="raw" and p["writable"] for p in d["plugins"])'; then
    ok "--list-formats JSON parses and holds raw"; else nok "--list-formats JSON"; fi
expect 0 "create --help" "$D" create --help
grep_out "^Usage: diskimg create" "create --help shows the synopsis from commands.yaml"
grep_out "Exit status" "create --help documents exit codes"
for cmd in amend bench bitmap check commit compare convert create dd info map measure rebase resize snapshot schema; do
    run "$D" "$cmd" --help
    if [ "$RC" = 0 ] && [ ! -s err ] && grep -q "^Usage: diskimg $cmd" out; then ok "$cmd --help is generated cleanly"
    else nok "$cmd --help is generated cleanly ($RC: $(head -c 200 err))"; fi
done
expect 1 "unknown command" "$D" frobnicate
expect 1 "unknown option" "$D" info --frobnicate x
grep_out "unrecognized option '--frobnicate'" "unknown option named" err
expect 1 "missing file name" "$D" info

# ----------------------------------------------------------- schema / help
expect 0 "create -f raw -o help" "$D" create -f raw -o help
grep_out "^  preallocation=<str> +- .*off, falloc, full.*default: off" "-o help lists preallocation values and default"
grep_out "^  size=<size>" "-o help lists size"
expect 0 "create -o help with a file name" "$D" create -f raw -o help x.img
grep_out "^Supported options:$" "with a file name the options are merged, as qemu-img does"
grep_out "^  nocow=<bool \(on/off\)>" "protocol option nocow is listed"
expect 0 "protocol options reach the I/O backend" "$D" create -q -f raw -o nocow=on,extent_size_hint=0 proto.img 1M
expect 1 "a misspelt protocol option is still refused" "$D" create -q -f raw -o nocw=on proto2.img 1M
expect 0 "schema raw --output=json" "$D" schema raw --output=json
if python3 -c 'import json; json.load(open("out"))'; then ok "schema JSON parses"; else nok "schema JSON parses"; fi
grep_out "preallocation" "schema JSON describes preallocation"
expect 0 "schema listing" "$D" schema --output=json
grep_out '"format"' "schema listing has kinds"
expect 1 "unknown -o option" "$D" create -f raw -o preallocaton=off x.img 1M
# qemu-img's wording, then the closest name on a line of its own
grep_out "x.img: Invalid parameter 'preallocaton'" "misspelt option in qemu's words" err
grep_out "Did you mean 'preallocation'\?" "did-you-mean for a misspelt option" err
expect 1 "bad enum value" "$D" create -f raw -o preallocation=sparse x.img 1M
grep_out "x.img: invalid parameter value: sparse" "bad preallocation in qemu's words" err
[ ! -e x.img ] && ok "failed create leaves no file" || nok "failed create leaves no file"

# ----------------------------------------------------------- create / info
expect 0 "create -f raw 1G" "$D" create -f raw a.img 1G
grep_out "^Formatting 'a.img', fmt=raw size=1073741824" "create prints the Formatting line"
expect 0 "info --output=json" "$D" info --output=json a.img
cp out a.json
if [ $HAVE_QEMU = 1 ]; then
    qemu-img info --output=json a.img > q.json
    same_json q.json a.json "info JSON equals qemu-img's (actual-size aside)" actual-size
else skip "info JSON equals qemu-img's" "no qemu-img"; fi
expect 0 "info human" "$D" info a.img
grep_out "^virtual size: 1 GiB \(1073741824 bytes\)" "human info shows the size qemu's way"
expect 1 "create 12Q fails" "$D" create -f raw b.img 12Q
grep_out "Invalid image size specified" "invalid size message" err
expect 1 "create -5 fails" "$D" create -f raw b.img -5
expect 0 "create 1.5M" "$D" create -q -f raw c.img 1.5M
[ "$(stat -c %s c.img)" = 1572864 ] && ok "1.5M is 1572864 bytes" || nok "1.5M is 1572864 bytes"
[ ! -s out ] && ok "-q prints nothing" || nok "-q prints nothing"
expect 1 "create without size" "$D" create -f raw d.img
grep_out "Image creation needs a size parameter" "missing size message" err

# ----------------------------------------------------------- convert / compare / map
python3 - <<'EOF'
# a sparse 32 MiB raw file: data at a few offsets, holes elsewhere
with open("sparse.raw", "wb") as f:
    f.truncate(32 << 20)
    for off, b in ((0, 1), (5 << 20, 2), (17 << 20, 3), ((32 << 20) - 512, 4)):
        f.seek(off); f.write(bytes([b]) * 65536 if off + 65536 <= (32 << 20) else bytes([b]) * 512)
EOF
expect 0 "convert raw -> raw" "$D" convert -f raw -O raw sparse.raw copy.raw
used=$(( $(stat -c %b copy.raw) * 512 ))
[ "$used" -lt $((4 << 20)) ] && ok "convert keeps the copy sparse ($used bytes used)" || nok "convert keeps the copy sparse ($used bytes used)"
cmp -s sparse.raw copy.raw && ok "converted bytes are identical" || nok "converted bytes are identical"
if [ $HAVE_QEMU = 1 ]; then
    qemu-img compare -f raw -F raw sparse.raw copy.raw >/dev/null && ok "qemu-img compare says identical" || nok "qemu-img compare says identical"
    qemu-img map --output=json -f raw copy.raw > q.json
    "$D" map --output=json -f raw copy.raw > t.json
    same_json q.json t.json "map JSON equals qemu-img's"
    qemu-img measure --output=json -O raw sparse.raw > q.json
    "$D" measure --output=json -O raw sparse.raw > t.json
    same_json q.json t.json "measure JSON equals qemu-img's"
    qemu-img measure --output=json --size 10G -O raw > q.json
    "$D" measure --output=json --size 10G -O raw > t.json
    same_json q.json t.json "measure --size JSON equals qemu-img's"
else for i in 1 2 3 4; do skip "qemu-img comparison" "no qemu-img"; done; fi
expect 0 "compare identical" "$D" compare sparse.raw copy.raw
grep_out "^Images are identical.$" "compare says identical"
printf 'X' | dd of=copy.raw bs=1 seek=$((9 << 20)) conv=notrunc status=none
expect 1 "compare different" "$D" compare sparse.raw copy.raw
grep_out "^Content mismatch at offset 9437184!$" "compare names the first differing sector"
expect 2 "compare missing file" "$D" compare sparse.raw missing.raw
expect 0 "convert -S 0" "$D" convert -S 0 -O raw sparse.raw full.raw
used=$(( $(stat -c %b full.raw) * 512 ))
[ "$used" -ge $((32 << 20)) ] && ok "-S 0 allocates everything" || nok "-S 0 allocates everything ($used)"
expect 1 "convert -O nosuchfmt" "$D" convert -O nosuchfmt sparse.raw w.img
grep_out "Unknown file format 'nosuchfmt'" "unknown output format named" err
expect 0 "map human" "$D" map -f raw sparse.raw
grep_out "^0x500000 +0x10000 +0x500000 +sparse.raw" "human map lists data extents"
expect 0 "map --start-offset --max-length" "$D" map --output=json -f raw --start-offset 5M --max-length 1M sparse.raw
grep_out '"start": 5242880' "map starts at the offset"

# ----------------------------------------------------------- resize / dd
cp --sparse=always sparse.raw r.raw
expect 0 "resize +7M" "$D" resize -f raw r.raw +7M
[ "$(stat -c %s r.raw)" = $((39 << 20)) ] && ok "resize grew the file" || nok "resize grew the file"
expect 1 "shrink without --shrink" "$D" resize -f raw r.raw 8M
grep_out "Use the --shrink option" "shrink refusal explains" err
expect 0 "shrink with --shrink" "$D" resize -f raw --shrink r.raw 8M
[ "$(stat -c %s r.raw)" = $((8 << 20)) ] && ok "shrink worked" || nok "shrink worked"
# qemu-img reads SIZE before it opens the image, in QemuOpts' words
expect 1 "resize to a size that is not one" "$D" resize -f raw r.raw 4M+1
grep_out "Parameter 'size' expects a non-negative number below 2\^64" "resize size wording" err
expect 1 "resize past 2^64" "$D" resize -f raw r.raw 16E
grep_out "Value '16E' is out of range for parameter 'size'" "resize range wording" err
expect 1 "shrink to nothing" "$D" resize -f raw --shrink r.raw -8M
grep_out "New image size must be positive" "a size of 0 is refused before the shrink" err
[ "$(stat -c %s r.raw)" = $((8 << 20)) ] && ok "refused resizes leave the file" || nok "refused resizes leave the file"
expect 1 "file layer refuses preallocation=metadata" "$D" resize -f raw --preallocation=metadata r.raw 9M
grep_out "Unsupported preallocation mode: metadata" "raw metadata preallocation in qemu's words" err
expect 1 "bad preallocation name" "$D" resize -f raw --preallocation=bogus r.raw 9M
grep_out "Invalid preallocation mode 'bogus'" "preallocation name wording" err
# an external data file follows the virtual size (qemu's qcow2 does)
expect 0 "create with a data file" "$D" create -q -f qcow2 -o data_file=df.data df.qcow2 4M
expect 0 "grow an image with a data file" "$D" resize -f qcow2 df.qcow2 8M
[ "$(stat -c %s df.data)" = $((8 << 20)) ] && ok "growing grew the data file" || nok "growing grew the data file"
expect 0 "shrink an image with a data file" "$D" resize -f qcow2 --shrink df.qcow2 2M
[ "$(stat -c %s df.data)" = $((2 << 20)) ] && ok "shrinking shrank the data file" || nok "shrinking shrank the data file"
expect 0 "dd bs count skip" "$D" dd -f raw -O raw bs=64k count=20 skip=3 if=sparse.raw of=dd.raw
cmp -s dd.raw <(dd if=sparse.raw bs=64k count=17 skip=3 status=none) && ok "dd copies blocks skip..count as qemu-img does" || nok "dd copies blocks skip..count as qemu-img does"

# ----------------------------------------------------------- commit / rebase / dd on chains
# Each case runs the same command with qemu-img on a fresh chain in q/ and
# with diskimg on an identical one in d/; the results must read the same
# (qemu-img compare), pass qemu-img check, and keep the guest view the
# command promises to keep.  qemu-io writes the layers.
HAVE_QIO=0
command -v qemu-io >/dev/null && HAVE_QIO=1
# mkchain DIR: base <- mid <- top, 16 MiB (TOP_SIZE / OTHER_SIZE override,
# MID_OPTS / TOP_OPTS add create options),
# plus other.qcow2 to rebase onto.  top has zero clusters over data of mid
# and base, mid zero clusters over base, and writes not aligned to clusters.
mkchain() {
    rm -rf "$1"; mkdir "$1"
    (cd "$1" && qemu-img create -q -f qcow2 base.qcow2 16M &&
     qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x12 8M 2M' \
         -c 'write -P 0x13 15M 1M' base.qcow2 &&
     qemu-img create -q -f qcow2 ${MID_OPTS:-} -b base.qcow2 -F qcow2 mid.qcow2 &&
     qemu-io -f qcow2 -c 'write -P 0x21 1M 1M' -c 'write -z 8M 512k' \
         -c 'write -P 0x22 7777777 3333' mid.qcow2 &&
     qemu-img create -q -f qcow2 ${TOP_OPTS:-} -b mid.qcow2 -F qcow2 top.qcow2 ${TOP_SIZE:-} &&
     qemu-io -f qcow2 -c 'write -P 0x31 1536k 64k' -c 'write -z 0 256k' -c 'write -z 9M 64k' \
         -c 'write -P 0x32 12M 100k' -c "write -P 0x33 ${TOP_TAIL:-14M} 1M" top.qcow2 &&
     qemu-img create -q -f qcow2 other.qcow2 ${OTHER_SIZE:-16M} &&
     qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x5c 4M 1M' \
         -c 'write -P 0x13 6M 1M' other.qcow2 &&
     qemu-img convert -O raw top.qcow2 want.raw) > /dev/null
}
# both_chain DESC IMAGES -- ARGS...: the command on both chains; IMAGES are
# compared between them and checked.
both_chain() {
    local desc=$1 images=$2 f bad=""; shift 3
    mkchain q && rm -rf d && cp -r q d
    (cd q && qemu-img "$@" > /dev/null 2>&1); local qrc=$?
    run env -C d "$D" "$@"
    [ "$RC" = "$qrc" ] || bad="exit $RC, qemu-img $qrc: $(head -c 200 err)"
    for f in $images; do
        qemu-img compare q/$f d/$f > /dev/null 2>&1 || bad="$bad $f differs from qemu-img's;"
        qemu-img check d/$f > /dev/null 2>&1 || bad="$bad $f fails qemu-img check;"
    done
    if [ -z "$bad" ]; then ok "$desc"; else nok "$desc ($bad)"; fi
}
# guest_view DESC IMAGE: d/IMAGE still shows what top showed before
guest_view() {
    if qemu-img compare -f raw d/want.raw "d/$2" > /dev/null 2>&1; then ok "$1"
    else nok "$1 ($(qemu-img compare -f raw d/want.raw "d/$2" 2>&1 | head -c 200))"; fi
}
all="top.qcow2 mid.qcow2 base.qcow2"
if [ $HAVE_QEMU = 1 ] && [ $HAVE_QIO = 1 ]; then
    both_chain "commit into the backing file as qemu-img" "$all" -- commit top.qcow2
    grep_out "^Image committed.$" "commit says Image committed."
    guest_view "commit keeps the guest view (top over mid)" top.qcow2
    guest_view "mid now holds what top showed" mid.qcow2
    [ "$(qemu-img map --output=json d/top.qcow2 | grep -c '"depth": 0')" = 0 ] &&
        ok "commit empties the top image" || nok "commit empties the top image"
    used_d=$(du -k d/top.qcow2 | cut -f1); used_q=$(du -k q/top.qcow2 | cut -f1)
    [ "$used_d" -le $((used_q + 512)) ] && ok "commit gives the top's space back (${used_d} KiB, qemu-img ${used_q} KiB)" ||
        nok "commit gives the top's space back (${used_d} KiB, qemu-img ${used_q} KiB)"
    both_chain "commit -b base (3 layers into the bottom) as qemu-img" "$all" -- commit -b base.qcow2 top.qcow2
    guest_view "base now holds what top showed" base.qcow2
    guest_view "commit -b leaves top's view alone" top.qcow2
    mkchain keep
    both_chain "commit -d as qemu-img" "$all" -- commit -d top.qcow2
    cmp -s keep/top.qcow2 d/top.qcow2 && ok "commit -d leaves the top file as it was" || nok "commit -d leaves the top file as it was"
    guest_view "commit -d: mid holds what top showed" mid.qcow2
    both_chain "commit -r (rate limit) -q as qemu-img" "$all" -- commit -q -r 64M top.qcow2
    [ ! -s out ] && ok "commit -q prints nothing" || nok "commit -q prints nothing"
    TOP_SIZE=24M TOP_TAIL=20M both_chain "commit of a top larger than its base" "$all" -- commit top.qcow2
    [ "$(qemu-img info --output=json d/mid.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((24 << 20)) ] &&
        ok "the base grew to the top's size" || nok "the base grew to the top's size"
    guest_view "the grown base shows what top showed" mid.qcow2
    # Smaller clusters above: writes cover parts of mid's clusters, whose
    # rest must come from base; compat=0.10 has no zero clusters.
    MID_OPTS="-o compat=0.10" TOP_OPTS="-o cluster_size=4k" \
        both_chain "commit of 4 KiB clusters into a compat=0.10 image with a backing file" "$all" -- commit top.qcow2
    guest_view "mid shows what top showed" mid.qcow2
    both_chain "commit -p as qemu-img" "$all" -- commit -p top.qcow2
    grep_out "\(100.00/100%\)" "commit -p reaches 100%"

    both_chain "rebase (safe) onto another image as qemu-img" "top.qcow2" -- rebase -b other.qcow2 -F qcow2 top.qcow2
    guest_view "rebase keeps the guest view" top.qcow2
    grep_out '"backing-filename": "other.qcow2"' "rebase changed the backing file" \
        <(qemu-img info --output=json d/top.qcow2)
    both_chain "rebase -b '' as qemu-img" "top.qcow2" -- rebase -b '' top.qcow2
    guest_view "rebase -b '' keeps the guest view" top.qcow2
    qemu-img info d/top.qcow2 | grep -q '^backing file' &&
        nok "rebase -b '' drops the backing file" || ok "rebase -b '' drops the backing file"
    OTHER_SIZE=8M both_chain "rebase onto a shorter backing as qemu-img" "top.qcow2" -- rebase -b other.qcow2 -F qcow2 top.qcow2
    guest_view "rebase onto a shorter backing keeps the guest view" top.qcow2
    both_chain "rebase onto the bottom of the chain as qemu-img" "top.qcow2" -- rebase -p -b base.qcow2 -F qcow2 top.qcow2
    guest_view "rebase onto base keeps the guest view" top.qcow2
    grep_out "\(100.00/100%\)" "rebase -p reaches 100%"
    qemu-io -f qcow2 -c 'read -P 0x33 14M 1M' -c 'read -P 0x32 12M 100k' d/top.qcow2 > qio 2>&1 &&
        ! grep -q "Pattern verification failed" qio &&
        ok "data the top allocates stays" || nok "data the top allocates stays ($(head -c 200 qio))"

    mkchain d
    cp d/top.qcow2 top.before
    run env -C d "$D" rebase -b nosuch.qcow2 -F qcow2 top.qcow2
    [ "$RC" = 1 ] && ok "rebase onto a missing backing fails" || nok "rebase onto a missing backing fails ($RC)"
    one_line_err "missing new backing: one line naming it" "Could not open new backing file 'nosuch.qcow2'"
    cmp -s top.before d/top.qcow2 && ok "failed rebase leaves the image as it was" || nok "failed rebase leaves the image as it was"
    # Another process holding base without sharing writes (qemu's lock
    # byte 201, "write not shared") makes commit fail before it writes.
    cp d/base.qcow2 base.before
    python3 -c 'import fcntl, sys, time
f = open(sys.argv[1], "rb")
fcntl.lockf(f, fcntl.LOCK_SH, 1, 201)
open(sys.argv[2], "w").close()
time.sleep(30)' d/base.qcow2 d/locked &
    locker=$!
    for _ in $(seq 50); do [ -e d/locked ] && break; sleep 0.1; done
    run env -C d "$D" commit -b base.qcow2 top.qcow2
    kill "$locker"; wait "$locker" 2> /dev/null
    [ "$RC" = 1 ] && ok "commit into a base in use fails" || nok "commit into a base in use fails ($RC)"
    # qemu-img's two lines: the lock, then the hint naming the image
    if [ "$(wc -l < err)" = 2 ] && grep -q "Could not open 'base.qcow2': Failed to get \"write\" lock$" err &&
       grep -qx 'Is another process using the image \[base.qcow2\]?' err; then
        ok "base in use: the lock and a hint naming it"
    else nok "base in use: the lock and a hint naming it (stderr: $(head -c 300 err))"; fi
    cmp -s base.before d/base.qcow2 && ok "failed commit leaves base as it was" || nok "failed commit leaves base as it was"

    mkchain q
    qemu-img dd -f qcow2 -O raw bs=64k skip=5 count=200 if=q/top.qcow2 of=q/dd.raw
    expect 0 "dd bs skip count from a qcow2 chain" "$D" dd -f qcow2 -O qcow2 bs=64k skip=5 count=200 if=q/top.qcow2 of=dd.qcow2
    qemu-img compare -f raw -F qcow2 q/dd.raw dd.qcow2 > /dev/null 2>&1 &&
        ok "dd output reads as qemu-img dd's" || nok "dd output reads as qemu-img dd's"
    qemu-img check dd.qcow2 > /dev/null 2>&1 && ok "dd output passes qemu-img check" || nok "dd output passes qemu-img check"
else
    for i in $(seq 42); do skip "commit/rebase/dd on chains" "no qemu-img or qemu-io"; done
fi

# ----------------------------------------------------------- unsupported operations on raw
expect 63 "check on raw exits 63" "$D" check -f raw sparse.raw
grep_out "This image format does not support checks" "check wording" err
expect 1 "snapshot -c on raw" "$D" snapshot -c s1 sparse.raw
grep_out "Could not create snapshot 's1'" "snapshot wording" err
expect 1 "amend on raw" "$D" amend -f raw -o size=1M sparse.raw
grep_out "Format driver 'raw' does not support option amendment" "amend wording" err
expect 1 "commit without backing" "$D" commit -f raw sparse.raw
grep_out "Image does not have a backing file" "commit wording" err
expect 0 "snapshot -l on raw lists nothing" "$D" snapshot -l sparse.raw

# ----------------------------------------------------------- hostile or odd inputs
mkfifo fifo
expect 1 "info on a FIFO ends at once" "$D" info fifo
one_line_err "FIFO error is one line naming the file" fifo
expect 1 "convert from a FIFO ends at once" "$D" convert fifo out.raw
expect 1 "map on a FIFO ends at once" "$D" map fifo
mkdir dir
expect 1 "info on a directory" "$D" info dir
one_line_err "directory error is one line naming it" dir
: > empty.img
expect 0 "info on an empty file" "$D" info empty.img
expect 0 "map on an empty file" "$D" map --output=json empty.img
expect 0 "convert an empty file" "$D" convert empty.img empty-copy.img
expect 0 "info on /dev/null" "$D" info /dev/null
expect 0 "map on /dev/null" "$D" map /dev/null
expect 1 "info on a missing file" "$D" info missing.img
one_line_err "missing file error is one line naming it" missing.img

# ------------------------------------------------- child nodes (data file)
if [ $HAVE_QEMU = 1 ]; then
    qemu-img create -q -f qcow2 -o data_file=df.raw,preallocation=full df.qcow2 4M
    q=$(qemu-img info --output=json df.qcow2 | sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p')
    run "$D" info --output=json df.qcow2
    d=$(sed -n 's/.*"actual-size": \([0-9]*\).*/\1/p' out)
    if [ -n "$q" ] && [ "$q" = "$d" ]; then
        ok "actual-size leaves the qcow2 data file out, as qemu-img ($d)"
    else nok "actual-size leaves the qcow2 data file out, as qemu-img (qemu $q, ours $d)"; fi
    rm -f df.qcow2 df.raw
else skip "actual-size leaves the qcow2 data file out" "no qemu-img"; fi
expect 1 "a create failing after making the data file fails" \
    "$D" create -f qcow2 -o data_file=dnew.raw,encrypt.format=luks dnew.qcow2 1M
if [ ! -e dnew.raw ] && [ ! -e dnew.qcow2 ]; then
    ok "the failed create removed the data file it made"
else nok "the failed create removed the data file it made"; fi
echo keep > dold.raw
expect 1 "a create failing over an existing data file fails" \
    "$D" create -f qcow2 -o data_file=dold.raw,encrypt.format=luks dold.qcow2 1M
if [ -e dold.raw ] && [ ! -e dold.qcow2 ]; then
    ok "the failed create kept the data file that existed"
else nok "the failed create kept the data file that existed"; fi
rm -f dold.raw

# ----------------------------------------------------------- plugin loader
# A private copy of the library is not "in the build tree", so only
# DISKIMG_PLUGIN_PATH is searched: the loader's rules become testable.
mkdir -p lib plug/format plug/io
cp "$BUILD"/core/libdiskimg.so* lib/
cp "$BUILD"/plugins/io/posix/posix.so plug/io/
L=(env "LD_LIBRARY_PATH=$T/lib" "DISKIMG_PLUGIN_PATH=$T/plug")
run "${L[@]}" "$D" info -f raw sparse.raw
if [ "$RC" = 1 ] && grep -q "Unknown file format 'raw' (install package diskimg-format-raw)" err; then
    ok "without the raw plugin: missing-plugin hint"; else nok "without the raw plugin: missing-plugin hint ($RC: $(cat err))"; fi
printf 'QFI\373\0\0\0\3' > q2.img; truncate -s 1M q2.img
run "${L[@]}" "$D" info q2.img
grep_out "looks like a qcow2 image, but no plugin for it is installed \(install package diskimg-format-qcow2\)" "known magic without plugin is named, not opened as raw" err
cp "$FAKE"/fake-good.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "^fake " "a plugin from DISKIMG_PLUGIN_PATH is listed"
cp "$FAKE"/fake-good.so plug/format/fake-copy.so
run "${L[@]}" "$D" --list-formats
grep_out "duplicate format plugin name 'fake'" "duplicate name refused with one line" err
rm plug/format/fake-copy.so
cp "$FAKE"/fake-newabi.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "fake-newabi.so: built for plugin ABI 99" "newer ABI refused naming the file" err
rm plug/format/fake-newabi.so
cp "$FAKE"/fake-badyaml.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "fake-badyaml.so.*:[0-9]+:[0-9]+: " "malformed schema refused with line:column" err
rm plug/format/fake-badyaml.so
cp "$FAKE"/fake-iokind.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "is a io plugin but is installed among format plugins" "wrong kind refused" err
rm plug/format/fake-iokind.so
cp "$FAKE"/fake-misnamed.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "schema names plugin 'other'" "schema/descriptor name mismatch refused" err
rm plug/format/fake-misnamed.so
cp "$FAKE"/fake-cutops.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "fake-cutops.so: required callback 'close' is missing" "a callback cut by the ops struct_size counts as absent" err
rm plug/format/fake-cutops.so
cp "$FAKE"/fake-tinyops.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "fake-tinyops.so: ops struct_size 12 is too small to hold a callback" "ops struct_size short of one pointer refused" err
rm plug/format/fake-tinyops.so
cp "$FAKE"/fake-oldabi.so plug/format/
run "${L[@]}" "$D" --list-formats
grep_out "fake-oldabi.so: built for plugin ABI 1, this diskimg supports ABI 2 to 2" "ABI 1 plugin refused" err
rm plug/format/fake-oldabi.so
# Plugins are opened when needed: a broken one bothers only what reaches for it.
cp "$FAKE"/fake-good.so plug/format/fake.so
cp "$FAKE"/fake-newabi.so plug/format/
run "${L[@]}" "$D" info -f fake q2.img
if [ "$RC" = 0 ] && ! grep -q newabi err; then
    ok "info -f NAME opens only the plugin it needs"; else nok "info -f NAME opens only the plugin it needs ($RC: $(cat err))"; fi
run "${L[@]}" "$D" --list-formats
grep_out "fake-newabi.so: built for plugin ABI 99" "listing formats opens (and reports) every format plugin" err
rm plug/format/fake.so plug/format/fake-newabi.so
cp "$FAKE"/fake-good.so plug/format/fake-writable.so; chmod g+w plug/format/fake-writable.so
rm plug/format/fake-good.so
run "${L[@]}" "$D" --list-formats
grep_out "writable by group or others" "group-writable plugin refused" err
rm plug/format/fake-writable.so
# The loader checks the file it loads (no symlink to swap) and every
# directory above it.
cp "$FAKE"/fake-good.so plug/fake-target.so
ln -s "$PWD/plug/fake-target.so" plug/format/fake-link.so
run "${L[@]}" "$D" --list-formats
grep_out "fake-link.so: a symbolic link \(plugins are loaded from regular files only\)" \
    "a symlinked plugin is refused" err
rm plug/format/fake-link.so plug/fake-target.so
mkdir -p plug/format/shared && cp "$FAKE"/fake-good.so plug/format/shared/fake.so
chmod o+w plug/format/shared
run "${L[@]}" "$D" --list-formats
grep_out "fake.so: directory .*/shared is writable by group or others" \
    "a plugin under an others-writable directory is refused" err
chmod +t plug/format/shared
run "${L[@]}" "$D" --list-formats
if ! grep -q "shared" err && grep -q "^fake " out; then ok "a sticky others-writable directory (as /tmp) is accepted"
else nok "a sticky others-writable directory (as /tmp) is accepted ($(cat err))"; fi
chmod o-w,-t plug/format/shared
rm -r plug/format/shared

echo "1..$n"
[ "$failed" = 0 ]
