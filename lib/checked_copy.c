/* checked_copy.c: memcpy, memmove and memset, in the shared library only, so that hardened mode
 * can check a copy into or out of a block against the block's bounds before the copy runs
 * (snmalloc's "guarded memcpy"): an overflow through memcpy is stopped before it writes, and one
 * that never reaches a free is caught at all. Calls the compiler inlines (small constant sizes)
 * and libc's own internal calls do not come here.
 *
 * Each forwards to libc's function, found with dlsym(RTLD_NEXT) by the constructor below. Until
 * then (other libraries' constructors may copy) a plain byte loop serves, overlap-safe for memmove.
 * In the default mode the cost is one load and one predicted branch, then the jump through the
 * pointer: docs/benchmarks.md measures it. The static archive leaves these out: a program linked
 * with it keeps libc's, and hardened mode checks bounds at free only. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <dlfcn.h>

typedef void *(*copy_fn)(void *, const void *, size_t);
typedef void *(*set_fn)(void *, int, size_t);

/* The loops must not become calls of what they stand in for. */
#define PM_NO_PATTERNS __attribute__((optimize("no-tree-loop-distribute-patterns")))

PM_NO_PATTERNS static void *early_move(void *d, const void *s, size_t n) {
    unsigned char *to = d;
    const unsigned char *from = s;
    if (to < from) for (size_t i = 0; i < n; i++) to[i] = from[i];
    else for (size_t i = n; i-- > 0;) to[i] = from[i];
    return d;
}

PM_NO_PATTERNS static void *early_set(void *d, int c, size_t n) {
    unsigned char *to = d;
    for (size_t i = 0; i < n; i++) to[i] = (unsigned char)c;
    return d;
}

static copy_fn real_memcpy = early_move, real_memmove = early_move;
static set_fn real_memset = early_set;

void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);

__attribute__((constructor)) static void checked_copy_resolve(void) {
    copy_fn cpy = (copy_fn)dlsym(RTLD_NEXT, "memcpy"), mov = (copy_fn)dlsym(RTLD_NEXT, "memmove");
    set_fn set = (set_fn)dlsym(RTLD_NEXT, "memset");
    /* Nothing after us (a program that defines them itself): the loops stay. */
    if (cpy && cpy != memcpy) __atomic_store_n(&real_memcpy, cpy, __ATOMIC_RELAXED);
    if (mov && mov != memmove) __atomic_store_n(&real_memmove, mov, __ATOMIC_RELAXED);
    if (set && set != memset) __atomic_store_n(&real_memset, set, __ATOMIC_RELAXED);
}

PM_EXPORT void *memcpy(void *d, const void *s, size_t n) {
    if (PM_UNLIKELY(_pm_hardened)) {
        _pm_hard_check_access("memcpy", d, n);
        _pm_hard_check_access("memcpy", s, n);
    }
    return __atomic_load_n(&real_memcpy, __ATOMIC_RELAXED)(d, s, n);
}

PM_EXPORT void *memmove(void *d, const void *s, size_t n) {
    if (PM_UNLIKELY(_pm_hardened)) {
        _pm_hard_check_access("memmove", d, n);
        _pm_hard_check_access("memmove", s, n);
    }
    return __atomic_load_n(&real_memmove, __ATOMIC_RELAXED)(d, s, n);
}

PM_EXPORT void *memset(void *d, int c, size_t n) {
    if (PM_UNLIKELY(_pm_hardened)) _pm_hard_check_access("memset", d, n);
    return __atomic_load_n(&real_memset, __ATOMIC_RELAXED)(d, c, n);
}
