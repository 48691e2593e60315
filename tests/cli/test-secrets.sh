#!/bin/bash
# SPDX-License-Identifier: MIT
# --object secret as qemu-img 7.2 takes it: the syntax, the rules and the
# messages of every refusal, plain, file, base64 and encrypted (keyid/iv)
# secrets used as LUKS passphrases, and --object help.  Each refusal is
# also compared with qemu-img where it is installed.  Output is TAP.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
HAVE_QEMU=0
command -v qemu-img >/dev/null && HAVE_QEMU=1

TESTS=$(cd "$(dirname "$0")" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-secrets.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
. "$TESTS/tap-lib.sh"

"$D" create -q -f raw disk.raw 1M
KEY=01234567890123456789012345678901      # 32 bytes: an AES-256 key
IV16=AAAAAAAAAAAAAAAAAAAAAA==              # 16 zero bytes, base64

# refused OBJDEF... -- MESSAGE: info with these --object arguments fails
# with exactly MESSAGE (after the program name), and so does qemu-img.
refused() {
    local args=() msg
    while [ "$1" != -- ]; do args+=(--object "$1"); shift; done
    msg=$2
    run "$D" info "${args[@]}" disk.raw
    if [ "$RC" = 1 ] && [ "$(sed -n '1s/^diskimg: //p' err)" = "$msg" ]; then
        ok "refused: ${args[*]}"
    else
        nok "refused: ${args[*]} (exit $RC: $(head -c 300 err), want '$msg')"
    fi
    [ "$HAVE_QEMU" = 1 ] || return 0
    local q
    q=$(qemu-img info "${args[@]}" disk.raw 2>&1 >/dev/null | sed -n '1s/^qemu-img: //p')
    if [ "$q" = "$msg" ]; then ok "qemu-img says the same"; else nok "qemu-img says '$q'"; fi
}

# ------------------------------------------------------------- refusals
refused secret,id=s0,data=abc,foo=bar -- "Parameter 'foo' is unexpected"
refused secret,id=s0,data=abc secret,id=s0,data=def -- \
    "attempt to add duplicate property 's0' to object (type 'container')"
refused secret,data=abc -- "Parameter 'id' is missing"
refused secret -- "Parameter 'id' is missing"
refused id=s0,data=abc -- "Parameter 'qom-type' is missing"
refused foo,id=s0 -- "Parameter 'qom-type' does not accept value 'foo'"
refused secret,id=,data=abc -- "Parameter 'id' expects an identifier"
refused secret,id=0s,data=abc -- "Parameter 'id' expects an identifier"
refused secret,id=s0,data=abc,file=x -- "'file' and 'data' are mutually exclusive"
refused secret,id=s0 -- "Either 'file' or 'data' must be provided"
# an unescaped comma in data= is an error, never a truncated secret
refused secret,id=s0,data=a,b -- "Expected '=' after parameter 'b'"
refused secret,id=s0,format=hex,data=abc -- "Parameter 'format' does not accept value 'hex'"
refused secret,id=s0,data=abc,loaded=on -- "Property 'secret.loaded' is not writable"
refused secret,id=s0,data=%%%,format=base64 -- "Base64 data contains invalid characters"
refused secret,id=s0,data=abc,keyid=nokey,iv=$IV16 -- "No secret with id 'nokey'"
refused secret,id=s0,data=YWJj,keyid=s0,format=base64 -- "Secret with id 's0' has no data"
refused secret,id=k0,data=short secret,id=s0,data=abc,keyid=k0,iv=$IV16 -- \
    "Key should be 32 bytes in length"
refused secret,id=k0,data=$KEY secret,id=s0,data=abc,keyid=k0 -- \
    "IV is required to decrypt secret"
refused secret,id=k0,data=$KEY secret,id=s0,data=abc,keyid=k0,iv=AAAA -- \
    "IV should be 16 bytes in length not 3"
refused secret,id=k0,data=$KEY secret,id=s0,data=abc,keyid=k0,iv=$IV16 -- \
    "Length 3 must be a multiple of block size 16"
refused secret,id=k0,data=$KEY secret,id=s0,data=0123456789abcdef,keyid=k0,iv=$IV16 -- \
    "Incorrect number of padding bytes (82) found on decrypted data"
refused secret,id=s0,keyid=k0,data=x secret,id=k0,data=$KEY -- "No secret with id 'k0'"
refused secret,id=s0,file=/nonexistent/pw -- \
    "Unable to read /nonexistent/pw: Failed to open file “/nonexistent/pw”: No such file or directory"

# the JSON form
refused '{"qom-type":"secret","id":"s0","data":1}' -- "Invalid parameter type for 'data', expected: string"
refused '{"id":"s0","data":"x"}' -- "Parameter 'qom-type' is missing"
refused '{"qom-type":"secret","id":"s0","data":"x","foo":"y"}' -- "Parameter 'foo' is unexpected"
expect 0 "the JSON form is accepted" "$D" info --object '{"qom-type":"secret","id":"s0","data":"a,b"}' disk.raw

run "$D" info --object 'secret,id=0s,data=abc' disk.raw
grep_out "^Identifiers consist of letters, digits, '-', '.', '_', starting with a letter\.$" \
    "a bad id gets qemu's hint line" err

# every command qemu-img takes --object on parses it (and refuses a bad one)
"$D" create -q -f qcow2 q.qcow2 1M
for c in "amend -o compat=v3 q.qcow2" "bench -c 1 q.qcow2" "bitmap --add q.qcow2 b0" \
         "check q.qcow2" "commit q.qcow2" "compare q.qcow2 q.qcow2" "convert -O raw q.qcow2 o.raw" \
         "create -f raw n.raw 1M" "dd if=q.qcow2 of=o.raw" "info q.qcow2" "map q.qcow2" \
         "measure -O raw q.qcow2" "rebase -u -b b.raw -F raw q.qcow2" "resize q.qcow2 2M" \
         "snapshot -l q.qcow2"; do
    set -- $c
    cmd=$1; shift
    run "$D" "$cmd" --object secret,id=s0,data=a,b "$@"
    want=1
    [ "$cmd" = compare ] && want=2     # compare's exit code for errors, as qemu-img
    if [ "$RC" = "$want" ] && grep -q "^diskimg: Expected '=' after parameter 'b'$" err; then
        ok "$cmd parses --object"
    else
        nok "$cmd parses --object (exit $RC: $(head -c 200 err))"
    fi
done

# ------------------------------------------------------------ accepted
expect 0 ",, is a literal comma" "$D" info --object secret,id=s0,data=a,,b disk.raw
expect 0 "a trailing comma is ignored" "$D" info --object secret,id=s0,data=abc, disk.raw
expect 0 "an empty secret is a secret" "$D" info --object secret,id=s0,data= disk.raw
expect 0 "a repeated key keeps its last value" \
    "$D" info --object secret,id=s0,data=abc,format=raw,format=base64 disk.raw

# ------------------------------------------------- secrets as passphrases
# passphrase "a,b": a luks image made with one form of the secret opens with
# every other form, and no other passphrase opens it
if "$D" create -q -f luks --object 'secret,id=s0,data=a,,b' -o key-secret=s0,iter-time=10 \
        p.luks 1M 2> err; then
    ok "create with a secret holding a comma"
    opens() { # DESC OBJDEF...: the image opens (convert reads it) with key-secret=s0
        local desc=$1; shift
        local args=()
        for o in "$@"; do args+=(--object "$o"); done
        expect 0 "$desc" "$D" convert "${args[@]}" \
            --image-opts driver=luks,key-secret=s0,file.filename=p.luks -O raw back.raw
    }
    printf 'a,b' > pw.txt
    opens "the same passphrase from file=" secret,id=s0,file=pw.txt
    opens "the same passphrase in the JSON form" '{"qom-type": "secret", "id": "s0", "data": "a,b"}' 
    opens "the same passphrase in base64" secret,id=s0,data=YSxi,format=base64
    printf 'YSxi\n' > pw.b64
    opens "base64 from a file, newline allowed" secret,id=s0,file=pw.b64,format=base64
    if command -v openssl >/dev/null; then
        keyhex=$(printf %s "$KEY" | xxd -p -c 64)
        ct=$(printf 'a,b' | openssl enc -aes-256-cbc -K "$keyhex" -iv 00000000000000000000000000000000 \
             | base64 -w0)
        opens "an encrypted secret (keyid, iv, base64)" secret,id=k0,data=$KEY \
            secret,id=s0,data=$ct,format=base64,keyid=k0,iv=$IV16
        if [ "$HAVE_QEMU" = 1 ]; then
            expect 0 "qemu-img reads it with the same encrypted secret" \
                qemu-img convert --object secret,id=k0,data=$KEY \
                --object secret,id=s0,data=$ct,format=base64,keyid=k0,iv=$IV16 \
                --image-opts driver=luks,key-secret=s0,file.filename=p.luks -O raw qback.raw
        fi
    else
        skip "an encrypted secret" "openssl is not installed"
    fi
    # raw -> luks -> raw: bit-identical, and the holes come back as holes
    S='secret,id=s0,data=a,,b'
    python3 -c "
import sys
f = open('holes.raw', 'wb'); f.truncate(4 << 20)
for off, b in ((0, 0x11), (2 << 20, 0x22), ((4 << 20) - 4096, 0x33)):
    f.seek(off); f.write(bytes([b]) * 65536 if off + 65536 <= 4 << 20 else bytes([b]) * 4096)
"
    expect 0 "convert raw -> luks" "$D" convert --object "$S" -O luks -o key-secret=s0,iter-time=10 \
        holes.raw holes.luks
    expect 0 "convert luks -> raw" "$D" convert --object "$S" \
        --image-opts driver=luks,key-secret=s0,file.filename=holes.luks -O raw holes.back
    if cmp -s holes.raw holes.back; then ok "raw -> luks -> raw is bit-identical"; else nok "raw -> luks -> raw differs"; fi
    run "$D" map --output=json holes.back
    grep_out '"start": 65536, "length": 2031616, "depth": 0, "present": true, "zero": true, "data": false' \
        "the holes stay holes in the raw copy"
    if [ "$HAVE_QEMU" = 1 ]; then
        expect 0 "qemu-img compares our luks image equal to the raw one" \
            qemu-img compare --object "$S" --image-opts \
            driver=luks,key-secret=s0,file.filename=holes.luks driver=raw,file.filename=holes.raw
    fi
    expect 1 "a truncated passphrase does not open it" "$D" convert --object secret,id=s0,data=a \
        --image-opts driver=luks,key-secret=s0,file.filename=p.luks -O raw back.raw
    grep_out "Invalid password, cannot unlock any keyslot" "wrong passphrase message" err
    # secrets are never echoed
    "$D" create -f luks --object secret,id=s0,data=Sup3rS3cr3t -o key-secret=s0,iter-time=10 \
        v.luks 1M > out 2> err
    if grep -q Sup3rS3cr3t out err; then nok "create prints no secret"; else ok "create prints no secret"; fi
else
    skip "secrets as passphrases" "$(head -c 200 err)"
fi

# ------------------------------------------------------------------ help
expect 0 "--object help exits 0" "$D" info --object help disk.raw
grep_out "^List of user creatable objects:$" "--object help lists the object types"
grep_out "^  secret$" "... secret among them"
expect 0 "--object secret,help exits 0" "$D" info --object secret,help disk.raw
grep_out "^  keyid=<string>$" "--object secret,help lists the properties"

echo "1..$n"
[ "$failed" = 0 ]
