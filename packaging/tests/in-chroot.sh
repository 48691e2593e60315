#!/bin/bash
# SPDX-License-Identifier: MIT
#
# in-chroot.sh: the checks of the Debian install test, run as root inside a
# throwaway Debian root by deb-install.sh, with the built packages served
# from the local repository file:/debs.  Prints "ok - ..." / "not ok - ..."
# lines (deb-install.sh numbers them into its TAP stream) and always exits 0.
set -u
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
W=/tmp/check
mkdir -p "$W"
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
PLUGINDIR=/usr/lib/$MULTIARCH/diskimg/plugins

t() {
    local desc=$1
    shift
    if "$@" >"$W/out" 2>&1; then
        echo "ok - $desc"
    else
        echo "not ok - $desc"
        tail -n 25 "$W/out" | sed -e 's/^/# /'
    fi
}

# apt-get as a user runs it: Recommends are installed (mmdebstrap's root
# turns that off), Suggests are not.
apt_get() {
    apt-get -y -q -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=true \
        -o APT::Install-Suggests=false "$@"
}

# The installed diskimg-format-* packages, as format names.
installed_formats() {
    dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 'diskimg-format-*' 2>/dev/null |
        awk '$1 == "ii" { sub(/^diskimg-format-/, "", $2); print $2 }' | sort | xargs
}

listed_formats() {
    diskimg --list-formats | awk '{print $1}' | sort | xargs
}

# formats_match: --list-formats names exactly the installed format packages.
formats_match() {
    local want got
    want=$(installed_formats)
    got=$(listed_formats)
    echo "packages: $want"
    echo "listed:   $got"
    [ -n "$want" ] && [ "$want" = "$got" ]
}

# completes_formats: the installed bash completion offers exactly the
# installed formats after -O (asked at run time, nothing regenerated).
completes_formats() {
    local got
    got=$(bash -c 'source /usr/share/bash-completion/completions/diskimg || exit 1
        COMP_WORDS=(diskimg convert -O ""); COMP_CWORD=3; _diskimg
        printf "%s\n" "${COMPREPLY[@]}"' | sort | xargs)
    echo "completion: $got"
    [ "$got" = "$(installed_formats)" ]
}

setup_repo() {
    echo 'deb [trusted=yes] file:/debs ./' >/etc/apt/sources.list.d/diskimg-local.list &&
    apt_get update
}
t "apt sees the local repository of the built packages" setup_repo

install_command() {
    apt_get install diskimg &&
    for p in diskimg libdiskimg0 diskimg-format-raw diskimg-format-qcow2 diskimg-crypto-nettle; do
        dpkg-query -W -f '${db:Status-Abbrev}\n' "$p" | grep -q '^ii' || { echo "$p missing"; return 1; }
    done &&
    ! dpkg-query -W -f '${db:Status-Abbrev}\n' diskimg-io-uring 2>/dev/null | grep -q '^ii'
}
t "apt-get install diskimg pulls in libdiskimg0, raw, qcow2 and nettle (not uring)" install_command

t "diskimg --list-formats shows exactly the installed format packages (raw qcow2)" formats_match
t "bash completion of -O lists the installed formats" completes_formats

files_in_place() {
    ls -l "$PLUGINDIR"/*/*.so /usr/share/man/man1/diskimg.1.gz \
        /usr/share/man/man7/diskimg-format-qcow2.7.gz /usr/share/man/man7/diskimg-format-raw.7.gz \
        /usr/share/bash-completion/completions/diskimg
}
t "plugins, man pages and completion are installed" files_in_place

make_images() {
    cd "$W" && diskimg create -q -f qcow2 x.qcow2 16M && diskimg create -q -f raw x.raw 1M &&
    diskimg info x.qcow2 | grep -q '^file format: qcow2$'
}
t "diskimg create/info of a qcow2 image" make_images

t "apt-get purge diskimg-format-qcow2 keeps diskimg" \
    bash -c "apt-get -y -q purge diskimg-format-qcow2 && dpkg-query -W -f '\${db:Status-Abbrev}' diskimg | grep -q '^ii'"
t "after the purge, --list-formats shows exactly raw" formats_match
t "after the purge, completion of -O offers only raw" completes_formats

names_package() {
    local rc
    diskimg info "$W/x.qcow2" >"$W/info.out" 2>"$W/info.err"
    rc=$?
    cat "$W/info.err"
    [ "$rc" = 1 ] && [ "$(grep -c '' "$W/info.err")" = 1 ] &&
        grep -q 'install package diskimg-format-qcow2' "$W/info.err" &&
    diskimg create -f qcow2 "$W/y.qcow2" 1M 2>&1 | grep -q 'install package diskimg-format-qcow2'
}
t "diskimg info x.qcow2 says: install package diskimg-format-qcow2" names_package
t "the purge took the qcow2 plugin and its man page" \
    bash -c "! ls $PLUGINDIR/format/qcow2.so /usr/share/man/man7/diskimg-format-qcow2.7.gz"

reinstall() {
    apt_get install diskimg-format-qcow2 && formats_match &&
    diskimg info "$W/x.qcow2" | grep -q '^file format: qcow2$'
}
t "reinstalling diskimg-format-qcow2 brings qcow2 back" reinstall
t "after the reinstall, completion of -O offers qcow2 again" completes_formats

uring() {
    apt_get install diskimg-io-uring &&
    diskimg schema --kind=io | grep -qx 'io: posix uring'
}
t "diskimg-io-uring adds the uring backend" uring

# Without the plugin an nbd:// name names the package; with it, the name
# reaches libnbd (no server here: the connection is refused as such).
nbd() {
    diskimg info 'nbd+unix:///?socket=/nonexistent' 2>&1 | grep -q 'install package diskimg-io-nbd' &&
    apt_get install diskimg-io-nbd &&
    diskimg info 'nbd+unix:///?socket=/nonexistent' 2>&1 |
        grep -q "Failed to connect to '/nonexistent'"
}
t "diskimg-io-nbd serves nbd:// names, named as the hint before" nbd

# The SDK: build the packaged example plugin out of tree, against the
# installed headers and .pc files only, and load it with the installed diskimg.
sdk() {
    apt_get install libdiskimg-dev &&
    cp -r /usr/share/doc/libdiskimg-dev/examples/format-example "$W/example" &&
    pkg-config --exists diskimg-plugin &&
    [ "$(pkg-config --variable=plugindir diskimg-plugin)" = "$PLUGINDIR" ] &&
    [ -x "$(pkg-config --variable=embed_schema diskimg-plugin)" ] &&
    meson setup -Dwerror=true "$W/example-build" "$W/example" &&
    ninja -C "$W/example-build" && meson install -C "$W/example-build" &&
    [ -f "$PLUGINDIR/format/example.so" ]
}
t "libdiskimg-dev: pkg-config diskimg-plugin builds and installs the example plugin" sdk

example_loads() {
    diskimg --list-formats | grep '^example ' &&
    diskimg create -q -f example -o label=packaged "$W/e.ex" 1M &&
    diskimg info "$W/e.ex" | grep -q '^    label: packaged$'
}
t "the installed diskimg loads the example plugin (create, probe, info)" example_loads

purge_all() {
    rm -f "$PLUGINDIR/format/example.so" &&
    apt_get purge $(dpkg-query -W -f '${Package}\n' 'diskimg*' 'libdiskimg*') &&
    left=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 'diskimg*' 'libdiskimg*' 2>/dev/null | grep -v '^un' || true) &&
    echo "left: $left" && [ -z "$left" ] &&
    [ ! -e /usr/lib/$MULTIARCH/diskimg ] && [ ! -e /usr/bin/diskimg ]
}
t "purging every package leaves no diskimg file behind" purge_all
exit 0
