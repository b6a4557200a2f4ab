/* gc_bench.c: full collections over 1,000,000 tracked objects, in three shapes, and the cost of
 * pm_new; bench/gc/gc_bench.py measures CPython's gc on the same shapes (objects with two
 * __slots__), and bench/gc/run.sh puts them side by side.
 *
 *   chain   a live chain of N objects, its head held from outside: a collection that frees
 *           nothing and must traverse everything
 *   pairs   N/2 garbage 2-cycles: found and freed
 *   ring    one garbage ring of N objects: found and freed
 *   alloc   pm_new of N tracked objects (automatic collection off, as in the Python script)
 *
 * Each is run REPS times; the best time is printed as "shape ns_per_object". */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "poolmalloc.h"
#include "poolmalloc/gc.h"

typedef struct { void *a, *b; } obj_t;        /* two references, like two __slots__ */

static int obj_traverse(void *self, pm_visit visit, void *arg) {
    obj_t *o = self;
    int r;
    if (o->a && (r = visit(o->a, arg))) return r;
    if (o->b && (r = visit(o->b, arg))) return r;
    return 0;
}
static int obj_clear(void *self) {
    obj_t *o = self;
    void *a = o->a, *b = o->b;
    o->a = o->b = NULL;
    if (a) pm_decref(a);
    if (b) pm_decref(b);
    return 0;
}
static void obj_dealloc(void *self) { obj_clear(self); }
static const pm_type obj_type = { "obj", obj_traverse, obj_clear, NULL, obj_dealloc };

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

enum { REPS = 5 };
static size_t N = 1000000;

static obj_t *new_obj(pm_gc *gc) { return pm_new(gc, &obj_type, sizeof(obj_t)); }

/* Builds a shape and returns the outside reference to keep (NULL: all garbage). */
static obj_t *build(pm_gc *gc, const char *shape) {
    if (shape[0] == 'c' || shape[0] == 'r') {             /* chain, ring */
        obj_t *head = new_obj(gc), *o = head;
        for (size_t i = 1; i < N; i++) { obj_t *next = new_obj(gc); o->a = next; o = next; }
        if (shape[0] == 'c') return head;
        o->a = head;                                      /* close the ring: o holds head's ref */
        return NULL;
    }
    for (size_t i = 0; i < N / 2; i++) {                  /* pairs */
        obj_t *x = new_obj(gc), *y = new_obj(gc);
        x->a = y; y->a = x;                               /* each holds the other's only ref */
    }
    return NULL;
}

static double collect_ns(const char *shape) {
    double best = 1e300;
    for (int rep = 0; rep < REPS; rep++) {
        pm_gc *gc = pm_gc_new();
        pm_gc_disable(gc);
        obj_t *keep = build(gc, shape);
        double t0 = now_ns();
        size_t found = pm_gc_collect(gc, 2);
        double t = now_ns() - t0;
        if (found != (keep ? 0 : N)) { fprintf(stderr, "gc_bench: %s: found %zu\n", shape, found); exit(1); }
        if (t < best) best = t;
        if (keep) pm_decref(keep);
        pm_gc_destroy(gc);
    }
    return best / (double)N;
}

static double alloc_ns(void) {
    double best = 1e300;
    obj_t **objs = malloc(N * sizeof *objs);
    for (int rep = 0; rep < REPS; rep++) {
        pm_gc *gc = pm_gc_new();
        pm_gc_disable(gc);
        double t0 = now_ns();
        for (size_t i = 0; i < N; i++) objs[i] = new_obj(gc);
        double t = now_ns() - t0;
        if (t < best) best = t;
        for (size_t i = 0; i < N; i++) pm_decref(objs[i]);
        pm_gc_destroy(gc);
    }
    free(objs);
    return best / (double)N;
}

int main(int argc, char **argv) {
    if (argc > 1) N = strtoul(argv[1], NULL, 10);
    printf("chain %.2f\n", collect_ns("chain"));
    printf("pairs %.2f\n", collect_ns("pairs"));
    printf("ring %.2f\n", collect_ns("ring"));
    printf("alloc %.2f\n", alloc_ns());
    return 0;
}
