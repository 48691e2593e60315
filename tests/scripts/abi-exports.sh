#!/bin/sh
# abi-exports.sh LIBRARY: the dynamic symbol table of libdiskimg defines
# nothing but diskimg_* (plus the version-node names a linker version script
# would add).  Anything else is an accidental ABI promise: a plugin could link
# against it and break when the core's internals change.
set -eu
lib=$1
strays=$(nm -D --defined-only "$lib" | awk '{print $NF}' |
	grep -v -e '^diskimg_' -e '^DISKIMG_' || true)
if [ -n "$strays" ]; then
	echo "abi-exports: $lib exports symbols outside diskimg_*:" >&2
	echo "$strays" >&2
	exit 1
fi
echo "abi-exports: $(nm -D --defined-only "$lib" | wc -l) exports, all diskimg_*"
