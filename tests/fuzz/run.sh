#!/usr/bin/env bash
# tests/fuzz/run.sh NAME SECONDS DIR: run the libFuzzer target DIR/tests/fuzz/fuzz_NAME for
# SECONDS on a working copy of its seeds, and print one line: PASS with the run's numbers, or FAIL
# with where the crashing input and the log are (and the end of the log).
#
# The seeds in tests/fuzz/corpus/NAME are copied into DIR/corpus/NAME, and libFuzzer runs on that
# copy (it adds what it finds there, so later runs start from there): it never writes into
# tests/fuzz/corpus. Crashing inputs go to DIR/artifacts/NAME/, the whole output to
# DIR/logs/NAME.log (UBSan's report, if any, at its end and in DIR/logs/NAME.ubsan.<pid>).
#
# NAME api-hardened runs fuzz_api with POOLMALLOC_CONF=hardened:true, from fuzz_api's seeds: the
# same shadow model against hardened mode's blocks, with every check of harden.c armed.
set -uo pipefail
name=$1 secs=$2 dir=$3
target=$name
case "$name" in
  api-hardened) target=api; export POOLMALLOC_CONF=hardened:true ;;
esac
bin=$dir/tests/fuzz/fuzz_$target
corpus=$dir/corpus/$name
artifacts=$dir/artifacts/$name
log=$dir/logs/$name.log
tmp=$log.$$            # written here, renamed at the end: two runs at once do not mix their logs
mkdir -p "$corpus" "$artifacts" "$dir/logs"
cp tests/fuzz/corpus/"$target"/* "$corpus"/

flags=()
case "$name" in
  # The options parser warns on stderr about each bad entry, by design: close the target's stderr
  # (libFuzzer keeps its own output on a copy of it). Its keys and words, as a dictionary; value
  # profiles, so that the numbers compared (sizes, signal numbers) count as progress.
  conf) flags+=(-close_fd_mask=2 -dict=tests/fuzz/conf.dict -use_value_profile=1) ;;
esac

start=$(date +%s)
UBSAN_OPTIONS=print_stacktrace=1:log_path="$dir/logs/$name.ubsan" \
  "$bin" -max_total_time="$secs" -timeout=30 -print_final_stats=1 -artifact_prefix="$artifacts/" \
  "${flags[@]}" "$corpus" >"$tmp" 2>&1 &
pid=$!
wait $pid
rc=$?
took=$(( $(date +%s) - start ))
ubsan=$dir/logs/$name.ubsan.$pid   # UBSan names its report after the pid
[ -e "$ubsan" ] && { echo "---- $ubsan"; cat "$ubsan"; } >>"$tmp"
mv -f "$tmp" "$log"

last=$(grep -aE '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse|DONE)' "$log" | tail -n 1)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
cov=$(sed -n 's/.* \(cov: [0-9]*\) \(ft: [0-9]*\) \(corp: [^ ]*\).*/\1 \2 \3/p' <<<"$last")
if [ $rc -ne 0 ] || grep -aqE 'ERROR: libFuzzer|runtime error|SUMMARY: ' "$log"; then
  input=$(sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$log" | tail -n 1)
  echo "FAIL fuzz_$name after ${took}s (exit $rc): input ${input:-?}, log $log"
  grep -avE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)|^[[:space:]]+NEW_FUNC' "$log" | tail -n 40 | sed 's/^/  /'
  echo "  reproduce: $bin ${flags[*]} ${input:-<input>}"
  exit 1
fi
echo "PASS fuzz_$name: ${took}s, ${runs:-?} runs, ${speed:-?} exec/s, $cov (log $log)"
