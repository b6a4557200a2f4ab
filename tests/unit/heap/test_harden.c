/* test_harden.c: hardened:true (lib/heap/harden.c and the quarantine in heap.c). The mode is fixed
 * when the heap starts, so `make unit` runs this suite a second time, alone, with
 * POOLMALLOC_CONF=hardened:true (and so does unit-debug, under PM_DEBUG=1); in the first run it
 * is skipped. Errors are provoked in child processes, whose one-line message is checked. */
#include "helpers.h"

#include <errno.h>
#include <pthread.h>

static void need_hardened(void) {
    if (!_pm_hardened) cr_skip_test("runs under POOLMALLOC_CONF=hardened:true (make unit does)");
}

TestSuite(harden, .init = need_hardened);

static bool all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i]) return false;
    return true;
}

static const size_t sizes[] = { 1, 7, 8, 15, 16, 17, 31, 100, 496, 512, 1000, 1023, 4096, 5000,
                                65536, 262144, 1000000 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

Test(harden, usable_size_is_what_was_asked_and_memory_comes_zeroed) {
    for (size_t i = 0; i < NSIZES; i++) {
        unsigned char *p = malloc(sizes[i]);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % 16, 0, "size %zu: %p is not 16-aligned", sizes[i], (void *)p);
        cr_assert_eq(malloc_usable_size(p), sizes[i], "size %zu", sizes[i]);
        cr_assert(all_zero(p, sizes[i]), "size %zu: a fresh block is not zero", sizes[i]);
        memset(p, 0x5a, sizes[i]);
        free(p);
    }
    /* blocks freed dirty come back zero once they leave the quarantine */
    void *ps[4096];
    for (int i = 0; i < 4096; i++) memset(ps[i] = malloc(100), 0xee, 100);
    for (int i = 0; i < 4096; i++) free(ps[i]);
    for (int i = 0; i < 4096; i++) {
        ps[i] = malloc(100);
        cr_assert(all_zero(ps[i], 100), "block %d came back dirty", i);
    }
    for (int i = 0; i < 4096; i++) free(ps[i]);
}

Test(harden, a_freed_block_stays_out_of_use_for_256_kib_of_later_frees) {
    size_t size = 1000;                    /* a 1280-byte class with header and canaries */
    void *first = malloc(size);
    free(first);
    size_t freed = 0, rounds = 0;
    for (;;) {
        void *q = malloc(size);
        cr_assert_not_null(q);
        if (q == first) break;
        free(q);
        freed += _pm_pool_of(q)->block_size;
        cr_assert_lt(++rounds, 100000, "the first block never came back");
    }
    /* it left when the quarantine, itself included, passed 256 KiB; then its pool served it */
    cr_assert_gt(freed + 1280, PM_QUARANTINE_BYTES, "reused after only %zu bytes of frees", freed);
    free(first);
}

Test(harden, aligned_blocks_keep_their_alignment_and_checks) {
    for (size_t align = 32; align <= 16384; align *= 2) {
        for (size_t n = 1; n <= 3 * align; n += align / 2 + 3) {
            unsigned char *p = aligned_alloc(align, n);
            cr_assert_not_null(p);
            cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu", align, n);
            cr_assert_eq(malloc_usable_size(p), n);
            cr_assert(all_zero(p, n));
            memset(p, 1, n);
            free(p);
        }
    }
    void *q = NULL;
    cr_assert_eq(posix_memalign(&q, 4096, 100), 0);
    cr_assert_eq((uintptr_t)q % 4096, 0);
    free(q);
}

Test(harden, realloc_keeps_contents_in_place_and_when_moving) {
    unsigned char *p = malloc(100);
    for (int i = 0; i < 100; i++) p[i] = (unsigned char)i;
    unsigned char *q = realloc(p, 104);           /* still in its class: in place */
    cr_assert_eq(q, p);
    cr_assert_eq(malloc_usable_size(q), 104);
    for (int i = 0; i < 100; i++) cr_assert_eq(q[i], (unsigned char)i);
    cr_assert_eq(q[100] | q[101] | q[102] | q[103], 0, "grown bytes are zero");
    q = realloc(q, 60);                           /* shrinks in place: canary moves in */
    cr_assert_eq(malloc_usable_size(q), 60);
    unsigned char *r = realloc(q, 70000);         /* moves */
    cr_assert_neq(r, q);
    for (int i = 0; i < 60; i++) cr_assert_eq(r[i], (unsigned char)i);
    r = realloc(r, 3 << 20);                      /* to a huge block */
    for (int i = 0; i < 60; i++) cr_assert_eq(r[i], (unsigned char)i);
    r = realloc(r, 10);
    for (int i = 0; i < 10; i++) cr_assert_eq(r[i], (unsigned char)i);
    errno = 0;
    cr_assert_null(realloc(r, SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_null(realloc(r, SIZE_MAX - 20));
    cr_assert_eq(malloc_usable_size(r), 10, "a failed realloc leaves the block alone");
    free(r);
    unsigned char *z = calloc(300, 7);
    cr_assert(all_zero(z, 2100));
    free(z);
}

/* ---- errors, each in a child ---- */

static size_t err_size;
static void overflow_by_one(void *a) { (void)a; char *p = malloc(err_size); p[err_size] ^= 1; free(p); }
static void underflow_by_one(void *a) { (void)a; char *p = malloc(err_size); p[-1] ^= 1; free(p); }
static void overflow_far(void *a) { (void)a; char *p = malloc(err_size); p[err_size + 40] ^= 1; free(p); }
static void overflow_past_window(void *a) {
    (void)a;
    char *p = malloc(err_size);
    p[err_size + 120] ^= 1;                  /* past the canary and the 64 bytes free reads */
    free(p);
    for (int i = 0; i < 20000; i++) free(malloc(err_size));   /* until p leaves the quarantine */
}
static void front_canary(void *a) { (void)a; char *p = malloc(err_size); p[-32] ^= 1; free(p); }
static void double_free(void *a) { (void)a; void *p = malloc(err_size); free(p); free(p); }
static void interior(void *a) { (void)a; char *p = malloc(err_size); free(p + 16); }
static void usable_of_freed(void *a) { (void)a; char *p = malloc(err_size); free(p); (void)malloc_usable_size(p); }
static void realloc_overflowed(void *a) { (void)a; char *p = malloc(err_size); p[err_size] ^= 1; (void)realloc(p, 2 * err_size); }
static void written_after_free(void *a) {
    (void)a;
    char *p = malloc(err_size);
    free(p);
    p[(err_size < 4096 ? err_size : 4096) - 1] = 1;   /* the quarantine checks the first 4 KiB */
    for (int i = 0; i < 20000; i++) free(malloc(err_size));
}
static void copy_past_end(void *a) {
    (void)a;
    char *p = malloc(err_size);
    _pm_hard_check_access("memcpy", p + 1, err_size);   /* what lib/checked_copy.c asks */
}
static void copy_before_start(void *a) { (void)a; char *p = malloc(err_size); _pm_hard_check_access("memset", p - 1, 2); }
static void copy_into_freed(void *a) { (void)a; char *p = malloc(err_size); free(p); _pm_hard_check_access("memmove", p, 1); }

static void expect_abort(void (*fn)(void *), size_t size, const char *want) {
    char msg[512];
    err_size = size;
    int st = run_in_child(fn, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, want), "size %zu: want an abort with \"%s\", got status %d: %s", size, want, st, msg);
}

Test(harden, bounds_errors_abort_with_their_names) {
    static const size_t at[] = { 8, 100, 4096, 262144 };
    for (size_t i = 0; i < 4; i++) {
        expect_abort(overflow_by_one, at[i], "free(): heap-buffer-overflow");
        /* from 1 KiB classes a front canary takes the byte before the data; below, the header */
        expect_abort(underflow_by_one, at[i], at[i] >= 1000 ? "free(): heap-buffer-underflow: the"
                                                            : "free(): heap corruption: the block's header");
        expect_abort(double_free, at[i], "free(): double free");
        expect_abort(interior, at[i], "free(): invalid pointer");
        expect_abort(usable_of_freed, at[i], "malloc_usable_size(): double free");
        expect_abort(realloc_overflowed, at[i], "realloc(): heap-buffer-overflow");
        expect_abort(written_after_free, at[i], "free(): write after free");
        expect_abort(copy_past_end, at[i], "memcpy(): heap-buffer-overflow");
        expect_abort(copy_before_start, at[i], "memset(): heap-buffer-underflow");
        expect_abort(copy_into_freed, at[i], "memmove(): use after free");
    }
    /* the zero rest of a block is checked too, and large classes have a front canary */
    expect_abort(overflow_far, 1100, "free(): heap-buffer-overflow: the 1100-byte block");  /* 132-byte tail */
    expect_abort(front_canary, 4096, "free(): heap-buffer-underflow: the 4096-byte block at");
    /* further out (the 1100-byte block's tail is 132 bytes): when the block leaves the quarantine */
    expect_abort(overflow_past_window, 1100, "free(): write after free: the block at");
    expect_abort(overflow_past_window, 1100, "or overflowed far past its end while in use (at +1220");
}

/* A dangling write after the block left the quarantine: malloc finds it before handing the block
 * out, so calloc never returns it dirty and its next owner is not blamed. */
static void written_after_quarantine(void *a) {
    (void)a;
    char *p = malloc(err_size);
    free(p);
    for (int i = 0; i < 400; i++) free(malloc(4000));   /* 400 x 4 KiB: p has left the quarantine */
    p[err_size / 2] = 1;
    for (int i = 0; i < 1000; i++) (void)calloc(1, err_size);
}

Test(harden, a_write_after_the_quarantine_is_caught_when_the_block_is_handed_out) {
    expect_abort(written_after_quarantine, 100, "malloc(): write after free: the free block at");
    expect_abort(written_after_quarantine, 3000, "malloc(): write after free: the free block at");
}

Test(harden, in_bounds_copies_pass) {
    char *p = malloc(100), *q = malloc(100);
    _pm_hard_check_access("memcpy", p, 100);
    _pm_hard_check_access("memcpy", p + 99, 1);
    _pm_hard_check_access("memcpy", p + 50, 0);
    int local;
    _pm_hard_check_access("memcpy", &local, sizeof local);   /* not ours: not judged */
    memcpy(q, p, 100);
    free(p);
    free(q);
}

/* ---- threads ---- */

#define XFER 20000
static void *_Atomic slots[64];

static void *producer(void *arg) {
    (void)arg;
    uint64_t s = 99;
    for (int i = 0; i < XFER; i++) {
        size_t n = 1 + test_rand(&s) % 2000;
        unsigned char *p = malloc(n);
        memset(p, (int)(n & 0xff), n);
        void *expected = NULL;
        while (!atomic_compare_exchange_weak(&slots[i % 64], &expected, p)) { expected = NULL; sched_yield(); }
    }
    return NULL;
}

Test(harden, blocks_freed_by_another_thread_pass_through_its_quarantine) {
    pthread_t t;
    pthread_create(&t, NULL, producer, NULL);
    for (int i = 0; i < XFER; i++) {
        unsigned char *p;
        while ((p = atomic_exchange(&slots[i % 64], NULL)) == NULL) sched_yield();
        size_t n = malloc_usable_size(p);
        for (size_t j = 0; j < n; j++) cr_assert_eq(p[j], (unsigned char)(n & 0xff));
        free(p);
    }
    pthread_join(t, NULL);
    pm_trim();                                /* flushes this thread's quarantine */
    pm_heap_t *heap = _pm_heap_get();
    cr_assert_null(heap->quarantine);
    cr_assert_eq(heap->quarantine_bytes, 0);
    assert_sound(_pm_heap_check(heap));
}

static void fork_child(void *a) {
    (void)a;
    void *p = malloc(50);
    free(p);
    for (int i = 0; i < 1000; i++) free(malloc(50));
    char *q = malloc(50);
    q[50] ^= 0x5a;                             /* xor: a store of 1 would match a canary of 1 (1 in 128) */
    free(q);
}

Test(harden, a_forked_child_keeps_checking) {
    void *held = malloc(50);
    free(held);                                /* in the parent's quarantine across the fork */
    expect_abort(fork_child, 50, "free(): heap-buffer-overflow: the 50-byte block");
}

/* Found by a review: calloc of a guarded block (guard:N with hardened:true) returned the slot's
 * old bytes; the guarded path now clears it too. */
Test(harden, calloc_of_a_guarded_block_is_zero) {
    _pm_sample_set_guard_cap(0);
    _pm_sample_set_guard(1);
    _pm_heap_get()->sample.left = -1;
    size_t dirty = 0, guarded = 0;
    for (int i = 0; i < 2000; i++) {
        unsigned char *p = calloc(1, 100 + (size_t)i % 300);
        guarded += _pm_is_guard_ptr(p);
        dirty += !all_zero(p, 100 + (size_t)i % 300);
        memset(p, 0xab, 100 + (size_t)i % 300);
        free(p);
    }
    _pm_sample_set_guard(0);
    cr_assert_eq(dirty, 0, "%zu calloc blocks not zero", dirty);
    cr_assert_gt(guarded, 100, "guarded: %zu", guarded);
}
