/* Looking at the graph: get_referrers / get_referents (CPython's test_get_referrers,
 * test_get_referents), "why is this alive?", per-type counters, the report and the report at
 * exit. */
#include "gc_types.h"

static bool has(void **objs, size_t n, void *obj) {
    for (size_t i = 0; i < n; i++) if (objs[i] == obj) return true;
    return false;
}

Test(inspect, referents) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc);
    void *leaf = pm_new(gc, &leaf_type, 8);
    set_a(a, b); set_b(a, leaf);
    void *out[4];
    cr_assert_eq(pm_gc_get_referents(a, out, 4), 2);
    cr_assert_eq(out[0], b);
    cr_assert_eq(out[1], leaf);
    cr_assert_eq(pm_gc_get_referents(b, out, 4), 0);
    cr_assert_eq(pm_gc_get_referents(leaf, out, 4), 0, "not a container");
    set_a(b, b); set_b(b, b);
    cr_assert_eq(pm_gc_get_referents(b, out, 4), 2, "each visit is listed");
    cr_assert_eq(pm_gc_get_referents(b, out, 1), 2, "the count even when cap is short");
    pm_decref(leaf); pm_decref(b); pm_decref(a);
    cr_assert_eq(pm_gc_collect(gc, 2), 1);
    pm_gc_destroy(gc);
}

Test(inspect, referrers) {
    pm_gc *gc = quiet_gc();
    node *target = new_node(gc), *x = new_node(gc), *y = new_node(gc), *z = new_node(gc);
    set_a(x, target); set_b(x, target);              /* x refers twice: listed once */
    set_a(y, target);
    set_a(z, x);
    pm_gc_freeze(gc);                                 /* referrers include frozen objects */
    node *w = new_node(gc);
    set_b(w, target);
    void *out[8];
    size_t n = pm_gc_get_referrers(gc, target, out, 8);
    cr_assert_eq(n, 3);
    cr_assert(has(out, n, x) && has(out, n, y) && has(out, n, w));
    cr_assert_eq(pm_gc_get_referrers(gc, z, out, 8), 0);
    cr_assert_eq(pm_gc_get_referrers(gc, x, out, 8), 1);
    cr_assert_eq(out[0], z);
    pm_gc_unfreeze(gc);
    pm_decref(target); pm_decref(x); pm_decref(y); pm_decref(z); pm_decref(w);
    cr_assert_eq(node_deallocs, 5);
    pm_gc_destroy(gc);
}

Test(inspect, why_alive_gives_a_shortest_chain_from_an_outside_reference) {
    pm_gc *gc = quiet_gc();
    /* root -> m1 -> m2 -> target, and root -> m1 -> m3 -> m2 (longer); a garbage ring also
     * points at m2 but is not held */
    node *root = new_node(gc), *m1 = new_node(gc), *m2 = new_node(gc), *m3 = new_node(gc), *target = new_node(gc);
    set_a(root, m1); set_a(m1, m3); set_b(m1, m2); set_a(m3, m2); set_a(m2, target);
    node *g1 = new_node(gc), *g2 = new_node(gc);
    set_a(g1, g2); set_a(g2, g1); set_b(g1, m2);
    pm_decref(m1); pm_decref(m2); pm_decref(m3); pm_decref(target); pm_decref(g1); pm_decref(g2);
    void *chain[8];
    size_t n = pm_gc_why_alive(gc, target, chain, 8);
    cr_assert_eq(n, 4);
    cr_assert_eq(chain[0], root);
    cr_assert_eq(chain[1], m1);
    cr_assert_eq(chain[2], m2);
    cr_assert_eq(chain[3], target);
    cr_assert_eq(pm_gc_why_alive(gc, root, chain, 8), 1, "held from outside itself");
    cr_assert_eq(chain[0], root);
    cr_assert_eq(pm_gc_why_alive(gc, g1, chain, 8), 0, "garbage: nothing outside holds it");
    /* an untracked leaf held only through the graph */
    void *leaf = pm_new(gc, &leaf_type, 8);
    set_b(target, leaf);
    pm_decref(leaf);
    cr_assert_eq(pm_gc_why_alive(gc, leaf, chain, 8), 5);
    cr_assert_eq(chain[4], leaf);
    cr_assert_eq(pm_gc_why_alive(gc, leaf, chain, 2), 5, "length even when cap is short");
    /* printed, one line per link */
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pm_gc_print_why_alive(gc, target, fds[1]);
    close(fds[1]);
    char buf[2048] = { 0 };
    cr_assert_gt(read(fds[0], buf, sizeof buf - 1), 0);
    close(fds[0]);
    cr_assert(strstr(buf, "why is node") && strstr(buf, "a chain of 4 references"), "%s", buf);
    cr_assert(strstr(buf, "held from outside: node") && strstr(buf, "<- this object"), "%s", buf);
    pm_decref(root);            /* refcounting frees root, m1 and m3; g1 still holds m2 */
    cr_assert_eq(node_deallocs, 3);
    cr_assert_eq(pm_gc_collect(gc, 2), 4, "m2, target and the ring");
    pm_gc_destroy(gc);
}

Test(inspect, type_stats) {
    pm_gc *gc = quiet_gc();
    node *keep[5];
    for (int i = 0; i < 5; i++) keep[i] = new_node(gc);
    for (int i = 0; i < 3; i++) pm_decref(keep[i]);
    void *leaf = pm_new(gc, &leaf_type, 8);
    pm_gc_type_stats ts[4];
    cr_assert_eq(pm_gc_get_type_stats(gc, ts, 4), 2);
    cr_assert_eq(ts[0].type, &node_type);
    cr_assert_str_eq(ts[0].name, "node");
    cr_assert_eq(ts[0].live, 2);
    cr_assert_eq(ts[0].peak, 5);
    cr_assert_eq(ts[0].allocated, 5);
    cr_assert_eq(ts[0].freed, 3);
    cr_assert_eq(ts[1].type, &leaf_type);
    cr_assert_eq(ts[1].live, 1);
    pm_decref(leaf); pm_decref(keep[3]); pm_decref(keep[4]);
    cr_assert_eq(pm_gc_get_type_stats(gc, ts, 4), 2);
    cr_assert_eq(ts[0].live, 0);
    cr_assert_eq(ts[1].freed, 1);
    pm_gc_destroy(gc);
}

static size_t read_all(int fd, char *buf, size_t cap) {
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    return len;
}

Test(inspect, report) {
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    set_a(n, n);
    pm_decref(n);
    pm_gc_collect(gc, 2);
    (void)new_node(gc);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pm_gc_report(gc, fds[1]);
    close(fds[1]);
    char buf[4096];
    read_all(fds[0], buf, sizeof buf);
    close(fds[0]);
    cr_assert(strstr(buf, "1 objects alive in 1 types"), "%s", buf);
    cr_assert(strstr(buf, "node "), "%s", buf);
    cr_assert(strstr(buf, "generation"), "%s", buf);
    cr_assert(strstr(buf, "tracked: generations 1 / 0 / 0, frozen 0, saved garbage 0"), "%s", buf);
}

static void exit_with_live_objects(void *arg) {
    (void)arg;
    pm_gc *gc = pm_gc_new();
    pm_gc_report_at_exit(gc, 2);
    for (int i = 0; i < 3; i++) (void)new_node(gc);
    (void)pm_new(gc, &leaf_type, 8);
    exit(0);                                    /* destructors run */
}

Test(inspect, report_at_exit_lists_objects_still_alive_by_type) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) { dup2(fds[1], 2); close(fds[0]); exit_with_live_objects(NULL); }
    close(fds[1]);
    char buf[4096];
    read_all(fds[0], buf, sizeof buf);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert(strstr(buf, "objects still alive at exit"), "%s", buf);
    cr_assert(strstr(buf, "4 objects alive in 2 types"), "%s", buf);
    char want[64];
    snprintf(want, sizeof want, "  %-24s %12d", "node", 3);
    cr_assert(strstr(buf, want), "%s", buf);
}

Test(inspect, invariant_checker_finds_a_broken_list) {
    pm_gc *gc = quiet_gc();
    node *a = new_node(gc), *b = new_node(gc);
    cr_assert_eq(_pm_gc_check(gc), 2);
    pm_head_t *h = _pm_head_of(b);
    uintptr_t saved = h->prev;
    h->prev = (h->prev & PM_PREV_FLAGS) | (uintptr_t)&gc->gen[0].head;   /* b's prev skips a */
    cr_assert_eq(_pm_gc_check(gc), SIZE_MAX);
    cr_assert_str_eq(_pm_gc_check_ring(&gc->gen[0].head, false), "gc: broken list: next->prev is not the object");
    h->prev = saved;
    cr_assert_eq(_pm_gc_check(gc), 2);
    assert_sound(_pm_gc_check_ring(&gc->gen[0].head, false));
    cr_assert_str_eq(_pm_gc_check_ring(&gc->gen[0].head, true), "gc: an object of the collected set lacks COLLECTING");
    pm_decref(a); pm_decref(b);
    pm_gc_destroy(gc);
}
