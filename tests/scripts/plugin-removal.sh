#!/bin/bash
# SPDX-License-Identifier: MIT
#
# plugin-removal.sh SOURCE_ROOT BUILD_ROOT
#
# Formats ship as separate packages, so any one may be missing.  The build
# is installed into a scratch DESTDIR; then, for every format plugin in
# turn, diskimg runs with all plugins but that one (DISKIMG_PLUGIN_PATH over
# a directory of links; the installed library does not scan the build tree):
# --list-formats names exactly the others, images of every other writable
# format still open as their format, and an image of the missing one fails
# with one line naming its package (or, for formats with no magic, opens as
# raw, as qemu-img would without the driver).  Prints TAP.
set -u
[ $# -eq 2 ] || { echo "usage: $0 SOURCE_ROOT BUILD_ROOT" >&2; exit 2; }
SRC=$(cd "$1" && pwd) || exit 2
BUILD=$(cd "$2" && pwd) || exit 2
MESON=${MESON:-meson}
export LC_ALL=C
unset DISKIMG_PLUGIN_PATH
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-removal.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
TAP_LOG=$T/out
. "$SRC/tests/scripts/tap-steps.sh"

"$MESON" install -C "$BUILD" --destdir "$T/dest" --no-rebuild --quiet >/dev/null 2>&1 ||
    bail "meson install into a DESTDIR failed"
DI=$(find "$T/dest" -path '*/bin/diskimg' -type f | head -n 1)
LIB=$(dirname "$(find "$T/dest" -name 'libdiskimg.so*' -type f | head -n 1)")
PLUGINS=$(dirname "$(find "$T/dest" -path '*/diskimg/plugins/format/raw.so' | head -n 1)")
PLUGINS=${PLUGINS%/format}
[ -x "$DI" ] && [ -d "$PLUGINS/format" ] || bail "no installed diskimg or plugin directory"
ALL=$(cd "$PLUGINS/format" && ls ./*.so | sed 's|^\./||; s|\.so$||' | sort | xargs)

# links DIR [MISSING]: a plugin tree of everything installed but MISSING
# (copies: the loader refuses symbolic links, see docs/plugin-guide.md §10)
links() {
    local dir=$1 missing=${2:-} kind so
    rm -rf "$dir"
    for kind in format io crypto; do
        mkdir -p "$dir/$kind"
        for so in "$PLUGINS/$kind"/*.so; do
            [ -e "$so" ] || continue
            [ "$kind/$(basename "$so" .so)" = "format/$missing" ] && continue
            cp "$so" "$dir/$kind/"
        done
    done
}
# di TREE ARGS...: the installed diskimg with the plugins of TREE only
di() {
    local tree=$1
    shift
    LD_LIBRARY_PATH=$LIB DISKIMG_PLUGIN_PATH=$tree "$DI" "$@"
}

links "$T/all"
listed_all() { [ "$(di "$T/all" --list-formats | awk '{print $1}' | sort | xargs)" = "$ALL" ]; }
t "with every plugin, --list-formats names all of them ($ALL)" listed_all

# One small image per writable format (luks needs a secret).
mkdir -p "$T/img"
writable=$(di "$T/all" --list-formats --output=json | python3 -c '
import json, sys
print(" ".join(p["name"] for p in json.load(sys.stdin)["plugins"] if p["writable"]))')
SECRET=(--object secret,id=s0,data=pw)
for f in $writable; do
    extra=()
    [ "$f" = luks ] && extra=("${SECRET[@]}" -o key-secret=s0,iter-time=10)
    di "$T/all" create -q "${extra[@]}" -f "$f" "$T/img/a.$f" 1M >/dev/null 2>&1 ||
        bail "create -f $f failed with every plugin present"
done

# format_of TREE IMAGE: the format info finds
format_of() { di "$1" info --output=json "$2" 2>/dev/null | sed -n 's/^    "format": "\(.*\)",$/\1/p'; }

for missing in $ALL; do
    links "$T/less" "$missing"
    expected=$(tr ' ' '\n' <<<"$ALL" | grep -vx "$missing" | xargs)
    others_listed() { [ "$(di "$T/less" --list-formats | awk '{print $1}' | sort | xargs)" = "$expected" ]; }
    t "without $missing: --list-formats names the other formats" others_listed
    others_open() {
        local f got
        for f in $writable; do
            [ "$f" = "$missing" ] && continue
            got=$(format_of "$T/less" "$T/img/a.$f")
            [ "$got" = "$f" ] || { echo "a.$f opened as '$got'"; return 1; }
        done
    }
    t "without $missing: images of every other writable format open as their format" others_open
    case " $writable " in *" $missing "*) ;; *) continue ;; esac
    own_image() {
        local err lines
        if di "$T/less" info "$T/img/a.$missing" >"$T/own.out" 2>"$T/own.err"; then
            # formats known only by magic qemu-img lacks, or none: raw
            grep -qx 'file format: raw' "$T/own.out"
            return
        fi
        err=$(cat "$T/own.err"); lines=$(grep -c '' "$T/own.err")
        echo "$err"
        [ "$lines" = 1 ] && grep -q "diskimg-format-$missing" "$T/own.err"
    }
    t "without $missing: its own image names the package to install (or reads as raw)" own_image
done

echo "1..$n"
[ "$failures" -eq 0 ]
