#!/bin/sh
# Compares libdiskimg's ABI with the committed baseline.  Added functions
# and members appended at the end of a struct that carries struct_size pass;
# anything that would break a plugin or program built against the baseline
# (removed functions, changed struct layouts or signatures) fails.
# A third argument names another baseline (tests/scripts/abi-proof.py uses
# it to show that the check fails when it should).
# Regenerate the baseline on purpose with:  abidw --no-corpus-path \
#   --headers-dir core/include build/core/libdiskimg.so > core/abi/libdiskimg.abi
set -u
lib=$1; src=$2; base=${3:-$src/core/abi/libdiskimg.abi}
command -v abidiff >/dev/null || { echo "SKIP: abidiff (abigail-tools) not installed"; exit 77; }
[ -f "$base" ] || { echo "no baseline at $base"; exit 1; }
# The structs that carry struct_size may grow at the end: a struct whose
# body has a `uint32_t struct_size;` member.
sized=$(awk '/^struct [a-z0-9_]+ \{/ { name = $2; next }
             name && /^    uint32_t struct_size;/ { print name; name = "" }
             /^\};/ { name = "" }' "$src"/core/include/diskimg/*.h | sort -u | paste -sd '|' -)
[ -n "$sized" ] || { echo "found no struct with struct_size in the headers"; exit 1; }
suppr=$(mktemp) || exit 1
trap 'rm -f "$suppr"' EXIT
{ cat "$src/core/abi/growth.suppr"
  printf '\n[suppress_type]\n  type_kind = struct\n  name_regexp = ^(%s)$\n' "$sized"
  printf '  has_data_member_inserted_at = end\n'; } > "$suppr"
abidiff --no-added-syms --suppressions "$suppr" \
    --headers-dir2 "$src/core/include" "$base" "$lib"
rc=$?
# Added functions and members appended to sized structs are suppressed; any other
# reported change (exit bit 4 "change", bit 8 "incompatible") fails.
if [ "$rc" -ne 0 ]; then
    echo "ABI check failed (abidiff exit $rc)"
    exit 1
fi
echo "ABI compatible with the baseline (abidiff exit $rc)"
