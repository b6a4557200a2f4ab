/* The foreign cache (heap.c): small blocks freed by a thread that does not own their pool. */
#include "helpers.h"
#include <pthread.h>

enum { N = 40, SIZE = 200 };

static size_t cached(unsigned c) {
    size_t counts[PM_FOREIGN_CLASSES];
    _pm_heap_foreign_counts(counts);
    return counts[c];
}

typedef struct {
    void *given[N];          /* blocks main allocated */
    void *got[N];            /* what the thread allocated after freeing them */
    size_t cached_after_free;
    bool heap_ok;
} job_t;

/* Frees main's blocks, then allocates the same size: the thread has no pool of the class yet, so
 * its first allocations come from its foreign cache, most recently freed first. (A thread that
 * never allocated has no heap and no cache: its frees all take the remote path.) */
static void *free_then_alloc(void *arg) {
    job_t *j = arg;
    free(malloc(1));                 /* a thread gets its heap (and caches) at its first malloc */
    for (int i = 0; i < N; i++) free(j->given[i]);
    j->cached_after_free = cached(_pm_class_of(SIZE));
    j->heap_ok = _pm_heap_check(_pm_heap_tls) == NULL;
    for (int i = 0; i < N; i++) j->got[i] = malloc(SIZE);
    for (int i = 0; i < N; i++) free(j->got[i]);
    return NULL;
}

Test(foreign, blocks_freed_by_another_thread_serve_its_next_allocations) {
    static job_t j;
    unsigned c = _pm_class_of(SIZE);
    size_t before = cached(c);
    for (int i = 0; i < N; i++) j.given[i] = malloc(SIZE);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_then_alloc, &j), 0);
    pthread_join(t, NULL);
    cr_assert_eq(j.cached_after_free, before + N, "the %d frees went to the thread's cache (%zu)", N, j.cached_after_free);
    cr_assert(j.heap_ok, "the thread's heap and cache passed their checks");
    for (int i = 0; i < N; i++)
        cr_assert_eq(j.got[i], j.given[N - 1 - i], "allocation %d reused main's block, last freed first", i);
    cr_assert_eq(cached(c), before, "the thread's exit gave its cache back");
    assert_sound(_pm_heap_check(_pm_heap_tls));
}

/* The cache holds at most 32 KiB of a class; the rest goes back to the owner remotely. */
static void *free_many(void *arg) {
    void **blocks = arg;
    free(malloc(1));
    for (int i = 0; i < 1000; i++) free(blocks[i]);
    blocks[0] = (void *)cached(_pm_class_of(64));
    return NULL;
}

Test(foreign, the_cache_is_bounded) {
    static void *blocks[1000];
    for (int i = 0; i < 1000; i++) blocks[i] = malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, free_many, blocks);
    pthread_join(t, NULL);
    cr_assert_eq((size_t)blocks[0], (size_t)(32 << 10) / 64, "a full cache of 64-byte blocks holds 512 (%zu)", (size_t)blocks[0]);
}

/* Statistics count cached blocks as free, and the accounting still balances. */
static void *free_and_measure(void *arg) {
    void **blocks = arg;
    pm_stats_snapshot_t a, b;
    free(malloc(1));
    _pm_stats_snapshot(&a);
    for (int i = 0; i < N; i++) free(blocks[i]);
    _pm_stats_snapshot(&b);
    blocks[0] = (void *)(a.in_use - b.in_use);
    size_t sum = b.in_use + b.huge_requested + b.free_in_pools + b.quantization + b.arena_headers +
                 b.free_slots + (b.huge_mapped - b.huge_requested);
    blocks[1] = (void *)(uintptr_t)(sum == b.mapped);
    return NULL;
}

Test(foreign, statistics_count_cached_blocks_as_free) {
    static void *blocks[N];
    for (int i = 0; i < N; i++) blocks[i] = malloc(SIZE);
    size_t size = _pm_classes[_pm_class_of(SIZE)].size;
    pthread_t t;
    pthread_create(&t, NULL, free_and_measure, blocks);
    pthread_join(t, NULL);
    cr_assert_eq((size_t)blocks[0], N * size, "in use fell by the blocks freed into the cache");
    cr_assert(blocks[1], "the byte accounting balances");
}

/* A second free of a block that sits in a foreign cache is a double free. */
static void *free_twice(void *arg) {
    free(malloc(1));
    free(arg);
    free(arg);
    return NULL;
}
static void double_free_in_thread(void *arg) {
    (void)arg;
    void *p = malloc(SIZE);
    pthread_t t;
    pthread_create(&t, NULL, free_twice, p);
    pthread_join(t, NULL);
}

Test(foreign, a_double_free_into_the_cache_is_caught) {
    char msg[256];
    int st = run_in_child(double_free_in_thread, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "double free"), "got: %s", msg);
}

/* Sampled blocks never enter a foreign cache (the sampler's record must be dropped by the free),
 * and sampled allocations never take a foreign block (their pool's bitmap is the owner's). */
static void *free_sampled(void *arg) {
    void **blocks = arg;
    free(malloc(1));
    size_t before = cached(_pm_class_of(SIZE));
    for (int i = 0; i < N; i++) free(blocks[i]);
    blocks[0] = (void *)(cached(_pm_class_of(SIZE)) - before);
    return NULL;
}

Test(foreign, sampled_blocks_take_the_remote_path) {
    static void *blocks[N];
    size_t rate = _pm_sample_rate();
    _pm_sample_set_rate(1);                      /* every allocation is sampled */
    for (int i = 0; i < N; i++) blocks[i] = malloc(SIZE);
    pthread_t t;
    pthread_create(&t, NULL, free_sampled, blocks);
    pthread_join(t, NULL);
    _pm_sample_set_rate(rate);
    cr_assert_eq((size_t)blocks[0], 0, "no sampled block was cached");
}
