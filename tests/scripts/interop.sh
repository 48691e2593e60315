#!/bin/bash
# Runs the shared qemu-img conformance suite (../shared/interop/conform.sh)
# against the built diskimg, for the formats that have a plugin here.
# Extra arguments go to conform.sh (e.g. --quick, --filter REGEX).
set -u
tool=$1; src=$2; shift 2
conform=$(cd "$src/.." && pwd)/shared/interop/conform.sh
if [ ! -x "$conform" ] && [ ! -f "$conform" ]; then
    echo "SKIP: $conform not found (the shared/ folder must sit beside the repository)"
    exit 77
fi
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
known="raw qcow2 qcow vmdk vdi vpc vhdx qed parallels luks cloop dmg"
have=$("$tool" --list-formats --output=json | python3 -c '
import json, sys
print(" ".join(p["name"] for p in json.load(sys.stdin)))')
formats=""
for f in $known; do
    case " $have " in *" $f "*) formats="$formats${formats:+,}$f" ;; esac
done
[ -n "$formats" ] || { echo "SKIP: no known format plugin built"; exit 77; }
echo "formats under test: $formats"
exec bash "$conform" "$tool" --formats "$formats" "$@"
