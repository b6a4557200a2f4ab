#!/usr/bin/env bash
# python_module.sh: CPython under the poolmalloc module (python3 -m poolmalloc run, docs/python.md)
# against CPython's own pymalloc, on bench/py_alloc.py. Set-ups, interleaved, REPS times each:
#   pymalloc    plain /usr/bin/python3: pymalloc serves the mem and object domains
#   module      python3 -m poolmalloc run: every domain ours, sampling every 512 KiB (the default
#               with reports) with Python stacks, the USR1 handler and the reporter thread
#   no-stacks   the same with --no-python-stacks: native stacks only
#   no-sample   the same with --sample 0: the allocator alone
#   sample-64k  --sample 64k: eight times the samples, to show what a Python stack costs
#   preload     LD_PRELOAD=libpoolmalloc.so with PYTHONMALLOC=malloc, the way before the module
# It prints each set-up's median time over pymalloc's, and (BENCH_CALLGRIND=1, or full mode)
# instructions counted by callgrind, which repeat exactly where times on a shared VM do not.
#   BENCH_PYMOD_REPS (default 5), BENCH_MODE (quick: scale 1; full: scale 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-/usr/bin/python3}
BUILD=${BUILD:-build}
SO=${POOLMALLOC_SO:-$PWD/$BUILD/libpoolmalloc.so}
MEASURE=$BUILD/bench/bin/measure
[ -x "$MEASURE" ] || { echo "python_module: run bench/run.sh first (it builds measure)" >&2; exit 1; }
make --no-print-directory -s BUILD="$BUILD" python
MODE=${BENCH_MODE:-quick}
REPS=${BENCH_PYMOD_REPS:-5}
SCALE=$([ "$MODE" = full ] && echo 2 || echo 1)
CALLGRIND=${BENCH_CALLGRIND:-$([ "$MODE" = full ] && echo 1 || echo 0)}
SETUPS=(pymalloc module no-stacks no-sample sample-64k preload)
out=$BUILD/bench/python_module.csv
echo "rep,setup,seconds,rss_kib" > "$out"
export PYTHONPATH=$PWD/$BUILD/python

cmd_of() {   # sets CMD for a set-up
    local w=(bench/py_alloc.py "$SCALE")
    case "$1" in
        pymalloc)   CMD=(-u PYTHONMALLOC -- "$PY" "${w[@]}") ;;
        module)     CMD=(-u PYTHONMALLOC -- "$PY" -m poolmalloc run "${w[@]}") ;;
        no-stacks)  CMD=(-u PYTHONMALLOC -- "$PY" -m poolmalloc run --no-python-stacks "${w[@]}") ;;
        no-sample)  CMD=(-u PYTHONMALLOC -- "$PY" -m poolmalloc run --sample 0 "${w[@]}") ;;
        sample-64k) CMD=(-u PYTHONMALLOC -- "$PY" -m poolmalloc run --sample 64k "${w[@]}") ;;
        preload)    CMD=(-e PYTHONMALLOC=malloc -e "LD_PRELOAD=$SO" -e POOLMALLOC_CONF=sample:512k -- "$PY" "${w[@]}") ;;
    esac
}

for rep in $(seq 1 "$REPS"); do
    for s in "${SETUPS[@]}"; do
        cmd_of "$s"
        "$MEASURE" -o "$BUILD/bench/pymod.one" -t 300 "${CMD[@]}" > "$BUILD/bench/pymod.$s.out"
        read -r status secs rss _ < "$BUILD/bench/pymod.one"
        [ "$status" = ok ] || { echo "python_module: $s: $status" >&2; exit 1; }
        echo "$rep,$s,$secs,$rss" >> "$out"
    done
done
# every set-up computed the same thing: the workload's checksum line
sums=$(for s in "${SETUPS[@]}"; do tail -n 1 "$BUILD/bench/pymod.$s.out"; done | sort -u | wc -l)
[ "$sums" = 1 ] || { echo "python_module: the set-ups printed different checksums" >&2; exit 1; }

declare -A IR=()
if [ "$CALLGRIND" = 1 ]; then
    for s in "${SETUPS[@]}"; do
        cmd_of "$s"
        envs=()
        while [ "${CMD[0]}" != -- ]; do
            case "${CMD[0]}" in -e) envs+=("${CMD[1]}") ;; esac
            CMD=("${CMD[@]:2}")
        done
        CMD=("${CMD[@]:1}")
        env -u PYTHONMALLOC "${envs[@]}" valgrind --tool=callgrind --trace-children=no \
            --callgrind-out-file="$BUILD/bench/pymod.cg.$s" "${CMD[@]}" > /dev/null 2> "$BUILD/bench/pymod.cg.$s.err"
        IR[$s]=$(sed -n 's/^summary: //p' "$BUILD/bench/pymod.cg.$s")
    done
fi

PYSETUPS="${SETUPS[*]}" IRS="$(for s in "${SETUPS[@]}"; do echo "$s=${IR[$s]:-}"; done)" "$PY" - "$out" <<'PYEOF'
import csv, os, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
setups = os.environ["PYSETUPS"].split()
ir = dict(l.split("=", 1) for l in os.environ["IRS"].split("\n") if l)
med = {s: statistics.median(float(r["seconds"]) for r in rows if r["setup"] == s) for s in setups}
rss = {s: statistics.median(float(r["rss_kib"]) for r in rows if r["setup"] == s) for s in setups}
print("\n## CPython module: bench/py_alloc.py (median of %d, over pymalloc)\n" % (len(rows) // len(setups)))
cols = "| set-up | time | peak RSS |" + (" instructions |" if ir.get("pymalloc") else "")
print(cols)
print("|:---|---:|---:|" + ("---:|" if ir.get("pymalloc") else ""))
for s in setups:
    line = "| %s | %.3f | %.2f |" % (s, med[s] / med["pymalloc"], rss[s] / rss["pymalloc"])
    if ir.get("pymalloc"):
        line += " %.3f |" % (int(ir[s]) / int(ir["pymalloc"]))
    print(line)
print("\npymalloc: %.3f s, %.1f MiB; what recording Python stacks costs: module over no-stacks %.3f "
      "(%s)" % (med["pymalloc"], rss["pymalloc"] / 1024, med["module"] / med["no-stacks"],
                "instructions %.4f" % (int(ir["module"]) / int(ir["no-stacks"])) if ir.get("module") else "time only"))
PYEOF
