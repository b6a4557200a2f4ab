/* init.c: one-time initialization, fork handling, and the report at exit.
 *
 * The first allocation (or our constructor, whichever comes first) initializes. Nothing here
 * allocates, so an allocation made while initializing cannot recurse: pthread_atfork, which may
 * allocate, is registered only after `_pm_initialized` is set. */
#define _GNU_SOURCE
#include "internal.h"

#include <pthread.h>

_Atomic int _pm_initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_private_fd_t exit_report_fd = { -1, 0 };   /* stderr, duplicated at start-up */

/* Every lock of the allocator is held across fork(), in one order, so that the child starts with
 * consistent state and no lock held by a thread that does not exist there. */
static void fork_prepare(void) {
    _pm_reporter_fork_prepare();          /* a dump holds the locks below it */
    _pm_stats_fork_prepare();
    _pm_sample_fork_prepare();
    _pm_heap_fork_prepare();
    _pm_huge_fork_prepare();
    _pm_pool_fork_prepare();
    pthread_mutex_lock(&_pm_arena_lock);
}

static void fork_parent(void) {
    pthread_mutex_unlock(&_pm_arena_lock);
    _pm_pool_fork_parent();
    _pm_huge_fork_parent();
    _pm_heap_fork_parent();
    _pm_sample_fork_parent();
    _pm_stats_fork_parent();
    _pm_reporter_fork_parent();
}

static void fork_child(void) {
    pthread_mutex_init(&_pm_arena_lock, NULL);
    _pm_purge_fork_child();
    _pm_pool_fork_child();
    _pm_huge_fork_child();
    _pm_heap_fork_child();
    _pm_sample_fork_child();
    _pm_stats_fork_child();
    _pm_reporter_fork_child();
}

void _pm_init_slow(void) {
    pthread_mutex_lock(&init_lock);
    if (atomic_load_explicit(&_pm_initialized, memory_order_relaxed)) {
        pthread_mutex_unlock(&init_lock);
        return;
    }
    _pm_classes_init();
    _pm_options_init();
    _pm_free_key = (uintptr_t)_pm_os_random() | 1;
    _pm_heaps_init();
    _pm_sample_set_rate(_pm_options.sample);
    if (_pm_options.stats) _pm_os_private_fd(2, &exit_report_fd);
    atomic_store_explicit(&_pm_initialized, 1, memory_order_release);
    pthread_mutex_unlock(&init_lock);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* The reporter thread and the signal handler start here, once libc is fully up, never inside
 * the first malloc (which may run while the loader is still relocating). */
__attribute__((constructor)) static void pm_constructor(void) {
    _pm_init();
    _pm_reporter_start();
}

__attribute__((destructor)) static void pm_destructor(void) {
    if (_pm_options.stats) {
        int fd = _pm_os_private_fd_get(&exit_report_fd);
        if (fd >= 0) _pm_stats_print(fd);
    }
    _pm_reporter_at_exit();
}
