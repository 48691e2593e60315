#!/bin/bash
# SPDX-License-Identifier: MIT
# Makes the seed corpora of the fuzz harnesses (docs/fuzzing.md):
#
#     make-seeds.sh BUILD-DIR OUT-DIR [--no-harvest]
#
# OUT-DIR/TARGET/ gets small valid inputs for every harness: images of every
# format and subformat made by qemu-img and by BUILD-DIR's diskimg (small
# sizes and clusters, some data, snapshots, bitmaps, backing names,
# encryption with the harnesses' password), option strings, schemas (YAML
# and compact JSON), vmdk descriptors, dmg property lists, LUKS headers and
# --object strings.  Unless --no-harvest, the images the format unit tests
# make (hand-built and damaged ones too, the only source of bochs and dmg
# images on Debian) are kept as well: the test runs under strace with its
# unlink calls made to do nothing.  Files over 4 MiB are dropped; most
# seeds are far under 64 KiB.  Seeds are made at campaign time and never
# committed.
set -u
build=$(realpath "$1"); out=$(mkdir -p "$2" && realpath "$2"); harvest=${3:-}
src=$(cd "$(dirname "$0")/../../.." && pwd)
diskimg=$build/commands/diskimg
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=fuzzpass          # the password fuzz-format.c opens encrypted images with
secret="--object secret,id=sec0,data=$pass"

seed() {   # seed TARGET FILE...: copies files into OUT-DIR/TARGET (name kept unique)
    local t=$1; shift
    mkdir -p "$out/$t"
    for f in "$@"; do
        [ -f "$f" ] || continue
        [ "$(stat -c %s "$f")" -le $((4 * 1024 * 1024)) ] || continue   # see campaign.sh
        cp "$f" "$out/$t/$(basename "$f" | tr -c 'A-Za-z0-9._\n-' _)"
    done
}
q() { qemu-img "$@" >/dev/null 2>&1 || echo "make-seeds: qemu-img $* failed" >&2; }
d() { "$diskimg" "$@" >/dev/null 2>&1 || echo "make-seeds: diskimg $* failed" >&2; }
io() { qemu-io "$@" >/dev/null 2>&1 || echo "make-seeds: qemu-io $* failed" >&2; }
data() { io -f "$1" -c "write -P 0x5a 0 4k" -c "write -P 0xa5 12k 4k" "$2"; }
trim() {   # trim FILE: drops the zero MiBs at its end
    python3 - "$1" <<'PY'
import sys
p = sys.argv[1]; b = open(p, 'rb').read(); mib = 1 << 20; end = len(b)
while end > 0 and not any(b[max(0, end - mib):end]):
    end = max(0, end - mib)
open(p, 'r+b').truncate(end)
PY
}

# ------------------------------------------------------------------ images
mkdir img && cd img || exit 1
q create -f raw r.raw 64k; data raw r.raw; seed raw r.raw
printf 'x' > r1.raw; : > r0.raw; seed raw r1.raw r0.raw

for opts in compat=0.10,cluster_size=512 compat=1.1,cluster_size=4k \
            cluster_size=4k,refcount_bits=1 cluster_size=4k,refcount_bits=64 \
            cluster_size=16k,extended_l2=on cluster_size=4k,lazy_refcounts=on; do
    f=q2-$(echo "$opts" | tr ',=' '__').qcow2
    q create -f qcow2 -o "$opts" "$f" 256k; data qcow2 "$f"; seed qcow2 "$f"
done
q create -f qcow2 -o cluster_size=4k q2-snap.qcow2 128k; data qcow2 q2-snap.qcow2
q snapshot -c one q2-snap.qcow2; io -f qcow2 -c "write -P 1 0 4k" q2-snap.qcow2
q bitmap --add q2-snap.qcow2 bm0; seed qcow2 q2-snap.qcow2
q create -f qcow2 -o cluster_size=4k -b r.raw -F raw q2-back.qcow2; seed qcow2 q2-back.qcow2
q convert -c -O qcow2 -o cluster_size=4k r.raw q2-comp.qcow2; seed qcow2 q2-comp.qcow2
q convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd r.raw q2-zstd.qcow2
seed qcow2 q2-zstd.qcow2
q create -f qcow2 $secret -o cluster_size=4k,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 q2-luks.qcow2 64k
seed qcow2 q2-luks.qcow2
q create -f qcow2 -o cluster_size=4k,data_file=q2-ext.data q2-ext.qcow2 64k; seed qcow2 q2-ext.qcow2
d create -f qcow2 -o cluster_size=4k d-q2.qcow2 256k; seed qcow2 d-q2.qcow2

q create -f qcow qc.qcow 64k; data qcow qc.qcow; seed qcow qc.qcow
q create -f qcow -b r.raw -F raw qc-back.qcow; seed qcow qc-back.qcow
q create -f qcow $secret -o encrypt.format=aes,encrypt.key-secret=sec0 qc-aes.qcow 64k
seed qcow qc-aes.qcow

q create -f qed -o cluster_size=4k,table_size=2 qe.qed 256k; data qed qe.qed; seed qed qe.qed
q create -f qed -o cluster_size=4k,table_size=2 -b r.raw -F raw qe-back.qed; seed qed qe-back.qed

for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    q create -f vmdk -o subformat=$sub vm-$sub.vmdk 128k
    [ $sub = streamOptimized ] || data vmdk vm-$sub.vmdk
    seed vmdk vm-$sub.vmdk
    # descriptors: the text of the flat and split kinds, the embedded one of sparse
    case $sub in
        *Flat|twoGb*) seed vmdk-desc vm-$sub.vmdk ;;
        *) dd if=vm-$sub.vmdk of=vm-$sub.desc bs=512 skip=1 count=20 status=none
           tr -d '\000' < vm-$sub.desc > vm-$sub.txt; seed vmdk-desc vm-$sub.txt ;;
    esac
done
q convert -O vmdk -o subformat=streamOptimized r.raw vm-stream-data.vmdk; seed vmdk vm-stream-data.vmdk
q create -f vmdk -b vm-monolithicSparse.vmdk -F vmdk vm-child.vmdk; seed vmdk vm-child.vmdk

q create -f vdi vd.vdi 64k; data vdi vd.vdi; seed vdi vd.vdi
q create -f vdi -o static=on vd-static.vdi 64k; seed vdi vd-static.vdi
q create -f vpc vp.vpc 64k; data vpc vp.vpc; seed vpc vp.vpc
q create -f vpc -o subformat=fixed vp-fixed.vpc 64k; seed vpc vp-fixed.vpc
q create -f vpc -o force_size=on vp-force.vpc 100k; seed vpc vp-force.vpc
# vhdx puts its regions at 1 MiB boundaries: an image is 8 MiB of which
# only the first 4 hold metadata, and the zero MiBs after the last region
# are cut (the data seed is cut by the campaign's 4 MiB input length)
q create -f vhdx -o block_size=1M,log_size=1M vh.vhdx 4M; trim vh.vhdx; seed vhdx vh.vhdx
q create -f vhdx -o block_size=1M,log_size=1M vh-data.vhdx 4M; data vhdx vh-data.vhdx
seed vhdx vh-data.vhdx
q create -f vhdx -o block_size=8M,log_size=1M,subformat=dynamic vh-8m.vhdx 64M; trim vh-8m.vhdx
seed vhdx vh-8m.vhdx
d create -f vhdx -o block_size=1M,log_size=1M d-vh.vhdx 4M; trim d-vh.vhdx; seed vhdx d-vh.vhdx
q create -f parallels -o cluster_size=4k pa.parallels 64k; data parallels pa.parallels
seed parallels pa.parallels
q create -f luks $secret -o key-secret=sec0,iter-time=10 lu.luks 16k; seed luks lu.luks
d create -f luks $secret -o key-secret=sec0,iter-time=10 d-lu.luks 16k; seed luks d-lu.luks
# aes-128-cbc: 16-byte keys make the key material (and the seed) a quarter
# of xts's 2 MiB
q create -f luks $secret -o key-secret=sec0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256 lu128.luks 16k
io --object secret,id=sec0,data=$pass --image-opts -c "write -P 0x5a 0 4k" driver=luks,key-secret=sec0,file.filename=lu128.luks
seed luks lu128.luks
d create -f luks $secret -o key-secret=sec0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64 d-lu128.luks 16k
seed luks d-lu128.luks
for f in lu.luks d-lu.luks lu128.luks d-lu128.luks; do head -c 592 $f > $f.hdr; seed luks-header $f.hdr; done
q create -f raw cl.raw 64k; data raw cl.raw
create_compressed_fs -B 4096 cl.raw cl.cloop >/dev/null 2>&1 && seed cloop cl.cloop
cd "$work"

# -------------------------------------------------- unit-test images (harvest)
if [ "$harvest" != --no-harvest ] && command -v strace >/dev/null; then
    plugins=$build/plugins
    for fmt in raw qcow2 qcow qed vmdk vdi vpc vhdx parallels luks bochs cloop dmg; do
        t=$plugins/format/$fmt/test-$fmt
        [ -x "$t" ] || continue
        mkdir -p "harvest-$fmt"
        TMPDIR=$work/harvest-$fmt DISKIMG_PLUGIN_PATH=$plugins/format/$fmt:$plugins/format/raw:$plugins/io/posix:$plugins/crypto/nettle \
            timeout 120 strace -f -qq -o /dev/null -e trace=unlink,unlinkat,rmdir \
            -e inject=unlink,unlinkat,rmdir:retval=0 "$t" >/dev/null 2>&1
        mkdir -p "$out/$fmt"
        find "harvest-$fmt" -type f -size -257k | while read -r f; do
            cp "$f" "$out/$fmt/h-$(echo "${f#harvest-$fmt/}" | tr '/' _)"
        done
        [ $fmt = dmg ] && find "harvest-$fmt" -type f -name '*.dmg' | while read -r f; do
            # the property list alone, for fuzz-dmg-plist
            python3 - "$f" "$out/dmg-plist/$(basename "$f").xml" <<'PY'
import os, sys
b = open(sys.argv[1], 'rb').read()
s = b.find(b'<?xml'); e = b.find(b'</plist>', s)
if s >= 0 and e > s:
    os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
    open(sys.argv[2], 'wb').write(b[s:e + 8])
PY
        done
        [ $fmt = vmdk ] && find "harvest-$fmt" -type f -size -64k -name '*.vmdk' | while read -r f; do
            grep -qa 'createType' "$f" && ! grep -qaP '\x00' "$f" && seed vmdk-desc "$f"
        done
    done
fi

# ------------------------------------------------------------- parser inputs
mkdir -p "$out/options" "$out/schema" "$out/schema-json" "$out/secret-object"
i=0
for text in "cluster_size=64k,compat=1.1" "size=1G,preallocation=metadata" \
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-256" \
            "subformat=streamOptimized,adapter_type=lsilogic,hwversion=6" \
            "backing_file=a.img,backing_fmt=qcow2,lazy_refcounts=on" "help" \
            "compression_type=zstd,refcount_bits=16,extended_l2=on" "static=on" \
            "block_size=1M,log_size=8M,block_state_zero=off" "key-secret=sec0,iter-time=10" \
            "cache.direct=on,aio=threads" "a,,b=c,flag" "cluster_size=1.5M"; do
    for pick in 0 1 2 3 5 8 13 21 34; do
        i=$((i + 1))
        { printf "\\x$(printf %02x $pick)"; printf '%s' "$text"; } > "$out/options/o$i"
    done
done
for y in "$src"/plugins/*/*/*.yaml "$src"/schema/*.yaml; do
    cp "$y" "$out/schema/$(basename "$y")"
    python3 -c 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1])), separators=(",", ":")))' \
        "$y" > "$out/schema-json/$(basename "$y" .yaml).json" 2>/dev/null || rm -f "$out/schema-json/$(basename "$y" .yaml).json"
done
cp "$out"/schema-json/*.json "$out/schema/" 2>/dev/null
i=0
for o in "secret,id=s1,data=hello" "secret,id=s2,data=aGVsbG8=,format=base64" \
         "secret,id=s3,data=a,,b" "secret,help" "help" '{"qom-type":"secret","id":"j1","data":"x"}' \
         "secret,id=s4,keyid=k32,iv=AAAAAAAAAAAAAAAAAAAAAA==,format=base64,data=$(printf 'sixteen bytes!!\x01' | openssl enc -aes-256-cbc -K $(printf 0123456789abcdef0123456789abcdef | od -An -tx1 | tr -d ' \n') -iv 00000000000000000000000000000000 -nopad 2>/dev/null | base64 -w0)" \
         "secret,id=s5,data=x,loaded=on" "other,id=x" "secret,id=9bad,data=x"; do
    i=$((i + 1)); printf '%s' "$o" > "$out/secret-object/s$i"
done
for t in "$out"/*/; do printf '%-14s %4d files\n' "$(basename "$t")" "$(ls "$t" | wc -l)"; done
