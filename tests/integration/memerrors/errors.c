/* memerrors/errors.c: one memory error per run, named by argv[1], at a block of argv[2] bytes.
 * Each prints "not caught" if the allocator let it pass; t_memerrors.sh says which must be caught
 * in the default mode and which with hardened:true. The calls go through noinline wrappers, so
 * the compiler cannot see the error and drop it (and t_memerrors.sh builds it with -O0
 * -fno-builtin, so that memset and memcpy are calls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *alloc(size_t n) { return malloc(n); }
__attribute__((noinline)) void release(void *p) { free(p); }
__attribute__((noinline)) void *copy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }
__attribute__((noinline)) void *fill(void *d, int c, size_t n) { return memset(d, c, n); }

/* All n bytes zero? */
static int zero(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) if (p[i]) return 0;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *what = argv[1];
    size_t size = strtoul(argv[2], NULL, 10);
    if (strcmp(what, "mbyte_overflow") == 0) {            /* a byte a megabyte past the end */
        char *p = alloc(size);
        p[size - 1 + (1 << 20)] ^= 'A';
        release(p);
    } else if (strcmp(what, "mbyte_memcpy_overflow") == 0) {
        char *src = calloc(size + (1 << 20), 1), *p = alloc(size);
        copy(p, src, size + (1 << 20));
    } else if (strcmp(what, "zero_read") == 0) {
        volatile char *p = alloc(0);
        printf("%d\n", p[0]);
    } else if (strcmp(what, "zero_write") == 0) {
        char *p = alloc(0);
        p[0] = 1;
        release(p);
    } else if (strcmp(what, "double_free") == 0) {
        void *p = alloc(size);
        release(p);
        release(p);
    } else if (strcmp(what, "interior_free") == 0) {
        char *p = alloc(size);
        release(p + 8);
    } else if (strcmp(what, "byte_overflow") == 0 || strcmp(what, "byte32_overflow") == 0) {
        char *p = alloc(size);
        p[size - 1 + (what[4] == '3' ? 32 : 1)] ^= 'A';
        release(p);
    } else if (strcmp(what, "byte_underflow") == 0 || strcmp(what, "byte32_underflow") == 0) {
        char *p = alloc(size);
        p[what[4] == '3' ? -32 : -1] ^= 'A';
        release(p);
    } else if (strcmp(what, "memcpy_overflow") == 0) {    /* never freed: caught in the copy */
        char *src = calloc(size + 1, 1), *p = alloc(size);
        copy(p, src, size + 1);
    } else if (strcmp(what, "memcpy_underflow") == 0) {
        char *src = calloc(size, 1), *p = alloc(size);
        copy(p - 1, src, size);
    } else if (strcmp(what, "memcpy_overread") == 0) {
        char *p = alloc(size), *dst = calloc(size + 16, 1);
        copy(dst, p, size + 16);
    } else if (strcmp(what, "memset_after_free") == 0) {
        char *p = alloc(size);
        release(p);
        fill(p, 'A', size);
    } else if (strcmp(what, "write_after_free_reuse") == 0) {   /* found when it leaves quarantine */
        char *p = alloc(size);
        release(p);
        p[size < 4096 ? size / 2 : 2048] = 'A';             /* the check covers the first 4 KiB */
        for (int i = 0; i < 100000; i++) release(alloc(size));
    } else if (strcmp(what, "zero_after_free") == 0) {
        char *p = alloc(size);
        fill(p, 'A', size);
        release(p);
        if (zero(p, size)) return 0;
    } else if (strcmp(what, "zero_on_malloc") == 0) {
        char *ps[64];
        for (int i = 0; i < 64; i++) fill(ps[i] = alloc(size), 'A', size);
        for (int i = 0; i < 64; i++) release(ps[i]);
        if (zero(alloc(size), size)) return 0;
    } else if (strcmp(what, "malloc_reuse") == 0) {        /* the freed block is not handed back */
        char *p = alloc(size);
        release(p);
        if (alloc(size) != p) return 0;
    } else if (strcmp(what, "far_free") == 0) {            /* another block's address, 4 KiB on */
        char *p = alloc(size);
        release(p + 4096);
    } else {
        return 2;
    }
    puts("not caught");
    return 0;
}
