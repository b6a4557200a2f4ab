#!/usr/bin/env bash
# t_memerrors: memory errors the default mode must stop, each in a fresh process (so the arena is
# fresh, as in mimalloc-bench's security suite, whose sources we do not ship): a write a megabyte
# past a block and a memcpy running a megabyte over it fault on slots no pool opened; a read or
# write through malloc(0) faults; double and interior frees abort with their one line. Then what
# hardened:true adds: overflows and underflows at free, memcpy and memset checked before they run,
# writes after free found when the block leaves quarantine, freed blocks zeroed, no immediate
# reuse. Sizes are the suite's: 8, 4096 and 256 KiB.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

bin="$PM_TMP/errors"
${CC:-cc} -O0 -fno-builtin -o "$bin" "$PM_IDIR/memerrors/errors.c"

# expect KIND SIZE OUTCOME: OUTCOME is "segv" or the text the abort message must contain
expect() {
    local kind=$1 size=$2 want=$3 rc=0
    env LD_PRELOAD="$POOLMALLOC_SO" POOLMALLOC_CONF="${conf-}" "$bin" "$kind" "$size" >"$PM_TMP/$kind.$size.out" 2>"$PM_TMP/$kind.$size.err" || rc=$?
    if grep -q "not caught" "$PM_TMP/$kind.$size.out"; then pm_fail "$kind at $size bytes was not caught"; fi
    if [ "$want" = none ]; then           # a check, not an error: exit 0, nothing printed
        [ "$rc" -eq 0 ] || pm_fail "$kind at $size bytes: exit status $rc" "$(cat "$PM_TMP/$kind.$size.err")"
    elif [ "$want" = segv ]; then
        [ "$rc" -eq 139 ] || pm_fail "$kind at $size bytes: exit status $rc, not SIGSEGV (139)" "$(cat "$PM_TMP/$kind.$size.err")"
    else
        [ "$rc" -eq 134 ] && grep -qF "$want" "$PM_TMP/$kind.$size.err" ||
            pm_fail "$kind at $size bytes: exit status $rc, want an abort with '$want'" "$(cat "$PM_TMP/$kind.$size.err")"
    fi
    echo "${conf:-default} $kind $size: $(case $want in segv) echo SIGSEGV ;; none) echo ok ;; *) head -1 "$PM_TMP/$kind.$size.err" ;; esac)"
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

# hardened:true: every one of these must be caught, with the error named.
conf=hardened:true
for size in 8 4096 262144; do
    expect mbyte_overflow "$size" segv
    expect double_free "$size" "free(): double free"
    expect interior_free "$size" "free(): invalid pointer"
    expect byte_overflow "$size" "free(): heap-buffer-overflow: the $size-byte block"
    if [ "$size" -ge 1024 ]; then   # the front canary takes it; below 1 KiB, the header
        expect byte_underflow "$size" "free(): heap-buffer-underflow"
    else
        expect byte_underflow "$size" "free(): heap corruption: the block's header"
    fi
    expect memcpy_overflow "$size" "memcpy(): heap-buffer-overflow: $((size + 1)) bytes"
    expect memcpy_underflow "$size" "memcpy(): heap-buffer-underflow: $size bytes"
    expect memcpy_overread "$size" "memcpy(): heap-buffer-overflow: $((size + 16)) bytes"
    expect memset_after_free "$size" "memset(): use after free"
    expect write_after_free_reuse "$size" "free(): write after free"
    expect malloc_reuse "$size" none
done
for size in 8 4096; do           # zeroed whole up to 4 KiB of data; above, the first 4 KiB
    expect zero_after_free "$size" none
    expect zero_on_malloc "$size" none
done
for size in 4096 262144; do      # 32 bytes out lands in the block's own canaries from 1 KiB up
    expect byte32_overflow "$size" "free(): heap-buffer-overflow"
    expect byte32_underflow "$size" "free(): heap-buffer-underflow"
done
for size in 8 4096; do           # 4 KiB on is inside another block or in this one's canary
    expect far_free "$size" "free(): invalid pointer"
done
expect zero_read 0 segv
