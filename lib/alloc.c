/* alloc.c: the slow paths behind alloc.h, and everything built on malloc and free: calloc,
 * realloc, aligned allocation, usable size, and the reports of invalid and double frees. */
#define _GNU_SOURCE
#include "alloc.h"

#include <errno.h>
#include <string.h>

uintptr_t _pm_free_key;

/* Every allocation that the fast path does not finish comes through here: the first call of a
 * thread, an empty free list, a sampled allocation, a huge or aligned request. `c` is the class,
 * or PM_NCLASSES for a huge block. `counted`: the fast path already counted size for the sampler.
 * `ra` is the caller's return address, where the sampled stack starts. */
static void *allocate(size_t size, unsigned c, size_t align, bool counted, bool zero, void *ra) {
    _pm_init();
    pm_heap_t *heap = _pm_heap_get();
    bool sampled = false;
    if (heap) {
        if (!counted) heap->sample_left -= size < ((size_t)1 << 62) ? (int64_t)size : (int64_t)1 << 62;
        if (heap->sample_left < 0 || heap->sample_epoch != atomic_load_explicit(&_pm_sample_epoch, memory_order_relaxed))
            sampled = _pm_sample_arm(heap, size);
    }
    void *p;
    if (c < PM_NCLASSES) {
        if (heap) p = _pm_heap_alloc(heap, c, !sampled);   /* the sampler marks the block's pool: ours */
        else if (_pm_thread_is_dead()) p = _pm_orphan_alloc(c);
        else { errno = ENOMEM; p = NULL; }
    } else {
        p = _pm_huge_alloc(size, align, zero);
    }
    if (p && sampled) _pm_sample_record(p, size, ra);
    _pm_purge_start();
    return p;
}

void *_pm_malloc_slow(size_t size, bool counted, void *ra) {
    unsigned c = size <= PM_LARGE_MAX ? _pm_class_of(size) : PM_NCLASSES;
    return allocate(size, c, PM_ALIGN, counted, false, ra);
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

/* A sampled block leaves the sampler's table before anyone can allocate it again. */
static void forget_if_sampled(pm_pool_t *pool, void *p) {
    if ((__atomic_load_n(&pool->flags, __ATOMIC_RELAXED) & PM_POOL_SAMPLED) && _pm_pool_sample_unmark(pool, p))
        _pm_sample_forget(p);
}

static void free_huge(const char *func, void *p) {
    bool sampled = false;
    if (_pm_huge_usable(p, &sampled) == 0)
        _pm_invalid_free(func, p, "invalid pointer (not allocated by poolmalloc)");
    if (sampled) _pm_sample_forget(p);
    _pm_huge_free(p);
}

/* A free the fast path did not finish: another thread's block, a huge block, NULL or an error. */
void _pm_free_slow(void *p) {
    if (p == NULL) return;
    int saved = errno;
    if (_pm_is_arena_ptr(p)) {
        pm_pool_t *pool = checked_pool("free", p);
        forget_if_sampled(pool, p);
        pm_block_t *block = p;
        block->mark = _pm_free_key ^ (uintptr_t)p;
        _pm_heap_free_remote(pool, block);
    } else {
        free_huge("free", p);
        _pm_purge_start();
    }
    errno = saved;
}

/* A local free into a pool with a flag set, or that just became empty. */
void _pm_free_local_slow(pm_heap_t *heap, pm_pool_t *pool, void *block) {
    if (pool->flags & PM_POOL_SAMPLED) forget_if_sampled(pool, block);
    _pm_heap_free_slow(heap, pool, true);
    _pm_purge_start();
}

void *_pm_calloc_at(size_t n, size_t size, void *ra) {
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) { errno = ENOMEM; return NULL; }
    if (total > PM_LARGE_MAX)     /* a fresh mapping: already zero */
        return allocate(total, PM_NCLASSES, PM_ALIGN, false, true, ra);
    void *p = _pm_malloc_at(total, ra);
    if (p) memset(p, 0, total);
    return p;
}

size_t _pm_usable_size(const void *p) {
    if (p == NULL) return 0;
    if (_pm_is_arena_ptr(p)) return checked_pool("malloc_usable_size", (void *)p)->block_size;
    size_t n = _pm_huge_usable(p, NULL);
    if (n == 0) _pm_invalid_free("malloc_usable_size", p, "invalid pointer (not allocated by poolmalloc)");
    return n;
}

/* glibc's realloc: NULL p is malloc; size 0 frees and returns NULL; on failure p is untouched. A
 * block stays where it is while the new size is in its class, or shrinks by less than half. */
void *_pm_realloc_at(void *p, size_t size, void *ra) {
    if (p == NULL) return _pm_malloc_at(size, ra);
    if (size == 0) { _pm_free(p); return NULL; }
    size_t old;
    if (_pm_is_arena_ptr(p)) {
        old = checked_pool("realloc", p)->block_size;
        if (size <= old && (size > old / 2 || old <= PM_SMALL_MAX / 2)) return p;
    } else {
        bool sampled = false;
        old = _pm_huge_usable(p, &sampled);
        if (old == 0) _pm_invalid_free("realloc", p, "invalid pointer (not allocated by poolmalloc)");
        if (size > PM_LARGE_MAX) {
            bool handled;
            if (sampled) _pm_sample_forget(p);      /* its record would name the old size */
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
    if (align <= PM_ALIGN) return _pm_malloc_at(size, ra);
    _pm_init();
    if (size < align) size = align;
    if (align <= PM_POOL_ALIGN_MAX && size <= PM_LARGE_MAX) {
        for (unsigned c = _pm_class_of(size); c < PM_NCLASSES; c++)
            if (_pm_classes[c].size % align == 0) return allocate(size, c, align, false, false, ra);
    }
    return allocate(size, PM_NCLASSES, align, false, false, ra);
}
