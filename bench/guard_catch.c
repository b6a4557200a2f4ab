/*
 * guard_catch: how many allocations guarded sampling (POOLMALLOC_CONF=guard:N) takes to catch a
 * bug, against what docs/design.md predicts.
 *
 * Each trial is a forked child that allocates and frees blocks of 16..256 bytes (uniform, mean
 * 136) and, every 100th allocation, a 64-byte block at a buggy site that writes one byte past its
 * end in one allocation out of K (the rest of its uses are correct). The child counts the buggy
 * site's allocations in a page shared with the parent; a guarded buggy block faults at the write,
 * and the parent reads how far the child got. A child that reaches the limit uncaught is counted
 * as such.
 *
 *   LD_PRELOAD=.../libpoolmalloc.so POOLMALLOC_CONF=guard:N guard_catch N K [TRIALS] [LIMIT]
 *
 * The prediction: a buggy-site allocation (64 bytes) holds a guard point with probability
 * 1 - exp(-64 / (N * 136)), about 64 / (136 N), so the site allocates about 136 N K / 64 times
 * before a guarded allocation is also a buggy one.
 */
#define _GNU_SOURCE
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* The asm hides p's origin from the compiler, which would otherwise drop the malloc, the writes
 * and the free (a pair with nothing observable between). */
__attribute__((noinline)) static void buggy_site(volatile uint64_t *count, unsigned k) {
    char *p = malloc(64);
    __asm__ volatile("" : "+r"(p));
    ++*count;
    unsigned n = (rnd() % k) == 0 ? 65 : 64;              /* one use in k writes a byte too many */
    for (unsigned i = 0; i < n; i++) ((volatile char *)p)[i] = (char)i;
    free(p);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: guard_catch N K [TRIALS] [LIMIT]\n"); return 2; }
    double n = atof(argv[1]);
    unsigned k = (unsigned)atoi(argv[2]), trials = argc > 3 ? (unsigned)atoi(argv[3]) : 20;
    uint64_t limit = argc > 4 ? strtoull(argv[4], NULL, 10) : 100000000;
    setvbuf(stdout, NULL, _IOLBF, 0);
    volatile uint64_t *count = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    double sum = 0, predicted = 136.0 * n * k / 64.0;
    unsigned caught = 0;
    for (unsigned t = 0; t < trials; t++) {
        *count = 0;
        pid_t pid = fork();
        if (pid == 0) {
            rng = 0x9e3779b97f4a7c15ull * (t + 1);
            for (uint64_t i = 0; *count < limit; i++) {
                if (i % 100 == 99) { buggy_site(count, k); continue; }
                void *p = malloc(16 + rnd() % 241);
                __asm__ volatile("" : "+r"(p));
                *(volatile char *)p = 1;
                free(p);
            }
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        bool segv = WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
        printf("trial %2u: %s after %llu allocations at the buggy site\n", t + 1, segv ? "caught" : "not caught",
               (unsigned long long)*count);
        if (segv) { caught++; sum += (double)*count; }
    }
    printf("caught %u of %u; mean %.0f buggy-site allocations until caught; predicted %.0f\n", caught, trials,
           caught ? sum / caught : 0.0, predicted);
    return 0;
}
