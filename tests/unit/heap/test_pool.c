/* The heap's invariant checkers (pool.c, heap.c, arena.c) name the invariant that broke: each
 * test breaks one on purpose, checks the text, and mends it. PM_DEBUG builds call the same
 * checkers at every transition (make unit-debug). */
#include "helpers.h"

Test(pool, a_written_free_block_is_named) {
    void *p[64];
    for (int i = 0; i < 64; i++) p[i] = malloc(48);
    pm_pool_t *pool = pool_of(p[10]);
    free(p[10]);
    assert_sound(_pm_pool_check(pool));
    pm_block_t *b = p[10];
    uintptr_t mark = b->mark;
    b->mark ^= 1;                                    /* a write after free */
    cr_assert_str_eq(_pm_pool_check(pool), "pool: a free-list block lacks its free mark (written after free?)");
    b->mark = mark;
    assert_sound(_pm_pool_check(pool));
    for (int i = 0; i < 64; i++) if (i != 10) free(p[i]);
}

Test(pool, a_miscounted_pool_is_named) {
    void *p = malloc(48);
    pm_pool_t *pool = pool_of(p);
    __atomic_store_n(&pool->used, pool->used + 1, __ATOMIC_RELAXED);
    cr_assert_str_eq(_pm_pool_check(pool), "pool: used + free + uncarved != capacity");
    __atomic_store_n(&pool->used, pool->used - 1, __ATOMIC_RELAXED);
    assert_sound(_pm_pool_check(pool));
    free(p);
}

Test(pool, a_broken_heap_list_is_named) {
    void *p[2048];
    for (int i = 0; i < 2048; i++) p[i] = malloc(64);   /* several pools of one class */
    for (int i = 0; i < 2048; i += 3) free(p[i]);       /* all of them back on the list */
    pm_heap_t *heap = _pm_heap_tls;
    unsigned c = _pm_class_of(64);
    pm_pool_t *second = PM_HEAP_POOLS(heap, c)->next;
    cr_assert_not_null(second);
    pm_pool_t *prev = second->prev;
    second->prev = NULL;
    cr_assert_str_eq(_pm_heap_check_class(heap, c), "heap: a class list's prev link is wrong");
    cr_assert_str_eq(_pm_heap_check(heap), "heap: a class list's prev link is wrong");
    second->prev = prev;
    assert_sound(_pm_heap_check(heap));
    for (int i = 0; i < 2048; i++) if (i % 3) free(p[i]);
}

Test(pool, a_miscounted_arena_is_named) {
    void *p = malloc(100);
    pm_arena_t *arena = _pm_arena_of(p);
    pthread_mutex_lock(&_pm_arena_lock);
    arena->nfree++;
    pthread_mutex_unlock(&_pm_arena_lock);
    cr_assert_str_eq(_pm_arena_check(), "arena: nfree is not the number of free slots");
    pthread_mutex_lock(&_pm_arena_lock);
    arena->nfree--;
    pthread_mutex_unlock(&_pm_arena_lock);
    assert_sound(_pm_arena_check());
    free(p);
}

/* A write into a freed block: the release build cannot see it, the PM_DEBUG build stops at the
 * pool's next transition, naming the invariant (make unit-debug runs this with PM_DEBUG=1). */
static void write_after_free(void *arg) {
    (void)arg;
    static char *p[4096];
    for (int i = 0; i < 4096; i++) p[i] = malloc(48);
    for (int i = 0; i < 4096; i += 2) free(p[i]);
    memset(p[100], 0x41, 16);                       /* the freed block's link and mark */
    for (int i = 1; i < 4096; i += 2) free(p[i]);
    fprintf(stderr, "not caught\n");
}

Test(pool, debug_build_stops_at_a_write_after_free) {
    if (_pm_debug_level < 1) cr_skip_test("a release build: PM_DEBUG=0");
    char msg[512];
    int status = run_in_child(write_after_free, NULL, msg, sizeof msg);
    cr_assert(aborted_with(status, msg, "pool: a free-list block lacks its free mark (written after free?)"), "%s", msg);
    cr_assert(strncmp(msg, "poolmalloc: PM_DEBUG: ", 22) == 0, "%s", msg);
}
