/* The sampler: exact counts when every allocation is sampled, unbiased estimates at a real rate
 * (a statistical test with a fixed seed), and sampled blocks leaving the table however they die. */
#include "helpers.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>

static void sampling_at(size_t rate) {
    _pm_sample_set_rate(rate);
    pm_heap_t *heap = _pm_heap_get();
    heap->sample.rng = 0x853c49e6748fea9bull;            /* a fixed seed: the test is deterministic */
    heap->sample.left = -1;                        /* arm at the next allocation */
}

/* The site whose stack passes through fn: one of the noinline functions below. They sit in a
 * section of their own, each aligned to 256 bytes and shorter than that, with a guard after the
 * last, so a return address less than 256 bytes past one of them lies inside it. */
static const pm_site_t *site_through(const pm_sites_t *s, void *fn) {
    for (size_t i = 0; i < s->nsites; i++)
        for (unsigned f = 0; f < s->sites[i].nframes; f++) {
            uintptr_t ip = (uintptr_t)s->sites[i].frames[f];
            if (ip > (uintptr_t)fn && ip < (uintptr_t)fn + 256) return &s->sites[i];
        }
    return NULL;
}

#define SITE __attribute__((noinline, aligned(256), section(".text.pm_test_sites")))
SITE static void *alloc_at_site_a(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
SITE static void *alloc_at_site_b(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
SITE static void *calloc_at_site_c(size_t n) { void *p = calloc(1, n); __asm__ volatile("" ::: "memory"); return p; }
SITE void pm_test_sites_guard(void);
SITE void pm_test_sites_guard(void) { __asm__ volatile("" ::: "memory"); }

Test(sample, every_allocation_is_sampled_at_rate_1_with_exact_counts) {
    sampling_at(1);
    enum { N = 1000 };
    static void *blocks[N];
    size_t total = 0;
    for (int i = 0; i < N; i++) { blocks[i] = alloc_at_site_a(10 + (size_t)i); total += 10 + (size_t)i; }
    _pm_sample_set_rate(0);
    pm_sites_t s;
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    const pm_site_t *a = site_through(&s, (void *)alloc_at_site_a);
    cr_assert_not_null(a, "the site of alloc_at_site_a is in the table");
    cr_assert_eq(a->live_count, N);
    cr_assert_eq(a->live_bytes, total);
    cr_assert_eq(a->alloc_count, N);
    cr_assert_float_eq(a->live_est_bytes, (double)total, 0.5);
    _pm_sites_free(&s);
    for (int i = 0; i < N; i++) free(blocks[i]);
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    a = site_through(&s, (void *)alloc_at_site_a);
    cr_assert_eq(a->live_count, 0, "every freed block left the live table");
    cr_assert_eq(a->live_bytes, 0);
    cr_assert_eq(a->alloc_count, N, "allocation totals stay");
    _pm_sites_free(&s);
}

/* Site a holds na blocks of 48 bytes, site b nb of 24 KiB: each estimate within 10%. */
static const pm_site_t *assert_estimates(const pm_sites_t *s, size_t na, size_t nb) {
    const pm_site_t *sa = site_through(s, (void *)alloc_at_site_a), *sb = site_through(s, (void *)alloc_at_site_b);
    cr_assert(sa && sb);
    double ta = (double)na * 48, tb = (double)nb * (24 << 10);
    cr_assert(sa->live_est_bytes > 0.9 * ta && sa->live_est_bytes < 1.1 * ta, "site a: %.0f for %.0f", sa->live_est_bytes, ta);
    cr_assert(sb->live_est_bytes > 0.9 * tb && sb->live_est_bytes < 1.1 * tb, "site b: %.0f for %.0f", sb->live_est_bytes, tb);
    cr_assert(sa->live_est_count > 0.9 * (double)na && sa->live_est_count < 1.1 * (double)na, "site a count: %.0f", sa->live_est_count);
    return sa;
}

/* 32 MiB in 48-byte blocks at one site and 64 MiB in 24 KiB blocks at another, sampled 1 in
 * 64 KiB (about 500 and 1000 samples): each estimate within 10% of the truth, and half of it
 * after freeing every other block of the first site. */
Test(sample, estimates_are_unbiased_at_a_real_rate, .timeout = 60) {
    sampling_at(64 << 10);
    enum { NA = (32 << 20) / 48, NB = (64 << 20) / (24 << 10) };
    void **a = calloc(NA, sizeof *a), **b = calloc(NB, sizeof *b);
    for (int i = 0; i < NA; i++) a[i] = alloc_at_site_a(48);
    for (int i = 0; i < NB; i++) b[i] = alloc_at_site_b(24 << 10);
    pm_sites_t s;
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    const pm_site_t *sa = assert_estimates(&s, NA, NB);
    cr_assert_gt(sa->live_count, 300, "about 500 samples, got %llu", (unsigned long long)sa->live_count);
    _pm_sites_free(&s);
    for (int i = 0; i < NA; i += 2) free(a[i]);
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    sa = site_through(&s, (void *)alloc_at_site_a);
    cr_assert(sa->live_est_bytes > 0.4 * NA * 48.0 && sa->live_est_bytes < 0.6 * NA * 48.0, "half freed: %.0f of %.0f", sa->live_est_bytes, NA * 48.0);
    _pm_sites_free(&s);
    _pm_sample_set_rate(0);
    for (int i = 1; i < NA; i += 2) free(a[i]);
    for (int i = 0; i < NB; i++) free(b[i]);
    free(a); free(b);
}

static void *free_them(void *arg) {
    void **blocks = arg;
    for (int i = 0; i < 500; i++) free(blocks[i]);
    return NULL;
}

Test(sample, blocks_freed_by_another_thread_or_huge_or_reallocated_leave_the_table) {
    sampling_at(1);
    static void *blocks[500];
    for (int i = 0; i < 500; i++) blocks[i] = alloc_at_site_b(64);
    void *huge = calloc_at_site_c(3u << 20);
    void *moved = alloc_at_site_a(5u << 20);
    _pm_sample_set_rate(0);
    pthread_t t;
    pthread_create(&t, NULL, free_them, blocks);
    pthread_join(t, NULL);
    free(huge);
    moved = realloc(moved, 9u << 20);
    pm_sites_t s;
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    cr_assert_eq(site_through(&s, (void *)alloc_at_site_b)->live_count, 0, "remote frees forgot their samples");
    cr_assert_eq(site_through(&s, (void *)calloc_at_site_c)->live_count, 0, "a huge free forgot its sample");
    cr_assert_eq(site_through(&s, (void *)alloc_at_site_a)->live_count, 0, "a huge realloc forgot the old block");
    cr_assert_eq(site_through(&s, (void *)calloc_at_site_c)->alloc_bytes, 3u << 20);
    _pm_sites_free(&s);
    free(moved);
}

Test(sample, the_weight_is_one_over_the_sampling_probability) {
    cr_assert_float_eq(_pm_sample_weight(100, 1), 1.0, 1e-12);
    cr_assert_float_eq(_pm_sample_weight(512 << 10, 512 << 10), 1.0 / (1.0 - exp(-1.0)), 1e-9);
    cr_assert_float_eq(_pm_sample_weight(16, 512 << 10), (512 << 10) / 16.0, 1.0);
    cr_assert_float_eq(_pm_sample_weight(100u << 20, 512 << 10), 1.0, 1e-9);
}

Test(sample, the_countdown_never_samples_when_off) {
    _pm_sample_set_rate(0);
    pm_sites_t before, after;
    _pm_sites_snapshot(&before);
    for (int i = 0; i < 100000; i++) free(alloc_at_site_a(1000));
    _pm_sites_snapshot(&after);
    cr_assert_eq(after.nsites, before.nsites);
    _pm_sites_free(&before);
    _pm_sites_free(&after);
}

/* A huge request with sampling on draws the next distance once, rather than stepping through
 * size/rate sample points (malloc(SIZE_MAX) used to spin). */
Test(sample, impossible_sizes_fail_at_once_with_sampling_on, .timeout = 10) {
    sampling_at(1);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        cr_assert_null(malloc(SIZE_MAX - (size_t)i));
        cr_assert_eq(errno, ENOMEM);
    }
    void *p = NULL;
    cr_assert_eq(posix_memalign(&p, 64, (size_t)1 << 62), ENOMEM);
    _pm_sample_set_rate(0);
}

/* A stack of its own for each path: `depth` nested calls, each through path_a or path_b as the
 * next bit of `bits` says, then the allocation. 2^depth paths, 2^depth stacks. */
static void *path_b(unsigned bits, unsigned depth, size_t n);
static __attribute__((noinline)) void *path_a(unsigned bits, unsigned depth, size_t n) {
    void *p = depth == 0 ? malloc(n)
            : (bits & 1) ? path_a(bits >> 1, depth - 1, n) : path_b(bits >> 1, depth - 1, n);
    __asm__ volatile("" ::: "memory");                  /* no tail call: each level is a frame */
    return p;
}
static __attribute__((noinline)) void *path_b(unsigned bits, unsigned depth, size_t n) {
    void *p = depth == 0 ? malloc(n)
            : (bits & 1) ? path_a(bits >> 1, depth - 1, n) : path_b(bits >> 1, depth - 1, n);
    __asm__ volatile("" ::: "memory");
    return p;
}

/* Every allocation sampled, at hundreds of sites (the site index grows past its first mapping),
 * small and huge, freed here and by another thread, reallocated, and in a forked child: the live
 * table, the site index and the sites' live counts agree (_pm_sample_check) after each phase.
 * The second round takes the same stacks again (the same call instructions), which must find
 * their sites. */
Test(sample, the_live_table_and_site_index_stay_sound_through_busy_use) {
    assert_sound(_pm_sample_check());
    enum { DEPTH = 9, PATHS = 1 << DEPTH, PER = 2 };
    static void *blocks[PATHS * PER], *many[500];
    size_t nsites[2];
    for (int round = 0; round < 2; round++) {
        sampling_at(1);
        for (unsigned k = round; k < PATHS * PER; k += 1 + round)    /* round 1: the freed ones */
            blocks[k] = path_a(k / PER, DEPTH, 16 + 8 * (k % PER));
        _pm_sample_set_rate(0);
        assert_sound(_pm_sample_check());
        pm_sites_t s;
        cr_assert_eq(_pm_sites_snapshot(&s), 0);
        nsites[round] = s.nsites;
        _pm_sites_free(&s);
        if (round == 0) for (unsigned k = 1; k < PATHS * PER; k += 2) free(blocks[k]);
    }
    cr_assert_geq(nsites[0], PATHS, "a site per path at least");
    cr_assert_eq(nsites[1], nsites[0], "a stack seen before finds its site");
    sampling_at(1);
    void *huge = calloc_at_site_c(3u << 20), *moved = alloc_at_site_a(2u << 20);
    for (int i = 0; i < 500; i++) many[i] = alloc_at_site_b(64);
    _pm_sample_set_rate(0);
    assert_sound(_pm_sample_check());
    pthread_t t;
    pthread_create(&t, NULL, free_them, many);
    pthread_join(t, NULL);
    moved = realloc(moved, 9u << 20);
    free(huge);
    assert_sound(_pm_sample_check());
    pid_t pid = fork();                                  /* the fork handlers leave it usable */
    if (pid == 0) {
        sampling_at(1);
        free(blocks[0]);
        blocks[0] = path_a(1, DEPTH, 100);
        _pm_sample_set_rate(0);
        _exit(_pm_sample_check() == NULL ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a forked child's tables stay sound");
    for (unsigned k = 0; k < PATHS * PER; k++) free(blocks[k]);
    free(moved);
    assert_sound(_pm_sample_check());
}

/* A memory error names the allocation site of a sampled block: live (a bad free of it) or freed
 * (a double free), through the sampler's `describe` hook. */
static void double_free_sampled(void *arg) {
    (void)arg;
    sampling_at(1);
    void *p = alloc_at_site_a(72);
    free(p);
    free(p);
}
static void interior_free_sampled(void *arg) {
    (void)arg;
    sampling_at(1);
    char *p = alloc_at_site_a(72);
    free(p + 8);
}
static void double_free_unsampled(void *arg) {
    (void)arg;
    sampling_at(0);
    void *p = alloc_at_site_a(72);
    free(p);
    free(p);
}

Test(sample, memory_errors_name_the_allocation_site_of_a_sampled_block) {
    char msg[1024];
    int st = run_in_child(double_free_sampled, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): double free (block is already free): 0x"), "%s", msg);
    cr_assert(strstr(msg, "(a sampled block, freed; allocated at alloc_at_site_a+0x"), "%s", msg);
    st = run_in_child(interior_free_sampled, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): invalid pointer"), "%s", msg);
    cr_assert(strstr(msg, "allocated at alloc_at_site_a+0x"), "an address 8 bytes in names its block: %s", msg);
    st = run_in_child(double_free_unsampled, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): double free"), "%s", msg);
    cr_assert_null(strstr(msg, "allocated at"), "an unsampled block has no site: %s", msg);
}

/* ---- guard points (guard:N): the second process that shares the countdown (arm) ---- */

/* The fixed seed again, with guard:every on and no cap on guarded allocations a second (these
 * tests make thousands in a fraction of a second). */
static void guarding_at(size_t every, size_t rate) {
    _pm_sample_set_guard_cap(0);
    _pm_sample_set_guard(every);
    sampling_at(rate);
}

/* Allocate n blocks of size size_of(i), freeing each at once; count the guarded ones of each of
 * the two sizes. No assert runs in between: Criterion's own allocations would be counted. */
static void count_guarded(size_t n, size_t small, size_t large, size_t counts[2]) {
    counts[0] = counts[1] = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = (i & 1) ? large : small;
        void *p = alloc_at_site_a(size);
        if (_pm_is_guard_ptr(p)) counts[i & 1]++;
        free(p);
    }
}

/* guard:64 over 200,000 allocations of 64 and 1024 bytes, alternately (mean 544): about one in
 * 64 is guarded (3,125), and size-biased: a 1024-byte request 16 times as often as a 64-byte one
 * (expected 184 and 2,900; each about 1 - exp(-size / (64 * 544)) of its 100,000). */
Test(sample, guard_points_hit_about_one_allocation_in_n_in_proportion_to_size, .timeout = 60) {
    guarding_at(64, 0);
    size_t c[2];
    count_guarded(200000, 64, 1024, c);
    _pm_sample_set_guard(0);
    double total = (double)(c[0] + c[1]);
    cr_assert(total > 0.85 * 3084 && total < 1.15 * 3084, "guarded %zu + %zu of 200000, want about 3084", c[0], c[1]);
    cr_assert(c[0] > 0.7 * 184 && c[0] < 1.3 * 184, "64-byte: %zu guarded, want about 184", c[0]);
    cr_assert(c[1] > 0.85 * 2900 && c[1] < 1.15 * 2900, "1024-byte: %zu guarded, want about 2900", c[1]);
}

/* The mean request size behind the guard rate comes from the points' sizes: a stream of 100-byte
 * requests, then one of 1000-byte ones, each estimated within 10%. While the estimate moves from
 * 100 to 1000 bytes (32 points make up most of it), the rate is too high: about 32 ln 10 = 74
 * extra guards; once it has settled, one in 1000 again. */
Test(sample, the_guard_rate_follows_the_mean_request_size) {
    guarding_at(1000, 0);
    size_t c[2], moving, settled;
    count_guarded(200000, 100, 100, c);
    double first = _pm_sample_mean_size();
    count_guarded(200000, 1000, 1000, c);
    moving = c[0] + c[1];
    double second = _pm_sample_mean_size();
    count_guarded(200000, 1000, 1000, c);
    settled = c[0] + c[1];
    _pm_sample_set_guard(0);
    cr_assert(first > 90 && first < 110, "100-byte requests: estimated %.1f", first);
    cr_assert(second > 900 && second < 1100, "1000-byte requests: estimated %.1f", second);
    cr_assert(moving > 200 && moving < 350, "%zu of 200000 guarded while the estimate moved, want about 274", moving);
    cr_assert(settled > 150 && settled < 250, "%zu of 200000 guarded, want about 200", settled);
}

/* Guard points must not bias the profile: the estimates of the test above (at 16 KiB, about
 * 1,000 samples at site a, a standard deviation of 2.3%), with guard:16 beside it (its slots fill
 * up and the rest fall back; its points still fall). Over 30 seeds site a's estimate averaged
 * 0.9985 of the truth with guard:16 and 0.9942 without. */
Test(sample, sample_estimates_stay_unbiased_with_guard_on, .timeout = 60) {
    enum { NA = (16 << 20) / 48, NB = (32 << 20) / (24 << 10) };
    void **a = calloc(NA, sizeof *a), **b = calloc(NB, sizeof *b);
    guarding_at(16, 16 << 10);
    size_t guarded = 0;
    for (int i = 0; i < NA; i++) { a[i] = alloc_at_site_a(48); guarded += _pm_is_guard_ptr(a[i]); }
    for (int i = 0; i < NB; i++) { b[i] = alloc_at_site_b(24 << 10); guarded += _pm_is_guard_ptr(b[i]); }
    _pm_sample_set_guard(0);
    _pm_sample_set_rate(0);
    pm_sites_t s;
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    assert_estimates(&s, NA, NB);
    pm_guard_counts_t g;
    _pm_guard_counts(&g);
    cr_assert_eq(guarded, g.slots, "guarding went on until every slot was live: %zu of %zu", guarded, g.slots);
    _pm_sites_free(&s);
    for (int i = 0; i < NA; i++) free(a[i]);
    for (int i = 0; i < NB; i++) free(b[i]);
    free(a); free(b);
}

/* An allocation hit by both kinds of point is sampled, and the guard is owed to the next one: at
 * sample:1 every allocation is sampled and none guarded; the first after sampling stops is. */
Test(sample, a_sampled_allocation_is_never_guarded_and_the_next_one_is) {
    guarding_at(4, 1);
    enum { N = 1000 };
    static void *blocks[N];
    size_t guarded = 0;
    for (int i = 0; i < N; i++) { blocks[i] = alloc_at_site_b(32); guarded += _pm_is_guard_ptr(blocks[i]); }
    _pm_sample_set_rate(0);
    void *owed = alloc_at_site_b(32);
    _pm_sample_set_guard(0);
    cr_assert_eq(guarded, 0);
    cr_assert(_pm_is_guard_ptr(owed), "the owed guard went to the next allocation");
    pm_sites_t s;
    cr_assert_eq(_pm_sites_snapshot(&s), 0);
    const pm_site_t *sb = site_through(&s, (void *)alloc_at_site_b);
    cr_assert(sb && sb->live_count == N && sb->alloc_count == N, "every one sampled, exactly");
    _pm_sites_free(&s);
    for (int i = 0; i < N; i++) free(blocks[i]);
    free(owed);
}

/* guard:1 guards every allocation that sampling does not take, with no randomness. */
Test(sample, guard_1_guards_every_allocation) {
    guarding_at(1, 0);
    enum { N = 100 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) blocks[i] = alloc_at_site_a(8 + (size_t)i);
    _pm_sample_set_guard(0);
    for (int i = 0; i < N; i++) cr_assert(_pm_is_guard_ptr(blocks[i]), "allocation %d guarded", i);
    for (int i = 0; i < N; i++) free(blocks[i]);
}

/* Past guard_rate guarded allocations a second (after a burst of 64), guard points go
 * unguarded, however small N is: guard:2 for 0.3 s at guard_rate:200 makes about 60 + 64. The
 * bound is an upper one, so a slow machine only makes fewer. */
Test(sample, guarded_allocations_are_capped_at_guard_rate_a_second, .timeout = 30) {
    cr_assert_eq(pm_ctl("opt.guard_rate", NULL, NULL, "200", 3), 0);
    _pm_sample_set_guard(2);
    sampling_at(0);
    uint64_t start = _pm_os_now_ns(), end;
    size_t guarded = 0, total = 0;
    while ((end = _pm_os_now_ns()) - start < 300000000ull) {
        void *p = alloc_at_site_a(64);
        guarded += _pm_is_guard_ptr(p);
        total++;
        free(p);
    }
    _pm_sample_set_guard(0);
    double seconds = (double)(end - start) * 1e-9;
    cr_assert_eq(pm_ctl("opt.guard_rate", NULL, NULL, "500", 3), 0);
    cr_assert_leq(guarded, 64 + (size_t)(200 * seconds) + 1, "%zu guarded in %.3f s", guarded, seconds);
    cr_assert_geq(guarded, 64, "the burst at least: %zu of %zu allocations", guarded, total);
    cr_assert_gt(total, 10 * guarded, "far more guard points than guarded allocations: %zu, %zu", total, guarded);
}

/* Found by a review: memalign and friends with an alignment of 16 or less kept the alignment
 * asked for only by luck when the block was guarded (guard.c aligns by size). */
Test(sample, guarded_blocks_keep_the_alignment_asked_for) {
    guarding_at(1, 0);
    size_t bad = 0, guarded = 0;
    for (size_t align = 1; align <= 16; align *= 2)
        for (size_t n = 1; n <= 40; n++) {
            void *p = NULL;
            if (align >= sizeof(void *) && posix_memalign(&p, align, n) != 0) p = NULL;
            void *q = memalign(align, n), *r = aligned_alloc(align, n);
            bad += (p && (uintptr_t)p % align) + ((uintptr_t)q % align != 0) + ((uintptr_t)r % align != 0);
            guarded += _pm_is_guard_ptr(q) + _pm_is_guard_ptr(r);
            free(p); free(q); free(r);
        }
    _pm_sample_set_guard(0);
    cr_assert_eq(bad, 0, "%zu blocks misaligned", bad);
    cr_assert_gt(guarded, 100, "the blocks were guarded: %zu", guarded);
}
