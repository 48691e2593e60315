#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs fuzz campaigns, one target after the other (docs/fuzzing.md):
#
#     campaign.sh FUZZ-BUILD SEED-DIR WORK-DIR SECONDS TARGET...
#
# FUZZ-BUILD is a -Dfuzzing=true build; SEED-DIR/TARGET holds the seeds
# (make-seeds.sh).  Each target runs `nice fuzz-TARGET` for SECONDS with
# libFuzzer's fork mode (one worker), so that the campaign goes on past a
# crash, a timeout (-timeout=10) or an out-of-memory (-rss_limit_mb=1024);
# every such input lands in WORK-DIR/artifacts/TARGET/.  The corpus grows
# in WORK-DIR/corpus/TARGET (kept between runs: a second run continues),
# the log is WORK-DIR/logs/TARGET.log, and one line per run is appended to
# WORK-DIR/stats.tsv: target, seconds, executions, findings (artifacts of
# that run).
set -u
build=$(realpath "$1"); seeds=$(realpath "$2"); work=$(mkdir -p "$3" && realpath "$3")
seconds=$4; shift 4
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
[ -f "$work/stats.tsv" ] || printf 'target\tseconds\texecutions\tfindings\n' > "$work/stats.tsv"
for t in "$@"; do
    exe=$build/tests/fuzz/harness/fuzz-$t
    [ -x "$exe" ] || { echo "campaign: no $exe" >&2; continue; }
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t" "$work/logs" "$seeds/$t"
    # the largest seed sets the input length, within 4 MiB (vhdx's smallest
    # images are about 3 MiB; longer seeds are cut)
    maxlen=$(find "$seeds/$t" -type f -printf '%s\n' | sort -n | tail -1)
    maxlen=$(( ${maxlen:-0} < 4096 ? 4096 : (maxlen > 4194304 ? 4194304 : maxlen) ))
    start=$(date +%s)
    touch "$work/artifacts/$t/.start"   # findings of this run are newer
    (cd "$work/artifacts/$t" && nice "$exe" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 \
        -ignore_ooms=1 -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 \
        -max_len="$maxlen" -artifact_prefix="$work/artifacts/$t/" \
        "$work/corpus/$t" "$seeds/$t" < /dev/null > "$work/logs/$t.log" 2>&1)
    took=$(( $(date +%s) - start ))
    # fork mode reports "#EXECS: cov: ... time: Ns job: N"
    execs=$(grep -aoE '^#[0-9]+: cov' "$work/logs/$t.log" | tail -1 | tr -dc 0-9)
    findings=$(find "$work/artifacts/$t" -maxdepth 1 -type f -newer "$work/artifacts/$t/.start" \( -name 'crash-*' -o \
        -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) | wc -l)
    printf '%s\t%s\t%s\t%s\n' "$t" "$took" "${execs:-0}" "$findings" >> "$work/stats.tsv"
    printf 'campaign: %s %ss %s executions %s findings\n' "$t" "$took" "${execs:-0}" "$findings"
done
