#include "helpers.h"

/* Every pool this thread owns satisfies the pool invariant (pool.c). */
static void check_my_pools(void) {
    pm_heap_t *heap = _pm_heap_tls;
    assert_sound(_pm_heap_check(heap));
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        for (pm_pool_t *p = PM_HEAP_POOLS(heap, c); p && p != &_pm_pool_empty; p = p->next) {
            assert_sound(_pm_pool_check(p));
            cr_assert_eq(p->heap, heap);
            cr_assert_eq(p->size_class, c);
        }
    }
}

Test(arena, pool_invariants_hold_through_churn) {
    enum { N = 30000 };
    static void *blocks[N];
    uint64_t seed = 7;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < N; i++) {
            if (blocks[i] && test_rand(&seed) % 2) { free(blocks[i]); blocks[i] = NULL; }
            else if (!blocks[i]) blocks[i] = malloc(test_rand(&seed) % 4000);
        }
        check_my_pools();
        assert_sound(_pm_arena_check());
    }
    for (int i = 0; i < N; i++) free(blocks[i]);
    check_my_pools();
    assert_sound(_pm_arena_check());
}

Test(arena, blocks_find_their_pool_and_arena) {
    for (size_t n = 1; n <= PM_LARGE_MAX; n = n * 2 + 1) {
        void *p = malloc(n);
        cr_assert(_pm_is_arena_ptr(p));
        pm_pool_t *pool = pool_of(p);
        cr_assert_eq(pool->size_class, _pm_class_of(n));
        cr_assert_eq(pool->heap, _pm_heap_tls);
        cr_assert((uint8_t *)p >= pool->start && (uint8_t *)p < pool->start + (size_t)pool->capacity * pool->block_size);
        /* the last block ends where the pool's last slot ends */
        uint8_t *end = pool->start + (size_t)pool->capacity * pool->block_size;
        cr_assert_eq((uintptr_t)end % PM_SLOT_SIZE, 0);
        cr_assert_lt((size_t)(pool->start - (end - (size_t)pool->slots * PM_SLOT_SIZE)), (size_t)pool->block_size);
        free(p);
    }
    int local;
    cr_assert_not(_pm_is_arena_ptr(&local));
    void *h = malloc(8u << 20);
    cr_assert_not(_pm_is_arena_ptr(h));
    free(h);
}

Test(arena, accounting_balances) {
    void *keep[1000];
    for (int i = 0; i < 1000; i++) keep[i] = malloc((size_t)i * 131);
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    size_t sum = s.in_use + s.huge_requested + s.free_in_pools + s.quantization + s.arena_headers +
                 s.free_slots + (s.huge_mapped - s.huge_requested) + s.huge_cached;
    cr_assert_eq(sum, s.mapped);
    cr_assert_eq(s.mapped, s.arenas * PM_ARENA_SIZE + s.huge_mapped + s.huge_cached);
    size_t used = 0;
    for (unsigned c = 0; c < PM_NCLASSES; c++) used += s.cls[c].blocks_used * _pm_classes[c].size;
    cr_assert_eq(used, s.in_use);
    for (int i = 0; i < 1000; i++) free(keep[i]);
}

/* Fill ~100 MiB with small blocks and a few large ones; returns how many small ones. */
enum { MASS_N = 400000, MASS_LARGE = 64 };
static void *mass[MASS_N];
static void mass_build(void) {
    for (int i = 0; i < MASS_N; i++) { mass[i] = malloc(64 + (i % 8) * 64); memset(mass[i], 1, 64); }
    for (int i = 0; i < MASS_LARGE; i++) { mass[i] = realloc(mass[i], 200000); memset(mass[i], 2, 200000); }
}
static void mass_free(void) { for (int i = 0; i < MASS_N; i++) free(mass[i]); }

/* Reuse before return: a structure freed and built again at once takes the same arenas, with
 * their pages still resident, instead of mapping and faulting in new ones. */
Test(arena, freed_memory_is_reused_before_it_is_returned) {
    _pm_options.purge_delay = 60000;                 /* a slow (sanitizer) run must not decay */
    pm_stats_t peak, after;
    pm_stats_snapshot_t s1, s2;
    mass_build();
    pm_stats_get(&peak);
    _pm_stats_snapshot(&s1);
    mass_free();
    pm_stats_get(&after);
    cr_assert_geq(after.mapped, peak.mapped, "nothing was unmapped at once: %zu -> %zu", peak.mapped, after.mapped);
    cr_assert_gt(after.decaying, (size_t)90 << 20, "the freed slots wait for decay: %zu", after.decaying);
    size_t ctl_decaying = 0, len = sizeof ctl_decaying;
    cr_assert_eq(pm_ctl("stats.decaying_bytes", &ctl_decaying, &len, NULL, 0), 0);
    cr_assert_eq(ctl_decaying, after.decaying);
    mass_build();
    _pm_stats_snapshot(&s2);
    cr_assert_eq(s2.arenas_mapped_total, s1.arenas_mapped_total, "the second build mapped %zu new arenas",
                 s2.arenas_mapped_total - s1.arenas_mapped_total);
    cr_assert_eq(s2.returned, s1.returned, "nothing was returned between the builds");
    mass_free();
    pm_trim();
    pm_stats_get(&after);
    cr_assert_eq(after.decaying, 0, "malloc_trim returns everything at once");
    cr_assert_lt(after.resident, peak.resident - (90u << 20), "RSS %zu -> %zu", peak.resident, after.resident);
}

/* An idle program gets its memory back: after a mass free and no allocator call at all, the
 * background thread decommits the slots and unmaps the arenas once purge_delay has passed. */
Test(arena, an_idle_program_gets_its_memory_back_within_the_decay_time) {
    _pm_options.purge_delay = 100;
    pm_stats_t base, peak, after;
    pm_stats_get(&base);
    mass_build();
    pm_stats_get(&peak);
    cr_assert_gt(peak.mapped, base.mapped + (100u << 20), "the blocks took %zu bytes", peak.mapped - base.mapped);
    mass_free();
    usleep(400 * 1000);                             /* 4x the delay; no allocator call meanwhile */
    pm_stats_get(&after);
    cr_assert_lt(after.decaying, (size_t)1 << 20, "%zu bytes still wait", after.decaying);
    cr_assert_lt(after.mapped, base.mapped + (12u << 20), "still mapped: %zu (base %zu)", after.mapped, base.mapped);
    cr_assert_lt(after.resident, peak.resident - (100u << 20), "RSS %zu -> %zu", peak.resident, after.resident);
    cr_assert_geq(after.returned, peak.returned + (100u << 20));
    pm_trim();
    pm_stats_get(&after);
    cr_assert_leq(after.mapped, base.mapped + PM_ARENA_SIZE);
}

/* A freed huge block is kept and handed out again whole or split; its neighbours merge back;
 * the cache is unmapped once it has decayed. */
Test(arena, a_freed_huge_block_is_reused_then_returned) {
    _pm_options.purge_delay = 100;
    pm_trim();
    pm_huge_counts_t h0, h;
    _pm_huge_counts(&h0);
    cr_assert_eq(h0.cached, 0);
    char *a = malloc(20u << 20);
    memset(a, 7, 20u << 20);
    free(a);
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached, (size_t)20 << 20);
    char *b = malloc(2u << 20), *c = calloc(1, 3u << 20);
    cr_assert_eq(b, a, "the smallest cached run that fits, from its start");
    cr_assert_eq(c, a + (2u << 20), "the rest of the run serves the next request");
    for (size_t i = 0; i < (3u << 20); i += 4096) cr_assert_eq(c[i], 0, "calloc from the cache is zeroed");
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached, (size_t)15 << 20);
    cr_assert_eq(h.reused_total, h0.reused_total + 2);
    /* realloc: b cannot grow into c; a cached run that fits takes it, with a copy */
    memset(b, 5, 2u << 20);
    char *b2 = realloc(b, 6u << 20);
    cr_assert_eq(b2, a + (5u << 20), "moved into the cached rest of the run");
    for (size_t i = 0; i < (2u << 20); i += 4096) cr_assert_eq(b2[i], 5);
    free(c);                                         /* merges with b's old run: [a, a+5 MiB) */
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached_runs, 2, "b's old run and c merged; the tail after b2 is the other");
    char *d = malloc(5u << 20);
    cr_assert_eq(d, a, "the merged run serves a request neither piece could");
    memset(d, 9, 5u << 20);
    /* no room after d (b2 is there), and a copy of 5 MiB costs more than faulting 1 MiB: mremap */
    char *d2 = realloc(d, 6u << 20);
    cr_assert_neq(d2, a);
    for (size_t i = 0; i < (5u << 20); i += 4096) cr_assert_eq(d2[i], 9);
    free(d2);
    free(b2);
    /* growth into the cached run right after the block: same address, no copy */
    pm_trim();
    char *x = malloc(8u << 20);
    free(x);
    char *y = malloc(2u << 20);
    cr_assert_eq(y, x);
    memset(y, 3, 2u << 20);
    char *y2 = realloc(y, 5u << 20);
    cr_assert_eq(y2, x, "grown in place into the cached run after it");
    cr_assert_eq(y2[(2u << 20) - 1], 3);
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached, (size_t)3 << 20);
    _pm_huge_counts(&h0);
    free(y2);
    usleep(400 * 1000);
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached, 0, "decayed runs are unmapped by the background thread");
    cr_assert_eq(h.returned_bytes, h0.returned_bytes + ((size_t)8 << 20), "y2 and the run after it");
}

Test(arena, malloc_trim_releases_free_pool_slots) {
    void *blocks[3000];
    for (int i = 0; i < 3000; i++) { blocks[i] = malloc(1000); memset(blocks[i], 1, 1000); }
    void *pin = malloc(1000);                       /* keeps the arena alive */
    for (int i = 0; i < 3000; i++) free(blocks[i]);
    cr_assert_eq(malloc_trim(0), 1);
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    cr_assert_eq(s.dirty_slots, 0, "every free slot was decommitted");
    free(pin);
}

Test(arena, mallinfo2_reports_our_numbers) {
    struct mallinfo2 a = mallinfo2();
    void *p = malloc(100000), *h = malloc(10u << 20);
    struct mallinfo2 b = mallinfo2();
    cr_assert_eq(b.uordblks - a.uordblks, malloc_usable_size(p) + (10u << 20));
    cr_assert_eq(b.hblks, a.hblks + 1);
    cr_assert_eq(b.hblkhd - a.hblkhd, (size_t)10 << 20);
    cr_assert_geq(b.arena, (size_t)PM_ARENA_SIZE);
    struct mallinfo m = mallinfo();
    cr_assert_eq((size_t)m.hblks, b.hblks);
    free(p); free(h);
}

Test(arena, free_slots_are_decommitted_once_the_purge_delay_passed) {
    _pm_options.purge_delay = 50;
    void *blocks[3000];
    for (int i = 0; i < 3000; i++) { blocks[i] = malloc(1000); memset(blocks[i], 1, 1000); }
    void *pin = malloc(1000);
    for (int i = 0; i < 3000; i++) free(blocks[i]);
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    cr_assert_geq(s.dirty_slots, 20, "freshly freed slots stay committed for reuse (%zu)", s.dirty_slots);
    usleep(200 * 1000);
    void *a = malloc(200000), *b = malloc(200000);     /* one block per pool */
    free(a);                                           /* kept as the heap's spare for the class */
    free(b);                                           /* released: any release checks the clock */
    _pm_stats_snapshot(&s);
    cr_assert_leq(s.dirty_slots * PM_SLOT_SIZE, (size_t)256 << 10,
                  "slots older than the delay were decommitted, only the pool just released is left (%zu slots)", s.dirty_slots);
    free(pin);
}

/* An emptied big pool stays as its heap's spare for the class: the next allocation of the class
 * gets the same block back without the arena; malloc_trim gives spares back. */
Test(arena, an_emptied_big_pool_is_kept_as_the_spare_of_its_class) {
    pm_heap_t *heap = _pm_heap_tls;
    void *p = malloc(300000);
    unsigned c = _pm_class_of(300000);
    pm_pool_t *pool = pool_of(p);
    cr_assert_gt(pool->slots, PM_HOLD_MAX_SLOTS);
    free(p);
    cr_assert_eq(heap->spare[c], pool, "the empty pool is the class's spare");
    assert_sound(_pm_heap_check(heap));
    assert_sound(_pm_arena_check());
    void *q = malloc(300000);
    cr_assert_eq(q, p, "the spare served the next allocation");
    cr_assert_null(heap->spare[c]);
    free(q);
    cr_assert_eq(heap->spare[c], pool);
    malloc_trim(0);
    cr_assert_null(heap->spare[c], "malloc_trim gave the spare back");
    assert_sound(_pm_arena_check());
}

/* All spares together stay under 8 MiB, whatever is freed. */
Test(arena, spares_are_bounded) {
    enum { K = 40 };
    void *blocks[K];
    for (int i = 0; i < K; i++) blocks[i] = malloc((size_t)(i % 8 + 1) << 17);   /* 128 KiB .. 1 MiB, 8 classes */
    for (int i = 0; i < K; i++) free(blocks[i]);
    pm_heap_t *heap = _pm_heap_tls;
    size_t bytes = 0;
    for (unsigned c = 0; c < PM_NCLASSES; c++)
        if (heap->spare[c]) bytes += (size_t)heap->spare[c]->slots * PM_SLOT_SIZE;
    cr_assert_gt(bytes, 0);
    cr_assert_leq(bytes, (size_t)8 << 20, "%zu bytes of spares", bytes);
    assert_sound(_pm_heap_check(heap));
    malloc_trim(0);
}

/* A pool of one block (big classes) goes straight to full when its block is handed out, and is
 * released straight from full when the block comes back, without ever being on the heap's list. */
Test(arena, a_one_block_pool_never_joins_the_list) {
    pm_heap_t *heap = _pm_heap_tls;
    void *p = malloc(500000);
    unsigned c = _pm_class_of(500000);
    pm_pool_t *pool = pool_of(p);
    cr_assert_eq(pool->capacity, 1);
    cr_assert_gt(pool->slots, PM_HOLD_MAX_SLOTS);
    cr_assert(pool->flags & PM_POOL_FULL, "full as soon as its block is out");
    cr_assert_eq(PM_HEAP_POOLS(heap, c), &_pm_pool_empty, "and not on the list");
    cr_assert_eq(_pm_pool_used(pool), 1);
    assert_sound(_pm_heap_check(heap));
    void *q = malloc(500000);                         /* a second pool of the class */
    cr_assert_neq(pool_of(q), pool);
    free(p);
    cr_assert_eq(heap->spare[c], pool, "released straight from full, as the class's spare");
    cr_assert_eq(pool->flags, 0);
    cr_assert_eq(atomic_load(&pool->remote), 0);
    free(q);                                          /* the spare is taken: to the arena */
    cr_assert_eq(malloc(500000), p, "the spare serves the class again");
    assert_sound(_pm_heap_check(heap));
    assert_sound(_pm_arena_check());
    free(p);
    malloc_trim(0);
}

/* fork: the child has no purge thread of its parent's; it starts its own when memory waits. */
static void build_free_and_idle(void *arg) {
    (void)arg;
    mass_build();
    mass_free();
    usleep(500 * 1000);
    pm_stats_t s;
    pm_stats_get(&s);
    _exit(s.decaying < ((size_t)1 << 20) ? 0 : 1);
}

Test(arena, a_forked_child_starts_its_own_purge_thread) {
    _pm_options.purge_delay = 100;
    free(malloc(8u << 20));                          /* a cached run: the thread is wanted */
    free(malloc(8u << 20));                          /* a slow path: it starts */
    usleep(400 * 1000);
    cr_assert_str_eq(_pm_purge_thread_state(), "idle", "the run decayed and the thread sleeps");
    char out[4096];
    int st = run_in_child(build_free_and_idle, NULL, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's memory came back while it was idle: %s", out);
}

/* realloc into a cached run copies the whole usable size, not only the bytes requested. */
Test(arena, a_huge_realloc_into_a_cached_run_keeps_the_usable_bytes) {
    pm_trim();
    char *run = malloc(32u << 20);
    free(run);                                       /* a 32 MiB cached run */
    char *p = malloc((2u << 20) + 1), *after = malloc((1u << 20) + 1);   /* huge: p cannot grow in place */
    size_t usable = malloc_usable_size(p);
    cr_assert_gt(usable, (size_t)(2u << 20) + 1);
    memset(p, 0x5a, usable);
    char *q = realloc(p, 6u << 20);
    cr_assert_neq(q, p);
    for (size_t i = 0; i < usable; i++) if ((unsigned char)q[i] != 0x5a) cr_assert_fail("byte %zu of %zu lost", i, usable);
    free(q);
    free(after);
}

/* Each way a huge run enters the cache starts the purge thread: here a realloc shrink is the
 * program's only "free", and it then makes no allocator call at all. */
Test(arena, a_huge_realloc_shrink_alone_is_returned_in_an_idle_program) {
    cr_assert_eq(atomic_load(&_pm_purge_state), 0, "no purge thread yet (the test needs a fresh process)");
    _pm_options.purge_delay = 100;
    char *p = malloc(64u << 20);
    memset(p, 1, 64u << 20);
    p = realloc(p, 2u << 20);
    usleep(400 * 1000);
    pm_huge_counts_t h;
    _pm_huge_counts(&h);
    cr_assert_eq(h.cached, 0, "the 62 MiB tail decayed and was unmapped");
    free(p);
}

/* A merged run takes the age of its oldest piece: a piece cut from a big run and freed back
 * again and again does not keep the rest of the run from decaying. */
Test(arena, a_cached_run_decays_while_a_piece_of_it_is_reused) {
    _pm_options.purge_delay = 200;
    pm_trim();
    char *big = malloc(64u << 20);
    memset(big, 1, 64u << 20);
    free(big);
    for (int i = 0; i < 12; i++) {                   /* 600 ms: three times the delay */
        free(malloc(2u << 20));
        usleep(50 * 1000);
    }
    pm_huge_counts_t h;
    _pm_huge_counts(&h);
    cr_assert_leq(h.cached, (size_t)2 << 20, "%zu bytes still cached", h.cached);
}

/* Two threads take, resize and free huge blocks (cached runs, aligned ones, mremap growth,
 * shrinks), then hold hundreds at once so the registry grows, and a forked child uses it: the
 * registry and the cache keep their invariants (_pm_huge_check) after each phase. */
static void *huge_churn(void *arg) {
    uint64_t seed = (uintptr_t)arg;
    char *live[48] = { 0 };
    for (int i = 0; i < 1500; i++) {
        unsigned k = (unsigned)(test_rand(&seed) % 48);
        size_t size = (1u << 20) + 1 + test_rand(&seed) % (6u << 20);
        if (live[k] == NULL && test_rand(&seed) % 4 == 0) {
            void *p = NULL;
            if (posix_memalign(&p, (size_t)64 << 10, size) != 0) return (void *)1;
            live[k] = p;
        } else if (live[k] == NULL) {
            live[k] = malloc(size);
        } else if (test_rand(&seed) % 2) {
            char *q = realloc(live[k], size);
            if (q == NULL) return (void *)1;
            live[k] = q;
        } else {
            free(live[k]);
            live[k] = NULL;
        }
        if (live[k]) live[k][0] = (char)i;
    }
    for (int k = 0; k < 48; k++) free(live[k]);
    return NULL;
}

Test(arena, the_huge_registry_and_cache_stay_sound_through_busy_use) {
    assert_sound(_pm_huge_check());
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++) pthread_create(&t[i], NULL, huge_churn, (void *)(0x5eed + i));
    for (int i = 0; i < 2; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_null(ret, "an allocation failed");
    }
    assert_sound(_pm_huge_check());
    enum { N = 600 };
    static char *held[N];
    pm_huge_counts_t h0, h;
    _pm_huge_counts(&h0);
    for (int i = 0; i < N; i++) held[i] = malloc((1u << 20) + 4096 * (size_t)(i % 7 + 1));
    _pm_huge_counts(&h);
    cr_assert_eq(h.count, h0.count + N);
    assert_sound(_pm_huge_check());
    pid_t pid = fork();                                  /* the fork handlers leave it usable */
    if (pid == 0) {
        free(held[0]);
        char *p = malloc(5u << 20);
        held[0] = p ? realloc(p, 9u << 20) : NULL;
        _exit(held[0] != NULL && _pm_huge_check() == NULL ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child's registry stays sound");
    for (int i = 0; i < N; i += 2) free(held[i]);
    for (int i = 1; i < N; i += 4) held[i] = realloc(held[i], (3u << 20) + 1);
    assert_sound(_pm_huge_check());
    for (int i = 1; i < N; i += 2) free(held[i]);
    _pm_huge_counts(&h);
    cr_assert_eq(h.count, h0.count);
    assert_sound(_pm_huge_check());
    pm_trim();
    assert_sound(_pm_huge_check());
}
