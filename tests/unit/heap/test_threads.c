#include "helpers.h"
#include <pthread.h>
#include <stdatomic.h>

static void *alloc_and_exit(void *arg) {
    void **out = arg;
    for (int i = 0; i < 100; i++) free(malloc(16 + (size_t)i * 8));
    for (int i = 0; i < 64; i++) out[i] = malloc(48);   /* left for main to free */
    return NULL;
}

Test(threads, exited_threads_heaps_are_adopted_not_leaked) {
    size_t before = _pm_heap_count(NULL);
    void *left[64];
    for (int i = 0; i < 2000; i++) {
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, alloc_and_exit, left), 0);
        pthread_join(t, NULL);
        for (int j = 0; j < 64; j++) free(left[j]);          /* remote frees into an abandoned heap */
    }
    size_t abandoned, after = _pm_heap_count(&abandoned);
    cr_assert_leq(after, before + 2, "2000 sequential threads made %zu heaps", after - before);
    cr_assert_geq(abandoned, 1);
    pm_trim();
    pm_stats_t s;
    pm_stats_get(&s);
    cr_assert_lt(s.in_use, (size_t)4 << 20, "blocks of exited threads were taken back: %zu in use", s.in_use);
}

enum { NBLOCKS = 20000 };
static void *shared_blocks[NBLOCKS];

static void *free_all(void *arg) {
    size_t n = (size_t)arg;
    for (size_t i = 0; i < n; i++) {
        uint32_t *b = shared_blocks[i];
        cr_assert_eq(b[1], (uint32_t)i, "cookie of block %zu", i);
        free(b);
    }
    return NULL;
}

/* Main fills many pools (they go "full"), another thread frees everything: the pools come back
 * through the remote and delayed lists, and main reuses them instead of mapping more. */
Test(threads, blocks_freed_by_another_thread_are_reused) {
    size_t mapped_after_first = 0;
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < NBLOCKS; i++) {
            uint32_t *b = malloc(64 + (i % 4) * 16);
            b[1] = (uint32_t)i;
            shared_blocks[i] = b;
        }
        pthread_t t;
        pthread_create(&t, NULL, free_all, (void *)(size_t)NBLOCKS);
        pthread_join(t, NULL);
        pm_stats_t s;
        pm_stats_get(&s);
        if (round == 0) mapped_after_first = s.mapped;
        else cr_assert_leq(s.mapped, mapped_after_first, "round %d mapped more: %zu > %zu", round, s.mapped, mapped_after_first);
    }
    assert_sound(_pm_heap_check(_pm_heap_tls));
    assert_sound(_pm_arena_check());
}

/* Producer/consumer both ways at once through two rings; every block carries a cookie. */
typedef struct {
    _Atomic(uint64_t *) ring[1024];
    int id;
} lane_t;
static lane_t lanes[2];
enum { PER_THREAD = 200000 };

static void *exchange(void *arg) {
    lane_t *out = &lanes[(intptr_t)arg], *in = &lanes[1 - (intptr_t)arg];
    uint64_t seed = 1 + (uint64_t)(intptr_t)arg;
    size_t sent = 0, got = 0, spins = 0;
    while (sent < PER_THREAD || got < PER_THREAD) {
        if (sent < PER_THREAD) {
            _Atomic(uint64_t *) *slot = &out->ring[sent % 1024];
            if (atomic_load(slot) == NULL) {
                size_t n = 16 + test_rand(&seed) % 2000;
                uint64_t *b = malloc(n);
                b[0] = n; b[1] = n * 0x9e3779b97f4a7c15ull;
                atomic_store(slot, b);
                sent++;
            }
        }
        if (got < PER_THREAD) {
            _Atomic(uint64_t *) *slot = &in->ring[got % 1024];
            uint64_t *b = atomic_exchange(slot, NULL);
            if (b) {
                if (b[1] != b[0] * 0x9e3779b97f4a7c15ull) return (void *)1;
                free(b);
                got++;
            } else if (++spins % 64 == 0) {
                sched_yield();
            }
        }
    }
    return NULL;
}

Test(threads, cross_thread_exchange_keeps_every_cookie) {
    pthread_t a, b;
    void *ra, *rb;
    pthread_create(&a, NULL, exchange, (void *)0);
    pthread_create(&b, NULL, exchange, (void *)1);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    cr_assert_null(ra, "thread 0 saw a bad cookie");
    cr_assert_null(rb, "thread 1 saw a bad cookie");
}

static _Atomic int stop_churn;
static void *churn(void *arg) {
    (void)arg;
    uint64_t seed = 99;
    void *keep[256] = { 0 };
    while (!atomic_load(&stop_churn)) {
        unsigned i = (unsigned)(test_rand(&seed) % 256);
        free(keep[i]);
        keep[i] = malloc(test_rand(&seed) % 5000);
    }
    for (int i = 0; i < 256; i++) free(keep[i]);
    return NULL;
}

Test(threads, fork_from_a_threaded_parent_can_allocate_in_the_child) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int k = 0; k < 30; k++) {
        pid_t pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) {
            void *blocks[1000];
            for (int i = 0; i < 1000; i++) { blocks[i] = malloc((size_t)i * 37 % 70000); memset(blocks[i], i & 0xff, (size_t)i * 37 % 70000); }
            for (int i = 0; i < 1000; i++) {
                size_t n = (size_t)i * 37 % 70000;
                for (size_t j = 0; j < n; j += 97) if (((uint8_t *)blocks[i])[j] != (i & 0xff)) _exit(3);
                free(blocks[i]);
            }
            pthread_t ct;
            if (pthread_create(&ct, NULL, alloc_and_exit, blocks) != 0) _exit(4);
            pthread_join(ct, NULL);
            for (int i = 0; i < 64; i++) free(blocks[i]);
            _exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %d", k, status);
    }
    atomic_store(&stop_churn, 1);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
}
