# SPDX-License-Identifier: MIT
# TAP helpers shared by the command-line test scripts (sourced).

n=0 failed=0
ok()  { n=$((n+1)); echo "ok $n - $1"; }
nok() { n=$((n+1)); failed=$((failed+1)); echo "not ok $n - $1"; }
skip() { n=$((n+1)); echo "ok $n - $1 # SKIP $2"; }

# run CMD...: runs with a 20 s guard, output in out/err, exit code in RC
run() { timeout -k 2 20 "$@" > out 2> err; RC=$?; }
# expect RC DESC CMD...
expect() {
    local want=$1 desc=$2; shift 2
    run "$@"
    if [ "$RC" = "$want" ]; then ok "$desc"; else nok "$desc (exit $RC, want $want: $(head -c 300 err))"; fi
}
# grep_out PATTERN DESC [FILE]
grep_out() { if grep -Eq -- "$1" "${3:-out}"; then ok "$2"; else nok "$2 (no /$1/ in: $(head -c 300 "${3:-out}"))"; fi; }
one_line_err() { # DESC: stderr is exactly one line naming the file
    local lines; lines=$(wc -l < err)
    if [ "$lines" = 1 ] && grep -q -- "$2" err; then ok "$1"; else nok "$1 (stderr: $(head -c 300 err))"; fi
}
# same_json A B DESC [drop keys...]: JSON equal after dropping keys
same_json() {
    local a=$1 b=$2 desc=$3; shift 3
    if python3 - "$a" "$b" "$@" <<'EOF'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
drop = set(sys.argv[3:])
def clean(x):
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items() if k not in drop}
    if isinstance(x, list):
        return [clean(v) for v in x]
    return x
sys.exit(0 if clean(a) == clean(b) else 1)
EOF
    then ok "$desc"; else nok "$desc ($(tr -d '\n' < "$a" | head -c 150) vs $(tr -d '\n' < "$b" | head -c 150))"; fi
}

# wait_locked FILE: returns once some process holds a lock on FILE, or 1
# after 60 s.  qemu and diskimg lock images with OFD byte locks, which
# /proc/locks lists by device and inode; watching it takes no lock, so it
# cannot race the holder's own open as a probing open could.
wait_locked() {
    local id
    id=$(printf '%02x:%02x:%s' "$(stat -c %Hd "$1")" "$(stat -c %Ld "$1")" \
         "$(stat -c %i "$1")") || return 1
    for _ in $(seq 600); do
        grep -q " $id " /proc/locks && return 0
        sleep 0.1
    done
    return 1
}
