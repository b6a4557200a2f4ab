/* arena.c: 4 MiB arenas carved into 16 KiB slots, and the slot runs that pools are made of.
 *
 * Layout of an arena (aligned to its size, so `p & ~(PM_ARENA_SIZE-1)` finds it):
 *
 *   slots 0..2    pm_arena_t: the slot-to-pool map (a pointer per slot), when each free slot
 *                 was freed, the slot sets, bucket links, and 256 pool descriptors of 128 bytes
 *   slots 3..255  pools of 1..64 slots each, or free
 *
 * Why 16 KiB slots (pymalloc's pool size since 3.10): each thread owns at least one pool per size
 * class it uses, so the slot is the granularity of per-thread memory. With 64 KiB slots a server
 * with 4 threads and 32 small classes in use holds 8 MiB of pools before it stores a byte. Small classes take one slot; larger ones take the fewest slots
 * that waste at most 1/8 (size_class.c).
 *
 * Policy, all under one lock (_pm_arena_lock), taken only when a heap needs a whole pool or gives
 * one back, never per block:
 *   - Best fit. Arenas sit in buckets by their longest run of free slots; a pool comes from the
 *     arena whose longest run is the shortest that fits, so a search never looks at an arena
 *     that has no room, and lightly used arenas (long runs) are used last, drain and can be
 *     returned (the aim of pymalloc's ordering of usable_arenas, fullest first). But a run of
 *     dirty slots, in any arena (best fit first), comes before all of that (below).
 *   - Reuse first, return what stays unused (docs/design.md, "Returning memory"). A freed slot
 *     is "dirty": its pages stay resident, and the next pool takes dirty slots before clean ones,
 *     so a program that frees a structure and builds it again reuses its own pages instead of
 *     faulting fresh ones in (on a VM a fault costs microseconds). A slot that has stayed free
 *     for `purge_delay` ms is decommitted (one madvise per run of slots): by pool releases,
 *     which look at the clock, and by the background purge thread (purge.c), so that a program
 *     that goes idle gets its memory back too. If `purge` is set and more bytes than that are
 *     dirty, all of them are decommitted at once.
 *   - A wholly free arena stays mapped and dirty like any free slot. Once its slots have been
 *     decommitted it is unmapped, but one clean free arena is kept: the hysteresis that stops a
 *     program which frees and allocates at a boundary from mapping and unmapping in a loop
 *     (CPython keeps one for the same reason).
 *   - _pm_arena_map has one byte per 4 MiB of address space (32 MiB of zero-fill bss; only the
 *     pages covering our arenas are ever touched). It answers "is this pointer in one of our
 *     arenas?" with one load, which is how free() rejects pointers it never handed out.
 */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

uint8_t _pm_arena_map[(size_t)1 << (PM_ADDR_BITS - PM_ARENA_SHIFT)];
pthread_mutex_t _pm_arena_lock = PTHREAD_MUTEX_INITIALIZER;

/* A slot that belongs to no pool points here: its heap matches no thread and its capacity is 0,
 * so a free of a pointer into it fails every check and is reported. */
static pm_pool_t pool_invalid;
static const char *check_arena(pm_arena_t *a);   /* PM_DEBUG and _pm_arena_check, below */
static const char *check_all(void);

static pm_arena_t *buckets[PM_SLOTS];   /* buckets[n]: arenas whose longest free run is n >= 1 */
static pm_slotset_t buckets_used;       /* bit n: buckets[n] is not empty (a set of bucket numbers) */
static pm_arena_t *all_arenas;
static size_t narenas, nfree_arenas, mapped_total, unmapped_total, dirty_slots;
static size_t returned_bytes;          /* decommitted or unmapped, in total */

#define ARENA_FREE_SLOTS (PM_SLOTS - PM_HEADER_SLOTS)   /* nfree of an arena with no pool */

/* ---- sets of slots: PM_SLOT_WORDS words; a run of at most 64 slots spans at most two ---- */

static uint64_t run_bits(unsigned n) { return n >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1; }

/* The 64 bits of `s` from bit i on; bits past the end read as set. */
static uint64_t set_get64(const pm_slotset_t *s, unsigned i) {
    unsigned w = i / 64, sh = i % 64;
    uint64_t lo = s->w[w] >> sh;
    uint64_t hi = w + 1 < PM_SLOT_WORDS ? s->w[w + 1] : ~(uint64_t)0;
    return sh ? lo | hi << (64 - sh) : lo;
}

/* The run [at, at+n) as a set. */
static pm_slotset_t set_run(unsigned at, unsigned n) {
    pm_slotset_t r = {{0}};
    unsigned w = at / 64, sh = at % 64;
    r.w[w] = run_bits(n) << sh;
    if (sh && sh + n > 64) r.w[w + 1] = run_bits(n) >> (64 - sh);
    return r;
}

static size_t set_count(const pm_slotset_t *s) {
    size_t n = 0;
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++)
        if (s->w[i]) n += (size_t)__builtin_popcountll(s->w[i]);   /* without -mpopcnt: a call */
    return n;
}

static bool set_any(const pm_slotset_t *s) {
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) if (s->w[i]) return true;
    return false;
}

/* The first set bit at or after i, or PM_SLOTS. clear: the first clear bit instead. */
static unsigned set_next(const pm_slotset_t *s, unsigned i, bool clear) {
    while (i < PM_SLOTS) {
        uint64_t w = s->w[i / 64];
        if (clear) w = ~w;
        w &= ~(uint64_t)0 << (i % 64);
        if (w) return (i & ~63u) + (unsigned)__builtin_ctzll(w);
        i = (i & ~63u) + 64;
    }
    return PM_SLOTS;
}

/* ---- arenas ---- */

/* The last set bit below i (the header slots are always set, so there is one for i >= 2). */
static unsigned set_prev(const pm_slotset_t *s, unsigned i) {
    for (unsigned w = i / 64 + 1; w-- > 0;) {
        uint64_t bits = s->w[w];
        if (w == i / 64) bits &= ((uint64_t)1 << (i % 64)) - 1;
        if (bits) return w * 64 + 63u - (unsigned)__builtin_clzll(bits);
    }
    return 0;
}

/* The run of free slots around the free slot i: its length. */
static unsigned free_run_length(const pm_slotset_t *used, unsigned i) {
    return set_next(used, i, false) - (set_prev(used, i) + 1);
}

/* The longest run of free slots in `a`: its bucket. A full scan; acquire and release keep it up
 * to date without one unless they split the longest run. */
static void update_max_run(pm_arena_t *a) {
    unsigned best = 0;
    for (unsigned i = set_next(&a->slots_used, PM_HEADER_SLOTS, true); i < PM_SLOTS;) {
        unsigned end = set_next(&a->slots_used, i, false);
        if (end - i > best) best = end - i;
        i = set_next(&a->slots_used, end, true);
    }
    a->max_run = best;
}

static void bucket_remove(pm_arena_t *a) {
    if (a->max_run == 0) return;
    if (a->prev) a->prev->next = a->next; else buckets[a->max_run] = a->next;
    if (buckets[a->max_run] == NULL) buckets_used.w[a->max_run / 64] &= ~((uint64_t)1 << (a->max_run % 64));
    if (a->next) a->next->prev = a->prev;
    a->next = a->prev = NULL;
}

static void bucket_insert(pm_arena_t *a) {
    if (a->max_run == 0) return;
    buckets_used.w[a->max_run / 64] |= (uint64_t)1 << (a->max_run % 64);
    a->prev = NULL;
    a->next = buckets[a->max_run];
    if (a->next) a->next->prev = a;
    buckets[a->max_run] = a;
}

/* An arena is mapped as address space nothing may touch (PROT_NONE), and opened a chunk of
 * OPEN_SLOTS at a time as pools first take its slots. So a stray access beyond the pools in use
 * (an overflow that runs a megabyte past its block, a wild pointer into a fresh arena) faults at
 * once instead of writing into memory that a later pool will hand out. Opening costs one mprotect
 * per 256 KiB of fresh slots, against the 64 page faults that first touching them costs anyway;
 * slots stay open once opened (reuse, decay and MADV_DONTNEED keep them so), and the open slots
 * of an arena are mostly one run, so the kernel merges them into one mapping. */
#define OPEN_SLOTS 16

static pm_arena_t *arena_map_new(void) {
    pm_arena_t *a = _pm_os_reserve_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
    if (a == NULL) return NULL;
    if (_pm_os_protect(a, PM_HEADER_SLOTS * PM_SLOT_SIZE, true) != 0) {
        _pm_os_unmap(a, PM_ARENA_SIZE);
        return NULL;
    }
    for (unsigned i = 0; i < PM_SLOTS; i++) a->heads[i] = &pool_invalid;
    a->slots_used = set_run(0, PM_HEADER_SLOTS);
    a->slots_open = a->slots_used;
    a->slots_dirty = (pm_slotset_t){{0}};
    a->nfree = ARENA_FREE_SLOTS;
    a->max_run = ARENA_FREE_SLOTS;
    a->all_next = all_arenas;
    all_arenas = a;
    narenas++; nfree_arenas++; mapped_total++;
    _pm_arena_map[(uintptr_t)a >> PM_ARENA_SHIFT] = PM_MAP_ARENA;
    bucket_insert(a);
    return a;
}

static void arena_unmap(pm_arena_t *a) {
    bucket_remove(a);
    for (pm_arena_t **pp = &all_arenas; *pp; pp = &(*pp)->all_next) {
        if (*pp == a) { *pp = a->all_next; break; }
    }
    size_t dirty = set_count(&a->slots_dirty);
    dirty_slots -= dirty;
    returned_bytes += (dirty + PM_HEADER_SLOTS) << PM_SLOT_SHIFT;   /* what was resident */
    narenas--; nfree_arenas--; unmapped_total++;
    _pm_arena_map[(uintptr_t)a >> PM_ARENA_SHIFT] = 0;
    _pm_os_unmap(a, PM_ARENA_SIZE);
}

/* Make slots at..at+n of `a` accessible, and up to OPEN_SLOTS from `at`: false if the kernel
 * refuses (out of mappings: ENOMEM), and then nothing changed. */
static bool open_run(pm_arena_t *a, unsigned at, unsigned n) {
    pm_slotset_t run = set_run(at, n);
    bool open = true;
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) open &= (a->slots_open.w[i] & run.w[i]) == run.w[i];
    if (open) return true;
    unsigned end = at + (n > OPEN_SLOTS ? n : OPEN_SLOTS);
    if (end > PM_SLOTS) end = PM_SLOTS;
    if (_pm_os_protect((uint8_t *)a + ((size_t)at << PM_SLOT_SHIFT), (size_t)(end - at) << PM_SLOT_SHIFT, true) != 0)
        return false;
    pm_slotset_t opened = set_run(at, end - at);
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) a->slots_open.w[i] |= opened.w[i];
    return true;
}

/* First run of n free slots, or -1. */
static int find_run(const pm_slotset_t *used, unsigned n) {
    for (unsigned i = set_next(used, PM_HEADER_SLOTS, true); i + n <= PM_SLOTS; i = set_next(used, i, true)) {
        uint64_t blocking = set_get64(used, i) & run_bits(n);
        if (blocking == 0) return (int)i;
        i += 64u - (unsigned)__builtin_clzll(blocking);   /* past the last used slot that blocked us */
    }
    return -1;
}


/* A run of n dirty slots in `a`, or -1. Dirty slots are free, so the complement of the dirty set
 * covers the used ones. */
static int arena_find_dirty_run(const pm_arena_t *a, unsigned n) {
    pm_slotset_t not_dirty;
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) not_dirty.w[i] = ~a->slots_dirty.w[i];
    return find_run(&not_dirty, n);
}

/* A run of n free slots in `a` (there is one), dirty slots first: their pages are still resident,
 * so reusing them costs no memory, while a clean run would add to the RSS as the dirty slots
 * wait for their purge. */
static int arena_find_run(const pm_arena_t *a, unsigned n) {
    int at = set_any(&a->slots_dirty) ? arena_find_dirty_run(a, n) : -1;
    return at >= 0 ? at : find_run(&a->slots_used, n);
}

/* Decommit the dirty slots of `a` that are in `mask`, one madvise per run. */
static size_t decommit(pm_arena_t *a, const pm_slotset_t *mask) {
    pm_slotset_t d;
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) {
        d.w[i] = a->slots_dirty.w[i] & mask->w[i];
        a->slots_dirty.w[i] &= ~d.w[i];
    }
    dirty_slots -= set_count(&d);
    size_t released = 0;
    for (unsigned i = set_next(&d, 0, false); i < PM_SLOTS; i = set_next(&d, i, false)) {
        unsigned end = set_next(&d, i, true);
        size_t len = (size_t)(end - i) << PM_SLOT_SHIFT;
        _pm_os_decommit((uint8_t *)a + ((size_t)i << PM_SLOT_SHIFT), len);
        released += len;
        i = end;
    }
    returned_bytes += released;
    return released;
}

/* Decommit every dirty slot freed at or before `cutoff` (ms), all of them when `all`, then unmap
 * the wholly free arenas that are left clean, but one. Returns the bytes released; *oldest is the
 * freed time of the oldest dirty slot left (unchanged if there is none). */
static size_t purge(uint32_t cutoff, bool all, uint32_t *oldest) {
    size_t released = 0;
    for (pm_arena_t *a = all_arenas, *next; a; a = next) {
        next = a->all_next;
        pm_slotset_t old = {{0}};
        for (unsigned i = set_next(&a->slots_dirty, 0, false); i < PM_SLOTS; i = set_next(&a->slots_dirty, i + 1, false)) {
            if (all || (int32_t)(a->freed_ms[i] - cutoff) <= 0) old.w[i / 64] |= (uint64_t)1 << (i % 64);
            else if ((int32_t)(a->freed_ms[i] - *oldest) < 0) *oldest = a->freed_ms[i];
        }
        if (set_any(&old)) released += decommit(a, &old);
        if (a->nfree == ARENA_FREE_SLOTS && nfree_arenas > 1 && !set_any(&a->slots_dirty)) {
            arena_unmap(a);
            released += PM_HEADER_SLOTS << PM_SLOT_SHIFT;
        }
    }
    return released;
}

static uint32_t last_purge_ms;

/* Called on every pool release, under the lock: looks at the clock, and at most every delay/4 ms
 * at the slots. The background thread (purge.c) does the same for a program that stopped
 * calling the allocator. */
static void maybe_purge(uint32_t now) {
    uint32_t delay = (uint32_t)_pm_options.purge_delay, oldest = now;
    if (_pm_options.purge && dirty_slots * PM_SLOT_SIZE > _pm_options.purge) {
        purge(0, true, &oldest);
    } else if (now - last_purge_ms > delay / 4) {
        purge(now - delay, false, &oldest);
        last_purge_ms = now;
    }
}

uint32_t _pm_arena_purge_due(uint32_t now) {
    uint32_t delay = (uint32_t)_pm_options.purge_delay, oldest = now;
    pthread_mutex_lock(&_pm_arena_lock);
    purge(now - delay, false, &oldest);
    last_purge_ms = now;
    bool waiting = dirty_slots > 0;
    pthread_mutex_unlock(&_pm_arena_lock);
    return waiting ? oldest + delay - now : PM_PURGE_NONE;
}

/* Take a run of slots for a pool of `size_class`. The pool's geometry is written here, under the
 * lock, so that a statistics walk never sees a half-made pool; heap.c fills in the rest. */
pm_pool_t *_pm_arena_pool_acquire(unsigned size_class) {
    const pm_class_info_t *ci = &_pm_classes[size_class];
    unsigned slots = ci->slots;
    pthread_mutex_lock(&_pm_arena_lock);
    pm_arena_t *arena = NULL;
    int at = -1;
    /* A pool takes a run of dirty slots if any arena has one (best fit first): a clean run
     * would be faulted in, and add to the RSS, while the dirty slots wait to be decommitted,
     * which in a threaded program also costs a TLB shootdown: an IPI to every core that ran
     * the process. */
    if (dirty_slots >= slots) {
        for (unsigned n = set_next(&buckets_used, slots, false); n < PM_SLOTS && at < 0; n = set_next(&buckets_used, n + 1, false))
            for (pm_arena_t *a = buckets[n]; a && at < 0; a = a->next)
                if (set_count(&a->slots_dirty) >= slots && (at = arena_find_dirty_run(a, slots)) >= 0) arena = a;
    }
    if (arena == NULL) {
        unsigned n = set_next(&buckets_used, slots, false);
        if (n < PM_SLOTS) arena = buckets[n];
        if (arena) at = arena_find_run(arena, slots);
    }
    if (at < 0) {
        arena = arena_map_new();
        if (arena == NULL) { pthread_mutex_unlock(&_pm_arena_lock); errno = ENOMEM; return NULL; }
        at = PM_HEADER_SLOTS;
    }
    if (!open_run(arena, (unsigned)at, slots)) { pthread_mutex_unlock(&_pm_arena_lock); errno = ENOMEM; return NULL; }
    pm_slotset_t run = set_run((unsigned)at, slots), was_dirty;
    bool split_longest = free_run_length(&arena->slots_used, (unsigned)at) == arena->max_run;
    if (arena->nfree == ARENA_FREE_SLOTS) nfree_arenas--;
    bucket_remove(arena);
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) {
        arena->slots_used.w[i] |= run.w[i];
        was_dirty.w[i] = arena->slots_dirty.w[i] & run.w[i];
        arena->slots_dirty.w[i] &= ~run.w[i];
    }
    dirty_slots -= set_count(&was_dirty);
    arena->nfree -= slots;
    if (split_longest) update_max_run(arena);
    bucket_insert(arena);
    pm_pool_t *pool = &arena->pools[at];
    for (unsigned i = 0; i < slots; i++) arena->heads[at + i] = pool;
    pool->slots = (uint8_t)slots;
    pool->size_class = (uint8_t)size_class;
    pool->block_size = ci->size;
    pool->capacity = ci->capacity;
    __atomic_store_n(&pool->used, 0, __ATOMIC_RELAXED);
    size_t bytes = (size_t)slots << PM_SLOT_SHIFT, tail = bytes - (size_t)ci->capacity * ci->size;
    pool->start = (uint8_t *)arena + ((size_t)at << PM_SLOT_SHIFT) + tail;   /* see _pm_pool_is_block_start */
    PM_DEBUG_CHECK(1, "the arena a pool was taken from", check_arena(arena));
    PM_DEBUG_CHECK(2, "every arena after a pool was taken", check_all());
    pthread_mutex_unlock(&_pm_arena_lock);
    return pool;
}

void _pm_arena_pool_release(pm_pool_t *pool) {
    pm_arena_t *arena = _pm_arena_of(pool);
    unsigned at = (unsigned)(pool - arena->pools), slots = pool->slots;
    pm_slotset_t run = set_run(at, slots);
    pthread_mutex_lock(&_pm_arena_lock);
    uint32_t now = _pm_os_now_ms();
    for (unsigned i = 0; i < slots; i++) {
        arena->heads[at + i] = &pool_invalid;
        arena->freed_ms[at + i] = now;
    }
    pool->slots = 0;
    pool->heap = NULL;
    bucket_remove(arena);
    for (unsigned i = 0; i < PM_SLOT_WORDS; i++) {
        arena->slots_used.w[i] &= ~run.w[i];
        arena->slots_dirty.w[i] |= run.w[i];
    }
    dirty_slots += slots;
    arena->nfree += slots;
    unsigned merged = free_run_length(&arena->slots_used, at);
    if (merged > arena->max_run) arena->max_run = merged;
    bucket_insert(arena);
    if (arena->nfree == ARENA_FREE_SLOTS) nfree_arenas++;
    PM_DEBUG_CHECK(1, "the arena a pool went back to", check_arena(arena));
    maybe_purge(now);                         /* may unmap `arena` */
    PM_DEBUG_CHECK(2, "every arena after a pool went back", check_all());
    _pm_purge_note();
    pthread_mutex_unlock(&_pm_arena_lock);
}

size_t _pm_arena_trim(void) {
    pthread_mutex_lock(&_pm_arena_lock);
    uint32_t oldest = 0;
    size_t released = purge(0, true, &oldest);
    for (pm_arena_t *a = all_arenas, *next; a; a = next) {
        next = a->all_next;
        if (a->nfree == ARENA_FREE_SLOTS) { arena_unmap(a); released += PM_HEADER_SLOTS << PM_SLOT_SHIFT; }
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
    out->returned_bytes = returned_bytes;
}

pm_arena_t *_pm_arena_first(void) { return all_arenas; }

/* The invariants of one arena (arena lock held): nfree counts the free slots; the header slots
 * are used and map to pool_invalid; dirty slots are free; every used slot maps to the pool whose
 * run covers it and every free slot to pool_invalid; max_run is the longest free run, and the
 * arena sits in that bucket. */
static const char *check_arena(pm_arena_t *a) {
    unsigned nfree = 0;
    for (unsigned i = 0; i < PM_SLOTS; i++) {
        bool used = (a->slots_used.w[i / 64] >> (i % 64)) & 1, dirty_bit = (a->slots_dirty.w[i / 64] >> (i % 64)) & 1;
        if (i < PM_HEADER_SLOTS) {
            if (!used || dirty_bit || a->heads[i] != &pool_invalid) return "arena: a header slot is free, dirty or mapped to a pool";
            continue;
        }
        if (!used) {
            nfree++;
            if (a->heads[i] != &pool_invalid) return "arena: a free slot maps to a pool";
            continue;
        }
        const pm_pool_t *p = a->heads[i];
        unsigned at = (unsigned)(p - a->pools);
        if (dirty_bit) return "arena: a slot in use is marked dirty";
        if (!((a->slots_open.w[i / 64] >> (i % 64)) & 1)) return "arena: a slot in use is not open (PROT_NONE)";
        if (at >= PM_SLOTS || at > i || i >= at + p->slots) return "arena: a used slot maps to a pool whose run does not cover it";
    }
    if (nfree != a->nfree) return "arena: nfree is not the number of free slots";
    unsigned max_run = a->max_run;
    update_max_run(a);
    if (max_run != a->max_run) return "arena: max_run is not the longest run of free slots";
    bool listed = a->max_run == 0;
    for (pm_arena_t *b = buckets[a->max_run]; b && !listed; b = b->next) listed = b == a;
    return listed ? NULL : "arena: the arena is not in the bucket of its longest free run";
}

/* Every arena, and dirty_slots is the sum of their dirty slots (arena lock held). */
static const char *check_all(void) {
    size_t dirty = 0;
    for (pm_arena_t *a = all_arenas; a; a = a->all_next) {
        const char *why = check_arena(a);
        if (why) return why;
        dirty += set_count(&a->slots_dirty);
    }
    return dirty == dirty_slots ? NULL : "arena: dirty_slots is not the sum of the arenas' dirty slots";
}

const char *_pm_arena_check(void) {
    pthread_mutex_lock(&_pm_arena_lock);
    const char *why = check_all();
    pthread_mutex_unlock(&_pm_arena_lock);
    return why;
}
