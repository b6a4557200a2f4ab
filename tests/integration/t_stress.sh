#!/usr/bin/env bash
# t_stress: the verifying multi-threaded stress test (tests/stress/stress.c) under glibc and
# preloaded, in four configurations (the last with poolmalloc told to decommit free memory at
# once). Both runs must exit 0 and print the same summary line (its counts depend only on the
# arguments). Any cookie, alignment, calloc, realloc or usable-size failure makes the preloaded
# run exit 1 with a "stress: FAIL: ..." message, shown in the failure details.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
pm_build stress tests/stress/stress.c

# threads rounds scale seed: 4 concurrent threads x 20 lifetimes each; then more threads than
# cores with shorter lives (more heap abandonment/adoption); then a single thread.
for args in "4 20 50 42" "8 12 20 7" "1 3 40 99"; do
    label="stress_${args// /_}"
    read -ra argv <<<"$args"
    pm_compare "$label" "$PM_BUILD/stress" "${argv[@]}"
    grep -q ' leaked=0 OK$' "$PM_TMP/$label.preload.out" ||
        pm_fail "$label: no summary line from the preloaded run" "$(tail -5 "$PM_TMP/$label.preload.out")"
    cat "$PM_TMP/$label.preload.out"
    cat "$PM_TMP/$label.preload.err"
done

# poolmalloc's POOLMALLOC_CONF (ignored by glibc): decommit free pool slots at once, so pages are
# decommitted and recommitted constantly while other threads allocate and free.
pm_compare stress_purge_now env POOLMALLOC_CONF=purge:0,purge_delay:0 "$PM_BUILD/stress" 4 10 30 3
cat "$PM_TMP/stress_purge_now.preload.out" "$PM_TMP/stress_purge_now.preload.err"
if grep -q 'POOLMALLOC_CONF' "$PM_TMP/stress_purge_now.preload.err"; then
    pm_note "POOLMALLOC_CONF=purge:0,purge_delay:0 was not accepted: $(grep -m1 POOLMALLOC_CONF "$PM_TMP/stress_purge_now.preload.err")"
fi
