/* stats.c: statistics by walking the arenas, in the spirit of CPython's sys._debugmallocstats().
 *
 * Nothing is counted on the fast paths: the walk reads every pool descriptor under the arena lock
 * (`used` with a relaxed load, since owners update it without a lock) and derives the rest. The
 * byte accounting must balance, and the report says whether it does:
 *
 *   mapped = in use + free in pools + pool tails + arena headers + free slots + huge rounding
 *            + cached huge runs
 *
 * and where the resident memory is: "decaying" bytes are free but still committed (dirty slots
 * and cached huge runs), kept for reuse and returned once unused for purge_delay ms.
 *
 * "in use" counts blocks handed out, including blocks freed by another thread that the owner has
 * not taken back yet, but not those in a thread's foreign cache (heap.c). Reports format into a fixed buffer and write(2) it: no malloc, no stdio. */
#define _GNU_SOURCE
#include "lens/lens.h"
#include "poolmalloc.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void _pm_stats_snapshot(pm_stats_snapshot_t *s) {
    memset(s, 0, sizeof *s);
    _pm_heap_start();
    pm_huge_counts_t huge;
    _pm_huge_counts(&huge);
    s->heaps = _pm_heap_count(&s->heaps_abandoned);
    size_t foreign[PM_FOREIGN_CLASSES];
    _pm_heap_foreign_counts(foreign);

    pthread_mutex_lock(&_pm_arena_lock);
    pm_arena_counts_t ac;
    _pm_arena_counts(&ac);
    for (pm_arena_t *a = _pm_arena_first(); a; a = a->all_next) {
        for (unsigned i = PM_HEADER_SLOTS; i < PM_SLOTS; i++) {
            const pm_pool_t *pool = &a->pools[i];
            if (a->heads[i] != pool || pool->slots == 0) continue;
            size_t used = _pm_pool_used(pool);
            size_t held = __atomic_load_n(&pool->held, __ATOMIC_RELAXED);   /* heap.c: the heap's own count */
            size_t cap = pool->capacity, size = pool->block_size;
            used = used > held ? used - held : 0;
            if (used > cap) used = cap;                     /* read while the owner moved its hold */
            pm_class_stats_t *cs = &s->cls[pool->size_class];
            cs->pools++;
            cs->blocks_used += used;
            cs->blocks_free += cap - used;
            s->in_use += used * size;
            s->free_in_pools += (cap - used) * size;
            s->quantization += (size_t)pool->slots * PM_SLOT_SIZE - cap * size;
        }
    }
    pthread_mutex_unlock(&_pm_arena_lock);
    /* Blocks in the threads' foreign caches (heap.c) are free, though their pools count them. */
    for (unsigned c = 0; c < PM_FOREIGN_CLASSES; c++) {
        pm_class_stats_t *cs = &s->cls[c];
        size_t n = foreign[c] < cs->blocks_used ? foreign[c] : cs->blocks_used, size = _pm_classes[c].size;
        cs->blocks_used -= n;
        cs->blocks_free += n;
        s->in_use -= n * size;
        s->free_in_pools += n * size;
    }

    s->arenas = ac.arenas;
    s->arenas_mapped_total = ac.arenas_mapped_total;
    s->arenas_unmapped_total = ac.arenas_unmapped_total;
    s->dirty_slots = ac.dirty_slots;
    s->arena_headers = ac.arenas * PM_HEADER_SLOTS * PM_SLOT_SIZE;
    s->free_slots = ac.free_slots * PM_SLOT_SIZE;
    s->huge_count = huge.count;
    s->huge_requested = huge.requested;
    s->huge_mapped = huge.mapped;
    s->huge_cached = huge.cached;
    s->huge_cached_runs = huge.cached_runs;
    s->huge_reused_total = huge.reused_total;
    s->mapped = ac.arenas * PM_ARENA_SIZE + huge.mapped + huge.cached;
    s->decaying = ac.dirty_slots * PM_SLOT_SIZE + huge.cached;
    s->returned = ac.returned_bytes + huge.returned_bytes;
}

/* The arena lock is held for a copy only: the writer formats it later, unlocked. Arenas mapped
 * meanwhile are left out when the copy is full (it is sized before the lock from a count). */
int _pm_heapmap_snapshot(pm_heapmap_t *m) {
    memset(m, 0, sizeof *m);
    _pm_heap_start();
    size_t nhuge = _pm_huge_list(NULL, 0) + 16;
    m->huge = _pm_os_map(nhuge * sizeof *m->huge);
    if (m->huge == NULL) return ENOMEM;
    m->huge_cap = nhuge;
    size_t n = _pm_huge_list(m->huge, nhuge);
    m->nhuge = n < nhuge ? n : nhuge;
    pthread_mutex_lock(&_pm_arena_lock);
    pm_arena_counts_t ac;
    _pm_arena_counts(&ac);
    pthread_mutex_unlock(&_pm_arena_lock);
    m->cap = ac.arenas + 4;
    m->arenas = _pm_os_map(m->cap * sizeof *m->arenas);
    if (m->arenas == NULL) { _pm_heapmap_free(m); return ENOMEM; }
    pthread_mutex_lock(&_pm_arena_lock);
    for (pm_arena_t *a = _pm_arena_first(); a && m->narenas < m->cap; a = a->all_next) {
        pm_map_arena_t *out = &m->arenas[m->narenas++];
        out->base = (uintptr_t)a;
        out->npools = 0;
        for (unsigned i = 0; i < PM_SLOTS; i++) {
            bool used = (a->slots_used.w[i / 64] >> (i % 64)) & 1, dirty = (a->slots_dirty.w[i / 64] >> (i % 64)) & 1;
            out->slots[i] = i < PM_HEADER_SLOTS ? PM_SLOT_HEADER : used ? PM_SLOT_POOL : dirty ? PM_SLOT_DIRTY : PM_SLOT_FREE;
            const pm_pool_t *pool = &a->pools[i];
            if (i < PM_HEADER_SLOTS || a->heads[i] != pool || pool->slots == 0) continue;
            size_t u = _pm_pool_used(pool), held = __atomic_load_n(&pool->held, __ATOMIC_RELAXED);
            u = u > held ? u - held : 0;
            if (u > pool->capacity) u = pool->capacity;
            out->pools[out->npools++] = (pm_map_pool_t){ (uint16_t)i, (uint16_t)pool->slots, (uint16_t)pool->size_class, 0,
                                                         (uint32_t)u, pool->capacity, (uintptr_t)pool->heap };
        }
    }
    pthread_mutex_unlock(&_pm_arena_lock);
    return 0;
}

void _pm_heapmap_free(pm_heapmap_t *m) {
    if (m->arenas) _pm_os_unmap(m->arenas, m->cap * sizeof *m->arenas);
    if (m->huge) _pm_os_unmap(m->huge, m->huge_cap * sizeof *m->huge);
    memset(m, 0, sizeof *m);
}

static void row(pm_out_t *o, const char *what, size_t bytes, size_t total) {
    unsigned pct10 = total ? (unsigned)((bytes * 1000 + total / 2) / total) : 0;
    _pm_out_printf(o, "  %-34s %16zu  %3u.%u%%\n", what, bytes, pct10 / 10, pct10 % 10);
}

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

void _pm_stats_fork_prepare(void) { pthread_mutex_lock(&print_lock); }
void _pm_stats_fork_parent(void) { pthread_mutex_unlock(&print_lock); }
void _pm_stats_fork_child(void) { pthread_mutex_init(&print_lock, NULL); }

void _pm_stats_print(int fd) {
    static pm_stats_snapshot_t s;        /* 2 KiB: kept off small thread stacks */
    char buf[PM_OUT_BUF];
    pm_out_t o;
    pthread_mutex_lock(&print_lock);
    _pm_stats_snapshot(&s);
    _pm_out_init(&o, buf, sizeof buf, fd);
    _pm_out_printf(&o, "=== poolmalloc statistics (pid %d) ===\n", (int)getpid());
    _pm_out_printf(&o, "%5s %8s %7s %5s %14s %14s %14s %14s\n", "class", "size", "slots", "pools",
                   "blocks used", "blocks free", "bytes used", "bytes free");
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        const pm_class_stats_t *cs = &s.cls[c];
        if (cs->pools == 0) continue;
        size_t size = _pm_classes[c].size;
        _pm_out_printf(&o, "%5u %8zu %7u %5zu %14zu %14zu %14zu %14zu\n", c, size,
                       (unsigned)_pm_classes[c].slots, cs->pools, cs->blocks_used, cs->blocks_free,
                       cs->blocks_used * size, cs->blocks_free * size);
    }
    _pm_out_printf(&o, "arenas: %zu mapped now (%zu KiB each), %zu mapped in total, %zu returned to the OS\n",
                   s.arenas, PM_ARENA_SIZE >> 10, s.arenas_mapped_total, s.arenas_unmapped_total);
    _pm_out_printf(&o, "free pool slots: %zu, of which %zu not yet decommitted\n",
                   s.free_slots / PM_SLOT_SIZE, s.dirty_slots);
    _pm_out_printf(&o, "huge blocks: %zu, %zu bytes requested, %zu bytes mapped; %zu freed runs cached (%zu bytes), "
                   "%zu requests served from the cache\n",
                   s.huge_count, s.huge_requested, s.huge_mapped, s.huge_cached_runs, s.huge_cached, s.huge_reused_total);
    _pm_out_printf(&o, "memory return: %zu bytes free but committed (%zu in free pool slots, %zu in cached huge runs), "
                   "reused first and returned after %zu ms unused; %zu bytes returned in total; background purge %s\n",
                   s.decaying, s.dirty_slots * PM_SLOT_SIZE, s.huge_cached, _pm_options.purge_delay, s.returned,
                   _pm_purge_thread_state());
    _pm_out_printf(&o, "heaps: %zu (%zu abandoned, waiting for a thread)\n", s.heaps, s.heaps_abandoned);
    pm_guard_counts_t g;
    _pm_guard_counts(&g);
    if (g.slots)                              /* their region is outside the arenas: not in the accounting */
        _pm_out_printf(&o, "guarded: %zu blocks live in %zu slots, %zu allocations guarded in total (guard:%zu)\n",
                       g.live, g.slots, g.guarded_total, _pm_sample_guard());
    _pm_out_printf(&o, "byte accounting %36s  share\n", "bytes");
    row(&o, "in use (blocks handed out)", s.in_use + s.huge_requested, s.mapped);
    row(&o, "free blocks in pools", s.free_in_pools, s.mapped);
    row(&o, "pool tails (quantization)", s.quantization, s.mapped);
    row(&o, "arena headers", s.arena_headers, s.mapped);
    row(&o, "free pool slots", s.free_slots, s.mapped);
    row(&o, "huge page rounding", s.huge_mapped - s.huge_requested, s.mapped);
    row(&o, "cached huge runs (freed, for reuse)", s.huge_cached, s.mapped);
    size_t sum = s.in_use + s.huge_requested + s.free_in_pools + s.quantization + s.arena_headers +
                 s.free_slots + (s.huge_mapped - s.huge_requested) + s.huge_cached;
    _pm_out_printf(&o, "  %-34s %16zu  %s\n", "= total mapped", s.mapped,
                   sum == s.mapped ? "(balanced)" : "(NOT BALANCED: a bug, please report)");
    long rss = _pm_os_resident_bytes();
    if (rss >= 0) _pm_out_printf(&o, "resident set (whole process): %ld bytes\n", rss);
    _pm_out_flush(&o);
    pthread_mutex_unlock(&print_lock);
}

PM_EXPORT void pm_stats_get(pm_stats_t *out) {
    pm_stats_snapshot_t s;
    _pm_stats_snapshot(&s);
    long rss = _pm_os_resident_bytes();
    out->mapped = s.mapped;
    out->in_use = s.in_use + s.huge_requested;
    out->free = s.free_in_pools + s.huge_cached;
    out->overhead = s.quantization + s.arena_headers + s.free_slots + (s.huge_mapped - s.huge_requested);
    out->decaying = s.decaying;
    out->returned = s.returned;
    out->arenas = s.arenas;
    out->huge_blocks = s.huge_count;
    out->resident = rss > 0 ? (size_t)rss : 0;
}
