#!/bin/bash
# SPDX-License-Identifier: MIT
# The nbd io plugin against real NBD servers: qemu-nbd (qemu-utils) and
# nbdkit, each started here on a unix socket in a temporary directory and
# stopped by its pid at the end.  TAP output; exit 77 when a server program
# is missing (CI installs them: tests/scripts/deps.sh).
#
# Environment (from tests/meson.build): DISKIMG, DISKIMG_SOURCE_ROOT.
set -u
. "$DISKIMG_SOURCE_ROOT/tests/cli/tap-lib.sh"

for tool in qemu-nbd qemu-img nbdkit python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "1..0 # SKIP $tool is not installed"
        exit 77
    fi
done
D=$DISKIMG
T=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
cd "$T" || exit 1

# wait_socket PATH: the server is listening
wait_socket() {
    for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done
    return 1
}
# serve_qemu NAME ARGS...: qemu-nbd on $T/NAME.sock, its pid recorded
serve_qemu() {
    local name=$1; shift
    qemu-nbd --fork --persistent --pid-file="$T/$name.pid" -k "$T/$name.sock" "$@" 2>"$T/$name.err"
    wait_socket "$T/$name.sock" && PIDS+=("$(cat "$T/$name.pid")")
}
# serve_kit NAME ARGS...: nbdkit on $T/NAME.sock with its requests logged
# to $T/NAME.log
serve_kit() {
    local name=$1; shift
    nbdkit -U "$T/$name.sock" -P "$T/$name.pid" --filter=log "$@" logfile="$T/$name.log" \
        2>"$T/$name.err"
    wait_socket "$T/$name.sock" && PIDS+=("$(cat "$T/$name.pid")")
}
stop() {   # stop NAME: ends the server of that name (by its pid)
    local p; p=$(cat "$T/$1.pid"); kill "$p"
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
}
uri() { echo "nbd+unix:///${2:-}?socket=$T/$1.sock"; }

# A sparse source with three data extents of random bytes.
truncate -s 64M src.raw
dd if=/dev/urandom of=src.raw bs=64K seek=16 count=16 conv=notrunc status=none     # 1 MiB at 1 MiB
dd if=/dev/urandom of=src.raw bs=64K seek=320 count=32 conv=notrunc status=none    # 2 MiB at 20 MiB
dd if=/dev/urandom of=src.raw bs=64K seek=960 count=1 conv=notrunc status=none     # 64 KiB at 60 MiB
qemu-img convert -f raw -O qcow2 src.raw src.qcow2

# ------------------------------------------------ qemu-nbd serving a qcow2
serve_qemu q -f qcow2 src.qcow2 || { nok "qemu-nbd starts"; echo "1..$n"; exit 1; }
Q=$(uri q)
expect 0 "convert of a qcow2 served by qemu-nbd to a local raw" \
    "$D" convert -O raw "$Q" out.raw
expect 0 "qemu-img compare finds the local raw identical to the qcow2" \
    qemu-img compare -U -f raw -F qcow2 out.raw src.qcow2
run "$D" info --output=json "$Q"; cp out info.d
run qemu-img info --output=json "$Q"; cp out info.q
# qemu-img rebuilds the name (nbd+unix://?socket=...) and, for raw over
# NBD, shows no dirty-flag (docs/remote-nbd.md)
same_json info.d info.q "info --output=json as qemu-img's (filename, dirty-flag aside)" \
    filename dirty-flag
run "$D" map --output=json "$Q"; cp out map.d
run qemu-img map --output=json "$Q"; cp out map.q
if cmp -s map.d map.q && grep -q '"data": false' map.d; then ok "map as qemu-img's, holes shown"
else nok "map differs: $(diff map.d map.q | head -5)"; fi
expect 0 "compare of the export with the local raw" "$D" compare "$Q" out.raw
run "$D" check "$Q"; want=$RC
run qemu-img check "$Q"
if [ "$want" = "$RC" ]; then ok "check exits as qemu-img's ($RC)"; else nok "check: $want vs $RC"; fi
expect 0 "the legacy nbd:unix:PATH name" "$D" compare "nbd:unix:$T/q.sock" out.raw
expect 0 "--image-opts driver=raw,file.driver=nbd,file.server.*" \
    "$D" convert --image-opts "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/q.sock" out3.raw
expect 0 "... reads the same bytes" cmp out.raw out3.raw
stop q

# --------------------------------------- a qcow2 file as the export's bytes
serve_qemu f -f raw src.qcow2
run "$D" info "$(uri f)"
grep_out "^file format: qcow2$" "the format over NBD is probed (qcow2 inside a raw export)"
expect 0 "a qcow2 read over NBD converts identically" "$D" convert -O raw "$(uri f)" out2.raw
expect 0 "... and compares identical" cmp out.raw out2.raw
expect 0 "--image-opts driver=qcow2,file.driver=nbd" \
    "$D" convert --image-opts "driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path=$T/f.sock" out3.raw
expect 0 "... reads the guest's bytes" cmp src.raw out3.raw
stop f

# ------------------------------------- onto an nbdkit memory export, sparse
# The requests the server logged: writes carry data only where the source
# has data; holes become no write at all (the export was zeroed first).
# raw's create allocates the image's first block (4 KiB of zeroes at offset
# 0, as qemu's file driver does); with ALLOW_FIRST_BLOCK=1 that one write is
# accepted and reported.
check_writes() {   # LOG DESC: every Write lies inside a data extent of src.raw
    qemu-img map -f raw --output=json src.raw > src.map
    if python3 - "$1" src.map "${ALLOW_FIRST_BLOCK:-0}" > why <<'EOF'
import json, re, sys
log, extents = sys.argv[1], json.load(open(sys.argv[2]))
allow_first = sys.argv[3] == "1"
data = [(e["start"], e["start"] + e["length"]) for e in extents if e["data"]]
writes = [(int(o, 16), int(c, 16)) for o, c in
          re.findall(r"connection=\d+ Write id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+)",
                     open(errors="replace", file=log).read())]
first = [w for w in writes if allow_first and w == (0, 4096)]
writes = [w for w in writes if w not in first]
written = sum(c for _, c in writes)
want = sum(b - a for a, b in data)
outside = [w for w in writes if not any(a <= w[0] and w[0] + w[1] <= b for a, b in data)]
print(f"{len(writes)} WRITE requests, {written} bytes, for {len(data)} data extents of {want} bytes"
      + (", plus create's first block" if first else ""))
sys.exit(0 if written == want and not outside else 1)
EOF
    then ok "$2: $(cat why)"; else nok "$2: $(cat why)"; fi
}
serve_kit m memory 1G
expect 0 "convert of a local sparse raw onto an nbdkit memory export" \
    "$D" convert -O raw src.raw "$(uri m)"
ALLOW_FIRST_BLOCK=1 check_writes m.log "holes were not written as data"
conns=$(grep -ao 'connection=[0-9]* Connect' m.log | sort -u | wc -l)
if [ "$conns" -ge 2 ]; then ok "multi-conn: $conns connections"; else nok "multi-conn: $conns connection(s)"; fi
expect 0 "the export now compares identical with the source" "$D" compare -f raw -F raw src.raw "$(uri m)"
expect 0 "... as qemu-img sees it" qemu-img compare -f raw -F raw src.raw "$(uri m)"
: > m.log
expect 0 "connections=1 is honoured" \
    "$D" convert --image-opts "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/m.sock,file.connections=1" out3.raw
conns=$(grep -ao 'connection=[0-9]* Connect' m.log | sort -u | wc -l)
if [ "$conns" = 1 ]; then ok "... one connection"; else nok "... $conns connections"; fi
stop m

# Any format on top: a qcow2 written onto an export, checked by qemu-img.
serve_kit c memory 256M
expect 0 "convert -O qcow2 onto an export" "$D" convert -O qcow2 src.raw "$(uri c)"
expect 0 "qemu-img check finds the qcow2 on the export clean" qemu-img check "$(uri c)"
expect 0 "qemu-img compare finds it identical to the source" \
    qemu-img compare -f raw src.raw "$(uri c)"
stop c

# -n --target-is-zero onto a fresh export: only the data travels.
serve_kit z memory 64M
expect 0 "convert -n --target-is-zero onto a fresh export" \
    "$D" convert -n --target-is-zero -O raw src.raw "$(uri z)"
check_writes z.log "only data extents were written"
if ! grep -aq ' Zero ' z.log; then ok "... and no zeroes were sent"; else nok "Zero requests logged"; fi
stop z

# convert -n onto an export full of old data: holes must read zero after.
serve_kit n memory 64M
dd if=/dev/urandom of=junk.raw bs=1M count=64 status=none
expect 0 "fill the export with junk" qemu-img convert -n -f raw -O raw junk.raw "$(uri n)"
: > n.log
expect 0 "convert -n onto the export" "$D" convert -n -O raw src.raw "$(uri n)"
check_writes n.log "convert -n writes data only where the source has data"
if grep -aq ' Zero ' n.log; then ok "convert -n zeroes the holes with WRITE_ZEROES"; else nok "no Zero requests logged"; fi
expect 0 "the export compares identical with the source" qemu-img compare -f raw -F raw src.raw "$(uri n)"
stop n

# ------------------------------------------------------------------ errors
expect 1 "no server" "$D" info "nbd+unix:///?socket=$T/none.sock"
one_line_err "... one line: Failed to connect" "Failed to connect to '$T/none.sock': No such file or directory"
expect 1 "bad URI (nbd+unix without socket=)" "$D" info "nbd+unix:///x"
one_line_err "... one line naming the problem" "socket=PATH"
expect 1 "bad URI (query on TCP)" "$D" info "nbd://localhost/x?socket=/s"
one_line_err "... one line naming the parameter" "unexpected query parameter 'socket'"
expect 1 "legacy name without a port" "$D" info "nbd:localhost"
one_line_err "... as qemu-img words it" "error parsing address 'localhost'"
cp src.raw named.raw
serve_qemu x -f raw -x disk named.raw
expect 0 "the named export opens" "$D" compare "$(uri x disk)" src.raw
expect 1 "unknown export" "$D" info "$(uri x other)"
one_line_err "... one line naming the export" "Requested export 'other' not available"
stop x
serve_qemu r -f raw -r src.raw
expect 1 "write onto a read-only export" "$D" convert -n -O raw out.raw "$(uri r)"
one_line_err "... refused with a clear error" "NBD export is read-only"
expect 0 "... which still reads" "$D" compare "$(uri r)" src.raw
stop r

# -------------------------------------------------------------------- TLS
if command -v certtool >/dev/null && command -v psktool >/dev/null; then
    mkdir pki client
    certtool --generate-privkey --outfile pki/ca-key.pem 2>/dev/null
    printf 'cn = diskimg test CA\nca\ncert_signing_key\nexpiration_days = 2\n' > ca.info
    certtool --generate-self-signed --load-privkey pki/ca-key.pem --template ca.info \
        --outfile pki/ca-cert.pem 2>/dev/null
    for role in server client; do
        certtool --generate-privkey --outfile pki/$role-key.pem 2>/dev/null
        printf 'cn = localhost\ndns_name = localhost\nip_address = 127.0.0.1\ntls_www_%s\nencryption_key\nsigning_key\nexpiration_days = 2\n' \
            $role > $role.info
        certtool --generate-certificate --load-ca-certificate pki/ca-cert.pem \
            --load-ca-privkey pki/ca-key.pem --load-privkey pki/$role-key.pem \
            --template $role.info --outfile pki/$role-cert.pem 2>/dev/null
    done
    cp pki/ca-cert.pem pki/client-cert.pem pki/client-key.pem client/
    serve_kit t --tls=require --tls-certificates="$T/pki" --tls-verify-peer memory 64M
    TO="driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/t.sock"
    expect 1 "a TLS-only server refuses a plain connection" "$D" info "$(uri t)"
    expect 0 "x509: --object tls-creds-x509 and tls-creds=" \
        "$D" convert -n --object "tls-creds-x509,id=tls0,dir=$T/client,endpoint=client" \
        src.raw --target-image-opts "$TO,file.tls-creds=tls0"
    expect 0 "... read back over TLS" \
        "$D" convert --object "tls-creds-x509,id=tls0,dir=$T/client,endpoint=client" \
        --image-opts "$TO,file.tls-creds=tls0" out4.raw
    expect 0 "... the same bytes" cmp <(head -c 64M src.raw) out4.raw
    if grep -aq 'tls=1' t.log; then ok "... the server logged TLS connections"; else nok "no tls=1 in the log"; fi
    expect 1 "credentials without a CA" \
        "$D" info --object "tls-creds-x509,id=tls0,dir=$T/pki/none,endpoint=client" \
        --image-opts "$TO,file.tls-creds=tls0"
    one_line_err "... named as qemu-img names it" "Unable to access credentials $T/pki/none/ca-cert.pem"
    expect 1 "an unknown tls-creds id" "$D" info --image-opts "$TO,file.tls-creds=nope"
    one_line_err "... as qemu-img words it" "No TLS credentials with id 'nope'"
    stop t
    psktool -u qemu -p keys.psk >/dev/null 2>&1
    mkdir psk && cp keys.psk psk/
    serve_kit p --tls=require --tls-psk="$T/keys.psk" memory 64M
    expect 0 "psk: --object tls-creds-psk" \
        "$D" convert -n --object "tls-creds-psk,id=k,dir=$T/psk,endpoint=client" \
        src.raw --target-image-opts "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$T/p.sock,file.tls-creds=k"
    stop p
else
    skip "TLS" "certtool/psktool (gnutls-bin) not installed"
fi

echo "1..$n"
[ "$failed" = 0 ]
