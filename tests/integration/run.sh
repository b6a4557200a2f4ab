#!/usr/bin/env bash
# tests/integration/run.sh: build the test programs into build/tests/, then run every
# tests/integration/t_*.sh (or only those named: run.sh t_sort t_git). Each test runs real
# programs under glibc and with LD_PRELOAD=$POOLMALLOC_SO and compares them.
#
# stdout: one line per test, "PASS name" or "FAIL name: reason", then exactly "N passed, M failed".
# stderr: details of failures and notes; full logs in build/tests/logs/<name>.log.
# Exit status: 0 if every test passed.
#
#   POOLMALLOC_SO=$PWD/build/libpoolmalloc.so bash tests/integration/run.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PM_ROOT"
selected=("$@")

if ! why=$(pm_check_so); then
    echo "FAIL setup: $why"
    echo "0 passed, 1 failed"
    exit 1
fi
export POOLMALLOC_SO

mkdir -p "$PM_BUILD/logs"

# Build the C programs up front so that compiler errors show early; a test whose program does
# not build fails with the compiler's message (each t_*.sh calls pm_build again, a no-op here).
: >"$PM_BUILD/logs/build.log"
# A spec is "name source [cflags...]"; the cflags must be those its t_*.sh passes to pm_build.
for spec in "stress tests/stress/stress.c" "forkexec tests/integration/forkexec.c" \
            "threads_churn tests/integration/threads_churn.c" \
            "guard_errors tests/integration/guard/guard.c -O0 -rdynamic"; do
    read -r prog src flags <<<"$spec"
    # shellcheck disable=SC2086  # flags: words
    ( PM_TEST_NAME=build pm_build "$prog" "$src" $flags ) 2>>"$PM_BUILD/logs/build.log" || \
        echo "warning: cannot build $prog (see build/tests/logs/build.log); its test will fail" >&2
done

tests=()
if [ ${#selected[@]} -gt 0 ]; then
    for n in "${selected[@]}"; do n=$(basename "$n" .sh); tests+=("$PM_IDIR/$n.sh"); done
else
    for t in "$PM_IDIR"/t_*.sh; do tests+=("$t"); done
fi

passed=0
failed=0
start_all=$SECONDS
for t in "${tests[@]}"; do
    name=$(basename "$t" .sh)
    log="$PM_BUILD/logs/$name.log"
    reason_file=$(mktemp)
    note_file=$(mktemp)
    start=$SECONDS
    rc=0
    if [ ! -f "$t" ]; then
        echo "no such test: $t" >"$reason_file"
        rc=1
    else
        PM_TEST_NAME=$name PM_REASON_FILE=$reason_file PM_NOTE_FILE=$note_file \
            timeout -k 10 "${PM_TEST_TIMEOUT:-600}" bash "$t" >"$log" 2>&1 </dev/null || rc=$?
    fi
    secs=$((SECONDS - start))
    echo "[$name: ${secs}s, exit status $rc]" >>"$log"
    if [ "$rc" = 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        reason=$(head -n 1 "$reason_file")
        if [ -z "$reason" ]; then
            if [ "$rc" = 124 ]; then reason="the test script timed out after ${PM_TEST_TIMEOUT:-600}s"
            else reason="the test script stopped with exit status $rc (no reason recorded)"; fi
        fi
        echo "FAIL $name: $reason"
        { echo "    --- $name: last lines of build/tests/logs/$name.log:"
          tail -n 45 "$log" | sed 's/^/    /'; } >&2
        failed=$((failed + 1))
    fi
    while IFS= read -r note; do echo "    note ($name): $note" >&2; done <"$note_file"
    echo "    ($name took ${secs}s)" >&2
    rm -f "$reason_file" "$note_file"
done
echo "    (integration suite took $((SECONDS - start_all))s against $POOLMALLOC_SO)" >&2
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
