#!/usr/bin/env bash
# poolmalloc benchmark suite; `make bench` runs it as `bash bench/run.sh`.
#
# Compares poolmalloc with glibc malloc, jemalloc, mimalloc and tcmalloc by
# running the same programs with each allocator swapped in via LD_PRELOAD
# (glibc = no preload).  Every program prints a checksum, so all allocators
# are verified to have done the same work.
#
# Workloads (C sources in bench/, each one small file):
#   churn        single thread, ~1M live small objects (16..256 B), random
#                replacement: a big long-lived heap that keeps changing
#   mixed        sizes 16 B..1 MiB, log-uniform, random replacement: every
#                size class plus the large/mmap path, and fragmentation
#   young        binary trees built and dropped (gc-bench / binary-trees):
#                short-lived objects next to a long-lived tree
#   prodcons     one thread allocates, another frees, through a bounded queue:
#                the remote-free path of pipelines and message passing
#   larson       4 threads replace random slots of shared regions, regions
#                move between threads every round: a server where objects are
#                freed by a different thread than the one that made them
#   cscratch     objects allocated by one thread, freed and re-allocated and
#                written hard by others: allocator-induced false sharing
#   threadchurn  thousands of short-lived threads allocating a little each:
#                per-thread state set-up/tear-down, frees after thread exit
#   realloc      many buffers grown by small realloc steps: in-place growth
#                versus move-and-copy
#   rebuild      a graph of 800k small nodes built, checked and freed, again
#                and again: is freed memory reused, or faulted back in?
#   bigbuf       a batch job's 1..32 MiB buffers, written, grown with realloc
#                and freed every round: the huge-block path and its reuse
#   python       python3 running bench/py_alloc.py with PYTHONMALLOC=malloc
#                (a real interpreter's allocation pattern); also run once per
#                repetition with CPython's own pymalloc for comparison
#   sqlite       sqlite3 CLI on an in-memory database: ~90k INSERTs with
#                text, indexes, joins, aggregates, updates, deletes
#   rssfree      ~500 MiB of small+medium blocks freed at once: how much RSS
#                goes back to the OS right away, and after 2 s of idleness with no
#                allocator call (poolmalloc's purge_delay is 1 s); reported
#                separately, not timed
#   fastpath     malloc+free pairs of one size under callgrind: instructions
#                per pair (BENCH_MODE=full or BENCH_CALLGRIND=1)
#
# Environment:
#   POOLMALLOC_SO    preloadable poolmalloc (default build/libpoolmalloc.so);
#                    if missing, the poolmalloc column is skipped with a note
#   BENCH_MODE       quick (3 repetitions, default) or full (5 repetitions,
#                    twice the work per run, plus callgrind)
#   BENCH_CALLGRIND  1 to count fast-path instructions in quick mode too
#                    (0 to skip them in full mode)
#   BENCH_WORKLOADS  run only these workloads (space-separated names), e.g.
#                    BENCH_WORKLOADS="churn mixed" for a quick look
#   BENCH_POOL_MODES poolmalloc set-ups to run beside the default, as NAME=CONF
#                    or NAME=CONF@LIBRARY words (default "hardened=hardened:true";
#                    "" for none): each is a column poolmalloc-NAME, set against
#                    poolmalloc's default (bench/hardened.sh uses @ for its builds)
#   BENCH_ALLOCATORS run only these columns (space-separated names, e.g.
#                    "poolmalloc poolmalloc-hardened"), for a quick look
#   CC               compiler for the workloads (default cc)
#
# Runs are interleaved (for each repetition, for each workload, for each
# allocator) so slow drifts of the machine hit all allocators alike.  Times
# peak RSS and page faults (ru_minflt) come from bench/measure.c (fork/exec +
# wait4).  A run that
# takes more than 20x glibc's time for the same workload (at least 10 s) is
# killed and reported as a timeout, and that pair is not run again.  The CPU
# time that other processes used during the runs is reported, since it is
# the main source of noise.
#
# Output: Markdown on stdout and in build/bench/results.md, raw runs in
# build/bench/results.csv, a chart in build/bench/results.svg.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/build/bench
BIN=$OUT/bin
LOGS=$OUT/logs
START=$(date +%s)

MODE=${BENCH_MODE:-quick}
case "$MODE" in
  quick) REPS=3; SCALE=1; CALLGRIND=${BENCH_CALLGRIND:-0} ;;
  full)  REPS=5; SCALE=2; CALLGRIND=${BENCH_CALLGRIND:-1} ;;
  *) echo "bench: BENCH_MODE must be quick or full, not '$MODE'" >&2; exit 2 ;;
esac
TIMEOUT_FACTOR=20
TIMEOUT_MIN=10

say() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- setup ----
if ! bash scripts/install-deps.sh bench; then
  say "warning: installing dependencies failed; missing tools will be skipped"
fi

PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3 || true)
if [ -z "$PYTHON" ]; then
  say "python3 is required for the report"; exit 1
fi

mkdir -p "$OUT" "$BIN"
rm -rf "$LOGS"
mkdir -p "$LOGS"
rm -f "$OUT"/results.md "$OUT"/results.csv "$OUT"/results.svg "$OUT"/fastpath.csv "$OUT"/notes.txt
NOTES=$OUT/notes.txt
: > "$NOTES"
note() { echo "$*" >> "$NOTES"; say "$*"; }

CC=${CC:-cc}
CFLAGS=(-O2 -g -pthread -Wall -Wextra)
C_WORKLOADS=(churn mixed young prodcons larson cscratch threadchurn realloc rebuild bigbuf)
say "compiling with $CC ${CFLAGS[*]} into $BIN"
for prog in measure "${C_WORKLOADS[@]}" rssfree fastpath; do
  "$CC" "${CFLAGS[@]}" -o "$BIN/$prog" "bench/$prog.c" -lm
done
MEASURE=$BIN/measure

"$PYTHON" bench/gen_sql.py > "$OUT/sqlite.sql"

# ----------------------------------------------------------- allocators ----
POOL_SO=${POOLMALLOC_SO:-build/libpoolmalloc.so}
case "$POOL_SO" in /*) ;; *) POOL_SO=$ROOT/$POOL_SO ;; esac

ALLOCS=()
declare -A LIB=()
add_alloc() { # name library-or-empty
  local name=$1 lib=$2
  if [ -n "${BENCH_ALLOCATORS:-}" ] && ! [[ " $BENCH_ALLOCATORS " == *" $name "* ]]; then return; fi
  if [ -n "$lib" ]; then
    if [ ! -e "$lib" ]; then
      note "$name: $lib not found, skipped"
      return
    fi
    # smoke test: a tiny program must run with it preloaded
    "$MEASURE" -o "$LOGS/smoke.$name" -t 10 -e "LD_PRELOAD=$lib" -- \
      "$BIN/fastpath" 64 1000 > /dev/null 2> "$LOGS/smoke.$name.err" || true
    if [ "$(cut -d' ' -f1 "$LOGS/smoke.$name")" != ok ]; then
      note "$name: $lib does not work as LD_PRELOAD ($(cut -d' ' -f1 "$LOGS/smoke.$name")), skipped"
      return
    fi
  fi
  ALLOCS+=("$name")
  LIB[$name]=$lib
}
add_alloc glibc ""
add_alloc jemalloc /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
add_alloc mimalloc /usr/lib/x86_64-linux-gnu/libmimalloc.so.2
add_alloc tcmalloc /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
add_alloc poolmalloc "$POOL_SO"
# poolmalloc's other modes, as columns of their own: NAME=POOLMALLOC_CONF pairs. The report sets
# each against poolmalloc's default (never against the peers).
declare -A CONF=()
for mode in ${BENCH_POOL_MODES-hardened=hardened:true}; do
  rest=${mode#*=}
  so=$POOL_SO; [[ $rest == *@* ]] && so=${rest#*@}
  add_alloc "poolmalloc-${mode%%=*}" "$so"
  CONF[poolmalloc-${mode%%=*}]=${rest%%@*}
done

# CPU time of the whole machine (busy and stolen, in seconds) from /proc/stat
machine_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {
    printf "%.2f %.2f\n", ($2 + $3 + $4 + $7 + $8) / hz, $9 / hz }' /proc/stat
}
# sets CHILD_CPU to the CPU time (user + system, seconds) of this shell's
# finished children; `times` must run in this shell, not in a subshell
children_cpu() {
  times > "$LOGS/times.txt"
  CHILD_CPU=$(awk 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%.2f\n", t }' "$LOGS/times.txt")
}

# ------------------------------------------------------------ workloads ----
WORKLOADS=("${C_WORKLOADS[@]}")
if [ -x /usr/bin/python3 ]; then WORKLOADS+=(python); else note "python: /usr/bin/python3 not found, skipped"; fi
if command -v sqlite3 > /dev/null; then WORKLOADS+=(sqlite); else note "sqlite: sqlite3 not found, skipped"; fi
WORKLOADS+=(rssfree)
if [ -n "${BENCH_WORKLOADS:-}" ]; then
  wanted=()
  for wl in $BENCH_WORKLOADS; do
    case " ${WORKLOADS[*]} " in
      *" $wl "*) wanted+=("$wl") ;;
      *) say "unknown or unavailable workload '$wl' (have: ${WORKLOADS[*]})"; exit 2 ;;
    esac
  done
  WORKLOADS=("${wanted[@]}")
  note "only these workloads were run (BENCH_WORKLOADS): ${WORKLOADS[*]}"
fi

# sets CMD (the program and its arguments) for a workload
set_cmd() {
  case "$1" in
    python) CMD=(/usr/bin/python3 "$ROOT/bench/py_alloc.py" "$SCALE") ;;
    sqlite) CMD=(sqlite3 :memory: ".read $OUT/sqlite.sql") ;;
    rssfree) CMD=("$BIN/rssfree") ;;
    *) CMD=("$BIN/$1" "$SCALE") ;;
  esac
}

CSV=$OUT/results.csv
echo "rep,workload,allocator,status,elapsed_s,maxrss_kib,minflt,checksum,rss_peak_kib,rss_after_free_kib,rss_after_idle_kib" > "$CSV"
declare -A GLIBC_TIME=() GAVE_UP=()

run_one() { # rep workload allocator
  local rep=$1 wl=$2 alloc=$3 key="$2.$3.$1"
  local envs=() timeout=$TIMEOUT_MIN
  if [ -n "${GAVE_UP[$wl.$alloc]:-}" ]; then
    echo "$rep,$wl,$alloc,skipped,,,,,,," >> "$CSV"
    return
  fi
  case "$alloc" in
    glibc|pymalloc) envs+=(-u LD_PRELOAD) ;;
    *) envs+=(-e "LD_PRELOAD=${LIB[$alloc]}") ;;
  esac
  if [ -n "${CONF[$alloc]:-}" ]; then envs+=(-e "POOLMALLOC_CONF=${CONF[$alloc]}"); fi
  if [ "$wl" = python ]; then
    envs+=(-e PYTHONHASHSEED=0)
    if [ "$alloc" = pymalloc ]; then envs+=(-u PYTHONMALLOC); else envs+=(-e PYTHONMALLOC=malloc); fi
  fi
  if [ -n "${GLIBC_TIME[$wl]:-}" ]; then
    timeout=$(awk -v t="${GLIBC_TIME[$wl]}" -v f=$TIMEOUT_FACTOR -v m=$TIMEOUT_MIN \
      'BEGIN { x = t * f; if (x < m) x = m; printf "%d", x + 1 }')
  else
    timeout=120
  fi
  set_cmd "$wl"
  "$MEASURE" -o "$LOGS/$key.res" -t "$timeout" "${envs[@]}" -- "${CMD[@]}" \
    < /dev/null > "$LOGS/$key.out" 2> "$LOGS/$key.err"
  local status elapsed rss faults sum rssline="" r1="" r2="" r3=""
  read -r status elapsed rss faults < "$LOGS/$key.res"
  if grep -q '^checksum:' "$LOGS/$key.out"; then
    sum=$(grep '^checksum:' "$LOGS/$key.out" | head -1 | cut -d' ' -f2- | tr ' ' '/')
  else
    sum=$(cksum < "$LOGS/$key.out" | cut -d' ' -f1)
  fi
  if [ "$wl" = rssfree ]; then
    rssline=$(grep '^rss_kib:' "$LOGS/$key.out" || true)
    read -r _ r1 r2 r3 <<< "${rssline:-x}"
  fi
  if [ "$status" = timeout ]; then GAVE_UP[$wl.$alloc]=1; fi
  if [ "$alloc" = glibc ] && [ "$status" = ok ]; then GLIBC_TIME[$wl]=$elapsed; fi
  echo "$rep,$wl,$alloc,$status,$elapsed,$rss,$faults,$sum,$r1,$r2,$r3" >> "$CSV"
  printf 'bench: [%d/%d] %-11s %-10s %8.3f s %7.1f MiB %8d faults  %s\n' "$rep" "$REPS" "$wl" "$alloc" \
    "$elapsed" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$faults" "$status" >&2
}

say "mode $MODE: $REPS repetitions, scale $SCALE, allocators: ${ALLOCS[*]}"
read -r BUSY0 STEAL0 < <(machine_cpu)
children_cpu
OURS0=$CHILD_CPU
RUNS_START=$(date +%s)
for rep in $(seq 1 "$REPS"); do
  for wl in "${WORKLOADS[@]}"; do
    for alloc in "${ALLOCS[@]}"; do
      run_one "$rep" "$wl" "$alloc"
    done
    if [ "$wl" = python ]; then run_one "$rep" python pymalloc; fi
  done
done

read -r BUSY1 STEAL1 < <(machine_cpu)
children_cpu
OURS1=$CHILD_CPU
RUNS_WALL=$(( $(date +%s) - RUNS_START ))
OTHER_CPU=$(awk -v b0="$BUSY0" -v b1="$BUSY1" -v o0="$OURS0" -v o1="$OURS1" \
  'BEGIN { x = (b1 - b0) - (o1 - o0); if (x < 0) x = 0; printf "%.1f", x }')
STEAL_CPU=$(awk -v s0="$STEAL0" -v s1="$STEAL1" 'BEGIN { printf "%.1f", s1 - s0 }')
if awk -v o="$OTHER_CPU" -v w="$RUNS_WALL" 'BEGIN { exit !(o > 0.1 * w) }'; then
  note "other processes used ${OTHER_CPU} s of CPU during ${RUNS_WALL} s of runs: timings are noisy"
fi

# ------------------------------------------------------------- callgrind ---
FASTPATH_CSV=""
if [ "$CALLGRIND" = 1 ]; then
  if command -v valgrind > /dev/null; then
    FASTPATH_CSV=$OUT/fastpath.csv
    N1=20000 N2=120000
    echo "allocator,size,n1,ir_n1,n2,ir_n2,instr_per_pair" > "$FASTPATH_CSV"
    say "counting fast-path instructions with callgrind (N=$N1 and N=$N2)"
    for alloc in "${ALLOCS[@]}"; do
      for size in 16 64 256 1024; do
        pids=()
        for n in $N1 $N2; do
          # instruction counts do not depend on load, so both N run at once
          if [ -n "${LIB[$alloc]}" ]; then preload=(LD_PRELOAD="${LIB[$alloc]}"); else preload=(-u LD_PRELOAD); fi
          env "${preload[@]}" valgrind --tool=callgrind \
            --callgrind-out-file="$LOGS/callgrind.$alloc.$size.$n" \
            "$BIN/fastpath" "$size" "$n" > /dev/null 2> "$LOGS/callgrind.$alloc.$size.$n.err" &
          pids+=($!)
        done
        ok=1
        for pid in "${pids[@]}"; do wait "$pid" || ok=0; done
        ir1=$(sed -n 's/^summary: //p' "$LOGS/callgrind.$alloc.$size.$N1" 2> /dev/null || true)
        ir2=$(sed -n 's/^summary: //p' "$LOGS/callgrind.$alloc.$size.$N2" 2> /dev/null || true)
        if [ "$ok" = 1 ] && [ -n "$ir1" ] && [ -n "$ir2" ]; then
          per=$(awk -v a="$ir1" -v b="$ir2" -v n1=$N1 -v n2=$N2 'BEGIN { printf "%.1f", (b - a) / (n2 - n1) }')
        else
          per=failed
        fi
        echo "$alloc,$size,$N1,$ir1,$N2,$ir2,$per" >> "$FASTPATH_CSV"
        say "fastpath $alloc $size B: $per instructions per malloc+free"
      done
    done
  else
    note "fastpath: valgrind not found, instruction counts skipped"
  fi
fi

# --------------------------------------------------------------- report ----
ver() { dpkg-query -W -f='${Version}' "$1" 2> /dev/null || echo "?"; }
META=$OUT/meta.txt
{
  echo "mode=$MODE"
  echo "reps=$REPS"
  echo "scale=$SCALE"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1) ($(nproc) cores)"
  echo "kernel=$(uname -r)"
  echo "versions=glibc $(ver libc6), jemalloc $(ver libjemalloc2), mimalloc $(ver libmimalloc2.0), tcmalloc $(ver libtcmalloc-minimal4), python3 $(/usr/bin/python3 -c 'import platform; print(platform.python_version())' 2> /dev/null || echo '?'), sqlite3 $(sqlite3 --version 2> /dev/null | cut -d' ' -f1)"
  echo "poolmalloc=$POOL_SO"
  echo "runs_wall_s=$RUNS_WALL"
  echo "other_cpu_s=$OTHER_CPU"
  echo "steal_cpu_s=$STEAL_CPU"
  echo "load_avg=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "elapsed_s=$(( $(date +%s) - START ))"
} > "$META"

"$PYTHON" bench/report.py --csv "$CSV" --meta "$META" --notes "$NOTES" \
  ${FASTPATH_CSV:+--fastpath "$FASTPATH_CSV"} --out "$OUT/results.md"
"$PYTHON" bench/chart.py --csv "$CSV" --out "$OUT/results.svg"
cat "$OUT/results.md"
say "wrote $OUT/results.md, $OUT/results.csv, $OUT/results.svg (logs in $LOGS)"
say "finished in $(( $(date +%s) - START )) s"
