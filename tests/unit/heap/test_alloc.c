#include "helpers.h"
#include <errno.h>

Test(alloc, every_size_is_16_byte_aligned_usable_and_writable) {
    for (size_t n = 0; n <= 70000; n += (n < 2048 ? 1 : 97)) {
        uint8_t *p = malloc(n);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % 16, 0, "malloc(%zu) = %p", n, p);
        cr_assert_geq(malloc_usable_size(p), n);
        memset(p, 0xab, malloc_usable_size(p));
        free(p);
    }
    for (size_t n = (1 << 20) - 100; n < (1 << 20) + 100; n += 7) {
        void *p = malloc(n);
        cr_assert_eq((uintptr_t)p % 16, 0);
        cr_assert_geq(malloc_usable_size(p), n);
        memset(p, 1, n);
        free(p);
    }
}

Test(alloc, usable_size_is_the_class_size) {
    for (size_t n = 1; n <= PM_LARGE_MAX; n = n * 3 / 2 + 1) {
        void *p = malloc(n);
        cr_assert_eq(malloc_usable_size(p), _pm_classes[_pm_class_of(n)].size, "n=%zu", n);
        free(p);
    }
    cr_assert_eq(malloc_usable_size(NULL), 0);
    void *h = malloc(3 << 20);
    cr_assert_eq(malloc_usable_size(h), (size_t)3 << 20);
    free(h);
}

Test(alloc, malloc_zero_gives_distinct_freeable_blocks) {
    void *a = malloc(0), *b = malloc(0);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    free(a);
    free(b);
}

Test(alloc, a_freed_block_is_reused_first) {
    for (size_t n = 16; n <= 65536; n *= 2) {
        void *a = malloc(n);
        free(a);
        void *b = malloc(n);
        cr_assert_eq(a, b, "size %zu not reused", n);
        free(b);
    }
}

Test(alloc, blocks_never_overlap) {
    enum { N = 20000 };
    static uint8_t *blocks[N];
    static size_t sizes[N];
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        sizes[i] = test_rand(&seed) % 3000;
        blocks[i] = malloc(sizes[i]);
        memset(blocks[i], i & 0xff, sizes[i]);
    }
    for (int i = 0; i < N; i += 2) free(blocks[i]);
    for (int i = 0; i < N; i += 2) { blocks[i] = malloc(sizes[i]); memset(blocks[i], i & 0xff, sizes[i]); }
    for (int i = 0; i < N; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            cr_assert_eq(blocks[i][j], i & 0xff, "block %d byte %zu overwritten", i, j);
        free(blocks[i]);
    }
}

Test(alloc, calloc_zeroes_reused_memory) {
    for (size_t n = 16; n <= (2u << 20); n = n * 2 + 16) {
        uint8_t *p = malloc(n);
        memset(p, 0xff, n);
        free(p);
        uint8_t *q = calloc(1, n);
        cr_assert_not_null(q);
        for (size_t i = 0; i < n; i++) cr_assert_eq(q[i], 0, "calloc(%zu) byte %zu", n, i);
        free(q);
    }
}

Test(alloc, calloc_overflow_is_null_with_enomem) {
    errno = 0;
    cr_assert_null(calloc(SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(calloc((size_t)1 << 33, (size_t)1 << 33));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_null(reallocarray(NULL, SIZE_MAX / 2, 3));
    cr_assert_eq(errno, ENOMEM);
}

Test(alloc, impossible_sizes_are_null_with_enomem) {
    size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        cr_assert_null(malloc(sizes[i]), "malloc(%zu)", sizes[i]);
        cr_assert_eq(errno, ENOMEM);
    }
    void *p = malloc(100);
    cr_assert_null(realloc(p, SIZE_MAX));
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(malloc_usable_size(p), 112, "realloc failure must keep the block");
    free(p);
}

Test(alloc, huge_blocks_are_mapped_zeroed_and_freed) {
    pm_stats_t before, during, after;
    pm_stats_get(&before);
    uint8_t *p = calloc(1, 64u << 20);
    cr_assert_not_null(p);
    pm_stats_get(&during);
    cr_assert_eq(during.huge_blocks, before.huge_blocks + 1);
    cr_assert_geq(during.mapped, before.mapped + (64u << 20));
    for (size_t i = 0; i < (64u << 20); i += 4096) cr_assert_eq(p[i], 0);
    free(p);
    pm_stats_get(&after);
    cr_assert_eq(after.huge_blocks, before.huge_blocks);
    cr_assert_eq(after.mapped, before.mapped + (64u << 20), "the freed mapping is cached for reuse");
    cr_assert_eq(after.decaying, before.decaying + (64u << 20));
    pm_trim();
    pm_stats_get(&after);
    cr_assert_leq(after.mapped, before.mapped, "malloc_trim unmaps it");
    cr_assert_eq(after.decaying, 0);
}

Test(alloc, free_keeps_errno) {
    void *small = malloc(10), *huge = malloc(8u << 20);
    errno = 1234;
    free(small);
    free(huge);
    free(NULL);
    cr_assert_eq(errno, 1234);
}

Test(alloc, failed_mmap_gives_null_and_enomem) {
    _pm_os_fail_next_maps(2);
    errno = 0;
    cr_assert_null(malloc(16u << 20));
    cr_assert_eq(errno, ENOMEM);
    _pm_os_fail_next_maps(0);
    /* exhaust the current arenas' room for 1 MiB pools so the next one needs a new arena */
    void *blocks[200];
    int n = 0;
    pm_stats_t s;
    pm_stats_get(&s);
    size_t arenas = s.arenas;
    for (; n < 200; n++) {
        blocks[n] = malloc(1u << 20);
        pm_stats_get(&s);
        if (s.arenas > arenas) break;
    }
    cr_assert_lt(n, 200);
    _pm_os_fail_next_maps(4);
    errno = 0;
    void *blocks2[200];
    int m = 0, failed = 0;
    for (; m < 200; m++) {
        blocks2[m] = malloc(1u << 20);
        if (blocks2[m] == NULL) { failed = 1; break; }
    }
    cr_assert(failed, "a new arena was needed and its mapping failed");
    cr_assert_eq(errno, ENOMEM);
    _pm_os_fail_next_maps(0);
    void *ok = malloc(1u << 20);
    cr_assert_not_null(ok, "allocation works again once mmap does");
    free(ok);
    for (int i = 0; i < m; i++) free(blocks2[i]);
    for (int i = 0; i <= n; i++) free(blocks[i]);
}
