/* Bad refcounting is caught, not suffered: each misuse prints one line naming the type, then
 * aborts. Each case runs in a child process whose stderr is captured. */
#include "gc_types.h"
#include <semaphore.h>

static char msg[4096];

static void decref_self(void *self) { pm_decref(self); }    /* a dealloc with one decref too many */
static const pm_type overdecref_type = { "overdecref", NULL, NULL, NULL, decref_self };

static void decref_below_zero(void *arg) {
    (void)arg;
    pm_gc *gc = quiet_gc();
    pm_decref(pm_new(gc, &overdecref_type, 16));
}
static void incref_after_free(void *arg) {
    (void)arg;
    pm_gc *gc = quiet_gc();
    node *n = new_node(gc);
    pm_decref(n);
    pm_incref(n);
}
static void decref_after_free(void *arg) {
    (void)arg;
    pm_gc *gc = quiet_gc();
    void *leaf = pm_new(gc, &leaf_type, 24);
    pm_decref(leaf);
    pm_decref(leaf);
}
static void track_a_leaf(void *arg) {
    (void)arg;
    pm_gc *gc = quiet_gc();
    pm_track(pm_new(gc, &leaf_type, 8));
}
static void collect_generation_3(void *arg) { (void)arg; pm_gc_collect(quiet_gc(), 3); }
static void new_on_destroyed(void *arg) {
    (void)arg;
    pm_gc *gc = quiet_gc();
    (void)new_node(gc);                         /* alive: the collector's memory is kept */
    pm_gc_destroy(gc);
    (void)new_node(gc);
}

Test(misuse, decref_below_zero) {
    int st = run_in_child(decref_below_zero, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "pm_decref(): reference count would go below zero"), "got: %s", msg);
    cr_assert(strstr(msg, "of type overdecref)"), "names the type: %s", msg);
    cr_assert(strstr(msg, "poolmalloc: ") == msg && strchr(msg, '\n') == msg + strlen(msg) - 1, "one line: %s", msg);
}

Test(misuse, incref_of_a_freed_object) {
    int st = run_in_child(incref_after_free, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "pm_incref(): use of a freed object ("), "got: %s", msg);
    /* hardened:true (make unit runs this suite under it too) zeroes the freed header, type and all */
    cr_assert(strstr(msg, _pm_hardened ? "(zeroed header) (object 0x" : "of type node)"), "names the type: %s", msg);
}

Test(misuse, decref_of_a_freed_object) {
    int st = run_in_child(decref_after_free, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "pm_decref(): use of a freed object ("), "got: %s", msg);
    cr_assert(strstr(msg, _pm_hardened ? "(zeroed header) (object 0x" : "of type leaf)"), "names the type: %s", msg);
}

Test(misuse, tracking_an_object_whose_type_has_no_traverse) {
    int st = run_in_child(track_a_leaf, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "pm_track(): asked to track an object whose type has no traverse"), "got: %s", msg);
    cr_assert(strstr(msg, "of type leaf)"), "names the type: %s", msg);
}

Test(misuse, collect_of_a_generation_that_does_not_exist) {
    int st = run_in_child(collect_generation_3, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "pm_gc_collect(): generation 3 is not 0, 1 or 2"), "got: %s", msg);
}

Test(misuse, new_on_a_destroyed_collector) {
    int st = run_in_child(new_on_destroyed, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "was destroyed (type node)"), "got: %s", msg);
}

/* The thread rule broken: a second thread collects while the first is inside a collection (its
 * finalizer waits). The overlap is caught; other races are the caller's to prevent. */
static sem_t in_finalizer;
static void slow_finalize(void *self) { (void)self; sem_post(&in_finalizer); sleep(10); }
static const pm_type slow_type = { "slow", node_traverse, node_clear, slow_finalize, node_dealloc };
static void *collect_in_thread(void *gc) { pm_gc_collect(gc, 2); return NULL; }
static void two_threads_one_collector(void *arg) {
    (void)arg;
    sem_init(&in_finalizer, 0, 0);
    pm_gc *gc = quiet_gc();
    node *n = new_of(gc, &slow_type);
    set_a(n, n);
    pm_decref(n);
    pthread_t t;
    pthread_create(&t, NULL, collect_in_thread, gc);
    sem_wait(&in_finalizer);
    pm_gc_collect(gc, 0);
}

Test(misuse, one_collector_used_by_two_threads_at_once) {
    int st = run_in_child(two_threads_one_collector, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "used by two threads at once"), "got: %s", msg);
}

/* With sampling on, the message also says where the object was allocated. */
__attribute__((noinline)) static void *make_a_leaf(pm_gc *gc) { return pm_new(gc, &leaf_type, 8); }
static void track_a_sampled_leaf(void *arg) {
    (void)arg;
    _pm_sample_set_rate(1);
    _pm_heap_get()->sample.left = -1;
    pm_gc *gc = quiet_gc();
    pm_track(make_a_leaf(gc));
}
Test(misuse, the_message_names_the_allocation_site_when_sampling_is_on) {
    int st = run_in_child(track_a_sampled_leaf, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "of type leaf, allocated at make_a_leaf+0x"), "got: %s", msg);
    cr_assert(strstr(msg, " <- track_a_sampled_leaf+0x"), "with its callers: %s", msg);
    cr_assert_eq(strchr(msg, '\n'), msg + strlen(msg) - 1, "one line: %s", msg);
}
