/* zero.c: malloc(0).
 *
 * A zero-size block must be a unique pointer that free() accepts, but the program may not read or
 * write a byte of it. So it points into address space that nothing may touch: a zero arena is a
 * 4 MiB aligned reservation, PROT_NONE but for its header, registered in the arena map as
 * PM_MAP_ZERO. Each 16-byte step of its body is one zero-size block, and a bitmap in the header
 * says which are out. A read or write through a zero-size block faults at once (glibc hands out
 * 16 usable bytes instead, and the error goes unseen).
 *
 * The header starts with a slot map whose every entry is a pool no block boundary matches, as the
 * free slots of ordinary arenas do, so the free fast path sends these pointers to the slow path
 * without a test of its own: malloc(0) and its free cost nothing elsewhere. They are rare, so one
 * lock serves them. Zero arenas are never unmapped: their number is bounded by the peak number of
 * zero-size blocks live at once (ZERO_BLOCKS per arena; the header is all they make resident).
 */
#include "heap/heap.h"

#include <errno.h>

#define ZERO_HEADER ((size_t)PM_HEADER_SLOTS * PM_SLOT_SIZE)
#define ZERO_BLOCKS ((PM_ARENA_SIZE - ZERO_HEADER) / PM_ALIGN)
#define ZERO_WORDS  (ZERO_BLOCKS / 64)

typedef struct zero_arena_s {
    pm_pool_t *heads[PM_SLOTS];           /* where pm_arena_t has it: _pm_pool_of reads it */
    struct zero_arena_s *next;
    size_t used, hint;                    /* blocks out; the word to search from */
    uint64_t bits[ZERO_WORDS];            /* bit i: block i is out */
} zero_arena_t;
_Static_assert(offsetof(zero_arena_t, heads) == offsetof(pm_arena_t, heads), "the free fast path reads heads");
_Static_assert(sizeof(zero_arena_t) <= ZERO_HEADER && ZERO_BLOCKS % 64 == 0, "the bitmap fits the header");

static pm_pool_t no_block;                /* divisor 0: _pm_pool_is_block_start is never true */
static pthread_mutex_t zero_lock = PTHREAD_MUTEX_INITIALIZER;
static zero_arena_t *zero_arenas;

static zero_arena_t *zero_arena_new(void) {
    zero_arena_t *z = _pm_os_reserve_aligned(PM_ARENA_SIZE, PM_ARENA_SIZE);
    if (z == NULL) return NULL;
    if (_pm_os_protect(z, ZERO_HEADER, true) != 0) {
        _pm_os_unmap(z, PM_ARENA_SIZE);
        errno = ENOMEM;
        return NULL;
    }
    for (unsigned i = 0; i < PM_SLOTS; i++) z->heads[i] = &no_block;
    z->next = zero_arenas;
    zero_arenas = z;
    _pm_arena_map[(uintptr_t)z >> PM_ARENA_SHIFT] = PM_MAP_ZERO;
    return z;
}

void *_pm_zero_alloc(void) {
    pthread_mutex_lock(&zero_lock);
    zero_arena_t *z = zero_arenas;
    while (z && z->used == ZERO_BLOCKS) z = z->next;
    if (z == NULL && (z = zero_arena_new()) == NULL) {
        pthread_mutex_unlock(&zero_lock);
        return NULL;                      /* errno ENOMEM */
    }
    size_t w = z->hint;
    while (z->bits[w] == UINT64_MAX) w = (w + 1) % ZERO_WORDS;   /* used < ZERO_BLOCKS: one has room */
    unsigned bit = (unsigned)__builtin_ctzll(~z->bits[w]);
    z->bits[w] |= (uint64_t)1 << bit;
    z->used++;
    z->hint = w;
    pthread_mutex_unlock(&zero_lock);
    return (uint8_t *)z + ZERO_HEADER + (w * 64 + bit) * PM_ALIGN;
}

/* Free a pointer into a zero arena: it must be a zero-size block that is out. */
void _pm_zero_free(const char *func, void *p) {
    zero_arena_t *z = (zero_arena_t *)_pm_arena_of(p);
    size_t off = (size_t)((uint8_t *)p - (uint8_t *)z);
    if (off < ZERO_HEADER || (off - ZERO_HEADER) % PM_ALIGN != 0)
        _pm_invalid_free(func, p, "invalid pointer (inside a poolmalloc zero-size arena but not a block)");
    size_t i = (off - ZERO_HEADER) / PM_ALIGN;
    uint64_t mask = (uint64_t)1 << (i % 64);
    pthread_mutex_lock(&zero_lock);
    bool out = (z->bits[i / 64] & mask) != 0;
    if (out) {
        z->bits[i / 64] &= ~mask;
        z->used--;
    }
    pthread_mutex_unlock(&zero_lock);
    if (!out) _pm_invalid_free(func, p, "double free (zero-size block is already free)");
}

/* Is p a zero-size block that is out? (malloc_usable_size and realloc ask before they use it.) */
bool _pm_zero_owns(const void *p) {
    zero_arena_t *z = (zero_arena_t *)_pm_arena_of(p);
    size_t off = (size_t)((const uint8_t *)p - (const uint8_t *)z);
    if (off < ZERO_HEADER || (off - ZERO_HEADER) % PM_ALIGN != 0) return false;
    size_t i = (off - ZERO_HEADER) / PM_ALIGN;
    pthread_mutex_lock(&zero_lock);
    bool out = (z->bits[i / 64] >> (i % 64)) & 1;
    pthread_mutex_unlock(&zero_lock);
    return out;
}

size_t _pm_zero_count(void) {
    size_t n = 0;
    pthread_mutex_lock(&zero_lock);
    for (zero_arena_t *z = zero_arenas; z; z = z->next) n += z->used;
    pthread_mutex_unlock(&zero_lock);
    return n;
}

void _pm_zero_fork_prepare(void) { pthread_mutex_lock(&zero_lock); }
void _pm_zero_fork_parent(void) { pthread_mutex_unlock(&zero_lock); }
void _pm_zero_fork_child(void) { pthread_mutex_init(&zero_lock, NULL); }
