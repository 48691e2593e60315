#!/bin/sh
# Quick start, step 1: install dependencies, build, and show diskimg working:
# create a raw image, write into it, convert it to a sparse copy and to a
# compressed qcow2, inspect and check them.
set -e
cd "$(dirname "$0")/../.."
sh tests/scripts/deps.sh
[ -d build ] || meson setup build
ninja -C build
D=$PWD/build/commands/diskimg
demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
cd "$demo"
set -x
"$D" --list-formats
"$D" create -f raw disk.img 64M
printf 'hello from diskimg' | dd of=disk.img bs=1 seek=1048576 conv=notrunc status=none
"$D" convert -p -f raw -O raw disk.img copy.img
"$D" info copy.img
"$D" map --output=json copy.img
"$D" compare disk.img copy.img
"$D" convert -c -O qcow2 -o compression_type=zstd disk.img disk.qcow2
"$D" info disk.qcow2
"$D" check disk.qcow2
