/* checked_copy.c: memcpy, memmove and memset, in the shared library only, so that hardened mode
 * can check a copy into or out of a block against the block's bounds before the copy runs
 * (snmalloc's "guarded memcpy"): an overflow through memcpy is stopped before it writes, and one
 * that never reaches a free is caught at all. Calls the compiler inlines (small constant sizes)
 * and libc's own internal calls do not come here.
 *
 * Each is one jump through a pointer, which the constructor below sets once: to libc's function
 * (found with dlsym(RTLD_NEXT)) in the default mode, to a checked one that then calls libc's when
 * hardened. Until then (other libraries' constructors may copy) a plain byte loop serves,
 * overlap-safe for memmove. The default mode's cost is that one jump per call:
 * docs/benchmarks.md measures it. The static archive leaves these out: a program linked
 * with it keeps libc's, and hardened mode checks bounds at free only. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <dlfcn.h>

typedef void *(*copy_fn)(void *, const void *, size_t);
typedef void *(*set_fn)(void *, int, size_t);


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

/* What the exported names jump to: the loops, then libc's functions (default mode) or the
 * checked ones below (hardened). Set once, by the constructor. */
static copy_fn use_memcpy = early_move, use_memmove = early_move;
static set_fn use_memset = early_set;
static copy_fn libc_memcpy = early_move, libc_memmove = early_move;
static set_fn libc_memset = early_set;

void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);

static void *checked_memcpy(void *d, const void *s, size_t n) {
    _pm_hard_check_access("memcpy", d, n);
    _pm_hard_check_access("memcpy", s, n);
    return libc_memcpy(d, s, n);
}

static void *checked_memmove(void *d, const void *s, size_t n) {
    _pm_hard_check_access("memmove", d, n);
    _pm_hard_check_access("memmove", s, n);
    return libc_memmove(d, s, n);
}

static void *checked_memset(void *d, int c, size_t n) {
    _pm_hard_check_access("memset", d, n);
    return libc_memset(d, c, n);
}

__attribute__((constructor)) static void checked_copy_resolve(void) {
    _pm_heap_start();                           /* the options: is it hardened? */
    /* memcpy goes to glibc's memmove: a binary linked against memcpy@GLIBC_2.2.5, which had
     * memmove's semantics, binds to our unversioned memcpy; on x86-64 the two are one routine. */
    copy_fn cpy = (copy_fn)dlsym(RTLD_NEXT, "memmove"), mov = cpy;
    set_fn set = (set_fn)dlsym(RTLD_NEXT, "memset");
    /* Nothing after us (a program that defines them itself): the loops stay. */
    if (cpy && cpy != memmove) libc_memcpy = cpy;
    if (mov && mov != memmove) libc_memmove = mov;
    if (set && set != memset) libc_memset = set;
    __atomic_store_n(&use_memcpy, _pm_hardened ? checked_memcpy : libc_memcpy, __ATOMIC_RELEASE);
    __atomic_store_n(&use_memmove, _pm_hardened ? checked_memmove : libc_memmove, __ATOMIC_RELEASE);
    __atomic_store_n(&use_memset, _pm_hardened ? checked_memset : libc_memset, __ATOMIC_RELEASE);
}

/* One jump through a pointer each: the default mode's whole cost. */
PM_EXPORT void *memcpy(void *d, const void *s, size_t n) {
    return __atomic_load_n(&use_memcpy, __ATOMIC_RELAXED)(d, s, n);
}

PM_EXPORT void *memmove(void *d, const void *s, size_t n) {
    return __atomic_load_n(&use_memmove, __ATOMIC_RELAXED)(d, s, n);
}

PM_EXPORT void *memset(void *d, int c, size_t n) {
    return __atomic_load_n(&use_memset, __ATOMIC_RELAXED)(d, c, n);
}
