#!/bin/bash
# SPDX-License-Identifier: MIT
# The http io plugin against a real web server: nginx started here on
# loopback ports from a temp dir with its own nginx.conf (pid, logs and
# temp files in that dir, daemon off, in the background), plus a tiny
# python3 server that ignores Range.  Checks: a 1 GiB raw with data and
# holes converts identically with ranged reads only (nginx's access log:
# every GET a 206 with Range, bytes sent near the image size, several
# connections); info and convert of a qcow2 (against qemu-img's local
# convert and its own curl driver); https with a self-signed certificate
# (sslverify on refuses it, off reads it); basic auth with
# password-secret; cookies; redirects (followed, loops bounded); servers
# ignoring Range refused before the body is read; 404 and connection
# refused; a server breaking its promise of ranges (liar-server.py) in
# every way; writes refused with qemu's words.  Timing against qemu-img's
# curl driver is printed, not asserted.
#
# Prints TAP lines; exits 77 when nginx, openssl, python3 or qemu-img is
# missing, 1 when a check failed.
set -u
D=${DISKIMG:?DISKIMG must name the diskimg binary}
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in nginx openssl python3 qemu-img; do
    if ! command -v "$tool" >/dev/null; then
        echo "1..0 # SKIP $tool is not installed"
        exit 77
    fi
done
# Requests go straight to loopback, whatever the environment says.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*'

T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-http.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
# nginx workers run as nobody when started by root: they must read www/.
chmod 755 "$T"
cd "$T" || exit 1
mkdir www www/private www/noranges www/cookie www/nohead www/slow tmp

n=0 failed=0
ok()  { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $1"; }
# run CMD...: output in out/err, exit code in RC (60 s guard)
run() { timeout -k 2 60 "$@" > out 2> err; RC=$?; }
# expect_ok DESC CMD...
expect_ok() {
    local desc=$1; shift
    run "$@"
    if [ "$RC" = 0 ]; then ok "$desc"; else nok "$desc (exit $RC: $(head -c 300 err))"; fi
}
# expect_err DESC TEXT CMD...: fails with one line on stderr containing TEXT
expect_err() {
    local desc=$1 text=$2; shift 2
    run "$@"
    if [ "$RC" != 0 ] && [ "$(wc -l < err)" = 1 ] && grep -qF -- "$text" err; then
        ok "$desc"
    else
        nok "$desc (exit $RC, want '$text': $(head -c 300 err))"
    fi
}
same_file() { if cmp -s "$1" "$2"; then ok "$3"; else nok "$3 ($1 and $2 differ)"; fi; }
# The message after "diskimg: " equals qemu-img's after "qemu-img: ".
same_message_as_qemu() {
    local desc=$1; shift
    local ours theirs
    ours=$(timeout 60 "$D" "$@" 2>&1 >/dev/null | sed -n 's/^diskimg: //p' | tail -n 1)
    theirs=$(timeout 60 qemu-img "$@" 2>&1 >/dev/null | sed -n 's/^qemu-img: //p' | tail -n 1)
    if [ -n "$ours" ] && [ "$ours" = "$theirs" ]; then ok "$desc"; else nok "$desc ('$ours' vs qemu-img '$theirs')"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# ------------------------------------------------------------ the images
# 1 GiB raw: holes, random data at offsets that straddle the copy engine's
# 2 MiB chunks and the 256 KiB readahead, and data up to the last byte.
"$D" create -q -f raw www/img.raw 1G
for i in $(seq 0 15); do
    dd if=/dev/urandom of=www/img.raw bs=4k count=$((256 + i * 97)) \
       seek=$((i * 16384 + i * 13 + 3)) conv=notrunc status=none
done
dd if=/dev/urandom of=www/img.raw bs=4k count=256 seek=$((262144 - 256)) conv=notrunc \
   status=none
qemu-img convert -O qcow2 www/img.raw www/img.qcow2
# A size that is no multiple of 512, for the tail of the file.
head -c $((3 * 1048576 + 123)) /dev/urandom > www/odd.raw
cp www/img.qcow2 www/private/img.qcow2
cp www/img.qcow2 www/cookie/img.qcow2
ln www/img.raw www/noranges/img.raw
cp www/img.qcow2 www/nohead/img.qcow2
head -c 16M /dev/urandom > www/slow/data.raw
: > www/nohead/empty.raw
qemu-img convert -O raw www/img.qcow2 ref.raw
IMG_SIZE=$(stat -c %s www/img.raw)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=127.0.0.1 -keyout key.pem -out cert.pem 2>/dev/null
echo "reader:$(openssl passwd -apr1 'open sesame')" > htpasswd
chmod 644 htpasswd key.pem cert.pem

# ------------------------------------------------------------ the servers
PORT=$(free_port)
SPORT=$(free_port)
cat > nginx.conf <<EOF
daemon off;
worker_processes 2;
pid $T/nginx.pid;
error_log $T/error.log;
events { worker_connections 128; }
http {
    log_format ranges '\$status "\$http_range" \$body_bytes_sent \$request_method \$uri \$connection';
    access_log $T/access.log ranges;
    client_body_temp_path $T/tmp;
    proxy_temp_path $T/tmp;
    fastcgi_temp_path $T/tmp;
    uwsgi_temp_path $T/tmp;
    scgi_temp_path $T/tmp;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$PORT;
        root $T/www;
        location = /moved.raw { return 302 /img.raw; }
        location = /loop.raw { return 302 /loop.raw; }
        location /private/ {
            auth_basic "diskimg test";
            auth_basic_user_file $T/htpasswd;
        }
        location /cookie/ {
            if (\$cookie_token != "letmein") { return 403; }
        }
        location /noranges/ { max_ranges 0; }
        location /slow/ { limit_rate 1m; }
        location /nohead/ {
            if (\$request_method = HEAD) { return 405; }
        }
    }
    server {
        listen 127.0.0.1:$SPORT ssl;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/key.pem;
        root $T/www;
    }
}
EOF
nginx -p "$T" -c "$T/nginx.conf" -e "$T/error.log" &
PIDS+=($!)

LPORT=$(free_port)
python3 "$HERE/liar-server.py" "$LPORT" "$T/www/img.raw" "$T/liar.count" &
PIDS+=($!)

if ! wait_port "$PORT" || ! wait_port "$SPORT" || ! wait_port "$LPORT"; then
    echo "Bail out! the servers did not start: $(cat error.log 2>/dev/null | head -c 500)"
    exit 1
fi
URL=http://127.0.0.1:$PORT
SURL=https://127.0.0.1:$SPORT

# The access log from log_reset on; log_get PATH: its GETs of PATH.
log_reset() { : > access.log; }
log_get() { grep " GET $1 " access.log; }

# ------------------------------------------------- 1 GiB raw, ranged only
log_reset
start=$(date +%s%N)
expect_ok "convert -O raw of a 1 GiB raw over http" "$D" convert -O raw "$URL/img.raw" out.raw
ours=$((($(date +%s%N) - start) / 1000000))
same_file out.raw www/img.raw "the copy is identical"
get_lines=$(log_get /img.raw | wc -l)
not_206=$(log_get /img.raw | awk '$1 != 206 || $2 == "\"-\""' | wc -l)
if [ "$get_lines" -gt 0 ] && [ "$not_206" = 0 ]; then
    ok "all $get_lines GETs were ranged and answered 206"
else
    nok "GETs not answered 206 with a Range: $not_206 of $get_lines"
fi
bytes=$(log_get /img.raw | awk '{ s += $3 } END { print s + 0 }')
if [ "$bytes" -ge "$IMG_SIZE" ] && [ "$bytes" -le $((IMG_SIZE + IMG_SIZE / 50)) ]; then
    ok "bytes sent stay near the image size ($bytes for $IMG_SIZE)"
else
    nok "bytes sent: $bytes for an image of $IMG_SIZE"
fi
# -m 8 (the default): eight workers, not capped by the CPUs for a remote
# source, each on its own connection.
conns=$(log_get /img.raw | awk '{ print $6 }' | sort -u | wc -l)
if [ "$conns" -gt 2 ]; then ok "reads ran on $conns connections"; else nok "only $conns connections"; fi

# qemu-img's own curl driver on the same image, once, for the record:
# with -m 1, because qemu-img 7.2 stalls with several requests in flight
# on one curl node (its default -m 8 never finished here).
if qemu-img --help | grep -qw http; then
    start=$(date +%s%N)
    run qemu-img convert -m 1 -O raw "$URL/img.raw" qemu.raw
    theirs=$((($(date +%s%N) - start) / 1000000))
    if [ "$RC" = 0 ]; then
        same_file qemu.raw out.raw "qemu-img's curl driver reads the same bytes"
        echo "# convert 1 GiB over http: diskimg $ours ms, qemu-img $theirs ms," \
             "qemu-img/diskimg $(awk -v a="$theirs" -v b="$ours" 'BEGIN { printf "%.2f", a / b }')"
    else
        echo "# qemu-img convert over http failed: $(head -c 200 err)"
    fi
    rm -f qemu.raw
fi
rm -f out.raw

# A server sending 1 MB/s per request (after a first second's worth),
# like a distant one: requests in flight are what makes a remote copy
# fast.  -m 8 must beat -m 2 clearly (4 s against 1 s here; asserted only
# as "less than 3/4", the machine being shared).
declare -A took
for m in 2 8; do
    start=$(date +%s%N)
    run "$D" convert -m "$m" -O raw "$URL/slow/data.raw" out.raw
    took[$m]=$((($(date +%s%N) - start) / 1000000))
    same_file out.raw www/slow/data.raw "convert -m $m from a rate-limited server"
    rm -f out.raw
done
echo "# 16 MiB at 1 MB/s per request: -m 2 ${took[2]} ms, -m 8 ${took[8]} ms"
if [ $((took[8] * 4)) -lt $((took[2] * 3)) ]; then
    ok "-m 8 runs more requests at once than -m 2"
else
    nok "-m 8 took ${took[8]} ms, -m 2 ${took[2]} ms"
fi

# ------------------------------------------------------------- qcow2
log_reset
expect_ok "info of a qcow2 over http" "$D" info --output=json "$URL/img.qcow2"
cp out info-http.json
gets=$(log_get /img.qcow2 | wc -l)
if [ "$gets" -le 8 ]; then ok "info took $gets ranged GETs (readahead)"; else nok "info took $gets GETs"; fi
if python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not (d["format"] == "qcow2" and d["virtual-size"] == 1 << 30))' info-http.json; then
    ok "info says qcow2, 1 GiB"
else
    nok "info: $(head -c 300 info-http.json)"
fi
if qemu-img info --output=json "$URL/img.qcow2" > info-qemu.json 2>/dev/null; then
    if python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); sys.exit(a != b)' info-http.json info-qemu.json; then
        ok "info matches qemu-img's over http"
    else
        nok "info differs from qemu-img's: $(tr -d '\n' < info-http.json | head -c 200) vs $(tr -d '\n' < info-qemu.json | head -c 200)"
    fi
fi
expect_ok "convert -O raw of the qcow2 over http" "$D" convert -O raw "$URL/img.qcow2" out.raw
same_file out.raw ref.raw "it matches qemu-img's convert of the local qcow2"
rm -f out.raw
expect_ok "convert of a file whose size is no multiple of 512" "$D" convert -O raw "$URL/odd.raw" out.raw
"$D" convert -O raw www/odd.raw ref-odd.raw
same_file out.raw ref-odd.raw "it matches the local convert"
rm -f out.raw ref-odd.raw

expect_ok "compare of the qcow2 over http with the local raw" "$D" compare "$URL/img.qcow2" www/img.raw
expect_ok "check of the qcow2 over http" "$D" check "$URL/img.qcow2"

# A server refusing HEAD: the size comes from a ranged GET.
log_reset
expect_ok "HEAD refused with 405: info from a ranged GET" "$D" info --output=json "$URL/nohead/img.qcow2"
if python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["virtual-size"] != 1 << 30)' out &&
   grep -q '^206 "bytes=0-0" 1 GET /nohead/img.qcow2' access.log; then
    ok "the size came from Content-Range"
else
    nok "no size from a ranged GET: $(head -c 300 out) $(head -c 300 access.log)"
fi
expect_ok "convert of it" "$D" convert -O raw "$URL/nohead/img.qcow2" out.raw
same_file out.raw ref.raw "it matches"
rm -f out.raw
expect_ok "an empty file behind it (nginx: 200 and no body to the ranged GET)" "$D" info --output=json "$URL/nohead/empty.raw"
grep_size=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["virtual-size"])' out 2>/dev/null)
if [ "$grep_size" = 0 ]; then ok "its size is 0"; else nok "its size is '$grep_size'"; fi

expect_ok "convert -m 4 -W -O qcow2 of the raw over http" "$D" convert -m 4 -W -O qcow2 \
    "$URL/img.raw" out.qcow2
expect_ok "it compares identical to the local raw" "$D" compare out.qcow2 www/img.raw
rm -f out.qcow2

# -------------------------------------------------------------- https
expect_err "https with a self-signed certificate is refused (sslverify=on)" \
    "SSL certificate problem" "$D" info "$SURL/img.qcow2"
expect_ok "https with sslverify=off" "$D" convert -O raw --image-opts \
    "driver=qcow2,file.driver=https,file.url=$SURL/img.qcow2,file.sslverify=off" out.raw
same_file out.raw ref.raw "the https copy matches"
rm -f out.raw

# ----------------------------------------------------------- basic auth
expect_err "no credentials: 401" "returned error: 401" "$D" info "$URL/private/img.qcow2"
expect_ok "username and password-secret" "$D" convert -O raw \
    --object "secret,id=pw,data=open sesame" --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/private/img.qcow2,file.username=reader,file.password-secret=pw" \
    out.raw
same_file out.raw ref.raw "the authenticated copy matches"
rm -f out.raw
expect_err "a wrong password: 401" "returned error: 401" "$D" info \
    --object "secret,id=pw,data=guess" --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/private/img.qcow2,file.username=reader,file.password-secret=pw"
expect_err "an unknown secret" "No secret with id 'nope'" "$D" info --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/private/img.qcow2,file.username=reader,file.password-secret=nope"

# -------------------------------------------------------------- cookies
expect_err "no cookie: 403" "returned error: 403" "$D" info "$URL/cookie/img.qcow2"
expect_ok "cookie" "$D" info --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/cookie/img.qcow2,file.cookie=token=letmein"
expect_ok "cookie-secret" "$D" info --object secret,id=c,data=token=letmein --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/cookie/img.qcow2,file.cookie-secret=c"
expect_err "cookie and cookie-secret together" \
    "curl driver cannot handle both cookie and cookie secret" \
    "$D" info --object secret,id=c,data=x --image-opts \
    "driver=qcow2,file.driver=http,file.url=$URL/cookie/img.qcow2,file.cookie=a=b,file.cookie-secret=c"

# ------------------------------------------------------------ redirects
expect_ok "a 302 is followed" "$D" convert -O raw "$URL/moved.raw" out.raw
same_file out.raw www/img.raw "the redirected copy is identical"
rm -f out.raw
expect_err "a redirect loop ends" "Maximum (10) redirects followed" "$D" info "$URL/loop.raw"

# ------------------------------------------------ servers ignoring Range
log_reset
expect_err "nginx with max_ranges 0 is refused" \
    "Server does not support 'range' (byte ranges)" "$D" info "$URL/noranges/img.raw"
sent=$(log_get /noranges/img.raw | awk '{ s += $3 } END { print s + 0 }')
if [ "$sent" -lt $((64 << 20)) ]; then
    ok "the whole body was not downloaded ($sent of $IMG_SIZE bytes sent)"
else
    nok "$sent bytes were sent for a refused image"
fi
LURL=http://127.0.0.1:$LPORT
expect_err "a server answering Range with 200 is refused" \
    "does not serve byte ranges" "$D" info "$LURL/whole/img.raw"
sleep 0.5
liar_sent=$(awk '{ s += $1 } END { print s + 0 }' liar.count 2>/dev/null)
if [ -n "$liar_sent" ] && [ "$liar_sent" -lt $((64 << 20)) ]; then
    ok "the client left early ($liar_sent of $IMG_SIZE bytes written)"
else
    nok "the lying server wrote ${liar_sent:-?} bytes"
fi

expect_err "another range than asked for is refused" \
    "the server answered the range 0-262143 with another Content-Range" \
    "$D" info "$LURL/shifted/img.raw"
expect_err "a short body is refused" "short answer: 131072 of 262144 bytes at offset 0" \
    "$D" info "$LURL/short/img.raw"
expect_err "a body longer than asked for is refused" \
    "the server sent more than the 262144 bytes asked for at offset 0" \
    "$D" info "$LURL/long/img.raw"
expect_err "a file that changed size is refused" "the file changed size on the server" \
    "$D" info "$LURL/resized/img.raw"
expect_err "a Content-Range beyond 64 bits is refused" \
    "the server answered the range 0-262143 with another Content-Range" \
    "$D" info "$LURL/garbled/img.raw"

# A server that takes the connection and never answers: timeout= ends it.
SILENT=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(600)' \
    "$SILENT" &
PIDS+=($!)
wait_port "$SILENT"
start=$(date +%s%N)
expect_err "a silent server times out (timeout=1)" "Operation timed out" "$D" info --image-opts \
    "driver=raw,file.driver=http,file.url=http://127.0.0.1:$SILENT/img.raw,file.timeout=1"
waited=$((($(date +%s%N) - start) / 1000000))
if [ "$waited" -lt 5000 ]; then ok "after ${waited} ms"; else nok "only after $waited ms"; fi

# ----------------------------------------------------------- plain errors
expect_err "404" "CURL: Error opening file: The requested URL returned error: 404" \
    "$D" info "$URL/missing.raw"
same_message_as_qemu "404 says what qemu-img says" info "$URL/missing.raw"
CLOSED=$(free_port)
expect_err "connection refused" "Couldn't connect to server" "$D" info "http://127.0.0.1:$CLOSED/x.raw"
expect_err "a URL without host" "Invalid URL" "$D" info --image-opts "driver=raw,file.driver=http,file.url=http://"
expect_err "readahead must be a multiple of 512" "HTTP_READAHEAD_SIZE 1000 is not a multiple of 512" \
    "$D" info --image-opts "driver=raw,file.driver=http,file.url=$URL/img.raw,file.readahead=1000"
expect_err "timeout is bounded" "timeout parameter is too large or negative" \
    "$D" info --image-opts "driver=raw,file.driver=http,file.url=$URL/img.raw,file.timeout=10001"

# ------------------------------------------------------- writes refused
same_message_as_qemu "create is refused as qemu-img refuses it" create -f raw "$URL/new.raw" 1M
same_message_as_qemu "opening read-write is refused as by qemu-img" resize "$URL/img.raw" 2G
same_message_as_qemu "convert onto http is refused as by qemu-img" convert -O raw www/odd.raw "$URL/new.raw"
run "$D" create -f qcow2 "$URL/new.qcow2" 1M
if [ "$RC" = 1 ] && [ ! -s out ]; then ok "create prints no Formatting line first"; else nok "create: exit $RC, stdout '$(head -c 200 out)'"; fi

echo "1..$n"
[ "$failed" = 0 ]
