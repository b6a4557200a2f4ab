/* The collector finds exactly the cycles that refcounting cannot free: ports of CPython's
 * test_gc (test_list, test_dict-like self-cycles, 2-cycles, held-then-released cycles, a big
 * ring, deep chains) with exact counts, plus the object header and refcounting. */
#include "gc_types.h"

Test(collect, self_cycle) {                /* test_gc.test_list: l = []; l.append(l) */
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    set_a(n, n);
    pm_decref(n);
    cr_assert_eq(node_deallocs, 0, "refcounting alone cannot free a self-cycle");
    cr_assert_eq(pm_gc_collect(gc, 2), 1);
    cr_assert_eq(node_deallocs, 1);
    cr_assert_eq(pm_gc_collect(gc, 2), 0);
    assert_gc_ok(gc);
    pm_gc_destroy(gc);
}

Test(collect, two_cycles) {
    pm_gc *gc = quiet_gc();
    for (int i = 0; i < 10; i++) {
        node *a = new_node(gc), *b = new_node(gc);
        set_a(a, b);
        set_a(b, a);
        pm_decref(a);
        pm_decref(b);
    }
    cr_assert_eq(pm_gc_collect(gc, 2), 20);
    cr_assert_eq(node_deallocs, 20);
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    cr_assert_eq(st[2].collections, 1);
    cr_assert_eq(st[2].collected, 20);
    cr_assert_eq(st[2].uncollectable, 0);
    pm_gc_destroy(gc);
}

Test(collect, cycle_held_from_outside_then_released) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc), *c = new_node(gc);
    set_a(a, b); set_a(b, c); set_a(c, a);
    pm_decref(b);
    pm_decref(c);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "held from outside through a");
    cr_assert_eq(node_deallocs, 0);
    cr_assert_eq(pm_refcount(a), 2);
    cr_assert_eq(pm_refcount(b), 1);
    pm_decref(a);
    cr_assert_eq(pm_gc_collect(gc, 2), 3);
    cr_assert_eq(node_deallocs, 3);
    assert_gc_ok(gc);
    pm_gc_destroy(gc);
}

Test(collect, garbage_reachable_from_a_cycle_is_collected_but_not_counted_twice) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc);
    set_a(a, b); set_a(b, a);
    node *tail = new_node(gc);
    void *leaf = pm_new(gc, &leaf_type, 16);
    set_b(a, tail);
    set_a(tail, leaf);
    pm_decref(leaf); pm_decref(tail); pm_decref(b); pm_decref(a);
    cr_assert_eq(pm_gc_collect(gc, 2), 3, "the tracked objects a, b and tail are unreachable");
    cr_assert_eq(node_deallocs, 3);
    cr_assert_eq(leaf_deallocs, 1);
    pm_gc_destroy(gc);
}

Test(collect, ring_of_100000) {
    pm_gc *gc = quiet_gc();
    enum { N = 100000 };
    node *first = new_node(gc), *prev = first;
    for (int i = 1; i < N; i++) {
        node *n = new_node(gc);
        set_a(prev, n);
        pm_decref(n);
        prev = n;
    }
    set_a(prev, first);
    cr_assert_eq(pm_gc_collect(gc, 2), 0);
    cr_assert_eq(_pm_gc_check(gc), N);
    pm_decref(first);
    cr_assert_eq(pm_gc_collect(gc, 2), N);
    cr_assert_eq(node_deallocs, N);
    cr_assert_eq(_pm_gc_check(gc), 0);
    pm_gc_destroy(gc);
}

/* Tracked objects that survive stay; the reachable part of a mixed generation is untouched. */
Test(collect, reachable_and_unreachable_mixed) {
    pm_gc *gc = quiet_gc();
    node *keep = new_node(gc);
    for (int i = 0; i < 1000; i++) {
        node *n = new_node(gc);
        if (i % 2) { set_a(n, n); pm_decref(n); }       /* garbage self-cycle */
        else { set_b(n, keep); set_a(keep, n); pm_decref(n); }  /* chain held through keep */
    }
    cr_assert_eq(pm_gc_collect(gc, 2), 500);
    cr_assert_eq(node_deallocs, 500 + 499, "the 499 nodes keep dropped while relinking, then 500 cycles");
    cr_assert_eq(_pm_gc_check(gc), 2);
    pm_decref(keep);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    pm_gc_destroy(gc);
}

/* CPython's trashcan tests: deallocating a long chain must not recurse without bound. */
Test(collect, decref_of_a_ten_million_chain_uses_bounded_stack) {
    pm_gc *gc = quiet_gc();
    enum { N = 10 * 1000 * 1000 };
    node *head = new_node(gc), *n = head;
    for (long i = 1; i < N; i++) {
        node *next = new_node(gc);
        n->a = next;                       /* steal the new reference */
        n = next;
    }
    pm_decref(head);
    cr_assert_eq(node_deallocs, N);
    assert_gc_ok(gc);
    pm_gc_destroy(gc);
}

Test(collect, collecting_a_deep_chain_in_a_cycle) {
    pm_gc *gc = quiet_gc();
    enum { N = 1000 * 1000 };
    node *head = new_node(gc), *n = head;
    for (long i = 1; i < N; i++) {
        node *next = new_node(gc);
        n->a = next;
        n = next;
    }
    set_a(n, head);                        /* close the ring */
    pm_decref(head);
    cr_assert_eq(pm_gc_collect(gc, 2), N);
    cr_assert_eq(node_deallocs, N);
    pm_gc_destroy(gc);
}

Test(collect, untracked_containers_are_ignored) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    set_a(n, n);
    pm_untrack(n);
    pm_decref(n);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "an untracked cycle is invisible to the collector");
    cr_assert_eq(node_deallocs, 0);
    pm_gc_destroy(gc);
}

Test(collect, an_empty_collector_finds_nothing) {
    pm_gc *gc = quiet_gc();
    cr_assert_eq(pm_gc_collect(gc, 0), 0);
    cr_assert_eq(pm_gc_collect(gc, 1), 0);
    pm_gc_destroy(gc);
}
