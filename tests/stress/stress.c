/* stress.c: a verifying, multi-threaded allocator stress test (in the spirit of mimalloc's
 * test-stress.c, written from scratch for poolmalloc).
 *
 *   usage: stress [threads=4] [rounds=10] [scale=20] [seed=42]
 *
 * `threads` worker slots run concurrently. Each slot runs `rounds` thread lifetimes one after the
 * other: when a worker exits, the main thread joins it and starts a fresh thread in its place, so
 * the heaps of exited threads must be abandoned and reused/adopted while other threads still run.
 * Every worker has its own fixed-seed PRNG (derived from seed and its logical id) and a slot
 * array. Each operation picks a slot and one of:
 *   alloc     free what the slot holds, then allocate a new block with malloc, calloc,
 *             posix_memalign, aligned_alloc, memalign or valloc
 *   realloc   realloc what the slot holds (or realloc(NULL, n) if the slot is empty); 40% of
 *             the time to a size near the current one (grow/shrink in place), sometimes through
 *             reallocarray
 *   free      free what the slot holds
 *   transfer  swap the slot with a random entry of a shared transfer array (atomic exchange), so
 *             blocks are freed / realloc'ed by threads other than the one that allocated them,
 *             including threads started long after the allocating thread exited.
 * Sizes: mostly 1..512 bytes, some up to 64 KiB, rare ones up to 4 MiB, a few 0-byte ones, and
 * 1% taken from a list of size-class / slot / arena boundaries. Rarely a thread calls
 * malloc_trim(0) while the others run. A quarter of the frees go through C23 free_sized /
 * free_aligned_sized when the allocator exports them (looked up with dlsym; glibc 2.36 has not).
 *
 * Every block gets a cookie pattern derived from (address, size, seed, serial) written over its
 * whole usable size (for blocks above 256 KiB: the first and last 4 KiB plus 64 bytes of every
 * 64 KiB). The pattern is verified before every free and realloc, and whenever a block is taken
 * out of the transfer array. Also checked: 16-byte alignment of every result and the requested
 * alignment, calloc zeroing, realloc preserving the old contents, malloc_usable_size >= the
 * request and unchanged between allocation and free, and a few edge cases (malloc(SIZE_MAX),
 * calloc overflow, posix_memalign with a bad alignment, failed realloc keeps the block).
 *
 * Any failure prints "stress: FAIL: ..." on stderr and exits with status 1 (without running
 * atexit handlers: the heap may be corrupt). On success it prints one summary line on stdout
 * whose counts depend only on the arguments (not on scheduling or on the allocator), so runs
 * under different allocators can be compared; scheduling-dependent counts go to stderr.
 *
 * Environment: STRESS_MIN_ALIGN=n overrides the minimum alignment checked for every block
 * (default 16; e.g. 8 for allocators whose tiny size classes are only 8-byte aligned), and
 * STRESS_SKIP_EDGE=1 skips the edge cases (e.g. jemalloc 5.3 does not set errno when realloc
 * fails). Neither is set by tests/integration: poolmalloc must pass the strict checks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- parameters ------------------------------------------------------------------------- */
static int      opt_threads = 4;
static int      opt_rounds = 10;
static int      opt_scale = 20;
static uint64_t opt_seed = 42;
static size_t   min_align = 16;

#define TRANSFER_COUNT   1024
#define FULL_FILL_LIMIT  ((size_t)256 << 10)  /* blocks above this are checked by regions */
#define EDGE_BYTES       4096
#define STRIDE           ((size_t)64 << 10)
#define STRIDE_BYTES     64

/* ---- PRNG and hashing ------------------------------------------------------------------- */
static inline uint64_t mix64(uint64_t x) {              /* splitmix64 finalizer */
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}
typedef struct { uint64_t s; } rng_t;
static inline uint64_t rnd(rng_t *r) { r->s += 0x9e3779b97f4a7c15ULL; return mix64(r->s); }

/* ---- failure reporting ------------------------------------------------------------------ */
static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    /* write(2) directly: stdio may allocate, and the heap may be corrupt */
    ssize_t w = write(2, "stress: FAIL: ", 14);
    w = write(2, buf, (size_t)n);
    (void)w;
    _exit(1);
}

/* ---- blocks ----------------------------------------------------------------------------- */
enum { K_MALLOC, K_CALLOC, K_POSIX_MEMALIGN, K_ALIGNED_ALLOC, K_MEMALIGN, K_VALLOC, K_REALLOC,
       K_COUNT };
static const char *kind_name[K_COUNT] = {
    "malloc", "calloc", "posix_memalign", "aligned_alloc", "memalign", "valloc", "realloc" };

#define DESC_MAGIC 0x5ca1ab1e0ddba11ULL

/* A block's descriptor travels with it (the transfer array holds descriptor pointers). The
 * descriptor is itself malloc'ed, so it is also allocated by one thread and freed by another. */
typedef struct blk {
    uint64_t       magic;    /* DESC_MAGIC ^ (uintptr_t)self while live */
    unsigned char *p;
    size_t         size;     /* requested */
    size_t         usable;   /* malloc_usable_size at allocation: the pattern covers it all */
    size_t         align;    /* requested alignment, 0 for none */
    uint64_t       base;     /* pattern base, derived from (address, size, seed, serial) */
    uint32_t       owner;    /* logical id of the allocating thread */
    uint32_t       kind;
} blk_t;

static inline uint8_t pat_byte(uint64_t base, size_t off) {
    return (uint8_t)(mix64(base + (off >> 3)) >> ((off & 7) * 8));
}

static void fill_range(unsigned char *p, size_t off, size_t end, uint64_t base) {
    while (off < end && (off & 7)) { p[off] = pat_byte(base, off); off++; }
    for (; off + 8 <= end; off += 8) {
        uint64_t w = mix64(base + (off >> 3));
        memcpy(p + off, &w, 8);
    }
    for (; off < end; off++) p[off] = pat_byte(base, off);
}

/* returns the first mismatching offset in [off,end), or (size_t)-1 */
static size_t check_range(const unsigned char *p, size_t off, size_t end, uint64_t base) {
    while (off < end && (off & 7)) { if (p[off] != pat_byte(base, off)) return off; off++; }
    for (; off + 8 <= end; off += 8) {
        uint64_t w = mix64(base + (off >> 3)), v;
        memcpy(&v, p + off, 8);
        if (v != w) {
            for (size_t i = off; i < off + 8; i++) if (p[i] != pat_byte(base, i)) return i;
        }
    }
    for (; off < end; off++) if (p[off] != pat_byte(base, off)) return off;
    return (size_t)-1;
}

/* The regions of a block of `usable` bytes that carry the pattern, clipped to [0, limit). */
typedef size_t (*region_fn)(unsigned char *p, size_t off, size_t end, uint64_t base);

static size_t fill_adapter(unsigned char *p, size_t off, size_t end, uint64_t base) {
    fill_range(p, off, end, base); return (size_t)-1;
}
static size_t check_adapter(unsigned char *p, size_t off, size_t end, uint64_t base) {
    return check_range(p, off, end, base);
}

static size_t for_regions(unsigned char *p, size_t usable, size_t limit, uint64_t base,
                          region_fn fn) {
    size_t lim = limit < usable ? limit : usable, r;
#define REGION(a, b) do { size_t a_ = (a), b_ = (b) < lim ? (b) : lim; \
        if (a_ < b_ && (r = fn(p, a_, b_, base)) != (size_t)-1) return r; } while (0)
    if (usable <= FULL_FILL_LIMIT) { REGION(0, usable); return (size_t)-1; }
    REGION(0, EDGE_BYTES);
    for (size_t o = STRIDE; o + STRIDE_BYTES <= usable - EDGE_BYTES; o += STRIDE)
        REGION(o, o + STRIDE_BYTES);
    REGION(usable - EDGE_BYTES, usable);
#undef REGION
    return (size_t)-1;
}

/* ---- shared state ----------------------------------------------------------------------- */
static _Atomic(blk_t *) transfer[TRANSFER_COUNT];

/* deterministic counters (depend only on the arguments) */
static atomic_ulong g_ops_alloc, g_ops_realloc, g_ops_free, g_ops_transfer, g_bytes_alloc;
static atomic_ulong g_kind[K_COUNT], g_big, g_huge, g_threads;
/* scheduling-dependent counters */
static atomic_ulong g_created, g_freed, g_remote_frees, g_remote_reallocs, g_moved, g_verified;
static atomic_ulong g_sized_frees, g_trims;

typedef struct {
    uint32_t id;            /* logical thread id: slot + threads * generation */
    /* local counters */
    unsigned long ops_alloc, ops_realloc, ops_free, ops_transfer, bytes_alloc, big, huge;
    unsigned long kind[K_COUNT];
    unsigned long created, freed, remote_frees, remote_reallocs, moved, verified, sized_frees;
    unsigned long trims;
    uint64_t serial;
} worker_t;

static void check_desc(const blk_t *b, const char *where) {
    if (b->magic != (DESC_MAGIC ^ (uint64_t)(uintptr_t)b))
        fail("%s: block descriptor %p corrupt (magic 0x%016" PRIx64 ")", where, (void *)b,
             b->magic);
}

static void verify_block(worker_t *w, const blk_t *b, const char *where) {
    check_desc(b, where);
    size_t u = malloc_usable_size(b->p);
    if (u != b->usable)
        fail("%s: malloc_usable_size(%p) changed from %zu to %zu (size %zu, %s by thread %u, "
             "checked by thread %u)", where, (void *)b->p, b->usable, u, b->size,
             kind_name[b->kind], b->owner, w->id);
    size_t bad = for_regions(b->p, b->usable, b->usable, b->base, check_adapter);
    if (bad != (size_t)-1)
        fail("%s: cookie mismatch in block %p (size %zu, usable %zu, align %zu, %s by thread %u, "
             "checked by thread %u) at offset %zu: expected 0x%02x, found 0x%02x", where,
             (void *)b->p, b->size, b->usable, b->align, kind_name[b->kind], b->owner, w->id, bad,
             pat_byte(b->base, bad), b->p[bad]);
    w->verified++;
}

static void check_new(worker_t *w, blk_t *b, const char *fn) {
    uintptr_t a = (uintptr_t)b->p;
    size_t need = b->align > min_align ? b->align : min_align;
    if (a & (need - 1))
        fail("%s(size %zu, align %zu) returned %p, not %zu-byte aligned (thread %u)", fn,
             b->size, b->align, (void *)b->p, need, w->id);
    b->usable = malloc_usable_size(b->p);
    if (b->usable < b->size)
        fail("%s(size %zu) returned %p with malloc_usable_size %zu < size (thread %u)", fn,
             b->size, (void *)b->p, b->usable, w->id);
    b->base = mix64(((uint64_t)a * 0x9e3779b97f4a7c15ULL) ^ mix64(b->size + 0x1234567ULL) ^
                    mix64(opt_seed ^ ((uint64_t)w->id << 40) ^ ++w->serial));
}

static void fill_block(blk_t *b) {
    for_regions(b->p, b->usable, b->usable, b->base, fill_adapter);
}

/* sizes on and around size-class, pool, slot and arena boundaries */
static const size_t boundary_sizes[] = {
    0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 48, 496, 511, 512, 513, 639, 640, 641, 768, 1023, 1024,
    1025, 4095, 4096, 4097, 16384, 40960, 65535, 65536, 65537, 81920, 131072, 262144, 524288,
    786432, 1048575, 1048576, 1048577, 2097152, 4190208, 4194304, 4194305 };
#define N_BOUNDARY (sizeof boundary_sizes / sizeof boundary_sizes[0])

/* size distribution: mostly small, some medium, rare huge, a few zero, 1% boundary sizes */
static size_t pick_size(uint64_t r, worker_t *w) {
    unsigned sel = (unsigned)(r % 1000);
    r /= 1000;
    if (sel >= 990) return boundary_sizes[r % N_BOUNDARY];
    if (sel < 2) { w->huge++; return ((size_t)64 << 10) + (size_t)(r % ((4u << 20) - (64u << 10) + 1)); }
    if (sel < 80) { w->big++; return 513 + (size_t)(r % ((64u << 10) - 512)); }
    if (sel < 83) return 0;
    if (sel < 300) return 1 + (size_t)(r % 64);
    return 1 + (size_t)(r % 512);
}

static blk_t *new_desc(worker_t *w) {
    blk_t *b = malloc(sizeof *b);
    if (!b) fail("malloc(%zu) for a descriptor returned NULL (thread %u)", sizeof *b, w->id);
    if ((uintptr_t)b & (min_align - 1))
        fail("malloc(%zu) returned %p, not %zu-byte aligned", sizeof *b, (void *)b, min_align);
    memset(b, 0, sizeof *b);
    b->magic = DESC_MAGIC ^ (uint64_t)(uintptr_t)b;
    b->owner = w->id;
    return b;
}

/* C23 free_sized / free_aligned_sized, if the allocator has them (glibc 2.36 does not) */
static void (*p_free_sized)(void *, size_t);
static void (*p_free_aligned_sized)(void *, size_t, size_t);

static void release(worker_t *w, blk_t *b, const char *where) {
    verify_block(w, b, where);
    if (b->owner != w->id) w->remote_frees++;
    unsigned how = (unsigned)(b->base >> 7) & 3;      /* a quarter of the frees use the sized form */
    if (how == 0 && p_free_sized && (b->kind == K_MALLOC || b->kind == K_CALLOC || b->kind == K_REALLOC)) {
        p_free_sized(b->p, b->size);
        w->sized_frees++;
    } else if (how == 0 && p_free_aligned_sized && b->kind == K_ALIGNED_ALLOC) {
        p_free_aligned_sized(b->p, b->align, b->size);
        w->sized_frees++;
    } else {
        free(b->p);
    }
    b->magic = 0;
    free(b);
    w->freed++;
}

static blk_t *allocate(worker_t *w, uint64_t r_size, uint64_t r_kind) {
    blk_t *b = new_desc(w);
    size_t n = pick_size(r_size, w);
    unsigned sel = (unsigned)(r_kind % 100);
    uint64_t r = r_kind / 100;
    b->size = n;
    w->ops_alloc++;
    w->bytes_alloc += n;
    if (sel < 55) {
        b->kind = K_MALLOC;
        b->p = malloc(n);
    } else if (sel < 75) {
        size_t each = 1 + (size_t)(r % 16), cnt = (n + each - 1) / each;
        b->kind = K_CALLOC;
        b->size = n = cnt * each;
        b->p = calloc(cnt, each);
    } else if (sel < 87) {
        unsigned lg = (r % 50 == 0) ? 17 + (unsigned)((r / 50) % 5)     /* 128 KiB .. 2 MiB */
                                    : 3 + (unsigned)((r / 50) % 14);     /* 8 .. 64 KiB */
        void *p = NULL;
        b->kind = K_POSIX_MEMALIGN;
        b->align = (size_t)1 << lg;
        int rc = posix_memalign(&p, b->align, n);
        if (rc != 0) fail("posix_memalign(align %zu, size %zu) returned %d (thread %u)", b->align, n, rc, w->id);
        b->p = p;
    } else if (sel < 95) {
        b->kind = K_ALIGNED_ALLOC;
        b->align = (size_t)1 << (r % 13);                               /* 1 .. 4096 */
        b->size = n = (n + b->align - 1) / b->align * b->align;         /* C11: a multiple */
        b->p = aligned_alloc(b->align, n);
    } else if (sel < 99) {
        b->kind = K_MEMALIGN;
        b->align = (size_t)16 << (r % 9);                               /* 16 .. 4096 */
        b->p = memalign(b->align, n);
    } else {
        b->kind = K_VALLOC;
        b->align = (size_t)sysconf(_SC_PAGESIZE);
        b->p = valloc(n);
    }
    w->kind[b->kind]++;
    if (!b->p) {
        if (n == 0) {                     /* a 0-byte request may legitimately return NULL */
            b->magic = 0;
            free(b);
            return NULL;
        }
        fail("%s(size %zu, align %zu) returned NULL (thread %u)", kind_name[b->kind], n,
             b->align, w->id);
    }
    check_new(w, b, kind_name[b->kind]);
    if (b->kind == K_CALLOC) {
        for (size_t i = 0; i < n; i++)
            if (b->p[i] != 0)
                fail("calloc(%zu) returned %p whose byte %zu is 0x%02x, not zero (thread %u)", n,
                     (void *)b->p, i, b->p[i], w->id);
    }
    fill_block(b);
    w->created++;
    return b;
}

static blk_t *do_realloc(worker_t *w, blk_t *b, uint64_t r_size, uint64_t r_kind) {
    size_t n = pick_size(r_size, w);
    w->ops_realloc++;
    w->kind[K_REALLOC]++;
    if (b && r_kind % 10 < 4) {               /* 40%: resize relative to the current size */
        uint64_t r = r_kind / 10;
        switch (r % 4) {
        case 0: case 1: n = b->size + (size_t)(r / 4 % 129);           break; /* grow a bit */
        case 2: n = b->size > 64 ? b->size - (size_t)(r / 4 % 64) : b->size; break; /* shrink a bit */
        default: n = (r / 4) % 2 ? b->size * 2 : b->size / 2;           break;
        }
        if (n > ((size_t)8 << 20)) n = (size_t)8 << 20;
    }
    if (n == 0) n = 1;                        /* realloc(p, 0) is implementation-defined */
    if (!b) {
        b = new_desc(w);
        b->kind = K_REALLOC;
        b->size = n;
        b->p = realloc(NULL, n);
        if (!b->p) fail("realloc(NULL, %zu) returned NULL (thread %u)", n, w->id);
        check_new(w, b, "realloc(NULL)");
        fill_block(b);
        w->created++;
        return b;
    }
    verify_block(w, b, "before realloc");
    if (b->owner != w->id) w->remote_reallocs++;
    blk_t old = *b;
    uintptr_t old_addr = (uintptr_t)old.p;     /* printed only: the old pointer may be dead */
    unsigned char *q = (r_size >> 60) == 0 ? reallocarray(b->p, n, 1) : realloc(b->p, n);
    if (!q) fail("realloc(%#" PRIxPTR ", %zu) returned NULL (old size %zu, thread %u)", old_addr,
                 n, old.size, w->id);
    if ((uintptr_t)q != old_addr) w->moved++;
    b->p = q;
    b->size = n;
    b->align = 0;                              /* realloc keeps only the default alignment */
    b->kind = K_REALLOC;
    b->owner = w->id;
    size_t keep = old.size < n ? old.size : n;
    size_t bad = for_regions(q, old.usable, keep, old.base, check_adapter);
    if (bad != (size_t)-1)
        fail("realloc(%#" PRIxPTR ", %zu) -> %p (old size %zu, usable %zu, thread %u) did not "
             "preserve the contents: offset %zu expected 0x%02x, found 0x%02x", old_addr, n, (void *)q,
             old.size, old.usable, w->id, bad, pat_byte(old.base, bad), q[bad]);
    check_new(w, b, "realloc");
    fill_block(b);
    return b;
}

static void *worker_main(void *arg) {
    worker_t *w = arg;
    rng_t rng = { mix64(opt_seed * 0x2545f4914f6cdd1dULL + w->id + 1) };
    size_t nslots = 16 + (size_t)opt_scale * 16;
    /* per-lifetime workload varies (0.5x .. 1.5x) so that threads exit at different times */
    unsigned long ops = (unsigned long)opt_scale * 500;
    ops = ops / 2 + (unsigned long)(rnd(&rng) % (ops + 1));
    blk_t **slots = calloc(nslots, sizeof *slots);
    if (!slots) fail("calloc(%zu, %zu) returned NULL", nslots, sizeof *slots);

    for (unsigned long i = 0; i < ops; i++) {
        /* always draw the same number of random values per op, whatever the slot holds, so that
         * the deterministic counters do not depend on scheduling */
        uint64_t r_slot = rnd(&rng), r_op = rnd(&rng), r_size = rnd(&rng), r_kind = rnd(&rng);
        size_t s = (size_t)(r_slot % nslots);
        unsigned op = (unsigned)(r_op % 100);
        if ((r_slot >> 32) % 40000 == 0) {    /* rarely: give free memory back, while others run */
            malloc_trim(0);
            w->trims++;
        }
        if (op < 45) {
            if (slots[s]) release(w, slots[s], "free before alloc");
            slots[s] = allocate(w, r_size, r_kind);
        } else if (op < 60) {
            slots[s] = do_realloc(w, slots[s], r_size, r_kind);
        } else if (op < 85) {
            w->ops_free++;
            if (slots[s]) { release(w, slots[s], "free"); slots[s] = NULL; }
        } else {
            w->ops_transfer++;
            size_t t = (size_t)(r_kind % TRANSFER_COUNT);
            blk_t *got = atomic_exchange_explicit(&transfer[t], slots[s], memory_order_acq_rel);
            if (got) verify_block(w, got, "taken from the transfer array");
            slots[s] = got;
        }
    }
    /* exit: leave about a quarter of the live blocks in the transfer array for later threads
     * (possibly started after this one's heap was abandoned); free the rest */
    for (size_t s = 0; s < nslots; s++) {
        blk_t *b = slots[s];
        if (!b) continue;
        if ((mix64((uint64_t)s ^ w->id) & 3) == 0) {
            size_t t = (size_t)(mix64(s + ((uint64_t)w->id << 32)) % TRANSFER_COUNT);
            b = atomic_exchange_explicit(&transfer[t], b, memory_order_acq_rel);
            if (!b) continue;
        }
        release(w, b, "free at thread exit");
    }
    free(slots);

    atomic_fetch_add(&g_ops_alloc, w->ops_alloc);
    atomic_fetch_add(&g_ops_realloc, w->ops_realloc);
    atomic_fetch_add(&g_ops_free, w->ops_free);
    atomic_fetch_add(&g_ops_transfer, w->ops_transfer);
    atomic_fetch_add(&g_bytes_alloc, w->bytes_alloc);
    atomic_fetch_add(&g_big, w->big);
    atomic_fetch_add(&g_huge, w->huge);
    for (int k = 0; k < K_COUNT; k++) atomic_fetch_add(&g_kind[k], w->kind[k]);
    atomic_fetch_add(&g_created, w->created);
    atomic_fetch_add(&g_freed, w->freed);
    atomic_fetch_add(&g_remote_frees, w->remote_frees);
    atomic_fetch_add(&g_remote_reallocs, w->remote_reallocs);
    atomic_fetch_add(&g_moved, w->moved);
    atomic_fetch_add(&g_verified, w->verified);
    atomic_fetch_add(&g_sized_frees, w->sized_frees);
    atomic_fetch_add(&g_trims, w->trims);
    atomic_fetch_add(&g_threads, 1);
    return NULL;
}

/* ---- edge cases (main thread, once) ----------------------------------------------------- */
static void edge_cases(void) {
    errno = 0;
    void *volatile big = NULL;
    volatile size_t huge_req = SIZE_MAX - 4096;
    big = malloc(huge_req);
    if (big) fail("malloc(SIZE_MAX - 4096) returned %p, expected NULL", big);
    if (errno != ENOMEM) fail("malloc(SIZE_MAX - 4096) set errno %d, expected ENOMEM", errno);
    errno = 0;
    volatile size_t half = SIZE_MAX / 2 + 2;
    big = calloc(half, 2);
    if (big) fail("calloc(SIZE_MAX/2 + 2, 2) (overflow) returned %p, expected NULL", big);
    if (errno != ENOMEM) fail("calloc overflow set errno %d, expected ENOMEM", errno);
    void *p = (void *)0x1;
    int rc = posix_memalign(&p, 24, 8);
    if (rc != EINVAL) fail("posix_memalign(align 24) returned %d, expected EINVAL", rc);
    if (p != (void *)0x1) fail("posix_memalign(align 24) failed but changed *memptr");
    if (malloc_usable_size(NULL) != 0) fail("malloc_usable_size(NULL) != 0");
    free(NULL);
    unsigned char *q = malloc(100);
    if (!q) fail("malloc(100) returned NULL");
    memset(q, 0x5a, 100);
    errno = 0;
    /* through a volatile pointer: GCC cannot see that the failed realloc leaves q alive */
    void *(*volatile realloc_fn)(void *, size_t) = realloc;
    big = realloc_fn(q, huge_req);
    if (big) fail("realloc(p, SIZE_MAX - 4096) returned %p, expected NULL", big);
    if (errno != ENOMEM) fail("failed realloc set errno %d, expected ENOMEM", errno);
    for (int i = 0; i < 100; i++)
        if (q[i] != 0x5a) fail("failed realloc changed the original block at offset %d", i);
    free(q);
    q = malloc(16);
    if (!q) fail("malloc(16) returned NULL");
    errno = 0;
    volatile size_t many = SIZE_MAX / 8;
    void *(*volatile reallocarray_fn)(void *, size_t, size_t) = reallocarray;
    big = reallocarray_fn(q, many, 16);
    if (big) fail("reallocarray(p, SIZE_MAX/8, 16) (overflow) returned %p, expected NULL", big);
    if (errno != ENOMEM) fail("reallocarray overflow set errno %d, expected ENOMEM", errno);
    free(q);
    /* malloc(0) may return NULL or a unique pointer that can be freed */
    void *z1 = malloc(0), *z2 = malloc(0);
    if (z1 && z1 == z2) fail("two live malloc(0) returned the same pointer %p", z1);
    free(z1);
    free(z2);
}

static unsigned long ld(atomic_ulong *a) { return atomic_load(a); }

int main(int argc, char **argv) {
    if (argc > 1) opt_threads = atoi(argv[1]);
    if (argc > 2) opt_rounds = atoi(argv[2]);
    if (argc > 3) opt_scale = atoi(argv[3]);
    if (argc > 4) opt_seed = strtoull(argv[4], NULL, 0);
    if (argc > 5 || opt_threads < 1 || opt_rounds < 1 || opt_scale < 1) {
        fprintf(stderr, "usage: %s [threads=4] [rounds=10] [scale=20] [seed=42]\n", argv[0]);
        return 2;
    }
    const char *ma = getenv("STRESS_MIN_ALIGN");
    if (ma && *ma) {
        min_align = (size_t)strtoul(ma, NULL, 0);
        if (min_align == 0 || (min_align & (min_align - 1))) {
            fprintf(stderr, "stress: STRESS_MIN_ALIGN must be a power of two\n");
            return 2;
        }
    }

    *(void **)&p_free_sized = dlsym(RTLD_DEFAULT, "free_sized");
    *(void **)&p_free_aligned_sized = dlsym(RTLD_DEFAULT, "free_aligned_sized");
    const char *se = getenv("STRESS_SKIP_EDGE");
    if (!(se && *se && strcmp(se, "0") != 0)) edge_cases();

    int T = opt_threads;
    pthread_t *tids = calloc((size_t)T, sizeof *tids);
    worker_t **ws = calloc((size_t)T, sizeof *ws);
    int *gen = calloc((size_t)T, sizeof *gen);
    if (!tids || !ws || !gen) fail("calloc for thread bookkeeping returned NULL");

    for (int t = 0; t < T; t++) {
        ws[t] = calloc(1, sizeof **ws);
        if (!ws[t]) fail("calloc(worker) returned NULL");
        ws[t]->id = (uint32_t)t;
        int rc = pthread_create(&tids[t], NULL, worker_main, ws[t]);
        if (rc) fail("pthread_create: %s", strerror(rc));
    }
    /* join in round-robin order and replace each exited worker with a fresh thread */
    int live = T;
    for (int t = 0; live > 0; t = (t + 1) % T) {
        if (!ws[t]) continue;
        int rc = pthread_join(tids[t], NULL);
        if (rc) fail("pthread_join: %s", strerror(rc));
        free(ws[t]);
        ws[t] = NULL;
        if (++gen[t] < opt_rounds) {
            ws[t] = calloc(1, sizeof **ws);
            if (!ws[t]) fail("calloc(worker) returned NULL");
            ws[t]->id = (uint32_t)(t + T * gen[t]);
            rc = pthread_create(&tids[t], NULL, worker_main, ws[t]);
            if (rc) fail("pthread_create: %s", strerror(rc));
        } else {
            live--;
        }
    }

    /* the main thread frees what is left in the transfer array: blocks of exited threads */
    worker_t mainw;
    memset(&mainw, 0, sizeof mainw);
    mainw.id = UINT32_MAX;
    for (size_t i = 0; i < TRANSFER_COUNT; i++) {
        blk_t *b = atomic_exchange(&transfer[i], NULL);
        if (b) release(&mainw, b, "final free by main");
    }
    atomic_fetch_add(&g_freed, mainw.freed);
    atomic_fetch_add(&g_remote_frees, mainw.remote_frees);
    atomic_fetch_add(&g_verified, mainw.verified);
    atomic_fetch_add(&g_sized_frees, mainw.sized_frees);

    if (ld(&g_created) != ld(&g_freed))
        fail("accounting: %lu blocks created but %lu freed", ld(&g_created), ld(&g_freed));
    free(tids);
    free(ws);
    free(gen);

    printf("stress: threads=%d rounds=%d scale=%d seed=%" PRIu64 " lifetimes=%lu alloc=%lu "
           "realloc=%lu free=%lu transfer=%lu bytes=%lu big=%lu huge=%lu malloc=%lu calloc=%lu "
           "posix_memalign=%lu aligned_alloc=%lu memalign=%lu valloc=%lu trims=%lu leaked=0 OK\n",
           opt_threads, opt_rounds, opt_scale, opt_seed, ld(&g_threads), ld(&g_ops_alloc),
           ld(&g_ops_realloc), ld(&g_ops_free), ld(&g_ops_transfer), ld(&g_bytes_alloc),
           ld(&g_big), ld(&g_huge), ld(&g_kind[K_MALLOC]), ld(&g_kind[K_CALLOC]),
           ld(&g_kind[K_POSIX_MEMALIGN]), ld(&g_kind[K_ALIGNED_ALLOC]), ld(&g_kind[K_MEMALIGN]),
           ld(&g_kind[K_VALLOC]), ld(&g_trims));
    fprintf(stderr, "stress: info: blocks=%lu cross-thread frees=%lu cross-thread reallocs=%lu "
            "reallocs moved=%lu verifications=%lu sized frees=%lu%s\n", ld(&g_created),
            ld(&g_remote_frees), ld(&g_remote_reallocs), ld(&g_moved), ld(&g_verified),
            ld(&g_sized_frees), p_free_sized ? "" : " (no free_sized)");
    fflush(stdout);
    return 0;
}
