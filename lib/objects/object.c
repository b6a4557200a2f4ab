/* object.c: refcounted objects: the header, pm_new, incref and decref, deallocation with a
 * trashcan, tracking, type records, and the checks that catch bad refcounting.
 *
 * Layout of one object, in one allocator block (16-byte aligned):
 *
 *     block ─▶ ┌──────────── pm_head_t: 32 bytes ─────────────┐
 *              │ next   │ prev|flags │ refcount │ type record  │ ◀─ generation list links
 *              ├──────────────────────────────────────────────┤
 *   object ─▶  │ payload: `size` bytes, zeroed, 16-aligned     │ ◀─ what pm_new returns
 *              └──────────────────────────────────────────────┘
 *
 * Reference counting: pm_incref and pm_decref each take one compare on the fast path. A count
 * outside 1..PM_REFCOUNT_LIMIT-1 (zero: a decref below zero; PM_REFCOUNT_FREED: the object was
 * freed) and the last decref leave through one unlikely branch to the noinline slow path.
 *
 * Deallocation at zero, in CPython's order: finalize once (the object is tracked and holds a
 * temporary reference meanwhile, so it may resurrect itself), untrack, clear the weak references
 * and run their callbacks, the type's dealloc, then poison the header and free the block.
 *
 * The trashcan (CPython's Py_TRASHCAN): dealloc drops references, which deallocates more objects,
 * recursively. Past PM_TRASHCAN_DEPTH nested deallocations the object is untracked and pushed on
 * the collector's trash list instead, and the outermost deallocation empties that list in a loop.
 * Freeing a chain of any length thus uses bounded stack.
 *
 * Type records: one per (collector, pm_type), made at the type's first pm_new in the collector.
 * pm_new finds it through a one-entry cache (the last type), then the collector's table of them
 * keyed by the pm_type pointer (util/table.c, in os.c memory).
 */
#define _GNU_SOURCE
#include "objects/objects.h"

#include <errno.h>
#include <string.h>

/* ---- Misuse: one line naming the type, then abort ------------------------------------------- */

_Noreturn void _pm_object_misuse(const char *func, const void *obj, const char *what) {
    const pm_head_t *h = _pm_head_of(obj);
    const char *name = "?";
    if (h->rec != NULL && h->rec->type != NULL && h->rec->type->name != NULL) name = h->rec->type->name;
    /* When sampling caught the object's allocation, say where it was made. */
    char site[400] = "";
    void *frames[4];
    unsigned n = _pm_sample_stack_of(h, frames, 4);
    if (n) {
        pm_out_t o;
        _pm_out_init(&o, site, sizeof site - 1, -1);
        _pm_out_printf(&o, ", allocated at ");
        _pm_report_stack(&o, frames, n);
        site[o.len] = 0;
    }
    _pm_fatal("%s(): %s (object %p of type %s%s)", func, what, obj, name, site);
}

void _pm_object_check_live(const char *func, const void *obj) {
    if (obj == NULL) _pm_fatal("%s(): NULL object", func);
    const pm_head_t *h = _pm_head_of(obj);
    size_t r = h->refcount;
    if (PM_UNLIKELY(r == PM_REFCOUNT_FREED)) _pm_object_misuse(func, obj, "use of a freed object (poisoned header)");
    /* hardened:true zeroes freed blocks, poison and all; a live object always has its record
     * (refcount 0 with a record: inside its own dealloc) */
    if (PM_UNLIKELY(r == 0 && h->rec == NULL)) _pm_object_misuse(func, obj, "use of a freed object (zeroed header)");
    if (PM_UNLIKELY(r >= PM_REFCOUNT_LIMIT)) _pm_object_misuse(func, obj, "corrupted header (invalid refcount)");
}

/* ---- Type records ---------------------------------------------------------------------------- */

/* The collector's table of its type records, keyed by the pm_type pointer. pm_gc_new zeroes the
 * collector, so the table learns its entry size at the first lookup. */
typedef struct { uintptr_t type; pm_type_rec_t *rec; } type_entry_t;

static pm_table_t *types_of(pm_gc *gc) {
    if (gc->types.esize == 0) gc->types.esize = sizeof(type_entry_t);
    return &gc->types;
}

static pm_type_rec_t *type_rec_new(pm_gc *gc, const pm_type *type) {
    pm_type_rec_t *r = _pm_calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->traverse = type->traverse;
    r->clear = type->clear;
    r->finalize = type->finalize;
    r->dealloc = type->dealloc;
    r->gc = gc;
    r->type = type;
    return r;
}

pm_type_rec_t *_pm_type_rec_slow(pm_gc *gc, const pm_type *type) {
    pm_table_t *t = types_of(gc);
    type_entry_t *e = _pm_table_find(t, (uintptr_t)type);
    if (e) return gc->last_type = type, gc->last_rec = e->rec;
    if (_pm_table_reserve(t, 1) != 0) return NULL;      /* before the record, so nothing to undo */
    pm_type_rec_t *r = type_rec_new(gc, type);
    if (r == NULL) return NULL;
    pm_type_rec_t **tail = &gc->types_all;        /* creation order, for reports */
    while (*tail) tail = &(*tail)->all_next;
    __atomic_store_n(tail, r, __ATOMIC_RELEASE);  /* heap reports read the list from other threads */
    e = _pm_table_insert(t, (uintptr_t)type);     /* reserved: cannot fail */
    e->rec = r;
    gc->last_type = type;
    gc->last_rec = r;
    return r;
}

void _pm_type_recs_free(pm_gc *gc) {
    for (pm_type_rec_t *r = gc->types_all, *next; r; r = next) { next = r->all_next; _pm_free(r); }
    _pm_table_free(&gc->types);
    gc->types_all = NULL;
}

/* ---- Allocation ------------------------------------------------------------------------------ */

PM_EXPORT void *pm_new(pm_gc *gc, const pm_type *type, size_t size) {
    if (PM_UNLIKELY(gc->destroyed)) _pm_fatal("pm_new(): the collector %p was destroyed (type %s)", (void *)gc, type->name);
    pm_type_rec_t *rec = gc->last_type == type ? gc->last_rec : _pm_type_rec_slow(gc, type);
    if (PM_UNLIKELY(rec == NULL)) { errno = ENOMEM; return NULL; }
    size_t total;
    if (PM_UNLIKELY(__builtin_add_overflow(size, sizeof(pm_head_t), &total))) { errno = ENOMEM; return NULL; }
    /* As CPython's gc_alloc: count (and maybe collect) before the new object exists. */
    if (rec->traverse != NULL && PM_UNLIKELY(++gc->gen[0].count > gc->gen0_trigger)) _pm_gc_collect_on_allocation(gc);
    pm_head_t *h = _pm_malloc(total);
    if (PM_UNLIKELY(h == NULL)) {
        if (rec->traverse != NULL && gc->gen[0].count > 0) gc->gen[0].count--;
        return NULL;
    }
    h->prev = 0;
    h->refcount = 1;
    h->rec = rec;
    if (rec->traverse != NULL) {
        pm_head_t *list = &gc->gen[0].head, *last = (pm_head_t *)list->prev;   /* _pm_list_append */
        h->prev = (uintptr_t)last;
        last->next = (uintptr_t)h;
        h->next = (uintptr_t)list;
        list->prev = (uintptr_t)h;
    } else {
        h->next = 0;
    }
    rec->allocated++;
    if (++rec->live > rec->peak) rec->peak = rec->live;
    void *obj = _pm_object_of(h);
    memset(obj, 0, size);
    return obj;
}

/* ---- Reference counting ---------------------------------------------------------------------- */

static PM_NOINLINE void incref_slow(void *obj) {
    _pm_object_check_live("pm_incref", obj);
    pm_head_t *h = _pm_head_of(obj);
    if (h->refcount == 0) h->refcount = 1;               /* inside its dealloc: as the fast path did */
}

/* 0 goes to the slow path too: a zeroed header is a freed object under hardened:true. */
PM_EXPORT void pm_incref(void *obj) {
    pm_head_t *h = _pm_head_of(obj);
    size_t r = h->refcount;
    if (PM_LIKELY(r - 1 < PM_REFCOUNT_LIMIT - 2)) { h->refcount = r + 1; return; }
    incref_slow(obj);
}

static PM_NOINLINE void decref_slow(void *obj) {
    pm_head_t *h = _pm_head_of(obj);
    size_t r = h->refcount;
    if (r == 1) { h->refcount = 0; _pm_object_dealloc(h); return; }
    if (r == 0 && h->rec == NULL) _pm_object_misuse("pm_decref", obj, "use of a freed object (zeroed header)");
    if (r == 0) _pm_object_misuse("pm_decref", obj, "reference count would go below zero");
    _pm_object_check_live("pm_decref", obj);
}

/* One compare: r - 2 wraps for r == 0 and r == 1, and is large for invalid counts. */
PM_EXPORT void pm_decref(void *obj) {
    pm_head_t *h = _pm_head_of(obj);
    size_t r = h->refcount;
    if (PM_LIKELY(r - 2 < PM_REFCOUNT_LIMIT - 2)) { h->refcount = r - 1; return; }
    decref_slow(obj);
}

PM_EXPORT size_t pm_refcount(const void *obj) {
    _pm_object_check_live("pm_refcount", obj);
    return _pm_head_of(obj)->refcount;
}

PM_EXPORT const pm_type *pm_type_of(const void *obj) {
    _pm_object_check_live("pm_type_of", obj);
    return _pm_head_of(obj)->rec->type;
}

PM_EXPORT int pm_gc_is_finalized(const void *obj) {
    _pm_object_check_live("pm_gc_is_finalized", obj);
    return (_pm_head_of(obj)->prev & PM_PREV_FINALIZED) != 0;
}

/* ---- Tracking -------------------------------------------------------------------------------- */

void _pm_object_track(pm_head_t *h) {
    _pm_list_append(h, &h->rec->gc->gen[0].head);
}

static void untrack(pm_head_t *h) {
    if (h->next == 0) return;
    _pm_list_remove(h);
    h->prev &= PM_PREV_FINALIZED | PM_PREV_WEAKREFS;
}

PM_EXPORT void pm_track(void *obj) {
    _pm_object_check_live("pm_track", obj);
    pm_head_t *h = _pm_head_of(obj);
    if (h->rec->traverse == NULL)
        _pm_object_misuse("pm_track", obj, "asked to track an object whose type has no traverse");
    if (h->next == 0) _pm_object_track(h);
}

PM_EXPORT void pm_untrack(void *obj) {
    _pm_object_check_live("pm_untrack", obj);
    untrack(_pm_head_of(obj));
}

PM_EXPORT int pm_is_tracked(const void *obj) {
    _pm_object_check_live("pm_is_tracked", obj);
    return _pm_head_of(obj)->next != 0;
}

/* ---- Deallocation ---------------------------------------------------------------------------- */

/* The object's refcount is zero. Returns without freeing if the finalizer resurrected it. */
static void dealloc_one(pm_head_t *h) {
    pm_type_rec_t *rec = h->rec;
    void *obj = _pm_object_of(h);
    if (rec->finalize != NULL && !(h->prev & PM_PREV_FINALIZED)) {
        h->prev |= PM_PREV_FINALIZED;
        if (rec->traverse != NULL && h->next == 0) _pm_object_track(h);   /* as CPython's subtype_dealloc */
        h->refcount = 1;
        rec->finalize(obj);
        if (--h->refcount != 0) return;                  /* resurrected: alive and tracked */
    }
    untrack(h);
    if (h->prev & PM_PREV_WEAKREFS) _pm_weakrefs_call(_pm_weakrefs_detach(rec->gc, h, NULL));
    if (rec->dealloc != NULL) rec->dealloc(obj);
    rec->freed++;
    rec->live--;
    pm_gc *gc = rec->gc;
    if (rec->traverse != NULL && gc->gen[0].count > 0) gc->gen[0].count--;   /* as PyObject_GC_Del */
    h->refcount = PM_REFCOUNT_FREED;
    _pm_free(h);
}

void _pm_object_dealloc(pm_head_t *h) {
    pm_gc *gc = h->rec->gc;
    if (gc->dealloc_depth >= PM_TRASHCAN_DEPTH) {
        untrack(h);
        h->next = (uintptr_t)gc->trash;    /* untracked, so `next` is free to link the trash */
        gc->trash = h;
        return;
    }
    gc->dealloc_depth++;
    dealloc_one(h);
    if (gc->dealloc_depth == 1) {
        while (gc->trash != NULL) {
            pm_head_t *t = gc->trash;
            gc->trash = (pm_head_t *)t->next;
            t->next = 0;
            dealloc_one(t);
        }
    }
    gc->dealloc_depth--;
}
