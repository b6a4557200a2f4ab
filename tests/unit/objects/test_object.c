/* The collector finds exactly the cycles that refcounting cannot free: ports of CPython's
 * test_gc (test_list, test_dict-like self-cycles, 2-cycles, held-then-released cycles, a big
 * ring, deep chains) with exact counts, plus the object header and refcounting. */
#include "gc_types.h"

Test(object, header_size_and_payload_alignment) {
    cr_assert_eq(PM_GC_HEADER_SIZE, 32);
    cr_assert_eq(sizeof(pm_head_t), PM_GC_HEADER_SIZE);
    pm_gc *gc = quiet_gc();
    for (size_t size = 0; size < 300; size += 7) {
        void *p = pm_new(gc, &leaf_type, size);
        cr_assert_eq((uintptr_t)p % PM_GC_ALIGN, 0, "size %zu", size);
        for (size_t i = 0; i < size; i++) cr_assert_eq(((unsigned char *)p)[i], 0, "zeroed");
        pm_decref(p);
    }
    void *big = pm_new(gc, &leaf_type, 3u << 20);             /* a huge block */
    cr_assert_eq((uintptr_t)big % PM_GC_ALIGN, 0);
    pm_decref(big);
    pm_gc_destroy(gc);
}

Test(object, refcount_type_and_tracking) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    void *leaf = pm_new(gc, &leaf_type, 8);
    cr_assert_eq(pm_refcount(n), 1);
    cr_assert_eq(pm_type_of(n), &node_type);
    cr_assert_eq(pm_type_of(leaf), &leaf_type);
    cr_assert(pm_is_tracked(n), "containers are tracked");
    cr_assert(!pm_is_tracked(leaf), "other objects never are");
    pm_incref(n);
    cr_assert_eq(pm_refcount(n), 2);
    pm_untrack(n);
    cr_assert(!pm_is_tracked(n));
    pm_track(n);
    pm_track(n);                                                /* already tracked: no-op */
    cr_assert(pm_is_tracked(n));
    cr_assert_eq(_pm_gc_check(gc), 1);
    pm_decref(n);
    cr_assert_eq(node_deallocs, 0);
    pm_decref(n);
    cr_assert_eq(node_deallocs, 1);
    pm_decref(leaf);
    cr_assert_eq(leaf_deallocs, 1);
    cr_assert_eq(_pm_gc_check(gc), 0);
    pm_gc_destroy(gc);
}

Test(object, refcounting_frees_acyclic_garbage_at_once) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc);
    set_a(a, b);
    pm_decref(b);
    cr_assert_eq(node_deallocs, 0);
    pm_decref(a);
    cr_assert_eq(node_deallocs, 2);
    cr_assert_eq(pm_gc_collect(gc, 2), 0);
    pm_gc_destroy(gc);
}
