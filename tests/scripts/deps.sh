#!/bin/sh
# Installs what building and testing diskimg needs on Debian 12, when missing.
# Safe to run repeatedly; does nothing when everything is there.
# python3-jsonschema checks the introspection documents; libbz2-dev builds
# dmg's bzip2 chunks; the libyal readers, cloop-utils, dmg2img and
# cryptsetup-bin are the independent tools the format tests compare with.
# libnbd-dev builds the nbd io plugin; nbdkit, libnbd-bin (nbdcopy) and
# gnutls-bin (certtool, psktool for the TLS cases) are what its remote
# suite (plugins/io/nbd/test-nbd.sh) runs against, with qemu-nbd.
# libcurl4-openssl-dev builds io/http; its remote suite serves images with
# nginx-light and compares with qemu-img's curl driver (qemu-block-extra).
# libclang-rt-14-dev holds libFuzzer and the sanitizer runtimes for the
# -Dfuzzing=true build; strace and python3-yaml make its seed corpora
# (tests/fuzz/harness/make-seeds.sh, docs/fuzzing.md).
# The dpkg-dev line is the packaging suite's (packaging/meson.build): Debian and
# rpm package builds, lintian, a throwaway Debian root; and man for the pages.
# The rbd line: librbd builds io/rbd; ceph-mon, ceph-osd and ceph-common
# are the one-node cluster its remote suite starts; qemu-block-extra gives
# qemu-img its rbd driver, the suite's witness.
set -e
PKGS="meson ninja-build gcc clang pkg-config python3 libglib2.0-dev libyaml-dev
      libjson-glib-dev zlib1g-dev libzstd-dev nettle-dev liburing-dev qemu-utils
      abigail-tools time zstd libnbd-dev nbdkit libnbd-bin gnutls-bin pigz python3-jsonschema libbz2-dev
      libvmdk-utils libvhdi-utils cloop-utils dmg2img cryptsetup-bin openssl
      libclang-rt-14-dev python3-yaml
      libcurl4-openssl-dev nginx-light
      dpkg-dev debhelper lintian mmdebstrap rpm man-db strace
      librbd-dev ceph-mon ceph-osd ceph-common qemu-block-extra"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "Installing:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
