#!/bin/bash
# SPDX-License-Identifier: MIT
#
# man-pages.sh GEN_MAN DISKIMG OUTDIR
#
# Generates the manual pages the way `meson install` does (docs/gen-man.py)
# into OUTDIR, renders every page with `man --warnings -l` (no warning may
# appear) and checks that they describe what the schemas say.  Prints TAP.
set -u
if [ $# -ne 3 ]; then
    echo "usage: $0 GEN_MAN DISKIMG OUTDIR" >&2
    exit 2
fi
GEN_MAN=$1 DISKIMG=$2 OUT=$3
export LC_ALL=C.UTF-8 MANWIDTH=200
unset DISKIMG_PLUGIN_PATH
command -v man >/dev/null || { echo "1..0 # SKIP man is not installed"; exit 0; }

TAP_LOG=$OUT.log TAP_DIAG_LINES=20
. "$(dirname "${BASH_SOURCE[0]}")/tap-steps.sh"

rm -rf "$OUT"
t "gen-man.py writes the pages" python3 "$GEN_MAN" "$DISKIMG" "$OUT"

one_page_per_format() {
    local fmt
    for fmt in $("$DISKIMG" --list-formats | awk '{print $1}'); do
        [ -f "$OUT/man7/diskimg-format-$fmt.7" ] || { echo "no page for $fmt"; return 1; }
    done
    [ "$(ls "$OUT/man7" | wc -l)" -eq "$("$DISKIMG" --list-formats | wc -l)" ]
}
t "one diskimg-format-NAME(7) per format plugin, no other" one_page_per_format

renders_cleanly() {
    local warnings
    warnings=$(man --warnings -l "$1" 2>&1 >/dev/null)
    [ -z "$warnings" ] || { echo "$warnings"; return 1; }
    man -l "$1" >"$OUT/rendered" 2>&1 && [ -s "$OUT/rendered" ]
}
for page in "$OUT"/man*/*; do
    t "man --warnings -l ${page#"$OUT"/} renders without warnings" renders_cleanly "$page"
done

# rendered PAGE PATTERN...: every PATTERN (grep -E) occurs in the rendered page.
rendered() {
    local page=$1 pattern
    shift
    man -l "$page" 2>/dev/null | sed -e 's/\x08.//g' >"$OUT/text" || return 1
    for pattern in "$@"; do
        grep -Eq -- "$pattern" "$OUT/text" || { echo "missing: $pattern"; return 1; }
    done
}
Q=$OUT/man7/diskimg-format-qcow2.7
if [ -f "$Q" ]; then
    t "qcow2(7): create options with type, range and default" rendered "$Q" \
        '^CREATE OPTIONS' 'cluster_size=size' \
        'qcow2 cluster size \(at least 512; at most 2M; a power of two; default 64k\)' \
        'compat=enum' 'one of 0\.10, 1\.1, v2, v3; default 1\.1' 'encrypt\.format=enum'
    t "qcow2(7): amend and open options" rendered "$Q" '^AMEND OPTIONS' '^OPEN OPTIONS'
    t "qcow2(7): format-specific info fields" rendered "$Q" '^INFO FIELDS' \
        'compression-type \(enum\)' 'one of zlib, zstd' 'encrypt\.format \(enum\)' \
        'bitmaps \(list of Qcow2BitmapInfo\)' '^TYPES' 'Qcow2BitmapInfo'
fi
t "diskimg(1): every command, and the format pages" rendered "$OUT/man1/diskimg.1" \
    '^COMMANDS' '^ +convert$' '^ +create$' '^FORMATS' 'diskimg-format-raw\(7\)'
t "diskimg(1): a command's description paragraphs (checksum's construction)" rendered \
    "$OUT/man1/diskimg.1" '^ +checksum$' "blkhash's block construction" 'stream i mod 64'

t "diskimg(1): --progress-fd and its line format (docs/introspection/progress.schema.json)" \
    rendered "$OUT/man1/diskimg.1" '^PROGRESS' '--progress-fd=N' '^ +completed$' \
    'the exit status of the command' "qemu-img's, byte for byte"

echo "1..$n"
[ "$failures" -eq 0 ]
