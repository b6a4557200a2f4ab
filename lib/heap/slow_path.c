/* slow_path.c: where malloc_fast.h and free_fast.h go when they cannot finish: the first call of
 * a thread, an empty free list, a sample or guard point, size 0, huge sizes, another thread's
 * block, a full foreign cache, a guarded block; and the reports of invalid and double frees. The
 * sampler's hook (heap.h) is called from here and nowhere else. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

_Atomic uint32_t _pm_sample_epoch = 1;
static const pm_sampler_t *_Atomic sampler;   /* lens/sample.c's, once start-up registers it */

void _pm_heap_resample(void) { atomic_fetch_add(&_pm_sample_epoch, 1); }

void _pm_heap_set_sampler(const pm_sampler_t *s) {
    _pm_heap_set_describer(s->describe);
    atomic_store_explicit(&sampler, s, memory_order_release);
    _pm_heap_resample();
}

/* The countdown ran out, or the epoch moved: ask the sampler, if there is one. */
static unsigned sample_arm(pm_heap_t *heap, size_t size) {
    const pm_sampler_t *s = atomic_load_explicit(&sampler, memory_order_acquire);
    if (s) return s->arm(&heap->sample, size);
    heap->sample.epoch = atomic_load_explicit(&_pm_sample_epoch, memory_order_relaxed);
    heap->sample.left = PM_SAMPLE_IDLE;
    return 0;
}

unsigned _pm_sample_stack_hook(void **frames, unsigned max, void *ra) {
    const pm_sampler_t *s = atomic_load_explicit(&sampler, memory_order_acquire);
    return s ? s->stack(frames, max, ra) : 0;
}

/* p carries a sampled mark (its pool's bitmap or the huge registry): only a sampler sets one. */
void _pm_sample_forget_hook(void *p) {
    atomic_load_explicit(&sampler, memory_order_acquire)->forget(p);
}

/* Every allocation that the fast path does not finish comes through here: the first call of a
 * thread, an empty free list, a sampled allocation, a huge or aligned request. `c` is the class,
 * or PM_NCLASSES for a huge block. `counted`: the fast path already counted size for the sampler.
 * `ra` is the caller's return address, where the sampled stack starts. */
void *_pm_allocate(size_t size, unsigned c, size_t align, bool counted, bool zero, void *ra) {
    _pm_heap_start();
    pm_heap_t *heap = _pm_heap_get();
    unsigned armed = 0;
    if (heap) {
        if (!counted) heap->sample.left -= size < ((size_t)1 << 62) ? (int64_t)size : (int64_t)1 << 62;
        if (heap->sample.left < 0 || heap->sample.epoch != atomic_load_explicit(&_pm_sample_epoch, memory_order_relaxed))
            armed = sample_arm(heap, size);
    }
    bool sampled = armed & PM_ARM_SAMPLE;
    void *p;
    if ((armed & PM_ARM_GUARD) && (p = _pm_guard_alloc(size, align, ra)) != NULL) {   /* NULL: as usual */
        if (zero) memset(p, 0, size);          /* a reopened slot holds its last block's bytes */
        return p;
    }
    if (PM_UNLIKELY(_pm_hardened)) {
        p = _pm_hard_alloc(heap, size, align, zero);     /* its own class: header and canaries */
    } else if (c < PM_NCLASSES) {
        if (heap) p = _pm_heap_alloc(heap, c, !sampled);   /* the sampler marks the block's pool: ours */
        else if (_pm_thread_is_dead()) p = _pm_orphan_alloc(c);
        else { errno = ENOMEM; p = NULL; }
    } else {
        p = _pm_huge_alloc(size, align, zero);
    }
    if (p && sampled) atomic_load_explicit(&sampler, memory_order_relaxed)->record(&heap->sample, p, size, ra);
    _pm_purge_start();
    return p;
}

void *_pm_malloc_slow(size_t size, bool counted, void *ra) {
    if (size == 0) return _pm_zero_alloc();
    if (_pm_hardened) return _pm_hard_malloc(size, ra);   /* the fast path never counts then */
    unsigned c = size <= PM_LARGE_MAX ? _pm_class_of(size) : PM_NCLASSES;
    return _pm_allocate(size, c, PM_ALIGN, counted, false, ra);
}

void _pm_invalid_free(const char *func, const void *p, const char *why) {
    _pm_heap_fatal(p, "%s(): %s: %p", func, why, p);
}

/* Check a pointer into one of our arenas before it is freed or resized. */
pm_pool_t *_pm_checked_pool(const char *func, void *p) {
    pm_pool_t *pool = _pm_pool_of(p);
    if (!_pm_pool_is_block_start(pool, p))
        _pm_invalid_free(func, p, "invalid pointer (inside a poolmalloc arena but not the start of a block)");
    if (((pm_block_t *)p)->mark == _pm_free_mark(p))
        _pm_invalid_free(func, p, "double free (block is already free)");
    return pool;
}

/* A sampled block leaves the sampler's table before anyone can allocate it again. */
void _pm_forget_if_sampled(pm_pool_t *pool, void *p) {
    if ((__atomic_load_n(&pool->flags, __ATOMIC_RELAXED) & PM_POOL_SAMPLED) && _pm_pool_sample_unmark(pool, p))
        _pm_sample_forget_hook(p);
}

static void free_huge(const char *func, void *p) {
    bool sampled = false;
    if (_pm_huge_usable(p, &sampled) == 0)
        _pm_invalid_free(func, p, "invalid pointer (not allocated by poolmalloc)");
    if (sampled) _pm_sample_forget_hook(p);
    _pm_huge_free(p);
}

/* A free the fast path did not finish: another thread's block, a huge block, NULL or an error. */
void _pm_free_slow(void *p) {
    if (p == NULL) return;
    int saved = errno;
    if (_pm_is_zero_ptr(p)) {
        _pm_zero_free("free", p);
    } else if (_pm_is_guard_ptr(p)) {                 /* before the arena test: the map says nonzero */
        _pm_guard_free("free", p);
    } else if (_pm_hardened && _pm_is_arena_ptr(p)) {
        _pm_hard_free("free", _pm_pool_of(p), p);
        _pm_purge_start();                         /* the quarantine may have emptied pools */
    } else if (_pm_is_arena_ptr(p)) {
        pm_pool_t *pool = _pm_checked_pool("free", p);
        _pm_forget_if_sampled(pool, p);
        pm_block_t *block = p;
        block->mark = _pm_free_mark(p);
        _pm_heap_free_remote(pool, block);
    } else {
        free_huge("free", p);
        _pm_purge_start();
    }
    errno = saved;
}

/* A local free into a pool with a flag set, or that just became empty. */
void _pm_free_local_slow(pm_heap_t *heap, pm_pool_t *pool, void *block) {
    if (pool->flags & PM_POOL_SAMPLED) _pm_forget_if_sampled(pool, block);
    _pm_heap_free_slow(heap, pool, true);
    _pm_purge_start();
}

