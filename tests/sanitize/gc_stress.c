/* gc_stress.c: a randomized object-graph stress through the public gc API, for the sanitizer
 * builds (ASan+UBSan with the library built PM_NO_OVERRIDE; it uses only pm_ names).
 *
 * THREADS threads each own a collector (the thread rule) and mutate a graph of objects with two
 * references each: new objects, edge changes, outside references taken and dropped, weak
 * references with callbacks, finalizers that sometimes resurrect, objects without clear (some
 * uncollectable garbage), freeze/unfreeze, collections of random generations, and automatic
 * collections on the way. Every object carries a cookie checked on every access and at
 * deallocation. At the end every outside reference is dropped, the saved garbage is broken by
 * hand, and the per-type counters must show zero objects alive. Fixed seeds: failures replay. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "poolmalloc.h"
#include "poolmalloc/gc.h"

enum { THREADS = 3, HELD = 256, WEAK = 64 };
static long steps = 200000;

typedef struct { void *a, *b; uint64_t cookie; int resurrect; } obj_t;
static uint64_t cookie_of(const obj_t *o) { return (uintptr_t)o * 0x9e3779b97f4a7c15ull ^ 0x5eed; }
static void check(const obj_t *o) {
    if (o->cookie != cookie_of(o)) { fprintf(stderr, "gc_stress: object %p corrupted\n", (const void *)o); abort(); }
}

static int traverse(void *self, pm_visit visit, void *arg) {
    obj_t *o = self;
    check(o);
    int r;
    if (o->a && (r = visit(o->a, arg))) return r;
    if (o->b && (r = visit(o->b, arg))) return r;
    return 0;
}
static int clear(void *self) {
    obj_t *o = self;
    check(o);
    void *a = o->a, *b = o->b;
    o->a = o->b = NULL;
    if (a) pm_decref(a);
    if (b) pm_decref(b);
    return 0;
}
static void dealloc(void *self) { clear(self); ((obj_t *)self)->cookie = 0; }

typedef struct { uint64_t seed; void *held[HELD]; void *resurrected[64]; int nres; } state_t;
static __thread state_t *current;

static void finalize(void *self) {
    obj_t *o = self;
    check(o);
    if (o->resurrect && current->nres < 64) { pm_incref(o); current->resurrected[current->nres++] = o; }
}

static const pm_type plain_type   = { "plain", traverse, clear, NULL, dealloc };
static const pm_type final_type   = { "finalized", traverse, clear, finalize, dealloc };
static const pm_type noclear_type = { "noclear", traverse, NULL, NULL, dealloc };
static const pm_type leaf_type    = { "leaf", NULL, NULL, NULL, NULL };

static uint64_t rnd(state_t *s) { s->seed ^= s->seed << 13; s->seed ^= s->seed >> 7; s->seed ^= s->seed << 17; return s->seed; }

static size_t weak_calls;
static void on_dead(pm_weakref *ref, void *arg) { (void)ref; (void)arg; __atomic_add_fetch(&weak_calls, 1, __ATOMIC_RELAXED); }

static void set(obj_t *o, int slot, void *v) {
    check(o);
    if (v) pm_incref(v);
    void **p = slot ? &o->b : &o->a;
    void *old = *p;
    *p = v;
    if (old) pm_decref(old);
}

static void *run(void *arg) {
    state_t st = { .seed = (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull + 1 };
    current = &st;
    pm_gc *gc = pm_gc_new();
    pm_gc_set_threshold(gc, 500, 5, 5);
    pm_weakref *weak[WEAK] = { 0 };
    for (long i = 0; i < steps; i++) {
        unsigned op = (unsigned)(rnd(&st) % 100);
        int k = (int)(rnd(&st) % HELD), j = (int)(rnd(&st) % HELD);
        if (op < 30) {                                           /* new object into a slot */
            unsigned t = (unsigned)(rnd(&st) % 20);
            const pm_type *type = t < 14 ? &plain_type : t < 17 ? &final_type : t < 18 ? &noclear_type : &leaf_type;
            obj_t *o = pm_new(gc, type, type == &leaf_type ? 24 : sizeof(obj_t));
            if (type != &leaf_type) { o->cookie = cookie_of(o); o->resurrect = rnd(&st) % 8 == 0; }
            if (st.held[k]) pm_decref(st.held[k]);
            st.held[k] = o;
        } else if (op < 65) {                                    /* an edge */
            obj_t *o = st.held[k];
            if (o && pm_type_of(o) != &leaf_type) set(o, (int)(rnd(&st) & 1), rnd(&st) % 5 ? st.held[j] : NULL);
        } else if (op < 80) {                                    /* drop an outside reference */
            if (st.held[k]) { pm_decref(st.held[k]); st.held[k] = NULL; }
        } else if (op < 88) {                                    /* a weak reference */
            int w = (int)(rnd(&st) % WEAK);
            if (weak[w]) {
                void *x = pm_weakref_get(weak[w]);
                if (x) { if (pm_type_of(x) != &leaf_type) check(x); pm_decref(x); }
                pm_weakref_free(weak[w]);
                weak[w] = NULL;
            } else if (st.held[k]) {
                weak[w] = pm_weakref_new(st.held[k], rnd(&st) & 1 ? on_dead : NULL, NULL);
            }
        } else if (op < 97) {
            pm_gc_collect(gc, (int)(rnd(&st) % 3));
        } else if (op < 98) {
            pm_gc_freeze(gc);
        } else {
            pm_gc_unfreeze(gc);
        }
        if (st.nres > 48) { for (int r = 0; r < st.nres; r++) pm_decref(st.resurrected[r]); st.nres = 0; }
    }
    /* tear down: everything must go */
    pm_gc_unfreeze(gc);
    for (int w = 0; w < WEAK; w++) pm_weakref_free(weak[w]);
    for (int k = 0; k < HELD; k++) if (st.held[k]) pm_decref(st.held[k]);
    for (int round = 0; round < 4; round++) {
        for (int r = 0; r < st.nres; r++) pm_decref(st.resurrected[r]);
        st.nres = 0;
        pm_gc_collect(gc, 2);
        void *garbage[4096];
        size_t n = pm_gc_get_garbage(gc, garbage, 4096);
        for (size_t g = 0; g < n && g < 4096; g++) pm_incref(garbage[g]);
        for (size_t g = 0; g < n && g < 4096; g++) { clear(garbage[g]); pm_decref(garbage[g]); }
    }
    pm_gc_type_stats ts[8];
    size_t nt = pm_gc_get_type_stats(gc, ts, 8), live = 0;
    for (size_t t = 0; t < nt; t++) live += ts[t].live;
    if (live != 0) { fprintf(stderr, "gc_stress: %zu objects still alive\n", live); pm_gc_report(gc, 2); abort(); }
    pm_gc_stats s[3];
    pm_gc_get_stats(gc, s);
    size_t collected = s[0].collected + s[1].collected + s[2].collected;
    size_t uncollectable = s[0].uncollectable + s[1].uncollectable + s[2].uncollectable;
    pm_gc_destroy(gc);
    fprintf(stderr, "gc_stress: thread %ld: %zu collected, %zu uncollectable, all freed\n",
            (long)(uintptr_t)arg, collected, uncollectable);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) steps = atol(argv[1]);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, run, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    printf("gc_stress: ok (%d threads, %ld steps each, %zu weakref callbacks)\n", THREADS, steps, weak_calls);
    return 0;
}
