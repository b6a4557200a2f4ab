/* gc.c: the generational cycle collector: generations, thresholds, freeze, and CPython's
 * algorithm (Modules/gcmodule.c, 3.8-3.11), rewritten for our header.
 *
 * Generations. Tracked objects start in generation 0. collect(N) merges generations 0..N-1 into
 * N, finds the unreachable objects there, and moves the survivors to N+1 (generation 2's stay).
 * When to collect (CPython's defaults and rules, written down here):
 *   - gen[0].count is container allocations minus deallocations; past threshold 700 pm_new
 *     collects, before it allocates;
 *   - gen[n].count (n > 0) is the number of collections of generation n-1 since the last of n;
 *     the oldest generation whose count exceeds its threshold (10, 10) is the one collected;
 *   - a full collection (generation 2) also waits until long_lived_pending, the objects promoted
 *     into generation 2 since the last full collection, exceeds 25% of long_lived_total, the
 *     survivors of that collection. Full collections then cost amortized linear time in the
 *     number of objects instead of quadratic (see gcmodule.c's comment for the measurements).
 *   - threshold 0 for generation 0 disables automatic collection; pm_gc_collect always works.
 *
 * The algorithm (collect()): within the set `young` being collected,
 *   1. update_refs:      gc_refs = refcount, for every object of young;
 *   2. subtract_refs:    minus the references from objects of young: what remains counts
 *                        references from outside young;
 *   3. move_unreachable: objects with gc_refs > 0 are roots; everything reachable from them is
 *                        reachable; the rest moves to `unreachable`;
 *   4. survivors move one generation up;
 *   5. handle_weakrefs:  weak references to unreachable objects are cleared; callbacks queued
 *                        and then run;
 *   6. finalize_garbage: each finalizer runs at most once per object (the FINALIZED flag);
 *   7. handle_resurrected: steps 1-3 again on `unreachable`: whatever a finalizer made
 *                        reachable from outside survives, with everything it reaches;
 *   8. delete_garbage:   `clear` breaks the cycles, refcounts fall to zero and deallocation frees
 *                        the memory. Objects that are still alive and have no `clear` are the
 *                        uncollectable ones: counted, and saved on the garbage list.
 * No user code runs during steps 1-3 except traverse, which must not change references; from
 * step 5 on, user code may run and even deallocate objects of the lists, which stay well-formed.
 */
#define _GNU_SOURCE
#include "objects/objects.h"

#include <errno.h>
#include <string.h>

/* ---- gc_refs in the prev word ---------------------------------------------------------------- */

PM_INLINE size_t get_refs(const pm_head_t *h) { return h->prev >> PM_REFS_SHIFT; }
PM_INLINE void set_refs(pm_head_t *h, size_t refs) {
    h->prev = (h->prev & PM_PREV_FLAGS) | ((uintptr_t)refs << PM_REFS_SHIFT);
}
PM_INLINE bool is_collecting(const pm_head_t *h) { return (h->prev & PM_PREV_COLLECTING) != 0; }

/* The collector's own reference, held around user code (finalize, clear). The object is alive
 * (on one of our lists, refcount >= 1), so no misuse check is needed. */
PM_INLINE void hold(pm_head_t *h) { h->refcount++; }
PM_INLINE void release(pm_head_t *h) { if (--h->refcount == 0) _pm_object_dealloc(h); }

/* ---- 1. update_refs ---------------------------------------------------------------------------
 * Before: `list` is a well-formed list. After: each object carries COLLECTING and
 * gc_refs = refcount; its prev link is lost (next links still walk the list). Returns the size. */
static size_t update_refs(pm_head_t *list) {
    size_t n = 0;
    for (pm_head_t *h = (pm_head_t *)list->next; h != list; h = (pm_head_t *)h->next, n++)
        h->prev = (h->prev & (PM_PREV_FINALIZED | PM_PREV_WEAKREFS)) | PM_PREV_COLLECTING
                | ((uintptr_t)h->refcount << PM_REFS_SHIFT);
    return n;
}

/* ---- 2. subtract_refs -------------------------------------------------------------------------
 * After: gc_refs counts only the references from outside `list`. References to objects that are
 * not being collected (no COLLECTING flag) are ignored. */
static int visit_decref(void *obj, void *arg) {
    (void)arg;
    if (PM_UNLIKELY(obj == NULL)) return 0;
    pm_head_t *h = _pm_head_of(obj);
    if (h->prev & PM_PREV_COLLECTING) h->prev -= (uintptr_t)1 << PM_REFS_SHIFT;
    return 0;
}

static void subtract_refs(pm_head_t *list) {
    for (pm_head_t *h = (pm_head_t *)list->next; h != list; h = (pm_head_t *)h->next)
        h->rec->traverse(_pm_object_of(h), visit_decref, NULL);
}

/* ---- 3. move_unreachable ----------------------------------------------------------------------
 * Before: `young` as subtract_refs left it. After: `young` holds the objects reachable from those
 * with gc_refs > 0, doubly linked again, COLLECTING cleared; `unreachable` holds the rest, still
 * COLLECTING, with PM_NEXT_UNREACHABLE set on their next links (clear_unreachable_mask removes it).
 *
 * One pass, as CPython's: walking young, an object with gc_refs > 0 is reachable; traversing it
 * marks what it references (gc_refs 0 -> 1, and objects already moved to `unreachable` come
 * back to young's tail, to be walked again). An object reached with gc_refs 0 is tentatively
 * unreachable and moves out. Behind the walk, young is relinked as a proper list. */
static int visit_reachable(void *obj, void *arg) {
    pm_head_t *young = arg;
    if (PM_UNLIKELY(obj == NULL)) return 0;
    pm_head_t *h = _pm_head_of(obj);
    if (!is_collecting(h)) return 0;      /* another generation, or already walked */
    if (h->next & PM_NEXT_UNREACHABLE) {
        /* Moved out too early: unlink by hand (the masked links defeat the list helpers). */
        pm_head_t *prev = _pm_prev(h), *next = _pm_next(h);
        prev->next = h->next;              /* keeps the mask */
        _pm_set_prev(next, prev);
        _pm_list_append(h, young);
        set_refs(h, 1);
    } else if (get_refs(h) == 0) {
        set_refs(h, 1);
    }
    return 0;
}

static void move_unreachable(pm_head_t *young, pm_head_t *unreachable) {
    pm_head_t *prev = young;
    pm_head_t *h = (pm_head_t *)young->next;
    while (h != young) {
        if (get_refs(h) != 0) {
            h->rec->traverse(_pm_object_of(h), visit_reachable, young);
            _pm_set_prev(h, prev);
            h->prev &= ~PM_PREV_COLLECTING;
            prev = h;
        } else {
            prev->next = h->next;
            pm_head_t *last = _pm_prev(unreachable);
            last->next = PM_NEXT_UNREACHABLE | (uintptr_t)h;   /* marks the head too: fixed below */
            _pm_set_prev(h, last);
            h->next = PM_NEXT_UNREACHABLE | (uintptr_t)unreachable;
            unreachable->prev = (uintptr_t)h;
        }
        h = (pm_head_t *)prev->next;
    }
    young->prev = (uintptr_t)prev;
    unreachable->next &= ~PM_NEXT_UNREACHABLE;
}

/* What the unreachable set needs beyond clear: steps 5 and 6 are skipped when no object has a
 * weak reference or a finalizer to run (the common case), saving two walks of the set. */
typedef struct { size_t count; bool weakrefs, finalizers; } unreachable_info_t;

/* After: `unreachable` is a plain list again (objects keep COLLECTING). */
static unreachable_info_t clear_unreachable_mask(pm_head_t *unreachable) {
    unreachable_info_t info = { 0, false, false };
    uintptr_t flags = 0;
    for (pm_head_t *h = (pm_head_t *)unreachable->next; h != unreachable; h = (pm_head_t *)h->next, info.count++) {
        h->next &= ~PM_NEXT_UNREACHABLE;
        flags |= h->prev;
        if (PM_UNLIKELY(h->rec->finalize != NULL) && !(h->prev & PM_PREV_FINALIZED)) info.finalizers = true;
    }
    info.weakrefs = (flags & PM_PREV_WEAKREFS) != 0;
    return info;
}

/* Steps 1-3 on one list: `unreachable` receives what nothing outside `young` reaches. Returns
 * the size of `young` before. */
static size_t deduce_unreachable(pm_head_t *young, pm_head_t *unreachable, unreachable_info_t *info) {
    size_t n = update_refs(young);
    subtract_refs(young);
    move_unreachable(young, unreachable);
    *info = clear_unreachable_mask(unreachable);
    return n;
}

/* ---- 5. handle_weakrefs ------------------------------------------------------------------------
 * Every weak reference to an unreachable object is cleared before any callback or finalizer
 * runs, so none of them can reach a half-destroyed object through one. Our weakrefs are not
 * objects themselves, so each callback runs (CPython skips those whose weakref is garbage too). */
static size_t handle_weakrefs(pm_gc *gc, pm_head_t *unreachable) {
    pm_weakref *queue = NULL;
    for (pm_head_t *h = (pm_head_t *)unreachable->next; h != unreachable; h = (pm_head_t *)h->next)
        if (h->prev & PM_PREV_WEAKREFS) queue = _pm_weakrefs_detach(gc, h, queue);
    return _pm_weakrefs_call(queue);
}

/* ---- 6. finalize_garbage -----------------------------------------------------------------------
 * Each object is moved to `seen` before its finalizer runs, so that a finalizer that frees other
 * objects of the list (they untrack themselves) cannot break the walk. After: the same objects
 * minus any freed, in `unreachable`. Returns how many finalizers ran. */
static size_t finalize_garbage(pm_head_t *unreachable) {
    size_t ran = 0;
    pm_head_t seen;
    _pm_list_init(&seen);
    while (!_pm_list_is_empty(unreachable)) {
        pm_head_t *h = (pm_head_t *)unreachable->next;
        _pm_list_move(h, &seen);
        if (h->rec->finalize != NULL && !(h->prev & PM_PREV_FINALIZED)) {
            h->prev |= PM_PREV_FINALIZED;
            hold(h);
            h->rec->finalize(_pm_object_of(h));
            release(h);
            ran++;
        }
    }
    _pm_list_merge(&seen, unreachable);
    return ran;
}

/* ---- 7. handle_resurrected ---------------------------------------------------------------------
 * After: `still` holds what is still unreachable (COLLECTING); the resurrected, and all they
 * reach, join `old`. Returns the size of `still`. Only user code (a finalizer or a weakref
 * callback) can resurrect: when none ran, the check is skipped, and `still` takes everything. */
static size_t handle_resurrected(pm_head_t *unreachable, pm_head_t *still, pm_head_t *old,
                                 size_t user_calls, size_t n_unreachable) {
    if (user_calls == 0) {
        _pm_list_merge(unreachable, still);
        return n_unreachable;
    }
    unreachable_info_t info;
    deduce_unreachable(unreachable, still, &info);
    _pm_list_merge(unreachable, old);
    return info.count;
}

/* ---- 8. delete_garbage -------------------------------------------------------------------------
 * `clear` each object (holding a reference meanwhile, as CPython does). An object still at the
 * head afterwards survived its clear: it goes to `old`, and may die later. One without `clear`
 * waits on `pending` until the others are cleared; those still alive then are uncollectable and
 * go to the garbage list. After: `collectable` is empty. Returns the uncollectable count. */
static size_t delete_garbage(pm_gc *gc, pm_head_t *collectable, pm_head_t *old) {
    pm_head_t pending;
    _pm_list_init(&pending);
    while (!_pm_list_is_empty(collectable)) {
        pm_head_t *h = (pm_head_t *)collectable->next;
        if (h->rec->clear == NULL) { _pm_list_move(h, &pending); continue; }
        hold(h);
        h->rec->clear(_pm_object_of(h));
        release(h);
        if ((pm_head_t *)collectable->next == h) {
            h->prev &= ~PM_PREV_COLLECTING;
            _pm_list_move(h, old);
        }
    }
    size_t n = 0;
    for (pm_head_t *h = (pm_head_t *)pending.next; h != &pending; h = (pm_head_t *)h->next, n++)
        h->prev &= ~PM_PREV_COLLECTING;
    _pm_list_merge(&pending, &gc->garbage);
    return n;
}

/* ---- The collection ---------------------------------------------------------------------------- */

typedef struct { size_t collected, uncollectable; } collect_result_t;

static collect_result_t collect(pm_gc *gc, int generation) {
    /* Counts: one more collection of `generation` for the next one; this and younger restart. */
    if (generation + 1 < PM_GC_GENERATIONS) gc->gen[generation + 1].count++;
    for (int i = 0; i <= generation; i++) gc->gen[i].count = 0;
    for (int i = 0; i < generation; i++) _pm_list_merge(&gc->gen[i].head, &gc->gen[generation].head);
    pm_head_t *young = &gc->gen[generation].head;
    pm_head_t *old = generation + 1 < PM_GC_GENERATIONS ? &gc->gen[generation + 1].head : young;

    pm_head_t unreachable, final_unreachable;
    _pm_list_init(&unreachable);
    _pm_list_init(&final_unreachable);
    unreachable_info_t info;
    PM_DEBUG_CHECK(1, "collect: the young list before update_refs", _pm_gc_check_ring(young, false));
    size_t n_young = deduce_unreachable(young, &unreachable, &info);            /* steps 1-3 */
    PM_DEBUG_CHECK(1, "collect: the reachable after move_unreachable", _pm_gc_check_ring(young, false));
    PM_DEBUG_CHECK(1, "collect: the unreachable after move_unreachable", _pm_gc_check_ring(&unreachable, true));

    size_t survivors = n_young - info.count;                                    /* step 4 */
    if (young != old) {
        if (generation == PM_GC_GENERATIONS - 2) gc->long_lived_pending += survivors;
        _pm_list_merge(young, old);
    } else {
        gc->long_lived_pending = 0;
        gc->long_lived_total = survivors;
    }

    size_t user_calls = 0;
    if (info.weakrefs) user_calls += handle_weakrefs(gc, &unreachable);         /* step 5 */
    if (info.finalizers) user_calls += finalize_garbage(&unreachable);          /* step 6 */
    size_t found = handle_resurrected(&unreachable, &final_unreachable, old,   /* step 7 */
                                      user_calls, info.count);
    PM_DEBUG_CHECK(1, "collect: the garbage after handle_resurrected", _pm_gc_check_ring(&final_unreachable, true));
    PM_DEBUG_CHECK(1, "collect: the older generation after handle_resurrected", _pm_gc_check_ring(old, false));
    size_t uncollectable = delete_garbage(gc, &final_unreachable, old);        /* step 8 */
    PM_DEBUG_CHECK(1, "collect: the older generation after delete_garbage", _pm_gc_check_ring(old, false));
    PM_DEBUG_CHECK(2, "collect: every list after the collection",
                   _pm_gc_check(gc) == SIZE_MAX ? "gc: an invariant of _pm_gc_check failed (the warning above names it)" : NULL);

    return (collect_result_t){ found - uncollectable, uncollectable };
}

static void invoke_callbacks(pm_gc *gc, int phase, int generation, collect_result_t r, uint64_t ns) {
    pm_gc_event ev = { phase, generation, r.collected, r.uncollectable, ns };
    for (int i = 0; i < gc->ncallbacks; i++) gc->callbacks[i].cb(&ev, gc->callbacks[i].arg);
}

/* The caller serializes use of one pm_gc. What we can check cheaply is the overlap of two
 * collections: a second thread entering while one collects is a broken caller, reported. */
static bool enter_collection(pm_gc *gc) {
    if (gc->collecting) {
        if (!pthread_equal(gc->collector_thread, pthread_self()))
            _pm_fatal("pm_gc_collect(): collector %p used by two threads at once (the caller must serialize)", (void *)gc);
        return false;                     /* called from a finalizer or callback: nothing to do */
    }
    gc->collecting = true;
    gc->collector_thread = pthread_self();
    return true;
}

static size_t collect_with_callbacks(pm_gc *gc, int generation) {
    if (!enter_collection(gc)) return 0;
    collect_result_t none = { 0, 0 };
    if (gc->ncallbacks) invoke_callbacks(gc, PM_GC_START, generation, none, 0);
    uint64_t t0 = _pm_os_now_ns();
    collect_result_t r = collect(gc, generation);
    uint64_t ns = _pm_os_now_ns() - t0;
    pm_gen_stats_t *st = &gc->stats[generation];
    st->collections++;
    st->collected += r.collected;
    st->uncollectable += r.uncollectable;
    _pm_gc_record_pause(gc, generation, ns);
    if (gc->debug & PM_GC_DEBUG_STATS)
        _pm_warn("gc: generation %d: %zu unreachable, %zu uncollectable, %lu us",
                 generation, r.collected + r.uncollectable, r.uncollectable, (unsigned long)(ns / 1000));
    if (gc->ncallbacks) invoke_callbacks(gc, PM_GC_STOP, generation, r, ns);
    gc->collecting = false;
    return r.collected + r.uncollectable;
}

/* The oldest generation over its threshold, subject to the 25% rule for the full collection. */
void _pm_gc_collect_on_allocation(pm_gc *gc) {
    if (gc->collecting || !gc->enabled) return;
    if (gc->debug & PM_GC_DEBUG_COLLECT_ALWAYS) { collect_with_callbacks(gc, 0); return; }
    for (int i = PM_GC_GENERATIONS - 1; i >= 0; i--) {
        if (gc->gen[i].count > gc->gen[i].threshold) {
            if (i == PM_GC_GENERATIONS - 1 && gc->long_lived_pending < gc->long_lived_total / 4) continue;
            collect_with_callbacks(gc, i);
            return;
        }
    }
}

void _pm_gc_update_trigger(pm_gc *gc) {
    if (gc->debug & PM_GC_DEBUG_COLLECT_ALWAYS) gc->gen0_trigger = 0;
    else if (!gc->enabled || gc->gen[0].threshold == 0) gc->gen0_trigger = SIZE_MAX;
    else gc->gen0_trigger = gc->gen[0].threshold;
}

/* ---- The public API ---------------------------------------------------------------------------- */

PM_EXPORT pm_gc *pm_gc_new(void) {
    pm_gc *gc = _pm_calloc(1, sizeof *gc);
    if (gc == NULL) return NULL;
    static const size_t thresholds[PM_GC_GENERATIONS] = { PM_GC_THRESHOLD0, PM_GC_THRESHOLD1, PM_GC_THRESHOLD2 };
    for (int i = 0; i < PM_GC_GENERATIONS; i++) {
        _pm_list_init(&gc->gen[i].head);
        gc->gen[i].threshold = thresholds[i];
    }
    _pm_list_init(&gc->permanent);
    _pm_list_init(&gc->garbage);
    gc->enabled = true;
    gc->exit_report_fd = -1;
    _pm_gc_update_trigger(gc);
    _pm_gc_registry_add(gc);
    return gc;
}

/* Collects what it can. Objects still alive afterwards (held from outside, or saved garbage)
 * keep pointing at the collector's type records, so then the collector's memory is kept (and
 * marked destroyed: pm_new on it aborts) and only a late pm_decref of such an object is safe. */
PM_EXPORT void pm_gc_destroy(pm_gc *gc) {
    if (gc == NULL) return;
    if (gc->collecting) _pm_fatal("pm_gc_destroy(): collector %p is collecting", (void *)gc);
    _pm_gc_exit_unregister(gc);
    _pm_gc_registry_remove(gc);
    gc->ncallbacks = 0;
    pm_gc_unfreeze(gc);
    collect_with_callbacks(gc, PM_GC_GENERATIONS - 1);
    gc->enabled = false;
    _pm_gc_update_trigger(gc);
    gc->destroyed = true;
    size_t live = 0;
    for (pm_type_rec_t *r = gc->types_all; r; r = r->all_next) live += r->live;
    if (live != 0) return;
    _pm_weakrefs_free_table(gc);
    _pm_type_recs_free(gc);
    _pm_free(gc);
}

static void check_generation(const char *func, int generation) {
    if (generation < 0 || generation >= PM_GC_GENERATIONS)
        _pm_fatal("%s(): generation %d is not 0, 1 or 2", func, generation);
}

PM_EXPORT size_t pm_gc_collect(pm_gc *gc, int generation) {
    check_generation("pm_gc_collect", generation);
    return collect_with_callbacks(gc, generation);
}

PM_EXPORT void pm_gc_enable(pm_gc *gc) { gc->enabled = true; _pm_gc_update_trigger(gc); }
PM_EXPORT void pm_gc_disable(pm_gc *gc) { gc->enabled = false; _pm_gc_update_trigger(gc); }
PM_EXPORT int  pm_gc_isenabled(pm_gc *gc) { return gc->enabled; }

PM_EXPORT void pm_gc_set_threshold(pm_gc *gc, int t0, int t1, int t2) {
    int t[PM_GC_GENERATIONS] = { t0, t1, t2 };
    for (int i = 0; i < PM_GC_GENERATIONS; i++) gc->gen[i].threshold = t[i] > 0 ? (size_t)t[i] : 0;
    _pm_gc_update_trigger(gc);
}

PM_EXPORT void pm_gc_get_threshold(pm_gc *gc, int out[3]) {
    for (int i = 0; i < PM_GC_GENERATIONS; i++) out[i] = (int)gc->gen[i].threshold;
}

PM_EXPORT void pm_gc_get_count(pm_gc *gc, int out[3]) {
    for (int i = 0; i < PM_GC_GENERATIONS; i++) out[i] = (int)gc->gen[i].count;
}

PM_EXPORT void pm_gc_set_debug(pm_gc *gc, unsigned flags) { gc->debug = flags; _pm_gc_update_trigger(gc); }
PM_EXPORT unsigned pm_gc_get_debug(pm_gc *gc) { return gc->debug; }

/* freeze: every tracked object to the permanent generation, which no collection looks at, so a
 * pre-fork server's children do not touch (and copy) the parent's pages through gc_refs. */
PM_EXPORT void pm_gc_freeze(pm_gc *gc) {
    for (int i = 0; i < PM_GC_GENERATIONS; i++) _pm_list_merge(&gc->gen[i].head, &gc->permanent);
    gc->gen[0].count = 0;
}

PM_EXPORT void pm_gc_unfreeze(pm_gc *gc) {
    _pm_list_merge(&gc->permanent, &gc->gen[PM_GC_GENERATIONS - 1].head);
}

PM_EXPORT size_t pm_gc_get_freeze_count(pm_gc *gc) { return _pm_list_size(&gc->permanent); }

PM_EXPORT void pm_gc_get_stats(pm_gc *gc, pm_gc_stats out[3]) {
    for (int i = 0; i < PM_GC_GENERATIONS; i++) {
        out[i].collections = gc->stats[i].collections;
        out[i].collected = gc->stats[i].collected;
        out[i].uncollectable = gc->stats[i].uncollectable;
    }
}

PM_EXPORT int pm_gc_add_callback(pm_gc *gc, void (*cb)(const pm_gc_event *ev, void *arg), void *arg) {
    if (gc->ncallbacks == PM_GC_MAX_CALLBACKS) { errno = ENOSPC; return -1; }
    gc->callbacks[gc->ncallbacks].cb = cb;
    gc->callbacks[gc->ncallbacks].arg = arg;
    gc->ncallbacks++;
    return 0;
}
