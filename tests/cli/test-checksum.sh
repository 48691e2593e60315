#!/bin/bash
# SPDX-License-Identifier: MIT
# diskimg checksum: blkhash's published test vectors, one digest for the
# same guest content in every format (images written by qemu-img), the
# digest of a backing chain, errors, JSON, progress and a 1 TiB sparse
# image.  Output is TAP.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
HAVE_QEMU=0
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null && HAVE_QEMU=1

TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-checksum.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
. "$TESTS/tap-lib.sh"

B=65536

# model FILE [ALG]: the blkhash construction computed independently, in
# Python, over the file's bytes (docs/checksum.md).
model() {
    python3 - "$1" "${2:-sha256}" <<'EOF'
import hashlib, sys
path, alg = sys.argv[1], sys.argv[2]
streams = [hashlib.new(alg) for _ in range(64)]
with open(path, 'rb') as f:
    i = 0
    while block := f.read(65536):
        streams[i % 64].update(hashlib.new(alg, block).digest())
        i += 1
root = hashlib.new(alg)
for s in streams:
    root.update(s.digest())
print(root.hexdigest())
EOF
}

# digest_is WANT DESC CHECKSUM-ARGS...: diskimg checksum prints WANT.
digest_is() {
    local want=$1 desc=$2; shift 2
    run "$D" checksum "$@"
    local got; got=$(awk '{print $1}' out)
    if [ "$RC" = 0 ] && [ "$got" = "$want" ]; then ok "$desc"
    else nok "$desc (exit $RC, got '$got', want '$want': $(head -c 200 err))"; fi
}

# fill FILE BYTE LEN...: appends runs of one byte ("-" = a hole) to FILE.
fill() {
    local file=$1; shift
    : > "$file"
    while [ $# -ge 2 ]; do
        local byte=$1 len=$2; shift 2
        if [ "$byte" = - ]; then
            truncate -s $(( $(stat -c %s "$file") + len )) "$file"
        else
            head -c "$len" /dev/zero | tr '\0' "$byte" >> "$file"
        fi
    done
}

# ------------------------------------------------------- published vectors
# blkhash's own tests (test/blkhash-test.c, 64 streams, sha256): each case
# is a list of extents, "-" for a hole that blkhash_zero() adds and "\0" for
# zero bytes hashed as data.  Here a hole is a hole in a raw file (block
# status reports it, nothing is read) and zeroes are written out.
vector() {
    local want=$1 name=$2; shift 2
    fill "$name.raw" "$@"
    digest_is "$want" "blkhash vector $name" -f raw "$name.raw"
}
H=$((B / 2))
vector 70eac04b8330211be9e1737b711e241fb3233a7d372ae9819f1aab6cf525a74b block_data A $B
vector 63aa20dde75b6c4756c8e10760f60ce817247f6fa7d1077977e606cc47ae6e15 block_data_zero '\0' $B
vector 63aa20dde75b6c4756c8e10760f60ce817247f6fa7d1077977e606cc47ae6e15 block_zero - $B
vector 5f83249849f938a21ddb2a3c2edd090bb152e1b7a4d667032c5e9ca42ef55385 partial_block_data A $H
vector 1a305cd50790418c9fc0904a5677bedc0aa7cdcbae43a080dd71388b6feca68d partial_block_data_zero '\0' $H
vector 1a305cd50790418c9fc0904a5677bedc0aa7cdcbae43a080dd71388b6feca68d partial_block_zero - $H
vector 20d599e6ed9c6ff44a78fef9af8d3c696a556cf535fcb0bba3ef6d519d7238e7 sparse - $((B * 8))
vector 310bf52aebda5c7c6b4a7725ee4fe528c369273bab1ed1f6a76f53f187bc0aec sparse_unaligned - $((B * 8)) - $H
vector 114987e2287276ffdd3dab2426a630a84d060cf01cd7d8e9d1bfa7ddb78ba5ad sparse_large - $((1 << 30))
vector 20d599e6ed9c6ff44a78fef9af8d3c696a556cf535fcb0bba3ef6d519d7238e7 zero '\0' $((B * 8))
vector 310bf52aebda5c7c6b4a7725ee4fe528c369273bab1ed1f6a76f53f187bc0aec zero_unaligned '\0' $((B * 8)) '\0' $H
vector cafbb8ce5060e31d858ed85b09fe38ae71d79ad5a210d56957a5a384c5a6f34d full A $H B $H C $H D $H E $H F $H
vector 5f7db317939052a697b1f56e15557e60fdd1b31e8b1363bda1d6913e862759cc full_unaligned A $H B $H C $H D $H E $H
vector a4b396c7f9ab5a902777418fb1ff3a485de459c6478a40a710ffa8eac3358517 mix \
    A $H - $H - $H '\0' $H E $H - $H - $H '\0' $H
vector 1aaa8cefa00b5ba1f33a39e239e68d66b28eae90db66065a5137166ebaecdcca mix_unaligned \
    A $H - $H - $H '\0' $H E $H - $H - $H

# ------------------------------------------------------------ the content
# A guest disk of 16 MiB + 1.5 KiB (a short last block) with data, holes,
# allocated zeroes, blocks half data and half hole, data at odd offsets and
# random data spanning more than one 2 MiB engine item.
python3 - <<'EOF'
import os, random
rnd = random.Random(16)
with open('content.raw', 'wb') as f:
    f.truncate(16 * 2**20 + 1536)
    def put(off, data):
        f.seek(off)
        f.write(data)
    put(0, b'A' * 65536)
    put(2 * 65536, bytes(2 * 65536))            # allocated zeroes
    put(4 * 65536, b'B' * 32768)                # half a block, then a hole
    put(5 * 65536 + 12288, b'C' * 4096)         # inside a hole
    put(1 * 2**20 + 512, rnd.randbytes(5 * 2**20 + 3000))
    put(9 * 2**20 - 65536, rnd.randbytes(65536))
    put(16 * 2**20 + 1024, b'Z' * 512)          # the short last block
EOF
WANT=$(model content.raw)
digest_is "$WANT" "raw: the digest equals the reference construction" -f raw content.raw
digest_is "$WANT" "a probed raw image gives the same digest" content.raw
WANT_MD5=$(model content.raw md5)
digest_is "$WANT_MD5" "-a md5 equals the reference construction with md5" -a md5 -f raw content.raw
WANT_SHA512=$(model content.raw sha512)
digest_is "$WANT_SHA512" "--algorithm=sha512 equals the reference with sha512" \
    --algorithm=sha512 -f raw content.raw
digest_is "$WANT" "-T none (O_DIRECT reads) gives the same digest" -T none -f raw content.raw
run "$D" --io=uring checksum -f raw content.raw
if [ "$RC" = 0 ] && [ "$(awk '{print $1}' out)" = "$WANT" ]; then ok "--io=uring: the same digest"
else nok "--io=uring: the same digest (exit $RC: $(head -c 200 err))"; fi
digest_is "$WANT" "--image-opts gives the same digest" --image-opts driver=raw,file.filename=content.raw
# The same bytes with no hole at all: every block is read.
cp --sparse=never content.raw dense.raw
digest_is "$WANT" "a fully allocated copy gives the same digest" -f raw dense.raw

# ------------------------------------------------------------ the formats
if [ "$HAVE_QEMU" = 1 ]; then
    # FORMAT [qemu-img convert options...]
    for spec in "qcow2" "qcow2 -c" "qcow2 -o cluster_size=4096" "qcow2 -o cluster_size=2M" \
                "qed" "vmdk" "vmdk -o subformat=streamOptimized" \
                "vmdk -o subformat=monolithicFlat" "vhdx" "vdi" "vpc -o force_size=on" \
                "qcow" "parallels"; do
        set -- $spec
        fmt=$1; shift
        name="img-$fmt-$(echo "$*" | tr -c 'a-zA-Z0-9\n' _)" what="$fmt${*:+ $*}"
        if ! qemu-img convert -f raw -O "$fmt" "$@" content.raw "$name" 2> qerr; then
            skip "$what: same digest as raw" "qemu-img cannot write it: $(head -c 100 qerr)"
            continue
        fi
        size=$(qemu-img info --output=json "$name" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
        if [ "$size" != "$(stat -c %s content.raw)" ]; then
            skip "$what: same digest as raw" "qemu-img made it $size bytes"
            continue
        fi
        digest_is "$WANT" "$what: same digest as raw" -f "$fmt" "$name"
    done
    digest_is "$WANT" "a probed qcow2 gives the same digest" img-qcow2-

    # LUKS: the guest content, not the ciphertext, is hashed.
    if qemu-img convert --object secret,id=s0,data=pw -f raw -O luks \
            -o key-secret=s0,iter-time=10 content.raw img.luks 2> qerr; then
        digest_is "$WANT" "luks: same digest as raw" --object secret,id=s0,data=pw \
            --image-opts "driver=luks,key-secret=s0,file.filename=img.luks"
    else skip "luks: same digest as raw" "qemu-img cannot write it"; fi

    # A backing chain: raw base, qcow2 over it with writes, zero writes
    # over data and a discard; the same changes made to a raw copy.
    qemu-img create -q -f qcow2 -b content.raw -F raw top.qcow2
    cp --sparse=always content.raw expect.raw
    for img in "-f qcow2 top.qcow2" "-f raw expect.raw"; do
        qemu-io $img -c "write -P 0x55 65536 65536" -c "write -z 1048576 1048576" \
            -c "write -P 0x66 3000000 70000" -c "write -z 0 4096" >/dev/null
    done
    WANT_CHAIN=$(model expect.raw)
    digest_is "$WANT_CHAIN" "a qcow2 over a raw backing file: the chain's content" -f qcow2 top.qcow2
    qemu-img create -q -f qcow2 -b top.qcow2 -F qcow2 top2.qcow2
    qemu-io -f qcow2 top2.qcow2 -c "write -P 0x77 8388608 131072" >/dev/null
    qemu-io -f raw expect.raw -c "write -P 0x77 8388608 131072" >/dev/null
    qemu-io -r -f raw content.raw -c "read -P 0x41 0 65536" >/dev/null \
        && ok "the backing file is unchanged" || nok "the backing file is unchanged"
    WANT_TOP=$(model expect.raw)
    digest_is "$WANT_TOP" "a three-level chain: the guest content" top2.qcow2
    qemu-img convert -O qcow2 -c top2.qcow2 flat.qcow2
    digest_is "$WANT_TOP" "the chain flattened and compressed: the same digest" flat.qcow2

    # An image another process has open for writing: refused as qemu-img
    # refuses, read anyway with -U.
    qemu-io -f qcow2 img-qcow2- -c "sleep 120000" >/dev/null 2>&1 &
    holder=$!
    wait_locked img-qcow2-
    run "$D" checksum img-qcow2-
    if [ "$RC" = 1 ] && grep -q 'Failed to get shared "write" lock' err; then
        ok "an image in use is refused (qemu-img's lock message)"
    else nok "an image in use is refused (exit $RC: $(head -c 200 err))"; fi
    digest_is "$WANT" "-U reads an image in use" -U img-qcow2-
    kill "$holder" 2>/dev/null
    wait "$holder" 2>/dev/null
else
    skip "formats: same digest as raw" "qemu-img or qemu-io is not installed"
fi

# A read-only format: cloop (whole 64 KiB blocks, so 16 MiB of the content).
if command -v create_compressed_fs >/dev/null; then
    head -c $((16 << 20)) content.raw > content16.raw
    create_compressed_fs -B 65536 content16.raw img.cloop >/dev/null 2>&1
    digest_is "$(model content16.raw)" "cloop: same digest as the raw bytes" -f cloop img.cloop
else skip "cloop: same digest as the raw bytes" "create_compressed_fs is not installed"; fi

# diskimg's own writers give the same digest too.
expect 0 "diskimg convert -O qcow2 -c" "$D" convert -f raw -O qcow2 -c content.raw own.qcow2
digest_is "$WANT" "an image diskimg compressed: same digest as raw" own.qcow2

# ------------------------------------------------------------- output
run "$D" checksum -f raw content.raw
if [ "$RC" = 0 ] && [ "$(cat out)" = "$WANT  content.raw" ]; then
    ok "the human line is 'DIGEST  FILENAME', as blksum"
else nok "the human line is 'DIGEST  FILENAME' (got '$(head -c 200 out)')"; fi
run "$D" checksum --output=json -a sha512 -f raw content.raw
if [ "$RC" = 0 ] && python3 - "$WANT_SHA512" <<'EOF'
import json, sys
o = json.load(open('out'))
assert list(o) == ['checksum', 'algorithm', 'filename'], list(o)
assert o == {'checksum': sys.argv[1], 'algorithm': 'sha512', 'filename': 'content.raw'}, o
EOF
then ok "--output=json: checksum, algorithm, filename"; else nok "--output=json ($(head -c 300 out))"; fi
run "$D" checksum -p -f raw content.raw
if [ "$RC" = 0 ] && grep -q '(100.00/100%)' out && tail -n 1 out | grep -qx "$WANT  content.raw"; then
    ok "-p draws the progress to 100 %, then prints the digest line"
else nok "-p progress ($(head -c 300 out | tr '\r' '|'))"; fi

# ------------------------------------------------------------- errors
expect 1 "an unknown algorithm fails" "$D" checksum -a whirlpool -f raw content.raw
one_line_err "it says the algorithm is not available" "hash algorithm 'whirlpool' is not available"
grep_out "available: .*sha256" "and lists the available ones" err
expect 1 "an algorithm only OpenSSL has fails" "$D" checksum -a sha3-256 -f raw content.raw
grep_out "'sha3-256' is not available in diskimg's crypto plugins" "it says no plugin provides it" err
expect 1 "a missing file fails" "$D" checksum nothere.img
one_line_err "it names the file" "nothere.img"
expect 1 "--output=xml fails" "$D" checksum --output=xml -f raw content.raw
expect 1 "no file name fails" "$D" checksum
expect 1 "a wrong format fails" "$D" checksum -f qcow2 content.raw
one_line_err "it names the file" "content.raw"

# ------------------------------------------------------------ 1 TiB sparse
WANT_TIB=$(python3 - <<'EOF'
import hashlib
# Every block is a zero block: each of the 64 streams hashes 2^24 / 64
# copies of the zero block's digest.
zero = hashlib.sha256(bytes(65536)).digest()
root = hashlib.sha256()
for _ in range(64):
    root.update(hashlib.sha256(zero * (2**24 // 64)).digest())
print(root.hexdigest())
EOF
)
expect 0 "a 1 TiB qcow2 is created" "$D" create -q -f qcow2 tib.qcow2 1T
start=$(date +%s%N)
digest_is "$WANT_TIB" "a 1 TiB sparse qcow2: the digest of 2^24 zero blocks" tib.qcow2
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "# 1 TiB sparse qcow2: ${ms} ms"
# About a second on an idle machine; the bound leaves room for a busy one.
if [ "$ms" -lt 10000 ]; then ok "a 1 TiB sparse qcow2 hashes in seconds, unread (${ms} ms)"
else nok "a 1 TiB sparse qcow2 took ${ms} ms"; fi
truncate -s 1T tib.raw
digest_is "$WANT_TIB" "a 1 TiB sparse raw file: the same digest" -f raw tib.raw

echo "1..$n"
[ "$failed" = 0 ]
