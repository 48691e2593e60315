#!/bin/sh
# Compares libdiskimg's ABI with the committed baseline.  Added functions
# and struct members appended at the end pass;
# anything that would break a plugin or program built against the baseline
# (removed functions, changed struct layouts or signatures) fails.
# Regenerate the baseline on purpose with:  abidw --no-corpus-path \
#   --headers-dir core/include build/core/libdiskimg.so > core/abi/libdiskimg.abi
set -u
lib=$1; src=$2
command -v abidiff >/dev/null || { echo "SKIP: abidiff (abigail-tools) not installed"; exit 77; }
base=$src/core/abi/libdiskimg.abi
[ -f "$base" ] || { echo "no baseline at $base"; exit 1; }
abidiff --no-added-syms --suppressions "$src/core/abi/growth.suppr" \
    --headers-dir2 "$src/core/include" "$base" "$lib"
rc=$?
# Added functions and members appended to structs are suppressed; any other
# reported change (exit bit 4 "change", bit 8 "incompatible") fails.
if [ "$rc" -ne 0 ]; then
    echo "ABI check failed (abidiff exit $rc)"
    exit 1
fi
echo "ABI compatible with the baseline (abidiff exit $rc)"
