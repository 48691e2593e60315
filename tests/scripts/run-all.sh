#!/bin/sh
# Quick start, step 2: the whole test suite (unit, cli, interop with the
# real qemu-img, and the same suite again under ASan+UBSan).
set -e
cd "$(dirname "$0")/../.."
sh tests/scripts/deps.sh
[ -d build ] || meson setup build
ninja -C build
meson test -C build --print-errorlogs --num-processes 2 "$@"
