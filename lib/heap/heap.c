/* heap.c: per-thread heaps, the slow path of allocation, remote frees, and thread exit.
 *
 * Every thread allocates from its own heap with no lock and no atomic. A heap keeps, per size
 * class, a doubly linked list of its pools that may have free blocks; the first is the one the
 * fast path pops from. Pools that fill up leave the list (pool.c: "full") and come back when
 * blocks are freed into them, locally or through the delayed list. When the current pool runs
 * dry, blocks already freed into the class's other pools come before fresh pages
 * (switch_to_freed), and emptied big pools are kept as spares.
 *
 * Frees from other threads never touch the owner's lists: a small block goes into the freeing
 * thread's foreign cache (below), anything else onto the pool's atomic remote stack (or, for a
 * full pool, onto the heap's atomic `delayed` stack). The owner takes them back in its slow path.
 *
 * Thread exit: a pthread key destructor gives the heap's foreign cache back to the blocks' owners,
 * drains the heap, returns its empty pools and spares to the arenas, and pushes it on the
 * abandoned stack. The next thread that needs a heap adopts it whole, with its
 * partly used pools, so a program that creates and joins 100,000 threads reuses one heap. Heaps
 * are never unmapped: their number is bounded by the peak number of live threads.
 *
 * A thread that allocates after its destructor ran (other destructors may) uses the orphan heap,
 * under a lock, so that it does not leak a heap per thread.
 *
 * fork(): the child keeps only the forking thread. Heaps of the other threads may have been
 * mid-update when the fork happened, so the child never adopts them ("retired"): their free blocks
 * stay unused in the child, which costs memory but can never hand out a block twice.
 *
 * Locks: the order is init.c's fork table; inside this file, orphan_lock before heap_lock. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

pm_heap_t _pm_heap_empty = {
    .avail = { [0 ... PM_NCLASSES] = &_pm_pool_empty },
    .lists = { [0 ... PM_NCLASSES - 1] = &_pm_pool_empty },
    .is_static = true,                      /* foreign caches of capacity 0: never used */
};
__thread pm_heap_t *_pm_heap_tls __attribute__((tls_model("initial-exec"))) = &_pm_heap_empty;
__thread pm_heap_t *_pm_heap_own __attribute__((tls_model("initial-exec"))) = &_pm_heap_empty;
#define tls_heap _pm_heap_own
static __thread bool tls_dead __attribute__((tls_model("initial-exec")));

static pthread_mutex_t heap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t heap_key;
static pm_heap_t *all_heaps, *abandoned_heaps, *orphan_heap;
static uint8_t *slab_next, *slab_end;               /* heap structs come from here */
static size_t nheaps, nabandoned;

#define HEAP_SLAB_SIZE (64 * PM_KIB)

/* PM_DEBUG: the heap as a slow path leaves it (util.h); a macro, so the report names the caller. */
#define debug_check(heap, c) do {                                                           \
        PM_DEBUG_CHECK(1, "a heap class after the slow path", _pm_heap_check_class((heap), (c))); \
        PM_DEBUG_CHECK(2, "a heap after the slow path", _pm_heap_check(heap));                \
    } while (0)

/* ---- the per-class pool lists ----
 * HEAD(heap, c) is class c's list; its first pool is the "current" one, the pool the fast path
 * pops from (heap->avail), unless the class's foreign cache is serving (below). The heap holds
 * one count in the `used` of its current pool when that pool is a pool of at most 64 KiB
 * (pool->held). So a free that returns the current pool's last block does
 * not leave the fast path (its `used` stays at 1), and a loop that allocates and frees one block
 * never takes the slow path. Only pools up to 64 KiB are held (PM_HOLD_MAX_SLOTS): a bigger one
 * goes back to its arena as soon as it empties, since keeping up to 1 MiB idle per class would
 * cost too much memory. Statistics and the pool invariant subtract `held`. */

#define HEAD PM_HEAP_POOLS

static void set_held(pm_pool_t *pool, uint8_t held) {
    if (pool == &_pm_pool_empty || pool->held == held) return;
    _pm_pool_used_add(pool, held ? 1u : (uint32_t)-1);
    __atomic_store_n(&pool->held, held, __ATOMIC_RELAXED);
}

/* Is the fast path popping class c from the heap's foreign cache? */
static bool foreign_serving(const pm_heap_t *heap, unsigned c) {
    return c < PM_FOREIGN_CLASSES && heap->avail[c + 1] == &heap->foreign[c];
}

/* Change class c's current pool. The old one loses its hold; it leaves the list (full or
 * released), or stays behind it dry, with blocks out (switch_to_freed), so it is not empty. */
static void set_head(pm_heap_t *heap, unsigned c, pm_pool_t *pool) {
    set_held(HEAD(heap, c), 0);
    HEAD(heap, c) = pool;
    if (!foreign_serving(heap, c)) heap->avail[c + 1] = pool;
    if (pool != &_pm_pool_empty && pool->slots <= PM_HOLD_MAX_SLOTS) set_held(pool, 1);
}

/* A pool coming back from full goes second: the current pool keeps serving (it may be an empty
 * one kept for reuse), and the returning pool is next in line. On an empty list it is first. */
static void list_insert(pm_heap_t *heap, pm_pool_t *pool) {
    pm_pool_t *first = HEAD(heap, pool->size_class);
    if (first == &_pm_pool_empty) {
        pool->prev = pool->next = NULL;
        heap->last[pool->size_class] = pool;
        set_head(heap, pool->size_class, pool);
        return;
    }
    pool->prev = first;
    pool->next = first->next;
    if (pool->next) pool->next->prev = pool;
    else heap->last[pool->size_class] = pool;
    first->next = pool;
}

/* At the end of the list (not on an empty one: the caller has a current pool). */
static void list_append(pm_heap_t *heap, pm_pool_t *pool) {
    pm_pool_t *last = heap->last[pool->size_class];
    pool->prev = last;
    pool->next = NULL;
    last->next = pool;
    heap->last[pool->size_class] = pool;
}

static void list_remove(pm_heap_t *heap, pm_pool_t *pool) {
    if (heap->last[pool->size_class] == pool) heap->last[pool->size_class] = pool->prev;
    if (pool->prev) pool->prev->next = pool->next;
    else set_head(heap, pool->size_class, pool->next ? pool->next : &_pm_pool_empty);
    if (pool->next) pool->next->prev = pool->prev;
    pool->next = pool->prev = NULL;
}

/* Spare pools. A pool bigger than PM_HOLD_MAX_SLOTS goes back to its arena as soon as it is
 * empty, and the classes that have such pools hold one to a few blocks per pool: a program that
 * frees and allocates blocks of 16 KiB to 1 MiB (mixed) took a pool from an arena, under the
 * arena lock, for about one allocation in four. So an emptied big pool is kept as its heap's
 * spare for the class, one per class, while all heaps' spares together stay under SPARE_BYTES,
 * and the next pool the class needs is the spare, with no lock and its free list already made.
 * Spares are given back at thread exit and by malloc_trim. */
#define SPARE_BYTES ((size_t)8 << 20)
static _Atomic size_t spare_bytes;

static bool keep_spare(pm_heap_t *heap, pm_pool_t *pool) {
    unsigned c = pool->size_class;
    size_t bytes = (size_t)pool->slots << PM_SLOT_SHIFT;
    if (pool->slots <= PM_HOLD_MAX_SLOTS || heap->spare[c] != NULL || pool->sampled_bits) return false;
    if (atomic_fetch_add_explicit(&spare_bytes, bytes, memory_order_relaxed) + bytes > SPARE_BYTES) {
        atomic_fetch_sub_explicit(&spare_bytes, bytes, memory_order_relaxed);
        return false;
    }
    heap->spare[c] = pool;
    return true;
}

static pm_pool_t *take_spare(pm_heap_t *heap, unsigned c) {
    pm_pool_t *pool = heap->spare[c];
    if (pool == NULL) return NULL;
    heap->spare[c] = NULL;
    atomic_fetch_sub_explicit(&spare_bytes, (size_t)pool->slots << PM_SLOT_SHIFT, memory_order_relaxed);
    return pool;
}

static void release_spares(pm_heap_t *heap) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        pm_pool_t *pool = take_spare(heap, c);
        if (pool) _pm_arena_pool_release(pool);
    }
}

/* An empty pool that is on no list goes to the arena, or (spare_ok) becomes the class's spare.
 * May madvise or munmap: keeps errno, since free() must. */
static void release_off_list(pm_heap_t *heap, pm_pool_t *pool, bool spare_ok) {
    PM_DEBUG_CHECK(1, "a pool that became empty", _pm_pool_check(pool));
    int saved = errno;
    if (!spare_ok || !keep_spare(heap, pool)) {
        if (pool->sampled_bits) _pm_pool_sample_release(pool);
        _pm_arena_pool_release(pool);
    }
    errno = saved;
}

/* An empty pool leaves its list: to the arena, or (spare_ok) as the class's spare. */
static void release_pool_to(pm_heap_t *heap, pm_pool_t *pool, bool spare_ok) {
    list_remove(heap, pool);
    release_off_list(heap, pool, spare_ok);
}

static void release_pool(pm_heap_t *heap, pm_pool_t *pool) { release_pool_to(heap, pool, true); }

/* After blocks went back to `pool` (locally, or from the delayed list): the SAMPLED flag goes once
 * no sampled block is left, a full pool returns to its list, and an empty pool returns to its
 * arena. A held current pool never gets here empty: the heap's hold keeps it at 1. */
static void heap_free_slow(pm_heap_t *heap, pm_pool_t *pool, bool local) {
    if (pool->flags & PM_POOL_SAMPLED) {
        if (atomic_load_explicit(&pool->sampled, memory_order_relaxed) == 0)
            _pm_pool_set_flags(pool, pool->flags & ~PM_POOL_SAMPLED);
    }
    /* A full pool comes back once an eighth of it is free again, not at its first free block:
     * otherwise a program that frees at random across many full pools (a big heap in turnover)
     * makes every allocation fill a pool again, and every fill is a CAS and two list updates.
     * The frees before that stay on the fast path (full_bias: PM_POOL_FULL). Remote frees
     * (local == false) bring it back at once: the NOTIFY bit they cleared will not tell the
     * owner again. A full pool whose blocks are all back goes straight to the arena or spare. */
    if ((pool->flags & PM_POOL_FULL) && _pm_pool_used(pool) == 0) {
        _pm_pool_clear_notify(pool);          /* every block is back: out of full, not via the list */
        release_off_list(heap, pool, true);   /* a full pool is on no list */
        return;
    }
    if ((pool->flags & PM_POOL_FULL) && (!local || (pool->capacity - _pm_pool_used(pool)) * 8 >= pool->capacity)) {
        _pm_pool_clear_notify(pool);
        list_insert(heap, pool);
    }
    if (_pm_pool_used(pool) == 0) release_pool(heap, pool);
}

void _pm_heap_free_slow(pm_heap_t *heap, pm_pool_t *pool, bool local) {
    unsigned c = pool->size_class;            /* the pool may be released */
    heap_free_slow(heap, pool, local);
    debug_check(heap, c);
}

/* Blocks freed by other threads into pools that were full. */
static void process_delayed(pm_heap_t *heap) {
    pm_block_t *b = atomic_exchange_explicit(&heap->delayed, NULL, memory_order_acquire);
    while (b) {
        pm_block_t *next = b->next;
        pm_pool_t *pool = _pm_pool_of(b);
        b->next = pool->free;
        pool->free = b;
        _pm_pool_used_add(pool, (uint32_t)-1);
        heap_free_slow(heap, pool, false);       /* the remote freer already forgot a sampled block */
        b = next;
    }
}

/* Take back everything other threads freed, and return empty pools to the arenas. At thread exit
 * and on adoption (keep_current) each class keeps its current pool if it is held, as a
 * live thread does, so that a program starting and ending threads by the thousand does not take
 * and give back pools for each one; malloc_trim returns them all. */
static void heap_collect(pm_heap_t *heap, bool keep_current) {
    process_delayed(heap);
    release_spares(heap);
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        pm_pool_t *pool = HEAD(heap, c);
        if (pool == &_pm_pool_empty) continue;
        while (pool) {
            pm_pool_t *next = pool->next;
            _pm_pool_drain_remote(pool);
            if (_pm_pool_used(pool) == pool->held && !(keep_current && pool->held)) release_pool_to(heap, pool, false);
            pool = next;
        }
    }
}

/* ---- the foreign cache ----
 * A block freed by a thread other than its pool's owner used to go back to the owner through
 * the pool's atomic remote stack, and stay unusable until the owner drained it. In a server
 * where objects die in another thread than the one that made them, every thread then holds,
 * besides its own live blocks, the ones the others freed for it: the heap peaks at about twice
 * the live bytes (docs/design.md, "Threads"), where an allocator whose thread caches take any
 * block reuses the memory in place. So the free fast path puts a small block of another
 * thread's pool into the freeing thread's foreign cache of its class, with no atomic, up to
 * FOREIGN_BYTES per class.
 * The cache is shaped as a pool (heap->foreign[c]: `free` is its list, `used` minus its count),
 * so when the class's current pool runs dry the slow path points avail[c + 1] at it and the
 * malloc fast path pops foreign blocks until it is empty; then avail goes back to the current
 * pool. Only a dry current pool hands over, so a thread's own cache lines come first: no false
 * sharing with the thread that made the blocks.
 * A cached block stays counted in its own pool's `used`, so that pool can never be released
 * while the block is in a cache; statistics move cached blocks from used to free. A full cache,
 * a sampled block (the sampler's bitmap is the owner's) and larger classes take the remote
 * path. Sampled allocations never take a foreign block: the sampler marks the block in its
 * pool, which only the owner may write. The caches go back to the owners at thread exit and in
 * malloc_trim. */

#define FOREIGN_BYTES ((uint32_t)32 << 10)

static void *foreign_pop(pm_heap_t *heap, unsigned c) {
    pm_pool_t *cache = &heap->foreign[c];
    pm_block_t *b = cache->free;
    cache->free = b->next;
    _pm_pool_used_add(cache, 1);
    b->mark = 0;
    heap->avail[c + 1] = cache;                /* the fast path serves the rest */
    return b;
}

/* The fast path emptied the cache: the current pool serves again. */
static void foreign_done(pm_heap_t *heap, unsigned c) {
    if (foreign_serving(heap, c) && heap->foreign[c].free == NULL) heap->avail[c + 1] = HEAD(heap, c);
}

static void foreign_flush(pm_heap_t *heap) {
    for (unsigned c = 0; c < PM_FOREIGN_CLASSES; c++) {
        pm_pool_t *cache = &heap->foreign[c];
        for (pm_block_t *b = cache->free, *next; b; b = next) {
            next = b->next;
            _pm_heap_free_remote(_pm_pool_of(b), b);   /* still marked free */
        }
        cache->free = NULL;
        __atomic_store_n(&cache->used, 0, __ATOMIC_RELAXED);
        heap->avail[c + 1] = HEAD(heap, c);
    }
}

void _pm_heap_foreign_counts(size_t counts[PM_FOREIGN_CLASSES]) {
    for (unsigned c = 0; c < PM_FOREIGN_CLASSES; c++) counts[c] = 0;
    pthread_mutex_lock(&heap_lock);
    for (pm_heap_t *h = all_heaps; h; h = h->all_next) {
        for (unsigned c = 0; c < PM_FOREIGN_CLASSES; c++) {
            int32_t used = (int32_t)__atomic_load_n(&h->foreign[c].used, __ATOMIC_RELAXED);
            if (used < 0) counts[c] += (size_t)-used;
        }
    }
    pthread_mutex_unlock(&heap_lock);
}

/* ---- allocation slow path ---- */

static void *pop(pm_pool_t *pool) {
    pm_block_t *b = pool->free;
    pool->free = b->next;
    b->mark = 0;
    _pm_pool_used_add(pool, 1);
    return b;
}

/* The current pool ran dry and nothing was freed into it remotely. Before its uncarved tail is
 * touched (fresh pages: RSS), look down the class's list for blocks already freed: drain each
 * pool's remote stack, give back a pool that turns out empty, and make the first pool with free
 * blocks current. The dry pool stays second, so the pools used last are tried first (the
 * thread's working set stays small), and a pool the walk finds dry goes to the end of the list,
 * so dry pools never pile up at the front to be walked again: each is passed over at most once
 * per trip through the list. Without this, blocks that other threads freed sit in the remote
 * stacks of pools behind the current one while the thread carves new pages, and the RSS grows
 * with the number of pools that have remote frees waiting. Returns whether a pool with free blocks is current now. */
#define SWITCH_SCAN 16

static bool switch_to_freed(pm_heap_t *heap, unsigned c) {
    pm_pool_t *head = HEAD(heap, c), *found = NULL, *stop = heap->last[c];
    unsigned n = 0;
    for (pm_pool_t *p = head->next, *next; p; p = next) {
        next = p->next;
        bool at_stop = p == stop;
        _pm_pool_drain_remote(p);
        if (_pm_pool_used(p) == 0) {
            release_pool(heap, p);                 /* not current: no hold */
        } else if (p->free) {
            found = p;
            break;
        } else if (!at_stop) {
            list_remove(heap, p);                  /* dry: to the back */
            list_append(heap, p);
        }
        if (at_stop || ++n == SWITCH_SCAN) break;
    }
    if (found == NULL) return false;
    list_remove(heap, found);                      /* not the head: the head keeps its hold */
    found->prev = NULL;
    found->next = head;
    head->prev = found;
    set_head(heap, c, found);                      /* the old head is second */
    return true;
}

/* The current pool's free list, else what other threads freed into it, else blocks freed into
 * the class's other pools, else the current pool's uncarved tail; a pool with none of these is
 * full and leaves the list; with no pool left, a new one. A dry current pool hands over to the
 * class's foreign cache, if it holds blocks, before anything else (foreign_ok: not sampled). */
static void *heap_alloc(pm_heap_t *heap, unsigned c, bool foreign_ok) {
    if (atomic_load_explicit(&heap->delayed, memory_order_relaxed)) process_delayed(heap);
    bool foreign = foreign_ok && c < PM_FOREIGN_CLASSES;
    if (c < PM_FOREIGN_CLASSES) foreign_done(heap, c);
    pm_pool_t *pool;
    while ((pool = HEAD(heap, c)) != &_pm_pool_empty) {
        if (pool->free || _pm_pool_drain_remote(pool) > 0) return pop(pool);
        if (foreign && heap->foreign[c].free) return foreign_pop(heap, c);
        if (pool->next && switch_to_freed(heap, c)) continue;
        if (_pm_pool_carve(pool)) return pop(pool);
        if (_pm_pool_mark_full(pool)) list_remove(heap, pool);
    }
    if (foreign && heap->foreign[c].free) return foreign_pop(heap, c);
    pool = take_spare(heap, c);              /* empty, its blocks on its free list or uncarved */
    if (pool == NULL) {
        pool = _pm_arena_pool_acquire(c);
        if (pool == NULL) { errno = ENOMEM; return NULL; }
        _pm_pool_init(pool, heap);
    }
    if (pool->free == NULL) _pm_pool_refill(pool);
    if (pool->capacity == 1 && pool->slots > PM_HOLD_MAX_SLOTS) {
        /* One block (classes above 56 KiB in pools above 64 KiB): the pool is full as soon as
         * the block is out, so it goes straight to full and never onto the list; its free
         * releases it straight from full (_pm_heap_free_slow). A class of these allocating and
         * freeing in turn (mixed) saves the list updates and a second slow-path pass. */
        void *b = pop(pool);
        if (_pm_pool_mark_full(pool)) return b;   /* nothing can be remote yet: always true */
        list_insert(heap, pool);
        return b;
    }
    list_insert(heap, pool);                 /* the list is empty: it becomes current */
    return pop(pool);
}

void *_pm_heap_alloc(pm_heap_t *heap, unsigned c, bool foreign_ok) {
    void *p = heap_alloc(heap, c, foreign_ok);
    debug_check(heap, c);
    return p;
}

static pm_heap_t *heap_new(void) {
    size_t size = (sizeof(pm_heap_t) + PM_CACHELINE - 1) & ~(size_t)(PM_CACHELINE - 1);
    if (slab_next == NULL || slab_next + size > slab_end) {
        uint8_t *slab = _pm_os_map(HEAP_SLAB_SIZE);
        if (slab == NULL) return NULL;
        slab_next = slab;
        slab_end = slab + HEAP_SLAB_SIZE;
    }
    pm_heap_t *heap = (pm_heap_t *)slab_next;
    slab_next += size;
    for (unsigned i = 0; i <= PM_NCLASSES; i++) heap->avail[i] = &_pm_pool_empty;
    for (unsigned c = 0; c < PM_NCLASSES; c++) heap->lists[c] = &_pm_pool_empty;
    for (unsigned c = 0; c < PM_FOREIGN_CLASSES; c++) heap->foreign[c].block_size = FOREIGN_BYTES / _pm_classes[c].size;
    heap->sample.left = 0;                  /* the first allocation arms the sampler */
    heap->sample.rng = _pm_os_random() ^ (uintptr_t)heap;
    heap->all_next = all_heaps;
    all_heaps = heap;
    nheaps++;
    return heap;
}

static pm_heap_t *heap_acquire(void) {
    pthread_mutex_lock(&heap_lock);
    pm_heap_t *heap = abandoned_heaps;
    if (heap) {
        abandoned_heaps = heap->abandoned_next;
        heap->abandoned_next = NULL;
        heap->abandoned = false;
        nabandoned--;
    } else {
        heap = heap_new();
    }
    pthread_mutex_unlock(&heap_lock);
    if (heap) heap_collect(heap, true);
    return heap;
}

pm_heap_t *_pm_heap_get(void) {
    pm_heap_t *heap = tls_heap;
    if (PM_LIKELY(!heap->is_static)) return heap;
    _pm_heap_start();
    if (tls_dead) return NULL;
    heap = heap_acquire();
    if (heap == NULL) return NULL;
    tls_heap = heap;
    if (!_pm_hardened) _pm_heap_tls = heap;    /* hardened: the fast paths stay closed */
    pthread_setspecific(heap_key, heap);
    return heap;
}

bool _pm_thread_is_dead(void) { return tls_dead; }

void *_pm_orphan_alloc(unsigned c) {
    pthread_mutex_lock(&orphan_lock);
    if (orphan_heap == NULL) {
        pthread_mutex_lock(&heap_lock);
        orphan_heap = heap_new();
        pthread_mutex_unlock(&heap_lock);
    }
    void *p = NULL;
    if (orphan_heap) {
        /* every free into the orphan's pools was remote: take them back first */
        for (pm_pool_t *pool = HEAD(orphan_heap, c); pool && pool != &_pm_pool_empty; pool = pool->next)
            _pm_pool_drain_remote(pool);
        p = _pm_heap_alloc(orphan_heap, c, false);
    }
    pthread_mutex_unlock(&orphan_lock);
    if (p == NULL) errno = ENOMEM;
    return p;
}

/* ---- remote free ---- */

void _pm_heap_free_remote(pm_pool_t *pool, pm_block_t *block) {
    uintptr_t old = atomic_load_explicit(&pool->remote, memory_order_relaxed), want;
    do {
        if (old & PM_REMOTE_NOTIFY) {
            want = old & ~PM_REMOTE_NOTIFY;           /* the block goes to the heap instead */
        } else {
            block->next = (pm_block_t *)old;
            want = (uintptr_t)block;
        }
    } while (!atomic_compare_exchange_weak_explicit(&pool->remote, &old, want,
                                                    memory_order_release, memory_order_relaxed));
    if (old & PM_REMOTE_NOTIFY) {
        pm_heap_t *heap = pool->heap;
        pm_block_t *head = atomic_load_explicit(&heap->delayed, memory_order_relaxed);
        do {
            block->next = head;
        } while (!atomic_compare_exchange_weak_explicit(&heap->delayed, &head, block,
                                                        memory_order_release, memory_order_relaxed));
    }
}

/* ---- the hardened quarantine ----
 * A FIFO through the blocks' first words (the second holds the free mark, so that a second free
 * is still a double free). Leaving it, a block must still be zero past its header, over its span
 * (PM_HARD_SPAN): anything else was written after the free. Then it is freed as the fast path would: onto its pool's free list
 * when the pool is this heap's, else onto the pool's remote stack. */

static void quarantine_release(pm_heap_t *heap, pm_block_t *block) {
    pm_pool_t *pool = _pm_pool_of(block);
    uint32_t size = pool->block_size;
    heap->quarantine = block->next;
    if (heap->quarantine == NULL) heap->quarantine_tail = NULL;
    heap->quarantine_bytes -= size;
#ifndef PM_HARD_NO_ZERO          /* cost measurement only (harden.c) */
    if (!_pm_bytes_zero((uint8_t *)block + sizeof *block, PM_HARD_SPAN(size) - sizeof *block)) {
        const uint8_t *b = (const uint8_t *)block;
        size_t at = sizeof *block;
        while (b[at] == 0) at++;
        const uint8_t *data = b + PM_HARD_DATA_AT(size);   /* the pointer the program had */
        bool before = b + at < data;
        _pm_heap_fatal(data, "free(): write after free: the block at %p (of a %u-byte class) was written after it was "
                       "freed, or overflowed far past its end while in use (at %c%zu: 0x%02x)", (const void *)data, size, before ? '-' : '+',
                       before ? (size_t)(data - (b + at)) : (size_t)(b + at - data), b[at]);
    }
#endif
    if (pool->heap == heap) {
        block->next = pool->free;
        pool->free = block;
        if (_pm_pool_used_dec_le0(pool)) _pm_heap_free_slow(heap, pool, true);
    } else {
        _pm_heap_free_remote(pool, block);
    }
}

void _pm_heap_quarantine(pm_heap_t *heap, pm_pool_t *pool, pm_block_t *block) {
    block->mark = _pm_free_mark(block);
    if (heap == NULL) {                       /* a thread past its exit: no quarantine */
        block->next = NULL;
        _pm_heap_free_remote(pool, block);
        return;
    }
    block->next = NULL;
    if (heap->quarantine_tail) heap->quarantine_tail->next = block;
    else heap->quarantine = block;
    heap->quarantine_tail = block;
    heap->quarantine_bytes += pool->block_size;
#ifdef PM_HARD_NO_QUARANTINE     /* cost measurement only (harden.c) */
    quarantine_release(heap, block);
#else
    while (heap->quarantine_bytes > PM_QUARANTINE_BYTES && heap->quarantine != block)
        quarantine_release(heap, heap->quarantine);
#endif
}

void _pm_heap_quarantine_flush(pm_heap_t *heap) {
    while (heap->quarantine) quarantine_release(heap, heap->quarantine);
}

/* ---- thread exit, trim, fork ---- */

static void heap_thread_done(void *value) {
    pm_heap_t *heap = value;
    if (heap == NULL || heap->is_static || heap != tls_heap) return;
    _pm_heap_quarantine_flush(heap);
    foreign_flush(heap);
    heap_collect(heap, true);
    _pm_heap_tls = tls_heap = &_pm_heap_empty;
    tls_dead = true;
    pthread_mutex_lock(&heap_lock);
    heap->abandoned = true;
    heap->abandoned_next = abandoned_heaps;
    abandoned_heaps = heap;
    nabandoned++;
    pthread_mutex_unlock(&heap_lock);
    _pm_purge_start();             /* the pools it returned wait for decay: no lock held here */
}

void _pm_heap_collect_all(void) {
    pm_heap_t *mine = tls_heap;
    if (!mine->is_static) {
        _pm_heap_quarantine_flush(mine);
        foreign_flush(mine);
        heap_collect(mine, false);
    }
    pthread_mutex_lock(&orphan_lock);
    if (orphan_heap) heap_collect(orphan_heap, false);
    pthread_mutex_unlock(&orphan_lock);
    pthread_mutex_lock(&heap_lock);
    for (pm_heap_t *h = abandoned_heaps; h; h = h->abandoned_next) heap_collect(h, false);
    pthread_mutex_unlock(&heap_lock);
}

_Atomic int _pm_heap_started;
bool _pm_hardened;
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;

void _pm_heap_start_slow(void) {
    pthread_mutex_lock(&start_lock);
    if (!atomic_load_explicit(&_pm_heap_started, memory_order_relaxed)) {
        _pm_classes_init();
        _pm_options_init();
        _pm_hardened = _pm_options.hardened;
        _pm_free_key = (uintptr_t)_pm_os_random() | 1;
        pthread_key_create(&heap_key, heap_thread_done);
        atomic_store_explicit(&_pm_heap_started, 1, memory_order_release);
    }
    pthread_mutex_unlock(&start_lock);
}

size_t _pm_heap_count(size_t *abandoned) {
    pthread_mutex_lock(&heap_lock);
    size_t n = nheaps;
    if (abandoned) *abandoned = nabandoned;
    pthread_mutex_unlock(&heap_lock);
    return n;
}

void _pm_heap_fork_prepare(void) {
    pthread_mutex_lock(&orphan_lock);
    pthread_mutex_lock(&heap_lock);
}

void _pm_heap_fork_parent(void) {
    pthread_mutex_unlock(&heap_lock);
    pthread_mutex_unlock(&orphan_lock);
}

void _pm_heap_fork_child(void) {
    pthread_mutex_init(&heap_lock, NULL);
    pthread_mutex_init(&orphan_lock, NULL);
    /* Only the forking thread survives. Its own heap and the abandoned ones are consistent; the
     * other threads' heaps are retired (see the top of this file). */
    pm_heap_t *mine = tls_heap;
    for (pm_heap_t *h = all_heaps; h; h = h->all_next) {
        if (h != mine && h != orphan_heap && !h->abandoned) h->abandoned = true;  /* retired */
    }
}

/* The list invariants of one class of a heap (owner thread only): the class's list is linked
 * both ways and ends at last[c]; its pools belong to this heap and class, are not full, and pass
 * _pm_pool_check; only the current pool is held, and it is held exactly when it is small enough;
 * the spare is empty and off every list; the fast path pops from the current pool or the foreign
 * cache; the foreign cache holds only other heaps' free blocks of the class, as many as it counts. */
const char *_pm_heap_check_class(pm_heap_t *heap, unsigned c) {
    const char *why;
    pm_pool_t *prev = NULL;
    for (pm_pool_t *p = HEAD(heap, c); p && p != &_pm_pool_empty; prev = p, p = p->next) {
        if (p->prev != prev) return "heap: a class list's prev link is wrong";
        if (p->heap != heap || p->size_class != c) return "heap: a listed pool belongs to another heap or class";
        if (p->flags & PM_POOL_FULL) return "heap: a full pool is on a class list";
        if (p->held != (prev == NULL && p->slots <= PM_HOLD_MAX_SLOTS))
            return "heap: a pool other than the current one is held, or the current one is not";
        if ((why = _pm_pool_check(p))) return why;
    }
    if (heap->last[c] != prev) return "heap: last[c] is not the class list's last pool";
    const pm_pool_t *sp = heap->spare[c];
    if (sp && (sp->heap != heap || sp->size_class != c || _pm_pool_used(sp) != 0 || sp->flags ||
               sp->slots <= PM_HOLD_MAX_SLOTS || sp->next || sp->prev))
        return "heap: the class's spare pool is in use, listed, flagged or small";
    if (sp && (why = _pm_pool_check(sp))) return why;
    if (heap->avail[c + 1] != HEAD(heap, c) && !foreign_serving(heap, c))
        return "heap: the fast path pops from neither the current pool nor the foreign cache";
    if (c < PM_FOREIGN_CLASSES) {
        uint32_t n = 0;
        for (const pm_block_t *b = heap->foreign[c].free; b; b = b->next) {
            const pm_pool_t *p = _pm_pool_of(b);
            if (++n > heap->foreign[c].block_size) return "heap: the foreign cache holds more than its bound";
            if (p->heap == heap || p->size_class != c || !_pm_pool_is_block_start(p, b) || b->mark != _pm_free_mark(b))
                return "heap: the foreign cache holds a block that is not another heap's free block of the class";
        }
        if ((uint32_t)-(int32_t)heap->foreign[c].used != n) return "heap: the foreign cache's count is wrong";
    }
    return NULL;
}

const char *_pm_heap_check(pm_heap_t *heap) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        const char *why = _pm_heap_check_class(heap, c);
        if (why) return why;
    }
    return NULL;
}
