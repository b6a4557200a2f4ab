#include "helpers.h"
#include <errno.h>

static void fill(uint8_t *p, size_t n, uint8_t seed) { for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed + i * 7); }
static void expect(const uint8_t *p, size_t n, uint8_t seed) {
    for (size_t i = 0; i < n; i++) cr_assert_eq(p[i], (uint8_t)(seed + i * 7), "byte %zu of %zu", i, n);
}

/* For every class boundary b: b-1, b, b+1 grown to the next boundaries and shrunk back. */
Test(realloc, keeps_contents_across_every_class_boundary_both_ways) {
    for (unsigned c = 0; c + 1 < PM_NCLASSES; c++) {
        size_t b = _pm_classes[c].size;
        size_t from[] = { b - 1, b, b + 1 };
        for (unsigned i = 0; i < 3; i++) {
            size_t n = from[i], up = _pm_classes[c + 1].size + 1, down = n / 3 + 1;
            uint8_t *p = malloc(n);
            fill(p, n, (uint8_t)c);
            p = realloc(p, up);
            cr_assert_not_null(p);
            expect(p, n, (uint8_t)c);
            cr_assert_geq(malloc_usable_size(p), up);
            p = realloc(p, down);
            expect(p, down, (uint8_t)c);
            cr_assert_geq(malloc_usable_size(p), down);
            free(p);
        }
    }
}

Test(realloc, within_a_class_stays_in_place) {
    uint8_t *p = malloc(100);
    cr_assert_eq(realloc(p, 112), p);
    cr_assert_eq(realloc(p, 97), p);
    free(p);
}

Test(realloc, shrinking_by_more_than_half_moves_to_a_smaller_class) {
    void *p = malloc(60000);
    void *q = realloc(p, 100);
    cr_assert_eq(malloc_usable_size(q), 112);
    free(q);
}

/* pymalloc's rule, for every size: a shrink that shaves a quarter or more off moves (CPython's
 * string builders allocate ~100 bytes more than they keep), a smaller one stays. */
Test(realloc, shrinking_small_blocks_by_a_quarter_or_more_moves_them) {
    static const struct { size_t from, to, usable; bool stays; } cases[] = {
        { 160, 57, 64, false }, { 224, 57, 64, false }, { 64, 49, 64, true }, { 64, 48, 48, false },
        { 256, 193, 256, true }, { 256, 192, 192, false }, { 512, 200, 208, false }, { 32, 1, 16, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *p = malloc(cases[i].from);
        memset(p, 0x5a, cases[i].from);
        uint8_t *q = realloc(p, cases[i].to);
        cr_assert_eq(q == p, cases[i].stays, "%zu -> %zu", cases[i].from, cases[i].to);
        cr_assert_eq(malloc_usable_size(q), cases[i].usable, "%zu -> %zu", cases[i].from, cases[i].to);
        for (size_t k = 0; k < cases[i].to; k++) cr_assert_eq(q[k], 0x5a);
        free(q);
    }
}

Test(realloc, huge_grows_and_shrinks_keeping_contents) {
    size_t n = 3u << 20;
    uint8_t *p = malloc(n);
    fill(p, n, 9);
    for (size_t to = 5u << 20; to <= (80u << 20); to *= 2) {
        p = realloc(p, to);
        cr_assert_not_null(p);
        expect(p, n, 9);
        cr_assert_geq(malloc_usable_size(p), to);
        memset(p + n, 0x5a, to - n);
    }
    p = realloc(p, 2u << 20);
    expect(p, 2u << 20, 9);
    p = realloc(p, 1000);                        /* huge back to a pool class */
    expect(p, 1000, 9);
    cr_assert_eq(malloc_usable_size(p), 1024);
    free(p);
}

Test(realloc, null_is_malloc_and_zero_frees) {
    void *p = realloc(NULL, 50);
    cr_assert_not_null(p);
    cr_assert_null(realloc(p, 0));
}

Test(realloc, reallocarray_multiplies_and_checks) {
    int *a = reallocarray(NULL, 10, sizeof(int));
    for (int i = 0; i < 10; i++) a[i] = i;
    a = reallocarray(a, 1000, sizeof(int));
    for (int i = 0; i < 10; i++) cr_assert_eq(a[i], i);
    errno = 0;
    cr_assert_null(reallocarray(a, SIZE_MAX, 2));
    cr_assert_eq(errno, ENOMEM);
    free(a);
}
