/* sample.c: allocation-site sampling, by bytes, the way tcmalloc and jemalloc do it.
 *
 * Each heap counts down the bytes until the next sample point (its pm_sample_point_t, the heap's
 * hook in heap.h); the malloc fast path pays one subtraction and one branch for it. This file
 * registers the hook's functions (arm, record, forget) when the rate is first set. Distances between sample points are exponential
 * with mean `rate` (POOLMALLOC_CONF sample:), so sample points form a Poisson process over the
 * bytes allocated. An allocation of s bytes contains one with probability p = 1 - exp(-s/rate);
 * it is then sampled once, with weight 1/p, and s/p is an unbiased estimate of the bytes it
 * stands for (count 1/p). Summed per site, the estimates converge on the true bytes.
 *
 * Guard points (POOLMALLOC_CONF guard:N) share the countdown: arm says which allocations go to a
 * guarded slot (heap/guard.c), and `stack` captures the stacks those slots keep. See arm.
 *
 * A sampled allocation captures its stack with libunwind's unw_backtrace (about 100 ns; never an
 * unw_step loop), after the frames of an interpreter that registered a source (frames.c), before
 * taking the sampler's lock, since libunwind and dl_iterate_phdr take the
 * loader's lock and may allocate. The sample point's `busy` stops the sampler from recursing into itself.
 *
 * Tables, under one lock (sampled events are rare: one per `rate` bytes):
 *   live        sampled blocks still allocated: address -> site, size, weight (util/table.c).
 *   sites       one per distinct stack: live and total counts and bytes, raw and estimated; an
 *               array, indexed by site number.
 *   site_index  stack key -> site number (util/table.c). The key is _pm_hash chained over the
 *               frames, so two stacks may share one: the index holds one entry per site, repeated
 *               keys included, and a lookup compares the frames of each entry with the key.
 * _pm_sample_check names the first of their invariants that fails.
 * A freed block is found in `live` only if it was sampled: the pool's sample bitmap (pool.c)
 * or the huge registry says so, so frees of ordinary blocks never touch this lock.
 * Memory for the tables comes straight from os.c, never from malloc.
 */
#define _GNU_SOURCE
#include "lens/lens.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <string.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

static _Atomic size_t sample_rate;
static _Atomic size_t guard_every;          /* guard:N, one allocation in N guarded; 0 off */
/* The reciprocal of the mean request size, estimated at the countdown's points (see arm): the
 * guard points' rate in bytes is this over N. The prior, 64 bytes, counts for the first few dozen
 * points only. */
static _Atomic double mean_inverse = 1.0 / 64;
#define MEAN_WEIGHT (1.0 / 32)               /* each point's weight in the running estimate */
/* At most guard_rate guarded allocations a second (500 by default; guard:1 excepted), however
 * fast the program allocates: a guarded malloc and free cost 3 us (two mprotect calls,
 * bench/fastpath) to 15 us (bench/larson: four threads, whose page faults wait for each
 * mprotect), so the cap bounds guarding to under 1% of a core. Below it, guard:N alone sets the
 * rate. A point past the cap is not guarded, like one that finds every slot live. The cap is a
 * generic cell rate (GCRA): up to GUARD_BURST at once after a quiet spell, then one a spacing. */
#define GUARD_BURST 64
static _Atomic uint64_t guard_spacing_ns = 2000000;   /* 1e9 / guard_rate; 0: no cap */
static _Atomic uint64_t guard_next_ns;      /* when the next guarded allocation is due */

typedef struct {
    uintptr_t addr;          /* 0: empty */
    uint32_t  site;
    uint32_t  _pad;
    uint64_t  size;
    double    weight;        /* 1/p */
} live_t;

typedef struct { uintptr_t key; uint32_t site; uint32_t _pad; } site_slot_t;   /* key: stack_key */

static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *check_locked(void);

/* Every change to the tables ends here: PM_DEBUG=2 checks them as the lock goes. */
static void sample_unlock(void) {
    PM_DEBUG_CHECK(2, "the sampler's tables as the lock is released", check_locked());
    pthread_mutex_unlock(&sample_lock);
}
static pm_table_t live = PM_TABLE_INIT(live_t);
static pm_site_t *sites;
static size_t nsites, sites_cap;
static pm_table_t site_index = PM_TABLE_INIT(site_slot_t);
static size_t dropped;                     /* samples lost for want of memory */

#define MAX_SITES ((size_t)1 << 20)

/* ---- the rate and the countdown ---- */

size_t _pm_sample_rate(void) { return atomic_load_explicit(&sample_rate, memory_order_relaxed); }

size_t _pm_sample_guard(void) { return atomic_load_explicit(&guard_every, memory_order_relaxed); }
double _pm_sample_mean_size(void) { return 1.0 / atomic_load_explicit(&mean_inverse, memory_order_relaxed); }

static unsigned arm(pm_sample_point_t *sp, size_t size);
static void record(pm_sample_point_t *sp, void *p, size_t size, void *ra);
static void forget(void *p);
static unsigned stack(void **frames, unsigned max, void *ra);
static bool describe(const void *p, pm_out_t *o);
static const pm_sampler_t sampler = { arm, record, forget, stack, describe };   /* the heap's hook (heap.h) */

/* The last sampled blocks freed, so that an error found after the free (a double free, a write
 * after free) can still name where the block was allocated. Under sample_lock. */
#define FREED_RING 64
static struct { uintptr_t addr; uint64_t size; uint32_t site; } freed[FREED_RING];
static unsigned freed_next;

void _pm_sample_set_rate(size_t rate) {
    atomic_store(&sample_rate, rate);
    _pm_heap_set_sampler(&sampler);        /* and every heap re-arms with the new rate */
}

void _pm_sample_set_guard(size_t every) {
    atomic_store(&guard_every, every);
    _pm_heap_set_sampler(&sampler);
}

void _pm_sample_set_guard_cap(uint64_t per_second) {
    atomic_store(&guard_spacing_ns, per_second ? 1000000000ull / per_second : 0);
}

/* May a guard point guard its allocation now, within guard_rate? */
static bool guard_allowed(void) {
    uint64_t spacing = atomic_load_explicit(&guard_spacing_ns, memory_order_relaxed);
    if (spacing == 0) return true;
    uint64_t now = _pm_os_now_ns(), due = atomic_load_explicit(&guard_next_ns, memory_order_relaxed);
    for (;;) {
        uint64_t start = due > now ? due : now;
        if (start - now > (GUARD_BURST - 1) * spacing) return false;
        if (atomic_compare_exchange_weak_explicit(&guard_next_ns, &due, start + spacing, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
}

static uint64_t next_random(pm_sample_point_t *sp) {
    uint64_t x = sp->rng;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return sp->rng = x;
}

/* An exponential distance with mean `mean` bytes, at least 1. */
static int64_t draw(pm_sample_point_t *sp, double mean) {
    double u = ((double)(next_random(sp) >> 11) + 1.0) * 0x1.0p-53;    /* (0, 1] */
    double d = -log(u) * mean;
    return d < 1.0 ? 1 : d > 0x1.0p62 ? INT64_MAX / 2 : (int64_t)d;
}

/* Is there a point of a Poisson process of `lambda` points per byte in `bytes` bytes? */
static bool point_within(pm_sample_point_t *sp, double bytes, double lambda) {
    if (!(bytes > 0 && lambda > 0)) return false;
    return ((double)(next_random(sp) >> 11) + 1.0) * 0x1.0p-53 <= -expm1(-bytes * lambda);
}

double _pm_sample_weight(size_t size, size_t rate) {
    if (rate <= 1) return 1.0;
    double p = -expm1(-(double)(size ? size : 1) / (double)rate);
    return p > 0 ? 1.0 / p : 1.0;
}

/* guard:1, every allocation: the countdown stays at 0, so that each one comes here, and sampling
 * becomes a coin per allocation with the same probability (points in disjoint byte ranges of a
 * Poisson process are independent). A sampled allocation is not guarded (see arm). */
static unsigned arm_every(pm_sample_point_t *sp, size_t size, size_t rate, uint32_t epoch) {
    sp->epoch = epoch;
    sp->left = 0;
    sp->guard_due = false;
    if (sp->busy) return 0;
    bool sample = rate == 1 || (rate > 1 && point_within(sp, (double)size, 1.0 / (double)rate));
    return sample ? PM_ARM_SAMPLE : PM_ARM_GUARD;
}

/* The countdown ran out (or the epoch moved): redraw it, and say what to do with this allocation.
 *
 * Two Poisson processes run over the bytes allocated: sample points (`sample` bytes apart on
 * average) and guard points (N times the mean request size apart, so about one allocation in N
 * holds one). One countdown serves both, because the two together are one Poisson process whose
 * rate is the sum, and each of its points is, independently, a sample point with probability
 * (sample rate / sum), else a guard point. So at each point we draw its kind, and the rest of
 * the allocation after it may hold a point of the other kind too; that keeps the chance that an
 * allocation is sampled exactly what it was without guarding, which the sample weights rely on,
 * and needs nothing in the sample point but its countdown (the fast path is untouched; two
 * countdowns and their minimum would need more fields in the heap). With guard off, this is the
 * plain byte sampler, draw for draw.
 *
 * The mean request size is not known (the fast path counts bytes only), so it is estimated here:
 * the allocations that hold a point are picked in proportion to their size (size-biased), and
 * the mean of 1/size over such picks is exactly 1/(mean size) over all allocations. The guard rate
 * is linear in that estimate, so its noise averages out: in the long run one allocation in N holds
 * a guard point. That also makes the choice size-biased, as tcmalloc's: a 1 KiB request is 16
 * times likelier to be guarded than a 64-byte one. An allocation that both kinds hit is sampled,
 * and the next allocation is guarded instead (guard_due), so that the profile keeps every sample. */
static unsigned arm_points(pm_sample_point_t *sp, size_t size) {
    uint32_t epoch = atomic_load_explicit(&_pm_sample_epoch, memory_order_relaxed);
    size_t rate = _pm_sample_rate(), every = _pm_sample_guard();
    if (every == 1) return arm_every(sp, size, rate, epoch);
    double sample_lambda = rate ? 1.0 / (double)rate : 0.0;
    double guard_lambda = every ? atomic_load_explicit(&mean_inverse, memory_order_relaxed) / (double)every : 0.0;
    double lambda = sample_lambda + guard_lambda;
    double mean = guard_lambda == 0 ? (double)rate : 1.0 / lambda;   /* with guard off: `rate`, exactly */
    if (sp->guard_due) {                         /* not a point: the guard owed by a sampled one */
        sp->epoch = epoch;
        if (every == 0) {                        /* guard went off meanwhile */
            sp->guard_due = false;
            sp->left = lambda > 0 ? draw(sp, mean) : PM_SAMPLE_IDLE;
            return 0;
        }
        if (sp->busy) { sp->left = 0; return 0; }
        bool sample = point_within(sp, (double)size, sample_lambda);
        sp->left = draw(sp, mean);
        if (sample) return PM_ARM_SAMPLE;        /* still owed: the next one */
        sp->guard_due = false;
        return guard_allowed() ? PM_ARM_GUARD : 0;
    }
    int64_t left = sp->left;                     /* minus the bytes past the point */
    if (sp->epoch != epoch) {                    /* a new rate: count from a fresh draw */
        sp->epoch = epoch;
        left = (lambda > 0 ? draw(sp, mean) : PM_SAMPLE_IDLE) - (int64_t)size;
        if (left >= 0 || lambda == 0) { sp->left = lambda > 0 ? left : PM_SAMPLE_IDLE; return 0; }
    }
    if (lambda == 0) { sp->left = PM_SAMPLE_IDLE; return 0; }
    unsigned what = PM_ARM_SAMPLE;
    if (guard_lambda > 0) {
        double x = atomic_load_explicit(&mean_inverse, memory_order_relaxed);   /* lost updates: harmless */
        x += (1.0 / (double)(size ? size : 1) - x) * MEAN_WEIGHT;
        atomic_store_explicit(&mean_inverse, x, memory_order_relaxed);
        double rest = (double)size;               /* the allocation's bytes after the point */
        if (-(double)left < rest) rest = -(double)left;
        bool first_sample = sample_lambda > 0 &&
                            ((double)(next_random(sp) >> 11) + 1.0) * 0x1.0p-53 * lambda <= sample_lambda;
        bool sample = first_sample || point_within(sp, rest, sample_lambda);
        bool guard = !first_sample || point_within(sp, rest, guard_lambda);
        what = (sample ? PM_ARM_SAMPLE : 0) | (guard ? PM_ARM_GUARD : 0);
    }
    /* The distance from the end of this allocation to the next point is exponential whatever
     * happened inside it (the process is memoryless): draw it once, rather than step through every
     * point of a huge request (malloc(SIZE_MAX) would spin). */
    sp->left = draw(sp, mean);
    if (sp->busy) return 0;
    if (what == (PM_ARM_SAMPLE | PM_ARM_GUARD)) {
        sp->guard_due = true;
        sp->left = 0;                            /* the next allocation comes back for its guard */
        return PM_ARM_SAMPLE;
    }
    if (what == PM_ARM_GUARD && !guard_allowed()) return 0;
    return what;
}

/* The fault handler goes in before the first guarded block, not at start-up: a runtime that sets
 * up its own SIGSEGV handling only where it finds none (Rust's stack-overflow handler) still
 * does, and we chain to it. */
static unsigned arm(pm_sample_point_t *sp, size_t size) {
    unsigned what = arm_points(sp, size);
    if (what & PM_ARM_GUARD) _pm_guard_report_start();
    return what;
}

/* ---- stacks ---- */

static uintptr_t own_text[4][2];            /* our executable segments, when we are a shared object */
static _Atomic int own_text_known;

static int find_own_text(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    const char *name = arg;
    if (info->dlpi_name == NULL || strcmp(info->dlpi_name, name) != 0) return 0;
    unsigned n = 0;
    for (int i = 0; i < info->dlpi_phnum && n < 4; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        own_text[n][0] = info->dlpi_addr + ph->p_vaddr;
        own_text[n][1] = own_text[n][0] + ph->p_memsz;
        n++;
    }
    return 1;
}

static bool in_own_text(uintptr_t ip) {
    for (unsigned i = 0; i < 4; i++) if (ip >= own_text[i][0] && ip < own_text[i][1]) return true;
    return false;
}

/* The stack of the allocation, innermost first, without our own frames: at most `max`. */
static unsigned capture(void **frames, unsigned max, void *ra) {
    if (!atomic_load_explicit(&own_text_known, memory_order_acquire)) {
        Dl_info info;
        if (dladdr((void *)capture, &info) && info.dli_fname && info.dli_fname[0])
            dl_iterate_phdr(find_own_text, (void *)info.dli_fname);   /* finds nothing when static */
        atomic_store_explicit(&own_text_known, 1, memory_order_release);
    }
    void *raw[PM_MAX_FRAMES + 8];
    int n = unw_backtrace(raw, PM_MAX_FRAMES + 8);
    int start = 0;
    while (start < n && in_own_text((uintptr_t)raw[start])) start++;
    for (int i = 0; i < n && i < 16; i++)                /* cut exactly at the program's call */
        if (raw[i] == ra) { start = i; break; }
    /* ra is our own code when a wrapper built on the library called it (the CPython module's
     * allocator functions): the program's frames start past it */
    while (start < n && in_own_text((uintptr_t)raw[start])) start++;
    unsigned m = 0;
    for (int i = start; i < n && m < max && m < PM_MAX_FRAMES; i++) frames[m++] = raw[i];
    return m;
}

/* The hook's `stack`, for guarded slots (heap/guard.c): the stack of a malloc (from ra) or a free. */
static unsigned stack(void **frames, unsigned max, void *ra) { return capture(frames, max, ra); }

/* The index key of a stack: the table's hash chained over the frames (nonzero: 0 is no key). */
static uintptr_t stack_key(void *const *frames, unsigned n) {
    uint64_t h = n;
    for (unsigned i = 0; i < n; i++) h = _pm_hash(h ^ (uint64_t)(uintptr_t)frames[i]);
    return h ? (uintptr_t)h : 1;
}

/* ---- tables (caller holds sample_lock) ---- */

/* The sites array (a plain array, indexed by site number) doubles into a fresh mapping. */
static bool grow_mapping(void **table, size_t *cap, size_t elem, size_t min_cap) {
    size_t ncap = *cap ? *cap * 2 : min_cap;
    void *t = _pm_os_map(ncap * elem);
    if (t == NULL) return false;
    if (*table) {
        memcpy(t, *table, *cap * elem);
        _pm_os_unmap(*table, *cap * elem);
    }
    *table = t;
    *cap = ncap;
    return true;
}

static bool same_stack(const pm_site_t *s, void *const *frames, unsigned n) {
    return s->nframes == n && memcmp(s->frames, frames, n * sizeof *frames) == 0;
}

/* The site of this stack, made if it is new; -1 when out of memory or sites. Entries with the
 * same key are other stacks that share it: probe on past them. */
static long site_of(void *const *frames, unsigned n) {
    uintptr_t key = stack_key(frames, n);
    for (const site_slot_t *e = _pm_table_find(&site_index, key); e; e = _pm_table_find_next(&site_index, e))
        if (same_stack(&sites[e->site], frames, n)) return e->site;
    if (nsites >= MAX_SITES) return -1;
    if (nsites == sites_cap && !grow_mapping((void **)&sites, &sites_cap, sizeof *sites, 256)) return -1;
    site_slot_t *e = _pm_table_insert(&site_index, key);
    if (e == NULL) return -1;
    e->site = (uint32_t)nsites;
    pm_site_t *s = &sites[nsites];
    memset(s, 0, sizeof *s);
    s->nframes = n;
    memcpy(s->frames, frames, n * sizeof *frames);
    return (long)nsites++;
}

/* ---- recording ---- */

static void record(pm_sample_point_t *sp, void *p, size_t size, void *ra) {
    if (sp->busy) return;
    sp->busy = true;
    void *frames[PM_MAX_FRAMES];
    unsigned n = _pm_frames_capture(frames, PM_MAX_FOREIGN_FRAMES);   /* an interpreter's, first */
    n += capture(frames + n, PM_MAX_FRAMES - n, ra);
    double weight = _pm_sample_weight(size, _pm_sample_rate());
    bool ok = false;
    pthread_mutex_lock(&sample_lock);
    long site = site_of(frames, n);
    live_t *e = site >= 0 ? _pm_table_insert(&live, (uintptr_t)p) : NULL;
    if (e) {
        e->site = (uint32_t)site;
        e->size = size;
        e->weight = weight;
        pm_site_t *s = &sites[site];
        s->live_count++; s->live_bytes += size;
        s->live_est_count += weight; s->live_est_bytes += weight * (double)size;
        s->alloc_count++; s->alloc_bytes += size;
        s->alloc_est_count += weight; s->alloc_est_bytes += weight * (double)size;
        ok = true;
    } else {
        dropped++;
    }
    sample_unlock();
    if (ok) {
        if (_pm_is_arena_ptr(p)) {
            if (!_pm_pool_sample_mark(_pm_pool_of(p), p)) forget(p);
        } else {
            _pm_huge_set_sampled(p);
        }
        _pm_reporter_count((size_t)(weight * (double)size));
    }
    sp->busy = false;
}

static void forget(void *p) {
    pthread_mutex_lock(&sample_lock);
    live_t *e = _pm_table_find(&live, (uintptr_t)p);
    if (e) {
        freed[freed_next % FREED_RING].addr = e->addr;
        freed[freed_next % FREED_RING].size = e->size;
        freed[freed_next % FREED_RING].site = e->site;
        freed_next++;
        pm_site_t *s = &sites[e->site];
        s->live_count--; s->live_bytes -= e->size;
        s->live_est_count -= e->weight; s->live_est_bytes -= e->weight * (double)e->size;
        if (s->live_count == 0) { s->live_est_count = 0; s->live_est_bytes = 0; }   /* no float drift */
        _pm_table_erase(&live, e);
    }
    sample_unlock();
}

/* An error at p: the site of the sampled block that starts at p, live, or among the last freed
 * the newest one whose bytes p lies in. The process is about to abort, so the lock is only tried:
 * an error inside the sampler names no site. */
static bool describe(const void *p, pm_out_t *o) {
    void *frames[PM_MAX_FRAMES];
    unsigned n = 0;
    bool was_freed = false;
    if (pthread_mutex_trylock(&sample_lock) != 0) return false;
    const live_t *e = _pm_table_find(&live, (uintptr_t)p);
    long site = e ? (long)e->site : -1;
    for (unsigned i = 0; site < 0 && i < FREED_RING && i < freed_next; i++) {
        unsigned k = (freed_next - 1 - i) % FREED_RING;        /* the newest first */
        uintptr_t a = (uintptr_t)p;
        if (a >= freed[k].addr && a < freed[k].addr + (freed[k].size ? freed[k].size : 1)) { site = freed[k].site; was_freed = true; }
    }
    if (site >= 0)
        for (; n < sites[site].nframes && n < PM_MAX_FRAMES; n++) frames[n] = sites[site].frames[n];
    pthread_mutex_unlock(&sample_lock);
    if (n == 0) return false;
    _pm_out_printf(o, was_freed ? " (a sampled block, freed; allocated at " : " (a sampled block, allocated at ");
    _pm_report_stack(o, frames, n);
    _pm_out_printf(o, ")");
    return true;
}

/* The stack that allocated `block`, if it is a live sampled block: how many frames were copied. */
unsigned _pm_sample_stack_of(const void *block, void **frames, unsigned max) {
    unsigned n = 0;
    pthread_mutex_lock(&sample_lock);
    const live_t *e = _pm_table_find(&live, (uintptr_t)block);
    if (e) {
        const pm_site_t *s = &sites[e->site];
        for (n = 0; n < s->nframes && n < max; n++) frames[n] = s->frames[n];
    }
    sample_unlock();
    return n;
}

int _pm_sites_snapshot(pm_sites_t *out) {
    memset(out, 0, sizeof *out);
    out->rate = _pm_sample_rate();
    pthread_mutex_lock(&sample_lock);
    size_t n = nsites;
    pm_site_t *copy = n ? _pm_os_map(n * sizeof *copy) : NULL;
    if (copy) memcpy(copy, sites, n * sizeof *copy);
    sample_unlock();
    if (n && copy == NULL) return ENOMEM;
    out->sites = copy;
    out->nsites = out->cap = n;
    return 0;
}

void _pm_sites_free(pm_sites_t *s) {
    if (s->sites) _pm_os_unmap(s->sites, s->cap * sizeof *s->sites);
    s->sites = NULL;
    s->nsites = s->cap = 0;
}

/* ---- the invariants (_pm_sample_check; caller holds sample_lock) ---- */

/* One index entry per site, each under its own stack's key. */
static const char *check_index(void) {
    const char *why = _pm_table_check(&site_index);
    if (why) return why;
    if (site_index.count != nsites) return "sample: the site index does not have one entry per site";
    if (nsites > sites_cap || nsites > MAX_SITES) return "sample: more sites than the site table holds";
    size_t pos = 0;
    for (const site_slot_t *e; (e = _pm_table_next(&site_index, &pos)) != NULL;) {
        if (e->site >= nsites) return "sample: a site index entry names no site";
        const pm_site_t *st = &sites[e->site];
        if (st->nframes > PM_MAX_FRAMES || e->key != stack_key(st->frames, st->nframes))
            return "sample: a site is indexed under another stack's key";
    }
    return NULL;
}

typedef struct { uint64_t count, bytes; } tally_t;

/* The live table, counted per site, against the sites' live counts and bytes. The tally has a
 * mapping of its own; without one, only the totals are compared. */
static const char *check_live(void) {
    const char *why = _pm_table_check(&live);
    if (why) return why;
    size_t bytes = nsites * sizeof(tally_t), pos = 0;
    tally_t *tally = nsites ? _pm_os_map(bytes) : NULL;
    uint64_t total = 0;
    for (const live_t *e; (e = _pm_table_next(&live, &pos)) != NULL;) {
        if (e->site >= nsites) { why = "sample: a live block names no site"; break; }
        if (tally) { tally[e->site].count++; tally[e->site].bytes += e->size; }
    }
    for (size_t i = 0; i < nsites && why == NULL; i++) {
        total += sites[i].live_count;
        if (sites[i].live_count > sites[i].alloc_count) why = "sample: a site has more live blocks than it allocated";
        else if (tally && (tally[i].count != sites[i].live_count || tally[i].bytes != sites[i].live_bytes))
            why = "sample: a site's live count or bytes differ from its blocks in the live table";
    }
    if (why == NULL && total != live.count) why = "sample: the sites' live counts do not add up to the live table";
    if (tally) _pm_os_unmap(tally, bytes);
    return why;
}

static const char *check_locked(void) {
    const char *why = check_index();
    return why ? why : check_live();
}

const char *_pm_sample_check(void) {
    pthread_mutex_lock(&sample_lock);
    const char *why = check_locked();
    pthread_mutex_unlock(&sample_lock);
    return why;
}

void _pm_sample_fork_prepare(void) { pthread_mutex_lock(&sample_lock); }
void _pm_sample_fork_parent(void) { pthread_mutex_unlock(&sample_lock); }
void _pm_sample_fork_child(void) { pthread_mutex_init(&sample_lock, NULL); }
