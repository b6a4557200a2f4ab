/* memerrors/errors.c: one memory error per run, named by argv[1], at a block of argv[2] bytes.
 * Each prints "not caught" if the allocator let it pass; t_memerrors.sh says which must be caught
 * in the default mode. The calls go through noinline wrappers, so the compiler cannot see the
 * error and drop it (and t_memerrors.sh builds it with -O0 -fno-builtin). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) void *alloc(size_t n) { return malloc(n); }
__attribute__((noinline)) void release(void *p) { free(p); }
__attribute__((noinline)) void *copy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }

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
    } else {
        return 2;
    }
    puts("not caught");
    return 0;
}
