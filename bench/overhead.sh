#!/usr/bin/env bash
# overhead.sh: what the lens costs. Runs a few workloads under five poolmalloc set-ups, interleaved,
# and prints each one's median time relative to a build with the sampling countdown compiled out
# (PM_NO_SAMPLE_COUNTDOWN) and no options, the "both off" baseline:
#   baseline      the PM_NO_SAMPLE_COUNTDOWN build, POOLMALLOC_CONF unset
#   default       the normal build, POOLMALLOC_CONF unset (countdown on, sampling off)
#   stats         the normal build, stats:true (the statistics are a walk at report time, so this
#                 should cost nothing)
#   sampling      the normal build, sample:512k (the default rate once reports are asked for),
#                 with the USR1 handler and reporter thread
#   guard         the normal build, guard:5000 (guarded sampling at its recommended rate; another
#                 rate with BENCH_OVERHEAD_GUARD=N), with its SIGSEGV handler
# Times on a shared 2-core machine are noisy, so the same set-ups are also counted in instructions
# with callgrind on churn and py_alloc.py (BENCH_MODE=full or BENCH_CALLGRIND=1): those figures
# repeat exactly (callgrind counts user-space instructions only: the mprotect calls of guarded
# slots and their page faults are in the times, not in the counts). Targets: statistics alone at
# most 2%, default sampling at most 5%, guard at its recommended rate at most 1%.
#   BENCH_OVERHEAD_REPS (default 3, 5 in full mode), BENCH_OVERHEAD_WORKLOADS (default: churn
#   larson python sqlite)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=build/bench/bin
[ -x "$BIN/measure" ] || { echo "overhead: run bench/run.sh first (it builds the workloads)" >&2; exit 1; }
SO=${POOLMALLOC_SO:-$PWD/build/libpoolmalloc.so}
BASE_SO=$PWD/build/nocountdown/libpoolmalloc.so
make --no-print-directory -s BUILD=build/nocountdown EXTRA_CFLAGS=-DPM_NO_SAMPLE_COUNTDOWN build/nocountdown/libpoolmalloc.so
MODE=${BENCH_MODE:-quick}
REPS=${BENCH_OVERHEAD_REPS:-$([ "$MODE" = full ] && echo 5 || echo 3)}
GUARD=${BENCH_OVERHEAD_GUARD:-5000}
read -ra WORK <<< "${BENCH_OVERHEAD_WORKLOADS:-churn larson python sqlite}"
out=build/bench/overhead.csv
echo "rep,workload,setup,seconds" > "$out"
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)
[ -s build/bench/sqlite.sql ] || "$PY" bench/gen_sql.py > build/bench/sqlite.sql

run() {   # run SETUP WORKLOAD
    local so=$SO conf=""
    case "$1" in
        baseline) so=$BASE_SO ;;
        stats) conf="stats:true" ;;
        sampling) conf="sample:512k" ;;
        guard) conf="guard:$GUARD" ;;
    esac
    local cmd
    case "$2" in
        python) cmd=(-e PYTHONMALLOC=malloc -- "$PY" bench/py_alloc.py) ;;
        sqlite) cmd=(-- /bin/sh -c 'sqlite3 :memory: < build/bench/sqlite.sql > /dev/null') ;;
        *) cmd=(-- "$BIN/$2") ;;
    esac
    local env=(-e "LD_PRELOAD=$so")
    [ -n "$conf" ] && env+=(-e "POOLMALLOC_CONF=$conf")
    "$BIN/measure" -o "$tmp" -t 120 "${env[@]}" "${cmd[@]}" >/dev/null 2>&1
    awk '{print $2}' "$tmp"
}
tmp=$(mktemp); trap 'rm -f "$tmp"' EXIT

for rep in $(seq "$REPS"); do
    for w in "${WORK[@]}"; do
        for s in baseline default stats sampling guard; do
            echo "$rep,$w,$s,$(run "$s" "$w")" >> "$out"
        done
    done
done

"$PY" - "$out" "$GUARD" <<'PY'
import csv, statistics, sys, collections
runs = collections.defaultdict(list)
for r in csv.DictReader(open(sys.argv[1])):
    runs[(r["workload"], r["setup"])].append(float(r["seconds"]))
work = list(dict.fromkeys(w for w, _ in runs))
print("\n## Overhead of the lens (median time / baseline; baseline = countdown compiled out, no options)\n")
print(f"| workload | baseline (s) | default | stats:true | sample:512k | guard:{sys.argv[2]} |")
print("|:---|---:|---:|---:|---:|---:|")
ratios = collections.defaultdict(list)
for w in work:
    base = statistics.median(runs[(w, "baseline")])
    cells = []
    for s in ("default", "stats", "sampling", "guard"):
        r = statistics.median(runs[(w, s)]) / base
        ratios[s].append(r)
        cells.append(f"{r:.3f}")
    print(f"| {w} | {base:.3f} | " + " | ".join(cells) + " |")
geo = lambda xs: statistics.geometric_mean(xs)
print(f"| **geomean** | | {geo(ratios['default']):.3f} | {geo(ratios['stats']):.3f} | {geo(ratios['sampling']):.3f} | {geo(ratios['guard']):.3f} |")
PY

CALLGRIND=${BENCH_CALLGRIND:-$([ "$MODE" = full ] && echo 1 || echo 0)}
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
    instr() {   # instr SETUP CMD...: instructions of the whole run
        local setup=$1; shift
        local so=$SO conf=""
        case "$setup" in
            baseline) so=$BASE_SO ;; stats) conf="stats:true" ;; sampling) conf="sample:512k" ;; guard) conf="guard:$GUARD" ;;
        esac
        env LD_PRELOAD="$so" POOLMALLOC_CONF="$conf" PYTHONMALLOC=malloc \
            valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
            awk '/Collected/ {print $4}'
    }
    echo
    echo "## Overhead in instructions (callgrind; repeatable)"
    echo
    echo "| workload | baseline | default | stats:true | sample:512k | guard:$GUARD |"
    echo "|:---|---:|---:|---:|---:|---:|"
    for w in churn python; do
        if [ "$w" = python ]; then cmd=("$PY" bench/py_alloc.py 1); else cmd=("$BIN/churn" 1); fi
        b=$(instr baseline "${cmd[@]}")
        row="| $w | $b"
        for s in default stats sampling guard; do
            n=$(instr "$s" "${cmd[@]}")
            row="$row | $(awk -v n="$n" -v b="$b" 'BEGIN {printf "%+.2f%%", 100 * (n - b) / b}')"
        done
        echo "$row |"
    done
fi
