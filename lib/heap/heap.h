/* heap/heap.h: the heap layer, the drop-in allocator: its types and cross-file prototypes. The
 * layers above include this file and no other of this folder; it ends with the fast paths.
 *
 * Glossary (CPython's obmalloc vocabulary, made thread-safe):
 *   block  one allocation handed to the program. Always 16-byte aligned, at least 16 bytes.
 *   pool   a run of 1..64 slots (16 KiB each) carved into blocks of ONE size class. It has a local
 *          free list (owner thread only), an atomic remote list (frees from other threads), and a
 *          carve offset: blocks past it were never handed out. Its descriptor lives in the arena
 *          header, never among the blocks, so finding it never touches the program's bytes.
 *   arena  a 4 MiB mapping aligned to 4 MiB. Slots 0..2 hold the arena header (slot map and
 *          pool descriptors); slots 3..255 hold pools. `p & ~(PM_ARENA_SIZE-1)` is the arena of any block p.
 *   heap   what one thread allocates from: per size class, a list of its pools that have (or may
 *          get) free blocks. Pools belong to exactly one heap. A heap whose thread exited is
 *          abandoned and adopted whole by the next thread that needs a heap.
 *   huge   a request above the largest class (1 MiB), or with alignment above 16 KiB: a run of
 *          pages of its own mapping or of a cached freed run, recorded in a registry (huge.c)
 *          keyed by the block's address.
 *   guarded a sampled allocation (guard:N) served from a slot of guard.c's region instead: it ends
 *          where an inaccessible page starts, and its pages turn inaccessible when it is freed.
 *
 * Inside the folder, calls go one way: the fast paths (malloc_fast.h, free_fast.h) -> their slow
 * paths (slow_path.c; realloc.c builds on both) -> heap.c -> pool.c -> arena.c and huge.c, with
 * purge.c returning what arena.c and huge.c let decay. */
#ifndef PM_HEAP_H
#define PM_HEAP_H
#include "util/util.h"

#pragma GCC visibility push(hidden)

/* ---- Tunables and the layout they imply (see arena.c and pool.c for the reasons) ---------- */
#define PM_ARENA_SHIFT   22                       /* 4 MiB arenas: few mmaps, one 64-bit slot map */
#define PM_ARENA_SIZE    ((size_t)1 << PM_ARENA_SHIFT)
#define PM_SLOT_SHIFT    14                       /* 16 KiB slots, as pymalloc's pools (arena.c) */
#define PM_SLOT_SIZE     ((size_t)1 << PM_SLOT_SHIFT)
#define PM_SLOTS         (PM_ARENA_SIZE / PM_SLOT_SIZE)   /* 256 */
#define PM_SLOT_WORDS    (PM_SLOTS / 64)          /* a set of slots is this many uint64_t */
#define PM_HEADER_SLOTS  3                        /* sizeof(pm_arena_t): 35 KiB (asserted below) */
#define PM_POOL_MAX_SLOTS 64                      /* the largest pool spans 1 MiB */
#define PM_HOLD_MAX_SLOTS ((64 * PM_KIB) / PM_SLOT_SIZE) /* the current pool is held if at most 64 KiB (heap.c) */
#define PM_ALIGN_SHIFT   4
#define PM_ALIGN         (1 << PM_ALIGN_SHIFT)    /* every block is 16-byte aligned */
#define PM_SMALL_SHIFT   9
#define PM_SMALL_MAX     (1 << PM_SMALL_SHIFT)    /* 16-byte steps up to 512, as pymalloc */
#define PM_SMALL_CLASSES (PM_SMALL_MAX / PM_ALIGN) /* 32 */
#define PM_STEPS_SHIFT   2                        /* 4 classes per doubling above 512: jemalloc's */
#define PM_STEPS         (1 << PM_STEPS_SHIFT)    /*   spacing, at most 20% of a block lost */
#define PM_LARGE_SHIFT   20
#define PM_LARGE_MAX     ((size_t)1 << PM_LARGE_SHIFT) /* largest pooled size; above it: huge */
#define PM_LARGE_POOL_MIN (64 * PM_KIB)           /* a pool above 512 B spans this at least (size_class.c) */
#define PM_POOL_ALIGN_MAX PM_SLOT_SIZE            /* aligned requests above this go huge */
#define PM_NCLASSES      (PM_SMALL_CLASSES + (PM_LARGE_SHIFT - PM_SMALL_SHIFT) * PM_STEPS)   /* 76 */
#define PM_FOREIGN_CLASSES PM_SMALL_CLASSES       /* the classes of a heap's foreign cache (heap.c) */
#define PM_ADDR_BITS     47                       /* user address space covered by the arena map */

_Static_assert(PM_SLOTS % 64 == 0 && PM_POOL_MAX_SLOTS <= 64, "slot sets are whole words; a run fits in two");
_Static_assert(PM_LARGE_MAX <= PM_POOL_MAX_SLOTS * PM_SLOT_SIZE, "the largest class must fit in the largest pool");

/* ---- Types --------------------------------------------------------------------------------- */
typedef struct pm_block_s pm_block_t;
typedef struct pm_pool_s  pm_pool_t;
typedef struct pm_arena_s pm_arena_t;
typedef struct pm_heap_s  pm_heap_t;

/* A free block. Word 0 links the free list; word 1 holds the free mark (pm_free_mark) so that a
 * second free of the same block is caught without a bitmap. malloc zeroes word 1. */
struct pm_block_s {
    pm_block_t *next;
    uintptr_t   mark;
};

/* pool->flags. The free fast path leaves for the slow path with the one signed test
 * `--used <= 0`, which covers "the pool just emptied" and both flags:
 *   FULL     the pool is off its heap's lists, waiting for frees. It comes back once an eighth
 *            of it is free (heap.c), so `full_bias` (that count less an eighth) is taken out of
 *            `used` while it is full: `used` reaches 0 exactly at the free that brings it back.
 *   SAMPLED  some live block of the pool is sampled: frees must check the pool's sample bitmap,
 *            so `used` carries PM_USED_SLOW, its sign bit, and every free takes the slow path.
 *            Set by the owner when it samples a block; cleared by the owner once `sampled` is 0.
 * Readers other than the fast paths use _pm_pool_used(), which undoes both. */
#define PM_POOL_FULL    1u
#define PM_POOL_SAMPLED 2u
#define PM_USED_SLOW    0x80000000u

/* The low bit of pool->remote: set by the owner when the pool is full and off its heap's lists.
 * The next remote free then clears it and routes its block to the heap's delayed list, so the
 * owner learns that the pool has space again (mimalloc's "delayed free"). */
#define PM_REMOTE_NOTIFY ((uintptr_t)1)

/* Pool descriptor: 128 bytes, one per slot, in the arena header. The first cache line holds
 * everything the malloc/free fast paths touch. Invariant (checked by _pm_pool_check):
 *   used + (blocks on the local free list) + (capacity - carved blocks) == capacity,
 *   where `used` counts blocks handed out and not yet returned to the owner (blocks on the
 *   remote list or the heap's delayed list are still `used`). */
struct pm_pool_s {
    /* line 0: what every free of the pool's blocks reads, from any thread; written rarely (when
     * the pool is made, goes full or comes back, and by remote frees when the freeing thread's
     * foreign cache is full). Kept apart from line 1, which the owner writes at every malloc and
     * free, so that other threads' frees read a clean, shared line instead of taking the
     * owner's line away from its core. */
    pm_heap_t      *heap;        /* owner; fixed while any block is out */
    uint64_t        divisor;     /* UINT64_MAX / block_size + 1: divisibility without a divide */
    uint8_t        *start;       /* first byte of block 0; the last block ends where the pool ends */
    _Atomic uintptr_t remote;    /* remote-free stack | PM_REMOTE_NOTIFY */
    uint32_t        block_size;
    uint32_t        capacity;
    uint8_t         flags;       /* PM_POOL_FULL | PM_POOL_SAMPLED; owner writes (relaxed atomic) */
    uint8_t         size_class;
    uint8_t         slots;       /* 0 while the slot is free */
    uint8_t         _pad0[21];
    /* line 1: the owner's: the free list and count the fast paths update, and the lists */
    pm_block_t     *free;        /* local free list, owner only */
    uint32_t        used;        /* blocks out, | PM_USED_SLOW; owner writes, stats read relaxed */
    uint32_t        carved;      /* blocks carved from the never-used tail so far */
    pm_pool_t      *next, *prev; /* the heap's list for this class */
    uint32_t        full_bias;   /* while FULL: taken out of `used` (see PM_POOL_FULL) */
    _Atomic uint32_t sampled;    /* sampled blocks live in this pool (sample.c) */
    _Atomic uint64_t *sampled_bits; /* one bit per block: sampled and live; NULL until needed */
    uint8_t         held;        /* 1 while the heap holds a count in `used` (heap.c, "current") */
    uint8_t         _pad1[15];
};
_Static_assert(sizeof(pm_pool_t) == 2 * PM_CACHELINE && offsetof(pm_pool_t, free) == PM_CACHELINE,
               "a pool descriptor is two cache lines, the owner's second");

typedef struct { uint64_t w[PM_SLOT_WORDS]; } pm_slotset_t;   /* bit i: slot i */

/* The arena header. `heads` maps each slot to its pool, in a compact array so that making or
 * releasing a pool of many slots writes a few cache lines, not one per slot; a slot that belongs
 * to no pool maps to a pool no free can match (arena.c). pools[i] is the descriptor of a pool
 * that starts at slot i; the header slots' own entries are unused. */
struct pm_arena_s {
    pm_pool_t      *heads[PM_SLOTS];
    uint32_t        freed_ms[PM_SLOTS]; /* when each free slot was freed (_pm_os_now_ms) */
    pm_slotset_t    slots_used;         /* slots that belong to a pool, and the header slots */
    pm_slotset_t    slots_dirty;        /* free slots whose pages may still be resident */
    pm_slotset_t    slots_open;         /* slots that may be touched; the rest is PROT_NONE (arena.c) */
    pm_arena_t     *next, *prev;        /* bucket list by the longest run of free slots (arena.c) */
    pm_arena_t     *all_next;           /* every mapped arena */
    uint32_t        nfree;              /* free slots */
    uint32_t        max_run;            /* the longest run of free slots */
    pm_pool_t       pools[PM_SLOTS] __attribute__((aligned(PM_CACHELINE)));
};
_Static_assert(sizeof(pm_arena_t) <= PM_HEADER_SLOTS * PM_SLOT_SIZE && sizeof(pm_arena_t) > (PM_HEADER_SLOTS - 1) * PM_SLOT_SIZE,
               "the header takes exactly PM_HEADER_SLOTS slots");

/* The sampler's hook: the one way the lens (lens/sample.c) reaches into the heap. Each heap
 * counts down `left`, the bytes to the next sample point, on the malloc fast path. When it runs
 * out, or the epoch moved, the slow path calls the registered sampler's `arm`, which draws the
 * next distance and says what to do with this allocation: sample it (PM_ARM_SAMPLE: `record`
 * gets the block, and marks it sampled in its pool (_pm_pool_sample_mark) or the huge registry),
 * or guard it (PM_ARM_GUARD: the slow path asks guard.c for a guarded slot), never both. A free
 * of a marked block calls `forget`. `stack` captures the caller's stack for guard.c. With no
 * sampler registered (before start-up ends), the countdown idles. */
typedef struct {
    int64_t  left;         /* bytes until the next sample point */
    uint32_t epoch;        /* _pm_sample_epoch when `left` was drawn */
    bool     busy;         /* inside the sampler: do not sample again */
    bool     guard_due;    /* a guard point fell on a sampled allocation: guard the next one */
    uint64_t rng;          /* the sampler's random state for this heap */
} pm_sample_point_t;
#define PM_ARM_SAMPLE 1u
#define PM_ARM_GUARD  2u
typedef struct {
    unsigned (*arm)(pm_sample_point_t *sp, size_t size);                  /* 0, PM_ARM_SAMPLE or PM_ARM_GUARD */
    void (*record)(pm_sample_point_t *sp, void *p, size_t size, void *ra); /* p: just allocated */
    void (*forget)(void *p);                                              /* p, sampled, is freed */
    unsigned (*stack)(void **frames, unsigned max, void *ra);             /* the caller's, from ra (or NULL) */
    /* For an error message about p (a block, or an address just inside one): append where a
     * sampled block there was allocated, if the sampler knows. May not wait for a lock. */
    bool (*describe)(const void *p, pm_out_t *o);
} pm_sampler_t;
/* With sampling off the countdown still runs: it comes back to the slow path every 1 GiB, or sooner
 * when the epoch changes, which is how a sampler or a rate set at run time reaches every thread. */
#define PM_SAMPLE_IDLE ((int64_t)1 << 30)

/* heap->avail[c + 1] is what the malloc fast path pops class c from: the class's current pool
 * (the first of lists[c]), or the heap's foreign cache of the class (heap.c). avail[0] is always
 * &_pm_pool_empty, so that _pm_avail_index maps sizes 1..16 to class 0 with one add and one
 * shift and sends size 0 to the slow path, which serves it from class 0. */
struct pm_heap_s {
    pm_pool_t      *avail[PM_NCLASSES + 1]; /* the fast path's pool per class; &_pm_pool_empty: none */
    pm_pool_t      *lists[PM_NCLASSES];     /* each class's pools with free blocks; &_pm_pool_empty: none */
    pm_pool_t      *last[PM_NCLASSES];      /* the last pool of each class's list; NULL when none */
    pm_pool_t      *spare[PM_NCLASSES];     /* an empty pool kept for the class (heap.c); NULL: none */
    pm_sample_point_t sample;           /* the sampler's countdown (the hook, below) */
    _Atomic(pm_block_t *) delayed;      /* blocks freed remotely into full pools */
    pm_block_t     *quarantine, *quarantine_tail; /* hardened: freed blocks not yet reusable (heap.c) */
    size_t          quarantine_bytes;
    pm_heap_t      *all_next;           /* every heap (under the heap lock) */
    pm_heap_t      *abandoned_next;     /* the abandoned stack (under the heap lock) */
    bool            abandoned;
    bool            is_static;          /* the empty heap: nothing may be allocated from it */
    /* The foreign cache (heap.c): per class, blocks of other threads' pools that this thread
     * freed, shaped as a pool so that the malloc fast path pops them like any pool. `free` is
     * the list, `used` is minus the number of blocks in it, `block_size` the most it may hold
     * (0: the class is not cached; always so in the static empty heap). */
    pm_pool_t       foreign[PM_FOREIGN_CLASSES] __attribute__((aligned(PM_CACHELINE)));
};

/* Class c's list of pools in `heap`: its first pool is the current one. */
#define PM_HEAP_POOLS(heap, c) ((heap)->lists[(c)])

/* ---- size_class.c ------------------------------------------------------------------------- */
typedef struct {
    uint32_t size;       /* block size */
    uint32_t capacity;   /* blocks per pool */
    uint8_t  slots;      /* slots per pool */
} pm_class_info_t;
extern pm_class_info_t _pm_classes[PM_NCLASSES];
void     _pm_classes_init(void);

/* Size -> class by arithmetic alone (no table to miss in the cache). Sizes 0..512 map to classes
 * 0..31 (size 0 is served as 16 bytes); above, x = size-1 lies in [2^b, 2^(b+1)) and its
 * PM_STEPS_SHIFT bits below the top one pick one of the PM_STEPS classes of that doubling. */
PM_INLINE unsigned _pm_class_of(size_t size) {
    if (PM_LIKELY(size <= PM_SMALL_MAX)) return (unsigned)((size + (size == 0) - 1) >> PM_ALIGN_SHIFT);
    size_t x = size - 1;
    unsigned b = 63u - (unsigned)__builtin_clzll(x);
    return PM_SMALL_CLASSES + (b - PM_SMALL_SHIFT) * PM_STEPS + ((unsigned)(x >> (b - PM_STEPS_SHIFT)) & (PM_STEPS - 1));
}

/* The fast path's index into heap->avail: class + 1; 0 (always an empty pool, so: the slow
 * path) for size 0 and for sizes above the largest class (see pm_heap_s). Up to 512 bytes by
 * arithmetic; up to 64 KiB by a table with one entry per 128 bytes (every class boundary in
 * that range is a multiple of 128; size_class.c fills it, and until then it sends every size to
 * the slow path, which initializes); above, by _pm_class_of. */
#define PM_TABLE_MAX   (64 * PM_KIB)
#define PM_TABLE_SHIFT 7                          /* one entry per 128 bytes */
extern uint8_t _pm_avail_table[PM_TABLE_MAX >> PM_TABLE_SHIFT];
PM_INLINE size_t _pm_avail_index(size_t size) {
    if (PM_LIKELY(size <= PM_SMALL_MAX)) return (size + PM_ALIGN - 1) >> PM_ALIGN_SHIFT;
    if (size <= PM_TABLE_MAX) return _pm_avail_table[(size - 1) >> PM_TABLE_SHIFT];
    if (size <= PM_LARGE_MAX) return (size_t)_pm_class_of(size) + 1;
    return 0;
}


/* ---- purge.c: the background purge thread ------------------------------------------------- */
#define PM_PURGE_NONE   UINT32_MAX                /* "nothing waits to be purged" */
#define PM_PURGE_WANTED 1                         /* _pm_purge_state: start the thread */
extern _Atomic int _pm_purge_state;
void _pm_purge_note(void);                        /* memory waits for decay (arena or huge lock held) */
void _pm_purge_start_slow(void);
void _pm_purge_allow(void);                       /* start-up: the thread may start now */
const char *_pm_purge_thread_state(void);         /* "idle", "starting", "running" or "off" */
void _pm_purge_fork_child(void);
/* From slow paths that hold no lock: start the thread if a note asked for it. */
PM_INLINE void _pm_purge_start(void) {
    if (PM_UNLIKELY(atomic_load_explicit(&_pm_purge_state, memory_order_relaxed) == PM_PURGE_WANTED))
        _pm_purge_start_slow();
}

/* ---- arena.c ------------------------------------------------------------------------------ */
/* The arena map: per 4 MiB of address space, 0 (not ours), PM_MAP_ARENA, PM_MAP_ZERO (zero.c) or
 * PM_MAP_GUARD (guard.c). */
#define PM_MAP_ARENA 1
#define PM_MAP_ZERO  2
#define PM_MAP_GUARD 3
extern uint8_t _pm_arena_map[(size_t)1 << (PM_ADDR_BITS - PM_ARENA_SHIFT)];
extern pthread_mutex_t _pm_arena_lock;
pm_pool_t *_pm_arena_pool_acquire(unsigned size_class); /* NULL + ENOMEM when out of memory */
void       _pm_arena_pool_release(pm_pool_t *pool);
size_t     _pm_arena_trim(void);                     /* decommit free slots, unmap free arenas */
uint32_t   _pm_arena_purge_due(uint32_t now);        /* return what decayed; ms to the next, or PM_PURGE_NONE */
typedef struct {
    size_t arenas, arenas_mapped_total, arenas_unmapped_total;
    size_t free_slots, dirty_slots;
    size_t returned_bytes;                           /* decommitted or unmapped, in total */
} pm_arena_counts_t;
void _pm_arena_counts(pm_arena_counts_t *out);        /* caller holds _pm_arena_lock */
pm_arena_t *_pm_arena_first(void);                   /* caller holds _pm_arena_lock */
const char *_pm_arena_check(void);                  /* every arena: NULL, or the invariant that failed */

PM_INLINE bool _pm_is_arena_ptr(const void *p) {
    uintptr_t i = (uintptr_t)p >> PM_ARENA_SHIFT;
    return i < sizeof _pm_arena_map && _pm_arena_map[i] != 0;
}
PM_INLINE pm_arena_t *_pm_arena_of(const void *p) {
    return (pm_arena_t *)((uintptr_t)p & ~(PM_ARENA_SIZE - 1));
}
PM_INLINE pm_pool_t *_pm_pool_of(const void *p) {
    pm_arena_t *arena = _pm_arena_of(p);
    return arena->heads[((uintptr_t)p >> PM_SLOT_SHIFT) & (PM_SLOTS - 1)];
}

/* ---- pool.c ------------------------------------------------------------------------------- */
extern uintptr_t _pm_free_key;             /* random, odd, set at start-up */
/* The free mark of block b (word 1 of a free block): a random key xor the block's address, so a
 * program's own data matches it with probability 2^-64 and a stale mark from another address never does. */
PM_INLINE uintptr_t _pm_free_mark(const void *b) { return _pm_free_key ^ (uintptr_t)b; }
extern pm_pool_t _pm_pool_empty;           /* free == NULL: sends every allocation to the slow path */
void   _pm_pool_init(pm_pool_t *pool, pm_heap_t *heap);
bool   _pm_pool_refill(pm_pool_t *pool);   /* drain remote, else carve; false when full */
/* A memory error at p: one line with the sampler's account of p's block (its allocation site, when
 * sampled), then abort. Every error of the heap ends here. */
_Noreturn void _pm_heap_fatal(const void *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void   _pm_heap_set_describer(bool (*describe)(const void *p, pm_out_t *o));
bool   _pm_pool_carve(pm_pool_t *pool);    /* a page of fresh blocks onto the free list; false: none left */
size_t _pm_pool_drain_remote(pm_pool_t *pool);
bool   _pm_pool_mark_full(pm_pool_t *pool);/* false if a remote free arrived meanwhile */
void   _pm_pool_clear_notify(pm_pool_t *pool);
const char *_pm_pool_check(const pm_pool_t *pool); /* owner: NULL, or the invariant that failed */
bool   _pm_pool_sample_mark(pm_pool_t *pool, const void *p);   /* owner; false if out of memory */
bool   _pm_pool_sample_unmark(pm_pool_t *pool, const void *p); /* any thread; was p marked? */
void   _pm_pool_sample_release(pm_pool_t *pool);               /* the pool is empty */
void   _pm_pool_fork_prepare(void);
void   _pm_pool_fork_parent(void);
void   _pm_pool_fork_child(void);
uint32_t _pm_pool_free_count(const pm_pool_t *pool); /* owner only */

/* `used` is written by the pool's owner only, but statistics walks read it from other threads:
 * writes are relaxed atomic stores (a plain mov on x86-64), owner reads are plain. */
PM_INLINE uint32_t _pm_pool_used_add(pm_pool_t *pool, uint32_t delta) {
    uint32_t used = pool->used + delta;
    __atomic_store_n(&pool->used, used, __ATOMIC_RELAXED);
    return used;
}
/* The fast paths' updates of `used`: one instruction on x86-64 (a memory add, and for free its
 * flags), where C's relaxed store makes three (load, add, store) and an atomic RMW would lock the
 * bus. Only the owner writes `used` and readers load it relaxed, so a plain add of an aligned
 * word is what the relaxed store is. Elsewhere (and under TSan, which must see the access), C. */
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__) && !defined(__SANITIZE_THREAD__)
PM_INLINE void _pm_pool_used_inc(pm_pool_t *pool) { __asm__("addl $1, %0" : "+m"(pool->used)); }
/* --used, and is it now <= 0 as a signed number (empty, or flagged: see PM_POOL_FULL)? */
PM_INLINE bool _pm_pool_used_dec_le0(pm_pool_t *pool) {
    bool le;
    __asm__("subl $1, %0" : "+m"(pool->used), "=@ccle"(le));
    return le;
}
#else
PM_INLINE void _pm_pool_used_inc(pm_pool_t *pool) { _pm_pool_used_add(pool, 1); }
PM_INLINE bool _pm_pool_used_dec_le0(pm_pool_t *pool) { return (int32_t)_pm_pool_used_add(pool, (uint32_t)-1) <= 0; }
#endif
/* Blocks out: the count in `used`, without PM_USED_SLOW, plus full_bias. */
PM_INLINE uint32_t _pm_pool_used(const pm_pool_t *pool) {
    return (__atomic_load_n(&pool->used, __ATOMIC_RELAXED) & ~PM_USED_SLOW) +
           __atomic_load_n(&pool->full_bias, __ATOMIC_RELAXED);
}
/* Set pool->flags, and PM_USED_SLOW with SAMPLED. Owner only. */
PM_INLINE void _pm_pool_set_flags(pm_pool_t *pool, uint8_t flags) {
    __atomic_store_n(&pool->flags, flags, __ATOMIC_RELAXED);
    uint32_t used = (pool->used & ~PM_USED_SLOW) | ((flags & PM_POOL_SAMPLED) ? PM_USED_SLOW : 0);
    __atomic_store_n(&pool->used, used, __ATOMIC_RELAXED);
}

/* Is p the start of a block of this pool? off is a multiple of block_size exactly when
 * off * ceil(2^64 / block_size) wraps to less than that constant (Lemire, Kaser and Kurz, "Faster
 * remainder by direct computation", 2019; exact for every 32-bit off). The pool's blocks end
 * where its last slot ends, and the tail (less than one block) is in front of block 0, so every
 * p in the pool's slots has an off in [-tail, capacity * block_size): no bound check is needed
 * above, and below, the wrapped offsets of the tail all fail the test (test_size_class checks
 * every byte of every class's tail). */
PM_INLINE bool _pm_pool_is_block_start(const pm_pool_t *pool, const void *p) {
    uint64_t off = (uint64_t)((uintptr_t)p - (uintptr_t)pool->start);
    return off * pool->divisor < pool->divisor;
}

/* ---- zero.c: malloc(0) hands out pointers into address space that faults ------------------- */
void  *_pm_zero_alloc(void);                         /* NULL + ENOMEM when out of address space */
void   _pm_zero_free(const char *func, void *p);     /* p in a zero arena; aborts if not a live block */
bool   _pm_zero_owns(const void *p);                 /* p in a zero arena: is it a live zero-size block? */
size_t _pm_zero_count(void);                         /* zero-size blocks out */
void   _pm_zero_fork_prepare(void);
void   _pm_zero_fork_parent(void);
void   _pm_zero_fork_child(void);
PM_INLINE bool _pm_is_zero_ptr(const void *p) {
    uintptr_t i = (uintptr_t)p >> PM_ARENA_SHIFT;
    return i < sizeof _pm_arena_map && _pm_arena_map[i] == PM_MAP_ZERO;
}

/* ---- guard.c: guarded slots, for sampled allocations (POOLMALLOC_CONF guard:N) ------------- */
#define PM_GUARD_SLOTS    128                     /* slots in the one guarded region */
#define PM_GUARD_MAX_SIZE (16 * PM_KIB)           /* larger requests are never guarded */
#define PM_GUARD_FRAMES   32                      /* frames kept of each allocating and freeing stack */
_Static_assert(PM_GUARD_MAX_SIZE <= PM_LARGE_MAX, "a guarded request is never a huge calloc (which skips its memset)");
void  *_pm_guard_alloc(size_t size, size_t align, void *ra); /* NULL: not guarded (too big, no slot) */
void   _pm_guard_free(const char *func, void *p);   /* p in the region; aborts if not a live block */
size_t _pm_guard_usable(const char *func, const void *p); /* the size asked for; aborts if not live */
/* What a faulting address in the region hit, for the fault report (lens/guard_report.c). */
enum { PM_GUARD_PAGE, PM_GUARD_OVERFLOW, PM_GUARD_UNDERFLOW, PM_GUARD_USE_AFTER_FREE };
typedef struct {
    unsigned kind;                               /* PM_GUARD_*; PM_GUARD_PAGE: no block is near */
    const uint8_t *block;                        /* the nearest block (live or freed); NULL: none */
    size_t   size;
    bool     freed;
    unsigned nalloc, nfree;                      /* frames captured at its malloc and free */
    void    *alloc_frames[PM_GUARD_FRAMES], *free_frames[PM_GUARD_FRAMES];
} pm_guard_fault_t;
bool   _pm_guard_describe(const void *addr, pm_guard_fault_t *out); /* takes no lock: for a fault handler */
typedef struct { size_t slots, live, guarded_total; } pm_guard_counts_t;
void   _pm_guard_counts(pm_guard_counts_t *out);    /* slots 0 until the first guarded allocation */
const char *_pm_guard_check(void);                 /* takes the lock: NULL, or the invariant that failed */
void   _pm_guard_fork_prepare(void);
void   _pm_guard_fork_parent(void);
void   _pm_guard_fork_child(void);
PM_INLINE bool _pm_is_guard_ptr(const void *p) {
    uintptr_t i = (uintptr_t)p >> PM_ARENA_SHIFT;
    return i < sizeof _pm_arena_map && _pm_arena_map[i] == PM_MAP_GUARD;
}

/* ---- heap.c ------------------------------------------------------------------------------- */
extern pm_heap_t _pm_heap_empty;
/* What the fast paths use: the thread's heap, or &_pm_heap_empty (before its first slow path, and
 * always when hardened, so that every call goes to the slow paths; _pm_heap_get gives the heap). */
extern __thread pm_heap_t *_pm_heap_tls __attribute__((tls_model("initial-exec")));
pm_heap_t *_pm_heap_get(void);            /* the thread's heap, acquiring one if needed */
extern __thread pm_heap_t *_pm_heap_own __attribute__((tls_model("initial-exec"))); /* the thread's heap, or the empty one */
/* _pm_heap_get with its common case inline: the hardened paths ask at every call. */
PM_INLINE pm_heap_t *_pm_heap_mine(void) {
    pm_heap_t *heap = _pm_heap_own;
    return PM_LIKELY(!heap->is_static) ? heap : _pm_heap_get();
}
void *_pm_heap_alloc(pm_heap_t *heap, unsigned size_class, bool foreign_ok); /* a real heap; NULL + ENOMEM */
void  _pm_heap_foreign_counts(size_t counts[PM_FOREIGN_CLASSES]); /* blocks in every foreign cache */
void *_pm_orphan_alloc(unsigned size_class);                   /* for threads past their exit */
bool  _pm_thread_is_dead(void);
void  _pm_heap_free_slow(pm_heap_t *heap, pm_pool_t *pool, bool local); /* flags set, or empty */
void  _pm_heap_free_remote(pm_pool_t *pool, pm_block_t *block);
void  _pm_heap_collect_all(void);         /* drain delayed frees of every heap we can take */
void  _pm_heap_fork_prepare(void);
void  _pm_heap_fork_parent(void);
void  _pm_heap_fork_child(void);
size_t _pm_heap_count(size_t *abandoned);
const char *_pm_heap_check(pm_heap_t *heap);          /* owner: NULL, or the invariant that failed */
/* Hardened: a freed block (zeroed from byte 16, marked free) waits in its freeing thread's
 * quarantine; the oldest leave it, checked to be still zero, once it holds more than
 * PM_QUARANTINE_BYTES (the newest always stays). heap NULL: free it now. */
#define PM_QUARANTINE_BYTES (256 * PM_KIB)
/* Hardened: what a free zeroes and the quarantine checks, from the block's start (harden.c). */
#define PM_HARD_SPAN_MAX    (4 * PM_KIB + 128)
#define PM_HARD_SPAN(block_size) ((size_t)(block_size) < PM_HARD_SPAN_MAX ? (size_t)(block_size) : PM_HARD_SPAN_MAX)
/* Where the data starts in a hardened block of a class (alignments up to 16): after the 16-byte
 * header, and a 32-byte front canary in classes of 1 KiB and up (harden.c). */
#define PM_HARD_DATA_AT(block_size) ((size_t)16 + ((size_t)(block_size) >= 1024 ? 32 : 0))
void  _pm_heap_quarantine(pm_heap_t *heap, pm_pool_t *pool, pm_block_t *block);
void  _pm_heap_quarantine_flush(pm_heap_t *heap);
bool  _pm_bytes_zero(const void *p, size_t n);       /* pool.c */
const char *_pm_heap_check_class(pm_heap_t *heap, unsigned c);  /* the same, for one class */

/* ---- huge.c ------------------------------------------------------------------------------- */
void  *_pm_huge_alloc(size_t size, size_t align, bool zero);
bool   _pm_huge_free(void *p);            /* false if p is not a huge block */
size_t _pm_huge_usable(const void *p, bool *sampled); /* 0 if p is not a huge block */
void   _pm_huge_set_sampled(void *p);
void  *_pm_huge_realloc(void *p, size_t size, bool *handled); /* handled false: the caller copies */
uint32_t _pm_huge_purge_due(uint32_t now);   /* unmap what decayed; ms to the next, or PM_PURGE_NONE */
size_t _pm_huge_trim(void);                  /* unmap every cached run; returns the bytes */
typedef struct {
    size_t count, requested, mapped;          /* live huge blocks */
    size_t cached, cached_runs;               /* freed runs kept for reuse (resident) */
    size_t returned_bytes, reused_total;      /* unmapped from the cache; requests served from it */
} pm_huge_counts_t;
void   _pm_huge_counts(pm_huge_counts_t *out);
typedef struct { uintptr_t ptr; size_t size, mapped; } pm_huge_block_t;
size_t _pm_huge_list(pm_huge_block_t *out, size_t cap);  /* live huge blocks: how many; cap copied */
const char *_pm_huge_check(void);            /* takes the lock: NULL, or the invariant that failed */
void   _pm_huge_fork_prepare(void);
void   _pm_huge_fork_parent(void);
void   _pm_huge_fork_child(void);

/* ---- start-up (heap.c): the heap starts itself at its first slow path, before any layer above
 * has run: the size classes, the options (util), the free key, the thread-exit key. Nothing there
 * allocates, so it cannot recurse. */
extern _Atomic int _pm_heap_started;
void _pm_heap_start_slow(void);
PM_INLINE void _pm_heap_start(void) {
    if (PM_UNLIKELY(!atomic_load_explicit(&_pm_heap_started, memory_order_acquire))) _pm_heap_start_slow();
}

/* ---- harden.c: POOLMALLOC_CONF=hardened:true ------------------------------------------------
 * Every call goes to the slow paths (_pm_heap_tls stays empty), which hand pooled requests here:
 * a 16-byte header before the data, canaries around it, freed blocks zeroed and quarantined. */
extern bool _pm_hardened;                            /* fixed at start-up, before the first block */
void  *_pm_hard_alloc(pm_heap_t *heap, size_t size, size_t align, bool zero); /* heap NULL: orphan */
void  *_pm_hard_malloc(size_t size, void *ra);                     /* from _pm_malloc_slow */
void   _pm_hard_free(const char *func, pm_pool_t *pool, void *p);   /* p: an arena pointer */
size_t _pm_hard_usable(const char *func, const void *p);            /* the bytes asked for */
void  *_pm_hard_realloc(void *p, size_t size, void *ra);
void   _pm_hard_check_access(const char *func, const void *addr, size_t len); /* memcpy & co. */
void   _pm_forget_if_sampled(pm_pool_t *pool, void *p);             /* slow_path.c */

/* ---- slow_path.c and realloc.c (the fast paths are malloc_fast.h and free_fast.h) ----------- */
extern _Atomic uint32_t _pm_sample_epoch;      /* bumped to make every heap re-arm its countdown */
void   _pm_heap_set_sampler(const pm_sampler_t *s);  /* registers the lens's sampler; bumps the epoch */
void   _pm_heap_resample(void);                      /* bumps the epoch: a new rate, say */
void   _pm_sample_forget_hook(void *p);              /* p is marked sampled and being freed */
unsigned _pm_sample_stack_hook(void **frames, unsigned max, void *ra); /* the sampler's `stack`; 0 without one */
/* Every allocation the fast path does not finish: class c, or PM_NCLASSES for a huge block.
 * counted: the fast path already counted size for the sampler. NULL + ENOMEM when out of memory. */
void  *_pm_allocate(size_t size, unsigned c, size_t align, bool counted, bool zero, void *ra);
pm_pool_t *_pm_checked_pool(const char *func, void *p);  /* p's pool; aborts on an invalid or double free */
void  *_pm_malloc_slow(size_t size, bool counted, void *ra); /* counted: the fast path counted size */
void   _pm_free_slow(void *p);
void   _pm_free_local_slow(pm_heap_t *heap, pm_pool_t *pool, void *block); /* a pool flag or empty */
void  *_pm_calloc_at(size_t n, size_t size, void *ra);
void  *_pm_realloc_at(void *p, size_t size, void *ra);
void  *_pm_memalign_at(size_t align, size_t size, void *ra);
/* The return address of the function these expand in: where a sampled stack starts. */
#define _pm_calloc(n, size) _pm_calloc_at((n), (size), __builtin_return_address(0))
#define _pm_realloc(p, size) _pm_realloc_at((p), (size), __builtin_return_address(0))
#define _pm_memalign(align, size) _pm_memalign_at((align), (size), __builtin_return_address(0))
size_t _pm_usable_size(const void *p);
void   _pm_invalid_free(const char *func, const void *p, const char *why);


#pragma GCC visibility pop

#include "heap/malloc_fast.h"
#include "heap/free_fast.h"
#endif
