#!/bin/bash
# SPDX-License-Identifier: MIT
#
# example-plugin.sh SOURCE_ROOT BUILD_ROOT
#
# The plugin SDK test: installs the build into a scratch DESTDIR, builds
# examples/format-example against that installed SDK with nothing but
# pkg-config information, and drives the build tree's diskimg with the
# resulting plugin (DISKIMG_PLUGIN_PATH).  Prints TAP; exits non-zero when
# any test fails.  DISKIMG_TEST_KEEP=1 keeps the scratch directory.
#
# Finding the SDK in the DESTDIR.  PKG_CONFIG_SYSROOT_DIR is the usual tool
# for staged trees, and pkgconf does apply it to --variable (embed_schema
# resolves inside the DESTDIR), but it applies it to every package: glib's
# and json-glib's include paths would point into the DESTDIR too, where
# they do not exist.  So instead the script copies the installed .pc files
# and prefixes every absolute variable with the DESTDIR (prefix=/usr/local
# becomes prefix=$DEST/usr/local; the rest derive from ${prefix}).  The
# example then sees an ordinary installed SDK, and its `meson install`
# lands in the DESTDIR's plugin directory.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 SOURCE_ROOT BUILD_ROOT" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd) || exit 2
BUILD=$(cd "$2" && pwd) || exit 2
DISKIMG=$BUILD/commands/diskimg
MESON=${MESON:-meson}
NINJA=${NINJA:-ninja}
export LC_ALL=C
unset DISKIMG_PLUGIN_PATH PKG_CONFIG_SYSROOT_DIR

T=$(mktemp -d "${TMPDIR:-/tmp}/diskimg-sdk.XXXXXX") || exit 2
cleanup() {
    if [ "${DISKIMG_TEST_KEEP:-0}" = 1 ]; then
        echo "# kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
DEST=$T/dest      # DESTDIR of the diskimg install
EX=$T/ex          # build directory of the example
W=$T/work         # images
mkdir -p "$W" "$T/pkgconfig"

TAP_LOG=$T/out
. "$SRC/tests/scripts/tap-steps.sh"

# di ARGS...: the build tree's diskimg, with the example plugin.
di() {
    DISKIMG_PLUGIN_PATH=$EX "$DISKIMG" "$@"
}

# fails_cleanly PATTERN COMMAND...: exit status 1 (no crash), exactly one
# line on stderr, and that line matches PATTERN.
fails_cleanly() {
    local pattern=$1 rc lines
    shift
    "$@" >"$W/fc.out" 2>"$W/fc.err"
    rc=$?
    lines=$(grep -c '' "$W/fc.err")
    echo "exit status $rc, $lines line(s) on stderr:"
    cat "$W/fc.err"
    [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$W/fc.err"
}

# json FILE PYTHON [ARG...]: runs PYTHON with `d` = the JSON document in
# FILE and the ARGs as sys.argv[2:]; a failed assert fails the test.
json() {
    local file=$1 code=$2
    shift 2
    python3 -c "import json, sys
d = json.load(open(sys.argv[1]))
$code" "$file" "$@"
}

# patch FILE OFFSET BYTES...: overwrites bytes (printf escapes) in place.
patch() {
    local file=$1 offset=$2
    shift 2
    # shellcheck disable=SC2059  # the bytes are printf escapes on purpose
    printf "$@" | dd of="$file" bs=1 seek="$offset" conv=notrunc status=none
}

# ------------------------------------------------------------ install the SDK

install_sdk() {
    "$MESON" install -C "$BUILD" --destdir "$DEST" --no-rebuild --quiet
}
t "meson install into a DESTDIR" install_sdk

PCFILE=$(find "$DEST" -name diskimg-plugin.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$PCFILE" ] || bail "diskimg-plugin.pc is not installed"
PCDIR=$(dirname "$PCFILE")

relocate_pc() {
    local pc
    for pc in "$PCDIR"/*.pc; do
        sed -E "s|^([A-Za-z_][A-Za-z0-9_.]*)=/|\\1=$DEST/|" "$pc" >"$T/pkgconfig/${pc##*/}" ||
            return 1
    done
}
t "relocate the installed .pc files into the DESTDIR" relocate_pc
export PKG_CONFIG_PATH=$T/pkgconfig

sdk_variables() {
    EMBED=$(pkg-config --variable=embed_schema diskimg-plugin) &&
    PLUGINDIR=$(pkg-config --variable=plugindir diskimg-plugin) &&
    echo "embed_schema=$EMBED plugindir=$PLUGINDIR" &&
    [ "${EMBED#"$DEST"/}" != "$EMBED" ] && [ -x "$EMBED" ] &&
    [ "${PLUGINDIR#"$DEST"/}" != "$PLUGINDIR" ] &&
    [ "$(pkg-config --variable=abi_version diskimg-plugin)" = \
      "$(sed -n 's/^#define DISKIMG_ABI_VERSION \([0-9]*\)$/\1/p' "$SRC/core/include/diskimg/plugin.h")" ]
}
t "pkg-config: embed_schema and plugindir lie in the DESTDIR" sdk_variables
PLUGINDIR=$(pkg-config --variable=plugindir diskimg-plugin)

sdk_cflags() {
    local cflags
    cflags=$(pkg-config --cflags --libs diskimg-plugin) || return 1
    echo "$cflags"
    case " $cflags " in *" -I$DEST/"*) ;; *) return 1 ;; esac
    case " $cflags " in *"$SRC/"* | *"$BUILD/"*) return 1 ;; esac
}
t "pkg-config: flags point into the DESTDIR, not the source or build tree" sdk_cflags

# ----------------------------------------------------------- build the example

setup_example() {
    "$MESON" setup -Dwerror=true "$EX" "$SRC/examples/format-example"
}
t "meson setup of examples/format-example (werror)" setup_example
t "ninja builds example.so" "$NINJA" -C "$EX"
[ -f "$EX/example.so" ] || bail "example.so was not built"

# No include path may lead into the diskimg tree but the example's own
# directory (meson adds it, and the build directory, by default).
no_tree_includes() {
    python3 - "$EX/compile_commands.json" "$SRC" "$BUILD" <<'EOF'
import json, os, shlex, sys
db, src, build = sys.argv[1], os.path.realpath(sys.argv[2]), os.path.realpath(sys.argv[3])
allowed = os.path.join(src, 'examples', 'format-example')
def inside(path, top):
    return path == top or path.startswith(top + os.sep)
for entry in json.load(open(db)):
    args = shlex.split(entry['command'])
    for i, a in enumerate(args):
        if a in ('-I', '-isystem', '-iquote'):
            path = args[i + 1]
        elif a.startswith('-I'):
            path = a[2:]
        else:
            continue
        real = os.path.realpath(os.path.join(entry['directory'], path))
        print(real)
        assert not (inside(real, src) and not inside(real, allowed)), real
        assert not inside(real, build), real
EOF
}
t "the example is compiled without paths into the diskimg tree" no_tree_includes

install_example() {
    "$MESON" install -C "$EX" --quiet && [ -f "$PLUGINDIR/format/example.so" ]
}
t "meson install puts example.so into <plugindir>/format" install_example

# --------------------------------------------------------------- registration

list_formats() {
    di --list-formats >"$W/formats.txt" || return 1
    cat "$W/formats.txt"
    grep -q '^example ' "$W/formats.txt" && grep -q '^raw ' "$W/formats.txt"
}
t "--list-formats lists example" list_formats

list_formats_json() {
    di --list-formats --output=json >"$W/formats.json" || return 1
    json "$W/formats.json" "
e = [p for p in d['plugins'] if p['name'] == 'example']
assert len(e) == 1, d
assert e[0]['path'] == sys.argv[2] + '/example.so', e
assert e[0]['capabilities'] == ['zero-init'], e
assert e[0]['writable'] is True, e
assert 'create' in e[0]['operations'], e" "$EX"
}
t "--list-formats --output=json describes example" list_formats_json

installed_plugin() {
    DISKIMG_PLUGIN_PATH=$PLUGINDIR "$DISKIMG" --list-formats --output=json >"$W/inst.json" &&
    json "$W/inst.json" "
assert [p['path'] for p in d['plugins'] if p['name'] == 'example'] == [sys.argv[2]], d" \
        "$PLUGINDIR/format/example.so"
}
t "the installed example.so loads from its plugin directory" installed_plugin

options_help() {
    di create -f example -o help >"$W/help.txt" || return 1
    cat "$W/help.txt"
    grep -q '^  label=<str> ' "$W/help.txt" && grep -q '^  size=<size> ' "$W/help.txt"
}
t "create -f example -o help lists label=<str>" options_help

# ----------------------------------------------------------------- the format

SIZE=$((4 * 1024 * 1024))

t "create -f example -o label=hello" di create -f example -o label=hello "$W/hello.ex" 4M

header_written() {
    python3 - "$W/hello.ex" "$SIZE" <<'EOF'
import os, struct, sys
path, size = sys.argv[1], int(sys.argv[2])
h = open(path, 'rb').read(512)
magic, version, hsize, vsize, doff = struct.unpack_from('<8sIIQQ', h)
assert (magic, version, hsize, vsize, doff) == (b'DIEXMPL1', 1, 512, size, 512), h[:32]
assert h[32:96] == b'hello'.ljust(64, b'\0') and h[96:] == bytes(416), h
assert os.path.getsize(path) == 512 + size, os.path.getsize(path)
EOF
}
t "the header is laid out as specified and the file is 512 + size" header_written

info_json() {
    di info --output=json "$W/hello.ex" >"$W/info.json" || return 1
    cat "$W/info.json"
    json "$W/info.json" "
assert d['format'] == 'example' and d['virtual-size'] == $SIZE, d
assert d['format-specific'] == {'type': 'example', 'data': {'label': 'hello'}}, d
assert 'cluster-size' not in d, d"
}
t "info --output=json shows format example and label hello" info_json

probe() {
    di info "$W/hello.ex" >"$W/probe.txt" || return 1
    cat "$W/probe.txt"
    grep -q '^file format: example$' "$W/probe.txt" && grep -q '^    label: hello$' "$W/probe.txt"
}
t "probing recognises the image; human info shows the label" probe

# A raw image with data, a hole and unaligned extents.
make_source() {
    python3 - "$W/src.raw" "$SIZE" <<'EOF'
import random, sys
rnd = random.Random(7)
with open(sys.argv[1], 'wb') as f:
    f.truncate(int(sys.argv[2]))
    for off, n in ((0, 1 << 20), (0x240123, 0x30001), (int(sys.argv[2]) - 4096, 4096)):
        f.seek(off)
        f.write(rnd.randbytes(n))
EOF
}
t "make a raw source image" make_source

t "convert -f raw -O example" di convert -f raw -O example -o label=conv "$W/src.raw" "$W/conv.ex"

identical() {
    di compare -f raw -F example "$W/src.raw" "$1" >"$W/cmp.txt"
    local rc=$?
    cat "$W/cmp.txt"
    [ "$rc" -eq 0 ] && grep -q '^Images are identical.$' "$W/cmp.txt"
}
t "compare -f raw -F example: converted image is identical" identical "$W/conv.ex"

t "dd -f raw -O example" di dd -f raw -O example bs=64k "if=$W/src.raw" "of=$W/dd.ex"
t "compare -f raw -F example: dd image is identical" identical "$W/dd.ex"

# Every extent is present at depth 0 and maps to its offset + 512.
map_json() {
    di map --output=json -f example "$W/conv.ex" >"$W/map.json" || return 1
    cat "$W/map.json"
    json "$W/map.json" "
pos = 0
for e in d:
    assert e['start'] == pos and e['length'] > 0, e
    assert e['depth'] == 0 and e['present'], e
    assert e['offset'] == e['start'] + 512, e
    pos += e['length']
assert pos == $SIZE, pos
assert d[0]['data'] and not d[0]['zero'], d[0]"
}
t "map --output=json maps every extent behind the header" map_json

resize() {
    cp "$W/conv.ex" "$W/resize.ex" &&
    di resize -f example "$W/resize.ex" 8M &&
    [ "$(stat -c %s "$W/resize.ex")" -eq $((512 + 8 * 1024 * 1024)) ] &&
    di resize -f example --shrink "$W/resize.ex" 1M &&
    [ "$(stat -c %s "$W/resize.ex")" -eq $((512 + 1024 * 1024)) ] &&
    di info --output=json "$W/resize.ex" >"$W/resize.json" &&
    json "$W/resize.json" "assert d['virtual-size'] == 1 << 20, d" &&
    head -c 1M "$W/src.raw" >"$W/src1m.raw" &&
    di compare -f raw -F example "$W/src1m.raw" "$W/resize.ex"
}
t "resize grows and (--shrink) shrinks the image and its header" resize

measure() {
    di measure -O example --size 1G --output=json >"$W/measure.json" &&
    json "$W/measure.json" "
assert d == {'required': 1073742336, 'fully-allocated': 1073742336}, d" &&
    di measure -O example -f raw --output=json "$W/src.raw" >"$W/measure2.json" &&
    json "$W/measure2.json" "assert d['required'] == 512 + $SIZE, d"
}
t "measure: header plus the virtual size" measure

long_label() {
    fails_cleanly 'label must be at most 63 bytes' \
        di create -q -f example -o "label=$(printf '%064d' 0)" "$W/long.ex" 1M &&
    [ ! -e "$W/long.ex" ]
}
t "create rejects a 64-byte label and leaves no file behind" long_label

# ----------------------------------------------------------- damaged headers

corrupt() {   # corrupt NAME OFFSET BYTES: a copy of hello.ex with bytes replaced
    cp "$W/hello.ex" "$W/$1.ex" && patch "$W/$1.ex" "$2" "$3"
}
corrupt magic 0 'DIEXMPL2'
corrupt version 8 '\007\000\000\000'
corrupt hsize 12 '\000\004\000\000'
corrupt doff 24 '\000\004\000\000'
corrupt vsize 16 '\001\000\000\000\000\000\000\100'
corrupt label 32 "$(printf 'L%.0s' $(seq 64))"
corrupt reserved 511 '\001'
head -c 100 "$W/hello.ex" >"$W/short.ex"

t "bad magic with -f example fails with one line" \
    fails_cleanly "Could not open '.*magic.ex': Image is not in example format" \
    di info -f example "$W/magic.ex"
t "version 7 fails with one line" \
    fails_cleanly "Unsupported version 7" di info -f example "$W/version.ex"
t "header size 1024 fails with one line" \
    fails_cleanly "Invalid header size 1024" di info -f example "$W/hsize.ex"
t "data offset 1024 fails with one line" \
    fails_cleanly "Invalid data offset 1024" di info -f example "$W/doff.ex"
t "virtual size above 2^62 fails with one line" \
    fails_cleanly "Invalid virtual size" di info -f example "$W/vsize.ex"
t "label without NUL fails with one line" \
    fails_cleanly "label is not NUL-terminated" di info -f example "$W/label.ex"
t "non-zero reserved bytes fail with one line" \
    fails_cleanly "Reserved header bytes are not zero" di info -f example "$W/reserved.ex"
t "a 100-byte file with -f example fails with one line" \
    fails_cleanly "Image is not in example format" di info -f example "$W/short.ex"
t "writing to a damaged image fails with one line" \
    fails_cleanly "Unsupported version 7" \
    di convert -f raw -O example -n "$W/src.raw" "$W/version.ex"

# ------------------------------------------- a program asking what exists

# examples/introspect, built against the installed SDK (pkg-config diskimg)
# and run against the installed library and the build tree's plugins.
IN=$T/introspect
LIBDIR=$(dirname "$(find "$DEST" -name 'libdiskimg.so*' -type f | head -n 1)")
setup_introspect() {
    "$MESON" setup -Dwerror=true "$IN" "$SRC/examples/introspect" && "$NINJA" -C "$IN"
}
t "examples/introspect builds against the installed SDK (werror)" setup_introspect
# intro ARGS...: the example with the installed libdiskimg and the build
# tree's raw and qcow2 plugins.
intro() {
    LD_LIBRARY_PATH=$LIBDIR DISKIMG_PLUGIN_PATH=$BUILD/plugins/format/raw:$BUILD/plugins/format/qcow2 \
        "$IN/diskimg-introspect" "$@"
}
introspect_list() {
    intro >"$W/intro.txt" || return 1
    cat "$W/intro.txt"
    grep -qx 'qcow2 (read-write, package diskimg-format-qcow2)' "$W/intro.txt" &&
    grep -qx '    cluster_size' "$W/intro.txt" && grep -qx '    encrypt.format' "$W/intro.txt"
}
t "diskimg-introspect lists formats, packages and create options" introspect_list
introspect_valid() { intro qcow2 'cluster_size=64k,compat=1.1' | grep -qx valid; }
t "diskimg-introspect accepts a valid qcow2 option string" introspect_valid
t "diskimg-introspect rejects cluster_size=3000 with the reason" \
    fails_cleanly "power of two" intro qcow2 cluster_size=3000

echo "1..$n"
[ "$failures" -eq 0 ]
