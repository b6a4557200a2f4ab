/* gc_inspect.c: looking at the object graph: get_objects, referrers and referents, the saved
 * garbage, "why is this alive?", and the invariant checker and test-only introspection.
 *
 * None of these change a header: they may run at any time, even from a finalizer during a
 * collection (the objects of the collected set are then on the collector's private lists and
 * invisible here). They cost a walk of every tracked object; they are for debugging, not for
 * hot paths. */
#define _GNU_SOURCE
#include "objects/objects.h"

#include <errno.h>
#include <stdlib.h>

size_t _pm_list_size(const pm_head_t *list) {
    size_t n = 0;
    for (const pm_head_t *h = (const pm_head_t *)list->next; h != list; h = (const pm_head_t *)h->next) n++;
    return n;
}

/* Every list a tracked object can be on, outside a collection. */
enum { NLISTS = PM_GC_GENERATIONS + 2 };
static pm_head_t *list_of(pm_gc *gc, int i) {
    return i < PM_GC_GENERATIONS ? &gc->gen[i].head : i == PM_GEN_PERMANENT ? &gc->permanent : &gc->garbage;
}

static size_t copy_list(pm_head_t *list, void **out, size_t cap, size_t n) {
    for (pm_head_t *h = (pm_head_t *)list->next; h != list; h = (pm_head_t *)h->next, n++)
        if (n < cap) out[n] = _pm_object_of(h);
    return n;
}

PM_EXPORT size_t pm_gc_get_objects(pm_gc *gc, int generation, void **out, size_t cap) {
    if (generation == PM_GC_ALL) {
        size_t n = 0;
        for (int i = 0; i < PM_GC_GENERATIONS; i++) n = copy_list(&gc->gen[i].head, out, cap, n);
        return n;
    }
    if (generation < 0 || generation >= PM_GC_GENERATIONS)
        _pm_fatal("pm_gc_get_objects(): generation %d is not 0, 1, 2 or -1", generation);
    return copy_list(&gc->gen[generation].head, out, cap, 0);
}

PM_EXPORT size_t pm_gc_get_garbage(pm_gc *gc, void **out, size_t cap) {
    return copy_list(&gc->garbage, out, cap, 0);
}

/* ---- Referents and referrers ----------------------------------------------------------------- */

typedef struct { void **out; size_t cap, n; void *target; } gather_t;

static int visit_gather(void *obj, void *arg) {
    gather_t *g = arg;
    if (obj == NULL) return 0;
    if (g->n < g->cap) g->out[g->n] = obj;
    g->n++;
    return 0;
}

PM_EXPORT size_t pm_gc_get_referents(void *obj, void **out, size_t cap) {
    _pm_object_check_live("pm_gc_get_referents", obj);
    pm_type_rec_t *rec = _pm_head_of(obj)->rec;
    gather_t g = { out, cap, 0, NULL };
    if (rec->traverse != NULL) rec->traverse(obj, visit_gather, &g);
    return g.n;
}

static int visit_is_target(void *obj, void *arg) {
    return obj != NULL && obj == ((gather_t *)arg)->target;     /* non-zero stops the traversal */
}

PM_EXPORT size_t pm_gc_get_referrers(pm_gc *gc, void *obj, void **out, size_t cap) {
    _pm_object_check_live("pm_gc_get_referrers", obj);
    gather_t g = { out, cap, 0, obj };
    for (int i = 0; i < NLISTS; i++) {
        pm_head_t *list = list_of(gc, i);
        for (pm_head_t *h = (pm_head_t *)list->next; h != list; h = (pm_head_t *)h->next) {
            if (h->rec->traverse(_pm_object_of(h), visit_is_target, &g) == 0) continue;
            if (g.n < cap) out[g.n] = _pm_object_of(h);
            g.n++;
        }
    }
    return g.n;
}

/* ---- Why is this alive? -------------------------------------------------------------------------
 * 1. Snapshot every tracked object, sorted by address (so that a referent is found by binary
 *    search, with no hashing and no header writes).
 * 2. External references, as update_refs and subtract_refs compute them: refcount minus the
 *    references from tracked objects. Objects with external references > 0 are the roots.
 * 3. Breadth-first search from the roots, with a parent per object, until obj is visited: the
 *    parents give a shortest chain from a root. */
typedef struct {
    void   **objs;       /* every tracked object, sorted by address */
    size_t  *refs;       /* external references; then, in the search, parent index + 1 (0: a root) */
    size_t  *queue;      /* breadth-first queue of indexes; each object enters at most once */
    uint8_t *seen;
    size_t   n, tail, current;
    void    *target;
    bool     found;
} why_t;

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

static size_t index_of(const why_t *w, const void *obj) {
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)w->objs[mid] < (uintptr_t)obj) lo = mid + 1; else hi = mid;
    }
    return lo < w->n && w->objs[lo] == obj ? lo : SIZE_MAX;
}

static int visit_subtract(void *obj, void *arg) {
    why_t *w = arg;
    size_t i = obj ? index_of(w, obj) : SIZE_MAX;
    if (i != SIZE_MAX && w->refs[i] > 0) w->refs[i]--;
    return 0;
}

static int visit_search(void *obj, void *arg) {
    why_t *w = arg;
    if (obj == NULL) return 0;
    if (obj == w->target) { w->found = true; return 1; }
    size_t i = index_of(w, obj);
    if (i == SIZE_MAX || w->seen[i]) return 0;
    w->seen[i] = 1;
    w->refs[i] = w->current + 1;
    w->queue[w->tail++] = i;
    return 0;
}

/* Fills out[] root first; returns the chain length, 0 if no root reaches the target. */
static size_t search(why_t *w, void **out, size_t cap) {
    size_t target_index = index_of(w, w->target);
    if (target_index != SIZE_MAX && w->refs[target_index] > 0) { if (cap) out[0] = w->target; return 1; }
    for (size_t i = 0; i < w->n; i++) {
        if (w->refs[i] == 0) continue;
        w->queue[w->tail++] = i;
        w->seen[i] = 1;
    }
    for (size_t i = 0; i < w->n; i++) w->refs[i] = 0;       /* from here: parents */
    for (size_t head = 0; head < w->tail && !w->found; head++) {
        w->current = w->queue[head];
        void *obj = w->objs[w->current];
        _pm_head_of(obj)->rec->traverse(obj, visit_search, w);
    }
    if (!w->found) return 0;
    size_t len = 1;                                           /* the target */
    for (size_t i = w->current + 1; i != 0; i = w->refs[i - 1]) len++;
    size_t k = len;
    if (k - 1 < cap) out[k - 1] = w->target;
    k--;
    for (size_t i = w->current + 1; i != 0; i = w->refs[i - 1]) {
        k--;
        if (k < cap) out[k] = w->objs[i - 1];
    }
    return len;
}

PM_EXPORT size_t pm_gc_why_alive(pm_gc *gc, void *obj, void **out, size_t cap) {
    _pm_object_check_live("pm_gc_why_alive", obj);
    size_t n = 0;
    for (int i = 0; i < NLISTS; i++) n += _pm_list_size(list_of(gc, i));
    why_t w = { 0 };
    size_t words = n ? n : 1;
    w.objs = _pm_malloc(words * sizeof *w.objs);
    w.refs = _pm_malloc(words * sizeof *w.refs);
    w.queue = _pm_malloc(words * sizeof *w.queue);
    w.seen = _pm_calloc(words, 1);
    size_t len = 0;
    if (w.objs && w.refs && w.queue && w.seen) {
        for (int i = 0; i < NLISTS; i++) w.n = copy_list(list_of(gc, i), w.objs, n, w.n);
        qsort(w.objs, w.n, sizeof *w.objs, cmp_ptr);
        for (size_t i = 0; i < w.n; i++) w.refs[i] = _pm_head_of(w.objs[i])->refcount;
        for (size_t i = 0; i < w.n; i++) _pm_head_of(w.objs[i])->rec->traverse(w.objs[i], visit_subtract, &w);
        w.target = obj;
        len = search(&w, out, cap);
    } else {
        errno = ENOMEM;
    }
    _pm_free(w.objs);
    _pm_free(w.refs);
    _pm_free(w.queue);
    _pm_free(w.seen);
    return len;
}

PM_EXPORT void pm_gc_print_why_alive(pm_gc *gc, void *obj, int fd) {
    char buf[1024];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    enum { SHOWN = 64 };
    void *chain[SHOWN];
    size_t len = pm_gc_why_alive(gc, obj, chain, SHOWN);
    const char *name = _pm_head_of(obj)->rec->type->name;
    if (len == 0) {
        _pm_out_printf(&o, "%s %p: no object held from outside reaches it (garbage: the next full collection frees it)\n", name, obj);
    } else {
        _pm_out_printf(&o, "why is %s %p alive: a chain of %zu references\n", name, obj, len);
        for (size_t i = 0; i < len && i < SHOWN; i++) {
            pm_head_t *h = _pm_head_of(chain[i]);
            _pm_out_printf(&o, "  %s %s %p (refcount %zu)%s\n", i == 0 ? "held from outside:" : "-> referenced by it:",
                           h->rec->type->name, chain[i], h->refcount, i + 1 == len ? " <- this object" : "");
        }
        if (len > SHOWN) _pm_out_printf(&o, "  ... %zu more links\n", len - SHOWN);
    }
    _pm_out_flush(&o);
}

/* ---- Invariants and test-only introspection ------------------------------------------------------ */

int _pm_gc_generation_of(pm_gc *gc, const void *obj) {
    const pm_head_t *target = _pm_head_of(obj);
    if (target->next == 0) return -1;
    for (int i = 0; i < NLISTS; i++) {
        pm_head_t *list = list_of(gc, i);
        for (pm_head_t *h = (pm_head_t *)list->next; h != list; h = (pm_head_t *)h->next)
            if (h == target) return i;
    }
    return -1;
}

/* A list between the steps of collect() (PM_DEBUG; CPython's validate_list): a ring whose links
 * agree both ways, with no unreachable mark left on them, whose objects all have the COLLECTING
 * flag exactly when `collecting`. */
const char *_pm_gc_check_ring(const pm_head_t *list, bool collecting) {
    const pm_head_t *prev = list;
    for (const pm_head_t *h = (const pm_head_t *)list->next; h != list; prev = h, h = (const pm_head_t *)h->next) {
        if (h->next & PM_NEXT_UNREACHABLE) return "gc: an unreachable mark is left on a list link";
        if (_pm_prev(h) != prev) return "gc: broken list: next->prev is not the object";
        if (((h->prev & PM_PREV_COLLECTING) != 0) != collecting)
            return collecting ? "gc: an object of the collected set lacks COLLECTING" : "gc: an object outside the collected set carries COLLECTING";
    }
    return _pm_prev(list) == prev ? NULL : "gc: broken list: head->prev is not the last object";
}

static bool fail(const char *what, const void *obj) {
    _pm_warn("gc check: %s (object %p)", what, obj);
    return false;
}

static bool check_list(pm_gc *gc, pm_head_t *list, size_t *count) {
    pm_head_t *prev = list;
    for (pm_head_t *h = (pm_head_t *)list->next; h != list; prev = h, h = (pm_head_t *)h->next) {
        void *obj = _pm_object_of(h);
        if (h->next & PM_NEXT_UNREACHABLE) return fail("unreachable mark outside a collection", obj);
        if (h->prev & PM_PREV_COLLECTING) return fail("collecting flag outside a collection", obj);
        if (_pm_prev(h) != prev) return fail("broken list: next->prev is not the object", obj);
        if (h->refcount == 0 || h->refcount >= PM_REFCOUNT_LIMIT) return fail("tracked object with invalid refcount", obj);
        if (h->rec->gc != gc) return fail("tracked object of another collector", obj);
        if (h->rec->traverse == NULL) return fail("tracked object whose type has no traverse", obj);
        (*count)++;
    }
    if (_pm_prev(list) != prev) return fail("broken list: head->prev is not the last object", list);
    return true;
}

size_t _pm_gc_check(pm_gc *gc) {
    size_t count = 0;
    for (int i = 0; i < NLISTS; i++) if (!check_list(gc, list_of(gc, i), &count)) return SIZE_MAX;
    for (pm_type_rec_t *r = gc->types_all; r; r = r->all_next)
        if (r->live != r->allocated - r->freed || r->peak < r->live) { fail("type counters do not balance", r); return SIZE_MAX; }
    if (gc->trash != NULL || gc->dealloc_depth != 0) { fail("trashcan not empty", gc->trash); return SIZE_MAX; }
    return count;
}
