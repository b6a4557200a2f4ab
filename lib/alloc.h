/* alloc.h: the malloc and free fast paths, inline, each with one exit to a noinline slow path.
 *
 * malloc: size -> index of the class's list by arithmetic (index 0, an always-empty pool, for
 * size 0 and sizes above 1 MiB), the thread's heap from initial-exec TLS, the class's current
 * pool, pop its free list. The sampler costs one subtraction and one branch: the heap counts
 * down the bytes left until the next sampled allocation. Everything else (an empty free list, a
 * sample, the first call of a thread, size 0, huge sizes) leaves through _pm_malloc_slow.
 *
 * free: one load of the arena map proves the pointer is in one of our arenas; the pool comes
 * from the arena header's slot map; the block must be on a block boundary (one multiply, no
 * divide, no bound check: see _pm_pool_is_block_start) and must not carry the free mark (else:
 * double free). A block of this thread's pool goes on the pool's free list; one signed test
 * after the decrement of `used` catches "now empty", "full pool back at an eighth free" and
 * "holds a sampled block" (PM_POOL_FULL, PM_POOL_SAMPLED). A small block of another thread's pool
 * goes into this thread's foreign cache of its class (heap.c), with no atomic, while the cache
 * has room. A huge block, NULL, a full cache, or anything suspicious leaves through
 * _pm_free_slow, which frees it (remotely: the owner's atomic stack) or reports the error and
 * aborts.
 *
 * The heap holds a count on its current pool (heap.c), so a free that empties the current pool
 * stays on the fast path: a loop that allocates and frees one block never leaves it.
 *
 * Cost (x86-64, gcc 12 -O2, objdump of the exported functions, counting `ret`): malloc 20
 * instructions, free 34 (`used` is updated with one memory add: _pm_pool_used_inc). Of free's,
 * 16 are checks that jemalloc, mimalloc and tcmalloc do not make in their release builds: the
 * arena map (6), the block boundary (6) and the double-free mark (4). A malloc+free pair in
 * bench/fastpath under callgrind: 64, which includes that loop's own 8 instructions and two PLT
 * jumps (jemalloc 77, tcmalloc 77, mimalloc 52 with no checks; docs/benchmarks.md).
 */
#ifndef PM_ALLOC_H
#define PM_ALLOC_H
#include "internal.h"

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
        if (PM_UNLIKELY((heap->sample_left -= (int64_t)size) < 0)) return _pm_malloc_slow(size, true, ra);
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

PM_INLINE void _pm_free(void *p) {
    if (PM_LIKELY(_pm_is_arena_ptr(p))) {
        pm_pool_t *pool = _pm_pool_of(p);
        pm_block_t *block = p;
        pm_heap_t *heap = _pm_heap_tls;
        uintptr_t mark = _pm_free_key ^ (uintptr_t)p;
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
