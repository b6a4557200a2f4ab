/* Generations: promotion, get_objects by generation, thresholds and the collections they trigger
 * (seen through callbacks), the 25% rule, enable/disable, freeze/unfreeze. Ports of CPython's
 * test_gc (test_get_objects, test_collect_generations, test_freeze, GCCallbackTests). */
#include "gc_types.h"

static bool has(void **objs, size_t n, void *obj) {
    for (size_t i = 0; i < n; i++) if (objs[i] == obj) return true;
    return false;
}

Test(generations, promotion_and_get_objects_by_generation) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    void *objs[16];
    cr_assert_eq(pm_gc_get_objects(gc, 0, objs, 16), 1);
    cr_assert_eq(objs[0], n);
    cr_assert_eq(pm_gc_get_objects(gc, 1, objs, 16), 0);
    pm_gc_collect(gc, 0);
    cr_assert_eq(_pm_gc_generation_of(gc, n), 1);
    cr_assert_eq(pm_gc_get_objects(gc, 0, objs, 16), 0);
    cr_assert_eq(pm_gc_get_objects(gc, 1, objs, 16), 1);
    pm_gc_collect(gc, 1);
    cr_assert_eq(_pm_gc_generation_of(gc, n), 2);
    pm_gc_collect(gc, 0);
    cr_assert_eq(_pm_gc_generation_of(gc, n), 2, "a young collection leaves old objects alone");
    node *m = new_node(gc);
    pm_gc_collect(gc, 1);                          /* collects 0 and 1: m goes to 2 directly */
    cr_assert_eq(_pm_gc_generation_of(gc, m), 2);
    pm_gc_collect(gc, 2);
    cr_assert_eq(pm_gc_get_objects(gc, 2, objs, 16), 2);
    cr_assert_eq(pm_gc_get_objects(gc, PM_GC_ALL, objs, 16), 2);
    cr_assert(has(objs, 2, n) && has(objs, 2, m));
    cr_assert_eq(pm_gc_get_objects(gc, PM_GC_ALL, NULL, 0), 2, "cap 0 sizes a buffer");
    pm_decref(n); pm_decref(m);
    pm_gc_destroy(gc);
}

Test(generations, young_collection_misses_cycles_referenced_from_older_generations_until_full) {
    pm_gc *gc = quiet_gc();
    node *old = new_node(gc);
    pm_gc_collect(gc, 1);                          /* old is in generation 2 */
    node *young = new_node(gc);
    set_a(old, young); set_a(young, old);
    pm_decref(old); pm_decref(young);
    cr_assert_eq(pm_gc_collect(gc, 0), 0, "old's reference counts as external to generation 0");
    cr_assert_eq(pm_gc_collect(gc, 1), 0);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    pm_gc_destroy(gc);
}

static int events[64][2];
static size_t nevents, stop_collected[64];
static pm_gc *watched;
static size_t pending_at_full_start;
static void record(const pm_gc_event *ev, void *arg) {
    cr_assert_eq(arg, (void *)events);
    if (ev->phase == PM_GC_START && ev->generation == 2 && watched) pending_at_full_start = watched->long_lived_pending;
    if (nevents < 64) {
        events[nevents][0] = ev->phase;
        events[nevents][1] = ev->generation;
        stop_collected[nevents] = ev->collected;
        nevents++;
    }
}

Test(generations, threshold_triggered_collections_with_callbacks) {
    pm_gc *gc = pm_gc_new();
    int t[3];
    pm_gc_get_threshold(gc, t);
    cr_assert(t[0] == 700 && t[1] == 10 && t[2] == 10, "CPython's defaults");
    pm_gc_set_threshold(gc, 10, 2, 1000);
    cr_assert_eq(pm_gc_add_callback(gc, record, events), 0);
    node *keep[100];
    for (int i = 0; i < 100; i++) keep[i] = new_node(gc);
    /* a collection at every 11th allocation (count 11 > 10), before the object exists; every
     * 4th is of generation 1 (its count 3 > 2) */
    static const int want[9] = { 0, 0, 0, 1, 0, 0, 0, 1, 0 };
    cr_assert_eq(nevents, 18);
    for (int i = 0; i < 9; i++) {
        cr_assert_eq(events[2 * i][0], PM_GC_START);
        cr_assert_eq(events[2 * i + 1][0], PM_GC_STOP);
        cr_assert_eq(events[2 * i][1], want[i], "collection %d", i);
        cr_assert_eq(events[2 * i + 1][1], want[i]);
        cr_assert_eq(stop_collected[2 * i + 1], 0);
    }
    int count[3];
    pm_gc_get_count(gc, count);
    cr_assert_eq(count[0], 1);
    cr_assert_eq(count[1], 1);
    cr_assert_eq(count[2], 2);
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    cr_assert_eq(st[0].collections, 7);
    cr_assert_eq(st[1].collections, 2);
    pm_gc_pause_stats ps;
    pm_gc_get_pause_stats(gc, 0, &ps);
    cr_assert_eq(ps.count, 7);
    cr_assert(ps.max_ns >= ps.p99_ns && ps.p99_ns >= ps.p50_ns && ps.total_ns >= ps.max_ns);
    for (int i = 0; i < 100; i++) pm_decref(keep[i]);
    pm_gc_destroy(gc);
}

Test(generations, callbacks_see_what_was_collected) {
    pm_gc *gc = quiet_gc();
    pm_gc_add_callback(gc, record, events);
    node *a = new_node(gc);
    set_a(a, a);
    pm_decref(a);
    cr_assert_eq(pm_gc_collect(gc, 1), 1);
    cr_assert_eq(nevents, 2);
    cr_assert_eq(events[0][0], PM_GC_START);
    cr_assert_eq(events[1][0], PM_GC_STOP);
    cr_assert_eq(events[1][1], 1);
    cr_assert_eq(stop_collected[1], 1);
    for (int i = 1; i < PM_GC_MAX_CALLBACKS; i++) cr_assert_eq(pm_gc_add_callback(gc, record, events), 0);
    cr_assert_eq(pm_gc_add_callback(gc, record, events), -1, "the table is full");
    pm_gc_destroy(gc);
}

Test(generations, deallocation_lowers_the_generation_0_count) {
    pm_gc *gc = quiet_gc();
    int count[3];
    node *a = new_node(gc), *b = new_node(gc);
    void *leaf = pm_new(gc, &leaf_type, 8);
    pm_gc_get_count(gc, count);
    cr_assert_eq(count[0], 2, "only containers count");
    pm_decref(a);
    pm_decref(leaf);
    pm_gc_get_count(gc, count);
    cr_assert_eq(count[0], 1);
    pm_decref(b);
    pm_gc_destroy(gc);
}

/* A full collection waits until the objects promoted to generation 2 since the last one exceed
 * 25% of the survivors of that one. */
static size_t allocations_until_full(size_t old_objects, size_t *pending) {
    pm_gc *gc = quiet_gc();
    watched = gc;
    nevents = 0;
    pending_at_full_start = 0;
    for (size_t i = 0; i < old_objects; i++) (void)new_node(gc);      /* kept alive, never freed */
    pm_gc_collect(gc, 2);
    cr_assert_eq(gc->long_lived_total, old_objects);
    pm_gc_add_callback(gc, record, events);
    pm_gc_set_threshold(gc, 1, 0, 0);
    pm_gc_enable(gc);
    size_t n = 0;
    while (n < 10000) {
        (void)new_node(gc);
        n++;
        if (nevents && events[nevents - 1][1] == 2) break;
    }
    *pending = pending_at_full_start;
    watched = NULL;
    return n;
}

Test(generations, the_25_percent_rule_limits_full_collections) {
    size_t pending;
    size_t n0 = allocations_until_full(0, &pending);
    cr_assert_eq(n0, 6, "nothing long-lived: the first chance (after a gen 0 and a gen 1) is taken (%zu)", n0);
    size_t n400 = allocations_until_full(400, &pending);
    cr_assert_geq(pending, 100, "pending %zu must reach 25%% of 400", pending);
    cr_assert_gt(n400, 100, "%zu allocations", n400);
}

Test(generations, disable_enable_and_threshold_zero) {
    pm_gc *gc = pm_gc_new();
    cr_assert(pm_gc_isenabled(gc));
    pm_gc_add_callback(gc, record, events);
    pm_gc_set_threshold(gc, 5, 10, 10);
    pm_gc_disable(gc);
    cr_assert(!pm_gc_isenabled(gc));
    for (int i = 0; i < 20; i++) pm_decref(new_node(gc));
    for (int i = 0; i < 20; i++) (void)new_node(gc);
    cr_assert_eq(nevents, 0);
    pm_gc_enable(gc);
    pm_gc_set_threshold(gc, 0, 10, 10);            /* threshold 0: automatic collection off */
    for (int i = 0; i < 20; i++) (void)new_node(gc);
    cr_assert_eq(nevents, 0);
    pm_gc_set_threshold(gc, 5, 10, 10);
    (void)new_node(gc);
    cr_assert_eq(nevents, 2, "count 41 > 5: one collection");
    pm_gc_destroy(gc);
}

Test(generations, freeze_and_unfreeze) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc), *live = new_node(gc);
    set_a(a, b); set_a(b, a);
    pm_gc_freeze(gc);
    cr_assert_eq(pm_gc_get_freeze_count(gc), 3);
    cr_assert_eq(pm_gc_get_objects(gc, PM_GC_ALL, NULL, 0), 0);
    int count[3];
    pm_gc_get_count(gc, count);
    cr_assert_eq(count[0], 0);
    cr_assert_eq(_pm_gc_generation_of(gc, a), PM_GEN_PERMANENT);
    pm_decref(a); pm_decref(b);
    cr_assert_eq(pm_gc_collect(gc, 2), 0, "frozen garbage is ignored");
    node *young = new_node(gc);
    cr_assert_eq(_pm_gc_generation_of(gc, young), 0);
    pm_gc_unfreeze(gc);
    cr_assert_eq(pm_gc_get_freeze_count(gc), 0);
    cr_assert_eq(_pm_gc_generation_of(gc, a), 2, "unfreeze moves to the oldest generation");
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    cr_assert_eq(node_deallocs, 2);
    assert_gc_ok(gc);
    pm_decref(live); pm_decref(young);
    pm_gc_destroy(gc);
}

/* The "collect at every allocation" debug mode flushes out GC bugs (STYLE 15). */
Test(generations, collect_always_debug_mode) {
    pm_gc *gc = pm_gc_new();
    pm_gc_add_callback(gc, record, events);
    pm_gc_set_debug(gc, PM_GC_DEBUG_COLLECT_ALWAYS);
    cr_assert_eq(pm_gc_get_debug(gc), PM_GC_DEBUG_COLLECT_ALWAYS);
    node *a = new_node(gc);                         /* one collection before each pm_new */
    node *b = new_node(gc);
    set_a(a, b); set_a(b, a);
    pm_decref(a); pm_decref(b);
    node *c = new_node(gc);      /* b is garbage but a, in generation 1, holds it: not found */
    cr_assert_eq(nevents, 6);
    cr_assert_eq(stop_collected[5], 0);
    pm_gc_set_debug(gc, 0);
    cr_assert_eq(pm_gc_collect(gc, 2), 2);
    pm_decref(c);
    pm_gc_destroy(gc);
}
