/* heap/malloc_fast.h: the malloc fast path, inline, with one exit to the slow path.
 *
 * size -> index of the class's list by arithmetic (index 0, an always-empty pool, for size 0 and
 * sizes above 1 MiB), the thread's heap from initial-exec TLS, the class's current pool, pop its
 * free list. The sampler costs one subtraction and one branch: the heap counts down the bytes
 * left until the next sampled allocation (the sampler's hook, heap.h). Everything else (an empty
 * free list, a sample point, the first call of a thread, size 0, huge sizes) leaves through
 * _pm_malloc_slow (slow_path.c).
 *
 * The heap holds a count on its current pool (heap.c), so a loop that allocates and frees one
 * block never leaves the fast paths. What the pair costs, in instructions: docs/benchmarks.md.
 * Included at the end of heap.h, the only way in. */
#ifndef PM_MALLOC_FAST_H
#define PM_MALLOC_FAST_H

/* `ra` is the return address into the program: the sampler's stack starts there. The macros
 * below take it from the function they expand in, the exported entry point. */
#define PM_CALLER __builtin_return_address(0)
#define _pm_malloc(size) _pm_malloc_at((size), PM_CALLER)

PM_INLINE void *_pm_malloc_at(size_t size, void *ra) {
    pm_heap_t *heap = _pm_heap_tls;
    pm_pool_t *pool = heap->avail[_pm_avail_index(size)];
    pm_block_t *block = pool->free;
    if (PM_LIKELY(block != NULL)) {
#ifndef PM_NO_SAMPLE_COUNTDOWN   /* only for measuring what the countdown costs (bench/overhead.sh) */
        if (PM_UNLIKELY((heap->sample.left -= (int64_t)size) < 0)) return _pm_malloc_slow(size, true, ra);
#endif
        pm_block_t *next = block->next;
        pool->free = next;
        __builtin_prefetch(next, 1);   /* the next malloc reads it: start the miss now */
        block->mark = 0;
        _pm_pool_used_inc(pool);
        return block;
    }
    return _pm_malloc_slow(size, false, ra);
}

#endif
