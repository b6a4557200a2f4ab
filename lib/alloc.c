/* alloc.c: the slow paths behind alloc.h, and everything built on malloc and free: calloc,
 * realloc, aligned allocation, usable size, and the reports of invalid and double frees. */
#define _GNU_SOURCE
#include "alloc.h"

#include <errno.h>
#include <string.h>

uintptr_t _pm_free_key;

static void *alloc_class(unsigned c) {
    pm_heap_t *heap = _pm_heap_tls;
    pm_pool_t *pool = heap->avail[c];
    pm_block_t *block = pool->free;
    if (PM_LIKELY(block != NULL)) {
        pool->free = block->next;
        block->mark = 0;
        _pm_pool_used_add(pool, 1);
        return block;
    }
    return _pm_heap_alloc_slow(heap, c);
}

void *_pm_malloc_slow(size_t size) {
    if (size <= PM_LARGE_MAX) return _pm_heap_alloc_slow(_pm_heap_tls, _pm_class_of(size));
    _pm_init();
    return _pm_huge_alloc(size, PM_ALIGN, false);
}

void _pm_invalid_free(const char *func, const void *p, const char *why) {
    _pm_fatal("%s(): %s: %p", func, why, p);
}

/* Check a pointer into one of our arenas before it is freed or resized. */
static pm_pool_t *checked_pool(const char *func, void *p) {
    pm_pool_t *pool = _pm_pool_of(p);
    if (!_pm_pool_is_block_start(pool, p))
        _pm_invalid_free(func, p, "invalid pointer (inside a poolmalloc arena but not the start of a block)");
    if (((pm_block_t *)p)->mark == (_pm_free_key ^ (uintptr_t)p))
        _pm_invalid_free(func, p, "double free (block is already free)");
    return pool;
}

void _pm_free_slow(void *p) {
    if (p == NULL) return;
    int saved = errno;
    if (_pm_is_arena_ptr(p)) {
        pm_pool_t *pool = checked_pool("free", p);
        pm_block_t *block = p;
        block->mark = _pm_free_key ^ (uintptr_t)p;
        _pm_heap_free_remote(pool, block);
    } else if (!_pm_huge_free(p)) {
        _pm_invalid_free("free", p, "invalid pointer (not allocated by poolmalloc)");
    }
    errno = saved;
}

void *_pm_calloc(size_t n, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    if (total > PM_LARGE_MAX) {
        _pm_init();
        return _pm_huge_alloc(total, PM_ALIGN, true);   /* fresh mapping: already zero */
    }
    void *p = _pm_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

size_t _pm_usable_size(const void *p) {
    if (p == NULL) return 0;
    if (_pm_is_arena_ptr(p)) return checked_pool("malloc_usable_size", (void *)p)->block_size;
    size_t n = _pm_huge_usable(p);
    if (n == 0) _pm_invalid_free("malloc_usable_size", p, "invalid pointer (not allocated by poolmalloc)");
    return n;
}

/* glibc's realloc: NULL p is malloc; size 0 frees and returns NULL; on failure p is untouched. A
 * block stays where it is while the new size is in its class, or shrinks by less than half. */
void *_pm_realloc(void *p, size_t size) {
    if (p == NULL) return _pm_malloc(size);
    if (size == 0) { _pm_free(p); return NULL; }
    size_t old;
    if (_pm_is_arena_ptr(p)) {
        old = checked_pool("realloc", p)->block_size;
        if (size <= old && (size > old / 2 || old <= PM_SMALL_MAX / 2)) return p;
    } else {
        if (size > PM_LARGE_MAX) {
            bool is_huge;
            void *q = _pm_huge_realloc(p, size, &is_huge);
            if (is_huge) return q;
        }
        old = _pm_huge_usable(p);
        if (old == 0) _pm_invalid_free("realloc", p, "invalid pointer (not allocated by poolmalloc)");
    }
    void *q = _pm_malloc(size);
    if (q == NULL) return NULL;
    memcpy(q, p, old < size ? old : size);
    _pm_free(p);
    return q;
}

/* Blocks of a class whose size is a multiple of `align` are aligned to it (size_class.c), so an
 * aligned request up to 64 KiB alignment is an ordinary allocation from the first such class. */
void *_pm_memalign(size_t align, size_t size) {
    if (align <= PM_ALIGN) return _pm_malloc(size);
    _pm_init();
    if (size < align) size = align;
    if (align <= PM_POOL_ALIGN_MAX && size <= PM_LARGE_MAX) {
        for (unsigned c = _pm_class_of(size); c < PM_NCLASSES; c++)
            if (_pm_classes[c].size % align == 0) return alloc_class(c);
    }
    return _pm_huge_alloc(size, align, false);
}
