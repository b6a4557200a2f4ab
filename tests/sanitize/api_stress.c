/* api_stress.c: a verifying multi-threaded stress test through the pm_ API, for the sanitizer
 * builds. ASan and TSan own malloc, so there the library is built with PM_NO_OVERRIDE and this
 * test calls pm_malloc and friends directly; the sanitizers then check our own code: its data
 * races (TSan, which sees our atomics and locks), its undefined behaviour (UBSan) and its stack
 * and global accesses (ASan).
 *
 * Each block carries a cookie (its size and address mixed) written at allocation and checked at
 * free. Blocks are handed between threads through a shared array, threads exit and are replaced
 * (so heaps are abandoned and adopted), and one thread calls pm_trim and pm_stats_get meanwhile. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poolmalloc.h"

enum { THREADS = 4, SLOTS = 4096, SHARED = 1024 };
static _Atomic(uint64_t *) shared[SHARED];
static long rounds = 4, ops = 60000;

static uint64_t next_rand(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
static uint64_t cookie(const uint64_t *b, size_t n) { return ((uintptr_t)b ^ n) * 0x9e3779b97f4a7c15ull; }

static uint64_t *make(size_t n, uint64_t *seed) {
    uint64_t *b;
    switch (next_rand(seed) % 8) {
    case 0: b = pm_calloc(1, n); break;
    case 1: b = pm_aligned_alloc((size_t)64 << (next_rand(seed) % 6), n); break;
    default: b = pm_malloc(n); break;
    }
    if (b == NULL) { fprintf(stderr, "api_stress: allocation of %zu failed\n", n); exit(1); }
    b[0] = n;
    b[1] = cookie(b, n);
    if (n >= 64) b[n / 8 - 1] = b[1];
    return b;
}

static void check_and_free(uint64_t *b) {
    size_t n = b[0];
    if (b[1] != cookie(b, n) || (n >= 64 && b[n / 8 - 1] != b[1]) || pm_usable_size(b) < n) {
        fprintf(stderr, "api_stress: block %p of %zu bytes was corrupted\n", (void *)b, n);
        exit(1);
    }
    pm_free(b);
}

static size_t pick_size(uint64_t *seed) {
    uint64_t r = next_rand(seed) % 1000;
    if (r < 900) return 16 + next_rand(seed) % 500;
    if (r < 995) return 16 + next_rand(seed) % 70000;
    return (1u << 20) + next_rand(seed) % (3u << 20);
}

static void *worker(void *arg) {
    uint64_t seed = (uintptr_t)arg * 0x2545f4914f6cdd1dull + 1;
    static __thread uint64_t *mine[SLOTS];
    for (long i = 0; i < ops; i++) {
        uint64_t r = next_rand(&seed);
        unsigned s = (unsigned)(r % SLOTS);
        if (mine[s]) {
            if ((r >> 20) % 4 == 0) {                       /* hand it to whoever comes next */
                uint64_t *old = atomic_exchange(&shared[(r >> 32) % SHARED], mine[s]);
                if (old) check_and_free(old);
                mine[s] = NULL;
            } else if ((r >> 20) % 4 == 1) {                /* replace it */
                check_and_free(mine[s]);
                mine[s] = make(pick_size(&seed), &seed);
            } else {
                check_and_free(mine[s]);
                mine[s] = NULL;
            }
        } else {
            mine[s] = make(pick_size(&seed), &seed);
        }
        if (i % 20000 == 0 && (uintptr_t)arg % THREADS == 0) {
            pm_stats_t st;
            pm_stats_get(&st);
            if (st.in_use + st.free + st.overhead != st.mapped) { fprintf(stderr, "api_stress: unbalanced\n"); exit(1); }
            pm_trim();
        }
    }
    for (unsigned s = 0; s < SLOTS; s++) if (mine[s]) { check_and_free(mine[s]); mine[s] = NULL; }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atol(argv[1]);
    if (argc > 2) ops = atol(argv[2]);
    for (long r = 0; r < rounds; r++) {
        pthread_t t[THREADS];
        for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(r * THREADS + i));
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
    for (unsigned i = 0; i < SHARED; i++) { uint64_t *b = atomic_exchange(&shared[i], NULL); if (b) check_and_free(b); }
    pm_trim();
    pm_stats_t st;
    pm_stats_get(&st);
    if (st.in_use != 0) pm_stats_print(2);
    printf("api_stress: %ld rounds x %d threads x %ld ops, %zu bytes in use at the end\n", rounds, THREADS, ops, st.in_use);
#ifdef PM_NO_OVERRIDE
    return st.in_use == 0 ? 0 : 1;      /* every block was freed, and nothing else uses the heap */
#else
    return 0;                           /* libc's own allocations (stdio buffers) are ours too */
#endif
}
