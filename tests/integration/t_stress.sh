#!/usr/bin/env bash
# t_stress: the verifying multi-threaded stress test (tests/stress/stress.c) under glibc and
# preloaded. Both runs must exit 0 and print the same summary line (its counts depend only on
# the arguments). Any cookie, alignment, calloc, realloc or usable-size failure makes the
# preloaded run exit 1 with a "stress: FAIL: ..." message, shown in the failure details.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
pm_build stress tests/stress/stress.c

# threads rounds scale seed: 4 concurrent threads x 20 lifetimes each; then more threads than
# cores with shorter lives (more heap abandonment/adoption); then a single thread.
for args in "4 20 50 42" "8 12 20 7" "1 3 40 99"; do
    label="stress_${args// /_}"
    pm_compare "$label" "$PM_BUILD/stress" $args
    grep -q ' leaked=0 OK$' "$PM_TMP/$label.preload.out" ||
        pm_fail "$label: no summary line from the preloaded run" "$(tail -5 "$PM_TMP/$label.preload.out")"
    cat "$PM_TMP/$label.preload.out"
    cat "$PM_TMP/$label.preload.err"
done
