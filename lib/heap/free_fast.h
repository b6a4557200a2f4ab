/* heap/free_fast.h: the free fast path, inline, with one exit to the slow path.
 *
 * One load of the arena map proves the pointer is in one of our arenas; the pool comes from the
 * arena header's slot map; the block must be on a block boundary (one multiply, no divide, no
 * bound check: _pm_pool_is_block_start) and must not carry the free mark (else: a double free).
 * These checks are always on: an invalid or double free aborts with a message instead of
 * corrupting the heap, which jemalloc, mimalloc and tcmalloc do not promise in their release
 * builds.
 *
 * A block of this thread's pool goes on the pool's free list; one signed test after the
 * decrement of `used` catches "now empty", "full pool back at an eighth free" and "holds a
 * sampled block" (PM_POOL_FULL, PM_POOL_SAMPLED). A small block of another thread's pool goes
 * into this thread's foreign cache of its class (heap.c), with no atomic, while the cache has
 * room. A huge block, NULL, a full cache, or anything suspicious leaves through _pm_free_slow
 * (slow_path.c), which frees it (remotely: the owner's atomic stack) or reports the error and
 * aborts. Included at the end of heap.h, the only way in. */
#ifndef PM_FREE_FAST_H
#define PM_FREE_FAST_H

PM_INLINE void _pm_free(void *p) {
    if (PM_LIKELY(_pm_is_arena_ptr(p))) {
        pm_pool_t *pool = _pm_pool_of(p);
        pm_block_t *block = p;
        pm_heap_t *heap = _pm_heap_tls;
        uintptr_t mark = _pm_free_mark(p);
        if (PM_LIKELY(_pm_pool_is_block_start(pool, p) && block->mark != mark)) {
            if (PM_LIKELY(pool->heap == heap)) {
                block->next = pool->free;
                block->mark = mark;
                pool->free = block;
                if (PM_UNLIKELY(_pm_pool_used_dec_le0(pool)))   /* empty, or flagged */
                    _pm_free_local_slow(heap, pool, block);
                return;
            }
            /* Another thread's block: into this thread's foreign cache of its class (heap.c),
             * unless that is full (or not kept: block_size 0) or the block is sampled. */
            unsigned c = pool->size_class;
            if (PM_LIKELY(c < PM_FOREIGN_CLASSES)) {
                pm_pool_t *cache = &heap->foreign[c];
                if (PM_LIKELY(-(int32_t)cache->used < (int32_t)cache->block_size &&
                              !(__atomic_load_n(&pool->flags, __ATOMIC_RELAXED) & PM_POOL_SAMPLED))) {
                    block->next = cache->free;
                    block->mark = mark;
                    cache->free = block;
                    _pm_pool_used_add(cache, (uint32_t)-1);
                    return;
                }
            }
        }
    }
    _pm_free_slow(p);
}

#endif
