/* Fault injection: fail the N-th mapping call of a realistic run (os.c counts mmap, mremap, and
 * the mprotect that opens arena slots), for every N. Each failure must show as NULL with ENOMEM
 * (posix_memalign: ENOMEM returned, errno untouched; pthread_create: EAGAIN, glibc's word for its
 * own allocation failing) in the one operation that made the failed call, or be absorbed where a
 * path is meant to absorb it: a huge realloc whose mremap fails copies instead, and the sampler
 * drops a sample it has no table room for. Never a crash, a corrupted block, a checker failure,
 * unbalanced statistics, a failure in another operation, or memory that stays mapped once
 * everything is freed and trimmed.
 *
 * Every run happens in a fresh child forked from the same parent state, so that the run's
 * mapping calls are the same in each: the parent calls no allocator function between forks.
 * The run is single-threaded at any moment (its worker threads take turns, and exit one at a
 * time), so the calls come in the same order too. Results come back through a MAP_SHARED page.
 * Between processes the calls differ a little (ASLR: whether a plain mmap happens to be 4 MiB
 * aligned decides whether an aligned mapping takes one call or two), so C is measured anew by
 * each test process.
 *
 * A second test fails every mapping call of one operation (memory stays short for a while), for
 * the operations where that differs most from failing one call.
 *
 * PM_FAULTS_ONLY=N (PM_FAULTS_ONLY_OP=K for the second test) in the environment tries that N
 * (operation K) alone, to reproduce one case; run it under `setarch -R` (no ASLR), and the N of
 * a listing made under `setarch -R` names the same call. PM_FAULTS_VERBOSE=1 lists the operation
 * each N failed. */
#include "helpers.h"
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>

enum { MAX_MOPS = 512 };
typedef struct {
    long   seq;                /* the operation's number in the run */
    int    calls;              /* the mapping calls it made */
    char   label[52];
} mop_t;

typedef struct {
    long   n;                  /* in: fail the n-th mapping call of the run */
    long   op_k;               /* in: fail every mapping call of the op_k-th operation (0 and 0: a clean run) */
    long   calls;              /* the mapping calls the run made */
    int    consumed;           /* the n-th call happened inside the run */
    int    visible;            /* ... and the operation that made it reported the failure */
    int    nfailed;            /* operations that reported a failure (at most 1) */
    int    ok;                 /* every check at the end held */
    char   op[96];             /* the operation that made the n-th call */
    size_t mapped_before;      /* _pm_os_mapped at the start (after a trim) */
    size_t mapped_after;       /* ... after everything was freed and trimmed */
    long   in_use_delta;       /* in_use after the final trim less in_use at the start */
    size_t arenas_before, arenas_after;  /* arenas mapped at the start and after the final trim */
    size_t meta_before, meta_after;      /* the same, mapped outside arenas and huge blocks: metadata */
    size_t pinned_arenas;                /* arenas the run mapped that outlive it, held by others' blocks */
    size_t huge_peak;                    /* huge blocks live at once in phase F */
    int    nmops;                        /* a clean run: the operations that made mapping calls */
    mop_t  mops[MAX_MOPS];
} result_t;

static result_t *res;

/* ---- the child's failure report: one line on stderr, then _exit ---- */
__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
    char buf[640];
    int k = res->op_k ? snprintf(buf, sizeof buf, "operation %ld: ", res->op_k) : snprintf(buf, sizeof buf, "N=%ld: ", res->n);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, sizeof buf - (size_t)k, fmt, ap);
    va_end(ap);
    size_t len = strlen(buf);
    buf[len++] = '\n';
    if (write(2, buf, len) < 0) {}
    _exit(3);
}

/* ---- which mapping call fails ----
 * `target` is the absolute number of the call to fail (os.c counts every call). Reading the
 * count disarms the hook, so each read arms it again for what is left. */
static long target;

static long calls_now(void) {
    long now = _pm_os_fail_map_at(0);
    if (target > now) _pm_os_fail_map_at(target - now);
    return now;
}

/* ---- operations: each is bracketed, so the one that made the failed call is known ---- */
static char op_label[96];
static long op_start, op_seq;
static bool sampling;
static __thread bool in_thread;
static long run_start;            /* the call count when the run began */

__attribute__((format(printf, 1, 2))) static void op_begin(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(op_label, sizeof op_label, "%s", in_thread ? "thread: " : "");
    vsnprintf(op_label + k, sizeof op_label - (size_t)k, fmt, ap);
    va_end(ap);
    if (sampling) strncat(op_label, " (sampled)", sizeof op_label - strlen(op_label) - 1);
    op_seq++;
    op_start = calls_now();
    if (res->op_k == op_seq) _pm_os_fail_next_maps(1 << 30);   /* out of memory for the whole operation */
}

/* failed: the operation reported a failure, with `err` (errno or the return code); it must be
 * `want`, and the operation must be the one that made the failed mapping call. */
static void op_end(bool failed, int err, int want) {
    long end = calls_now();
    bool all = res->op_k == op_seq;
    if (all) _pm_os_fail_next_maps(0);
    bool hit = all ? end > op_start : target && target > op_start && target <= end;
    if (!res->n && !res->op_k && end > op_start && res->nmops < MAX_MOPS) {
        mop_t *m = &res->mops[res->nmops++];
        m->seq = op_seq;
        m->calls = (int)(end - op_start);
        snprintf(m->label, sizeof m->label, "%s", op_label);
    }
    if (hit) {
        res->consumed = 1;
        res->visible = failed;
        memcpy(res->op, op_label, sizeof res->op);
    }
    if (!failed) return;
    res->nfailed++;
    if (err != want) die("%s failed with error %d (%s), not %d (%s)", op_label, err, strerror(err), want, strerror(want));
    if (!hit && res->op_k)
        die("%s (operation %ld) failed, but the mapping calls of operation %ld failed", op_label, op_seq, res->op_k);
    if (!hit)
        die("%s failed, but its mapping calls were %ld..%ld of the run, and the failed one is %ld%s", op_label,
            op_start - run_start + 1, end - run_start, res->n, target ? "" : " (none: a clean run)");
}

/* ---- the blocks the run holds, each with a pattern of its own ----
 * An allocation that failed holds a place too (p NULL), and a realloc of it does nothing: so the
 * run goes on picking the same blocks as the clean run, and holds no more than it does, at any
 * point, but for blocks a failed realloc kept at their old size. */
typedef struct {
    uint8_t *p;
    size_t   size, align;
    size_t   counted;      /* the size the library records: an aligned request is at least its alignment */
    uint32_t tag;
} blk_t;
enum { MAXB = 8192 };
static blk_t held[MAXB];
static int nheld;
static uint32_t next_tag;
static uint64_t seed;

static uint8_t pat(uint32_t tag, size_t off) {
    return (uint8_t)((tag * 2654435761u >> 24) ^ off ^ (off >> 8) ^ (off >> 16) ^ 0x5a);
}

/* The bytes a block's pattern covers: all of a block up to 1 KiB; of bigger ones the first and
 * last 64 bytes and 8 bytes every 256 KiB (pooled) or 1 MiB (huge), to keep page faults few. */
enum { WRITE, VERIFY, VERIFY_ZERO };
static void walk(const blk_t *b, uint8_t *p, size_t limit, int mode, const char *what) {
    size_t n = b->size, st = n <= 1024 ? 1 : n <= PM_LARGE_MAX ? 262144 : 1048576;
    for (size_t off = 0; off < n && off < limit;) {
        uint8_t want = mode == VERIFY_ZERO ? 0 : pat(b->tag, off);
        if (mode == WRITE) p[off] = want;
        else if (p[off] != want)
            die("%s: block %p (tag %u, %zu bytes) byte %zu is 0x%02x, not 0x%02x", what, (void *)p, b->tag, n, off,
                p[off], want);
        if (st == 1 || off < 63 || off + 65 > n || (off % st) < 7) { off++; continue; }
        size_t next = (off / st + 1) * st;
        off = next + 64 > n ? n - 64 : next;
    }
}

static bool is_pooled(size_t size, size_t align) { return size <= PM_LARGE_MAX && align <= PM_POOL_ALIGN_MAX; }

static void check_place(const blk_t *b, const char *what) {
    if (b->size == 0) {                              /* PROT_NONE: not a byte may be touched */
        if (!_pm_is_zero_ptr(b->p)) die("%s: %p is not in a zero arena", what, (void *)b->p);
        return;
    }
    if ((uintptr_t)b->p % (b->align > 16 ? b->align : 16))
        die("%s: %p is not aligned to %zu", what, (void *)b->p, b->align);
    if (_pm_is_arena_ptr(b->p) != is_pooled(b->size, b->align))
        die("%s: %zu bytes aligned to %zu: %p is %s an arena", what, b->size, b->align, (void *)b->p,
            _pm_is_arena_ptr(b->p) ? "in" : "not in");
}

static const char *cat(size_t size, size_t align) {
    return size == 0 ? "zero-size" : !is_pooled(size, align) ? "huge" : size <= PM_SMALL_MAX ? "small" : "pooled";
}

enum { K_MALLOC, K_CALLOC, K_POSIX_MEMALIGN, K_ALIGNED_ALLOC };
static const char *const kind_name[] = { "malloc", "calloc", "posix_memalign", "aligned_alloc" };

/* Allocate, check, fill, hold. Returns the index (of a place holder when out of memory). */
static int alloc_block(int kind, size_t size, size_t align) {
    if (nheld == MAXB) die("the run holds more than %d blocks", MAXB);
    void *p = NULL;
    int err = 0;
    if (align) op_begin("%s %s %zu (align %zu)", kind_name[kind], cat(size, align), size, align);
    else op_begin("%s %s %zu", kind_name[kind], cat(size, align), size);
    errno = 0;
    switch (kind) {
    case K_MALLOC: p = malloc(size); err = errno; break;
    case K_CALLOC: p = calloc(1, size); err = errno; break;
    case K_POSIX_MEMALIGN:
        err = posix_memalign(&p, align, size);
        if (err && errno != 0) die("posix_memalign failed and set errno to %d", errno);
        if (err) p = NULL;
        break;
    case K_ALIGNED_ALLOC: p = aligned_alloc(align, size); err = errno; break;
    }
    op_end(p == NULL, err, ENOMEM);
    blk_t *b = &held[nheld];
    bool aligned = kind == K_POSIX_MEMALIGN || kind == K_ALIGNED_ALLOC;
    *b = (blk_t){ p, size, aligned ? align : 0, aligned && size < align ? align : size, next_tag++ };
    if (p == NULL) return nheld++;
    check_place(b, op_label);
    if (kind == K_CALLOC) walk(b, b->p, SIZE_MAX, VERIFY_ZERO, op_label);
    walk(b, b->p, SIZE_MAX, WRITE, NULL);
    return nheld++;
}

static int alloc_of(size_t size) { return alloc_block(K_MALLOC, size, 0); }

/* realloc: on success the common prefix moved with the block; on failure the old block is intact
 * and still ours (it is verified, kept, and freed later like any other). */
static void realloc_block(int i, size_t size) {
    blk_t *b = &held[i];
    if (b->p == NULL) return;                        /* its allocation failed */
    op_begin("realloc %s %zu -> %s %zu", cat(b->size, b->align), b->size, cat(size, 0), size);
    errno = 0;
    uint8_t *q = realloc(b->p, size);
    op_end(q == NULL, errno, ENOMEM);
    if (q == NULL) {
        walk(b, b->p, SIZE_MAX, VERIFY, "the block a failed realloc kept");
        return;
    }
    walk(b, q, size, VERIFY, op_label);
    *b = (blk_t){ q, size, 0, size, b->tag };
    check_place(b, op_label);
    walk(b, b->p, SIZE_MAX, WRITE, NULL);
}

static void free_block(int i) {
    blk_t *b = &held[i];
    if (b->p == NULL) { held[i] = held[--nheld]; return; }
    walk(b, b->p, SIZE_MAX, VERIFY, "a block before its free");
    op_begin("free %s %zu", cat(b->size, b->align), b->size);
    free(b->p);
    op_end(false, 0, 0);
    held[i] = held[--nheld];
}

static int pick(void) { return nheld ? (int)(test_rand(&seed) % (uint64_t)nheld) : -1; }

static void free_some(int n) {
    for (int k = 0; k < n && nheld; k++) free_block(pick());   /* scrambled: any held block */
}

/* Sizes: small 16..512; pooled 513 B..1 MiB, log-uniform (so the big classes, each block its own
 * pool of up to 64 slots, take most of the bytes); huge 1..8 MiB. */
static size_t small_size(void) { return 16 + test_rand(&seed) % 497; }
static size_t pooled_size(void) {
    unsigned bits = 10 + (unsigned)(test_rand(&seed) % 11);       /* 2^10 .. 2^20 */
    size_t s = ((size_t)1 << (bits - 1)) + test_rand(&seed) % ((size_t)1 << (bits - 1));
    return s > PM_LARGE_MAX ? PM_LARGE_MAX : s;
}
static size_t huge_size(void) { return PM_LARGE_MAX + 1 + test_rand(&seed) % (7 * PM_MIB); }

static void trim(void) {
    op_begin("malloc_trim");
    malloc_trim(0);
    op_end(false, 0, 0);
}

static void free_huge_some(int n) {
    for (int k = 0, tries = 0; k < n && tries < 100000; tries++) {
        int i = pick();
        if (i >= 0 && !is_pooled(held[i].size, held[i].align)) { free_block(i); k++; }
    }
}

static int devnull = -1;

/* A heap report (the sampler's sites, symbolized): 0, or ENOMEM when a mapping failed. */
static void report(const char *format) {
    op_begin("pm_report %s", format);
    int rc = pm_report(devnull, format);
    op_end(rc != 0, rc, ENOMEM);
}

static void set_sampling(bool on) {
    sampling = on;
    _pm_sample_set_rate(on ? 1 : 0);
}

/* A realloc chain: a zero-size block grows through small and pooled sizes into huge ones and
 * shrinks back; `big` takes it up to 7 MiB. Copies fault pages in, at 10 us a fault on some VMs,
 * so the other chains stay at 2 MiB. */
static void realloc_chain(bool big) {
    int i = alloc_of(0);
    static const size_t steps[2][13] = {
        { 24, 100, 480, 3000, 70000, 300000, 2u << 20, 5u << 20, 3u << 20, 7u << 20, 100000, 200, 9000 },
        { 24, 100, 480, 3000, 70000, 300000, 1100000, 1500000, 1200000, 2u << 20, 400000, 200, 9000 },
    };
    for (unsigned k = 0; k < 13; k++) realloc_block(i, steps[big ? 0 : 1][k]);
}

/* A size to realloc a held block to: bigger, or smaller. Blocks above 256 KiB only shrink:
 * growing one copies it (and faults its pages in). */
static size_t resize_of(size_t s, bool grow) {
    return grow && s <= ((size_t)256 << 10) ? s * 2 + 100 : s / 3 + 1;
}

/* ---- worker threads: NTHREADS alive together (more heaps than one slab of heap structs holds),
 * each doing its share in turn, then exiting in turn ---- */
enum { NTHREADS = 10 };
static pthread_mutex_t turn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turn_cond = PTHREAD_COND_INITIALIZER;
static int turn = -1, finished = -1, may_exit = -1;

static void thread_work(int id) {
    for (int k = 0; k < 40; k++) alloc_of(small_size());
    for (int k = 0; k < 4; k++) alloc_of(pooled_size());
    if (id % 4 == 0) alloc_of(huge_size());
    if (id % 5 == 2) alloc_of(0);
    if (id % 4 == 1) alloc_block(K_POSIX_MEMALIGN, 5000, 4096);
    free_some(30);                                   /* mostly main's and earlier threads' blocks */
    int i = pick();
    if (i >= 0) realloc_block(i, resize_of(held[i].size, true));   /* another thread's block, likely */
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&turn_lock);
    while (turn != id) pthread_cond_wait(&turn_cond, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
    in_thread = true;                                /* thread-local: the op labels say "thread" */
    thread_work(id);
    const char *why = _pm_heap_check(_pm_heap_tls);  /* its own heap: only the owner may look */
    if (why) die("thread %d, after its turn: _pm_heap_check: %s", id, why);
    pthread_mutex_lock(&turn_lock);
    finished = id;
    pthread_cond_broadcast(&turn_cond);
    while (may_exit != id) pthread_cond_wait(&turn_cond, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
    return NULL;
}

static void wait_for(int *what, int value) {
    pthread_mutex_lock(&turn_lock);
    while (*what != value) pthread_cond_wait(&turn_cond, &turn_lock);
    pthread_mutex_unlock(&turn_lock);
}

static void set_and_wake(int *what, int value) {
    pthread_mutex_lock(&turn_lock);
    *what = value;
    pthread_cond_broadcast(&turn_cond);
    pthread_mutex_unlock(&turn_lock);
}

static void threads_phase(void) {
    pthread_t t[NTHREADS];
    bool started[NTHREADS];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    for (int id = 0; id < NTHREADS; id++) {
        op_begin("pthread_create");
        int rc = pthread_create(&t[id], &attr, worker, (void *)(intptr_t)id);
        op_end(rc != 0, rc, EAGAIN);
        started[id] = rc == 0;
    }
    pthread_attr_destroy(&attr);
    for (int id = 0; id < NTHREADS; id++) {
        if (!started[id]) continue;
        if (id % 2) set_sampling(true);              /* the rate is global: every other turn samples */
        set_and_wake(&turn, id);
        wait_for(&finished, id);
        set_sampling(false);
    }
    for (int id = 0; id < NTHREADS; id++) {
        if (!started[id]) continue;
        op_begin("thread exit");                     /* gives its heap's pools back */
        set_and_wake(&may_exit, id);
        pthread_join(t[id], NULL);
        op_end(false, 0, 0);
    }
}

/* ---- the run ---- */
static void run(void) {
    seed = 0x9e3779b97f4a7c15ull;
    next_tag = 1;
    nheld = 0;
    /* A: the heap fills; several arenas get mapped */
    for (int k = 0; k < 1000; k++) alloc_block(k % 5 == 0 ? K_CALLOC : K_MALLOC, small_size(), 0);
    for (int k = 0; k < 80; k++) alloc_block(k % 10 == 0 ? K_CALLOC : K_MALLOC, pooled_size(), 0);
    for (int k = 0; k < 4; k++) alloc_block(k == 2 ? K_CALLOC : K_MALLOC, huge_size(), 0);
    for (int k = 0; k < 6; k++) alloc_of(0);                  /* zero-size blocks: a zero arena */
    static const size_t aligns[] = { 32, 64, 256, 4096, 16384, 65536, 262144, 1u << 20 };
    for (unsigned k = 0; k < 2 * sizeof aligns / sizeof aligns[0]; k++) {
        size_t align = aligns[k % 8], size = k < 8 ? 100 + k * 1000 : align * 2 + 48;
        alloc_block(k % 3 == 2 ? K_ALIGNED_ALLOC : K_POSIX_MEMALIGN, size, align);
    }
    realloc_chain(true);
    /* B: a scrambled half goes */
    free_some(nheld / 2);
    /* C: every allocation sampled: the sampler's tables grow */
    set_sampling(true);
    for (int k = 0; k < 700; k++) alloc_block(k % 4 == 0 ? K_CALLOC : K_MALLOC, small_size(), 0);
    for (int k = 0; k < 30; k++) alloc_of(pooled_size());
    for (int k = 0; k < 3; k++) alloc_of(huge_size());
    alloc_block(K_POSIX_MEMALIGN, 3000, 1u << 20);
    realloc_chain(false);
    free_some(300);
    set_sampling(false);
    report("text");
    /* D: threads, in turn; their blocks outlive them */
    threads_phase();
    /* E: trim, then the heap grows again from nothing cached */
    trim();
    for (int k = 0; k < 25; k++) alloc_of(pooled_size());
    for (int k = 0; k < 3; k++) alloc_of(huge_size());
    alloc_block(K_CALLOC, PM_LARGE_MAX + 300000, 0);    /* from the cache: zeroed by memset */
    for (int k = 0; k < 8 && nheld; k++) {           /* growth and shrink of what is held */
        int i = pick();
        size_t s = held[i].size;
        realloc_block(i, resize_of(s, k % 2 == 0));
    }
    realloc_chain(false);
    /* F: many huge blocks live at once (the huge registry outgrows its first table), freed
     * scrambled into the cache of freed runs (64 runs, merged when adjacent, the oldest unmapped
     * when it is full), and taken from it again */
    for (int k = 0; k < 60; k++) {
        size_t size = PM_LARGE_MAX + 4096 * (1 + test_rand(&seed) % 64);
        alloc_block(k % 6 == 5 ? K_POSIX_MEMALIGN : K_MALLOC, size, k % 6 == 5 ? 65536 : 0);
    }
    pm_huge_counts_t hc;
    _pm_huge_counts(&hc);
    res->huge_peak = hc.count;
    free_huge_some(45);
    for (int k = 0; k < 20; k++) alloc_of(PM_LARGE_MAX + 4096 * (1 + test_rand(&seed) % 64));
    /* G: most goes, scrambled; some comes back */
    free_some(nheld * 2 / 3);
    for (int k = 0; k < 300; k++) alloc_of(small_size());
    for (int k = 0; k < 10; k++) alloc_of(pooled_size());
    alloc_of(huge_size());
    report("folded");
}

/* ---- the checks at the end ---- */
static void check_sound(const char *when) {
    const char *why;
    if ((why = _pm_heap_check(_pm_heap_tls))) die("%s: _pm_heap_check: %s", when, why);
    if ((why = _pm_arena_check())) die("%s: _pm_arena_check: %s", when, why);
    if ((why = _pm_huge_check())) die("%s: _pm_huge_check: %s", when, why);
    if ((why = _pm_sample_check())) die("%s: _pm_sample_check: %s", when, why);
}

/* The byte accounting of stats.c balances (as tests/unit/heap/test_arena.c checks it). */
static void check_balance(const pm_stats_snapshot_t *s, const char *when) {
    size_t sum = s->in_use + s->huge_requested + s->free_in_pools + s->quantization + s->arena_headers +
                 s->free_slots + (s->huge_mapped - s->huge_requested) + s->huge_cached;
    if (sum != s->mapped) die("%s: the byte accounting does not balance: %zu != %zu mapped", when, sum, s->mapped);
    if (s->mapped != s->arenas * PM_ARENA_SIZE + s->huge_mapped + s->huge_cached)
        die("%s: mapped %zu is not arenas + huge + cached", when, s->mapped);
    size_t used = 0;
    for (unsigned c = 0; c < PM_NCLASSES; c++) used += s->cls[c].blocks_used * _pm_classes[c].size;
    if (used != s->in_use) die("%s: the classes' blocks in use add up to %zu, not %zu", when, used, s->in_use);
}

/* The arenas mapped at the start. After the final trim, an arena the run mapped may still be
 * there only for blocks in use that are not the run's (it freed all of its own): glibc's, see
 * METADATA_MAX below. Returns how many such arenas there are. */
enum { MAX_ARENAS = 64 };
static uintptr_t arenas_at_start[MAX_ARENAS];
static size_t narenas_at_start;

static void note_arenas(void) {
    pthread_mutex_lock(&_pm_arena_lock);
    narenas_at_start = 0;
    for (pm_arena_t *a = _pm_arena_first(); a && narenas_at_start < MAX_ARENAS; a = a->all_next)
        arenas_at_start[narenas_at_start++] = (uintptr_t)a;
    pthread_mutex_unlock(&_pm_arena_lock);
}

static size_t pinned_arenas(long in_use_delta) {
    size_t n = 0, bytes = 0;
    pthread_mutex_lock(&_pm_arena_lock);
    for (pm_arena_t *a = _pm_arena_first(); a; a = a->all_next) {
        bool old = false;
        for (size_t i = 0; i < narenas_at_start; i++) old |= arenas_at_start[i] == (uintptr_t)a;
        if (old) continue;
        size_t used = 0;
        for (unsigned i = PM_HEADER_SLOTS; i < PM_SLOTS; i++) {
            const pm_pool_t *pool = &a->pools[i];
            if (a->heads[i] == pool && pool->slots) used += (size_t)(_pm_pool_used(pool) - pool->held) * pool->block_size;
        }
        pthread_mutex_unlock(&_pm_arena_lock);
        if (used == 0) die("an arena the run mapped survives the final trim with no block in use");
        pthread_mutex_lock(&_pm_arena_lock);
        bytes += used;
        n++;
    }
    pthread_mutex_unlock(&_pm_arena_lock);
    if ((long)bytes > in_use_delta)
        die("arenas the run mapped survive the final trim holding %zu bytes in use, but only %ld bytes more are "
            "in use than at the start", bytes, in_use_delta);
    return n;
}

static void child(void *arg) {
    res = arg;
    _pm_options.purge_delay = 60000;       /* nothing decays on its own: the calls are the same each run */
    malloc_trim(0);
    pm_stats_snapshot_t s0, s1, s2;
    _pm_stats_snapshot(&s0);
    res->mapped_before = _pm_os_mapped(NULL);
    devnull = open("/dev/null", O_WRONLY);
    if (devnull < 0) die("/dev/null: %s", strerror(errno));
    res->arenas_before = s0.arenas;
    res->meta_before = res->mapped_before - s0.mapped;
    note_arenas();
    long start = _pm_os_fail_map_at(0);
    run_start = start;
    target = res->n ? start + res->n : 0;
    if (res->n) _pm_os_fail_map_at(res->n);
    run();
    long end = _pm_os_fail_map_at(0);      /* disarmed from here on */
    res->calls = end - start;
    if (target && end >= target && !res->consumed) die("the failed mapping call was made outside every operation of the run");
    target = 0;

    check_sound("after the run");
    _pm_stats_snapshot(&s1);
    check_balance(&s1, "after the run");
    size_t huge_n = 0, huge_bytes = 0, pooled_bytes = 0;
    for (int i = 0; i < nheld; i++) {
        if (held[i].p == NULL) continue;
        walk(&held[i], held[i].p, SIZE_MAX, VERIFY, "a block held at the end");
        if (held[i].size == 0) continue;
        if (is_pooled(held[i].size, held[i].align)) pooled_bytes += malloc_usable_size(held[i].p);
        else { huge_n++; huge_bytes += held[i].counted; }
    }
    if (s1.huge_count != s0.huge_count + huge_n || s1.huge_requested != s0.huge_requested + huge_bytes)
        die("the statistics count %zu huge blocks of %zu bytes more than at the start; the run holds %zu of %zu",
            s1.huge_count - s0.huge_count, s1.huge_requested - s0.huge_requested, huge_n, huge_bytes);
    if (s1.in_use < s0.in_use + pooled_bytes)
        die("the statistics count %zu bytes in use more than at the start; the run holds %zu in pools",
            s1.in_use - s0.in_use, pooled_bytes);
    while (nheld) free_block(pick());
    malloc_trim(0);
    check_sound("after everything was freed and trimmed");
    _pm_stats_snapshot(&s2);
    check_balance(&s2, "after everything was freed and trimmed");
    if (s2.huge_count != s0.huge_count || s2.huge_cached != 0)
        die("after the final trim: %zu huge blocks (%zu at the start), %zu bytes cached", s2.huge_count,
            s0.huge_count, s2.huge_cached);
    res->in_use_delta = (long)s2.in_use - (long)s0.in_use;
    res->pinned_arenas = pinned_arenas(res->in_use_delta);
    res->arenas_after = s2.arenas;
    res->mapped_after = _pm_os_mapped(NULL);
    res->meta_after = res->mapped_after - s2.mapped;
    res->ok = 1;
}

/* The children: forked with stderr into a pipe, two at a time (each from the same parent state,
 * which nothing changes between forks: spawn and reap call no allocator function). */
typedef struct {
    pid_t  pid;
    int    fd;
    result_t *r;
} kid_t;

static void spawn(kid_t *k, result_t *r, long n, long op_k) {
    memset(r, 0, sizeof *r);
    r->n = n;
    r->op_k = op_k;
    k->r = r;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    k->pid = fork();
    cr_assert_neq(k->pid, -1);
    if (k->pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        child(r);
        _exit(0);
    }
    close(fds[1]);
    k->fd = fds[0];
}

/* Wait for the child; false (and `why` says what happened) unless it exited 0 with every check held. */
static bool reap(kid_t *k, char *why, size_t cap) {
    char msg[1024], rest[4096];
    size_t len = 0;
    ssize_t got;
    while ((got = len + 1 < sizeof msg ? read(k->fd, msg + len, sizeof msg - 1 - len) : read(k->fd, rest, sizeof rest)) > 0)
        if (len + 1 < sizeof msg) len += (size_t)got;
    msg[len] = 0;
    close(k->fd);
    int status;
    waitpid(k->pid, &status, 0);
    const result_t *r = k->r;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && r->ok) return true;
    if (WIFSIGNALED(status))
        snprintf(why, cap, "%s=%ld: the child died of signal %d (%s) in or after \"%s\"; stderr: %s",
                 r->op_k ? "operation" : "N", r->op_k ? r->op_k : r->n, WTERMSIG(status), strsignal(WTERMSIG(status)),
                 r->op, msg);
    else
        snprintf(why, cap, "%s=%ld: the child exited with %d; stderr: %s", r->op_k ? "operation" : "N",
                 r->op_k ? r->op_k : r->n, WIFEXITED(status) ? WEXITSTATUS(status) : -1, msg);
    return false;
}

/* What legitimately stays mapped after everything is freed and trimmed, which the clean run
 * measures:
 *   - metadata, mapped outside arenas and huge blocks: heap structs (64 KiB slabs, never
 *     unmapped; 10 more heaps than at the start need a second slab), the sampler's tables (its
 *     live table, site array and site index, never shrunk), the sample bitmaps' 64 KiB slab, the
 *     huge registry: under 1 MiB (about 300 KiB here). And the run's first malloc(0) reserves a
 *     zero arena (zero.c: 4 MiB of PROT_NONE address space, 48 KiB of it a header), never
 *     unmapped by design.
 *   - arenas pinned by blocks in use that are not the run's: the trim unmaps every wholly free
 *     arena, but glibc's pthread_create callocs each new thread's DTV (336 B here) and keeps it
 *     with the thread's cached stack, so the 10 workers and the purge thread leave 11 blocks in
 *     use; where they land depends on what the run did before, and an arena the run mapped may
 *     stay for them. The child checks that each such arena holds blocks in use, and that they add
 *     up to no more than the bytes in use above the start (pinned_arenas).
 * A failed run makes the same structures, no bigger: each grows to the peak of what it holds, and
 * a failed run holds no more than the clean run at any point (a failed allocation keeps its
 * place, so the run goes on as the clean run does); it leaves at most as many bytes in use
 * (fewer if a pthread_create failed). So its bounds are the clean run's: bytes in use at most
 * the clean run's; metadata at most the clean run's plus 64 KiB, for one slab that a failure
 * left part used and a later request replaced, or one doubling of a table (the huge registry, or
 * the sampler's live table, 64 KiB here) where a failed realloc kept a block that the clean run
 * moved to another kind (a huge block it shrank into a pool); arenas and mapped bytes at most
 * the clean run's plus the arenas pinned beyond the clean run's. */
#define MAPPED_SLACK ((size_t)64 << 10)
#define METADATA_MAX (((size_t)1 << 20) + PM_ARENA_SIZE)

/* A failed run left no more than the clean run did: NULL, or what it left. */
static const char *leftover(const result_t *r, const result_t *clean, char *why, size_t cap) {
    size_t pinned_more = r->pinned_arenas > clean->pinned_arenas ? r->pinned_arenas - clean->pinned_arenas : 0;
    if (r->in_use_delta <= clean->in_use_delta && r->meta_after <= clean->meta_after + MAPPED_SLACK &&
        r->arenas_after <= clean->arenas_after + pinned_more &&
        r->mapped_after <= clean->mapped_after + MAPPED_SLACK + pinned_more * PM_ARENA_SIZE)
        return NULL;
    snprintf(why, cap, "%s=%ld (%s): after everything was freed and trimmed, %+ld bytes mapped, %+ld bytes of "
             "metadata, %zu -> %zu arenas (%zu of them pinned by others' blocks), %+ld bytes in use; the clean run: "
             "%+ld, %+ld, %zu -> %zu (%zu), %+ld", r->op_k ? "operation" : "N", r->op_k ? r->op_k : r->n, r->op, (long)(r->mapped_after - r->mapped_before),
             (long)(r->meta_after - r->meta_before), r->arenas_before, r->arenas_after, r->pinned_arenas,
             r->in_use_delta, (long)(clean->mapped_after - clean->mapped_before),
             (long)(clean->meta_after - clean->meta_before), clean->arenas_before, clean->arenas_after,
             clean->pinned_arenas, clean->in_use_delta);
    return why;
}

/* The operations where a failed mapping call may be absorbed (see the top of the file). */
static bool may_absorb(const char *op) {
    return strstr(op, "(sampled)") || (strncmp(op, "realloc huge", 12) == 0 && strstr(op, "-> huge")) ||
           strncmp(op, "pm_report", 9) == 0;
}

/* ---- the parent: children two at a time, and what they found ---- */
typedef struct {
    const char *name;
    long tried, visible, absorbed, missed, bad, pinned, first_bad;
    size_t worst_meta;
    char first_why[2048];
    struct { char op[96]; long count, first; } kinds[64];
    int nkinds;
} sweep_t;

static result_t *results(void) {
    result_t *rs = mmap(NULL, 2 * sizeof *rs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(rs, MAP_FAILED);
    return rs;
}

/* Two clean runs at once: the mapping calls must depend on nothing but the state the child
 * starts from. The first's result goes to *clean. */
static void clean_runs(result_t *rs, result_t *clean) {
    static char why[2][2048];
    kid_t kids[2];
    spawn(&kids[0], &rs[0], 0, 0);
    spawn(&kids[1], &rs[1], 0, 0);
    bool ok0 = reap(&kids[0], why[0], sizeof why[0]), ok1 = reap(&kids[1], why[1], sizeof why[1]);
    cr_assert(ok0, "the clean run: %s", why[0]);
    cr_assert(ok1, "the second clean run: %s", why[1]);
    *clean = rs[0];
    cr_assert_eq(clean->nfailed, 0);
    cr_assert_eq(rs[1].calls, clean->calls, "two clean runs made %ld and %ld mapping calls", clean->calls, rs[1].calls);
    cr_assert_eq(rs[1].mapped_after, clean->mapped_after, "two clean runs left %zu and %zu bytes mapped",
                 clean->mapped_after, rs[1].mapped_after);
    cr_assert_gt(clean->calls, 20, "the run maps: %ld calls", clean->calls);
    cr_assert_gt(clean->huge_peak, 64, "the huge registry outgrows its first table (64 entries at half load): "
                 "%zu huge blocks live", clean->huge_peak);
    cr_assert_leq(clean->meta_after, clean->meta_before + METADATA_MAX,
                  "a clean run leaves %zu bytes of metadata mapped after it freed everything and trimmed",
                  clean->meta_after - clean->meta_before);
    cr_assert_leq(clean->arenas_after, clean->arenas_before + clean->pinned_arenas,
                  "a clean run leaves %zu arenas (%zu at the start, %zu pinned by others' blocks)",
                  clean->arenas_after, clean->arenas_before, clean->pinned_arenas);
}

/* One child per x (a call number N, or with by_op an operation's number), two at a time. */
static void sweep(sweep_t *t, const long *xs, size_t nx, bool by_op, const result_t *clean, result_t *rs) {
    static char why[2][2048];
    kid_t kids[2];
    for (size_t i = 0; i < nx; i += 2) {
        size_t m = i + 1 < nx ? 2 : 1;
        for (size_t j = 0; j < m; j++) spawn(&kids[j], &rs[j], by_op ? 0 : xs[i + j], by_op ? xs[i + j] : 0);
        bool ok[2];
        for (size_t j = 0; j < m; j++) ok[j] = reap(&kids[j], why[j], sizeof why[j]);
        for (size_t j = 0; j < m; j++) {
            const result_t *r = &rs[j];
            long x = xs[i + j];
            t->tried++;
            if (ok[j] && leftover(r, clean, why[j], sizeof why[j]) != NULL) ok[j] = false;
            if (ok[j] && r->consumed && !r->visible && !may_absorb(r->op)) {
                snprintf(why[j], sizeof why[j], "%s=%ld: \"%s\" made the failed mapping call and succeeded: neither a "
                         "huge realloc (whose mremap may fail: it copies), a sampled allocation (the sampler drops "
                         "the sample) nor a report (it prints an address raw)", by_op ? "operation" : "N", x, r->op);
                ok[j] = false;
            }
            if (!ok[j]) {
                if (t->bad++ == 0) { t->first_bad = x; memcpy(t->first_why, why[j], sizeof t->first_why); }
                fprintf(stderr, "%s: %s\n", t->name, why[j]);
                continue;
            }
            if (r->meta_after > clean->meta_after && r->meta_after - clean->meta_after > t->worst_meta)
                t->worst_meta = r->meta_after - clean->meta_after;
            if (r->pinned_arenas > clean->pinned_arenas) t->pinned++;
            if (getenv("PM_FAULTS_VERBOSE"))
                fprintf(stderr, "%s: %s=%ld %s in \"%s\" (metadata %+ld bytes from the clean run's)\n", t->name,
                        by_op ? "operation" : "N", x, !r->consumed ? "past the run" : r->visible ? "visible" : "absorbed",
                        r->op, (long)r->meta_after - (long)clean->meta_after);
            if (!r->consumed) { t->missed++; continue; }
            if (r->visible) { t->visible++; continue; }
            t->absorbed++;
            int k = 0;
            while (k < t->nkinds && strcmp(t->kinds[k].op, r->op) != 0) k++;
            if (k == t->nkinds && t->nkinds < 64) { memcpy(t->kinds[k].op, r->op, sizeof r->op); t->kinds[t->nkinds++].first = x; }
            if (k < 64) t->kinds[k].count++;
        }
    }
}

static void print_sweep(const sweep_t *t, const result_t *clean, const char *what, double secs) {
    fprintf(stderr, "%s: the clean run made %ld mapping calls in %d operations (%zu huge blocks live at most) and "
            "leaves %+ld bytes of metadata, %zu arenas pinned by others' blocks, %+ld bytes in use; %ld %s tried: %ld "
            "failed visibly, %ld absorbed, "
            "%ld past the run, %ld broke a check; %ld left an arena more pinned, at most %zu bytes more metadata "
            "than the clean run; %.1f s\n", t->name, clean->calls, clean->nmops, clean->huge_peak,
            (long)(clean->meta_after - clean->meta_before), clean->pinned_arenas, clean->in_use_delta, t->tried, what,
            t->visible, t->absorbed, t->missed, t->bad, t->pinned, t->worst_meta, secs);
    for (int k = 0; k < t->nkinds; k++)
        fprintf(stderr, "%s:   absorbed %ld x in \"%s\" (first %ld)\n", t->name, t->kinds[k].count, t->kinds[k].op,
                t->kinds[k].first);
}

static double since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) * 1e-9;
}

enum { EVERY_N_UP_TO = 200, MAX_TRIES = 400, MAX_NS = MAX_TRIES + EVERY_N_UP_TO + 8 };

/* The test: fail the N-th mapping call, once, for every N. */
Test(faults, every_failed_mapping_of_a_realistic_run_gives_enomem_and_leaves_a_sound_heap, .timeout = 300) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    result_t *rs = results();
    static result_t clean;
    clean_runs(rs, &clean);
    long C = clean.calls;

    /* Every N from 1 to C; if C were above MAX_TRIES, every N up to EVERY_N_UP_TO and then a
     * stride that keeps the tries near MAX_TRIES (and the last call). C + 1 lies past the run:
     * nothing may fail there. */
    static long ns[MAX_NS];
    size_t nns = 0;
    long stride = C <= MAX_TRIES ? 1 : (C - EVERY_N_UP_TO) / (MAX_TRIES - EVERY_N_UP_TO) + 1;
    const char *only = getenv("PM_FAULTS_ONLY");
    for (long n = 1; n <= C + 1 && nns < MAX_NS; n = stride == 1 || n < EVERY_N_UP_TO || n == C ? n + 1 : n + stride > C ? C : n + stride)
        if (!only || n == atol(only)) ns[nns++] = n;
    if (only && nns == 0) ns[nns++] = atol(only);

    static sweep_t t = { .name = "faults" };
    sweep(&t, ns, nns, false, &clean, rs);
    print_sweep(&t, &clean, "N", since(&t0));
    cr_assert_eq(t.bad, 0, "%ld of %ld N broke a check; the first, N=%ld: %s", t.bad, t.tried, t.first_bad, t.first_why);
    if (!only) {
        cr_assert_eq(t.missed, 1, "only N = C + 1 lies past the run (%ld did)", t.missed);
        cr_assert_geq(t.visible * 4, (t.tried - t.missed) * 3, "a failure is visible for most N: %ld of %ld", t.visible,
                      t.tried - t.missed);
    }
    munmap(rs, 2 * sizeof *rs);
}

/* Memory stays short for a while: every mapping call of one operation fails (an mremap and
 * the copy that would replace it, both tries of an aligned mapping, a reservation and its
 * mprotect, the sampler's tables and the pool they sample). Each operation of the clean run
 * that made two mapping calls or more, or reallocated, or wrote a report. */
Test(faults, an_operation_whose_every_mapping_fails_gives_enomem_and_leaves_a_sound_heap, .timeout = 300) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    result_t *rs = results();
    static result_t clean;
    clean_runs(rs, &clean);
    cr_assert_lt(clean.nmops, MAX_MOPS, "more mapping operations than recorded");
    static long ks[MAX_MOPS];
    size_t nks = 0;
    const char *only = getenv("PM_FAULTS_ONLY_OP");
    for (int i = 0; i < clean.nmops; i++) {
        const mop_t *m = &clean.mops[i];
        bool pick = m->calls >= 2 || strncmp(m->label, "realloc", 7) == 0 || strncmp(m->label, "pm_report", 9) == 0;
        if (only ? m->seq == atol(only) : pick) ks[nks++] = m->seq;
    }
    cr_assert_gt(nks, 10, "operations to fail: %zu", nks);

    static sweep_t t = { .name = "faults (whole operations)" };
    sweep(&t, ks, nks, true, &clean, rs);
    print_sweep(&t, &clean, "operations", since(&t0));
    cr_assert_eq(t.bad, 0, "%ld of %ld operations broke a check; the first, operation %ld: %s", t.bad, t.tried,
                 t.first_bad, t.first_why);
    cr_assert_eq(t.missed, 0, "every operation picked made mapping calls (%ld did not)", t.missed);
    cr_assert_geq(t.visible * 2, t.tried, "a failure is visible for most operations: %ld of %ld", t.visible, t.tried);
    munmap(rs, 2 * sizeof *rs);
}
