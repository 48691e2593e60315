#!/bin/sh
# SPDX-License-Identifier: MIT
#
# copy-tree.sh SOURCE_ROOT DEST: copies the source tree as it is (uncommitted
# changes included, build directories and ignored files left out) to DEST,
# the scratch copy the package builds work in.
set -eu
SRC=$1 DEST=$2
mkdir -p "$DEST"
if git -C "$SRC" rev-parse --show-toplevel >/dev/null 2>&1; then
    # Files deleted but not yet committed are skipped.
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$SRC" && xargs -0 sh -c 'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\n" "$f"; done; :' sh) |
        (cd "$SRC" && tar --no-recursion -T - -cf -) | tar -C "$DEST" -xf -
else
    tar -C "$SRC" --exclude='./build*' --exclude=./debian -cf - . | tar -C "$DEST" -xf -
fi
