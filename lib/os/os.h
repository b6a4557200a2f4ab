/* os/os.h: the platform layer, the bottom of the library. The compiler's attributes every file
 * uses, and the OS calls: memory (mmap, munmap, madvise, mremap), clocks, /proc, private file
 * descriptors. No file above this folder calls the kernel for memory or time.
 *
 * Layers (docs/design.md, "Layout"): os < util < heap < lens < objects < override.c, init.c.
 * A file includes its own folder's headers and the one header of a lower layer, never one above
 * (tests/layers/check.sh).
 * Naming: pm_ public, _pm_ shared across files, plain static inside a file.
 */
#ifndef PM_OS_H
#define PM_OS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <pthread.h>

/* Everything declared by the library's headers is internal: hidden, so that it is reached
 * without a trip through the GOT. */
#pragma GCC visibility push(hidden)

#define PM_LIKELY(x)   __builtin_expect(!!(x), 1)
#define PM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PM_NOINLINE    __attribute__((noinline))
#define PM_INLINE      static inline __attribute__((always_inline))
#define PM_EXPORT      __attribute__((visibility("default")))
/* A loop that must stay a loop, never become a call of memset or memcpy (it stands in for them,
 * or writes where our own checked memset would object: lib/checked_copy.c, heap/harden.c). */
#if defined(__clang__)
#define PM_NO_PATTERNS __attribute__((no_builtin))
#else
#define PM_NO_PATTERNS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
#define PM_CACHELINE   64
#define PM_KIB         ((size_t)1 << 10)
#define PM_MIB         ((size_t)1 << 20)
/* Carving and buffers are sized in units of the smallest page of x86-64 and arm64 Linux. Nothing
 * depends on it being the real page size (_pm_os_page_size() is, where mappings need it): it only
 * sets how much work one step does. */
#define PM_PAGE_MIN    ((size_t)4096)
/* Stack buffers that format text for write(2): flushed when full, so any size is correct; a page
 * keeps the calls few. */
#define PM_OUT_BUF     PM_PAGE_MIN

/* ---- os.c: the only file that asks the kernel for memory ---------------------------------- */
void  *_pm_os_map(size_t size);                    /* NULL on failure, errno set */
void  *_pm_os_map_aligned(size_t size, size_t align);
void  *_pm_os_reserve_aligned(size_t size, size_t align); /* PROT_NONE: faults until protected open */
int    _pm_os_protect(void *p, size_t size, bool accessible); /* mprotect RW or NONE: 0 or errno */
int    _pm_os_unmap(void *p, size_t size);         /* 0 or errno */
int    _pm_os_decommit(void *p, size_t size);      /* pages read back as zero, RSS falls */
void  *_pm_os_remap(void *p, size_t old_size, size_t new_size); /* may move; NULL on failure */
size_t _pm_os_page_size(void);
size_t _pm_os_mapped(size_t *peak);               /* bytes mapped through this file now, and the peak */
uint64_t _pm_os_random(void);
void   _pm_os_fail_next_maps(int n);               /* test hook: fail the next n mappings */
long   _pm_os_fail_map_at(long n);                 /* test hook: fail the n-th mapping from now (0: none);
                                                      returns the calls so far, to count a run's */
int    _pm_os_copy_file(const char *path, int fd, char *buf, size_t cap); /* path's bytes to fd: 0 or errno */
long   _pm_os_resident_bytes(void);                /* from /proc/self/statm; -1 if unknown */
long   _pm_os_peak_resident_bytes(void);           /* VmHWM from /proc/self/status; -1 if unknown */
typedef struct { int fd; uint64_t id; } pm_private_fd_t;  /* an fd and which file it is */
void   _pm_os_private_fd(int fd, pm_private_fd_t *out);    /* a close-on-exec duplicate (fd -1 on failure) */
void   _pm_os_private_fd_of(int fd, pm_private_fd_t *out); /* remember which file fd is */
int    _pm_os_private_fd_get(const pm_private_fd_t *p);    /* the fd, or -1 if it is another file now */
void   _pm_os_private_close(pm_private_fd_t *p);          /* close it if it still is ours */
int    _pm_os_private_socketpair(pm_private_fd_t out[2]); /* 0 or errno */
uint32_t _pm_os_now_ms(void);                      /* a coarse monotonic clock, wraps every 49 days */
uint64_t _pm_os_now_ns(void);                      /* CLOCK_MONOTONIC in ns */
struct timespec;
void   _pm_os_deadline_ms(struct timespec *at, uint32_t ms); /* CLOCK_MONOTONIC now + ms */
int    _pm_os_thread_start(void *(*fn)(void *), size_t stack); /* detached, signals blocked; 0 or errno */

#pragma GCC visibility pop
#endif
