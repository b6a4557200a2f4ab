/* override.c: the only file that defines libc's allocation names. Each forwards to our own
 * functions; the semantics (errno, NULL cases) follow glibc's manual. Compiled with
 * -fvisibility=hidden, so these and the pm_ API are the library's only exported symbols. */
#define _GNU_SOURCE
#include "init.h"
#include "poolmalloc.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Names libc's headers no longer (or do not yet) declare. */
void  cfree(void *p);
void  free_sized(void *p, size_t size);
void  free_aligned_sized(void *p, size_t align, size_t size);
void *__libc_malloc(size_t size);
void  __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);
struct mallinfo __libc_mallinfo(void);
int   __libc_mallopt(int param, int value);

static bool is_pow2(size_t x) { return x && (x & (x - 1)) == 0; }

/* PM_NO_OVERRIDE builds (the ASan and TSan test builds, whose runtimes own malloc) keep only the pm_
 * names. */
#ifndef PM_NO_OVERRIDE

PM_EXPORT void *malloc(size_t size) { return _pm_malloc(size); }
PM_EXPORT void  free(void *p) { _pm_free(p); }
PM_EXPORT void  cfree(void *p) { _pm_free(p); }
PM_EXPORT void *calloc(size_t n, size_t size) { return _pm_calloc(n, size); }
PM_EXPORT void *realloc(void *p, size_t size) { return _pm_realloc(p, size); }
PM_EXPORT size_t malloc_usable_size(void *p) { return _pm_usable_size(p); }

PM_EXPORT void *reallocarray(void *p, size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    return _pm_realloc(p, total);
}

PM_EXPORT int posix_memalign(void **out, size_t align, size_t size) {
    if (!is_pow2(align) || align % sizeof(void *) != 0) return EINVAL;
    int saved = errno;
    void *p = _pm_memalign(align, size);
    if (p == NULL) { errno = saved; return ENOMEM; }   /* posix_memalign leaves errno alone */
    *out = p;
    return 0;
}

PM_EXPORT void *aligned_alloc(size_t align, size_t size) {
    if (!is_pow2(align)) { errno = EINVAL; return NULL; }
    return _pm_memalign(align, size);
}

/* glibc's memalign rounds a non-power-of-two alignment up to the next power of two. These take the
 * caller's return address from the exported function they are inlined into. */
PM_INLINE void *memalign_from(size_t align, size_t size, void *ra) {
    if (align > ((size_t)1 << 62)) { errno = EINVAL; return NULL; }
    if (align == 0) align = 1;                        /* glibc: memalign(0, n) is malloc(n) */
    while (!is_pow2(align)) align = (align | (align - 1)) + 1;
    return _pm_memalign_at(align, size, ra);
}

PM_INLINE void *pvalloc_from(size_t size, void *ra) {
    size_t page = _pm_os_page_size();
    if (size > SIZE_MAX - page) { errno = ENOMEM; return NULL; }
    return _pm_memalign_at(page, (size + page - 1) & ~(page - 1), ra);
}

PM_EXPORT void *memalign(size_t align, size_t size) { return memalign_from(align, size, PM_CALLER); }
PM_EXPORT void *valloc(size_t size) { return _pm_memalign(_pm_os_page_size(), size); }
PM_EXPORT void *pvalloc(size_t size) { return pvalloc_from(size, PM_CALLER); }

/* A sized free names the size the program thinks the block has. We need no hint, but we can
 * check it: a block smaller than the size is a type confusion or a free of the wrong pointer.
 * One compare against the size class the free looks up anyway. */
PM_NOINLINE static void sized_free_mismatch(const char *func, void *p, size_t size) {
    if (_pm_is_zero_ptr(p) ? size > 0 : size > _pm_usable_size(p))
        _pm_invalid_free(func, p, "sized free of more bytes than the block holds");
}

PM_INLINE void check_size(const char *func, void *p, size_t size) {
    if (PM_LIKELY(_pm_is_arena_ptr(p)) && PM_UNLIKELY(size > _pm_pool_of(p)->block_size))
        sized_free_mismatch(func, p, size);
}

/* C23 sized frees. */
PM_EXPORT void free_sized(void *p, size_t size) { check_size("free_sized", p, size); _pm_free(p); }
PM_EXPORT void free_aligned_sized(void *p, size_t align, size_t size) {
    (void)align;
    check_size("free_aligned_sized", p, size);
    _pm_free(p);
}

/* C++'s sized operator delete and delete[] (operator delete(void *, std::size_t)), checked the
 * same way. The block is then handed to the unsized operator delete, not to free: a program that
 * replaces operator new and the unsized delete but not the sized one (libstdc++'s sized delete
 * calls the unsized) keeps getting its own. Without libstdc++ nothing calls these. */
void _ZdlPvm(void *p, size_t size);
void _ZdaPvm(void *p, size_t size);
PM_EXPORT void _ZdlPvm(void *p, size_t size) {
    check_size("operator delete", p, size);
    if (_ZdlPv) _ZdlPv(p); else _pm_free(p);
}
PM_EXPORT void _ZdaPvm(void *p, size_t size) {
    check_size("operator delete[]", p, size);
    if (_ZdaPv) _ZdaPv(p); else _pm_free(p);
}

/* glibc's internal aliases, which some programs and libraries call directly. */
PM_EXPORT void *__libc_malloc(size_t size) { return _pm_malloc(size); }
PM_EXPORT void  __libc_free(void *p) { _pm_free(p); }
PM_EXPORT void *__libc_calloc(size_t n, size_t size) { return _pm_calloc(n, size); }
PM_EXPORT void *__libc_realloc(void *p, size_t size) { return _pm_realloc(p, size); }
PM_EXPORT void *__libc_memalign(size_t align, size_t size) { return memalign_from(align, size, PM_CALLER); }
PM_EXPORT void *__libc_valloc(size_t size) { return _pm_memalign(_pm_os_page_size(), size); }
PM_EXPORT void *__libc_pvalloc(size_t size) { return pvalloc_from(size, PM_CALLER); }

/* ---- glibc's malloc.h extensions, answered from our own statistics ---- */

PM_EXPORT int malloc_trim(size_t pad) {
    (void)pad;
    return pm_trim() > 0;
}

PM_EXPORT struct mallinfo2 mallinfo2(void) {
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    mi.arena = s.arenas * PM_ARENA_SIZE;          /* bytes in arenas (non-huge) */
    mi.ordblks = s.arenas;
    mi.hblks = s.huge_count;
    mi.hblkhd = s.huge_mapped;
    mi.uordblks = s.in_use + s.huge_requested;
    mi.fordblks = s.free_in_pools + s.free_slots + s.huge_cached;
    mi.keepcost = s.free_slots + s.huge_cached;   /* what malloc_trim could release at most */
    return mi;
}

static struct mallinfo mallinfo_from(struct mallinfo2 m2) {
    struct mallinfo mi;
    mi.arena = (int)m2.arena; mi.ordblks = (int)m2.ordblks; mi.smblks = 0; mi.hblks = (int)m2.hblks;
    mi.hblkhd = (int)m2.hblkhd; mi.usmblks = 0; mi.fsmblks = 0; mi.uordblks = (int)m2.uordblks;
    mi.fordblks = (int)m2.fordblks; mi.keepcost = (int)m2.keepcost;
    return mi;
}

/* glibc marks mallinfo deprecated (its int fields overflow); programs still call it. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
PM_EXPORT struct mallinfo mallinfo(void) { return mallinfo_from(mallinfo2()); }

PM_EXPORT void malloc_stats(void) { _pm_stats_print(2); }

/* Accepted and ignored: glibc's tunables (M_MMAP_THRESHOLD, M_ARENA_MAX, ...) describe glibc's
 * design, not ours. Returns 1 (success), as glibc does for a valid parameter. */
PM_EXPORT int mallopt(int param, int value) { (void)param; (void)value; return 1; }

PM_EXPORT struct mallinfo __libc_mallinfo(void) { return mallinfo_from(mallinfo2()); }
PM_EXPORT int __libc_mallopt(int param, int value) { return mallopt(param, value); }

PM_EXPORT int malloc_info(int options, FILE *fp) {
    if (options != 0 || fp == NULL) { errno = EINVAL; return -1; }
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    fprintf(fp, "<malloc version=\"poolmalloc-%d.%d\">\n", POOLMALLOC_VERSION_MAJOR, POOLMALLOC_VERSION_MINOR);
    fprintf(fp, "<total type=\"mapped\" size=\"%zu\"/>\n<total type=\"in_use\" size=\"%zu\"/>\n"
                "<total type=\"free\" size=\"%zu\"/>\n<total type=\"huge\" count=\"%zu\" size=\"%zu\"/>\n"
                "</malloc>\n", s.mapped, s.in_use + s.huge_requested, s.free_in_pools, s.huge_count, s.huge_mapped);
    return 0;
}

#endif /* PM_NO_OVERRIDE */

/* ---- the pm_ API ---- */

PM_EXPORT void *pm_malloc(size_t size) { return _pm_malloc(size); }
PM_EXPORT void *pm_calloc(size_t n, size_t size) { return _pm_calloc(n, size); }
PM_EXPORT void *pm_realloc(void *p, size_t size) { return _pm_realloc(p, size); }
PM_EXPORT void  pm_free(void *p) { _pm_free(p); }
PM_EXPORT void *pm_aligned_alloc(size_t align, size_t size) {
    if (!is_pow2(align)) { errno = EINVAL; return NULL; }
    return _pm_memalign(align, size);
}
PM_EXPORT size_t pm_usable_size(const void *p) { return _pm_usable_size(p); }
/* Only a pointer we handed out: a pointer into one of our blocks (an allocator in front of ours
 * handed out block + 16, say: CPython's debug hooks) is someone else's. The arena map answers for
 * pooled, zero-size and guarded memory with one load; anything else is ours only if the huge
 * registry has it. */
PM_EXPORT int pm_owns(const void *p) {
    if (p == NULL) return 0;
    if (_pm_is_zero_ptr(p)) return _pm_zero_owns(p);
    if (_pm_is_guard_ptr(p)) return 1;
    if (_pm_is_arena_ptr(p)) {
        pm_pool_t *pool = _pm_pool_of(p);
        if (pool == NULL) return 0;
        const uint8_t *block = (const uint8_t *)p - (_pm_hardened ? PM_HARD_DATA_AT(pool->block_size) : 0);
        return _pm_pool_is_block_start(pool, block);
    }
    return _pm_huge_usable(p, NULL) != 0;
}
PM_EXPORT void  pm_stats_print(int fd) { _pm_stats_print(fd); }

PM_EXPORT size_t pm_trim(void) {
    _pm_init();
    _pm_heap_collect_all();
    return _pm_arena_trim() + _pm_huge_trim();
}
