#include "helpers.h"
#include <errno.h>

Test(aligned, posix_memalign_every_power_of_two_up_to_4_mib) {
    for (size_t align = sizeof(void *); align <= (4u << 20); align *= 2) {
        size_t sizes[] = { 1, align / 2 + 1, align, align + 1, 3 * align + 5, 100000 };
        for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            void *p = NULL;
            cr_assert_eq(posix_memalign(&p, align, sizes[i]), 0);
            cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu -> %p", align, sizes[i], p);
            cr_assert_geq(malloc_usable_size(p), sizes[i]);
            memset(p, 0x77, sizes[i]);
            free(p);
        }
    }
}

Test(aligned, many_aligned_blocks_do_not_overlap) {
    void *blocks[500];
    for (int i = 0; i < 500; i++) {
        size_t align = (size_t)32 << (i % 8);
        cr_assert_eq(posix_memalign(&blocks[i], align, 48 + i), 0);
        cr_assert_eq((uintptr_t)blocks[i] % align, 0);
        memset(blocks[i], i & 0xff, 48 + i);
    }
    for (int i = 0; i < 500; i++) {
        for (int j = 0; j < 48 + i; j++) cr_assert_eq(((uint8_t *)blocks[i])[j], i & 0xff);
        free(blocks[i]);
    }
}

Test(aligned, posix_memalign_rejects_bad_alignment_with_einval) {
    void *p = (void *)0x1;
    cr_assert_eq(posix_memalign(&p, 0, 10), EINVAL);
    cr_assert_eq(posix_memalign(&p, 24, 10), EINVAL);
    cr_assert_eq(posix_memalign(&p, 4, 10), EINVAL);       /* not a multiple of sizeof(void *) */
    cr_assert_eq(p, (void *)0x1, "the out pointer is untouched on error");
    cr_assert_eq(posix_memalign(&p, 64, SIZE_MAX - 100), ENOMEM);
}

Test(aligned, aligned_alloc_memalign_valloc_pvalloc) {
    void *a = aligned_alloc(256, 1000);
    cr_assert_eq((uintptr_t)a % 256, 0);
    errno = 0;
    cr_assert_null(aligned_alloc(48, 96));
    cr_assert_eq(errno, EINVAL);
    void *m = memalign(100, 10);                               /* rounded up to 128 */
    cr_assert_eq((uintptr_t)m % 128, 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    cr_assert_eq((uintptr_t)v % page, 0);
    void *pv = pvalloc(page + 1);
    cr_assert_eq((uintptr_t)pv % page, 0);
    cr_assert_geq(malloc_usable_size(pv), 2 * page);
    free(a); free(m); free(v); free(pv);
}

Test(aligned, memalign_of_alignment_zero_is_malloc, .timeout = 10) {
    void *p = memalign(0, 10), *q = __libc_memalign(0, 100);
    cr_assert_not_null(p);
    cr_assert_not_null(q);
    cr_assert_eq((uintptr_t)p % 16, 0);
    free(p);
    free(q);
}
