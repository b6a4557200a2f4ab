/* weakref.c: weak references. A weak reference does not keep its referent alive; once the
 * referent dies (by refcount or by the collector) it reads as NULL, and its callback runs.
 *
 * The header has no room for a weakref list, and few objects have weak references, so the
 * references live in a chained hash table of their collector, keyed by the referent's address,
 * and the referent's header carries the PM_PREV_WEAKREFS flag: objects without weak references
 * never look at the table. Invariant: an object has the flag exactly when at least one live
 * weakref in the table points at it; a weakref is in the table exactly while `obj` is non-NULL.
 *
 * A weakref is not an object: it is allocated here and freed by pm_weakref_free, never by the
 * collector, so the collector always runs its callback (CPython skips callbacks of weakrefs that
 * are garbage themselves). Clearing and calling are two steps, so that the collector clears every
 * weakref to the unreachable set before the first callback runs. */
#define _GNU_SOURCE
#include "objects/objects.h"

#include <errno.h>

struct pm_weakref {
    void                *obj;          /* the referent; NULL once it died */
    pm_weakref_callback  cb;
    void                *arg;
    pm_gc               *gc;
    pm_weakref          *next;         /* bucket chain while obj != NULL; then the callback queue */
};

static size_t bucket_of(const pm_gc *gc, const void *obj) {
    return (size_t)_pm_hash((uintptr_t)obj) & (gc->weakref_buckets - 1);   /* util/table.c's hash */
}

static bool table_grow(pm_gc *gc) {
    size_t n = gc->weakref_buckets ? gc->weakref_buckets * 2 : 64;
    pm_weakref **old = gc->weakrefs;
    size_t old_n = gc->weakref_buckets;
    pm_weakref **t = _pm_calloc(n, sizeof *t);
    if (t == NULL) return false;
    gc->weakrefs = t;
    gc->weakref_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        for (pm_weakref *r = old[i], *next; r; r = next) {
            next = r->next;
            size_t b = bucket_of(gc, r->obj);
            r->next = t[b];
            t[b] = r;
        }
    }
    _pm_free(old);
    return true;
}

PM_EXPORT pm_weakref *pm_weakref_new(void *obj, pm_weakref_callback cb, void *arg) {
    _pm_object_check_live("pm_weakref_new", obj);
    pm_head_t *h = _pm_head_of(obj);
    pm_gc *gc = h->rec->gc;
    if (gc->weakref_count >= gc->weakref_buckets && !table_grow(gc)) { errno = ENOMEM; return NULL; }
    pm_weakref *ref = _pm_malloc(sizeof *ref);
    if (ref == NULL) return NULL;
    ref->obj = obj;
    ref->cb = cb;
    ref->arg = arg;
    ref->gc = gc;
    size_t b = bucket_of(gc, obj);
    ref->next = gc->weakrefs[b];
    gc->weakrefs[b] = ref;
    gc->weakref_count++;
    h->prev |= PM_PREV_WEAKREFS;
    return ref;
}

PM_EXPORT void *pm_weakref_get(pm_weakref *ref) {
    if (ref->obj == NULL) return NULL;
    pm_incref(ref->obj);
    return ref->obj;
}

PM_EXPORT void pm_weakref_free(pm_weakref *ref) {
    if (ref == NULL) return;
    if (ref->obj != NULL) {
        pm_gc *gc = ref->gc;
        bool others = false;
        for (pm_weakref **p = &gc->weakrefs[bucket_of(gc, ref->obj)]; *p; ) {
            if (*p == ref) { *p = ref->next; gc->weakref_count--; continue; }
            if ((*p)->obj == ref->obj) others = true;
            p = &(*p)->next;
        }
        if (!others) _pm_head_of(ref->obj)->prev &= ~PM_PREV_WEAKREFS;
    }
    _pm_free(ref);
}

/* Clear every weakref to h (obj = NULL, out of the table, flag off) and push those with a
 * callback on the `queue` stack. The bucket chain holds the newest first. */
pm_weakref *_pm_weakrefs_detach(pm_gc *gc, pm_head_t *h, pm_weakref *queue) {
    void *obj = _pm_object_of(h);
    for (pm_weakref **p = &gc->weakrefs[bucket_of(gc, obj)]; *p; ) {
        pm_weakref *r = *p;
        if (r->obj != obj) { p = &r->next; continue; }
        *p = r->next;
        gc->weakref_count--;
        r->obj = NULL;
        r->next = NULL;
        if (r->cb != NULL) { r->next = queue; queue = r; }
    }
    h->prev &= ~PM_PREV_WEAKREFS;
    return queue;
}

/* The queue is a stack: reverse it once, to call in the order the weakrefs were cleared (per
 * referent, newest weakref first, as CPython). A callback may free its own weakref (so `next` is
 * read first), but not another one still queued. */
size_t _pm_weakrefs_call(pm_weakref *queue) {
    pm_weakref *order = NULL;
    for (pm_weakref *r = queue, *next; r; r = next) { next = r->next; r->next = order; order = r; }
    size_t n = 0;
    for (pm_weakref *r = order, *next; r; r = next, n++) {
        next = r->next;
        r->next = NULL;
        r->cb(r, r->arg);
    }
    return n;
}

/* At pm_gc_destroy, which frees the collector only when no object is alive: every weakref left
 * has a dead referent and is out of the table already, so only the buckets go. */
void _pm_weakrefs_free_table(pm_gc *gc) {
    for (size_t i = 0; i < gc->weakref_buckets; i++)
        for (pm_weakref *r = gc->weakrefs[i]; r; r = r->next) r->obj = NULL;
    _pm_free(gc->weakrefs);
    gc->weakrefs = NULL;
    gc->weakref_buckets = gc->weakref_count = 0;
}
