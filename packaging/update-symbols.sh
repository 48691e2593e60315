#!/bin/sh
# SPDX-License-Identifier: MIT
#
# update-symbols.sh BUILD_DIR
#
# Regenerates packaging/debian/libdiskimg0.symbols from the libdiskimg.so.0
# of a build directory (run it after adding or removing public API):
#
#   sh packaging/update-symbols.sh build
#
# New symbols are tagged with the project's current version, symbols already
# listed keep the version that introduced them.  Every export must be
# diskimg_*; anything else is reported and fails.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
LIB=$1/core/libdiskimg.so.0
SYMBOLS=$SRC/packaging/debian/libdiskimg0.symbols
VERSION=$(sed -n "s/^  version : '\([^']*\)',$/\1/p" "$SRC/meson.build" | head -n 1)
[ -f "$LIB" ] || { echo "$0: $LIB is not built" >&2; exit 1; }
[ -n "$VERSION" ] || { echo "$0: no project version in meson.build" >&2; exit 1; }

strays=$(nm -D --defined-only "$LIB" | awk '$2 ~ /^[TDRBVW]$/ && $3 !~ /^diskimg_/ {print $3}')
if [ -n "$strays" ]; then
    echo "$0: libdiskimg exports symbols outside diskimg_*:" $strays >&2
    exit 1
fi

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# dpkg-gensymbols reads the old file as the template, so known symbols keep
# their versions; -c0 because adding and removing is the point of a refresh.
set --
[ -f "$SYMBOLS" ] && set -- -I"$SYMBOLS"
dpkg-gensymbols -plibdiskimg0 -v"$VERSION" -c0 -q "$@" -e"$LIB" -O"$T/new"
{
    sed -n '1p' "$T/new"
    echo '* Build-Depends-Package: libdiskimg-dev'
    sed -e '1d' -e '/^\* Build-Depends-Package/d' "$T/new" | LC_ALL=C sort
} >"$SYMBOLS"
echo "$SYMBOLS: $(grep -c '@Base' "$SYMBOLS") symbols"
