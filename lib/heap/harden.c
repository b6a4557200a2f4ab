/* harden.c: POOLMALLOC_CONF=hardened:true. Bounds, writes after free and reuse, checked.
 *
 * The default mode catches what costs the fast paths nothing (invalid and double frees, zero-size
 * blocks, arena guards: docs/design.md). Hardened mode closes the fast paths (the thread's
 * _pm_heap_tls stays the empty heap, heap.c) and serves every pooled request here:
 *
 *   block  [ header 16 | front canary F | data n | canary <= 32 | zero ... ]  block + B
 *
 *   header     the block's first two words: the size asked for and the data's offset, and a check
 *              word keyed by the process's secret and the block's address. A write just before the
 *              data, or a free of a pointer that is not a block's data, fails the check. A free
 *              block keeps its free-list link and free mark there, as in the default mode.
 *   canaries   F bytes between header and data (32 in classes of 1 KiB and up, 0 below; for an
 *              alignment above 16, whatever aligns the data) and up to 32 bytes after the data hold
 *              a random byte; the rest of the block after them is zero as far as its span (below).
 *              Each free and realloc checks the canaries and the next 64 zero bytes, so an overflow
 *              of up to 96 bytes is caught and named at its free; one further out but inside the
 *              span, when the block leaves the quarantine.
 *   zeroing    a freed block is zeroed past its header, as far as its span: the whole block in
 *              classes up to PM_HARD_SPAN_MAX (4 KiB of data and more), its first 4 KiB + 128
 *              bytes above (zeroing whole megabytes at every free would cost more than the
 *              program's own work). Free blocks are zero over their span (carving zeroes it too,
 *              pool.c), so malloc hands out memory zeroed that far, and calloc clears the rest.
 *   quarantine the freed block waits in its thread's quarantine (heap.c) until 256 KiB of later
 *              frees push it out; its span must still be zero then, else it was written after the
 *              free, and again when malloc hands it out. Until then no allocation returns it: a
 *              dangling pointer does not alias a new block. (A free by a thread past its exit,
 *              which has no heap any more, skips the quarantine.)
 *   copies     memcpy, memmove and memset of the preloaded library (lib/checked_copy.c) check
 *              their ranges against the block they fall in before they run.
 *
 * Huge blocks (above 1 MiB with the header) are not covered: they are page runs of their own, and
 * an overflow past one runs into unmapped or guard pages more often than not.
 * What each check costs is measured in docs/benchmarks.md; what each catches, in docs/design.md. */
#define _GNU_SOURCE
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

#define HDR             16u            /* the header: a free block's two link words */
#define FRONT           32u            /* the front canary, in classes of FRONT_MIN_CLASS bytes and up */
#define FRONT_MIN_CLASS 1024u
#define TAIL_MAX        32u            /* canary bytes written after the data */
#define SIZE_BITS       48
#define SIZE_MASK       (((uint64_t)1 << SIZE_BITS) - 1)

typedef struct { uint64_t info, check; } hdr_t;   /* info: size | offset / 16 << SIZE_BITS */
_Static_assert(sizeof(hdr_t) == sizeof(pm_block_t) && sizeof(hdr_t) == HDR, "the header is a free block's links");
_Static_assert(PM_LARGE_MAX < ((size_t)1 << SIZE_BITS) && PM_POOL_ALIGN_MAX / 16 < ((size_t)1 << (64 - SIZE_BITS)),
               "size and offset fit the info word");

/* Keyed by the free key (random, start-up), mixed with the block's address. Even, while every
 * free mark is odd (the key is odd, addresses 16-aligned), so no live header reads as free. */
static uint64_t check_of(uint64_t info, const void *block) {
    uint64_t x = info ^ ((uintptr_t)block * 0x9e3779b97f4a7c15u) ^ (_pm_free_key * 0xd6e8feb86659fd93u);
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93u;
    x ^= x >> 32;
    return x & ~(uint64_t)1;
}

static uint8_t canary_byte(void) { return (uint8_t)(_pm_free_key >> 48) | 1; }

/* The data's offset in a block of a class of `block_size` bytes, alignment up to PM_ALIGN. */
static size_t front_of(size_t block_size) { return PM_HARD_DATA_AT(block_size); }
_Static_assert(PM_HARD_DATA_AT(FRONT_MIN_CLASS) == HDR + FRONT && PM_HARD_DATA_AT(FRONT_MIN_CLASS - 16) == HDR,
               "heap.h's PM_HARD_DATA_AT is this file's layout");

/* The class for n bytes at `align` with header and at least one canary byte; PM_NCLASSES: huge.
 * For an alignment above 16 the data lies at most `align` bytes in (the block is 16-aligned). */
static unsigned class_for(size_t n, size_t align) {
    size_t need;
    if (align <= PM_ALIGN) {
        if (__builtin_add_overflow(n, HDR + 1, &need) || need > PM_LARGE_MAX) return PM_NCLASSES;
        unsigned c = _pm_class_of(need);
        if (_pm_classes[c].size < FRONT_MIN_CLASS) return c;
        need += FRONT;
    } else if (align > PM_POOL_ALIGN_MAX || __builtin_add_overflow(n, align + 1, &need)) {
        return PM_NCLASSES;
    }
    return need > PM_LARGE_MAX ? PM_NCLASSES : _pm_class_of(need);
}

/* The writes into blocks below must not go through our own memset and memcpy, which check the
 * very bytes they write (lib/checked_copy.c): zeroing is libc's explicit_bzero, which no one
 * interposes, and canaries, at most 32 bytes but for large alignments, a plain loop. */
static uint64_t canary_word(void) { return canary_byte() * 0x0101010101010101u; }

/* Word stores, the last one overlapping, for n >= 8; below that at most three stores. */
PM_NO_PATTERNS static void fill_canary(uint8_t *p, size_t n) {
    uint64_t k = canary_word();
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) __builtin_memcpy(p + i, &k, 8);
        __builtin_memcpy(p + n - 8, &k, 8);
        return;
    }
    if (n & 4) { __builtin_memcpy(p, &k, 4); p += 4; }
    if (n & 2) { __builtin_memcpy(p, &k, 2); p += 2; }
    if (n & 1) *p = (uint8_t)k;
}

/* The offset of the first byte in [p, p + n) that is not the canary, or n. Word loads as
 * fill_canary stores them; the byte scan runs only to name a changed byte. */
static size_t canary_intact(const uint8_t *p, size_t n) {
    uint64_t k = canary_word(), w, diff = 0;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) { __builtin_memcpy(&w, p + i, 8); diff |= w ^ k; }
        __builtin_memcpy(&w, p + n - 8, 8);
        diff |= w ^ k;
    } else {
        for (size_t i = 0; i < n; i++) diff |= p[i] ^ (uint8_t)k;
    }
    if (PM_LIKELY(diff == 0)) return n;
    size_t i = 0;
    while (i < n && p[i] == (uint8_t)k) i++;
    return i;
}

static size_t tail_canary(size_t block_size, size_t off, size_t n) {
    size_t tail = block_size - off - n;
    return tail < TAIL_MAX ? tail : TAIL_MAX;
}

/* What each technique costs is measured by leaving it out: bench/hardened.sh builds the library
 * with each of these defined in turn (never a shipped configuration).
 *   PM_HARD_NO_CANARY      no canaries written or checked (the header stays)
 *   PM_HARD_NO_ZERO        freed blocks not zeroed nor checked when they leave quarantine
 *   PM_HARD_NO_QUARANTINE  freed blocks reusable at once */
#ifdef PM_HARD_NO_CANARY
#define CANARIES 0
#else
#define CANARIES 1
#endif
#ifdef PM_HARD_NO_ZERO
#define ZEROING 0
#else
#define ZEROING 1
#endif

static size_t first_nonzero(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n && p[i] == 0) i++;
    return i;
}

/* Header and canaries for n bytes at offset off of a zero block. */
static void *dress(uint8_t *block, size_t block_size, size_t off, size_t n) {
    hdr_t *h = (hdr_t *)(void *)block;
    h->info = n | (uint64_t)(off / 16) << SIZE_BITS;
    h->check = check_of(h->info, block);
    if (CANARIES) {
        fill_canary(block + HDR, off - HDR);
        fill_canary(block + off + n, tail_canary(block_size, off, n));
    }
    return block + off;
}

/* A free block of class c from the heap: what the fast path would pop, else the heap's slow path. */
static pm_block_t *pop(pm_heap_t *heap, unsigned c) {
    pm_pool_t *pool = heap->avail[c + 1];
    pm_block_t *b = pool->free;
    if (b == NULL) return _pm_heap_alloc(heap, c, false);
    if (PM_UNLIKELY(b->mark != _pm_free_mark(b)))
        _pm_heap_fatal(b, "malloc(): heap corruption: the free block at %p lost its free mark "
                       "(written after free, or by an underflow of the block after it)", (void *)b);
    pool->free = b->next;
    _pm_pool_used_inc(pool);
    return b;
}

/* A block about to be handed out must still be zero where its new canaries and data go, as far
 * as its span (`end`: the offset past the tail canary): a dangling pointer that wrote there after
 * the block left the quarantine is caught here, before the block's next owner could be blamed for
 * the bytes or calloc could hand them out. The rest of the span is checked at the block's next
 * free, and when it next leaves the quarantine: reading it here too would read it three times. */
static void check_clean(const pm_block_t *b, size_t block_size, size_t end) {
    const uint8_t *p = (const uint8_t *)b;
    size_t span = ZEROING ? PM_HARD_SPAN(block_size) : HDR;
    if (end < span) span = end;
    if (PM_UNLIKELY(!_pm_bytes_zero(p + HDR, span - HDR))) {
        size_t at = HDR + first_nonzero(p + HDR, span - HDR);
        const uint8_t *data = p + PM_HARD_DATA_AT(block_size);
        bool before = p + at < data;
        _pm_heap_fatal(data, "malloc(): write after free: the free block at %p (of a %zu-byte class) was written "
                       "after it left the quarantine (at %c%zu: 0x%02x)", (const void *)data, block_size,
                       before ? '-' : '+', before ? (size_t)(data - (p + at)) : (size_t)(p + at - data), p[at]);
    }
}

void *_pm_hard_alloc(pm_heap_t *heap, size_t size, size_t align, bool zero) {
    unsigned c = class_for(size, align);
    if (c == PM_NCLASSES) return _pm_huge_alloc(size, align, zero);
    pm_block_t *b;
    if (heap) b = pop(heap, c);
    else if (_pm_thread_is_dead()) b = _pm_orphan_alloc(c);
    else { errno = ENOMEM; return NULL; }
    if (b == NULL) return NULL;
    uint8_t *block = (uint8_t *)b;
    size_t block_size = _pm_classes[c].size;
    size_t off = align <= PM_ALIGN ? front_of(block_size)
                                   : (((uintptr_t)block + HDR + align - 1) & ~(uintptr_t)(align - 1)) - (uintptr_t)block;
    check_clean(b, block_size, off + size + tail_canary(block_size, off, size));
    uint8_t *p = dress(block, block_size, off, size);
    size_t span = ZEROING ? PM_HARD_SPAN(block_size) : off;
    if (zero && off + size > span) explicit_bzero(block + span, off + size - span);   /* past the span: dirty */
    return p;
}

/* malloc's way here: the sampler's countdown and a pop, without _pm_allocate's generality. */
void *_pm_hard_malloc(size_t size, void *ra) {
    pm_heap_t *heap = _pm_heap_mine();
    unsigned c = class_for(size, PM_ALIGN);
    if (PM_UNLIKELY(heap == NULL || c == PM_NCLASSES)) return _pm_allocate(size, c, PM_ALIGN, false, false, ra);
    if (PM_UNLIKELY((heap->sample.left -= (int64_t)size) < 0 ||
                    heap->sample.epoch != atomic_load_explicit(&_pm_sample_epoch, memory_order_relaxed)))
        return _pm_allocate(size, c, PM_ALIGN, true, false, ra);
    pm_block_t *b = pop(heap, c);
    if (b == NULL) return NULL;
    size_t block_size = _pm_classes[c].size, off = front_of(block_size);
    check_clean(b, block_size, off + size + tail_canary(block_size, off, size));
    return dress((uint8_t *)b, block_size, off, size);
}

/* The block that p, an arena pointer, is the data of, with its header checked: aborts naming what
 * is wrong. *n: the bytes asked for; *off: the data's offset. */
static uint8_t *block_of(const char *func, pm_pool_t *pool, const void *p, size_t *n, size_t *off) {
    /* the common case first: p is the data of a live block at the class's own offset */
    uint8_t *guess = (uint8_t *)p - front_of(pool->block_size);
    const hdr_t *g = (const hdr_t *)(const void *)guess;
    if (PM_LIKELY(_pm_pool_is_block_start(pool, guess) && g->check == check_of(g->info, guess) &&
                  (g->info >> SIZE_BITS) * 16 == front_of(pool->block_size))) {
        *n = (size_t)(g->info & SIZE_MASK);
        *off = front_of(pool->block_size);
        return guess;
    }
    uint64_t at_pool = (uint64_t)((uintptr_t)p - (uintptr_t)pool->start);
    uint32_t carved = __atomic_load_n(&pool->carved, __ATOMIC_RELAXED);
    if (at_pool >= (uint64_t)carved * pool->block_size)
        _pm_invalid_free(func, p, "invalid pointer (inside a poolmalloc arena but not in an allocated block)");
    size_t i = (size_t)(((unsigned __int128)at_pool * pool->divisor) >> 64);   /* exact: pool.c */
    uint8_t *block = pool->start + i * pool->block_size;
    const hdr_t *h = (const hdr_t *)(const void *)block;
    size_t at = (size_t)((const uint8_t *)p - block);
    if (h->check == _pm_free_mark(block)) {
        if (at == front_of(pool->block_size)) _pm_invalid_free(func, p, "double free (block is already free)");
        _pm_invalid_free(func, p, "invalid pointer (inside a free block)");
    }
    if (h->check != check_of(h->info, block)) {
        if (at % 16 == 0 && at >= HDR && at <= FRONT + HDR)
            _pm_invalid_free(func, p, "heap corruption: the block's header, just before its data, was overwritten "
                                      "(an underflow of this block, or an overflow of the one before it)");
        _pm_invalid_free(func, p, "invalid pointer (not the start of a live block)");
    }
    *n = (size_t)(h->info & SIZE_MASK);
    *off = (size_t)(h->info >> SIZE_BITS) * 16;
    if (at != *off) _pm_invalid_free(func, p, "invalid pointer (inside a block, not its start)");
    return block;
}


/* The canaries, and the zero rest of the block for REST_WINDOW bytes after them (within the
 * span): an abort naming the first byte changed. An overflow further out, still inside the span,
 * is caught when the block leaves the quarantine (heap.c), where the whole span is read once. */
#define REST_WINDOW 64u
static void check_canaries(const char *func, const uint8_t *block, size_t block_size, const uint8_t *p, size_t n) {
    if (!CANARIES) return;
    size_t off = (size_t)(p - block), front = off - HDR, t = tail_canary(block_size, off, n), at;
    if ((at = canary_intact(block + HDR, front)) < front)
        _pm_heap_fatal(p, "%s(): heap-buffer-underflow: the %zu-byte block at %p was written before its start (at -%zu)",
                  func, n, (const void *)p, front - at);
    if ((at = canary_intact(p + n, t)) < t)
        _pm_heap_fatal(p, "%s(): heap-buffer-overflow: the %zu-byte block at %p was written past its end (at +%zu)",
                  func, n, (const void *)p, n + at);
    size_t end = off + n + t, span = PM_HARD_SPAN(block_size);
    if (span > end + REST_WINDOW) span = end + REST_WINDOW;
    if (ZEROING && end < span && !_pm_bytes_zero(block + end, span - end))
        _pm_heap_fatal(p, "%s(): heap-buffer-overflow: the %zu-byte block at %p was written past its end (at +%zu)",
                  func, n, (const void *)p, n + t + first_nonzero(block + end, span - end));
}

/* What the free must zero: the front canary, the data and the tail canary, up to the span. */
static void zero_used(uint8_t *block, size_t block_size, size_t off, size_t n) {
    if (!ZEROING) return;
    size_t end = off + n + tail_canary(block_size, off, n), span = PM_HARD_SPAN(block_size);
    explicit_bzero(block + HDR, (end < span ? end : span) - HDR);
}

void _pm_hard_free(const char *func, pm_pool_t *pool, void *p) {
    size_t n, off;
    uint8_t *block = block_of(func, pool, p, &n, &off);
    check_canaries(func, block, pool->block_size, p, n);
    _pm_forget_if_sampled(pool, p);
    zero_used(block, pool->block_size, off, n);
    _pm_heap_quarantine(_pm_heap_mine(), pool, (pm_block_t *)(void *)block);
}

size_t _pm_hard_usable(const char *func, const void *p) {
    size_t n, off;
    block_of(func, _pm_pool_of(p), p, &n, &off);
    return n;
}

/* In place while the new size fits the block and (as in the default mode) keeps more than half
 * of it; else a new block, the old one freed with every check. */
void *_pm_hard_realloc(void *p, size_t size, void *ra) {
    pm_pool_t *pool = _pm_pool_of(p);
    size_t n, off, block_size = pool->block_size;
    uint8_t *block = block_of("realloc", pool, p, &n, &off);
    check_canaries("realloc", block, block_size, p, n);
    if (size < block_size - off && (size > block_size / 2 || block_size <= PM_SMALL_MAX / 2)) {
        /* the old canary and any shrunk-off data become zero, or (past the span) data again */
        size_t keep = n < size ? n : size;
        explicit_bzero((uint8_t *)p + keep, n - keep + tail_canary(block_size, off, n));
        return dress(block, block_size, off, size);
    }
    void *q = _pm_malloc_at(size, ra);
    if (q == NULL) return NULL;
    memcpy(q, p, n < size ? n : size);
    _pm_hard_free("realloc", pool, p);
    return q;
}

/* A copy of len bytes at addr, about to run: if addr lies in a live block, the range must lie in
 * its data; in a free block, it is a use after free. Anything else (not a block, or a header that
 * does not check) is left to the free to judge. */
void _pm_hard_check_access(const char *func, const void *addr, size_t len) {
    if (len == 0 || !_pm_is_arena_ptr(addr) || _pm_is_zero_ptr(addr)) return;
    pm_pool_t *pool = _pm_pool_of(addr);
    uint64_t at_pool = (uint64_t)((uintptr_t)addr - (uintptr_t)pool->start);
    if (at_pool >= (uint64_t)__atomic_load_n(&pool->carved, __ATOMIC_RELAXED) * pool->block_size) return;
    size_t i = (size_t)(((unsigned __int128)at_pool * pool->divisor) >> 64);
    const uint8_t *block = pool->start + i * pool->block_size;
    const hdr_t *h = (const hdr_t *)(const void *)block;
    if (h->check == _pm_free_mark(block))
        _pm_heap_fatal(block + front_of(pool->block_size), "%s(): use after free: %zu bytes at %p, in the free block at %p", func, len, addr,
                  (const void *)(block + front_of(pool->block_size)));
    if (h->check != check_of(h->info, block)) return;
    const uint8_t *p = block + (size_t)(h->info >> SIZE_BITS) * 16;
    size_t n = (size_t)(h->info & SIZE_MASK);
    if ((const uint8_t *)addr < p)
        _pm_heap_fatal(p, "%s(): heap-buffer-underflow: %zu bytes at %p start before the %zu-byte block at %p (at -%zu)",
                  func, len, addr, n, (const void *)p, (size_t)(p - (const uint8_t *)addr));
    size_t start = (size_t)((const uint8_t *)addr - p);
    if (start >= n || len > n - start)
        _pm_heap_fatal(p, "%s(): heap-buffer-overflow: %zu bytes at %p run past the end of the %zu-byte block at %p (to +%zu)",
                  func, len, addr, n, (const void *)p, start + len);
}
