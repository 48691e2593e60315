#!/bin/bash
# SPDX-License-Identifier: MIT
#
# completion.sh COMPLETION DISKIMG
#
# Drives the generated bash completion the way bash does: sets COMP_WORDS
# and COMP_CWORD (split at '=' as bash's COMP_WORDBREAKS splits them), calls
# _diskimg and compares COMPREPLY.  The plugin-dependent answers are asked of
# DISKIMG (the build tree's binary, with the build's plugins).  Prints TAP.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 COMPLETION DISKIMG" >&2
    exit 2
fi
# shellcheck source=/dev/null
source "$1" || exit 1
DISKIMG=$2
unset DISKIMG_PLUGIN_PATH
export LC_ALL=C

n=0
failures=0

# expect "WANTED REPLY" WORD...: completing the last WORD gives exactly the
# words of WANTED REPLY (in any order).
expect() {
    local want=$1 got
    shift
    COMP_WORDS=("$DISKIMG" "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _diskimg
    got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | xargs)
    want=$(printf '%s\n' $want | sort | xargs)
    n=$((n + 1))
    if [ "$got" = "$want" ]; then
        echo "ok $n - diskimg $* -> $want"
    else
        failures=$((failures + 1))
        echo "not ok $n - diskimg $*"
        echo "#   wanted: $want"
        echo "#   got:    $got"
    fi
}

FORMATS=$("$DISKIMG" --list-formats | awk '{print $1}' | xargs)
[ -n "$FORMATS" ] || { echo "Bail out! $DISKIMG --list-formats lists nothing"; exit 1; }
COMMANDS=$("$DISKIMG" schema commands --output=json |
    python3 -c 'import json, sys; print(" ".join(json.load(sys.stdin)["commands"]))')

expect "$COMMANDS" ''
expect "create" cre
expect "-h --help -V --version --io= --list-formats" -
# the installed io plugins that serve host files: the remote ones (nbd,
# http, rbd) are reached by their URI schemes, not by --io
IO_BACKENDS="posix uring"
expect "$IO_BACKENDS" --io = ''
expect "$IO_BACKENDS" --io =
expect "cluster_size=" create -f qcow2 -o clu
expect "sha224 sha256" checksum -a sha2
expect "sha1 sha224 sha256 sha384 sha512" checksum --algorithm = sha
expect "cluster_size=" create -fqcow2 -o clu
expect "cluster_size=" convert -f raw -O qcow2 -o clu
expect "cluster_size=" measure -O qcow2 -o clu
expect "size=1G,lazy_refcounts=" create -f qcow2 -o size=1G,lazy_
expect "preallocation=" create -o pre
expect "preallocation=" convert -f qcow2 -O raw -o pre
expect "0.10 1.1 v2 v3" create -f qcow2 -o compat = ''
expect "0.10 1.1 v2 v3" create -f qcow2 -o compat =
expect "v2 v3" create -f qcow2 -o compat = v
expect "zstd" create -f qcow2 -o cluster_size = 64k,compression_type = zs
expect "aes luks" create -f qcow2 -o encrypt.format = ''
expect "on off" create -f qcow2 -o lazy_refcounts = ''
expect "compat=" amend -f qcow2 -o c
expect "cluster_size= compat= compression_type=" create -f qcow2 -o c
expect "$FORMATS" convert -O ''
expect "$FORMATS" create -f ''
expect "$FORMATS" info -f ''
expect "$FORMATS" compare -f raw -F ''
expect "$(tr " " "\n" <<<"$FORMATS" | grep "^q" | xargs)" create -f q
expect "human json" info --output = ''
expect "leaks all" check -r ''
expect "--object= --output=" info --o
expect "--shrink" resize --sh

echo "1..$n"
[ "$failures" -eq 0 ]
