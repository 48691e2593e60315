#!/bin/bash
# SPDX-License-Identifier: MIT
#
# static-check.sh SOURCE_ROOT
#
# The cheap half of the packaging suite, needing no package tools: every
# format plugin (plugins/format/NAME/) has its diskimg-format-NAME stanza in
# packaging/debian/control and its %format_package line in the rpm spec, each
# format package has a plugin, schema/magic.yaml hints at exactly those
# names, and the three version numbers agree.  Prints TAP.
set -u
[ $# -eq 1 ] || { echo "usage: $0 SOURCE_ROOT" >&2; exit 2; }
SRC=$1
CONTROL=$SRC/packaging/debian/control
SPEC=$SRC/packaging/rpm/diskimg.spec
MAGIC=$SRC/schema/magic.yaml

n=0
failures=0
check() {   # check DESCRIPTION PROBLEM...: passes when no PROBLEM is given
    local desc=$1
    shift
    n=$((n + 1))
    if [ $# -eq 0 ]; then
        echo "ok $n - $desc"
    else
        failures=$((failures + 1))
        echo "not ok $n - $desc"
        printf '# %s\n' "$@"
    fi
}

plugins=$(for d in "$SRC"/plugins/format/*/; do basename "$d"; done | sort)
debs=$(sed -n 's/^Package: diskimg-format-//p' "$CONTROL" | sort)
rpms=$(sed -n 's/^%format_package \([A-Za-z0-9_-]*\)$/\1/p' "$SPEC" | sort)

problems=()
for p in $plugins; do
    grep -qx "$p" <<<"$debs" || problems+=("no stanza 'Package: diskimg-format-$p' in packaging/debian/control")
done
for p in $debs; do
    grep -qx "$p" <<<"$plugins" || problems+=("diskimg-format-$p has no plugins/format/$p")
done
check "debian/control: one diskimg-format-NAME per format plugin" "${problems[@]}"

problems=()
for p in $plugins; do
    grep -qx "$p" <<<"$rpms" || problems+=("no '%format_package $p' line in packaging/rpm/diskimg.spec")
done
for p in $rpms; do
    grep -qx "$p" <<<"$plugins" || problems+=("%format_package $p has no plugins/format/$p")
done
check "rpm spec: one %format_package NAME per format plugin" "${problems[@]}"

problems=()
while IFS= read -r line; do
    fmt=$(sed -n 's/.*format: \([^,}]*\).*/\1/p' <<<"$line")
    pkg=$(sed -n 's/.*package: \([^,}]*\).*/\1/p' <<<"$line")
    # entries without a package are content other tools know (iso9660),
    # recognised by inspect, never a plugin of ours
    [ -z "$pkg" ] && continue
    [ "$pkg" = "diskimg-format-$fmt" ] || problems+=("magic.yaml: $fmt hints at '$pkg', not diskimg-format-$fmt")
done < <(grep 'format:' "$MAGIC")
check "schema/magic.yaml hints at diskimg-format-NAME for every format" "${problems[@]}"

project=$(sed -n "s/^  version : '\([^']*\)',$/\1/p" "$SRC/meson.build" | head -n 1)
deb=$(sed -n '1s/^diskimg (\([^)]*\)).*/\1/p' "$SRC/packaging/debian/changelog")
rpm=$(sed -n 's/^Version: *//p' "$SPEC")
problems=()
[ "$deb" = "$project" ] || problems+=("debian/changelog says $deb, meson.build $project")
[ "$rpm" = "$project" ] || problems+=("diskimg.spec says $rpm, meson.build $project")
check "debian/changelog, diskimg.spec and meson.build agree on the version ($project)" "${problems[@]}"

echo "1..$n"
[ "$failures" -eq 0 ]
