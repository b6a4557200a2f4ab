/* huge.c: blocks above the largest class (1 MiB), and blocks aligned to more than 16 KiB.
 *
 * Each is a page-rounded run of its own mapping, starting exactly at the block. They are found
 * through a registry: an open-addressing hash table keyed by the block's address, with linear
 * probing and backward-shift deletion (no tombstones), kept in its own mapping and doubled when
 * half full. The registry is also how free() tells a huge block from a pointer it never handed out.
 *
 * Reuse before return. A freed huge block is not unmapped: it goes into a cache of up to
 * CACHE_SLOTS freed runs, with its pages still resident, and the next huge request takes the
 * smallest cached run that fits (the rest of the run stays cached; neighbouring cached runs are
 * merged, so the pieces of a split run become whole again). So a batch job that takes
 * big buffers and frees them every round faults its pages in once, not every round. A cached run
 * is unmapped once it has stayed unused for `purge_delay` ms (by the background thread, purge.c),
 * or, oldest first, when a fresh mapping would take live plus cached huge bytes above 3/2 of the
 * peak of live huge bytes. That bound is the trade between faults and peak RSS; on bench/bigbuf
 * 9/8 faulted 75k pages, 3/2 46k and 2x 40k, at 157, 154 and 161 MiB of peak RSS (jemalloc:
 * 144 MiB and 758k faults; tcmalloc: 178 MiB and 45k).
 *
 * realloc grows a huge block, in this order of preference:
 *   1. into the cached run right after it: no system call, no copy, no fault;
 *   2. into a cached run that fits, with a copy, when the copy is cheaper than faulting in the
 *      growth (old size at most 4x the growth: a fault of a page costs several times a copy of
 *      one on a VM); the old run goes into the cache;
 *   3. with mremap, which grows in place when the address space after it is free and else moves
 *      the pages without copying them (the growth is faulted in).
 * A block made of several runs may span mappings that mremap refuses; then realloc copies.
 *
 * One mutex guards the registry and the cache. System calls (mmap, munmap, mremap) and copies
 * are made outside it.
 */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

typedef struct {
    uintptr_t ptr;        /* 0: empty */
    size_t    map_size;   /* bytes mapped, page multiple */
    size_t    size : 63;  /* bytes requested */
    size_t    sampled : 1;/* the sampler has a record of it */
} huge_entry_t;

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static huge_entry_t *table;
static size_t table_cap, table_count, bytes_requested, bytes_mapped;

static size_t slot_of(uintptr_t p, size_t cap) {
    uint64_t h = (uint64_t)p >> 12;
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static huge_entry_t *find(uintptr_t p) {
    if (table_cap == 0) return NULL;
    for (size_t i = slot_of(p, table_cap);; i = (i + 1) & (table_cap - 1)) {
        if (table[i].ptr == p) return &table[i];
        if (table[i].ptr == 0) return NULL;
    }
}

static void put(huge_entry_t *t, size_t cap, huge_entry_t e) {
    size_t i = slot_of(e.ptr, cap);
    while (t[i].ptr) i = (i + 1) & (cap - 1);
    t[i] = e;
}

static bool grow(void) {
    size_t cap = table_cap ? table_cap * 2 : 256;
    huge_entry_t *t = _pm_os_map(cap * sizeof *t);
    if (t == NULL) return false;
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].ptr) put(t, cap, table[i]);
    if (table) _pm_os_unmap(table, table_cap * sizeof *table);
    table = t;
    table_cap = cap;
    return true;
}

static void erase(huge_entry_t *e) {
    size_t i = (size_t)(e - table), j = i;
    table[i].ptr = 0;
    for (;;) {                            /* shift back later members of the probe run */
        j = (j + 1) & (table_cap - 1);
        if (table[j].ptr == 0) return;
        size_t home = slot_of(table[j].ptr, table_cap);
        bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) { table[i] = table[j]; table[j].ptr = 0; i = j; }
    }
}

static size_t page_round(size_t size) {
    size_t page = _pm_os_page_size();
    if (size > SIZE_MAX - page) return 0;
    return (size + page - 1) & ~(page - 1);
}

/* ---- the cache of freed runs ----
 * cache[0..ncached) in no order; each run is resident and belongs to no block. */
#define CACHE_SLOTS 64
#define ZERO_BY_MEMSET ((size_t)32 << 20)
typedef struct {
    uintptr_t ptr;
    size_t    size;       /* page multiple */
    uint32_t  freed_ms;
} cached_run_t;

static cached_run_t cache[CACHE_SLOTS];
static size_t ncached, cached_bytes, peak_live, returned_bytes, reused_total;

static void cache_remove(size_t i) {
    cached_bytes -= cache[i].size;
    cache[i] = cache[--ncached];
}

static size_t cache_oldest(void) {
    size_t o = 0;
    for (size_t i = 1; i < ncached; i++)
        if ((int32_t)(cache[i].freed_ms - cache[o].freed_ms) < 0) o = i;
    return o;
}

/* Put [p, p+size) into the cache, merged with the cached runs right before and after it, so
 * that the pieces of a split run become one again and can serve a big request. The merged run
 * takes the age of its oldest piece: a piece cut from a big run and freed back again and again
 * must not keep the rest of the run from decaying (it then goes back with the rest, early). When
 * the cache is full, the oldest run goes into *victim (to be unmapped by the caller, outside the lock). */
static void cache_put(uintptr_t p, size_t size, uint32_t now, cached_run_t *victim) {
    victim->size = 0;
    uint32_t freed = now;
    for (size_t i = 0; i < ncached;) {
        if (cache[i].ptr + cache[i].size == p || p + size == cache[i].ptr) {
            if (cache[i].ptr < p) p = cache[i].ptr;
            size += cache[i].size;
            if ((int32_t)(cache[i].freed_ms - freed) < 0) freed = cache[i].freed_ms;
            cache_remove(i);
            continue;
        }
        i++;
    }
    if (ncached == CACHE_SLOTS) {
        size_t o = cache_oldest();
        *victim = cache[o];
        cache_remove(o);
    }
    cache[ncached++] = (cached_run_t){ p, size, freed };
    cached_bytes += size;
    _pm_purge_note();
}

/* Take `size` bytes from cached run i: from its start; the rest stays cached. */
static uintptr_t cache_take_from(size_t i, size_t size) {
    uintptr_t p = cache[i].ptr;
    reused_total++;
    if (cache[i].size == size) { cache_remove(i); return p; }
    cache[i].ptr += size;
    cache[i].size -= size;
    cached_bytes -= size;
    return p;
}

/* The smallest cached run of at least `size` bytes, or -1. */
static long cache_best_fit(size_t size) {
    long best = -1;
    for (size_t i = 0; i < ncached; i++)
        if (cache[i].size >= size && (best < 0 || cache[i].size < cache[best].size)) best = (long)i;
    return best;
}

static void unmap_runs(const cached_run_t *runs, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (runs[i].size) _pm_os_unmap((void *)runs[i].ptr, runs[i].size);
}

static void registry_add(uintptr_t p, size_t map_size, size_t size) {
    put(table, table_cap, (huge_entry_t){ p, map_size, size, 0 });
    table_count++;
    bytes_requested += size;
    bytes_mapped += map_size;
    if (bytes_mapped > peak_live) peak_live = bytes_mapped;
}

/* A cached run that fits, taken under the lock (which the caller holds); 0 if none. */
static uintptr_t take_cached(size_t map_size) {
    long i = cache_best_fit(map_size);
    return i < 0 ? 0 : cache_take_from((size_t)i, map_size);
}

/* Before a fresh mapping of map_size: the oldest runs to unmap so that live + cached + new stays
 * within 3/2 of the peak of live huge bytes. Returns how many went into victims. */
static size_t evict_for(size_t map_size, cached_run_t *victims) {
    size_t n = 0, budget = peak_live + peak_live / 2;
    while (ncached > 0 && bytes_mapped + cached_bytes + map_size > budget) {
        size_t o = cache_oldest();
        victims[n++] = cache[o];
        returned_bytes += cache[o].size;
        cache_remove(o);
    }
    return n;
}

void *_pm_huge_alloc(size_t size, size_t align, bool zero) {
    size_t map_size = page_round(size ? size : 1);
    if (map_size == 0 || map_size > PTRDIFF_MAX) { errno = ENOMEM; return NULL; }
    cached_run_t victims[CACHE_SLOTS];
    size_t nvictims = 0;
    uintptr_t p = 0;
    pthread_mutex_lock(&huge_lock);
    if ((table_count + 1) * 2 > table_cap && !grow()) {
        pthread_mutex_unlock(&huge_lock);
        errno = ENOMEM;
        return NULL;
    }
    if (align <= _pm_os_page_size()) p = take_cached(map_size);
    if (p) {
        registry_add(p, map_size, size);
        pthread_mutex_unlock(&huge_lock);
        /* A reused run holds old bytes. Up to ZERO_BY_MEMSET they are cleared by hand, which
         * costs less than faulting zero pages in; a bigger calloc may be sparse (a matrix
         * mostly never touched), so its pages are decommitted instead and read back as zero. */
        if (zero && size <= ZERO_BY_MEMSET) memset((void *)p, 0, size);
        else if (zero) _pm_os_decommit((void *)p, map_size);
        return (void *)p;
    }
    nvictims = evict_for(map_size, victims);
    pthread_mutex_unlock(&huge_lock);
    unmap_runs(victims, nvictims);
    /* Fresh anonymous mappings read as zero, so `zero` needs no memset here. */
    void *q = align > _pm_os_page_size() ? _pm_os_map_aligned(map_size, align) : _pm_os_map(map_size);
    if (q == NULL) return NULL;
    pthread_mutex_lock(&huge_lock);
    if ((table_count + 1) * 2 > table_cap && !grow()) {
        pthread_mutex_unlock(&huge_lock);
        _pm_os_unmap(q, map_size);
        errno = ENOMEM;
        return NULL;
    }
    registry_add((uintptr_t)q, map_size, size);
    pthread_mutex_unlock(&huge_lock);
    return q;
}

bool _pm_huge_free(void *p) {
    cached_run_t victim;
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e == NULL) { pthread_mutex_unlock(&huge_lock); return false; }
    size_t map_size = e->map_size;
    bytes_requested -= e->size;
    bytes_mapped -= map_size;
    table_count--;
    erase(e);
    cache_put((uintptr_t)p, map_size, _pm_os_now_ms(), &victim);
    if (victim.size) returned_bytes += victim.size;
    pthread_mutex_unlock(&huge_lock);
    unmap_runs(&victim, 1);
    return true;
}

size_t _pm_huge_usable(const void *p, bool *sampled) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    size_t n = e ? e->map_size : 0;
    if (e && sampled) *sampled = e->sampled;
    pthread_mutex_unlock(&huge_lock);
    return n;
}

void _pm_huge_set_sampled(void *p) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e) e->sampled = 1;
    pthread_mutex_unlock(&huge_lock);
}

/* The registry entry of p becomes q's (the caller forgot its sample). Lock held. */
static void registry_move(huge_entry_t *e, uintptr_t q, size_t map_size, size_t size) {
    bytes_requested += size - e->size;
    bytes_mapped += map_size - e->map_size;
    if (bytes_mapped > peak_live) peak_live = bytes_mapped;
    erase(e);
    put(table, table_cap, (huge_entry_t){ q, map_size, size, 0 });
}

/* Resize a huge block to another huge size (see the top of the file). *handled false: p is not a
 * huge block, or it must be copied by the caller (malloc, memcpy, free). */
void *_pm_huge_realloc(void *p, size_t size, bool *handled) {
    cached_run_t victim = { 0, 0, 0 };
    uintptr_t at = (uintptr_t)p;
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find(at);
    *handled = e != NULL;
    if (e == NULL) { pthread_mutex_unlock(&huge_lock); return NULL; }
    size_t map_size = page_round(size), old_map = e->map_size, old_size = e->size;
    if (map_size == 0 || map_size > PTRDIFF_MAX) { pthread_mutex_unlock(&huge_lock); errno = ENOMEM; return NULL; }
    if (map_size <= old_map) {                          /* shrink: the tail goes into the cache */
        if (map_size < old_map) cache_put(at + map_size, old_map - map_size, _pm_os_now_ms(), &victim);
        registry_move(e, at, map_size, size);
        if (victim.size) returned_bytes += victim.size;
        pthread_mutex_unlock(&huge_lock);
        unmap_runs(&victim, 1);
        return p;
    }
    size_t growth = map_size - old_map;
    for (size_t i = 0; i < ncached; i++) {             /* 1. the run right after it */
        if (cache[i].ptr == at + old_map && cache[i].size >= growth) {
            cache_take_from(i, growth);
            registry_move(e, at, map_size, size);
            pthread_mutex_unlock(&huge_lock);
            return p;
        }
    }
    if (old_map <= 4 * growth) {                        /* 2. a cached run, and a copy */
        uintptr_t q = take_cached(map_size);
        if (q) {
            registry_move(e, q, map_size, size);
            pthread_mutex_unlock(&huge_lock);
            memcpy((void *)q, p, old_map);               /* the usable size, not the request */
            pthread_mutex_lock(&huge_lock);
            cache_put(at, old_map, _pm_os_now_ms(), &victim);
            if (victim.size) returned_bytes += victim.size;
            pthread_mutex_unlock(&huge_lock);
            unmap_runs(&victim, 1);
            return (void *)q;
        }
    }
    /* 3. mremap, outside the lock. The entry leaves the registry first: once mremap has moved
     * the pages, [p, p+old_map) is a hole that another thread's mapping may get, and a stale
     * entry would let a later free of that block cache the whole range (a block handed out
     * twice). The caller has already forgotten p's sample. */
    huge_entry_t was = { at, old_map, old_size, 0 };
    erase(e);                                           /* table_count stays: it comes back */
    pthread_mutex_unlock(&huge_lock);
    int saved = errno;
    void *q = _pm_os_remap(p, old_map, map_size);
    pthread_mutex_lock(&huge_lock);
    if (q == NULL) {                                    /* spans runs of two mappings: copy */
        put(table, table_cap, was);
        pthread_mutex_unlock(&huge_lock);
        errno = saved;                                  /* the copy sets ENOMEM if it fails */
        *handled = false;
        return NULL;
    }
    put(table, table_cap, (huge_entry_t){ (uintptr_t)q, map_size, size, 0 });
    bytes_requested += size - old_size;
    bytes_mapped += map_size - old_map;
    if (bytes_mapped > peak_live) peak_live = bytes_mapped;
    pthread_mutex_unlock(&huge_lock);
    return q;
}

/* Unmap the cached runs freed at or before `cutoff` (all of them when `all`). Returns the ms
 * until the next one is due, or PM_PURGE_NONE. */
static uint32_t cache_purge(uint32_t now, bool all) {
    cached_run_t victims[CACHE_SLOTS];
    size_t n = 0;
    uint32_t delay = (uint32_t)_pm_options.purge_delay, cutoff = now - delay, oldest = now;
    pthread_mutex_lock(&huge_lock);
    for (size_t i = 0; i < ncached;) {
        if (all || (int32_t)(cache[i].freed_ms - cutoff) <= 0) {
            victims[n++] = cache[i];
            returned_bytes += cache[i].size;
            cache_remove(i);
        } else {
            if ((int32_t)(cache[i].freed_ms - oldest) < 0) oldest = cache[i].freed_ms;
            i++;
        }
    }
    bool waiting = ncached > 0;
    pthread_mutex_unlock(&huge_lock);
    unmap_runs(victims, n);
    return waiting ? oldest + delay - now : PM_PURGE_NONE;
}

uint32_t _pm_huge_purge_due(uint32_t now) { return cache_purge(now, false); }

size_t _pm_huge_trim(void) {
    pthread_mutex_lock(&huge_lock);
    size_t bytes = cached_bytes;
    pthread_mutex_unlock(&huge_lock);
    cache_purge(_pm_os_now_ms(), true);
    return bytes;
}

void _pm_huge_counts(pm_huge_counts_t *out) {
    pthread_mutex_lock(&huge_lock);
    out->count = table_count;
    out->requested = bytes_requested;
    out->mapped = bytes_mapped;
    out->cached = cached_bytes;
    out->cached_runs = ncached;
    out->returned_bytes = returned_bytes;
    out->reused_total = reused_total;
    pthread_mutex_unlock(&huge_lock);
}

void _pm_huge_fork_prepare(void) { pthread_mutex_lock(&huge_lock); }
void _pm_huge_fork_parent(void) { pthread_mutex_unlock(&huge_lock); }
void _pm_huge_fork_child(void) { pthread_mutex_init(&huge_lock, NULL); }
