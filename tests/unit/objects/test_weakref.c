/* Finalizers, resurrection, uncollectable cycles and weak references: ports of CPython's
 * test_gc (test_finalizer, test_resurrection..., test_legacy_finalizer-like garbage,
 * test_bug1055820 / weakref callbacks) with exact counts. */
#include "gc_types.h"

static size_t callbacks;
static pm_weakref *callback_ref;
static void *callback_saw;
static void on_dead(pm_weakref *ref, void *arg) {
    callbacks++;
    callback_ref = ref;
    callback_saw = pm_weakref_get(ref);               /* must read NULL */
    cr_assert_eq(arg, (void *)&callbacks);
}

Test(weakref, cleared_and_called_when_refcount_frees) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    pm_weakref *w = pm_weakref_new(n, on_dead, &callbacks);
    pm_weakref *plain = pm_weakref_new(n, NULL, NULL);
    void *strong = pm_weakref_get(w);
    cr_assert_eq(strong, n);
    cr_assert_eq(pm_refcount(n), 2);
    pm_decref(strong);
    pm_decref(n);
    cr_assert_eq(callbacks, 1);
    cr_assert_eq(callback_ref, w);
    cr_assert_null(callback_saw);
    cr_assert_null(pm_weakref_get(w));
    cr_assert_null(pm_weakref_get(plain));
    pm_weakref_free(w);
    pm_weakref_free(plain);
    pm_gc_destroy(gc);
}

/* The collector clears every weakref to the garbage before any callback or finalizer runs. */
static pm_weakref *other_ref;
static size_t other_was_clear;
static void check_other_cleared(pm_weakref *ref, void *arg) {
    (void)ref; (void)arg;
    callbacks++;
    if (pm_weakref_get(other_ref) == NULL) other_was_clear++;
}

Test(weakref, cleared_by_the_collector_before_callbacks_run) {
    pm_gc *gc = quiet_gc();
    node *a = new_of(gc, &finalized_type), *b = new_of(gc, &finalized_type);
    set_a(a, b); set_a(b, a);
    pm_weakref *wa = pm_weakref_new(a, check_other_cleared, NULL);
    other_ref = pm_weakref_new(b, check_other_cleared, NULL);
    pm_decref(a); pm_decref(b);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    cr_assert_eq(callbacks, 2);
    cr_assert_eq(other_was_clear, 2);
    cr_assert_null(pm_weakref_get(wa));
    cr_assert_eq(node_finalizes, 2);
    cr_assert_eq(node_deallocs, 2);
    pm_weakref_free(wa);
    pm_weakref_free(other_ref);
    pm_gc_destroy(gc);
}

Test(weakref, freed_weakref_never_calls_back) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    pm_weakref *w1 = pm_weakref_new(n, on_dead, &callbacks);
    pm_weakref *w2 = pm_weakref_new(n, on_dead, &callbacks);
    pm_weakref_free(w1);
    cr_assert(_pm_head_of(n)->prev & PM_PREV_WEAKREFS, "w2 still points here");
    pm_weakref_free(w2);
    cr_assert_eq(_pm_head_of(n)->prev & PM_PREV_WEAKREFS, 0);
    pm_decref(n);
    cr_assert_eq(callbacks, 0);
    pm_gc_destroy(gc);
}

static void free_self(pm_weakref *ref, void *arg) { (void)arg; callbacks++; pm_weakref_free(ref); }

Test(weakref, many_objects_and_callbacks_that_free_their_weakref) {
    pm_gc *gc = quiet_gc();
    enum { N = 1000 };
    node *ring[N];
    for (int i = 0; i < N; i++) ring[i] = new_node(gc);
    for (int i = 0; i < N; i++) { set_a(ring[i], ring[(i + 1) % N]); pm_weakref_new(ring[i], free_self, NULL); }
    for (int i = 0; i < N; i++) pm_decref(ring[i]);
    cr_assert_eq(pm_gc_collect(gc, 2), N);
    cr_assert_eq(callbacks, N);
    cr_assert_eq(gc->weakref_count, 0);
    pm_gc_destroy(gc);
}

/* A weakref callback can resurrect nothing (the referent reads NULL), but it is user code, so
 * the collector re-checks: objects a callback makes reachable survive. */
static node *keeper;
static void grab_b_on_death(pm_weakref *ref, void *arg) { (void)ref; callbacks++; keeper = arg; pm_incref(arg); }

Test(weakref, callback_that_keeps_other_garbage_alive) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc);
    set_a(a, b); set_a(b, a);
    pm_weakref *w = pm_weakref_new(a, grab_b_on_death, b);      /* the callback grabs b */
    pm_decref(a); pm_decref(b);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "b and a (reached from b) survive");
    cr_assert_eq(callbacks, 1);
    cr_assert_null(pm_weakref_get(w), "a's weakref stays cleared");
    cr_assert_eq(node_deallocs, 0);
    pm_decref(keeper);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    pm_weakref_free(w);
    pm_gc_destroy(gc);
}
