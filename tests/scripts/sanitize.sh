#!/bin/sh
# Builds the tree again with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs the unit, cli, corrupt and fuzz (regression replay) suites there
# (the interop suite is run by the normal build; under ASan it would only
# repeat it ten times slower).  The corrupt suite and the fuzz regressions
# are where hostile images meet the parsers: under the sanitizers an
# out-of-bounds read or an overflow there is a failure, not luck.
set -e
src=$1; dir=$2
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$src" -Db_sanitize=address,undefined -Db_lundef=false \
        -Dsanitize_suite=false -Dinterop=disabled -Dbuildtype=debug >/dev/null
fi
ninja -C "$dir" > "$dir/ninja.log" 2>&1 || { tail -n 40 "$dir/ninja.log"; exit 1; }
meson test -C "$dir" --print-errorlogs --no-rebuild --suite unit --suite cli \
    --suite corrupt --suite fuzz
