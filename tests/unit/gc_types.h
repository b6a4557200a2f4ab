/* gc_types.h: object types for the gc tests, shaped like a Python object with two __slots__:
 * two references (a, b) and an id. Deallocations and finalizations are counted per test process
 * (Criterion runs each test in its own process). */
#ifndef PM_TEST_GC_TYPES_H
#define PM_TEST_GC_TYPES_H
#include "helpers.h"
#include "objects/objects.h"
#include "poolmalloc/gc.h"

typedef struct node { void *a, *b; long id; } node;

static size_t node_deallocs, node_finalizes, leaf_deallocs;
static void *resurrect_into;         /* finalizer of "phoenix" objects stores themselves here */

static inline int node_traverse(void *self, pm_visit visit, void *arg) {
    node *n = self;
    int r;
    if (n->a && (r = visit(n->a, arg)) != 0) return r;
    if (n->b && (r = visit(n->b, arg)) != 0) return r;
    return 0;
}
static inline int node_clear(void *self) {
    node *n = self;
    void *a = n->a, *b = n->b;
    n->a = n->b = NULL;
    if (a) pm_decref(a);
    if (b) pm_decref(b);
    return 0;
}
static inline void node_dealloc(void *self) { node_deallocs++; node_clear(self); }
static inline void node_finalize(void *self) { (void)self; node_finalizes++; }
static inline void phoenix_finalize(void *self) {
    node_finalizes++;
    pm_incref(self);
    resurrect_into = self;
}
static inline void leaf_dealloc(void *self) { (void)self; leaf_deallocs++; }

static const pm_type node_type      = { "node", node_traverse, node_clear, NULL, node_dealloc };
static const pm_type noclear_type   = { "noclear", node_traverse, NULL, NULL, node_dealloc };
static const pm_type finalized_type = { "finalized", node_traverse, node_clear, node_finalize, node_dealloc };
static const pm_type phoenix_type   = { "phoenix", node_traverse, node_clear, phoenix_finalize, node_dealloc };
static const pm_type leaf_type      = { "leaf", NULL, NULL, NULL, leaf_dealloc };

static inline node *new_of(pm_gc *gc, const pm_type *t) {
    node *n = pm_new(gc, t, sizeof(node));
    cr_assert_not_null(n);
    return n;
}
static inline node *new_node(pm_gc *gc) { return new_of(gc, &node_type); }

/* n->a = v (or n->b), with the references counted as a real container would. */
static inline void set_a(node *n, void *v) { if (v) pm_incref(v); void *old = n->a; n->a = v; if (old) pm_decref(old); }
static inline void set_b(node *n, void *v) { if (v) pm_incref(v); void *old = n->b; n->b = v; if (old) pm_decref(old); }

/* A gc with automatic collection off, so that counts are exact. */
static inline pm_gc *quiet_gc(void) {
    pm_gc *gc = pm_gc_new();
    cr_assert_not_null(gc);
    pm_gc_disable(gc);
    return gc;
}

static inline void assert_gc_ok(pm_gc *gc) {
    cr_assert_neq(_pm_gc_check(gc), SIZE_MAX, "gc invariants broken");
}
#endif
