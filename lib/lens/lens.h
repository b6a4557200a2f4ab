/* lens/lens.h: the lens: statistics, allocation-site sampling, the report writers and the
 * reporter thread that writes them on a signal, and pm_ctl. It looks at the heap from above. */
#ifndef PM_LENS_H
#define PM_LENS_H
#include "heap/heap.h"

#pragma GCC visibility push(hidden)

/* ---- stats.c ------------------------------------------------------------------------------ */
typedef struct {
    size_t pools, blocks_used, blocks_free;
} pm_class_stats_t;
typedef struct {
    pm_class_stats_t cls[PM_NCLASSES];
    size_t mapped, arena_headers, free_slots, in_use, free_in_pools, quantization;
    size_t huge_count, huge_requested, huge_mapped;
    size_t huge_cached, huge_cached_runs, huge_reused_total;  /* freed huge runs kept for reuse */
    size_t arenas, arenas_mapped_total, arenas_unmapped_total, dirty_slots;
    size_t decaying;       /* free and still committed: dirty slots and cached huge runs */
    size_t returned;       /* given back to the OS in total (decommitted or unmapped) */
    size_t heaps, heaps_abandoned;
} pm_stats_snapshot_t;
void _pm_stats_snapshot(pm_stats_snapshot_t *out);
/* The heap map (the JSON report's "map", the HTML report's picture): per arena, each slot's state
 * (PM_MAP_*) and each pool: its first slot, slots, class, blocks used and capacity, owning heap. */
enum { PM_SLOT_HEADER = 'h', PM_SLOT_FREE = '.', PM_SLOT_DIRTY = 'd', PM_SLOT_POOL = 'p' };
typedef struct { uint16_t slot, slots; uint16_t size_class, _pad; uint32_t used, capacity; uintptr_t heap; } pm_map_pool_t;
typedef struct { uintptr_t base; char slots[PM_SLOTS]; uint32_t npools; pm_map_pool_t pools[PM_SLOTS]; } pm_map_arena_t;
typedef struct { pm_map_arena_t *arenas; size_t narenas, cap; pm_huge_block_t *huge; size_t nhuge, huge_cap; } pm_heapmap_t;
int  _pm_heapmap_snapshot(pm_heapmap_t *out);      /* 0 or ENOMEM; its own mappings */
void _pm_heapmap_free(pm_heapmap_t *m);
void _pm_lens_start(void);   /* ctl.c: the heap, and the sampler at the configured rate; idempotent */
void _pm_stats_print(int fd);
void _pm_stats_fork_prepare(void);
void _pm_stats_fork_parent(void);
void _pm_stats_fork_child(void);

/* ---- sample.c: allocation-site sampling --------------------------------------------------- */
#define PM_MAX_FRAMES 48
void   _pm_sample_set_rate(size_t rate);      /* registers the sampler with the heap (heap.h) */
size_t _pm_sample_rate(void);
void   _pm_sample_set_guard(size_t every);    /* guard:N: about one allocation in N guarded; 0 off */
size_t _pm_sample_guard(void);
double _pm_sample_mean_size(void);            /* the request size the guard rate assumes (estimated) */
void   _pm_sample_set_guard_cap(uint64_t per_second);  /* guarded allocations a second at most; 0: no cap */
double _pm_sample_weight(size_t size, size_t rate);          /* 1 / P(an allocation of size is sampled) */
void   _pm_sample_fork_prepare(void);
void   _pm_sample_fork_parent(void);
void   _pm_sample_fork_child(void);
/* A copy of the site table for the report writers, made under the sampler's lock. */
typedef struct {
    uint64_t live_count, live_bytes;          /* sampled blocks still live (raw) */
    double   live_est_count, live_est_bytes;  /* the same, unbiased estimates */
    uint64_t alloc_count, alloc_bytes;        /* every sampled allocation (raw) */
    double   alloc_est_count, alloc_est_bytes;
    uint32_t nframes;
    void    *frames[PM_MAX_FRAMES];           /* return addresses, innermost first */
} pm_site_t;
typedef struct {
    size_t      nsites, cap;
    size_t      rate;
    pm_site_t  *sites;                        /* its own mapping: release with _pm_sites_free */
} pm_sites_t;
int  _pm_sites_snapshot(pm_sites_t *out);    /* 0 or ENOMEM */
unsigned _pm_sample_stack_of(const void *block, void **frames, unsigned max); /* 0: not sampled */
void _pm_sites_free(pm_sites_t *s);
const char *_pm_sample_check(void);          /* takes the lock: NULL, or the invariant that failed */

/* ---- frames.c: frames of an interpreted language (pm_set_frame_source) -------------------- */
/* In a stack, an interpreted frame is its pm_frame_intern id with bit 63 set, which no user-space
 * return address has; the report writers name it from its record. */
#define PM_FRAME_TAG ((uintptr_t)1 << 63)
#define PM_MAX_FOREIGN_FRAMES 32              /* of PM_MAX_FRAMES; the native ones get the rest */
static inline bool _pm_frame_is_foreign(const void *frame) { return ((uintptr_t)frame & PM_FRAME_TAG) != 0; }
typedef struct { const char *function, *file, *symbol; unsigned line; } pm_frame_rec_t;   /* symbol: "f (file:line)" */
const pm_frame_rec_t *_pm_frame_rec(const void *frame);   /* NULL: not an interpreted frame's id */
const char *_pm_frames_kind(void);                      /* the source's kind, "python" */
const char *_pm_frames_eval_symbol(void);               /* its evaluation function, or "" */
unsigned _pm_frames_capture(void **frames, unsigned max);   /* the source's stack, tagged */
void _pm_frames_fork_prepare(void);
void _pm_frames_fork_parent(void);
void _pm_frames_fork_child(void);

/* ---- report.c: the report formats, written to an fd without malloc in the allocator ---------- */
int  _pm_report_write(int fd, unsigned format, unsigned seq);   /* PM_FMT_* (one); 0 or errno */
void *_pm_report_dump_open(int *err);        /* a dump's copy of the sites: NULL and *err, or it */
int  _pm_report_dump_write(void *view, int fd, unsigned format, unsigned seq);
void _pm_report_dump_close(void *view);
void _pm_report_leaks(int fd);
void _pm_report_stack(pm_out_t *o, void *const *frames, unsigned n);   /* "f+0x1 <- g+0x2 <- ..." */
void _pm_report_frames(pm_out_t *o, void *const *frames, unsigned n);  /* one a line, as the text report */
/* Sections that higher layers add to every text and JSON report (the collector adds its own).
 * The writer gets the output and PM_FMT_TEXT or PM_FMT_JSON; JSON writers print one member,
 * `"name":value`, and the report places the commas. */
typedef void (*pm_report_section_fn)(pm_out_t *o, unsigned format);
void _pm_report_add_section(pm_report_section_fn fn);

/* ---- html.c: the HTML report's page (report.html), NUL-terminated; PM_HTML_MARKER marks where
 * the JSON report goes ---------------------------------------------------------------------- */
extern const char _pm_html_page[], _pm_html_page_end[];
#define PM_HTML_MARKER "/*POOLMALLOC-DATA*/"

/* ---- proto.c: profile.proto, gzipped ------------------------------------------------------- */
/* The k-th site to write: its frames in the profile's order (innermost first), each one's
 * function name, file ("" if none) and line (0), and its estimates alloc_count, alloc_bytes,
 * live_count, live_bytes; returns the frame count. The strings stay valid until the next call. */
typedef unsigned (*pm_proto_site_fn)(void *view, size_t k, void **frames, const char **names, const char **files,
                                     unsigned *lines, double *values);
int  _pm_proto_write(int fd, pm_proto_site_fn site_at, void *view, size_t nsites, size_t rate);   /* 0 or errno */

/* ---- guard_report.c: what a fault on a guarded slot (heap/guard.c) prints ------------------- */
void _pm_guard_report_start(void);           /* installs the SIGSEGV and SIGBUS handler, once */

/* ---- reporter.c: the signal, the trigger socket, the reporter thread, the files -------------- */
void _pm_reporter_start(void);               /* after init, when reports are configured */
void _pm_reporter_trigger(void);             /* async-signal-safe: ask for a dump */
void _pm_reporter_at_exit(void);
void _pm_reporter_count(size_t est_bytes);   /* sampled bytes, for `interval` */
int  _pm_reporter_dump_now(char *paths, size_t cap);  /* synchronous dump; 0 or errno */
void _pm_reporter_fork_prepare(void);
void _pm_reporter_fork_parent(void);
void _pm_reporter_fork_child(void);
size_t _pm_reporter_seq(void);


#pragma GCC visibility pop
#endif
