/* guard.c: guarded slots, for the allocations that guarded sampling picks (POOLMALLOC_CONF
 * guard:N; the lens's sampler picks them, lens/sample.c, and the slow path brings them here).
 *
 * Electric Fence put every block against an inaccessible page; GWP-ASan (LLVM, Chrome, Android)
 * and tcmalloc's guarded page allocator do it for a sampled few, from a fixed pool of slots, so
 * that it can stay on in production. So do we:
 *
 *   region   one 4 MiB reservation aligned to 4 MiB, mapped at the first guarded allocation and
 *            never unmapped, registered in the arena map as PM_MAP_GUARD. It is PROT_NONE but for
 *            its header: a slot map whose every entry is a pool no block boundary matches (as in
 *            zero.c), so that the free fast path sends every guarded pointer to the slow path
 *            without a test of its own; then the slots' records and the ring of free slots.
 *   slot     PM_GUARD_MAX_SIZE of data pages followed by one PROT_NONE guard page (the guard page
 *            after the header is slot 0's leading one). Only the pages a block covers are opened.
 *   block    placed so that it ends where the guard page starts, at the alignment C requires of an
 *            object of its size (min(16, the largest power of two <= size)) or the one asked for,
 *            up to a page. A read or write past its end faults at its first byte when the size is
 *            a multiple of that alignment; else the slack between the block's end and the page end
 *            (at most 15 bytes) comes first. The slack is filled with a pattern, and so are the
 *            HEAD_PATTERN bytes in front of the block (an underflow past its first page faults);
 *            free checks both and aborts with a line if either was written. Only 64 bytes in
 *            front, not the rest of the page: filling and checking up to 4 KiB took 8,000 of the
 *            11,000 instructions a guarded malloc and free cost (callgrind).
 *   free     the block's pages go back to PROT_NONE, and the slot joins the tail of the ring: the
 *            next guarded allocation takes the least recently freed slot, so a freed block stays
 *            inaccessible as long as the pool allows, and a use after free faults. The pages stay
 *            resident (at most PM_GUARD_SLOTS * PM_GUARD_MAX_SIZE, 2 MiB): decommitting them would
 *            make every later guarded allocation pay page faults, at 20 us each on this VM.
 *
 * Each slot keeps the stack of its block's malloc and of its free (captured through the sampler's
 * hook, outside the lock), and _pm_guard_describe hands them to the lens's fault handler
 * (lens/guard_report.c), which reads the records without a lock: the process is about to die.
 * Requests above PM_GUARD_MAX_SIZE or aligned beyond a page, and any request while every slot
 * is live, are not guarded: the caller allocates them as usual. One lock serves the region: a
 * guarded allocation is one in N and costs two mprotect calls anyway.
 */
#include "heap/heap.h"

#include <errno.h>
#include <string.h>

enum { SLOT_UNUSED, SLOT_LIVE, SLOT_FREED };
#define HEAD_PATTERN 64                   /* bytes in front of a block that free checks */

typedef struct {
    const uint8_t *block;                 /* the slot's last block; NULL while unused */
    size_t   size;                        /* the bytes asked for */
    uint32_t state;                       /* SLOT_*, under guard_lock (describe reads it without) */
    uint32_t nalloc, nfree;               /* frames captured */
    void    *alloc_frames[PM_GUARD_FRAMES];
    void    *free_frames[PM_GUARD_FRAMES];
} guard_slot_t;

typedef struct {
    pm_pool_t *heads[PM_SLOTS];           /* where pm_arena_t has it: _pm_pool_of reads it */
    uint8_t   *first;                     /* slot 0's data */
    size_t     page, data, stride;        /* the page size; a slot's data bytes; data + guard page */
    unsigned   nslots;
    unsigned   ring_head, ring_count;     /* ring[]: the free slots, least recently freed first */
    uint16_t   ring[PM_GUARD_SLOTS];
    size_t     live, guarded_total;
    guard_slot_t slot[PM_GUARD_SLOTS];
} guard_region_t;
_Static_assert(offsetof(guard_region_t, heads) == offsetof(pm_arena_t, heads), "the free fast path reads heads");
_Static_assert(PM_GUARD_SLOTS <= UINT16_MAX + 1, "ring entries are 16-bit");

static pm_pool_t no_block;                /* divisor 0: _pm_pool_is_block_start is never true */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static guard_region_t *_Atomic region;
static __thread bool capturing;           /* inside capture(): allocations there keep no stack */

static uint8_t *page_floor(const guard_region_t *r, const void *p) {
    return (uint8_t *)((uintptr_t)p & ~(uintptr_t)(r->page - 1));
}
static uint8_t *slot_data(const guard_region_t *r, unsigned i) { return r->first + (size_t)i * r->stride; }

/* Caller holds guard_lock. */
static guard_region_t *region_new(void) {
    size_t page = _pm_os_page_size();
    size_t header = (sizeof(guard_region_t) + page - 1) & ~(page - 1);
    size_t data = (PM_GUARD_MAX_SIZE + page - 1) & ~(page - 1);
    if (header + page + data + page > PM_ARENA_SIZE) return NULL;      /* pages of a megabyte */
    guard_region_t *r = _pm_os_reserve_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
    if (r == NULL) return NULL;
    if (_pm_os_protect(r, header, true) != 0) {
        _pm_os_unmap(r, PM_ARENA_SIZE);
        return NULL;
    }
    for (unsigned i = 0; i < PM_SLOTS; i++) r->heads[i] = &no_block;
    r->page = page;
    r->data = data;
    r->stride = data + page;
    r->first = (uint8_t *)r + header + page;
    size_t fit = (PM_ARENA_SIZE - header - page) / r->stride;           /* 128 of 20 KiB at 4 KiB pages */
    r->nslots = fit < PM_GUARD_SLOTS ? (unsigned)fit : PM_GUARD_SLOTS;
    for (unsigned i = 0; i < r->nslots; i++) r->ring[i] = (uint16_t)i;
    r->ring_count = r->nslots;
    _pm_arena_map[(uintptr_t)r >> PM_ARENA_SHIFT] = PM_MAP_GUARD;
    atomic_store_explicit(&region, r, memory_order_release);
    return r;
}

/* The slot whose data pages hold p, if any. */
static bool slot_index(const guard_region_t *r, const void *p, unsigned *out) {
    const uint8_t *a = p;
    if (r == NULL || a < r->first) return false;
    size_t off = (size_t)(a - r->first), i = off / r->stride;
    if (i >= r->nslots || off % r->stride >= r->data) return false;
    *out = (unsigned)i;
    return true;
}

/* The pattern in a block's slack: a byte of its address, never 0 (the likeliest byte an off-by-one
 * writes is a string's terminator) and never 0xff. */
static uint8_t pattern_of(const void *block) { return (uint8_t)(0xa0 | (((uintptr_t)block >> 4) & 0x0f)); }

static bool pattern_intact(const uint8_t *from, const uint8_t *to, uint8_t c) {
    uint64_t word = 0x0101010101010101ull * c, diff = 0;
    for (; from < to && ((uintptr_t)from & 7); from++) diff |= (uint8_t)(*from ^ c);
    for (; from + 8 <= to; from += 8) { uint64_t w; memcpy(&w, from, 8); diff |= w ^ word; }
    for (; from < to; from++) diff |= (uint8_t)(*from ^ c);
    return diff == 0;
}

/* The stack of the caller, through the sampler's hook. Outside guard_lock: unwinding may take the
 * loader's lock. An allocation made while capturing (if unwinding ever allocates) keeps no stack. */
static unsigned capture(void **frames, void *ra) {
    if (capturing) return 0;
    capturing = true;
    unsigned n = _pm_sample_stack_hook(frames, PM_GUARD_FRAMES, ra);
    capturing = false;
    return n;
}

/* The region's invariants: the ring holds each of its slots once, and no live one; `live` counts
 * the live slots. A slot being opened or closed is in neither. Caller holds guard_lock. */
static const char *check_locked(const guard_region_t *r) {
    if (r == NULL) return NULL;
    if (r->ring_count > r->nslots || r->ring_head >= r->nslots) return "guard: the ring's head or count is out of range";
    uint8_t seen[PM_GUARD_SLOTS] = { 0 };
    for (unsigned k = 0; k < r->ring_count; k++) {
        unsigned i = r->ring[(r->ring_head + k) % r->nslots];
        if (i >= r->nslots || seen[i]++) return "guard: a slot is in the free ring twice, or is no slot";
        if (r->slot[i].state == SLOT_LIVE) return "guard: a live slot is in the free ring";
    }
    size_t live = 0;
    for (unsigned i = 0; i < r->nslots; i++) live += r->slot[i].state == SLOT_LIVE;
    if (live != r->live) return "guard: the live count is not the number of live slots";
    if (live + r->ring_count > r->nslots) return "guard: more slots live or free than the region has";
    return NULL;
}

const char *_pm_guard_check(void) {
    pthread_mutex_lock(&guard_lock);
    const char *why = check_locked(atomic_load_explicit(&region, memory_order_relaxed));
    pthread_mutex_unlock(&guard_lock);
    return why;
}

static void ring_push_tail(guard_region_t *r, unsigned i) {
    r->ring[(r->ring_head + r->ring_count) % r->nslots] = (uint16_t)i;
    r->ring_count++;
}

void *_pm_guard_alloc(size_t size, size_t align, void *ra) {
    size_t page = _pm_os_page_size();
    if (size == 0 || size > PM_GUARD_MAX_SIZE || align > page) return NULL;
    int saved = errno;                    /* a failure here is not the caller's: it allocates as usual */
    pthread_mutex_lock(&guard_lock);
    guard_region_t *r = atomic_load_explicit(&region, memory_order_relaxed);
    if (r == NULL) r = region_new();      /* if that fails, the next guard point tries again */
    if (r == NULL || r->ring_count == 0) {
        pthread_mutex_unlock(&guard_lock);
        errno = saved;
        return NULL;
    }
    unsigned i = r->ring[r->ring_head];
    r->ring_head = (r->ring_head + 1) % r->nslots;
    r->ring_count--;
    pthread_mutex_unlock(&guard_lock);

    /* The slot is ours now; its record still describes the last block until it is opened. */
    size_t a = align > PM_ALIGN ? align : size >= PM_ALIGN ? PM_ALIGN : (size_t)1 << (63 - __builtin_clzll(size));
    uint8_t *end = slot_data(r, i) + r->data;
    uint8_t *block = (uint8_t *)(((uintptr_t)end - size) & ~(uintptr_t)(a - 1));
    uint8_t *open = page_floor(r, block);
    if (_pm_os_protect(open, (size_t)(end - open), true) != 0) {
        pthread_mutex_lock(&guard_lock);  /* back at the head: it is still the least recently freed */
        r->ring_head = (r->ring_head + r->nslots - 1) % r->nslots;
        r->ring[r->ring_head] = (uint16_t)i;
        r->ring_count++;
        pthread_mutex_unlock(&guard_lock);
        errno = saved;
        return NULL;
    }
    uint8_t c = pattern_of(block), *head = block - open > HEAD_PATTERN ? block - HEAD_PATTERN : open;
    memset(head, c, (size_t)(block - head));
    memset(block + size, c, (size_t)(end - block - size));
    guard_slot_t *s = &r->slot[i];
    pthread_mutex_lock(&guard_lock);
    s->block = block;
    s->size = size;
    s->state = SLOT_LIVE;
    s->nfree = 0;
    r->live++;
    r->guarded_total++;
    PM_DEBUG_CHECK(2, "the guarded region after an allocation", check_locked(r));
    pthread_mutex_unlock(&guard_lock);
    s->nalloc = capture(s->alloc_frames, ra);
    return block;
}

void _pm_guard_free(const char *func, void *p) {
    guard_region_t *r = atomic_load_explicit(&region, memory_order_acquire);
    unsigned i = 0;
    if (!slot_index(r, p, &i))
        _pm_invalid_free(func, p, "invalid pointer (inside poolmalloc's guarded region but not in a slot)");
    guard_slot_t *s = &r->slot[i];
    pthread_mutex_lock(&guard_lock);
    uint32_t state = s->block == p ? s->state : SLOT_UNUSED;
    if (state == SLOT_LIVE) {             /* from here on a second free of p is a double free */
        s->state = SLOT_FREED;
        r->live--;
    }
    pthread_mutex_unlock(&guard_lock);
    if (state == SLOT_FREED) _pm_invalid_free(func, p, "double free (guarded block is already free)");
    if (state != SLOT_LIVE) _pm_invalid_free(func, p, "invalid pointer (inside a guarded slot but not its block)");
    uint8_t *block = p, *end = slot_data(r, i) + r->data, *open = page_floor(r, block);
    uint8_t c = pattern_of(block), *head = block - open > HEAD_PATTERN ? block - HEAD_PATTERN : open;
    if (!pattern_intact(block + s->size, end, c))
        _pm_invalid_free(func, p, "heap-buffer-overflow (the bytes after a guarded block, before its guard page, were written)");
    if (!pattern_intact(head, block, c))
        _pm_invalid_free(func, p, "heap-buffer-underflow (the bytes before a guarded block, on its first page, were written)");
    _pm_os_protect(open, (size_t)(end - open), false);   /* can only fail for want of kernel memory */
    s->nfree = capture(s->free_frames, NULL);
    pthread_mutex_lock(&guard_lock);
    ring_push_tail(r, i);
    PM_DEBUG_CHECK(2, "the guarded region after a free", check_locked(r));
    pthread_mutex_unlock(&guard_lock);
}

size_t _pm_guard_usable(const char *func, const void *p) {
    guard_region_t *r = atomic_load_explicit(&region, memory_order_acquire);
    unsigned i = 0;
    uint32_t state = SLOT_UNUSED;
    size_t size = 0;
    if (slot_index(r, p, &i)) {
        pthread_mutex_lock(&guard_lock);
        if (r->slot[i].block == p) { state = r->slot[i].state; size = r->slot[i].size; }
        pthread_mutex_unlock(&guard_lock);
    }
    if (state == SLOT_FREED) _pm_invalid_free(func, p, "invalid pointer (guarded block is already free)");
    if (state != SLOT_LIVE) _pm_invalid_free(func, p, "invalid pointer (inside poolmalloc's guarded region but not a block)");
    return size;
}

/* The block nearest addr among its slot and the two beside it: a fault past a block's end lands
 * in the guard page after it, one in front of it in its slot's closed pages or the guard page
 * before, and one inside it only once it is freed. No lock: this runs in a fault handler, and the
 * faulting thread may hold guard_lock itself. */
bool _pm_guard_describe(const void *addr, pm_guard_fault_t *out) {
    memset(out, 0, sizeof *out);
    guard_region_t *r = atomic_load_explicit(&region, memory_order_acquire);
    if (!_pm_is_guard_ptr(addr) || r == NULL || (void *)_pm_arena_of(addr) != (void *)r) return false;
    const uint8_t *a = addr;
    size_t j = a < r->first ? 0 : (size_t)(a - r->first) / r->stride;
    if (j >= r->nslots) j = r->nslots - 1;
    const guard_slot_t *best = NULL;
    size_t best_distance = SIZE_MAX;
    for (size_t k = j ? j - 1 : 0; k <= j + 1 && k < r->nslots; k++) {
        const guard_slot_t *s = &r->slot[k];
        if (s->state == SLOT_UNUSED || s->block == NULL) continue;
        const uint8_t *end = s->block + s->size;
        size_t d = a < s->block ? (size_t)(s->block - a) : a >= end ? (size_t)(a - end) + 1 : 0;
        if (d < best_distance) { best = s; best_distance = d; }
    }
    out->kind = PM_GUARD_PAGE;
    if (best == NULL) return true;
    out->block = best->block;
    out->size = best->size;
    out->freed = best->state == SLOT_FREED;
    if (a < best->block) out->kind = PM_GUARD_UNDERFLOW;
    else if (a >= best->block + best->size) out->kind = PM_GUARD_OVERFLOW;
    else if (out->freed) out->kind = PM_GUARD_USE_AFTER_FREE;
    out->nalloc = best->nalloc < PM_GUARD_FRAMES ? best->nalloc : PM_GUARD_FRAMES;
    out->nfree = !out->freed ? 0 : best->nfree < PM_GUARD_FRAMES ? best->nfree : PM_GUARD_FRAMES;
    memcpy(out->alloc_frames, best->alloc_frames, out->nalloc * sizeof(void *));
    memcpy(out->free_frames, best->free_frames, out->nfree * sizeof(void *));
    return true;
}

void _pm_guard_counts(pm_guard_counts_t *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&guard_lock);
    guard_region_t *r = atomic_load_explicit(&region, memory_order_relaxed);
    if (r) {
        out->slots = r->nslots;
        out->live = r->live;
        out->guarded_total = r->guarded_total;
    }
    pthread_mutex_unlock(&guard_lock);
}

/* A slot being opened or closed by a thread that the child lacks stays out of the ring there: the
 * child loses that slot, never hands it out twice. */
void _pm_guard_fork_prepare(void) { pthread_mutex_lock(&guard_lock); }
void _pm_guard_fork_parent(void) { pthread_mutex_unlock(&guard_lock); }
void _pm_guard_fork_child(void) { pthread_mutex_init(&guard_lock, NULL); }
