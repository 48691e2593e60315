#!/bin/bash
# SPDX-License-Identifier: MIT
#
# abi-old-plugin.sh DISKIMG PLUGIN_DIR FROZEN_HEADERS
#
# Old plugins keep working: the "frozen" format plugin, compiled against the
# ABI 2 headers of diskimg 0.1.0 (tests/abi/frozen-abi2) and nothing newer,
# is loaded by the current core and used for create, write, read and info.
# DISKIMG_PLUGIN_PATH (set by meson) holds the plugin's directory.  TAP.
set -u
D=$1; PLUGIN_DIR=$2; FROZEN=$3
T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-abi-old.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
TAP_LOG=$T/out
. "$(dirname "$0")/tap-steps.sh"

frozen_abi() {   # the headers the plugin was built with say ABI 2
    grep -qx '#define DISKIMG_ABI_VERSION 2' "$FROZEN/diskimg/plugin.h"
}
t "the frozen headers are ABI 2" frozen_abi
built_against_frozen() {
    # The compile command of frozen.c names the frozen headers and not core/include.
    local cc
    cc=$(python3 -c 'import json, sys
for e in json.load(open(sys.argv[1])):
    if e["file"].endswith("old-plugin/frozen.c"):
        print(e["command"])' "$PLUGIN_DIR/../../compile_commands.json") || return 1
    echo "$cc"
    case $cc in *frozen-abi2*) ;; *) return 1 ;; esac
    case $cc in *core/include*) return 1 ;; esac
}
t "frozen.so was compiled against the frozen headers only" built_against_frozen
listed() { "$D" --list-formats | grep '^frozen '; }
t "the current core loads the ABI 2 plugin" listed

head -c 1048576 /dev/urandom >"$T/pattern.raw"
t "create -f frozen" "$D" create -q -f frozen "$T/new.frozen" 4M
new_size() { "$D" info --output=json "$T/new.frozen" | grep -q '"virtual-size": 4194304'; }
t "info reports the created size" new_size
t "convert raw -> frozen (create and write)" \
    "$D" convert -f raw -O frozen "$T/pattern.raw" "$T/copy.frozen"
t "convert frozen -> raw (read)" "$D" convert -f frozen -O raw "$T/copy.frozen" "$T/back.raw"
t "the data read back is what was written" cmp "$T/pattern.raw" "$T/back.raw"
probed() { "$D" info "$T/copy.frozen" | grep -qx 'file format: frozen'; }
t "probing finds the format" probed
specific() {
    "$D" info --output=json "$T/copy.frozen" >"$T/info.json" || return 1
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert d["format-specific"] == {"type": "frozen", "data": {"header-version": 1}}, d' "$T/info.json"
}
t "info shows the plugin's format-specific data" specific
t "compare frozen with raw" "$D" compare -q -f frozen -F raw "$T/copy.frozen" "$T/pattern.raw"

echo "1..$n"
[ "$failures" -eq 0 ]
