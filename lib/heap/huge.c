/* huge.c: blocks above the largest class (1 MiB), and blocks aligned to more than 16 KiB.
 *
 * Each is a page-rounded run of its own mapping, starting exactly at the block. They are found
 * through the registry: a table (util/table.c: open addressing, linear probing, backward-shift
 * deletion, doubled before it passes half load) of huge_entry_t keyed by the block's address. The
 * registry is also how free() tells a huge block from a pointer it never handed out.
 *
 * A registry insertion must never fail once the block exists, so the room is reserved first,
 * under the lock: an allocation reserves before it takes a cached run, and again after a fresh
 * mapping (other threads may have filled the room while the lock was dropped), and fails with
 * ENOMEM (the mapping unmapped) if the registry cannot grow. A block being mremapped is out of the
 * registry while the lock is dropped (`moving`), and every reservation counts it, so putting it
 * back never needs to grow the registry.
 *
 * Reuse before return. A freed huge block is not unmapped: it goes into a cache of up to
 * CACHE_SLOTS freed runs, with its pages still resident, and the next huge request takes the
 * smallest cached run that fits (the rest of the run stays cached; neighbouring cached runs are
 * merged, so the pieces of a split run become whole again). So a batch job that takes
 * big buffers and frees them every round faults its pages in once, not every round. A cached run
 * is unmapped once it has stayed unused for `purge_delay` ms (by the background thread, purge.c),
 * or, oldest first, when a fresh mapping would take live plus cached huge bytes above 3/2 of the
 * peak of live huge bytes. That bound is the trade between faults and peak RSS: a tighter one
 * faults pages back in, a looser one holds more (docs/design.md has the measurements).
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
 * are made outside it, except the registry's own growth. _pm_huge_check names the first of this
 * file's invariants that fails.
 */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

typedef struct {
    uintptr_t ptr;        /* the key (util/table.c); 0: an empty slot */
    size_t    map_size;   /* bytes mapped, page multiple */
    size_t    size : 63;  /* bytes requested */
    size_t    sampled : 1;/* the sampler has a record of it */
} huge_entry_t;

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *check_locked(void);

/* Every change to the registry or the cache ends here: PM_DEBUG=2 checks them as the lock goes. */
static void huge_unlock(void) {
    PM_DEBUG_CHECK(2, "the huge registry and cache as the lock is released", check_locked());
    pthread_mutex_unlock(&huge_lock);
}
static pm_table_t registry = PM_TABLE_INIT(huge_entry_t);
static struct { size_t count, mapped, requested; } moving;   /* out of the registry during mremap */
static size_t bytes_requested, bytes_mapped;

static huge_entry_t *find(uintptr_t p) { return _pm_table_find(&registry, p); }

/* Room for one more entry, beyond the ones that are coming back from mremap. Lock held. */
static bool registry_reserve(void) { return _pm_table_reserve(&registry, moving.count + 1) == 0; }

/* An entry into room reserved before (registry_reserve, or the slot that the block left). */
static void registry_put(uintptr_t p, size_t map_size, size_t size) {
    huge_entry_t *e = _pm_table_insert(&registry, p);
    if (e == NULL) _pm_fatal("huge registry: no room for a block although room was reserved");
    e->map_size = map_size;
    e->size = size;
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
    registry_put(p, map_size, size);
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
    if (!registry_reserve()) {                          /* before a cached run is taken */
        huge_unlock();
        errno = ENOMEM;
        return NULL;
    }
    if (align <= _pm_os_page_size()) p = take_cached(map_size);
    if (p) {
        registry_add(p, map_size, size);
        huge_unlock();
        /* A reused run holds old bytes. Up to ZERO_BY_MEMSET they are cleared by hand, which
         * costs less than faulting zero pages in; a bigger calloc may be sparse (a matrix
         * mostly never touched), so its pages are decommitted instead and read back as zero. */
        if (zero && size <= ZERO_BY_MEMSET) memset((void *)p, 0, size);
        else if (zero) _pm_os_decommit((void *)p, map_size);
        return (void *)p;
    }
    nvictims = evict_for(map_size, victims);
    huge_unlock();
    unmap_runs(victims, nvictims);
    /* Fresh anonymous mappings read as zero, so `zero` needs no memset here. */
    void *q = align > _pm_os_page_size() ? _pm_os_map_aligned(map_size, align) : _pm_os_map(map_size);
    if (q == NULL) return NULL;
    pthread_mutex_lock(&huge_lock);
    if (!registry_reserve()) {                          /* again: others may have taken the room */
        huge_unlock();
        _pm_os_unmap(q, map_size);
        errno = ENOMEM;
        return NULL;
    }
    registry_add((uintptr_t)q, map_size, size);
    huge_unlock();
    return q;
}

bool _pm_huge_free(void *p) {
    cached_run_t victim;
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e == NULL) { huge_unlock(); return false; }
    size_t map_size = e->map_size;
    bytes_requested -= e->size;
    bytes_mapped -= map_size;
    _pm_table_erase(&registry, e);
    cache_put((uintptr_t)p, map_size, _pm_os_now_ms(), &victim);
    if (victim.size) returned_bytes += victim.size;
    huge_unlock();
    unmap_runs(&victim, 1);
    return true;
}

size_t _pm_huge_usable(const void *p, bool *sampled) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    size_t n = e ? e->map_size : 0;
    if (e && sampled) *sampled = e->sampled;
    huge_unlock();
    return n;
}

void _pm_huge_set_sampled(void *p) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e) e->sampled = 1;
    huge_unlock();
}

/* The registry entry of p becomes q's (the caller forgot its sample). Lock held. The erase
 * frees the slot the insert takes, so the insert never grows the registry. */
static void registry_move(huge_entry_t *e, uintptr_t q, size_t map_size, size_t size) {
    bytes_requested += size - e->size;
    bytes_mapped += map_size - e->map_size;
    if (bytes_mapped > peak_live) peak_live = bytes_mapped;
    _pm_table_erase(&registry, e);
    registry_put(q, map_size, size);
}

/* Resize a huge block to another huge size (see the top of the file). *handled false: p is not a
 * huge block, or it must be copied by the caller (malloc, memcpy, free). */
void *_pm_huge_realloc(void *p, size_t size, bool *handled) {
    cached_run_t victim = { 0, 0, 0 };
    uintptr_t at = (uintptr_t)p;
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find(at);
    *handled = e != NULL;
    if (e == NULL) { huge_unlock(); return NULL; }
    size_t map_size = page_round(size), old_map = e->map_size, old_size = e->size;
    if (map_size == 0 || map_size > PTRDIFF_MAX) { huge_unlock(); errno = ENOMEM; return NULL; }
    if (map_size <= old_map) {                          /* shrink: the tail goes into the cache */
        if (map_size < old_map) cache_put(at + map_size, old_map - map_size, _pm_os_now_ms(), &victim);
        registry_move(e, at, map_size, size);
        if (victim.size) returned_bytes += victim.size;
        huge_unlock();
        unmap_runs(&victim, 1);
        return p;
    }
    size_t growth = map_size - old_map;
    for (size_t i = 0; i < ncached; i++) {             /* 1. the run right after it */
        if (cache[i].ptr == at + old_map && cache[i].size >= growth) {
            cache_take_from(i, growth);
            registry_move(e, at, map_size, size);
            huge_unlock();
            return p;
        }
    }
    if (old_map <= 4 * growth) {                        /* 2. a cached run, and a copy */
        uintptr_t q = take_cached(map_size);
        if (q) {
            registry_move(e, q, map_size, size);
            huge_unlock();
            memcpy((void *)q, p, old_map);               /* the usable size, not the request */
            pthread_mutex_lock(&huge_lock);
            cache_put(at, old_map, _pm_os_now_ms(), &victim);
            if (victim.size) returned_bytes += victim.size;
            huge_unlock();
            unmap_runs(&victim, 1);
            return (void *)q;
        }
    }
    /* 3. mremap, outside the lock. The entry leaves the registry first: once mremap has moved
     * the pages, [p, p+old_map) is a hole that another thread's mapping may get, and a stale
     * entry would let a later free of that block cache the whole range (a block handed out
     * twice). The caller has already forgotten p's sample. */
    _pm_table_erase(&registry, e);                      /* it comes back: its room stays reserved */
    moving.count++; moving.mapped += old_map; moving.requested += old_size;
    huge_unlock();
    int saved = errno;
    void *q = _pm_os_remap(p, old_map, map_size);
    pthread_mutex_lock(&huge_lock);
    moving.count--; moving.mapped -= old_map; moving.requested -= old_size;
    if (q == NULL) {                                    /* spans runs of two mappings: copy */
        registry_put(at, old_map, old_size);
        huge_unlock();
        errno = saved;                                  /* the copy sets ENOMEM if it fails */
        *handled = false;
        return NULL;
    }
    registry_put((uintptr_t)q, map_size, size);
    bytes_requested += size - old_size;
    bytes_mapped += map_size - old_map;
    if (bytes_mapped > peak_live) peak_live = bytes_mapped;
    huge_unlock();
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
    huge_unlock();
    unmap_runs(victims, n);
    return waiting ? oldest + delay - now : PM_PURGE_NONE;
}

uint32_t _pm_huge_purge_due(uint32_t now) { return cache_purge(now, false); }

size_t _pm_huge_trim(void) {
    pthread_mutex_lock(&huge_lock);
    size_t bytes = cached_bytes;
    huge_unlock();
    cache_purge(_pm_os_now_ms(), true);
    return bytes;
}

void _pm_huge_counts(pm_huge_counts_t *out) {
    pthread_mutex_lock(&huge_lock);
    out->count = registry.count + moving.count;
    out->requested = bytes_requested;
    out->mapped = bytes_mapped;
    out->cached = cached_bytes;
    out->cached_runs = ncached;
    out->returned_bytes = returned_bytes;
    out->reused_total = reused_total;
    huge_unlock();
}

/* ---- the invariants (_pm_huge_check) ---- */

static bool page_aligned(uintptr_t x) { return (x & (_pm_os_page_size() - 1)) == 0; }

/* Every entry is a page-aligned block of whole pages holding its request, and the entries (with
 * the blocks being mremapped) add up to the byte counts. */
static const char *check_registry(void) {
    const char *why = _pm_table_check(&registry);
    if (why) return why;
    size_t mapped = moving.mapped, requested = moving.requested, pos = 0;
    for (const huge_entry_t *e; (e = _pm_table_next(&registry, &pos)) != NULL;) {
        if (!page_aligned(e->ptr) || !page_aligned(e->map_size) || e->map_size == 0)
            return "huge: a registered block is not a page-aligned run of whole pages";
        if (e->size > e->map_size) return "huge: a registered block is smaller than its request";
        mapped += e->map_size;
        requested += e->size;
    }
    if (mapped != bytes_mapped) return "huge: the registered blocks do not add up to the mapped bytes";
    if (requested != bytes_requested) return "huge: the registered blocks do not add up to the requested bytes";
    if (bytes_mapped > peak_live) return "huge: the live bytes are above their peak";
    return NULL;
}

static bool runs_meet(uintptr_t a, size_t an, uintptr_t b, size_t bn) { return a <= b + bn && b <= a + an; }

/* Cached runs are whole pages, add up to cached_bytes, and neither overlap nor touch (touching
 * runs are merged when the second is put), and no registered block lies in one. */
static const char *check_cache(void) {
    if (ncached > CACHE_SLOTS) return "huge: more cached runs than cache slots";
    size_t bytes = 0;
    for (size_t i = 0; i < ncached; i++) {
        if (!page_aligned(cache[i].ptr) || !page_aligned(cache[i].size) || cache[i].size == 0)
            return "huge: a cached run is not a page-aligned run of whole pages";
        bytes += cache[i].size;
        for (size_t j = i + 1; j < ncached; j++)
            if (runs_meet(cache[i].ptr, cache[i].size, cache[j].ptr, cache[j].size))
                return "huge: two cached runs overlap or touch (they should have merged)";
    }
    if (bytes != cached_bytes) return "huge: the cached runs do not add up to the cached bytes";
    size_t pos = 0;
    for (const huge_entry_t *e; (e = _pm_table_next(&registry, &pos)) != NULL;)
        for (size_t i = 0; i < ncached; i++)
            if (e->ptr < cache[i].ptr + cache[i].size && cache[i].ptr < e->ptr + e->map_size)
                return "huge: a registered block lies in a cached run (handed out twice)";
    return NULL;
}

static const char *check_locked(void) {
    const char *why = check_registry();
    return why ? why : check_cache();
}

const char *_pm_huge_check(void) {
    pthread_mutex_lock(&huge_lock);
    const char *why = check_locked();
    pthread_mutex_unlock(&huge_lock);
    return why;
}

void _pm_huge_fork_prepare(void) { pthread_mutex_lock(&huge_lock); }
void _pm_huge_fork_parent(void) { pthread_mutex_unlock(&huge_lock); }
void _pm_huge_fork_child(void) { pthread_mutex_init(&huge_lock, NULL); }

/* The live huge blocks, for the heap map: at most cap of them (address, bytes requested) into
 * out; returns how many there are. */
size_t _pm_huge_list(pm_huge_block_t *out, size_t cap) {
    size_t n = 0, pos = 0;
    pthread_mutex_lock(&huge_lock);
    for (const huge_entry_t *e; (e = _pm_table_next(&registry, &pos)) != NULL; n++)
        if (n < cap) out[n] = (pm_huge_block_t){ e->ptr, e->size, e->map_size };
    huge_unlock();
    return n;
}
