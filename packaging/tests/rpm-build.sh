#!/bin/bash
# SPDX-License-Identifier: MIT
#
# rpm-build.sh SOURCE_ROOT WORKDIR
#
# The rpm packaging test (meson suite `packaging`, docs/packaging.md): makes
# the source tarball from a copy of the tree, builds packaging/rpm/diskimg.spec
# with `rpmbuild -bb` (Debian's rpm), and checks the subpackages: their files,
# the dependencies between them (in a scratch rpm database: qcow2 can be
# erased alone, raw cannot) and what rpm's generators derived.
#
# On Debian: --nodeps, because the BuildRequires name rpm packages that
# Debian's (empty) rpm database cannot know; --nocheck unless
# DISKIMG_PACKAGING_CHECK=1 (the build tree has run that suite already).
# rpm's own dependency generators (elfdeps, pkgconfigdeps) work unchanged;
# no debuginfo subpackages are made, as Debian's rpm lacks find-debuginfo.
# Everything stays in WORKDIR.  Prints TAP.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 SOURCE_ROOT WORKDIR" >&2
    exit 2
fi
SRC=$(cd "$1" && pwd) || exit 2
mkdir -p "$2" && W=$(cd "$2" && pwd) || exit 2
HERE=$(cd "$(dirname "$0")" && pwd)
SPEC=$SRC/packaging/rpm/diskimg.spec
export LC_ALL=C.UTF-8
command -v rpmbuild >/dev/null ||
    { echo "1..0 # SKIP rpmbuild is not installed (tests/scripts/deps.sh installs Debian's rpm)"; exit 0; }

rm -rf "$W"
mkdir -p "$W/top/SOURCES" "$W/tmp" "$W/db"
export TMPDIR=$W/tmp

TAP_LOG=$W/out
. "$SRC/tests/scripts/tap-steps.sh"

VERSION=$(rpmspec -q --srpm --qf '%{version}' "$SPEC" 2>/dev/null)
PROJECT_VERSION=$(sed -n "s/^  version : '\([^']*\)',$/\1/p" "$SRC/meson.build" | head -n 1)
t "the spec's Version is the project's ($PROJECT_VERSION)" test "$VERSION" = "$PROJECT_VERSION"

tarball() {
    sh "$HERE/copy-tree.sh" "$SRC" "$W/src/diskimg-$VERSION" &&
    tar -C "$W/src" -czf "$W/top/SOURCES/diskimg-$VERSION.tar.gz" "diskimg-$VERSION"
}
t "source tarball diskimg-$VERSION.tar.gz" tarball

build() {
    local check=--nocheck
    [ "${DISKIMG_PACKAGING_CHECK:-0}" = 1 ] && check=
    rpmbuild -bb --nodeps $check --define "_topdir $W/top" --define "_tmppath $W/tmp" \
        "$SPEC" >"$W/build.log" 2>&1
    local rc=$?
    tail -n 60 "$W/build.log"
    return $rc
}
t "rpmbuild -bb packaging/rpm/diskimg.spec" build

ARCH=$(rpm --eval '%{_arch}')
RPMS=$W/top/RPMS/$ARCH
REL=$(rpmspec -q --srpm --qf '%{release}' "$SPEC" 2>/dev/null)
EVR=$VERSION-$REL
rpmfile() { echo "$RPMS/$1-$EVR.$ARCH.rpm"; }
[ -f "$(rpmfile diskimg)" ] || bail "diskimg-$EVR.$ARCH.rpm was not built"
LIBDIR=$(rpm --eval '%{_libdir}')
PLUGINDIR=$LIBDIR/diskimg/plugins

# has PACKAGE PATH...: PACKAGE's rpm contains every PATH (shell patterns).
has() {
    local pkg=$1 path
    shift
    rpm -qlp "$(rpmfile "$pkg")" >"$W/list" || return 1
    for path in "$@"; do
        # shellcheck disable=SC2053  # PATH is a pattern on purpose
        while IFS= read -r f; do [[ $f == $path ]] && continue 2; done <"$W/list"
        echo "$pkg lacks $path"
        cat "$W/list"
        return 1
    done
}

t "diskimg: command, diskimg(1), bash completion" has diskimg /usr/bin/diskimg \
    '/usr/share/man/man1/diskimg.1*' /usr/share/bash-completion/completions/diskimg
t "diskimg-libs: libdiskimg.so.0 and the posix plugin" has diskimg-libs \
    "$LIBDIR/libdiskimg.so.0*" "$PLUGINDIR/io/posix.so"
t "diskimg-devel: headers, .pc files, embed-schema, guide, example" has diskimg-devel \
    /usr/include/diskimg/plugin.h "$LIBDIR/pkgconfig/diskimg-plugin.pc" \
    "$LIBDIR/pkgconfig/diskimg.pc" '*/diskimg-embed-schema' '*/plugin-guide.md' \
    '*/examples/format-example/example.c'
t "diskimg-io-uring: the uring plugin" has diskimg-io-uring "$PLUGINDIR/io/uring.so"
t "diskimg-io-nbd: the nbd plugin" has diskimg-io-nbd "$PLUGINDIR/io/nbd.so"
t "diskimg-io-rbd: the rbd plugin" has diskimg-io-rbd "$PLUGINDIR/io/rbd.so"
t "diskimg-crypto-nettle: the nettle plugin" has diskimg-crypto-nettle "$PLUGINDIR/crypto/nettle.so"
for dir in "$SRC"/plugins/format/*/; do
    name=$(basename "$dir")
    t "diskimg-format-$name: $name.so and diskimg-format-$name(7)" has "diskimg-format-$name" \
        "$PLUGINDIR/format/$name.so" "/usr/share/man/man7/diskimg-format-$name.7*"
done

generated_deps() {
    rpm -qp --provides "$(rpmfile diskimg-devel)" | grep -x 'pkgconfig(diskimg-plugin) = .*' &&
    rpm -qp --provides "$(rpmfile diskimg-libs)" | grep -F 'libdiskimg.so.0()' &&
    rpm -qp --requires "$(rpmfile diskimg-format-qcow2)" | grep -F 'libdiskimg.so.0()' &&
    rpm -qp --recommends "$(rpmfile diskimg)" | grep -x "diskimg-format-qcow2(.*) = $EVR"
}
t "rpm's generators: pkgconfig() and soname provides/requires; diskimg recommends qcow2" generated_deps

# A scratch database with every package, to ask rpm what erasing would break.
rpmdb() { rpm --dbpath "$W/db" "$@"; }
install_db() {
    rpmdb --initdb && rpmdb -i --justdb --nodeps --ignorearch "$RPMS"/*.rpm &&
    rpmdb -qa | sort
}
t "all packages go into a scratch rpm database" install_db
t "erasing diskimg-format-qcow2 leaves diskimg's dependencies whole" \
    rpmdb -e --test diskimg-format-qcow2
t "erasing diskimg-format-raw is refused: diskimg requires it" \
    bash -c "! rpm --dbpath '$W/db' -e --test diskimg-format-raw"

echo "1..$n"
[ "$failures" -eq 0 ]
