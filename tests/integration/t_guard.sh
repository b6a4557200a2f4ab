#!/usr/bin/env bash
# t_guard: guarded sampling (POOLMALLOC_CONF=guard:N). At guard:1 every allocation is guarded, so
# each error of tests/integration/guard/guard.c is caught in every run:
#   overflow        a one-byte overflow of a 64-byte block: SIGSEGV, a report naming the kind, the
#                   access site (overflow_site) and the allocation site (alloc_site)
#   use_after_free  a write after free: SIGSEGV, a report naming use-after-free, the access site,
#                   the allocation site and the free site
#   slack_overflow  a one-byte overflow of a 100-byte block lands in the 12 bytes of slack before
#                   the guard page: free aborts with its line
# and the program's own faults stay its own: its SIGSEGV handler installed before ours (from
# .preinit_array) gets them chained, one installed later replaces ours, and a stray fault with no
# handler kills it as before, with no report. Then correct programs (sort, python3) give the same
# output as under glibc at guard:1 and at the recommended guard:5000.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

pm_build guard_errors tests/integration/guard/guard.c -O0 -rdynamic
bin="$PM_BUILD/guard_errors"

# run CASE CONF: the case's stdout, stderr and exit status in $PM_TMP/CASE.{out,err,rc}
run() {
    local kind=$1 conf=$2 rc=0
    env LD_PRELOAD="$POOLMALLOC_SO" POOLMALLOC_CONF="$conf" timeout -k 5 "$PM_TIMEOUT" "$bin" "$kind" \
        >"$PM_TMP/$kind.out" 2>"$PM_TMP/$kind.err" || rc=$?
    echo "$rc" >"$PM_TMP/$kind.rc"
}
# want CASE RC: the exit status, and nothing said "not caught"
want() {
    local kind=$1 rc
    rc=$(cat "$PM_TMP/$kind.rc")
    ! grep -q "not caught" "$PM_TMP/$kind.out" || pm_fail "$kind was not caught" "$(cat "$PM_TMP/$kind.err")"
    [ "$rc" = "$2" ] || pm_fail "$kind: $(pm_describe_rc "$rc"), want $(pm_describe_rc "$2")" "$(cat "$PM_TMP/$kind.err")"
}
# says CASE REGEX...: each extended regex matches a line of the case's stderr
says() {
    local kind=$1 re
    shift
    for re in "$@"; do
        grep -Eq -- "$re" "$PM_TMP/$kind.err" || pm_fail "$kind: the report lacks /$re/" "$(cat "$PM_TMP/$kind.err")"
    done
}
# frames_under CASE HEADING: the frame lines that follow a heading line, up to the next heading
frames_under() {
    awk -v h="$2" 'index($0, h) == 1 { on = 1; next } /^poolmalloc: / { on = 0 } on' "$PM_TMP/$1.err"
}

run overflow guard:1
want overflow 139
says overflow \
    '^poolmalloc: guard: heap-buffer-overflow: write of address 0x[0-9a-f]+, 0 bytes past the end of the 64-byte block 0x[0-9a-f]+ \(offset 64\)$' \
    '^poolmalloc: guard: the write \(SIGSEGV\):$'
frames_under overflow "poolmalloc: guard: the write" | head -1 | grep -q ' overflow_site+0x' ||
    pm_fail "overflow: the access's first frame is not overflow_site" "$(cat "$PM_TMP/overflow.err")"
frames_under overflow "poolmalloc: guard: the block was allocated at:" | head -1 | grep -q ' alloc_site+0x' ||
    pm_fail "overflow: the allocation's first frame is not alloc_site" "$(cat "$PM_TMP/overflow.err")"
! grep -q "freed at" "$PM_TMP/overflow.err" || pm_fail "overflow: a live block's report names a free"
echo "overflow: $(head -1 "$PM_TMP/overflow.err")"

run use_after_free guard:1
want use_after_free 139
says use_after_free \
    '^poolmalloc: guard: use-after-free: write of address 0x[0-9a-f]+, inside the freed 64-byte block 0x[0-9a-f]+ \(offset 8\)$'
frames_under use_after_free "poolmalloc: guard: the write" | head -1 | grep -q ' use_after_free_site+0x' ||
    pm_fail "use_after_free: the access's first frame is not use_after_free_site" "$(cat "$PM_TMP/use_after_free.err")"
frames_under use_after_free "poolmalloc: guard: the block was allocated at:" | head -1 | grep -q ' alloc_site+0x' ||
    pm_fail "use_after_free: the allocation's first frame is not alloc_site" "$(cat "$PM_TMP/use_after_free.err")"
frames_under use_after_free "poolmalloc: guard: and freed at:" | head -1 | grep -q ' free_site+0x' ||
    pm_fail "use_after_free: the free's first frame is not free_site" "$(cat "$PM_TMP/use_after_free.err")"
echo "use_after_free: $(head -1 "$PM_TMP/use_after_free.err")"

run slack_overflow guard:1
want slack_overflow 134
says slack_overflow '^poolmalloc: free\(\): heap-buffer-overflow \(the bytes after a guarded block, before its guard page, were written\): 0x[0-9a-f]+$'
echo "slack_overflow: $(head -1 "$PM_TMP/slack_overflow.err")"

# The program's handler, installed before ours: it gets its two faults, then ours reports the
# overflow and the process dies of it.
run handler_first guard:1
want handler_first 139
[ "$(cat "$PM_TMP/handler_first.out")" = "own handler: 2 faults" ] ||
    pm_fail "handler_first: the program's handler did not get its faults: $(cat "$PM_TMP/handler_first.out")"
says handler_first '^poolmalloc: guard: heap-buffer-overflow: write of address'
run handler_later guard:1
want handler_later 0
[ "$(cat "$PM_TMP/handler_later.out")" = "own handler: 2 faults" ] ||
    pm_fail "handler_later: $(cat "$PM_TMP/handler_later.out")"
run wild guard:1
want wild 139
[ ! -s "$PM_TMP/wild.err" ] || pm_fail "wild: a fault away from guarded blocks printed something" "$(cat "$PM_TMP/wild.err")"
echo "own handlers: chained (2 faults), replaced (2 faults); a stray fault: SIGSEGV, no report"

# Correct programs: the same output as under glibc, with guarding on. The statistics at exit say
# how many allocations were guarded: some must have been, or the comparison proves nothing (sort
# makes few allocations, all but a dozen too big for a slot: at guard:5000 it may have none).
in="$PM_TMP/input.txt"
awk 'BEGIN { srand(11); for (i = 0; i < 50000; i++) printf "%d\t%s\n", int(rand() * 100000), substr("abcdefghijklmnopqrstuvwxyz", 1 + int(rand() * 26)) }' >"$in"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
for conf in guard:1 guard:5000; do
    export POOLMALLOC_CONF=$conf,stats:true
    pm_compare "sort.$conf" env LC_ALL=C sort -k2,2 -k1,1n "$in"
    PYTHONMALLOC=malloc pm_compare "python.$conf" "$PY" -c '
import json, re
d = {str(i): [i, str(i) * (i % 7), {"k": i}] for i in range(30000)}
s = json.dumps(d, sort_keys=True)
print(len(s), sum(len(v[1]) for v in json.loads(s).values()), len(re.findall(r"[0-9]{4}", s)))'
    for label in "sort.$conf" "python.$conf"; do
        n=$(sed -n 's/^guarded: .* \([0-9][0-9]*\) allocations guarded in total.*/\1/p' "$PM_TMP/$label.preload.err" | tail -1)
        if [ "$conf" = guard:1 ] || [ "$label" = "python.$conf" ]; then
            [ -n "$n" ] && [ "$n" -gt 0 ] || pm_fail "$label: no allocation was guarded" "$(tail -5 "$PM_TMP/$label.preload.err")"
        fi
        echo "$label: ${n:-0} allocations guarded"
    done
done
unset POOLMALLOC_CONF
