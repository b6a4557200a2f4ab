/* fuzz_api.c: a libFuzzer target for the C allocation API that poolmalloc replaces.
 *
 * The input bytes are a program: each operation takes an opcode byte, a slot byte and the bytes
 * of its sizes and alignments, and runs malloc, calloc, realloc (grow, shrink, to 0, from NULL),
 * aligned_alloc, posix_memalign, memalign, valloc, pvalloc, reallocarray, free,
 * malloc_usable_size or malloc_trim over a table of SLOTS live blocks. A shadow model knows
 * every live block, and after every call the fuzzer checks what the call promised:
 *   - contents: each block is filled over its whole usable size with a pattern derived from its
 *     slot and generation; the whole block is verified before it is freed or resized, the kept
 *     prefix after a realloc, all of them after malloc_trim;
 *   - no two live blocks overlap (each new block against every live one);
 *   - alignment: 16 by default, the requested alignment for the aligned calls;
 *   - malloc_usable_size >= the size asked for, and stable while the block lives;
 *   - calloc returns zeroed memory (its blocks are often reused ones, full of old patterns);
 *   - impossible sizes (SIZE_MAX, SIZE_MAX/2+1, sizes whose rounding would overflow, calloc and
 *     reallocarray overflow) fail with NULL and errno ENOMEM, and a failed realloc leaves the
 *     block untouched; invalid alignments fail with EINVAL, as in glibc (aligned_alloc since
 *     2.38; posix_memalign returns it and leaves *out alone, and errno too, as override.c
 *     promises); memalign rounds an alignment that is no power of two up to one, as glibc does,
 *     and refuses those above 2^62;
 *   - after malloc_trim and at the end of each input: the arena and huge-registry invariant
 *     checkers (lib/heap) and the byte accounting of the statistics (it must balance).
 * Any mismatch prints one line and aborts, so libFuzzer saves the input. Everything is freed at
 * the end of each input. Sizes cover tiny (0-16), small (<= 512), pooled (<= 1 MiB) and huge
 * (up to 4 MiB) blocks; the live bytes are capped at LIVE_CAP.
 *
 * libFuzzer itself runs on poolmalloc too: the library is linked in and overrides malloc. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "init.h"     /* the library's internal headers (-Ilib): the checkers and the snapshot */
#include "fuzz_check.h"

enum { SLOTS = 64 };
#define LIVE_CAP ((size_t)64 << 20)
#define HUGE_ALIGN ((size_t)1 << 62)   /* a power of two no allocation can honour */

typedef struct {
    unsigned char *p;
    size_t size;       /* asked for */
    size_t usable;     /* malloc_usable_size at allocation; filled with the pattern */
    uint64_t seed;     /* the pattern: slot and generation */
    bool live;
} slot_t;
static slot_t S[SLOTS];
static size_t live_bytes;
static uint64_t generation;


/* ---- the input ---- */
static const uint8_t *in;
static size_t in_len, in_pos;
static bool more(void) { return in_pos < in_len; }
static uint8_t u8(void) { return in_pos < in_len ? in[in_pos++] : 0; }
static uint16_t u16(void) { uint16_t lo = u8(); return (uint16_t)(lo | (u8() << 8)); }
static uint32_t u32(void) { uint32_t lo = u16(); return lo | ((uint32_t)u16() << 16); }

/* ---- the pattern: byte i of a block is byte i % 8 of word(seed, i / 8) ---- */
#define STEP 0x9E3779B97F4A7C15ull
static inline uint64_t word(uint64_t seed, size_t k) { return seed + (uint64_t)k * STEP; }
static inline unsigned char pat(uint64_t seed, size_t i) { return (unsigned char)(word(seed, i >> 3) >> ((i & 7) * 8)); }

/* The loops over whole blocks are most of the time: no coverage callbacks or UBSan checks in them. */
#define NO_COVERAGE __attribute__((noinline, no_sanitize("coverage", "undefined")))

static NO_COVERAGE void fill(unsigned char *p, size_t from, size_t to, uint64_t seed) {
    size_t i = from;
    for (; i < to && (i & 7); i++) p[i] = pat(seed, i);
    for (uint64_t w = word(seed, i >> 3); i + 8 <= to; i += 8, w += STEP) __builtin_memcpy(p + i, &w, 8);
    for (; i < to; i++) p[i] = pat(seed, i);
}

/* The first byte in [from, to) that differs from the pattern, or SIZE_MAX. */
static NO_COVERAGE size_t mismatch(const unsigned char *p, size_t from, size_t to, uint64_t seed) {
    size_t i = from;
    for (; i < to && (i & 7); i++) if (p[i] != pat(seed, i)) return i;
    for (; i + 8 <= to; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, p + i, 8);
        if (w != word(seed, i >> 3)) break;
    }
    for (; i < to; i++) if (p[i] != pat(seed, i)) return i;
    return SIZE_MAX;
}

static NO_COVERAGE size_t nonzero(const unsigned char *p, size_t n) {     /* the first non-zero byte, or SIZE_MAX */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, p + i, 8);
        if (w != 0) break;
    }
    for (; i < n; i++) if (p[i] != 0) return i;
    return SIZE_MAX;
}

static void verify(int s, size_t from, size_t to, const char *when) {
    size_t bad = mismatch(S[s].p, from, to, S[s].seed);
    CHECK(bad == SIZE_MAX, "%s: slot %d (%p, %zu bytes asked, %zu usable): byte %zu is %#x, the pattern says %#x",
          when, s, (void *)S[s].p, S[s].size, S[s].usable, bad, S[s].p[bad], pat(S[s].seed, bad));
}

/* ---- the model ---- */
/* glibc declares memalign and aligned_alloc with alloc_align: called with the invalid alignments
 * this fuzzer passes on purpose, UBSan would report the caller. Through a pointer they are plain. */
static void *(*volatile memalign_)(size_t, size_t) = memalign;
static void *(*volatile aligned_alloc_)(size_t, size_t) = aligned_alloc;

static bool pow2(size_t x) { return x && (x & (x - 1)) == 0; }
static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* A new block p of `size` bytes for slot s (empty now), aligned to `align`: check and record it. */
static void adopt(int s, void *p, size_t size, size_t align, const char *what) {
    CHECK(p != NULL, "%s(%zu) failed: errno %d", what, size, errno);
    align = max_sz(align, 16);
    CHECK((uintptr_t)p % align == 0, "%s(%zu) = %p: not aligned to %zu", what, size, p, align);
    size_t usable = malloc_usable_size(p);
    CHECK(usable >= size, "%s(%zu) = %p: usable size %zu", what, size, p, usable);
    uintptr_t a = (uintptr_t)p, a_end = a + max_sz(usable, 1);
    for (int t = 0; t < SLOTS; t++) {
        if (!S[t].live || t == s) continue;
        uintptr_t b = (uintptr_t)S[t].p, b_end = b + max_sz(S[t].usable, 1);
        CHECK(a_end <= b || b_end <= a, "%s(%zu) = %p (%zu usable) overlaps slot %d: %p (%zu usable)",
              what, size, p, usable, t, (void *)S[t].p, S[t].usable);
    }
    S[s] = (slot_t){ p, size, usable, ((uint64_t)++generation << 8 | (uint64_t)s) * 0xD6E8FEB86659FD93ull, true };
    live_bytes += usable;
    fill(S[s].p, 0, usable, S[s].seed);
}

static void release(int s) {
    if (!S[s].live) return;
    verify(s, 0, S[s].usable, "before free");
    CHECK(malloc_usable_size(S[s].p) == S[s].usable, "slot %d: usable size changed from %zu to %zu",
          s, S[s].usable, malloc_usable_size(S[s].p));
    free(S[s].p);
    live_bytes -= S[s].usable;
    S[s].live = false;
}

static void verify_all(const char *when) {
    for (int s = 0; s < SLOTS; s++) if (S[s].live) verify(s, 0, S[s].usable, when);
}

static void check_heap(const char *when) {
    const char *why;
    CHECK((why = _pm_arena_check()) == NULL, "%s: _pm_arena_check: %s", when, why);
    CHECK((why = _pm_huge_check()) == NULL, "%s: _pm_huge_check: %s", when, why);
    pm_stats_snapshot_t st;
    _pm_stats_snapshot(&st);
    size_t sum = st.in_use + st.huge_requested + st.free_in_pools + st.quantization + st.arena_headers +
                 st.free_slots + (st.huge_mapped - st.huge_requested) + st.huge_cached;
    CHECK(sum == st.mapped, "%s: the byte accounting does not balance: %zu != %zu mapped", when, sum, st.mapped);
    CHECK(st.mapped == st.arenas * PM_ARENA_SIZE + st.huge_mapped + st.huge_cached,
          "%s: mapped %zu is not arenas + huge + cached", when, st.mapped);
}

/* ---- what the input chooses ---- */
static const size_t boundaries[] = {
    0, 1, 8, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 255, 256, 257, 511, 512, 513, 640, 641, 767, 768,
    1023, 1024, 1025, 4095, 4096, 4097, 16383, 16384, 16385, 65535, 65536, 65537, 262143, 262144, 262145,
    (1 << 20) - 16, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, (1 << 20) + 4096, 2 << 20, (4 << 20) - 1, 4 << 20,
    (4 << 20) + 1,
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static size_t draw_size(void) {
    size_t n;
    /* Big blocks cost most of the time (filling and verifying them, the page faults): they
     * are 5 of the 32 choices. */
    uint8_t c = u8() % 32;
    if (c < 8) n = u8() % 17;                                                /* tiny */
    else if (c < 20) n = 17 + u16() % 496;                                   /* small, up to 512 */
    else if (c < 24) n = 513 + u16() % (65536 - 512);                        /* pooled, common */
    else if (c < 26) {                                                       /* pooled, log-spread */
        unsigned sh = 10 + u8() % 11;
        size_t lo = (size_t)1 << (sh - 1);
        n = max_sz(513, lo + u32() % lo);
    } else if (c < 28) n = boundaries[u8() % NELEM(boundaries)];
    else if (c < 29) n = PM_LARGE_MAX + 1 + u32() % (3u << 20);              /* huge: up to 4 MiB */
    else n = u8();
    if (live_bytes + n > LIVE_CAP) n &= 4095;
    return n;
}

/* Powers of two up to 1 MiB, and some that are invalid (or impossible) for one call or another. */
static const size_t odd_aligns[] = {
    0, 3, 5, 12, 24, 48, 96, 100, 1000, 4097, 3 << 20, HUGE_ALIGN, HUGE_ALIGN << 1, SIZE_MAX,
};
static size_t draw_align(void) {
    uint8_t b = u8() % 32;
    return b <= 20 ? (size_t)1 << b : odd_aligns[(b - 21) % NELEM(odd_aligns)];
}
static size_t round_pow2(size_t a) { while (!pow2(a)) a = (a | (a - 1)) + 1; return a; }

static const size_t impossible[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 15, SIZE_MAX - 16, SIZE_MAX - 4095, SIZE_MAX - 4096,
    SIZE_MAX - (1 << 20), SIZE_MAX - (4 << 20) - 1, SIZE_MAX / 2 + 1, SIZE_MAX / 2, (size_t)1 << 62,
    (size_t)1 << 48,
};
static const size_t overflow_pairs[][2] = {
    { SIZE_MAX / 2 + 1, 2 }, { 2, SIZE_MAX / 2 + 1 }, { SIZE_MAX, SIZE_MAX }, { (size_t)1 << 32, (size_t)1 << 32 },
    { SIZE_MAX / 16 + 1, 16 }, { 3, SIZE_MAX / 3 + 1 }, { (size_t)1 << 33, (size_t)1 << 31 },
};

static int live_slot(int s) {     /* s if live, else the next live slot, else -1 */
    for (int i = 0; i < SLOTS; i++) if (S[(s + i) % SLOTS].live) return (s + i) % SLOTS;
    return -1;
}

#define EXPECT_NULL(p, err, ...) do {                                                          \
        void *p_ = (p);                                                                          \
        int e_ = errno;                                                                          \
        CHECK(p_ == NULL, __VA_ARGS__);                                                          \
        CHECK(e_ == (err), "errno %d, not %d, after a failed call", e_, (err));                  \
    } while (0)

/* ---- the operations ---- */
static void op_realloc(int s, size_t n) {
    if (!S[s].live) {                                        /* realloc(NULL, n) is malloc(n) */
        errno = 0;
        adopt(s, realloc(NULL, n), n, 16, "realloc(NULL)");
        return;
    }
    slot_t old = S[s];
    verify(s, 0, old.usable, "before realloc");
    errno = 0;
    unsigned char *q = realloc(old.p, n);
    live_bytes -= old.usable;
    S[s].live = false;
    if (n == 0) {                                            /* glibc: frees, returns NULL */
        CHECK(q == NULL, "realloc(%p, 0) = %p, not NULL", (void *)old.p, (void *)q);
        return;
    }
    CHECK(q != NULL, "realloc(%p, %zu) failed: errno %d", (void *)old.p, n, errno);
    size_t kept = min_sz(old.size, n);
    size_t bad = mismatch(q, 0, kept, old.seed);
    CHECK(bad == SIZE_MAX, "realloc(%p of %zu, %zu) = %p: kept byte %zu is %#x, not %#x",
          (void *)old.p, old.size, n, (void *)q, bad, q[bad], pat(old.seed, bad));
    size_t usable = malloc_usable_size(q);
    CHECK(usable >= n, "realloc(%zu) = %p: usable size %zu", n, (void *)q, usable);
    CHECK((uintptr_t)q % 16 == 0, "realloc(%zu) = %p: not 16-aligned", n, (void *)q);
    uintptr_t a = (uintptr_t)q, a_end = a + usable;
    for (int t = 0; t < SLOTS; t++) {
        if (!S[t].live) continue;
        uintptr_t b = (uintptr_t)S[t].p, b_end = b + max_sz(S[t].usable, 1);
        CHECK(a_end <= b || b_end <= a, "realloc(%zu) = %p (%zu usable) overlaps slot %d: %p (%zu usable)",
              n, (void *)q, usable, t, (void *)S[t].p, S[t].usable);
    }
    S[s] = (slot_t){ q, n, usable, old.seed, true };
    live_bytes += usable;
    fill(q, kept, usable, old.seed);                          /* the rest of the block, same pattern */
}

static void op_impossible(int s) {
    size_t x = impossible[u8() % NELEM(impossible)];
    const size_t *pair = overflow_pairs[u8() % NELEM(overflow_pairs)];
    size_t a = (size_t)16 << (u8() % 17);                     /* valid: 16 .. 1 MiB */
    int t = live_slot(s);
    errno = 0;
    switch (u8() % 10) {
    case 0: EXPECT_NULL(malloc(x), ENOMEM, "malloc(%zu) succeeded", x); break;
    case 1: EXPECT_NULL(calloc(1, x), ENOMEM, "calloc(1, %zu) succeeded", x); break;
    case 2: EXPECT_NULL(calloc(pair[0], pair[1]), ENOMEM, "calloc(%zu, %zu) succeeded", pair[0], pair[1]); break;
    case 3:
        if (t < 0) { EXPECT_NULL(realloc(NULL, x), ENOMEM, "realloc(NULL, %zu) succeeded", x); break; }
        EXPECT_NULL(realloc(S[t].p, x), ENOMEM, "realloc(%p, %zu) succeeded", (void *)S[t].p, x);
        verify(t, 0, S[t].usable, "after a failed realloc");
        CHECK(malloc_usable_size(S[t].p) == S[t].usable, "a failed realloc changed the usable size");
        break;
    case 4: EXPECT_NULL(aligned_alloc_(a, x), ENOMEM, "aligned_alloc(%zu, %zu) succeeded", a, x); break;
    case 5: {
        void *out = (void *)&S;                              /* must stay as it is */
        errno = 12345;
        int r = posix_memalign(&out, a, x);
        CHECK(r == ENOMEM, "posix_memalign(%zu, %zu) returned %d, not ENOMEM", a, x, r);
        CHECK(out == (void *)&S, "a failed posix_memalign wrote *out");
        CHECK(errno == 12345, "a failed posix_memalign changed errno to %d", errno);
        break;
    }
    case 6: EXPECT_NULL(memalign_(a, x), ENOMEM, "memalign(%zu, %zu) succeeded", a, x); break;
    case 7:
        if (t < 0) {
            EXPECT_NULL(reallocarray(NULL, pair[0], pair[1]), ENOMEM, "reallocarray(NULL, %zu, %zu) succeeded", pair[0], pair[1]);
            break;
        }
        EXPECT_NULL(reallocarray(S[t].p, pair[0], pair[1]), ENOMEM, "reallocarray(%zu, %zu) succeeded", pair[0], pair[1]);
        verify(t, 0, S[t].usable, "after a failed reallocarray");
        break;
    case 8: EXPECT_NULL(valloc(x), ENOMEM, "valloc(%zu) succeeded", x); break;
    default: EXPECT_NULL(pvalloc(x), ENOMEM, "pvalloc(%zu) succeeded", x); break;
    }
}

static void op_aligned(int s, unsigned which) {
    size_t a = draw_align(), n = draw_size();
    release(s);
    errno = 0;
    if (which == 0) {                                                          /* aligned_alloc */
        void *p = aligned_alloc_(a, n);
        if (!pow2(a)) { EXPECT_NULL(p, EINVAL, "aligned_alloc(%zu, %zu) = %p with an invalid alignment", a, n, p); return; }
        if (a >= HUGE_ALIGN) { EXPECT_NULL(p, ENOMEM, "aligned_alloc(%zu, %zu) = %p", a, n, p); return; }
        adopt(s, p, n, a, "aligned_alloc");
    } else if (which == 1) {                                                   /* posix_memalign */
        void *out = (void *)&S;
        errno = 12345;
        int r = posix_memalign(&out, a, n);
        int expect = !pow2(a) || a % sizeof(void *) ? EINVAL : a >= HUGE_ALIGN ? ENOMEM : 0;
        CHECK(r == expect, "posix_memalign(%zu, %zu) returned %d, not %d", a, n, r, expect);
        if (r != 0) {
            CHECK(out == (void *)&S, "a failed posix_memalign wrote *out");
            CHECK(errno == 12345, "a failed posix_memalign changed errno to %d", errno);
            return;
        }
        adopt(s, out, n, a, "posix_memalign");
    } else {                                                                   /* memalign */
        void *p = memalign_(a, n);
        if (a > SIZE_MAX / 2 + 1) { EXPECT_NULL(p, EINVAL, "memalign(%zu, %zu) = %p", a, n, p); return; }
        if (a > HUGE_ALIGN) {
            /* glibc: ENOMEM (2^63 is a power of two it tries); poolmalloc: EINVAL above 2^62 */
            int e = errno;
            CHECK(p == NULL && (e == EINVAL || e == ENOMEM), "memalign(%zu, %zu) = %p, errno %d", a, n, p, e);
            return;
        }
        if (a == HUGE_ALIGN) { EXPECT_NULL(p, ENOMEM, "memalign(%zu, %zu) = %p", a, n, p); return; }
        adopt(s, p, n, a ? round_pow2(a) : 16, "memalign");   /* glibc rounds up to a power of two */
    }
}

static void run_op(void) {
    uint8_t op = u8();
    int s = u8() % SLOTS;
    switch (op % 16) {
    case 0:
    case 1: {
        size_t n = draw_size();
        release(s);
        errno = 0;
        adopt(s, malloc(n), n, 16, "malloc");
        break;
    }
    case 2: {
        size_t total = draw_size(), m = 1 + u8() % 16, n = total / m;
        release(s);
        errno = 0;
        unsigned char *p = calloc(n, m);
        CHECK(p != NULL, "calloc(%zu, %zu) failed: errno %d", n, m, errno);
        size_t nz = nonzero(p, n * m);
        CHECK(nz == SIZE_MAX, "calloc(%zu, %zu) = %p: byte %zu is %#x, not 0", n, m, (void *)p, nz, p[nz]);
        adopt(s, p, n * m, 16, "calloc");
        break;
    }
    case 3:
    case 4: op_realloc(s, draw_size()); break;
    case 5:                                                  /* to 0, or from NULL to 0 */
        if (S[s].live) op_realloc(s, 0);
        else { errno = 0; adopt(s, realloc(NULL, 0), 0, 16, "realloc(NULL, 0)"); }
        break;
    case 6: op_aligned(s, 0); break;
    case 7: op_aligned(s, 1); break;
    case 8: op_aligned(s, 2); break;
    case 9:
    case 10: release(s); break;
    case 11: {
        int t = live_slot(s);
        if (t < 0) break;
        CHECK(malloc_usable_size(S[t].p) == S[t].usable, "slot %d: usable size changed from %zu to %zu",
              t, S[t].usable, malloc_usable_size(S[t].p));
        verify(t, 0, S[t].usable, "usable size");
        break;
    }
    case 12: {
        int r = malloc_trim(0);
        CHECK(r == 0 || r == 1, "malloc_trim returned %d", r);
        verify_all("after malloc_trim");
        check_heap("after malloc_trim");
        break;
    }
    case 13: op_impossible(s); break;
    case 14: {                                               /* the NULL cases */
        free(NULL);
        CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");
        size_t n = draw_size();
        release(s);
        errno = 0;
        adopt(s, u8() & 1 ? valloc(n) : pvalloc(n), n, 4096, "valloc/pvalloc");
        break;
    }
    default: {                                               /* reallocarray, grow or shrink */
        size_t total = draw_size(), m = 1 + u8() % 8, n = total / m;
        if (!S[s].live) { errno = 0; adopt(s, reallocarray(NULL, n, m), n * m, 16, "reallocarray(NULL)"); break; }
        if (n * m == 0) break;                               /* reallocarray(p, 0) is realloc(p, 0): case 5 */
        slot_t old = S[s];
        verify(s, 0, old.usable, "before reallocarray");
        errno = 0;
        unsigned char *q = reallocarray(old.p, n, m);
        CHECK(q != NULL, "reallocarray(%zu, %zu) failed: errno %d", n, m, errno);
        size_t kept = min_sz(old.size, n * m), bad = mismatch(q, 0, kept, old.seed);
        CHECK(bad == SIZE_MAX, "reallocarray(%zu, %zu): kept byte %zu differs", n, m, bad);
        live_bytes -= old.usable;
        S[s].live = false;
        adopt(s, q, n * m, 16, "reallocarray");
        break;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    in = data;
    in_len = size;
    in_pos = 0;
    while (more()) run_op();
    for (int s = 0; s < SLOTS; s++) release(s);
    CHECK(live_bytes == 0, "live bytes %zu after freeing everything", live_bytes);
    check_heap("after an input");
    return 0;
}
