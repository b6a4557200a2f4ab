/* Finalizers, resurrection, uncollectable cycles and weak references: ports of CPython's
 * test_gc (test_finalizer, test_resurrection..., test_legacy_finalizer-like garbage,
 * test_bug1055820 / weakref callbacks) with exact counts. */
#include "gc_types.h"

Test(finalize, finalizer_runs_once_by_refcount) {
    pm_gc *gc = quiet_gc();
    node *n = new_of(gc, &finalized_type);
    cr_assert(!pm_gc_is_finalized(n));
    pm_decref(n);
    cr_assert_eq(node_finalizes, 1);
    cr_assert_eq(node_deallocs, 1);
    pm_gc_destroy(gc);
}

Test(finalize, finalizers_run_once_per_object_of_a_cycle) {
    pm_gc *gc = quiet_gc();
    node *a = new_of(gc, &finalized_type), *b = new_of(gc, &finalized_type);
    set_a(a, b); set_a(b, a);
    pm_decref(a); pm_decref(b);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    cr_assert_eq(node_finalizes, 2, "once each, not again when clear frees them");
    cr_assert_eq(node_deallocs, 2);
    pm_gc_destroy(gc);
}

/* A finalizer that stores its object elsewhere resurrects it: it and everything it reaches
 * survive; its finalizer never runs again; once released, refcounting frees it. */
Test(finalize, resurrection) {
    pm_gc *gc = quiet_gc();
    node *p = new_of(gc, &phoenix_type), *other = new_node(gc);
    set_a(p, other); set_a(other, p);               /* p <-> other, garbage */
    pm_decref(p); pm_decref(other);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "everything was resurrected: nothing found");
    cr_assert_eq(node_finalizes, 1);
    cr_assert_eq(resurrect_into, p);
    cr_assert_eq(node_deallocs, 0);
    cr_assert(pm_gc_is_finalized(p));
    cr_assert_eq(pm_refcount(p), 2);
    cr_assert_eq(_pm_gc_generation_of(gc, p), 2);
    assert_gc_ok(gc);
    /* drop the resurrected reference: garbage again, and this time it dies */
    resurrect_into = NULL;
    pm_decref(p);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    cr_assert_eq(node_finalizes, 1, "a finalizer runs at most once");
    cr_assert_eq(node_deallocs, 2);
    pm_gc_destroy(gc);
}

/* Resurrection keeps only what the resurrected object reaches; the rest of the garbage dies
 * (test_gc.test_resurrection_does_not_block_cleanup_of_other_objects). */
Test(finalize, resurrection_does_not_block_other_garbage) {
    pm_gc *gc = quiet_gc();
    node *p = new_of(gc, &phoenix_type);
    set_a(p, p);
    pm_decref(p);
    for (int i = 0; i < 100; i++) {
        node *a = new_node(gc), *b = new_node(gc);
        set_a(a, b); set_a(b, a);
        pm_decref(a); pm_decref(b);
    }
    cr_assert_eq(pm_gc_collect(gc, 2), 200);
    cr_assert_eq(node_deallocs, 200);
    cr_assert_eq(resurrect_into, p);
    cr_assert_eq(pm_refcount(p), 2);
    resurrect_into = NULL;
    pm_decref(p);
    cr_assert_eq(pm_gc_collect(gc, 2), 1);
    pm_gc_destroy(gc);
}

Test(finalize, resurrection_by_refcount) {
    pm_gc *gc = quiet_gc();
    node *p = new_of(gc, &phoenix_type);
    pm_decref(p);
    cr_assert_eq(resurrect_into, p);
    cr_assert_eq(node_deallocs, 0);
    cr_assert_eq(pm_refcount(p), 1);
    cr_assert(pm_is_tracked(p));
    pm_decref(p);
    cr_assert_eq(node_deallocs, 1);
    cr_assert_eq(node_finalizes, 1);
    pm_gc_destroy(gc);
}

/* A cycle in which no object has clear cannot be broken: uncollectable, counted once, saved. */
Test(finalize, cycle_without_clear_is_uncollectable) {
    pm_gc *gc = quiet_gc();
    node *a = new_of(gc, &noclear_type), *b = new_of(gc, &noclear_type);
    set_a(a, b); set_a(b, a);
    pm_decref(a); pm_decref(b);
    cr_assert_eq(pm_gc_collect(gc, 2), 2, "found unreachable");
    cr_assert_eq(node_deallocs, 0, "but not freed");
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    cr_assert_eq(st[2].collected, 0);
    cr_assert_eq(st[2].uncollectable, 2);
    void *garbage[4];
    cr_assert_eq(pm_gc_get_garbage(gc, garbage, 4), 2);
    cr_assert(garbage[0] == a || garbage[1] == a);
    cr_assert_eq(_pm_gc_generation_of(gc, a), PM_GEN_GARBAGE);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "saved garbage is not scanned again");
    assert_gc_ok(gc);
    /* the program may break the cycle itself */
    node_clear(a);
    cr_assert_eq(node_deallocs, 2);
    cr_assert_eq(pm_gc_get_garbage(gc, NULL, 0), 0);
    pm_gc_destroy(gc);
}

Test(finalize, one_clear_breaks_a_mixed_cycle) {
    pm_gc *gc = quiet_gc();
    node *a = new_of(gc, &noclear_type), *b = new_node(gc), *c = new_of(gc, &noclear_type);
    set_a(a, b); set_a(b, c); set_a(c, a);
    pm_decref(a); pm_decref(b); pm_decref(c);
    cr_assert_eq(pm_gc_collect(gc, 2), 3);
    cr_assert_eq(node_deallocs, 3);
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    cr_assert_eq(st[2].collected, 3);
    cr_assert_eq(st[2].uncollectable, 0);
    pm_gc_destroy(gc);
}

/* ---- weak references ---- */
