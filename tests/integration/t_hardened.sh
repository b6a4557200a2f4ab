#!/usr/bin/env bash
# t_hardened: hardened:true must never change what a correct program computes. The real-program
# tests (sort, sqlite3, python3, perl, git, gcc) run again with POOLMALLOC_CONF=hardened:true on
# the preloaded side; each output must still equal glibc's, and no check may fire.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export PM_PRELOAD_CONF=hardened:true
# the mode is on: a 5-byte block has exactly 5 usable bytes (the default mode says 16)
probe='import ctypes; c = ctypes.CDLL(None); c.malloc.restype = ctypes.c_void_p
c.malloc_usable_size.argtypes = [ctypes.c_void_p]; print(c.malloc_usable_size(c.malloc(5)))'
got=$(env LD_PRELOAD="$POOLMALLOC_SO" POOLMALLOC_CONF=$PM_PRELOAD_CONF python3 -c "$probe")
[ "$got" = 5 ] || pm_fail "hardened:true is not in effect: malloc_usable_size(malloc(5)) = $got"
echo "hardened:true is on: malloc_usable_size(malloc(5)) = $got"
for t in sort sqlite python perl git gcc; do
    echo "== t_$t with hardened:true"
    PM_TEST_NAME=hardened_$t bash "$PM_IDIR/t_$t.sh"
done
