/* os.c: the only file that asks the kernel for memory (mmap, munmap, madvise, mremap) or reads
 * process facts (page size, randomness, resident set). Policy (when to decommit, what to cache)
 * lives above this layer. Failures return NULL or an errno and never print: callers decide. */
#define _GNU_SOURCE
#include "os/os.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic int fail_next_maps;   /* fault injection for tests (Lua's debug_realloc idea) */
static _Atomic size_t mapped_now, mapped_peak;   /* every byte poolmalloc has mapped */

static void count_mapped(size_t add, size_t sub) {
    size_t now = atomic_fetch_add(&mapped_now, add - sub) + add - sub;
    size_t peak = atomic_load_explicit(&mapped_peak, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak(&mapped_peak, &peak, now)) {}
}

size_t _pm_os_mapped(size_t *peak) {
    if (peak) *peak = atomic_load(&mapped_peak);
    return atomic_load(&mapped_now);
}

static _Atomic long map_calls, fail_at;    /* fault injection: fail the call numbered fail_at */

void _pm_os_fail_next_maps(int n) { atomic_store(&fail_next_maps, n); }

long _pm_os_fail_map_at(long n) {
    atomic_store(&fail_at, n > 0 ? atomic_load(&map_calls) + n : 0);
    return atomic_load(&map_calls);
}

static bool injected_failure(void) {
    long call = atomic_fetch_add_explicit(&map_calls, 1, memory_order_relaxed) + 1;
    if (call == atomic_load_explicit(&fail_at, memory_order_relaxed)) return true;
    int n = atomic_load_explicit(&fail_next_maps, memory_order_relaxed);
    while (n > 0) {
        if (atomic_compare_exchange_weak(&fail_next_maps, &n, n - 1)) return true;
    }
    return false;
}

static void *map_prot(size_t size, int prot) {
    if (injected_failure()) { errno = ENOMEM; return NULL; }
    void *p = mmap(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) { errno = ENOMEM; return NULL; }
    count_mapped(size, 0);
    return p;
}

void *_pm_os_map(size_t size) { return map_prot(size, PROT_READ | PROT_WRITE); }

/* Map `size` bytes at an `align`-aligned address. Try a plain mapping first (the kernel often
 * places consecutive mappings next to each other, so it is aligned half the time); otherwise map
 * size + align and unmap the misaligned head and tail. */
static void *map_aligned_prot(size_t size, size_t align, int prot) {
    void *p = map_prot(size, prot);
    if (p == NULL || ((uintptr_t)p & (align - 1)) == 0) return p;
    _pm_os_unmap(p, size);
    if (size + align < size) { errno = ENOMEM; return NULL; }
    uint8_t *raw = map_prot(size + align, prot);
    if (raw == NULL) return NULL;
    uint8_t *aligned = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
    size_t head = (size_t)(aligned - raw), tail = align - head;
    if (head) _pm_os_unmap(raw, head);
    if (tail) _pm_os_unmap(aligned + size, tail);
    return aligned;
}

void *_pm_os_map_aligned(size_t size, size_t align) { return map_aligned_prot(size, align, PROT_READ | PROT_WRITE); }

/* Address space nothing may touch until _pm_os_protect opens it: a stray access faults. Such
 * mappings cost no memory and no commit charge. */
void *_pm_os_reserve_aligned(size_t size, size_t align) { return map_aligned_prot(size, align, PROT_NONE); }

int _pm_os_protect(void *p, size_t size, bool accessible) {
    if (accessible && injected_failure()) return ENOMEM;
    return mprotect(p, size, accessible ? PROT_READ | PROT_WRITE : PROT_NONE) == 0 ? 0 : errno;
}

int _pm_os_unmap(void *p, size_t size) {
    if (munmap(p, size) != 0) return errno;
    count_mapped(0, size);
    return 0;
}

int _pm_os_decommit(void *p, size_t size) {
    /* MADV_DONTNEED, not MADV_FREE: RSS falls at once, which is what a user watching `top`
     * after a mass free expects, and the pages read back as zero. */
    return madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

void *_pm_os_remap(void *p, size_t old_size, size_t new_size) {
    if (injected_failure()) { errno = ENOMEM; return NULL; }
    void *q = mremap(p, old_size, new_size, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) { errno = ENOMEM; return NULL; }
    count_mapped(new_size, old_size);
    return q;
}

/* Threads may race to fill it in: they all store the same value, through relaxed atomics. */
size_t _pm_os_page_size(void) {
    static _Atomic size_t page;
    size_t p = atomic_load_explicit(&page, memory_order_relaxed);
    if (p == 0) {
        p = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page, p, memory_order_relaxed);
    }
    return p;
}

/* Randomness without a syscall or a file: the kernel's 16 random bytes for this process (AT_RANDOM),
 * mixed with the clock so that forked children and tests differ. */
uint64_t _pm_os_random(void) {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    const uint8_t *r = (const uint8_t *)getauxval(AT_RANDOM);
    if (r) { uint64_t w[2]; memcpy(w, r, sizeof w); x ^= w[0] ^ (w[1] << 1); }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x ^= (uint64_t)ts.tv_nsec * 0xbf58476d1ce4e5b9ull ^ (uint64_t)ts.tv_sec;
    x ^= x >> 31; x *= 0x94d049bb133111ebull; x ^= x >> 29;
    return x;
}

uint64_t _pm_os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void _pm_os_deadline_ms(struct timespec *at, uint32_t ms) {
    clock_gettime(CLOCK_MONOTONIC, at);
    at->tv_sec += ms / 1000;
    at->tv_nsec += (long)(ms % 1000) * 1000000;
    if (at->tv_nsec >= 1000000000) { at->tv_sec++; at->tv_nsec -= 1000000000; }
}

/* Our threads (the purge thread, the reporter) are created with every signal blocked, so that no
 * signal of the program's is ever delivered to them, and detached. A small stack, unless the
 * program's static TLS, which glibc carves from the same stack, does not fit in it (EINVAL): then
 * the default size. */
int _pm_os_thread_start(void *(*fn)(void *), size_t stack) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack) pthread_attr_setstacksize(&attr, stack);
    int err = pthread_create(&t, &attr, fn, NULL);
    if (err == EINVAL && stack) {
        pthread_attr_destroy(&attr);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&t, &attr, fn, NULL);
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err;
}

uint32_t _pm_os_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* Which open file an fd is, by device and inode: fstat is async-signal-safe. */
static uint64_t fd_identity(int fd) {
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) return 0;
    return ((uint64_t)st.st_dev << 40) ^ (uint64_t)st.st_ino ^ 1;
}

/* A private duplicate of fd (at 100 or above, close-on-exec), so that a report at exit still has a
 * stderr when the program closed its own (coreutils programs close stderr in an atexit handler). */
void _pm_os_private_fd(int fd, pm_private_fd_t *out) {
    out->fd = fcntl(fd, F_DUPFD_CLOEXEC, 100);
    out->id = fd_identity(out->fd);
}

void _pm_os_private_fd_of(int fd, pm_private_fd_t *out) {
    out->fd = fd;
    out->id = fd_identity(fd);
}

/* A connected pair of sockets on private descriptors (100 and up, close-on-exec), for the report
 * trigger: a signal handler may send() on it with MSG_NOSIGNAL, so a closed peer never raises
 * SIGPIPE. Returns 0 or an errno. */
int _pm_os_private_socketpair(pm_private_fd_t out[2]) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errno;
    for (int i = 0; i < 2; i++) {
        _pm_os_private_fd(sv[i], &out[i]);
        close(sv[i]);
    }
    if (out[0].fd < 0 || out[1].fd < 0) {
        _pm_os_private_close(&out[0]);
        _pm_os_private_close(&out[1]);
        return EMFILE;
    }
    return 0;
}

/* Close it, but only if the number still is our file: never a descriptor the program reused. */
void _pm_os_private_close(pm_private_fd_t *p) {
    int fd = _pm_os_private_fd_get(p);
    if (fd >= 0) close(fd);
    p->fd = -1;
    p->id = 0;
}

/* The fd, if it still is the file we opened: a program that closes every descriptor (a daemon)
 * may have reused the number for a file of its own, which we must never write into. */
int _pm_os_private_fd_get(const pm_private_fd_t *p) {
    return p->fd >= 0 && p->id != 0 && fd_identity(p->fd) == p->id ? p->fd : -1;
}

int _pm_os_copy_file(const char *path, int fd, char *buf, size_t cap) {
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return errno;
    int err = 0;
    ssize_t n;
    while (err == 0 && (n = read(in, buf, cap)) != 0) {
        if (n < 0) { if (errno != EINTR) err = errno; continue; }
        for (ssize_t done = 0; done < n && err == 0;) {
            ssize_t w = write(fd, buf + done, (size_t)(n - done));
            if (w > 0) done += w;
            else if (w == 0) err = EIO;
            else if (errno != EINTR) err = errno;
        }
    }
    close(in);
    return err;
}

/* The first number after `key` in a /proc/self file (after the start when key is ""); -1 if the
 * file or the number is not there. */
static long proc_number(const char *path, const char *key, unsigned skip_fields) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[PM_PAGE_MIN];                   /* statm and status are well under a page */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    const char *s = *key ? strstr(buf, key) : buf;
    if (s == NULL) return -1;
    s += strlen(key);
    for (unsigned i = 0; i < skip_fields; i++) {      /* whitespace-separated fields */
        while (*s == ' ' || *s == '\t') s++;
        while (*s && *s != ' ' && *s != '\t') s++;
    }
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9') return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0');
    return v;
}

/* The resident set's high-water mark (VmHWM in /proc/self/status), in bytes; -1 if unknown. */
long _pm_os_peak_resident_bytes(void) {
    long kib = proc_number("/proc/self/status", "VmHWM:", 0);
    return kib < 0 ? -1 : kib * 1024;
}

/* The resident set now: the second field of /proc/self/statm, in pages. */
long _pm_os_resident_bytes(void) {
    long pages = proc_number("/proc/self/statm", "", 1);
    return pages < 0 ? -1 : pages * (long)_pm_os_page_size();
}
