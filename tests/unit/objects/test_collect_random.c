/* A randomized graph checked against a reference model. The model knows every edge and every
 * reference held from outside; after each full collection the objects still alive must be
 * exactly those the model reaches from outside, and the collection must have found exactly the
 * unreachable ones that refcounting had not freed. After any collection and any mutation, no
 * reachable object may have been freed, and every refcount must equal the model's in-degree
 * plus the outside holds. Fixed seeds, so a failure replays. */
#include "gc_types.h"

enum { MAX = 400 };
typedef struct {
    node  *obj[MAX];       /* valid while alive[i] */
    bool   alive[MAX];     /* set by pm_new, cleared by the dealloc below */
    int    edge[MAX][2];   /* -1 or an id */
    int    held[MAX];      /* references the test holds */
    bool   reach[MAX];
    int    n;
} model_t;
static model_t M;

static void model_dealloc(void *self) {
    node *x = self;
    M.alive[x->id] = false;
    node_clear(self);
}
static const pm_type model_type = { "model", node_traverse, node_clear, NULL, model_dealloc };

static void compute_reach(void) {
    int stack[MAX], sp = 0;
    memset(M.reach, 0, sizeof M.reach);
    for (int i = 0; i < M.n; i++) if (M.held[i] > 0) { M.reach[i] = true; stack[sp++] = i; }
    while (sp) {
        int i = stack[--sp];
        for (int k = 0; k < 2; k++) {
            int j = M.edge[i][k];
            if (j >= 0 && !M.reach[j]) { M.reach[j] = true; stack[sp++] = j; }
        }
    }
}

static int pick_reachable(uint64_t *seed) {
    int cand[MAX], c = 0;
    for (int i = 0; i < M.n; i++) if (M.reach[i]) cand[c++] = i;
    return c ? cand[test_rand(seed) % (uint64_t)c] : -1;
}

static void check_model(pm_gc *gc, bool after_full, size_t found, size_t alive_before_unreach) {
    compute_reach();
    for (int i = 0; i < M.n; i++) {
        if (M.reach[i]) {
            cr_assert(M.alive[i], "object %d is reachable but was freed", i);
            size_t indeg = (size_t)M.held[i];
            for (int j = 0; j < M.n; j++)
                if (M.alive[j]) for (int k = 0; k < 2; k++) indeg += M.edge[j][k] == i;
            cr_assert_eq(pm_refcount(M.obj[i]), indeg, "refcount of %d", i);
        } else if (after_full) {
            cr_assert(!M.alive[i], "object %d is unreachable but alive after a full collection", i);
        }
    }
    if (after_full) cr_assert_eq(found, alive_before_unreach, "collect found %zu, the model says %zu", found, alive_before_unreach);
    cr_assert_neq(_pm_gc_check(gc), SIZE_MAX);
}

static void run(uint64_t seed, int steps, unsigned debug) {
    memset(&M, 0, sizeof M);
    pm_gc *gc = quiet_gc();
    pm_gc_set_debug(gc, debug);
    if (debug) pm_gc_enable(gc);
    size_t fulls = 0;
    for (int step = 0; step < steps; step++) {
        compute_reach();
        unsigned op = (unsigned)(test_rand(&seed) % 100);
        if (op < 20 && M.n < MAX) {                            /* new object, held */
            int id = M.n++;
            node *x = pm_new(gc, &model_type, sizeof(node));
            x->id = id;
            M.obj[id] = x; M.alive[id] = true; M.edge[id][0] = M.edge[id][1] = -1; M.held[id] = 1;
        } else if (op < 55) {                                  /* set an edge, or clear it */
            int i = pick_reachable(&seed);
            if (i < 0) continue;
            int j = test_rand(&seed) % 4 == 0 ? -1 : pick_reachable(&seed);
            int k = (int)(test_rand(&seed) % 2);
            M.edge[i][k] = j;         /* first: the decref below may free the old target */
            if (k == 0) set_a(M.obj[i], j >= 0 ? M.obj[j] : NULL);
            else set_b(M.obj[i], j >= 0 ? M.obj[j] : NULL);
        } else if (op < 70) {                                  /* hold another reference */
            int i = pick_reachable(&seed);
            if (i < 0) continue;
            pm_incref(M.obj[i]);
            M.held[i]++;
        } else if (op < 92) {                                  /* release a held reference */
            int cand[MAX], c = 0;
            for (int i = 0; i < M.n; i++) if (M.held[i] > 0) cand[c++] = i;
            if (!c) continue;
            int i = cand[test_rand(&seed) % (uint64_t)c];
            M.held[i]--;
            pm_decref(M.obj[i]);
        } else {                                               /* collect */
            int gen = (int)(test_rand(&seed) % 3);
            compute_reach();
            size_t before = 0;
            for (int i = 0; i < M.n; i++) before += M.alive[i] && !M.reach[i];
            size_t found = pm_gc_collect(gc, gen);
            if (gen == 2) fulls++;
            check_model(gc, gen == 2, found, before);
            continue;
        }
        /* a dead object's edges no longer count; the model forgets them once it is freed */
        for (int i = 0; i < M.n; i++) if (!M.alive[i]) M.edge[i][0] = M.edge[i][1] = -1;
        check_model(gc, false, 0, 0);
    }
    cr_assert_gt(fulls, 10, "the test did collect");
    for (int i = 0; i < M.n; i++) while (M.held[i] > 0) { M.held[i]--; pm_decref(M.obj[i]); }
    pm_gc_collect(gc, 2);
    for (int i = 0; i < M.n; i++) cr_assert(!M.alive[i], "object %d leaked", i);
    pm_gc_destroy(gc);
}

Test(collect_random, graph_against_a_reference_model) {
    for (uint64_t seed = 1; seed <= 6; seed++) run(seed * 0x9E3779B97F4A7C15ull, 3000, 0);
}

Test(collect_random, graph_with_a_collection_at_every_allocation) {
    run(0xC0FFEEull, 3000, PM_GC_DEBUG_COLLECT_ALWAYS);
}
