#!/usr/bin/env bash
# t_gcc: gcc compiles and links a generated C program (150 functions, tables, qsort, a hash
# table) under glibc and preloaded; gcc's children (cc1, as, collect2, ld, lto1) inherit the
# preload. Both compiles must exit 0 without diagnostics differences, produce byte-identical
# executables, and the executables (run without preload) must print the same output.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
GCC=$(command -v gcc || true)
[ -n "$GCC" ] || pm_fail "gcc not found"

src="$PM_TMP/prog.c"
NFN=150
{
    echo "#define NFN $NFN"
    cat <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
typedef struct entry { char *key; uint64_t val; struct entry *next; } entry;
static entry *table[4096];
static uint64_t hash(const char *s) { uint64_t h = 1469598103934665603ULL; while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL; return h; }
static void put(const char *k, uint64_t v) {
    uint64_t h = hash(k) % 4096;
    for (entry *e = table[h]; e; e = e->next) if (!strcmp(e->key, k)) { e->val += v; return; }
    entry *e = malloc(sizeof *e); e->key = strdup(k); e->val = v; e->next = table[h]; table[h] = e;
}
static int cmp_u64(const void *a, const void *b) { uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b; return x < y ? -1 : x > y; }
C
    for i in $(seq 0 $((NFN - 1))); do
        cat <<C
static const unsigned short tab${i}[] = { $(seq -s, $((i * 7)) 13 $((i * 7 + 13 * 40))) };
__attribute__((noinline)) static uint64_t f$i(uint64_t x) {
    uint64_t acc = x ^ ${i}u;
    for (unsigned j = 0; j < sizeof tab${i} / sizeof tab${i}[0]; j++) {
        acc = acc * 6364136223846793005ULL + tab${i}[j];
        if ((acc >> 60) == $((i % 16))) acc ^= acc >> 17;
        switch ((acc >> 32) & 3) { case 0: acc += $i; break; case 1: acc -= j; break; case 2: acc ^= 0x$(printf '%x' $((i * 2654435761 % 4294967296))); break; default: acc = (acc << 7) | (acc >> 57); }
    }
    return acc;
}
C
    done
    echo "static uint64_t (*const fns[])(uint64_t) = {"
    for i in $(seq 0 $((NFN - 1))); do printf ' f%d,' "$i"; done
    cat <<'C'
};
int main(void) {
    uint64_t vals[NFN], sum = 0;
    char key[32];
    for (int i = 0; i < NFN; i++) { vals[i] = fns[i]((uint64_t)i * 11); sum += vals[i]; }
    qsort(vals, NFN, sizeof vals[0], cmp_u64);
    for (int i = 0; i < 20000; i++) { snprintf(key, sizeof key, "k%llu", (unsigned long long)(vals[i % NFN] % 1000)); put(key, (uint64_t)i); }
    uint64_t total = 0; int n = 0;
    for (int h = 0; h < 4096; h++) for (entry *e = table[h]; e; e = e->next) { total += e->val * hash(e->key); n++; }
    printf("sum=%llu min=%llu max=%llu keys=%d total=%llu\n", (unsigned long long)sum, (unsigned long long)vals[0],
           (unsigned long long)vals[NFN - 1], n, (unsigned long long)total);
    return 0;
}
C
} >"$src"
echo "generated $(wc -l <"$src") lines of C"

for mode in glibc preload; do mkdir -p "$PM_TMP/$mode"; done
# one plain -O2 -g compile+link, one with link-time optimisation (lto-wrapper and lto1 too)
for variant in O2 lto; do
    flags=(-O2 -g -Wall -Wextra)
    [ "$variant" = lto ] && flags=(-O2 -flto=2 -fno-fat-lto-objects)
    for mode in glibc preload; do
        pm_run "$mode" "cc_$variant" "$GCC" "${flags[@]}" -o "$PM_TMP/$mode/prog_$variant" "$src"
        pm_expect_ok "$mode" "cc_$variant"
    done
    # diagnostics (normally none) must match too
    for mode in glibc preload; do cp "$PM_TMP/cc_$variant.$mode.err" "$PM_TMP/ccdiag_$variant.$mode.out"; done
    echo 0 >"$PM_TMP/ccdiag_$variant.glibc.rc"; echo 0 >"$PM_TMP/ccdiag_$variant.preload.rc"
    : >"$PM_TMP/ccdiag_$variant.glibc.err"; : >"$PM_TMP/ccdiag_$variant.preload.err"
    pm_compare_runs "ccdiag_$variant"
    if ! cmp -s "$PM_TMP/glibc/prog_$variant" "$PM_TMP/preload/prog_$variant"; then
        pm_fail "gcc ($variant) under preload produced a different executable than under glibc" \
            "$(cmp "$PM_TMP/glibc/prog_$variant" "$PM_TMP/preload/prog_$variant" 2>&1 | head -3)"
    fi
    # the programs themselves run without preload: their output must match
    for mode in glibc preload; do
        pm_run glibc "run_${variant}_$mode" "$PM_TMP/$mode/prog_$variant"
        pm_expect_ok glibc "run_${variant}_$mode"
    done
    for ext in out rc err; do cp "$PM_TMP/run_${variant}_preload.glibc.$ext" "$PM_TMP/prog_$variant.preload.$ext"
                              cp "$PM_TMP/run_${variant}_glibc.glibc.$ext" "$PM_TMP/prog_$variant.glibc.$ext"; done
    pm_compare_runs "prog_$variant"
    echo "ok gcc $variant: exit status 0 both, identical executables, output: $(cat "$PM_TMP/prog_$variant.glibc.out")"
done
