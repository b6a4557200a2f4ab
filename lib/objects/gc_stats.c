/* gc_stats.c: the collector's instrumentation: pause times in a bounded histogram, per-type
 * counters, the report, and the report at exit.
 *
 * Pause histogram: log-linear, like HdrHistogram with 3 significant bits. A pause of v ns lands in
 * bucket v for v < 8; otherwise, with b the index of v's top bit, in 8 * (b - 2) + the three bits
 * below the top one. Each bucket spans at most 1/8 of its lower bound, so a percentile read as
 * its bucket's upper bound is high by less than 12.5%. 304 buckets reach 2^40 ns (18 minutes);
 * longer pauses count in the last. Fixed size: memory does not grow with the number of pauses.
 *
 * Reports are formatted with util/fmt.c into a stack buffer and written with write(2): no stdio, no
 * allocation, so they may run at exit or from a signal-driven reporter. */
#define _GNU_SOURCE
#include "objects/objects.h"

#include <string.h>
#include <unistd.h>

static unsigned pause_bucket(uint64_t ns) {
    if (ns < 8) return (unsigned)ns;
    unsigned b = 63u - (unsigned)__builtin_clzll(ns);
    unsigned i = 8 * (b - 2) + (unsigned)((ns >> (b - 3)) & 7);
    return i < PM_PAUSE_BUCKETS ? i : PM_PAUSE_BUCKETS - 1;
}

static uint64_t bucket_upper(unsigned i) {
    if (i < 8) return i;
    unsigned b = i / 8 + 2, sub = i % 8;
    return ((uint64_t)(8 + sub + 1) << (b - 3)) - 1;
}
_Static_assert(8 * (40 - 2) == PM_PAUSE_BUCKETS, "the histogram reaches 2^40 ns");

void _pm_gc_record_pause(pm_gc *gc, int generation, uint64_t ns) {
    pm_gen_stats_t *st = &gc->stats[generation];
    st->pause_total_ns += ns;
    if (ns > st->pause_max_ns) st->pause_max_ns = ns;
    st->pause_hist[pause_bucket(ns)]++;
}

static uint64_t percentile(const pm_gen_stats_t *st, unsigned permille) {
    if (st->collections == 0) return 0;
    size_t want = (st->collections * permille + 999) / 1000, seen = 0;
    for (unsigned i = 0; i < PM_PAUSE_BUCKETS; i++) {
        seen += st->pause_hist[i];
        if (seen >= want) {
            uint64_t up = bucket_upper(i);
            return up < st->pause_max_ns ? up : st->pause_max_ns;
        }
    }
    return st->pause_max_ns;
}

PM_EXPORT void pm_gc_get_pause_stats(pm_gc *gc, int generation, pm_gc_pause_stats *out) {
    if (generation < 0 || generation >= PM_GC_GENERATIONS)
        _pm_fatal("pm_gc_get_pause_stats(): generation %d is not 0, 1 or 2", generation);
    const pm_gen_stats_t *st = &gc->stats[generation];
    out->count = st->collections;
    out->total_ns = st->pause_total_ns;
    out->max_ns = st->pause_max_ns;
    out->p50_ns = percentile(st, 500);
    out->p99_ns = percentile(st, 990);
}

PM_EXPORT size_t pm_gc_get_type_stats(pm_gc *gc, pm_gc_type_stats *out, size_t cap) {
    size_t n = 0;
    for (pm_type_rec_t *r = gc->types_all; r; r = r->all_next, n++) {
        if (n >= cap) continue;
        out[n] = (pm_gc_type_stats){ r->type, r->type->name, r->live, r->peak, r->allocated, r->freed };
    }
    return n;
}

/* ---- Reports --------------------------------------------------------------------------------- */

static void report_types(pm_out_t *o, pm_gc *gc, bool live_only) {
    size_t live = 0, types = 0;
    for (pm_type_rec_t *r = gc->types_all; r; r = r->all_next) { live += r->live; types += r->live != 0; }
    _pm_out_printf(o, "poolmalloc gc %p: %zu objects alive in %zu types\n", (void *)gc, live, types);
    _pm_out_printf(o, "  %-24s %12s %12s %14s %14s\n", "type", "live", "peak", "allocated", "freed");
    for (pm_type_rec_t *r = gc->types_all; r; r = r->all_next) {
        if (live_only && r->live == 0) continue;
        _pm_out_printf(o, "  %-24s %12zu %12zu %14zu %14zu\n", r->type->name, r->live, r->peak, r->allocated, r->freed);
    }
}

PM_EXPORT void pm_gc_report(pm_gc *gc, int fd) {
    char buf[PM_OUT_BUF];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    report_types(&o, gc, false);
    _pm_out_printf(&o, "  %-10s %11s %11s %13s %12s %10s %10s %10s\n", "generation", "collections",
                   "collected", "uncollectable", "pause total", "max", "p50", "p99");
    for (int i = 0; i < PM_GC_GENERATIONS; i++) {
        pm_gc_pause_stats p;
        pm_gc_get_pause_stats(gc, i, &p);
        const pm_gen_stats_t *st = &gc->stats[i];
        _pm_out_printf(&o, "  %-10d %11zu %11zu %13zu %9lu us %7lu us %7lu us %7lu us\n", i, st->collections,
                       st->collected, st->uncollectable, (unsigned long)(p.total_ns / 1000),
                       (unsigned long)(p.max_ns / 1000), (unsigned long)(p.p50_ns / 1000), (unsigned long)(p.p99_ns / 1000));
    }
    int count[3];
    pm_gc_get_count(gc, count);
    _pm_out_printf(&o, "  tracked: generations %zu / %zu / %zu, frozen %zu, saved garbage %zu; counts %d %d %d\n",
                   _pm_list_size(&gc->gen[0].head), _pm_list_size(&gc->gen[1].head), _pm_list_size(&gc->gen[2].head),
                   _pm_list_size(&gc->permanent), _pm_list_size(&gc->garbage), count[0], count[1], count[2]);
    _pm_out_flush(&o);
}

/* ---- In the heap reports ----
 * Every collector is listed in the text and JSON heap reports (report.c calls the section writer
 * registered here). The report runs in the reporter thread while the collector's owner may be
 * using it, so it reads only counters (a little stale at worst) and the type records, which are
 * published with a release store and freed only after pm_gc_destroy has taken the collector out
 * of this registry under its lock. It never walks the object lists. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;   /* the at-exit list, below */
static pm_gc *registry;

/* Another runtime's collectors (pm_gc_external_new): a fixed table, never freed, so that a report
 * reads it with no lock but the count's acquire. */
#define MAX_EXTERNAL 8
struct pm_gc_external { char name[32]; pm_gen_stats_t stats[PM_GC_GENERATIONS]; };
static pm_gc_external externals[MAX_EXTERNAL];
static _Atomic unsigned nexternal;
static pthread_mutex_t external_lock = PTHREAD_MUTEX_INITIALIZER;

/* The generations of a collector, ours or another's, in the JSON report or as table rows. */
static void generations_section(pm_out_t *o, bool json, const pm_gen_stats_t *stats) {
    for (int i = 0; i < PM_GC_GENERATIONS; i++) {
        const pm_gen_stats_t *st = &stats[i];
        uint64_t p50 = percentile(st, 500), p99 = percentile(st, 990);
        if (json) {
            _pm_out_printf(o, "%s{\"collections\":%zu,\"collected\":%zu,\"uncollectable\":%zu,"
                           "\"pause_total_ns\":%llu,\"pause_max_ns\":%llu,\"pause_p50_ns\":%llu,\"pause_p99_ns\":%llu,"
                           "\"pause_hist\":[",
                           i ? "," : "", st->collections, st->collected, st->uncollectable,
                           (unsigned long long)st->pause_total_ns, (unsigned long long)st->pause_max_ns,
                           (unsigned long long)p50, (unsigned long long)p99);
            /* the histogram's nonzero buckets: [upper bound in ns, pauses] (version 2) */
            const char *sep = "";
            for (unsigned b = 0; b < PM_PAUSE_BUCKETS; b++) {
                if (st->pause_hist[b] == 0) continue;
                _pm_out_printf(o, "%s[%llu,%u]", sep, (unsigned long long)bucket_upper(b), st->pause_hist[b]);
                sep = ",";
            }
            _pm_out_printf(o, "]}");
        } else
            _pm_out_printf(o, "    %-10d %11zu %11zu %13zu %9lu us %7lu us %7lu us %7lu us\n", i, st->collections,
                           st->collected, st->uncollectable, (unsigned long)(st->pause_total_ns / 1000),
                           (unsigned long)(st->pause_max_ns / 1000), (unsigned long)(p50 / 1000),
                           (unsigned long)(p99 / 1000));
    }
}

#define GEN_HEADER "    %-10s %11s %11s %13s %12s %10s %10s %10s\n", "generation", "collections", "collected", \
                   "uncollectable", "pause total", "max", "p50", "p99"

static void gc_section(pm_out_t *o, unsigned format) {
    pthread_mutex_lock(&registry_lock);
    bool json = format == PM_FMT_JSON;
    unsigned next = atomic_load_explicit(&nexternal, memory_order_acquire);
    if (json) _pm_out_printf(o, "\"gc\":[");
    else _pm_out_printf(o, "collectors (poolmalloc/gc.h):%s\n", registry || next ? "" : " none");
    for (pm_gc *gc = registry; gc; gc = gc->all_next) {
        if (json) _pm_out_printf(o, "%s\n {\"collector\":\"%p\",\"enabled\":%s,\"generations\":[", gc == registry ? "" : ",",
                                 (void *)gc, gc->enabled ? "true" : "false");
        else {
            _pm_out_printf(o, "  collector %p%s\n", (void *)gc, gc->enabled ? "" : " (disabled)");
            _pm_out_printf(o, GEN_HEADER);
        }
        generations_section(o, json, gc->stats);
        if (json) _pm_out_printf(o, "],\"types\":[");
        else _pm_out_printf(o, "    %-24s %12s %12s %14s %14s\n", "type", "live", "peak", "allocated", "freed");
        const char *sep = "";
        for (pm_type_rec_t *r = __atomic_load_n(&gc->types_all, __ATOMIC_ACQUIRE); r;
             r = __atomic_load_n(&r->all_next, __ATOMIC_ACQUIRE)) {
            const char *name = r->type && r->type->name ? r->type->name : "?";
            if (json) {                       /* a type's name is the program's: escaped */
                _pm_out_printf(o, "%s{\"name\":", sep);
                _pm_out_json_string(o, name);
                _pm_out_printf(o, ",\"live\":%zu,\"peak\":%zu,\"allocated\":%zu,\"freed\":%zu}",
                               r->live, r->peak, r->allocated, r->freed);
            }
            else
                _pm_out_printf(o, "    %-24s %12zu %12zu %14zu %14zu\n", name, r->live, r->peak, r->allocated, r->freed);
            sep = ",";
        }
        if (json) _pm_out_printf(o, "]}");
    }
    for (unsigned k = 0; k < next; k++) {
        const pm_gc_external *c = &externals[k];
        if (json) {
            _pm_out_printf(o, "%s\n {\"collector\":\"%s\",\"generations\":[", registry || k ? "," : "", c->name);
        } else {
            _pm_out_printf(o, "  collector %s\n", c->name);
            _pm_out_printf(o, GEN_HEADER);
        }
        generations_section(o, json, c->stats);
        if (json) _pm_out_printf(o, "]}");
    }
    if (json) _pm_out_printf(o, "]");
    pthread_mutex_unlock(&registry_lock);
}

static void gc_register_fork_handler(void);
static pthread_once_t fork_handler_once;

PM_EXPORT pm_gc_external *pm_gc_external_new(const char *name) {
    pthread_once(&fork_handler_once, gc_register_fork_handler);
    pthread_mutex_lock(&external_lock);
    unsigned n = atomic_load_explicit(&nexternal, memory_order_relaxed);
    pm_gc_external *c = NULL;
    if (n < MAX_EXTERNAL) {
        c = &externals[n];
        memset(c, 0, sizeof *c);
        /* a name that JSON can hold as it is: letters, digits and "._-" kept, the rest '_' */
        size_t i = 0;
        for (const char *p = name ? name : "external"; *p && i + 1 < sizeof c->name; p++, i++) {
            char ch = *p;
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == '-';
            c->name[i] = ok ? ch : '_';
        }
        atomic_store_explicit(&nexternal, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&external_lock);
    if (c) _pm_report_add_section(gc_section);
    return c;
}

PM_EXPORT void pm_gc_external_record(pm_gc_external *c, int generation, size_t collected, size_t uncollectable,
                                     uint64_t pause_ns) {
    if (c == NULL || generation < 0 || generation >= PM_GC_GENERATIONS)
        _pm_fatal("pm_gc_external_record(): generation %d is not 0, 1 or 2", generation);
    pm_gen_stats_t *st = &c->stats[generation];
    st->collections++;
    st->collected += collected;
    st->uncollectable += uncollectable;
    st->pause_total_ns += pause_ns;
    if (pause_ns > st->pause_max_ns) st->pause_max_ns = pause_ns;
    st->pause_hist[pause_bucket(pause_ns)]++;
}

/* fork(): a heap report holds registry_lock only inside a dump, and fork waits for a dump to end
 * (init.c), so at most another thread's pm_gc_new or pm_gc_destroy can hold these locks at fork,
 * for a few instructions; the child starts them afresh. */
static void gc_fork_child(void) {
    pthread_mutex_init(&registry_lock, NULL);
    pthread_mutex_init(&external_lock, NULL);
    pthread_mutex_init(&exit_lock, NULL);
}
static void gc_register_fork_handler(void) { pthread_atfork(NULL, NULL, gc_fork_child); }

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;   /* declared above */

void _pm_gc_registry_add(pm_gc *gc) {
    pthread_once(&fork_handler_once, gc_register_fork_handler);
    _pm_report_add_section(gc_section);
    pthread_mutex_lock(&registry_lock);
    gc->all_next = registry;
    registry = gc;
    pthread_mutex_unlock(&registry_lock);
}

void _pm_gc_registry_remove(pm_gc *gc) {
    pthread_mutex_lock(&registry_lock);
    for (pm_gc **p = &registry; *p; p = &(*p)->all_next)
        if (*p == gc) { *p = gc->all_next; break; }
    pthread_mutex_unlock(&registry_lock);
}

/* ---- At exit -------------------------------------------------------------------------------- */
/* Collectors that asked for a report at exit, linked through exit_next. Several threads may own
 * collectors, so the registry has a lock; the report at exit reads each collector unlocked, as
 * the program is ending (a collector still in use by another thread then may print a torn line). */
static pm_gc *exit_list;

void _pm_gc_exit_unregister(pm_gc *gc) {
    pthread_mutex_lock(&exit_lock);
    for (pm_gc **p = &exit_list; *p; p = &(*p)->exit_next)
        if (*p == gc) { *p = gc->exit_next; break; }
    gc->exit_next = NULL;
    gc->exit_report_fd = -1;
    pthread_mutex_unlock(&exit_lock);
}

PM_EXPORT void pm_gc_report_at_exit(pm_gc *gc, int fd) {
    _pm_gc_exit_unregister(gc);
    if (fd < 0) return;
    pthread_mutex_lock(&exit_lock);
    gc->exit_report_fd = fd;
    gc->exit_next = exit_list;
    exit_list = gc;
    pthread_mutex_unlock(&exit_lock);
}

__attribute__((destructor)) static void report_at_exit(void) {
    pthread_mutex_lock(&exit_lock);
    for (pm_gc *gc = exit_list; gc; gc = gc->exit_next) {
        char buf[2048];
        pm_out_t o;
        _pm_out_init(&o, buf, sizeof buf, gc->exit_report_fd);
        _pm_out_printf(&o, "=== objects still alive at exit ===\n");
        report_types(&o, gc, true);
        _pm_out_flush(&o);
    }
    pthread_mutex_unlock(&exit_lock);
}
