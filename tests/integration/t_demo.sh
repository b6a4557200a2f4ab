#!/usr/bin/env bash
# t_demo: `make demo`'s script works: same output as glibc, a heap report at the peak with
# symbolized sites, and a balanced statistics report at exit.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
bash "$PM_ROOT/tools/pm-demo" "$POOLMALLOC_SO" >"$PM_TMP/demo.out" 2>"$PM_TMP/demo.err" ||
    pm_fail "pm-demo failed" "$(tail -5 "$PM_TMP/demo.out" "$PM_TMP/demo.err")"
grep -q "^output: identical to glibc's" "$PM_TMP/demo.out" || pm_fail "outputs differ" "$(head -20 "$PM_TMP/demo.out")"
grep -q "^=== poolmalloc heap report: pid" "$PM_TMP/demo.out" || pm_fail "no heap report at the peak"
grep -q "^#1  live ~" "$PM_TMP/demo.out" || pm_fail "the peak report has no sites"
grep -q "(balanced)" "$PM_TMP/demo.out" || pm_fail "the exit report does not balance"
echo "ok: $(grep -m1 '^live ' "$PM_TMP/demo.out")"
