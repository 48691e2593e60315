# SPDX-License-Identifier: MIT
# TAP steps for the long test scripts (bash; sourced).  Set TAP_LOG to a
# scratch file first; TAP_DIAG_LINES (default 40) is how much of a failed
# step's output becomes its diagnostics.  End the script with
#     echo "1..$n"; [ "$failures" -eq 0 ]

n=0
failures=0

# t DESCRIPTION COMMAND...: one TAP test; COMMAND's output becomes the
# diagnostics when it fails.
t() {
    local desc=$1
    shift
    n=$((n + 1))
    if "$@" >"${TAP_LOG:?set TAP_LOG before sourcing tap-steps.sh}" 2>&1; then
        echo "ok $n - $desc"
    else
        failures=$((failures + 1))
        echo "not ok $n - $desc"
        head -n "${TAP_DIAG_LINES:-40}" "$TAP_LOG" | sed -e 's/^/# /'
    fi
}

# bail REASON: a step everything else depends on failed.
bail() {
    echo "Bail out! $1"
    exit 1
}
