/* pool.c: one size class carved into blocks, pymalloc's pool made thread-safe.
 *
 * A pool's blocks are in exactly one of four places:
 *   handed out      counted by `used` (and so are blocks in other threads' foreign caches, heap.c)
 *   local free list `free`, touched only by the owner thread, no atomics
 *   remote list     `remote`, a lock-free stack that other threads push onto; the owner takes
 *                   the whole stack with one exchange when its local list runs dry (still `used`
 *                   until then)
 *   never carved    blocks at index >= `carved`; the bump pointer of pymalloc. They are carved
 *                   onto the free list a page at a time, so a fresh pool costs no memory up front.
 *
 * States: a pool is on its heap's list for its class while it may have free blocks. When its free
 * list, remote list and uncarved tail are all empty it is "full": it leaves the list and sets
 * PM_REMOTE_NOTIFY in `remote`. The first remote free after that clears the bit and puts its
 * block on the heap's delayed list instead, which tells the owner to put the pool back. Local
 * frees put it back once an eighth of it is free (full_bias, in internal.h). A pool whose `used`
 * reaches 0 is "empty" and goes back to its arena, or stays as its heap's current pool or spare
 * (heap.c decides). Free blocks carry a mark in their second word so that a
 * double free is detected at once.
 */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <stdarg.h>
#include <string.h>

pm_pool_t _pm_pool_empty;

/* How many bytes of fresh blocks to carve at once: a page's worth, but at least one block, so that
 * a new pool touches its pages one at a time as it fills, not all at once. */
#define CARVE_BYTES ((uint32_t)PM_PAGE_MIN)

/* The arena already wrote the geometry (class, block size, capacity, start, used = 0). */
void _pm_pool_init(pm_pool_t *pool, pm_heap_t *heap) {
    pool->free = NULL;
    pool->heap = heap;
    pool->divisor = UINT64_MAX / pool->block_size + 1;
    atomic_store_explicit(&pool->remote, 0, memory_order_relaxed);
    __atomic_store_n(&pool->full_bias, 0, __ATOMIC_RELAXED);
    _pm_pool_set_flags(pool, 0);
    pool->next = pool->prev = NULL;
    pool->carved = 0;
    __atomic_store_n(&pool->held, 0, __ATOMIC_RELAXED);
}

uintptr_t _pm_free_key;

bool _pm_pool_carve(pm_pool_t *pool) {
    uint32_t left = pool->capacity - pool->carved;
    if (left == 0) return false;
    uint32_t n = CARVE_BYTES / pool->block_size;
    if (n == 0) n = 1;
    if (n > left) n = left;
    uint8_t *first = pool->start + (size_t)pool->carved * pool->block_size;
#ifndef PM_HARD_NO_ZERO
    if (_pm_hardened) {                 /* free blocks are zero over their span (harden.c) */
        size_t span = PM_HARD_SPAN(pool->block_size);
        if (span == pool->block_size) explicit_bzero(first, (size_t)n * span);
        else for (uint32_t i = 0; i < n; i++) explicit_bzero(first + (size_t)i * pool->block_size, span);
    }
#endif
    pm_block_t *b = (pm_block_t *)first;
    for (uint32_t i = 0; i + 1 < n; i++) {
        pm_block_t *next = (pm_block_t *)((uint8_t *)b + pool->block_size);
        b->next = next;
        b->mark = _pm_free_mark(b);
        b = next;
    }
    b->next = pool->free;
    b->mark = _pm_free_mark(b);
    pool->free = (pm_block_t *)first;
    pool->carved += n;
    return true;
}

static bool (*_Atomic describer)(const void *p, pm_out_t *o);

void _pm_heap_set_describer(bool (*describe)(const void *p, pm_out_t *o)) {
    atomic_store_explicit(&describer, describe, memory_order_release);
}

_Noreturn void _pm_heap_fatal(const void *p, const char *fmt, ...) {
    char buf[1024];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf - 1, -1);
    va_list ap;
    va_start(ap, fmt);
    _pm_out_vprintf(&o, fmt, ap);
    va_end(ap);
    bool (*describe)(const void *, pm_out_t *) = atomic_load_explicit(&describer, memory_order_acquire);
    if (describe && !describe(p, &o) && _pm_is_arena_ptr(p) && !_pm_is_zero_ptr(p)) {
        /* p inside a live block: the pointer its program had, the block's start (hardened: its data) */
        const pm_pool_t *pool = _pm_pool_of(p);
        uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pool->start);
        if (off < (uint64_t)pool->capacity * pool->block_size) {
            const uint8_t *block = pool->start + (size_t)(((unsigned __int128)off * pool->divisor) >> 64) * pool->block_size;
            describe(_pm_hardened ? block + PM_HARD_DATA_AT(pool->block_size) : block, &o);
        }
    }
    buf[o.len < sizeof buf - 1 ? o.len : sizeof buf - 1] = 0;
    _pm_fatal("%s", buf);
}

/* 64 bytes a step in vector registers (SSE2, the x86-64 baseline), one test a step: the hardened
 * checks read every freed block's span with this (harden.c). */
typedef uint64_t __attribute__((may_alias)) word_t;
typedef uint64_t __attribute__((vector_size(16), may_alias, aligned(8))) vec_t;
bool _pm_bytes_zero(const void *p, size_t n) {
    const uint8_t *b = p;
    if (n >= 16) {
        const uint8_t *end = b + n;
        vec_t acc = {0, 0};
        for (; b + 64 <= end; b += 64) {
            const vec_t *v = (const vec_t *)(const void *)b;
            acc |= v[0] | v[1] | v[2] | v[3];
            if (acc[0] | acc[1]) return false;
        }
        for (; b + 16 <= end; b += 16) acc |= *(const vec_t *)(const void *)b;
        acc |= *(const vec_t *)(const void *)(end - 16);   /* the last 16, overlapping */
        return (acc[0] | acc[1]) == 0;
    }
    uint64_t acc = 0;
    for (; n >= 8; b += 8, n -= 8) acc |= *(const word_t *)(const void *)b;
    while (n--) acc |= *b++;
    return acc == 0;
}

size_t _pm_pool_drain_remote(pm_pool_t *pool) {
    uintptr_t old = atomic_load_explicit(&pool->remote, memory_order_relaxed);
    do {
        if ((old & ~PM_REMOTE_NOTIFY) == 0) return 0;
    } while (!atomic_compare_exchange_weak_explicit(&pool->remote, &old, old & PM_REMOTE_NOTIFY,
                                                    memory_order_acquire, memory_order_relaxed));
    pm_block_t *head = (pm_block_t *)(old & ~PM_REMOTE_NOTIFY), *tail = head;
    size_t n = 1;
    while (tail->next) { tail = tail->next; n++; }
    tail->next = pool->free;
    pool->free = head;
    _pm_pool_used_add(pool, (uint32_t)-n);
    return n;
}

bool _pm_pool_refill(pm_pool_t *pool) {
    return _pm_pool_drain_remote(pool) > 0 || _pm_pool_carve(pool);
}

bool _pm_pool_mark_full(pm_pool_t *pool) {
    uintptr_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&pool->remote, &expected, PM_REMOTE_NOTIFY,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return false;
    /* Every block is out (none free, none remote, all carved): used = capacity (+ the heap's
     * hold, given back as the pool leaves the list). It comes back at an eighth free. */
    uint32_t bias = pool->capacity - (pool->capacity + 7) / 8;
    _pm_pool_used_add(pool, (uint32_t)-bias);
    __atomic_store_n(&pool->full_bias, bias, __ATOMIC_RELAXED);
    _pm_pool_set_flags(pool, pool->flags | PM_POOL_FULL);
    PM_DEBUG_CHECK(1, "a pool that became full", _pm_pool_check(pool));
    return true;
}

void _pm_pool_clear_notify(pm_pool_t *pool) {
    atomic_fetch_and_explicit(&pool->remote, ~PM_REMOTE_NOTIFY, memory_order_acq_rel);
    _pm_pool_used_add(pool, pool->full_bias);
    __atomic_store_n(&pool->full_bias, 0, __ATOMIC_RELAXED);
    _pm_pool_set_flags(pool, pool->flags & ~PM_POOL_FULL);
}

uint32_t _pm_pool_free_count(const pm_pool_t *pool) {
    uint32_t n = 0;
    for (const pm_block_t *b = pool->free; b && n <= pool->capacity; b = b->next) n++;
    return n;
}

/* The invariant at the top of the pool descriptor, plus: every block on the free list lies on a
 * block boundary inside the pool and carries its free mark. Owner thread only. */
const char *_pm_pool_check(const pm_pool_t *pool) {
    uint32_t n = 0;
    if (pool->carved > pool->capacity) return "pool: more blocks carved than it holds";
    for (const pm_block_t *b = pool->free; b; b = b->next) {
        if (++n > pool->capacity) return "pool: the free list is longer than the pool (a cycle?)";
        if (!_pm_pool_is_block_start(pool, b)) return "pool: a free-list block is not on a block boundary of the pool";
        if ((uint8_t *)b >= pool->start + (size_t)pool->carved * pool->block_size)
            return "pool: a free-list block lies in the uncarved tail";
        if (b->mark != _pm_free_mark(b)) return "pool: a free-list block lacks its free mark (written after free?)";
    }
    if (_pm_pool_used(pool) - pool->held + n + (pool->capacity - pool->carved) != pool->capacity)
        return "pool: used + free + uncarved != capacity";
    return NULL;
}

/* ---- the sample bitmap: which blocks of the pool are sampled and live ----
 * One bit per block, 128 bytes for the largest capacity (1024 16-byte blocks in one slot; no
 * multi-slot class has more, which test_size_class checks), taken from a small slab of
 * its own when a pool first holds a sampled block and given back when the pool is released. The
 * owner sets bits, any thread clears them (atomically); `sampled` counts the set bits. */

#define BITMAP_BYTES (PM_SLOT_SIZE / 16 / 8)
#define BITMAP_SLAB  (64 * PM_KIB)          /* bitmaps are carved from slabs of this size */
static pthread_mutex_t bitmap_lock = PTHREAD_MUTEX_INITIALIZER;
static void *bitmap_free_list;
static uint8_t *bitmap_next, *bitmap_end;

_Static_assert(PM_SLOT_SIZE / 16 <= BITMAP_BYTES * 8, "a bitmap covers every block of a pool");

static size_t block_index(const pm_pool_t *pool, const void *p) {
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pool->start);
    return (size_t)(((unsigned __int128)off * pool->divisor) >> 64);   /* off / block_size, exactly */
}

bool _pm_pool_sample_mark(pm_pool_t *pool, const void *p) {
    _Atomic uint64_t *bits = pool->sampled_bits;
    if (bits == NULL) {
        pthread_mutex_lock(&bitmap_lock);
        if (bitmap_free_list) {
            bits = bitmap_free_list;
            bitmap_free_list = *(void **)bitmap_free_list;
        } else {
            if (bitmap_next == NULL || bitmap_next + BITMAP_BYTES > bitmap_end) {
                bitmap_next = _pm_os_map(BITMAP_SLAB);
                bitmap_end = bitmap_next ? bitmap_next + BITMAP_SLAB : NULL;
            }
            if (bitmap_next) { bits = (_Atomic uint64_t *)bitmap_next; bitmap_next += BITMAP_BYTES; }
        }
        pthread_mutex_unlock(&bitmap_lock);
        if (bits == NULL) return false;
        for (size_t i = 0; i < BITMAP_BYTES / 8; i++) atomic_store_explicit(&bits[i], 0, memory_order_relaxed);
        __atomic_store_n(&pool->sampled_bits, bits, __ATOMIC_RELEASE);
    }
    size_t i = block_index(pool, p);
    atomic_fetch_or_explicit(&bits[i / 64], (uint64_t)1 << (i % 64), memory_order_relaxed);
    atomic_fetch_add_explicit(&pool->sampled, 1, memory_order_relaxed);
    _pm_pool_set_flags(pool, pool->flags | PM_POOL_SAMPLED);
    return true;
}

bool _pm_pool_sample_unmark(pm_pool_t *pool, const void *p) {
    _Atomic uint64_t *bits = __atomic_load_n(&pool->sampled_bits, __ATOMIC_ACQUIRE);
    if (bits == NULL) return false;
    size_t i = block_index(pool, p);
    uint64_t bit = (uint64_t)1 << (i % 64);
    if (!(atomic_fetch_and_explicit(&bits[i / 64], ~bit, memory_order_relaxed) & bit)) return false;
    atomic_fetch_sub_explicit(&pool->sampled, 1, memory_order_relaxed);
    return true;
}

void _pm_pool_fork_prepare(void) { pthread_mutex_lock(&bitmap_lock); }
void _pm_pool_fork_parent(void) { pthread_mutex_unlock(&bitmap_lock); }
void _pm_pool_fork_child(void) { pthread_mutex_init(&bitmap_lock, NULL); }

void _pm_pool_sample_release(pm_pool_t *pool) {
    void *bits = (void *)pool->sampled_bits;
    pool->sampled_bits = NULL;
    atomic_store_explicit(&pool->sampled, 0, memory_order_relaxed);
    pthread_mutex_lock(&bitmap_lock);
    *(void **)bits = bitmap_free_list;
    bitmap_free_list = bits;
    pthread_mutex_unlock(&bitmap_lock);
}
