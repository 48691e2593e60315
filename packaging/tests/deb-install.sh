#!/bin/bash
# SPDX-License-Identifier: MIT
#
# deb-install.sh SOURCE_ROOT WORKDIR
#
# The Debian packaging test (meson suite `packaging`, docs/packaging.md):
#   1. copies the source tree (as it is, uncommitted changes included) to
#      WORKDIR/src, with packaging/debian as its debian/ directory;
#   2. builds it with `dpkg-buildpackage -b -us -uc` (DEB_BUILD_OPTIONS=nocheck
#      unless DISKIMG_PACKAGING_CHECK=1: the suite the package build would
#      run is the one this build tree has just run);
#   3. checks the packages: every format plugin has its package, the symbols
#      file matches the library, lintian reports no error and no warning;
#   4. makes a throwaway Debian root with mmdebstrap (from the mirrors this
#      machine's apt uses; in WORKDIR, removed afterwards) and runs
#      in-chroot.sh there: install, list, purge, reinstall, SDK, purge all.
# Needs root (mmdebstrap's root mode, chroot) and dpkg-dev, debhelper,
# lintian, mmdebstrap (tests/scripts/deps.sh installs them).  Prints TAP.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 SOURCE_ROOT WORKDIR" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && W=$(cd "$2" && pwd) || exit 2
HERE=$(cd "$(dirname "$0")" && pwd)
export LC_ALL=C.UTF-8

for tool in dpkg-buildpackage dh lintian mmdebstrap dpkg-scanpackages; do
    command -v "$tool" >/dev/null ||
        { echo "1..0 # SKIP $tool is not installed (tests/scripts/deps.sh installs it)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (mmdebstrap, chroot)"; exit 0; }

rm -rf "$W"
mkdir -p "$W/tmp" "$W/debs"
export TMPDIR=$W/tmp      # mmdebstrap's and dpkg's scratch space stays in the build dir
# The root goes with the test; never through a mount point mmdebstrap might
# have left behind (its /dev, /proc), which would reach the host's.
cleanup() {
    if grep -q " $W/root[/ ]" /proc/mounts; then
        echo "# $W/root still has mounts: left in place" >&2
    else
        rm -rf --one-file-system "$W/root"
    fi
    rm -rf --one-file-system "$W/tmp"
}
trap cleanup EXIT

TAP_LOG=$W/out
. "$SRC/tests/scripts/tap-steps.sh"

VERSION=$(dpkg-parsechangelog -l "$SRC/packaging/debian/changelog" -S Version)
PROJECT_VERSION=$(sed -n "s/^  version : '\([^']*\)',$/\1/p" "$SRC/meson.build" | head -n 1)
TREE=$W/src/diskimg-$VERSION

t "debian/changelog's version is the project's ($PROJECT_VERSION)" \
    test "$VERSION" = "$PROJECT_VERSION"

copy_tree() {
    sh "$HERE/copy-tree.sh" "$SRC" "$TREE" && cp -a "$SRC/packaging/debian" "$TREE/debian"
}
t "copy the source tree with packaging/debian as debian/" copy_tree

build() {
    cd "$TREE" || return 1
    local opts=nocheck
    [ "${DISKIMG_PACKAGING_CHECK:-0}" = 1 ] && opts=
    DEB_BUILD_OPTIONS="$opts parallel=$(nproc)" dpkg-buildpackage -b -us -uc >"$W/build.log" 2>&1
    local rc=$?
    tail -n 60 "$W/build.log"
    return $rc
}
t "dpkg-buildpackage -b -us -uc" build
CHANGES=$W/src/diskimg_${VERSION}_$(dpkg --print-architecture).changes
[ -f "$CHANGES" ] || bail "no .changes file was built"
cp "$W"/src/*.deb "$W/debs/"

# Every format plugin the build made (plugins/format/*/) has a package of
# its name, and each package name is the one schema/magic.yaml hints at.
format_packages() {
    local dir name ok=0
    for dir in "$SRC"/plugins/format/*/; do
        name=$(basename "$dir")
        ls "$W/debs/diskimg-format-${name}_"*.deb >/dev/null 2>&1 ||
            { echo "no package diskimg-format-$name"; ok=1; }
        if grep -q "format: $name," "$SRC/schema/magic.yaml" &&
            ! grep -q "format: $name,.*package: diskimg-format-$name}" "$SRC/schema/magic.yaml"; then
            echo "magic.yaml hints another package for $name"
            ok=1
        fi
    done
    return $ok
}
t "one diskimg-format-NAME package per format plugin, named as magic.yaml hints" format_packages

symbols_current() {
    if grep -E -A 30 'dpkg-gensymbols: (warning|error)' "$W/build.log"; then
        echo "run: sh packaging/update-symbols.sh BUILD_DIR (docs/packaging.md)"
        return 1
    fi
}
t "packaging/debian/libdiskimg0.symbols lists exactly the library's exports" symbols_current

run_lintian() {
    lintian --fail-on error,warning --info --display-info "$CHANGES"
}
t "lintian: no error, no warning" run_lintian

# The mirrors the host's apt uses; mmdebstrap's own default otherwise.
mirrors() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -s "$f" ] && grep -q '^[^#]' "$f" && printf '%s\n' "$f"
    done
}
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

make_repo() {
    (cd "$W/debs" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null) &&
    grep -c '^Package:' "$W/debs/Packages"
}
t "a local apt repository of the built packages" make_repo

chroot_checks() {
    local -a mirror_args
    mapfile -t mirror_args < <(mirrors)
    mmdebstrap --variant=apt --mode=root \
        --include=gcc,libc6-dev,pkgconf,meson,ninja-build \
        --setup-hook='mkdir -p "$1/debs"' \
        --customize-hook="sync-in $W/debs /debs" \
        --customize-hook="copy-in $HERE/in-chroot.sh /tmp" \
        --customize-hook="chroot \"\$1\" bash /tmp/in-chroot.sh >$W/chroot.tap 2>&1" \
        "$SUITE" "$W/root" "${mirror_args[@]}" 2>&1 | tail -n 30
    [ "${PIPESTATUS[0]}" = 0 ]
}
t "mmdebstrap a throwaway $SUITE root and run the install checks in it" chroot_checks

# The checks' results, numbered into this TAP stream.
if [ -f "$W/chroot.tap" ]; then
    while IFS= read -r line; do
        case $line in
        "ok - "*) n=$((n + 1)); echo "ok $n ${line#ok }" ;;
        "not ok - "*) n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n ${line#not ok }" ;;
        *) echo "# $line" ;;
        esac
    done <"$W/chroot.tap"
    grep -q '^ok - purging every package' "$W/chroot.tap" ||
        { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - the install checks ran to the end"; }
fi

echo "1..$n"
[ "$failures" -eq 0 ]
