/* init.c: start-up, the fork handlers, and the report at exit.
 *
 * Each layer starts itself when it is first used: the heap at its first slow path
 * (_pm_heap_start: size classes, options, free key), the lens at its first call
 * (_pm_lens_start: the sampler). Our constructor, which runs once libc is up, starts them both,
 * then what must wait for libc: the fork handlers, the purge thread's permission to start, the
 * reporter thread and the signal handler. Nothing here runs inside the first malloc, which may
 * run while the loader is still relocating; pthread_atfork, which may allocate, runs after the
 * heap has started, so the allocation it makes cannot recurse into start-up. */
#define _GNU_SOURCE
#include "init.h"

#include <pthread.h>

_Atomic int _pm_initialized;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_private_fd_t exit_report_fd = { -1, 0 };   /* stderr, duplicated at start-up */

static void arena_lock(void) { pthread_mutex_lock(&_pm_arena_lock); }
static void arena_unlock(void) { pthread_mutex_unlock(&_pm_arena_lock); }
static void arena_lock_anew(void) { pthread_mutex_init(&_pm_arena_lock, NULL); }

/* Every lock of the allocator is held across fork(), so that the child starts with consistent
 * state and no lock held by a thread that does not exist there. This table is the lock order:
 * a lock may be taken while holding the locks of the rows above it, never below. prepare runs
 * top to bottom; parent and child run bottom to top. A row without prepare holds no lock across
 * fork (the purge thread's lock is a leaf that is made anew in the child). */
static const struct {
    const char *what;
    void (*prepare)(void), (*parent)(void), (*child)(void);
} fork_table[] = {
    { "reporter (a dump holds every lock below)", _pm_reporter_fork_prepare, _pm_reporter_fork_parent, _pm_reporter_fork_child },
    { "stats",          _pm_stats_fork_prepare,  _pm_stats_fork_parent,  _pm_stats_fork_child },
    { "sampler tables", _pm_sample_fork_prepare, _pm_sample_fork_parent, _pm_sample_fork_child },
    { "interpreted frames", _pm_frames_fork_prepare, _pm_frames_fork_parent, _pm_frames_fork_child },
    { "heaps",          _pm_heap_fork_prepare,   _pm_heap_fork_parent,   _pm_heap_fork_child },
    { "huge registry",  _pm_huge_fork_prepare,   _pm_huge_fork_parent,   _pm_huge_fork_child },
    { "pool bitmaps",   _pm_pool_fork_prepare,   _pm_pool_fork_parent,   _pm_pool_fork_child },
    { "zero-size blocks", _pm_zero_fork_prepare, _pm_zero_fork_parent,   _pm_zero_fork_child },
    { "guarded slots",  _pm_guard_fork_prepare,  _pm_guard_fork_parent,  _pm_guard_fork_child },
    { "purge thread",   NULL,                    NULL,                   _pm_purge_fork_child },
    { "arenas",         arena_lock,              arena_unlock,           arena_lock_anew },
};
#define NFORK (sizeof fork_table / sizeof fork_table[0])

static void fork_prepare(void) {
    for (size_t i = 0; i < NFORK; i++) if (fork_table[i].prepare) fork_table[i].prepare();
}
static void fork_parent(void) {
    for (size_t i = NFORK; i-- > 0;) if (fork_table[i].parent) fork_table[i].parent();
}
static void fork_child(void) {
    for (size_t i = NFORK; i-- > 0;) if (fork_table[i].child) fork_table[i].child();
}

void _pm_init_slow(void) {
    _pm_lens_start();                     /* and the heap below it */
    pthread_mutex_lock(&init_lock);
    if (atomic_load_explicit(&_pm_initialized, memory_order_relaxed)) {
        pthread_mutex_unlock(&init_lock);
        return;
    }
    if (_pm_options.stats) _pm_os_private_fd(2, &exit_report_fd);
    atomic_store_explicit(&_pm_initialized, 1, memory_order_release);
    pthread_mutex_unlock(&init_lock);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    _pm_purge_allow();
}

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
