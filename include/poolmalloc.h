/* poolmalloc.h: the public API of poolmalloc, a pymalloc-style drop-in malloc.
 *
 * Linking with -lpoolmalloc (or preloading libpoolmalloc.so) replaces malloc, free and the rest of
 * the C allocation family for the whole process. These pm_ names are the same allocator under
 * names that never collide with libc, plus what libc has no name for. */
#ifndef POOLMALLOC_H
#define POOLMALLOC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define POOLMALLOC_VERSION_MAJOR 0
#define POOLMALLOC_VERSION_MINOR 1

void  *pm_malloc(size_t size);
void  *pm_calloc(size_t count, size_t size);
void  *pm_realloc(void *p, size_t size);
void   pm_free(void *p);
void  *pm_aligned_alloc(size_t alignment, size_t size);
size_t pm_usable_size(const void *p);

/* Give free memory back to the OS now, without waiting for purge_delay: the empty pools and
 * spares of the calling thread's heap and of abandoned heaps, every free pool slot, free arena and
 * cached huge run. Returns the number of bytes released. */
size_t pm_trim(void);

/* Write the statistics report (the one POOLMALLOC_CONF=stats:true prints at exit) to fd. */
void   pm_stats_print(int fd);

/* Totals from a walk of every arena; they balance: mapped == in_use + free + overhead. */
typedef struct {
    size_t mapped;      /* bytes mapped from the OS: arenas plus huge mappings */
    size_t in_use;      /* bytes in blocks handed out (block sizes, huge: bytes requested) */
    size_t free;        /* bytes in free blocks inside pools, and in freed huge runs kept for reuse */
    size_t overhead;    /* pool tails, arena headers, free pool slots, huge page rounding */
    size_t arenas;      /* arenas mapped now */
    size_t huge_blocks; /* huge blocks live now */
    size_t resident;    /* resident set size of the whole process, 0 if unknown */
    size_t decaying;    /* free but still committed (free pool slots not yet decommitted, cached
                           huge runs): reused first, returned once unused for purge_delay ms */
    size_t returned;    /* bytes given back to the OS so far (decommitted or unmapped) */
} pm_stats_t;
void   pm_stats_get(pm_stats_t *out);

/* Read or change a setting, shaped like jemalloc's mallctl. Names: "opt.<option>" (any
 * POOLMALLOC_CONF option, as text), "sample.rate" (size_t), "stats.live_bytes",
 * "stats.mapped_bytes", "stats.resident_bytes", "stats.decaying_bytes", "stats.returned_bytes"
 * (size_t, read-only), "report.dump" (write anything:
 * dump the configured formats now; read: the paths written), "report.seq" (size_t, read-only).
 * Returns 0 or an errno value (ENOENT, EINVAL, EPERM, ERANGE). */
int    pm_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen);

/* Write a heap report to fd now: format "text", "json", "pprof", "folded", "proto" (profile.proto,
 * gzipped) or "html". 0 or an errno. */
int    pm_report(int fd, const char *format);

/* Is p in memory this allocator manages (a block it handed out, live or freed)? For wrapping an
 * allocator that was in use first: free through pm_free what pm_owns, the rest through the old
 * one (the CPython module does this for the blocks pymalloc handed out before it took over). */
int    pm_owns(const void *p);

/* Frames of an interpreted language, beside the native ones, in sampled allocation sites.
 * An interpreter registers a source: at each sampled allocation, on the allocating thread, with
 * sampling suspended there (so the source may allocate), poolmalloc asks it for the language's
 * stack, innermost first, as at most `max` ids from pm_frame_intern, and returns how many it
 * wrote (0: none, say on a thread that runs no interpreted code). Reports put those frames before
 * the native ones, named "function (file:line)" with `kind` ("python") in the JSON report.
 * `eval_symbol`, when not NULL, names the interpreter's evaluation function: a folded stack (a
 * flame graph) of a site with interpreted frames keeps only the native frames inside it, so that
 * it reads in the interpreted language. A NULL source turns it off.
 * pm_frame_intern gives a frame's id, the same for the same three values; 0 when out of memory.
 * Ids are never freed: intern each distinct frame once and keep its id. */
typedef unsigned (*pm_frame_source_fn)(uint64_t *ids, unsigned max);
void     pm_set_frame_source(pm_frame_source_fn source, const char *kind, const char *eval_symbol);
uint64_t pm_frame_intern(const char *function, const char *file, unsigned line);

#ifdef __cplusplus
}
#endif
#endif
