/* realloc.c: the calls built on malloc and free: calloc, realloc, aligned allocation and the
 * usable size. Each takes the caller's return address, where a sampled stack starts. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

void *_pm_calloc_at(size_t n, size_t size, void *ra) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    if (total > PM_LARGE_MAX || (_pm_hardened && total > 0))   /* a fresh mapping, or hardened: zero where needed */
        return _pm_allocate(total, PM_NCLASSES, PM_ALIGN, false, true, ra);
    void *p = _pm_malloc_at(total, ra);
    if (p) memset(p, 0, total);
    return p;
}

size_t _pm_usable_size(const void *p) {
    if (p == NULL) return 0;
    if (_pm_is_zero_ptr(p)) {
        if (!_pm_zero_owns(p)) _pm_invalid_free("malloc_usable_size", p, "invalid pointer (not a live zero-size block)");
        return 0;
    }
    if (_pm_is_guard_ptr(p)) return _pm_guard_usable("malloc_usable_size", p);
    if (_pm_is_arena_ptr(p))
        return _pm_hardened ? _pm_hard_usable("malloc_usable_size", p)
                            : _pm_checked_pool("malloc_usable_size", (void *)p)->block_size;
    size_t n = _pm_huge_usable(p, NULL);
    if (n == 0) _pm_invalid_free("malloc_usable_size", p, "invalid pointer (not allocated by poolmalloc)");
    return n;
}

/* glibc's realloc: NULL p is malloc; size 0 frees and returns NULL; on failure p is untouched. A
 * pooled block stays where it is while the new size fits and would shave less than a quarter off
 * it, pymalloc's rule; a bigger shrink moves it to its own class. CPython's string builders
 * allocate about 100 bytes more than they keep and shrink at the end: kept in place (as until
 * 2026-12-02 for every block up to 256 bytes), 800,000 short strings took 145 MiB, not 63. */
void *_pm_realloc_at(void *p, size_t size, void *ra) {
    if (p == NULL) return _pm_malloc_at(size, ra);
    if (size == 0) { _pm_free(p); return NULL; }
    size_t old;
    if (_pm_is_zero_ptr(p)) {
        if (!_pm_zero_owns(p)) _pm_invalid_free("realloc", p, "invalid pointer (not a live zero-size block)");
        old = 0;
    } else if (_pm_is_guard_ptr(p)) {
        old = _pm_guard_usable("realloc", p);        /* always moves out of the slot */
    } else if (_pm_hardened && _pm_is_arena_ptr(p)) {
        return _pm_hard_realloc(p, size, ra);
    } else if (_pm_is_arena_ptr(p)) {
        old = _pm_checked_pool("realloc", p)->block_size;
        if (size <= old && size > old - old / 4) return p;   /* shaves less than a quarter off */
    } else {
        bool sampled = false;
        old = _pm_huge_usable(p, &sampled);
        if (old == 0) _pm_invalid_free("realloc", p, "invalid pointer (not allocated by poolmalloc)");
        if (size > PM_LARGE_MAX) {
            bool handled;
            if (sampled) _pm_sample_forget_hook(p);      /* its record would name the old size */
            void *q = _pm_huge_realloc(p, size, &handled);
            _pm_purge_start();                       /* a shrink or a move cached a run */
            if (handled) return q;
        }
    }
    void *q = _pm_malloc_at(size, ra);
    if (q == NULL) return NULL;
    memcpy(q, p, old < size ? old : size);
    _pm_free(p);
    return q;
}

/* Blocks of a class whose size is a multiple of `align` are aligned to it (size_class.c), so an
 * aligned request up to PM_POOL_ALIGN_MAX (16 KiB) alignment is an ordinary allocation from the first such class. */
void *_pm_memalign_at(size_t align, size_t size, void *ra) {
    if (align <= PM_ALIGN) {
        /* A multiple of align: a guarded block (guard.c) is aligned to its size's largest power
         * of two, and every other block to 16 anyway. */
        size_t rounded;
        if (__builtin_add_overflow(size, align - 1, &rounded)) { errno = ENOMEM; return NULL; }
        return _pm_malloc_at(rounded & ~(align - 1), ra);
    }
    _pm_heap_start();
    if (size < align && !_pm_hardened) size = align;   /* hardened: class_for aligns any size */
    if (align <= PM_POOL_ALIGN_MAX && size <= PM_LARGE_MAX) {
        for (unsigned c = _pm_class_of(size); c < PM_NCLASSES; c++)
            if (_pm_classes[c].size % align == 0) return _pm_allocate(size, c, align, false, false, ra);
    }
    return _pm_allocate(size, PM_NCLASSES, align, false, false, ra);
}
