/* objects/objects.h: the object layer (object.c, collect.c, inspect.c, weakref.c, gc_stats.c):
 * their types and cross-file prototypes. The layers above include this file alone.
 *
 * Glossary (CPython's gcmodule vocabulary):
 *   object      a payload handed to the program, preceded by its header (pm_head_t). The header
 *               is PM_GC_HEADER_SIZE (32) bytes at the start of an allocator block, so the payload
 *               keeps the block's 16-byte alignment.
 *   type record one per (collector, pm_type): the type's functions copied for one-load access,
 *               the collector it belongs to, and the per-type counters. Headers point to it.
 *   container   an object whose type has `traverse`. Only containers are tracked.
 *   tracked     on one of the collector's lists: generation 0, 1 or 2, the permanent generation
 *               (frozen), or the saved garbage. head->next == NULL means untracked.
 *   generation  a circular doubly-linked list with a sentinel head, plus a threshold and a count.
 *   gc_refs     during a collection, a working copy of the refcount kept in the `prev` word (the
 *               previous link is rebuilt afterwards), as CPython 3.8+ does to fit in two words.
 *   unreachable the objects of a collected set that no reference from outside the set reaches.
 *   trashcan    objects whose deallocation was deferred so that freeing a long chain does not
 *               recurse deeper than PM_TRASHCAN_DEPTH.
 *
 * Invariants (checked by _pm_gc_check):
 *   - every tracked object is in exactly one list of its own collector, and each list is a
 *     well-formed ring (x->next->prev == x);
 *   - outside a collection no header carries PM_PREV_COLLECTING or PM_NEXT_UNREACHABLE;
 *   - a tracked object's type has traverse; a live object's refcount is in 1..PM_REFCOUNT_LIMIT-1;
 *   - per type record: live == allocated - freed and peak >= live.
 */
#ifndef PM_OBJECTS_H
#define PM_OBJECTS_H

#include "lens/lens.h"
#include "poolmalloc/gc.h"

#pragma GCC visibility push(hidden)

/* ---- Tunables ----------------------------------------------------------------------------- */
#define PM_GC_GENERATIONS   3
#define PM_GC_THRESHOLD0    700     /* allocations of containers minus deallocations, for gen 0 */
#define PM_GC_THRESHOLD1    10      /* gen 0 collections before a gen 1 collection */
#define PM_GC_THRESHOLD2    10      /* gen 1 collections before a full one (and the 25% rule) */
#define PM_TRASHCAN_DEPTH   50      /* nested deallocations before the trashcan defers (CPython: 50) */
#define PM_PAUSE_BUCKETS    304     /* log-linear: 8 per power of two up to 2^40 ns (18 min) */

/* ---- The header ---------------------------------------------------------------------------- */
typedef struct pm_type_rec_s pm_type_rec_t;
typedef struct pm_head_s pm_head_t;
struct pm_head_s {
    uintptr_t      next;      /* next in the list | PM_NEXT_UNREACHABLE; 0 when untracked */
    uintptr_t      prev;      /* previous in the list (or gc_refs << PM_REFS_SHIFT) | flags */
    size_t         refcount;  /* PM_REFCOUNT_FREED once freed: the poisoned header */
    pm_type_rec_t *rec;
} __attribute__((aligned(16)));      /* list heads inside pm_gc too: prev's 4 flag bits must be free */
_Static_assert(sizeof(pm_head_t) == PM_GC_HEADER_SIZE, "the header size is documented in gc.h");
_Static_assert(PM_GC_HEADER_SIZE % PM_GC_ALIGN == 0 && PM_ALIGN % PM_GC_ALIGN == 0,
               "blocks are 16-aligned and the header keeps the payload so");

/* Flags in the low bits of `prev` (headers are 16-aligned, so a pointer leaves 4 bits free). */
#define PM_PREV_FINALIZED   ((uintptr_t)1)  /* the finalizer ran (never reset) */
#define PM_PREV_COLLECTING  ((uintptr_t)2)  /* in the set being collected; prev holds gc_refs */
#define PM_PREV_WEAKREFS    ((uintptr_t)4)  /* weak references point here (weakref.c's table) */
#define PM_PREV_FLAGS       ((uintptr_t)7)
#define PM_REFS_SHIFT       3
#define PM_PREV_PTR_MASK    (~(uintptr_t)15)
/* In the low bit of `next`, during move_unreachable only: the object is on the unreachable list. */
#define PM_NEXT_UNREACHABLE ((uintptr_t)1)

/* Refcounts at or above the limit are invalid; a freed object's count is set to PM_REFCOUNT_FREED.
 * Its type record stays, so the message can name the type (until the block is reused). */
#define PM_REFCOUNT_LIMIT   ((size_t)1 << 60)
#define PM_REFCOUNT_FREED   ((size_t)0xDEADF4EEDEADF4EEull)
_Static_assert(PM_REFCOUNT_FREED >= PM_REFCOUNT_LIMIT, "a freed count must be invalid");

PM_INLINE pm_head_t *_pm_head_of(const void *obj) { return (pm_head_t *)((uintptr_t)obj - sizeof(pm_head_t)); }
PM_INLINE void *_pm_object_of(const pm_head_t *h) { return (void *)((uintptr_t)h + sizeof(pm_head_t)); }
PM_INLINE pm_head_t *_pm_next(const pm_head_t *h) { return (pm_head_t *)(h->next & ~PM_NEXT_UNREACHABLE); }
PM_INLINE pm_head_t *_pm_prev(const pm_head_t *h) { return (pm_head_t *)(h->prev & PM_PREV_PTR_MASK); }
PM_INLINE void _pm_set_prev(pm_head_t *h, pm_head_t *p) { h->prev = (h->prev & PM_PREV_FLAGS) | (uintptr_t)p; }

/* ---- The type record ------------------------------------------------------------------------- */
struct pm_type_rec_s {
    int  (*traverse)(void *self, pm_visit visit, void *arg);   /* copied from the type */
    int  (*clear)(void *self);
    void (*finalize)(void *self);
    void (*dealloc)(void *self);
    pm_gc            *gc;
    const pm_type    *type;
    size_t            live, peak, allocated, freed;
    pm_type_rec_t    *all_next;       /* every record of this collector, in creation order */
};

/* ---- The collector --------------------------------------------------------------------------- */
typedef struct {
    size_t   collections, collected, uncollectable;
    uint64_t pause_total_ns, pause_max_ns;
    uint32_t pause_hist[PM_PAUSE_BUCKETS];
} pm_gen_stats_t;

typedef struct {
    pm_head_t head;                   /* sentinel of the list; only next and prev are used */
    size_t    threshold;
    size_t    count;                  /* gen 0: allocations - deallocations; gen n: collections of n-1 */
} pm_generation_t;

struct pm_gc {
    pm_generation_t gen[PM_GC_GENERATIONS];
    size_t       gen0_trigger;        /* pm_new collects when gen[0].count exceeds this */
    pm_head_t    permanent;           /* frozen: ignored until unfreeze */
    pm_head_t    garbage;             /* uncollectable, saved (CPython's gc.garbage) */
    size_t       long_lived_total;    /* survivors of the last full collection */
    size_t       long_lived_pending;  /* objects promoted into gen 2 since then */
    bool         enabled, collecting, destroyed;
    pthread_t    collector_thread;    /* valid while collecting: who collects */
    unsigned     debug;
    /* type records: a table (util/table.c) keyed by the pm_type pointer (object.c), plus a
     * one-entry cache */
    const pm_type  *last_type;
    pm_type_rec_t  *last_rec;
    pm_table_t      types;
    pm_type_rec_t  *types_all;
    /* trashcan */
    unsigned     dealloc_depth;
    pm_head_t   *trash;               /* deferred deallocations, linked through `next` */
    /* weak references: chained hash on the referent's address (weakref.c) */
    pm_weakref **weakrefs;
    size_t       weakref_buckets, weakref_count;
    /* instrumentation */
    struct { void (*cb)(const pm_gc_event *, void *); void *arg; } callbacks[PM_GC_MAX_CALLBACKS];
    int          ncallbacks;
    pm_gen_stats_t stats[PM_GC_GENERATIONS];
    int          exit_report_fd;      /* -1: no report at exit */
    pm_gc       *exit_next;           /* registry of collectors that asked for one (gc_stats.c) */
    pm_gc       *all_next;            /* every live collector, for heap reports (gc_stats.c) */
};

/* ---- Lists (circular, doubly linked, flags preserved) ---------------------------------------- */
PM_INLINE void _pm_list_init(pm_head_t *list) { list->next = list->prev = (uintptr_t)list; }
PM_INLINE bool _pm_list_is_empty(const pm_head_t *list) { return list->next == (uintptr_t)list; }
PM_INLINE void _pm_list_append(pm_head_t *node, pm_head_t *list) {
    pm_head_t *last = (pm_head_t *)list->prev;
    _pm_set_prev(node, last);
    last->next = (uintptr_t)node;
    node->next = (uintptr_t)list;
    list->prev = (uintptr_t)node;
}
PM_INLINE void _pm_list_remove(pm_head_t *node) {
    pm_head_t *prev = _pm_prev(node), *next = (pm_head_t *)node->next;
    prev->next = (uintptr_t)next;
    _pm_set_prev(next, prev);
    node->next = 0;
}
PM_INLINE void _pm_list_move(pm_head_t *node, pm_head_t *list) {
    _pm_list_remove(node);
    _pm_list_append(node, list);
}
/* Move all of `from` to the end of `to`; `from` ends empty. */
PM_INLINE void _pm_list_merge(pm_head_t *from, pm_head_t *to) {
    if (_pm_list_is_empty(from)) return;
    pm_head_t *to_last = (pm_head_t *)to->prev;
    pm_head_t *first = (pm_head_t *)from->next, *last = (pm_head_t *)from->prev;
    to_last->next = (uintptr_t)first;
    _pm_set_prev(first, to_last);
    last->next = (uintptr_t)to;
    to->prev = (uintptr_t)last;
    _pm_list_init(from);
}

/* ---- object.c ------------------------------------------------------------------------------- */
pm_type_rec_t *_pm_type_rec_slow(pm_gc *gc, const pm_type *type);  /* NULL when out of memory */
void  _pm_type_recs_free(pm_gc *gc);
void  _pm_object_dealloc(pm_head_t *h);        /* its refcount just fell to zero */
_Noreturn void _pm_object_misuse(const char *func, const void *obj, const char *what);
void  _pm_object_check_live(const char *func, const void *obj);   /* aborts unless live */
void  _pm_object_track(pm_head_t *h);          /* append to generation 0 */

/* ---- gc.c ------------------------------------------------------------------------------------ */
void  _pm_gc_collect_on_allocation(pm_gc *gc); /* gen 0 count passed its trigger */
void  _pm_gc_update_trigger(pm_gc *gc);

/* ---- gc_stats.c ------------------------------------------------------------------------------- */
void  _pm_gc_record_pause(pm_gc *gc, int generation, uint64_t ns);
void  _pm_gc_exit_unregister(pm_gc *gc);
void  _pm_gc_registry_add(pm_gc *gc);       /* heap reports (report.c) show every collector */
void  _pm_gc_registry_remove(pm_gc *gc);

/* ---- gc_inspect.c: test-only introspection (Lua's ltests.c habit) ----------------------------- */
enum { PM_GEN_PERMANENT = 3, PM_GEN_GARBAGE = 4 };
int    _pm_gc_generation_of(pm_gc *gc, const void *obj); /* 0..2, PERMANENT, GARBAGE, -1: untracked */
const char *_pm_gc_check_ring(const pm_head_t *list, bool collecting); /* NULL, or what is wrong */
size_t _pm_gc_check(pm_gc *gc);                          /* checks the invariants; returns tracked count */
size_t _pm_list_size(const pm_head_t *list);

/* ---- weakref.c ------------------------------------------------------------------------------- */
pm_weakref *_pm_weakrefs_detach(pm_gc *gc, pm_head_t *h, pm_weakref *queue); /* clear h's, queue them */
size_t _pm_weakrefs_call(pm_weakref *queue);  /* run the queued callbacks; returns how many */
void  _pm_weakrefs_free_table(pm_gc *gc);

#pragma GCC visibility pop
#endif
