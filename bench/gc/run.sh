#!/usr/bin/env bash
# bench/gc/run.sh: the GC benchmark. Full collections over N (default 1,000,000) tracked
# objects in three shapes, and object allocation, ours (gc_bench.c) against CPython's gc
# (gc_bench.py, the same shapes with two __slots__). Prints a Markdown table of ns per object.
#   bash bench/gc/run.sh [N]       (run from the repository root after `make`)
# Environment: BUILD (default build), PYTHON (default python3), CC (default cc).
set -euo pipefail
N=${1:-1000000}
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-python3}
CC=${CC:-cc}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/$BUILD/bench/gc_bench"
mkdir -p "$(dirname "$bin")"
"$CC" -std=gnu11 -O2 -g -I"$root/include" "$here/gc_bench.c" "$root/$BUILD/libpoolmalloc.a" \
    -lunwind -lm -lpthread -o "$bin" 2>/dev/null \
  || "$CC" -std=gnu11 -O2 -g -I"$root/include" "$here/gc_bench.c" "$root/$BUILD/libpoolmalloc.a" -lpthread -o "$bin"

ours=$("$bin" "$N")
theirs=$("$PYTHON" "$here/gc_bench.py" "$N")
pyver=$("$PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')

declare -A label=(
  [chain]="full collection: live chain, held from outside"
  [pairs]="full collection: garbage 2-cycles"
  [ring]="full collection: one garbage ring"
  [alloc]="allocation (pm_new / class call)"
)
echo "GC benchmark: $N objects, best of 5, ns per object (CPython $pyver)"
echo
echo "| workload | poolmalloc gc | CPython gc | ratio (ours / CPython) |"
echo "|---|---:|---:|---:|"
for shape in chain pairs ring alloc; do
  a=$(awk -v s="$shape" '$1 == s { print $2 }' <<<"$ours")
  b=$(awk -v s="$shape" '$1 == s { print $2 }' <<<"$theirs")
  r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2fx", a / b }')
  echo "| ${label[$shape]} | $a | $b | $r |"
done
