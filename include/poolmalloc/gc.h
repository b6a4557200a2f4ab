/* poolmalloc/gc.h: refcounted objects and a generational cycle collector (CPython's memory model
 * for your own objects), built on poolmalloc's allocator.
 *
 * An object is a payload of `size` bytes that pm_new returns, preceded by a header of
 * PM_GC_HEADER_SIZE bytes (the collector's list links, the reference count and the type). The
 * payload is PM_GC_ALIGN-byte aligned. Reference counting frees an object as soon as its count
 * falls to zero; the collector finds the cycles that counting cannot free. See docs/objects.md.
 *
 * Threads: a pm_gc and all of its objects are used by one thread at a time. The caller serializes
 * (the way CPython's GIL or a Lua state does); separate pm_gc instances may run in separate
 * threads at once. An object may hold references only to objects of its own pm_gc.
 *
 * The block between "The core API" and "Additions" keeps the exact names and shapes that
 * programs are written against; everything after it was added later. */
#ifndef POOLMALLOC_GC_H
#define POOLMALLOC_GC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The core API ------------------------------------------------------------------------- */
typedef struct pm_gc pm_gc;                       /* one collector: generations, thresholds, stats */
typedef int  (*pm_visit)(void *obj, void *arg);   /* non-zero stops a traversal */
typedef struct pm_type {
    const char *name;
    int  (*traverse)(void *self, pm_visit visit, void *arg); /* NULL: not a container, never tracked */
    int  (*clear)(void *self);      /* drop the references self holds; breaks cycles */
    void (*finalize)(void *self);   /* optional; runs at most once per object; may resurrect */
    void (*dealloc)(void *self);    /* optional; release what self holds; the library frees the memory */
} pm_type;

pm_gc  *pm_gc_new(void);
void    pm_gc_destroy(pm_gc *gc);
void   *pm_new(pm_gc *gc, const pm_type *type, size_t size); /* zeroed, refcount 1, tracked if traverse */
void    pm_incref(void *obj);
void    pm_decref(void *obj);          /* at zero: untrack, finalize once, dealloc, free */
size_t  pm_refcount(const void *obj);
const pm_type *pm_type_of(const void *obj);
void    pm_track(void *obj);  void pm_untrack(void *obj);  int pm_is_tracked(const void *obj);

size_t  pm_gc_collect(pm_gc *gc, int generation);  /* 0..2; returns unreachable objects found */
void    pm_gc_enable(pm_gc *gc);  void pm_gc_disable(pm_gc *gc);  int pm_gc_isenabled(pm_gc *gc);
void    pm_gc_set_threshold(pm_gc *gc, int t0, int t1, int t2);
void    pm_gc_get_threshold(pm_gc *gc, int out[3]);
void    pm_gc_get_count(pm_gc *gc, int out[3]);
void    pm_gc_freeze(pm_gc *gc);  void pm_gc_unfreeze(pm_gc *gc);
size_t  pm_gc_get_freeze_count(pm_gc *gc);
typedef struct { size_t collections, collected, uncollectable; } pm_gc_stats;
void    pm_gc_get_stats(pm_gc *gc, pm_gc_stats out[3]);
enum { PM_GC_START, PM_GC_STOP };
typedef struct { int phase, generation; size_t collected, uncollectable; uint64_t duration_ns; } pm_gc_event;
int     pm_gc_add_callback(pm_gc *gc, void (*cb)(const pm_gc_event *ev, void *arg), void *arg);
size_t  pm_gc_get_objects(pm_gc *gc, int generation, void **out, size_t cap); /* -1: all */
size_t  pm_gc_get_referrers(pm_gc *gc, void *obj, void **out, size_t cap);
size_t  pm_gc_get_referents(void *obj, void **out, size_t cap);

typedef struct pm_weakref pm_weakref;
typedef void (*pm_weakref_callback)(pm_weakref *ref, void *arg);
pm_weakref *pm_weakref_new(void *obj, pm_weakref_callback cb, void *arg);
void   *pm_weakref_get(pm_weakref *ref);   /* a new strong reference, or NULL once the referent died */
void    pm_weakref_free(pm_weakref *ref);

/* ---- Additions ---------------------------------------------------------------------------- */

/* Layout: [header: PM_GC_HEADER_SIZE bytes][payload: size bytes], the payload PM_GC_ALIGN-aligned.
 * The header is four words: next and previous links of the generation list (the previous link
 * also carries the flags, and gc_refs during a collection), the reference count, and the type. */
#define PM_GC_HEADER_SIZE 32
#define PM_GC_ALIGN       16

/* Notes on the API above, as built:
 * - pm_gc_add_callback returns 0, or -1 when PM_GC_MAX_CALLBACKS are registered already.
 * - pm_gc_get_objects, pm_gc_get_referrers, pm_gc_get_referents and pm_gc_get_garbage write at
 *   most `cap` pointers and return how many there are in all (call with cap 0 to size a buffer).
 *   The pointers are borrowed: no reference is added.
 * - pm_gc_get_objects: generation 0..2, or -1 for all three. Frozen objects and saved garbage are
 *   in none of them (pm_gc_get_freeze_count, pm_gc_get_garbage).
 * - pm_gc_get_referrers searches every tracked object, frozen and saved garbage included; each
 *   referrer is listed once. pm_gc_get_referents lists each visit, in traversal order.
 * - A traverse function calls visit only for non-NULL references to objects of this library.
 * - pm_gc_collect of a generation outside 0..2 aborts with a message; a call made while this
 *   collector is collecting (from a finalizer or a weakref callback) returns 0. */
#define PM_GC_MAX_CALLBACKS 8
#define PM_GC_ALL (-1)

/* Uncollectable objects (a cycle in which no object has `clear`) are moved to the collector's
 * saved-garbage list, like CPython's gc.garbage: counted once, never scanned again. They are
 * still alive; a program may break their references itself and pm_decref them. */
size_t  pm_gc_get_garbage(pm_gc *gc, void **out, size_t cap);

/* Has the collector (or refcounting) already called this object's finalizer? */
int     pm_gc_is_finalized(const void *obj);

/* Debug flags, like CPython's gc.set_debug. */
enum {
    PM_GC_DEBUG_STATS         = 1,  /* one line on stderr per collection: generation, found, time */
    PM_GC_DEBUG_COLLECT_ALWAYS = 2, /* collect generation 0 at every pm_new of a tracked type:
                                     * flushes out missing references in traverse functions */
};
void    pm_gc_set_debug(pm_gc *gc, unsigned flags);
unsigned pm_gc_get_debug(pm_gc *gc);

/* Pause times of one generation's collections. Percentiles come from a fixed log-linear
 * histogram (8 sub-buckets per power of two): each is an upper bound within 12.5%. */
typedef struct { size_t count; uint64_t total_ns, max_ns, p50_ns, p99_ns; } pm_gc_pause_stats;
void    pm_gc_get_pause_stats(pm_gc *gc, int generation, pm_gc_pause_stats *out);

/* Per type: objects alive now, the most alive at once, allocated and freed in all. */
typedef struct { const pm_type *type; const char *name; size_t live, peak, allocated, freed; } pm_gc_type_stats;
size_t  pm_gc_get_type_stats(pm_gc *gc, pm_gc_type_stats *out, size_t cap); /* returns the type count */

/* "Why is this alive?": a chain of references from an object held from outside the collector
 * (its refcount exceeds the references other tracked objects hold) down to obj. out[0] is that
 * root, out[n-1] is obj; returns n, 0 if obj is reachable from no such root (it is garbage that
 * the next collection frees), and writes at most cap pointers. The chain is a shortest one. */
size_t  pm_gc_why_alive(pm_gc *gc, void *obj, void **out, size_t cap);
void    pm_gc_print_why_alive(pm_gc *gc, void *obj, int fd);   /* the same, one line per link */

/* The report: objects alive by type, and per generation collections, collected, uncollectable and
 * pause times. Written with write(2), without allocating. pm_gc_report_at_exit(gc, fd) asks for
 * the objects still alive by type at process exit (fd -1 cancels); the collector must be alive
 * then, or destroyed (pm_gc_destroy cancels it). */
void    pm_gc_report(pm_gc *gc, int fd);
void    pm_gc_report_at_exit(pm_gc *gc, int fd);

/* Another runtime's collector (CPython's, in the poolmalloc module) in the heap reports' gc
 * section, beside ours and in the same shape: per generation, collections, collected,
 * uncollectable and pause total, max, p50 and p99, with "collector": name. The runtime records
 * each of its collections as it ends. A process has at most 8; they live until it exits. Both
 * are safe from any thread; a report may read a collection half recorded (a counter behind). */
typedef struct pm_gc_external pm_gc_external;
pm_gc_external *pm_gc_external_new(const char *name);    /* NULL: eight already */
void    pm_gc_external_record(pm_gc_external *c, int generation, size_t collected, size_t uncollectable,
                              uint64_t pause_ns);

#ifdef __cplusplus
}
#endif
#endif
