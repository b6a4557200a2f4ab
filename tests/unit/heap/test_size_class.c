#include "helpers.h"

TestSuite(size_class, .init = _pm_init_slow);

Test(size_class, every_size_maps_to_the_smallest_class_that_fits) {
    unsigned prev = 0;
    for (size_t n = 0; n <= PM_LARGE_MAX; n++) {
        unsigned c = _pm_class_of(n);
        cr_assert_lt(c, PM_NCLASSES);
        cr_assert_geq(_pm_classes[c].size, n, "size %zu -> class %u of %u bytes", n, c, _pm_classes[c].size);
        if (c > 0) cr_assert_lt(_pm_classes[c - 1].size, n, "size %zu should use class %u", n, c - 1);
        cr_assert_geq(c, prev);
        prev = c;
    }
    cr_assert_eq(_pm_class_of(PM_LARGE_MAX), PM_NCLASSES - 1);
}

Test(size_class, small_classes_step_by_16_as_pymalloc) {
    for (unsigned c = 0; c < 32; c++) cr_assert_eq(_pm_classes[c].size, 16 * (c + 1));
    cr_assert_eq(_pm_class_of(0), 0);
    cr_assert_eq(_pm_class_of(1), 0);
    cr_assert_eq(_pm_class_of(16), 0);
    cr_assert_eq(_pm_class_of(17), 1);
    cr_assert_eq(_pm_class_of(512), 31);
    cr_assert_eq(_pm_class_of(513), 32);
    cr_assert_eq(_pm_classes[32].size, 640);
}

Test(size_class, larger_classes_waste_at_most_a_fifth) {
    for (unsigned c = 32; c < PM_NCLASSES; c++) {
        size_t size = _pm_classes[c].size, below = _pm_classes[c - 1].size;
        cr_assert_eq(size % 16, 0);
        cr_assert_leq((size - below - 1) * 5, size, "class %u: %zu after %zu", c, size, below);
    }
}

Test(size_class, pools_lose_at_most_an_eighth_to_their_tail) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        const pm_class_info_t *ci = &_pm_classes[c];
        size_t pool = (size_t)ci->slots * PM_SLOT_SIZE;
        cr_assert_geq(ci->capacity, 1);
        cr_assert_leq(ci->slots, PM_POOL_MAX_SLOTS);
        cr_assert_eq(ci->capacity, pool / ci->size);
        cr_assert_leq((pool - ci->capacity * ci->size) * 8, pool, "class %u", c);
        cr_assert_leq(ci->capacity, PM_SLOT_SIZE / 16, "class %u: pool.c's sample bitmap covers 1024 blocks", c);
    }
}

/* The free path tells a block start from any other address of the pool with one multiply (no
 * divide, no bound check: the blocks end where the pool ends and the tail is in front). Check it
 * against a real division for every byte of every class's pool, tail included. */
Test(size_class, reciprocal_block_check_is_exact) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        pm_pool_t pool = { 0 };
        uint8_t *base = (uint8_t *)(uintptr_t)PM_ARENA_SIZE;
        size_t span = (size_t)_pm_classes[c].slots * PM_SLOT_SIZE;
        pool.block_size = _pm_classes[c].size;
        pool.capacity = _pm_classes[c].capacity;
        pool.divisor = UINT64_MAX / pool.block_size + 1;
        size_t tail = span - (size_t)pool.capacity * pool.block_size;
        pool.start = base + tail;
        for (size_t at = 0; at < span; at += (c < 48 ? 1 : 16)) {
            bool want = at >= tail && (at - tail) % pool.block_size == 0;
            cr_assert_eq(_pm_pool_is_block_start(&pool, base + at), want, "class %u byte %zu of the pool", c, at);
        }
        for (size_t m = 1; m <= tail; m++)       /* every byte of the tail, whatever the stride above */
            cr_assert_not(_pm_pool_is_block_start(&pool, pool.start - m), "class %u tail byte -%zu", c, m);
    }
}

/* The fast path's list index: arithmetic up to 512 bytes, a table up to 64 KiB, arithmetic above;
 * all three agree with _pm_class_of for every size, and size 0 and huge sizes get index 0. */
Test(size_class, fast_path_index_matches_the_class_of_every_size) {
    for (size_t size = 1; size <= PM_LARGE_MAX; size++)
        cr_assert_eq(_pm_avail_index(size), (size_t)_pm_class_of(size) + 1, "size %zu", size);
    cr_assert_eq(_pm_avail_index(0), 0);
    cr_assert_eq(_pm_avail_index(PM_LARGE_MAX + 1), 0);
    cr_assert_eq(_pm_avail_index(SIZE_MAX), 0);
}
