#!/usr/bin/env bash
# t_threads_churn: tests/integration/threads_churn.c creates and joins 100,000 threads that
# allocate, verify and free (leaving some blocks for the main thread to free after they exit).
# Under preload the peak RSS must stay under 200 MiB and the RSS must not keep growing (the
# program checks both and exits 1 otherwise); the printed checksum must match glibc's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
pm_build threads_churn tests/integration/threads_churn.c

pm_compare threads_churn "$PM_BUILD/threads_churn" 100000 200
cat "$PM_TMP/threads_churn.glibc.out"
echo "glibc:   $(tail -n 1 "$PM_TMP/threads_churn.glibc.err")"
echo "preload: $(tail -n 1 "$PM_TMP/threads_churn.preload.err")"
