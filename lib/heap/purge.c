/* purge.c: the background purge thread, which gives back memory that stayed unused for
 * `purge_delay` ms in a program that has stopped calling the allocator.
 *
 * Freed memory stays committed and is reused first (arena.c: free slots; huge.c: the cache of
 * freed mappings). Pool releases purge what has decayed as they go, but a program that frees a
 * lot and then goes idle (a server between bursts, a tool waiting for input) makes no more calls,
 * so without a thread its RSS would stay up forever. This thread sleeps until the oldest waiting
 * memory is due, returns what is due, and sleeps again; when nothing waits it sleeps without a
 * timeout until the next note. It never runs while nothing is waiting.
 *
 * States (`state`):
 *   OFF       nothing has waited yet: no thread
 *   WANTED    something waits and no thread runs: the next slow path that holds no lock starts
 *             one (pthread_create allocates, so it cannot start under our locks). Every path
 *             that can note calls _pm_purge_start on its way out: allocate (pool and huge
 *             allocation), both free slow paths, huge realloc, and thread exit (alloc.c, heap.c)
 *   STARTING  one caller is creating it
 *   RUNNING   the thread is purging, or sleeping until a deadline
 *   IDLE      the thread sleeps with nothing waiting; a note wakes it
 *   FAILED    pthread_create failed or `background` is off: pool releases still purge
 *
 * _pm_purge_note() is called with the arena or huge lock held; purge_lock is a leaf under both,
 * and the thread takes neither while it holds purge_lock. The lost wake-up (the thread finds
 * nothing waiting, a note comes, the thread goes to sleep) is closed by `noted`: a note stores it
 * and then reads the state; the thread stores IDLE and then reads `noted`. With both sequentially
 * consistent, at least one sees the other.
 *
 * fork(): the child has no thread. If the parent had one, the child starts in WANTED, so that its
 * next slow path starts its own. purge_lock is made anew in the child, and nothing else of the
 * child's state depends on it, so fork does not hold it. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

enum { OFF, WANTED = PM_PURGE_WANTED, STARTING, RUNNING, IDLE, FAILED };

_Atomic int _pm_purge_state;
static _Atomic int noted;
static pthread_mutex_t purge_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t purge_cond;              /* on CLOCK_MONOTONIC: set up before the start */
static _Atomic bool allowed;                   /* _pm_purge_allow: the process is up */
#define PURGE_STACK ((size_t)256 << 10)        /* the thread needs a few KiB */

/* No thread starts inside the first mallocs, which may run while the loader is still relocating:
 * start-up (init.c) allows it once libc is up, and starts one if a note already asked. */
void _pm_purge_allow(void) {
    atomic_store_explicit(&allowed, true, memory_order_release);
    _pm_purge_start();
}

void _pm_purge_note(void) {
    atomic_store(&noted, 1);
    int s = atomic_load(&_pm_purge_state);
    if (s == OFF) {
        int off = OFF;
        atomic_compare_exchange_strong(&_pm_purge_state, &off, _pm_options.background ? WANTED : FAILED);
    } else if (s == IDLE) {
        pthread_mutex_lock(&purge_lock);
        if (atomic_load(&_pm_purge_state) == IDLE) {
            atomic_store(&_pm_purge_state, RUNNING);
            pthread_cond_signal(&purge_cond);
        }
        pthread_mutex_unlock(&purge_lock);
    }
}

/* The next deadline of the two decaying kinds of memory, in ms from now. */
static uint32_t purge_due(void) {
    uint32_t now = _pm_os_now_ms(), a = _pm_arena_purge_due(now), h = _pm_huge_purge_due(now);
    uint32_t wait = a < h ? a : h, floor = (uint32_t)_pm_options.purge_delay / 4;
    if (wait == PM_PURGE_NONE) return wait;
    return wait < floor ? floor : wait < 1 ? 1 : wait;   /* batch deadlines: at most delay/4 late */
}

static void *purge_thread(void *arg) {
    (void)arg;
    pthread_mutex_lock(&purge_lock);
    for (;;) {
        pthread_mutex_unlock(&purge_lock);
        atomic_store(&noted, 0);
        uint32_t wait = purge_due();
        pthread_mutex_lock(&purge_lock);
        if (wait == PM_PURGE_NONE) {
            atomic_store(&_pm_purge_state, IDLE);
            if (atomic_load(&noted)) atomic_store(&_pm_purge_state, RUNNING);
            while (atomic_load(&_pm_purge_state) == IDLE) pthread_cond_wait(&purge_cond, &purge_lock);
        } else {
            struct timespec at;
            _pm_os_deadline_ms(&at, wait);
            pthread_cond_timedwait(&purge_cond, &purge_lock, &at);
        }
    }
    return NULL;
}

void _pm_purge_start_slow(void) {
    int wanted = WANTED;
    if (!atomic_load_explicit(&allowed, memory_order_acquire) ||
        !atomic_compare_exchange_strong(&_pm_purge_state, &wanted, STARTING)) return;
    int saved = errno;                         /* malloc and free keep errno */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&purge_cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_store(&_pm_purge_state, RUNNING);
    if (_pm_os_thread_start(purge_thread, PURGE_STACK) != 0) atomic_store(&_pm_purge_state, FAILED);
    errno = saved;
}

const char *_pm_purge_thread_state(void) {
    switch (atomic_load(&_pm_purge_state)) {
    case OFF: case IDLE: return "idle";
    case WANTED: case STARTING: return "starting";
    case RUNNING: return "running";
    default: return "off";
    }
}

void _pm_purge_fork_child(void) {
    pthread_mutex_init(&purge_lock, NULL);
    int s = atomic_load(&_pm_purge_state);
    if (s != OFF && s != FAILED) atomic_store(&_pm_purge_state, WANTED);
}
