#!/usr/bin/env bash
# t_memerrors: memory errors the default mode must stop, each in a fresh process (so the arena is
# fresh, as in mimalloc-bench's security suite, whose sources we do not ship): a write a megabyte
# past a block and a memcpy running a megabyte over it fault on slots no pool opened; a read or
# write through malloc(0) faults; double and interior frees abort with their one line. Sizes are
# the suite's: 8, 4096 and 256 KiB.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

bin="$PM_TMP/errors"
${CC:-cc} -O0 -fno-builtin -o "$bin" "$PM_IDIR/memerrors/errors.c"

# expect KIND SIZE OUTCOME: OUTCOME is "segv" or the text the abort message must contain
expect() {
    local kind=$1 size=$2 want=$3 rc=0
    env LD_PRELOAD="$POOLMALLOC_SO" "$bin" "$kind" "$size" >"$PM_TMP/$kind.$size.out" 2>"$PM_TMP/$kind.$size.err" || rc=$?
    if grep -q "not caught" "$PM_TMP/$kind.$size.out"; then pm_fail "$kind at $size bytes was not caught"; fi
    if [ "$want" = segv ]; then
        [ "$rc" -eq 139 ] || pm_fail "$kind at $size bytes: exit status $rc, not SIGSEGV (139)" "$(cat "$PM_TMP/$kind.$size.err")"
    else
        [ "$rc" -eq 134 ] && grep -qF "$want" "$PM_TMP/$kind.$size.err" ||
            pm_fail "$kind at $size bytes: exit status $rc, want an abort with '$want'" "$(cat "$PM_TMP/$kind.$size.err")"
    fi
    echo "$kind $size: $( [ "$want" = segv ] && echo SIGSEGV || head -1 "$PM_TMP/$kind.$size.err")"
}

for size in 8 4096 262144; do
    expect mbyte_overflow "$size" segv
    expect mbyte_memcpy_overflow "$size" segv
    expect double_free "$size" "free(): double free"
    expect interior_free "$size" "free(): invalid pointer"
done
expect zero_read 0 segv
expect zero_write 0 segv
# glibc lets every one of them pass silently, or aborts on some: the point is that we never do.
