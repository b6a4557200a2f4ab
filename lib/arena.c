/* arena.c: 4 MiB arenas carved into 64 KiB slots, and the slot runs that pools are made of.
 *
 * Layout of an arena (aligned to its size, so `p & ~(PM_ARENA_SIZE-1)` finds it):
 *
 *   slot 0        pm_arena_t: the slot bitmaps and 64 pool descriptors (about 8 KiB; the rest of
 *                 the slot is never touched, so it costs address space but no memory)
 *   slots 1..63   pools of 1..16 slots each, or free
 *
 * Policy, all under one lock (_pm_arena_lock), taken only when a heap needs a whole pool or gives
 * one back, never per block:
 *   - Fullest first. Arenas sit in buckets by their number of free slots; a pool comes from the
 *     fullest arena that has room (pymalloc's ordering of usable_arenas), so lightly used arenas
 *     drain and can be returned.
 *   - Free slots are "dirty" (their pages may be resident) until purged. A slot freed more than
 *     `purge_delay` ms ago is decommitted (one madvise per run of slots) the next time any pool
 *     is released, so memory a program freed goes back to the OS within a bounded delay while
 *     a program that frees and reallocates at once keeps its pages (no madvise/fault churn).
 *     If more than `purge` bytes are dirty, all of them are decommitted at once.
 *   - A wholly free arena is decommitted and kept if it is the only one, else unmapped: one
 *     cached arena is the hysteresis that stops a program which frees and allocates at a
 *     boundary from mapping and unmapping in a loop (CPython keeps one for the same reason).
 *   - _pm_arena_map has one byte per 4 MiB of address space (32 MiB of zero-fill bss; only the
 *     pages covering our arenas are ever touched). It answers "is this pointer in one of our
 *     arenas?" with one load, which is how free() rejects pointers it never handed out.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <string.h>

uint8_t _pm_arena_map[(size_t)1 << (PM_ADDR_BITS - PM_ARENA_SHIFT)];
pthread_mutex_t _pm_arena_lock = PTHREAD_MUTEX_INITIALIZER;

/* A slot that belongs to no pool points here: its heap matches no thread and its capacity is 0,
 * so a free of a pointer into it fails every check and is reported. */
static pm_pool_t pool_invalid;

static pm_arena_t *buckets[PM_SLOTS];   /* buckets[n]: arenas with n free slots, n >= 1 */
static pm_arena_t *all_arenas;
static size_t narenas, nfree_arenas, mapped_total, unmapped_total, dirty_slots;

#define FULL_MASK (~(uint64_t)0)

static void bucket_remove(pm_arena_t *a) {
    if (a->nfree == 0) return;
    if (a->prev) a->prev->next = a->next; else buckets[a->nfree] = a->next;
    if (a->next) a->next->prev = a->prev;
    a->next = a->prev = NULL;
}

static void bucket_insert(pm_arena_t *a) {
    if (a->nfree == 0) return;
    a->prev = NULL;
    a->next = buckets[a->nfree];
    if (a->next) a->next->prev = a;
    buckets[a->nfree] = a;
}

static pm_arena_t *arena_map_new(void) {
    pm_arena_t *a = _pm_os_map_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
    if (a == NULL) return NULL;
    a->slots_used = 1;                     /* the header */
    a->slots_dirty = 0;
    a->nfree = PM_SLOTS - 1;
    for (unsigned i = 0; i < PM_SLOTS; i++) a->pools[i].head = &pool_invalid;
    a->all_next = all_arenas;
    all_arenas = a;
    narenas++; nfree_arenas++; mapped_total++;
    _pm_arena_map[(uintptr_t)a >> PM_ARENA_SHIFT] = 1;
    bucket_insert(a);
    return a;
}

static void arena_unmap(pm_arena_t *a) {
    bucket_remove(a);
    for (pm_arena_t **pp = &all_arenas; *pp; pp = &(*pp)->all_next) {
        if (*pp == a) { *pp = a->all_next; break; }
    }
    dirty_slots -= (size_t)__builtin_popcountll(a->slots_dirty);
    narenas--; nfree_arenas--; unmapped_total++;
    _pm_arena_map[(uintptr_t)a >> PM_ARENA_SHIFT] = 0;
    _pm_os_unmap(a, PM_ARENA_SIZE);
}

/* First run of n free slots in a 64-bit map, or -1. */
static int find_run(uint64_t used, unsigned n) {
    uint64_t want = (n == 64) ? FULL_MASK : (((uint64_t)1 << n) - 1);
    for (unsigned i = 1; i + n <= PM_SLOTS; i++) {
        if (((used >> i) & want) == 0) return (int)i;
        /* skip past the used slot that blocked us */
        uint64_t blocking = (used >> i) & want;
        i += 63u - (unsigned)__builtin_clzll(blocking);
    }
    return -1;
}

/* Decommit the dirty slots of `a` that are in `mask`, one madvise per run. */
static size_t decommit(pm_arena_t *a, uint64_t mask) {
    size_t released = 0;
    uint64_t d = a->slots_dirty & mask;
    dirty_slots -= (size_t)__builtin_popcountll(d);
    a->slots_dirty &= ~d;
    while (d) {
        unsigned start = (unsigned)__builtin_ctzll(d);
        unsigned len = (unsigned)__builtin_ctzll(~(d >> start));   /* start >= 1: no overflow */
        _pm_os_decommit((uint8_t *)a + ((size_t)start << PM_SLOT_SHIFT), (size_t)len << PM_SLOT_SHIFT);
        released += (size_t)len << PM_SLOT_SHIFT;
        d &= ~((((uint64_t)1 << len) - 1) << start);
    }
    return released;
}

/* Decommit every dirty slot freed at or before `cutoff` (ms); all of them when `cutoff` is
 * UINT32_MAX. Returns the bytes released. */
static size_t purge(uint32_t cutoff) {
    size_t released = 0;
    for (pm_arena_t *a = all_arenas; a; a = a->all_next) {
        uint64_t old = 0;
        for (uint64_t d = a->slots_dirty; d; d &= d - 1) {
            unsigned i = (unsigned)__builtin_ctzll(d);
            if ((int32_t)(a->freed_ms[i] - cutoff) <= 0 || cutoff == UINT32_MAX) old |= (uint64_t)1 << i;
        }
        if (old) released += decommit(a, old);
    }
    return released;
}

static uint32_t last_purge_ms;

/* Called on every pool release. Looks at the clock, and at most every delay/4 ms at the slots. */
static void maybe_purge(void) {
    uint32_t now = _pm_os_now_ms(), delay = (uint32_t)_pm_options.purge_delay;
    if (dirty_slots * PM_SLOT_SIZE > _pm_options.purge) {
        purge(UINT32_MAX);
    } else if (now - last_purge_ms > delay / 4) {
        purge(now - delay);
        last_purge_ms = now;
    }
}

/* Take a run of slots for a pool of `size_class`. The pool's geometry is written here, under the
 * lock, so that a statistics walk never sees a half-made pool; heap.c fills in the rest. */
pm_pool_t *_pm_arena_pool_acquire(unsigned size_class) {
    const pm_class_info_t *ci = &_pm_classes[size_class];
    unsigned slots = ci->slots;
    pthread_mutex_lock(&_pm_arena_lock);
    pm_arena_t *arena = NULL;
    int at = -1;
    for (unsigned n = slots; n < PM_SLOTS && at < 0; n++) {
        for (pm_arena_t *a = buckets[n]; a; a = a->next) {
            at = find_run(a->slots_used, slots);
            if (at >= 0) { arena = a; break; }
        }
    }
    if (at < 0) {
        arena = arena_map_new();
        if (arena == NULL) { pthread_mutex_unlock(&_pm_arena_lock); errno = ENOMEM; return NULL; }
        at = 1;
    }
    uint64_t run = (((uint64_t)1 << slots) - 1) << at;
    if (arena->slots_used == 1) nfree_arenas--;
    bucket_remove(arena);
    arena->slots_used |= run;
    dirty_slots -= (size_t)__builtin_popcountll(arena->slots_dirty & run);
    arena->slots_dirty &= ~run;
    arena->nfree -= slots;
    bucket_insert(arena);
    pm_pool_t *pool = &arena->pools[at];
    for (unsigned i = 0; i < slots; i++) arena->pools[at + i].head = pool;
    pool->slots = (uint8_t)slots;
    pool->size_class = (uint8_t)size_class;
    pool->block_size = ci->size;
    pool->capacity = ci->capacity;
    pool->limit = ci->capacity * ci->size;
    __atomic_store_n(&pool->used, 0, __ATOMIC_RELAXED);
    pool->start = (uint8_t *)arena + ((size_t)at << PM_SLOT_SHIFT);
    pthread_mutex_unlock(&_pm_arena_lock);
    return pool;
}

void _pm_arena_pool_release(pm_pool_t *pool) {
    pm_arena_t *arena = _pm_arena_of(pool);
    unsigned at = (unsigned)(pool - arena->pools), slots = pool->slots;
    uint64_t run = (((uint64_t)1 << slots) - 1) << at;
    pthread_mutex_lock(&_pm_arena_lock);
    for (unsigned i = 0; i < slots; i++) arena->pools[at + i].head = &pool_invalid;
    pool->slots = 0;
    pool->heap = NULL;
    bucket_remove(arena);
    arena->slots_used &= ~run;
    arena->slots_dirty |= run;
    dirty_slots += slots;
    uint32_t now = _pm_os_now_ms();
    for (unsigned i = 0; i < slots; i++) arena->freed_ms[at + i] = now;
    arena->nfree += slots;
    bucket_insert(arena);
    if (arena->slots_used == 1) {
        nfree_arenas++;
        if (nfree_arenas > 1) arena_unmap(arena);
        else decommit(arena, FULL_MASK);
    }
    maybe_purge();
    pthread_mutex_unlock(&_pm_arena_lock);
}

size_t _pm_arena_trim(void) {
    pthread_mutex_lock(&_pm_arena_lock);
    size_t released = purge(UINT32_MAX);
    for (pm_arena_t *a = all_arenas, *next; a; a = next) {
        next = a->all_next;
        if (a->slots_used == 1) { arena_unmap(a); released += PM_ARENA_SIZE; }
    }
    pthread_mutex_unlock(&_pm_arena_lock);
    return released;
}

void _pm_arena_counts(pm_arena_counts_t *out) {
    size_t free_slots = 0;
    for (pm_arena_t *a = all_arenas; a; a = a->all_next) free_slots += a->nfree;
    out->arenas = narenas;
    out->arenas_mapped_total = mapped_total;
    out->arenas_unmapped_total = unmapped_total;
    out->free_slots = free_slots;
    out->dirty_slots = dirty_slots;
}

pm_arena_t *_pm_arena_first(void) { return all_arenas; }
