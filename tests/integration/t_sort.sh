#!/usr/bin/env bash
# t_sort: GNU sort on a generated 200k-line file (with duplicates), in several modes, each with
# two threads and a 64 MiB buffer, plus one with a tiny buffer so that it merges temporary files.
# Each output must be byte-identical under glibc and preloaded.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

in="$PM_TMP/input.txt"
awk 'BEGIN {
  srand(7)
  for (i = 0; i < 200000; i++) {
    if (i % 10 == 9) { print prev; continue }          # 10% exact duplicates
    w = ""; len = 1 + int(rand() * 14)
    for (j = 0; j < len; j++) w = w sprintf("%c", 97 + int(rand() * 26))
    prev = sprintf("%s\t%d\t%.6f\t%s", w, int(rand() * 1000000) - 500000, rand() * 1e4, (rand() < 0.3 ? "x" : w w))
    print prev
  }
}' >"$in"
echo "input: $(wc -l <"$in") lines, $(wc -c <"$in") bytes"
mkdir -p "$PM_TMP/sorttmp"

common=(--parallel=2 -S 64M -T "$PM_TMP/sorttmp")
pm_compare sort_plain env LC_ALL=C sort "${common[@]}" "$in"
pm_compare sort_unique env LC_ALL=C sort -u "${common[@]}" "$in"
pm_compare sort_numeric env LC_ALL=C sort -n -k2,2 -t "$(printf '\t')" "${common[@]}" "$in"
pm_compare sort_general_rev env LC_ALL=C sort -g -r -k3,3 -k1,1 -t "$(printf '\t')" "${common[@]}" "$in"
pm_compare sort_utf8_stable env LC_ALL=C.UTF-8 sort -s -f -k4,4 "${common[@]}" "$in"
pm_compare sort_merge_small_buffer env LC_ALL=C sort -u --parallel=2 -S 256K -T "$PM_TMP/sorttmp" "$in"
for l in sort_plain sort_unique sort_numeric sort_merge_small_buffer; do
    echo "$l: $(wc -l <"$PM_TMP/$l.glibc.out") lines $(sha256sum <"$PM_TMP/$l.glibc.out" | cut -c1-16)"
done
