/* Separate collectors in separate threads at once: each thread owns its pm_gc and its objects
 * (the thread rule), and the counts stay exact in every thread. */
#include "gc_types.h"
#include <pthread.h>

enum { THREADS = 4, ROUNDS = 30, CYCLES = 2000 };

static _Atomic size_t deallocs_all;
static void counting_dealloc(void *self) { deallocs_all++; node_clear(self); }
static const pm_type tnode_type = { "tnode", node_traverse, node_clear, NULL, counting_dealloc };

static void *worker(void *arg) {
    intptr_t failures = 0;
    pm_gc *gc = pm_gc_new();                  /* automatic collection on: thresholds fire too */
    node *live = pm_new(gc, &tnode_type, sizeof(node));
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < CYCLES; i++) {
            node *a = pm_new(gc, &tnode_type, sizeof(node)), *b = pm_new(gc, &tnode_type, sizeof(node));
            set_a(a, b); set_a(b, a);
            if (i % 10 == 0) set_b(live, a);     /* keeps one cycle alive at a time */
            pm_decref(a); pm_decref(b);
        }
        pm_gc_collect(gc, 2);
        if (_pm_gc_check(gc) != 3) failures++;   /* live and the cycle it holds */
    }
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    size_t collected = st[0].collected + st[1].collected + st[2].collected;
    if (collected != (size_t)ROUNDS * CYCLES * 2 - 2) failures++;
    pm_decref(live);
    if (pm_gc_collect(gc, 2) != 2) failures++;
    pm_gc_destroy(gc);
    (void)arg;
    return (void *)failures;
}

Test(collect_threads, separate_collectors_in_separate_threads) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) cr_assert_eq(pthread_create(&t[i], NULL, worker, NULL), 0);
    for (int i = 0; i < THREADS; i++) {
        void *failures;
        pthread_join(t[i], &failures);
        cr_assert_eq((intptr_t)failures, 0, "thread %d", i);
    }
    cr_assert_eq(deallocs_all, (size_t)THREADS * (ROUNDS * CYCLES * 2 + 1));
}
