/* Guarded slots (guard.c): where a guarded block lies in its slot, what its usable size, realloc
 * and free do, that a freed block and the pages around a live one fault, that bad frees and
 * written slack abort with their line, the fallback when every slot is live, the order in which
 * freed slots come back, other threads' frees, fork, and what _pm_guard_describe tells the fault
 * handler. Each Criterion test runs in a process of its own, so each starts with a fresh region. */
#include "helpers.h"
#include <errno.h>
#include <pthread.h>

static char msg[4096];

/* Every allocation from here on goes to a guarded slot while one is free (guard:1). */
static void guard_every_allocation(void) {
    _pm_sample_set_guard(1);
    _pm_heap_get()->sample.left = -1;          /* arm at the next allocation */
}

static uintptr_t page_end(const void *p) {
    size_t page = _pm_os_page_size();
    return ((uintptr_t)p + page) & ~(uintptr_t)(page - 1);
}

Test(guard, a_block_ends_at_its_page_end_aligned_as_c_requires) {
    static const struct { size_t size, align; } cases[] = {
        { 1, 1 }, { 2, 2 }, { 3, 2 }, { 7, 4 }, { 8, 8 }, { 12, 8 }, { 15, 8 }, { 16, 16 }, { 24, 16 },
        { 100, 16 }, { 4096, 16 }, { 5000, 16 }, { PM_GUARD_MAX_SIZE, 16 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t size = cases[k].size, align = cases[k].align;
        uint8_t *p = _pm_guard_alloc(size, PM_ALIGN, NULL);
        cr_assert_not_null(p, "size %zu", size);
        cr_assert(_pm_is_guard_ptr(p) && _pm_is_arena_ptr(p), "size %zu: in the region, and in the arena map", size);
        cr_assert_eq((uintptr_t)p % align, 0, "size %zu: aligned to %zu", size, align);
        size_t rounded = (size + align - 1) & ~(align - 1);
        cr_assert_eq((uintptr_t)p + rounded, page_end(p + size - 1), "size %zu: ends (rounded up to %zu) at its page end", size, align);
        cr_assert_eq(malloc_usable_size(p), size, "size %zu: usable size is the size asked for", size);
        memset(p, 0x5a, size);                 /* every byte of it is writable */
        free(p);
    }
    size_t page = _pm_os_page_size();
    uint8_t *p = _pm_guard_alloc(100, 64, NULL);
    cr_assert_eq((uintptr_t)p % 64, 0);
    cr_assert_eq((uintptr_t)p + 128, page_end(p));
    free(p);
    p = _pm_guard_alloc(100, page, NULL);
    cr_assert_eq((uintptr_t)p % page, 0, "an alignment of a page is honoured");
    free(p);
    cr_assert_null(_pm_guard_alloc(100, 2 * page, NULL), "beyond a page: not guarded");
    cr_assert_null(_pm_guard_alloc(PM_GUARD_MAX_SIZE + 1, PM_ALIGN, NULL), "larger than a slot: not guarded");
    cr_assert_null(_pm_guard_alloc(0, PM_ALIGN, NULL));
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0);
    cr_assert_eq(c.guarded_total, sizeof cases / sizeof cases[0] + 2);
}

/* Criterion may allocate inside its asserts: the steps run with guard on and no assert between
 * them, and are checked once it is off again. */
Test(guard, malloc_calloc_memalign_and_realloc_at_guard_1) {
    guard_every_allocation();
    char *p = malloc(100);
    size_t p_usable = malloc_usable_size(p);
    for (int i = 0; i < 100; i++) p[i] = (char)i;
    uint8_t *z = calloc(10, 10);
    void *a = NULL;
    int a_err = posix_memalign(&a, 256, 300);
    void *big = malloc(PM_GUARD_MAX_SIZE + 1);
    char *q = realloc(p, 5000);                  /* out of the slot, into another, bytes kept */
    size_t q_usable = malloc_usable_size(q);
    bool p_guarded = _pm_is_guard_ptr(p), q_guarded = _pm_is_guard_ptr(q);
    _pm_sample_set_guard(0);
    char *r = realloc(q, 50);

    cr_assert(p_guarded, "guard:1 guards every allocation");
    cr_assert_eq(p_usable, 100);
    cr_assert(_pm_is_guard_ptr(z));
    for (int i = 0; i < 100; i++) cr_assert_eq(z[i], 0, "calloc clears a guarded block");
    cr_assert_eq(a_err, 0);
    cr_assert(_pm_is_guard_ptr(a) && (uintptr_t)a % 256 == 0);
    cr_assert(!_pm_is_guard_ptr(big) && _pm_is_arena_ptr(big), "too big for a slot: an ordinary block");
    cr_assert(q != p && q_guarded);
    cr_assert_eq(q_usable, 5000);
    cr_assert(!_pm_is_guard_ptr(r), "guard off: the new block is an ordinary one");
    for (int i = 0; i < 50; i++) cr_assert_eq(r[i], (char)i, "byte %d kept through two reallocs", i);
    free(r); free(z); free(a); free(big);
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0, "every guarded block was freed, p and q by realloc");
    cr_assert_eq(c.guarded_total, 4);
}

/* Each of these must die of SIGSEGV at the marked access. */
static void write_after_free(void *arg) {
    (void)arg;
    volatile char *p = _pm_guard_alloc(64, PM_ALIGN, NULL);
    p[0] = 1;
    free((void *)p);
    p[0] = 2;
    fprintf(stderr, "not caught\n");
}
static void read_after_free(void *arg) {
    (void)arg;
    volatile char *p = _pm_guard_alloc(4000, PM_ALIGN, NULL);
    free((void *)p);
    fprintf(stderr, "read %d: not caught\n", p[3999]);
}
static void overflow_by_one(void *arg) {
    (void)arg;
    volatile char *p = _pm_guard_alloc(64, PM_ALIGN, NULL);
    p[63] = 1;
    p[64] = 1;
    fprintf(stderr, "not caught\n");
}
static void underflow_past_the_first_page(void *arg) {
    (void)arg;
    volatile char *p = _pm_guard_alloc(64, PM_ALIGN, NULL);
    volatile char *first_page = (volatile char *)((uintptr_t)p & ~(uintptr_t)(_pm_os_page_size() - 1));
    first_page[0] = 1;                         /* the block's own page is open */
    first_page[-1] = 1;
    fprintf(stderr, "not caught\n");
}
static void a_reused_slot_is_closed_where_the_old_block_was(void *arg) {
    (void)arg;
    volatile char *big = _pm_guard_alloc(PM_GUARD_MAX_SIZE, PM_ALIGN, NULL);  /* the whole slot */
    free((void *)big);
    /* fill every other slot, so that the next allocation takes big's slot again */
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    for (size_t i = 1; i < c.slots; i++) _pm_guard_alloc(16, PM_ALIGN, NULL);
    volatile char *small = _pm_guard_alloc(64, PM_ALIGN, NULL);
    if (small != big + PM_GUARD_MAX_SIZE - 64) { fprintf(stderr, "not the same slot\n"); return; }
    small[0] = 1;
    big[0] = 1;                                /* the freed block's first page stays closed */
    fprintf(stderr, "not caught\n");
}

static void expect_segv(void (*fn)(void *), const char *what) {
    int st = run_in_child(fn, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "%s: status %d, stderr: %s", what, st, msg);
}

Test(guard, freed_blocks_and_the_pages_around_live_ones_fault) {
    expect_segv(write_after_free, "a write after free");
    expect_segv(read_after_free, "a read after free");
    expect_segv(overflow_by_one, "a one-byte overflow of a 64-byte block");
    expect_segv(underflow_past_the_first_page, "an underflow past the block's first page");
    expect_segv(a_reused_slot_is_closed_where_the_old_block_was, "a write into a reused slot's old block");
}

static void double_free(void *arg) { (void)arg; void *p = _pm_guard_alloc(40, PM_ALIGN, NULL); free(p); free(p); }
static void interior_free(void *arg) { (void)arg; char *p = _pm_guard_alloc(40, PM_ALIGN, NULL); free(p + 8); }
static void header_free(void *arg) {
    (void)arg;
    char *p = _pm_guard_alloc(40, PM_ALIGN, NULL);
    free((char *)_pm_arena_of(p) + 64);        /* the region's header holds no block */
}
static void realloc_freed(void *arg) { (void)arg; void *p = _pm_guard_alloc(40, PM_ALIGN, NULL); free(p); (void)realloc(p, 80); }
static void usable_size_freed(void *arg) { (void)arg; void *p = _pm_guard_alloc(40, PM_ALIGN, NULL); free(p); (void)malloc_usable_size(p); }
void free_sized(void *p, size_t size);
static void sized_free_too_big(void *arg) { (void)arg; void *p = _pm_guard_alloc(100, PM_ALIGN, NULL); free_sized(p, 101); }
static void slack_written(void *arg) {
    (void)arg;
    char *p = _pm_guard_alloc(100, PM_ALIGN, NULL);   /* 12 bytes of slack before the guard page */
    p[100] = 0;                                 /* an off-by-one terminator: no fault */
    free(p);
}
static void front_written(void *arg) {
    (void)arg;
    char *p = _pm_guard_alloc(100, PM_ALIGN, NULL);
    p[-1] = 'x';
    free(p);
}

Test(guard, bad_frees_and_written_slack_abort_with_a_message) {
    static const struct { void (*fn)(void *); const char *want; } cases[] = {
        { double_free, "free(): double free (guarded block is already free)" },
        { interior_free, "free(): invalid pointer (inside a guarded slot but not its block)" },
        { header_free, "free(): invalid pointer (inside poolmalloc's guarded region but not in a slot)" },
        { realloc_freed, "realloc(): invalid pointer (guarded block is already free)" },
        { usable_size_freed, "malloc_usable_size(): invalid pointer (guarded block is already free)" },
        { sized_free_too_big, "free_sized(): sized free of more bytes than the block holds" },
        { slack_written, "free(): heap-buffer-overflow (the bytes after a guarded block, before its guard page, were written)" },
        { front_written, "free(): heap-buffer-underflow (the bytes before a guarded block, on its first page, were written)" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int st = run_in_child(cases[k].fn, NULL, msg, sizeof msg);
        cr_assert(aborted_with(st, msg, cases[k].want), "case %zu: want '%s', got status %d: %s", k, cases[k].want, st, msg);
        cr_assert_eq(strchr(msg, '\n'), msg + strlen(msg) - 1, "one line: %s", msg);
    }
    void *p = _pm_guard_alloc(100, PM_ALIGN, NULL);
    free_sized(p, 100);                         /* the size asked for is right */
}

Test(guard, when_every_slot_is_live_allocations_are_not_guarded_and_the_oldest_freed_slot_comes_back) {
    static void *blocks[PM_GUARD_SLOTS];
    pm_guard_counts_t c, full;
    guard_every_allocation();
    blocks[0] = malloc(64);
    _pm_guard_counts(&c);
    for (size_t i = 1; i < c.slots; i++) blocks[i] = malloc(64);
    _pm_guard_counts(&full);
    char *plain = malloc(64);
    free(blocks[5]);
    free(blocks[9]);
    void *again5 = malloc(64), *again9 = malloc(64), *plain2 = malloc(64);
    _pm_sample_set_guard(0);

    cr_assert(c.slots >= 16 && c.slots <= PM_GUARD_SLOTS, "%zu slots", c.slots);
    for (size_t i = 0; i < c.slots; i++) cr_assert(_pm_is_guard_ptr(blocks[i]), "block %zu guarded", i);
    cr_assert_eq(full.live, c.slots);
    cr_assert(plain != NULL && !_pm_is_guard_ptr(plain), "every slot live: an ordinary block");
    memset(plain, 1, 64);
    cr_assert_eq(again5, blocks[5], "the least recently freed slot first (same size, same place)");
    cr_assert_eq(again9, blocks[9]);
    cr_assert(plain2 != NULL && !_pm_is_guard_ptr(plain2), "full again");
    free(plain);
    free(plain2);
    assert_sound(_pm_guard_check());
    for (size_t i = 0; i < c.slots; i++) free(blocks[i]);
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0);
    assert_sound(_pm_guard_check());
}

/* A failed mapping of the region, or a failed mprotect of a slot, leaves that allocation
 * unguarded (malloc still succeeds, errno untouched), and the next guard point tries again. */
Test(guard, a_failed_mapping_or_mprotect_falls_back_to_an_ordinary_block) {
    _pm_os_fail_next_maps(1);
    cr_assert_null(_pm_guard_alloc(64, PM_ALIGN, NULL), "the region's reservation failed");
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    cr_assert_eq(c.slots, 0, "no region yet");
    void *p = _pm_guard_alloc(64, PM_ALIGN, NULL);
    cr_assert(p && _pm_is_guard_ptr(p), "mapped at the next try");
    free(p);                                     /* its slot goes to the ring's tail */
    void *q = _pm_guard_alloc(64, PM_ALIGN, NULL);   /* slot 1, the oldest never-used one */
    _pm_os_fail_next_maps(1);
    void *none = _pm_guard_alloc(64, PM_ALIGN, NULL);   /* slot 2's mprotect fails */
    void *r = _pm_guard_alloc(64, PM_ALIGN, NULL);
    cr_assert_null(none);
    cr_assert_eq((uintptr_t)r - (uintptr_t)q, (uintptr_t)q - (uintptr_t)p, "the slot that failed stays first in the ring");
    free(q);
    free(r);

    guard_every_allocation();
    errno = 0;
    _pm_os_fail_next_maps(1);
    char *m = malloc(64);
    int err = errno;
    _pm_sample_set_guard(0);
    cr_assert(m != NULL && !_pm_is_guard_ptr(m), "an ordinary block instead");
    cr_assert_eq(err, 0, "errno untouched");
    free(m);
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0);
    cr_assert_eq(c.guarded_total, 3);
}

static void *alloc_guarded(void *arg) { (void)arg; return _pm_guard_alloc(200, PM_ALIGN, NULL); }

Test(guard, another_thread_may_free_a_guarded_block) {
    void *p;
    pthread_t t;
    pthread_create(&t, NULL, alloc_guarded, NULL);
    pthread_join(t, &p);
    cr_assert(_pm_is_guard_ptr(p));
    memset(p, 3, 200);
    free(p);
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0);
}

static _Atomic int stop;
static void *guard_churn(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        void *p = _pm_guard_alloc(48, PM_ALIGN, NULL);
        if (p) free(p);
    }
    return NULL;
}

/* Another thread holds the region's lock for 200 ms (as a guarded malloc or free does for a
 * moment), and the main thread forks meanwhile. */
static _Atomic int holding;
static void *hold_guard_lock(void *arg) {
    (void)arg;
    _pm_guard_fork_prepare();                    /* takes the lock */
    atomic_store(&holding, 1);
    usleep(200000);
    _pm_guard_fork_parent();                     /* releases it */
    return NULL;
}

static int child_uses_the_region(void *before) {
    alarm(5);                                    /* a lock inherited held would hang here */
    uint8_t *p = _pm_guard_alloc(64, PM_ALIGN, NULL);
    if (p == NULL || !_pm_is_guard_ptr(p)) return 2;
    memset(p, 1, 64);
    free(p);
    if (((uint8_t *)before)[299] != 7) return 3;
    free(before);
    return 0;
}

/* The region's lock is held across fork (init.c's table), so a child never inherits it held by a
 * thread it lacks: forked while another thread holds it, or while two threads allocate and free
 * guarded blocks, the child uses the region at once, and a block live at the fork is freed in
 * both processes. Without the table's row the first child hangs until its alarm. */
Test(guard, fork_while_other_threads_allocate_guarded_blocks) {
    void *before = _pm_guard_alloc(300, PM_ALIGN, NULL);
    memset(before, 7, 300);
    pthread_t holder;
    pthread_create(&holder, NULL, hold_guard_lock, NULL);
    while (!atomic_load(&holding)) usleep(1000);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) _exit(child_uses_the_region(before));
    int status;
    waitpid(pid, &status, 0);
    pthread_join(holder, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked while the lock was held: status %d", status);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, guard_churn, NULL);
    for (int k = 0; k < 40; k++) {
        pid = fork();
        cr_assert_neq(pid, -1);
        if (pid == 0) _exit(child_uses_the_region(before));
        waitpid(pid, &status, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d ended with status %d", k, status);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_sound(_pm_guard_check());
    free(before);
    pm_guard_counts_t c;
    _pm_guard_counts(&c);
    cr_assert_eq(c.live, 0);
}

/* What the fault handler is told: the nearest block, the kind of access, and both stacks. */
Test(guard, describe_names_the_nearest_block_and_the_kind) {
    uint8_t *p = _pm_guard_alloc(64, PM_ALIGN, NULL), *q = _pm_guard_alloc(1000, PM_ALIGN, NULL);
    pm_guard_fault_t f;
    cr_assert(_pm_guard_describe(p + 64, &f));
    cr_assert_eq(f.kind, PM_GUARD_OVERFLOW);
    cr_assert(f.block == p && f.size == 64 && !f.freed);
    cr_assert_gt(f.nalloc, 0, "the allocating stack was kept");
    cr_assert_eq(f.nfree, 0);
    uint8_t *before_q = (uint8_t *)((uintptr_t)q & ~(uintptr_t)(_pm_os_page_size() - 1)) - 1;
    cr_assert(_pm_guard_describe(before_q, &f));
    cr_assert(f.kind == PM_GUARD_UNDERFLOW && f.block == q && f.size == 1000);
    free(p);
    cr_assert(_pm_guard_describe(p + 10, &f));
    cr_assert(f.kind == PM_GUARD_USE_AFTER_FREE && f.block == p && f.freed);
    cr_assert_gt(f.nfree, 0, "the freeing stack was kept");
    int local;
    cr_assert(!_pm_guard_describe(&local, &f), "not in the region");
    char *plain = malloc(64);
    cr_assert(!_pm_guard_describe(plain, &f), "an ordinary block is not in the region");
    free(plain);
    free(q);
}
