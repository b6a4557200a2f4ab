/* huge.c: blocks above the largest class (1 MiB), and blocks aligned to more than 64 KiB.
 *
 * Each is its own mapping, page-rounded, starting exactly at the block (so mremap can grow it in
 * place or move it without copying). They are found through a registry: an open-addressing hash
 * table keyed by the block's address, with linear probing and backward-shift deletion (no
 * tombstones), kept in its own mapping and doubled when half full. One mutex guards it: a huge
 * allocation costs a system call anyway, so the lock is never the bottleneck. The registry is also
 * how free() tells a huge block from a pointer it never handed out.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <string.h>

typedef struct {
    uintptr_t ptr;        /* 0: empty */
    size_t    map_size;   /* bytes mapped, page multiple */
    size_t    size : 63;  /* bytes requested */
    size_t    sampled : 1;/* the sampler has a record of it */
} huge_entry_t;

static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static huge_entry_t *table;
static size_t table_cap, table_count, bytes_requested, bytes_mapped;

static size_t slot_of(uintptr_t p, size_t cap) {
    uint64_t h = (uint64_t)p >> 12;
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static huge_entry_t *find(uintptr_t p) {
    if (table_cap == 0) return NULL;
    for (size_t i = slot_of(p, table_cap);; i = (i + 1) & (table_cap - 1)) {
        if (table[i].ptr == p) return &table[i];
        if (table[i].ptr == 0) return NULL;
    }
}

static void put(huge_entry_t *t, size_t cap, huge_entry_t e) {
    size_t i = slot_of(e.ptr, cap);
    while (t[i].ptr) i = (i + 1) & (cap - 1);
    t[i] = e;
}

static bool grow(void) {
    size_t cap = table_cap ? table_cap * 2 : 256;
    huge_entry_t *t = _pm_os_map(cap * sizeof *t);
    if (t == NULL) return false;
    for (size_t i = 0; i < table_cap; i++)
        if (table[i].ptr) put(t, cap, table[i]);
    if (table) _pm_os_unmap(table, table_cap * sizeof *table);
    table = t;
    table_cap = cap;
    return true;
}

static void erase(huge_entry_t *e) {
    size_t i = (size_t)(e - table), j = i;
    table[i].ptr = 0;
    for (;;) {                            /* shift back later members of the probe run */
        j = (j + 1) & (table_cap - 1);
        if (table[j].ptr == 0) return;
        size_t home = slot_of(table[j].ptr, table_cap);
        bool movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) { table[i] = table[j]; table[j].ptr = 0; i = j; }
    }
}

static size_t page_round(size_t size) {
    size_t page = _pm_os_page_size();
    if (size > SIZE_MAX - page) return 0;
    return (size + page - 1) & ~(page - 1);
}

/* Fresh anonymous mappings read as zero, so `zero` needs no memset here. */
void *_pm_huge_alloc(size_t size, size_t align, bool zero) {
    (void)zero;
    size_t map_size = page_round(size ? size : 1);
    if (map_size == 0 || map_size > PTRDIFF_MAX) { errno = ENOMEM; return NULL; }
    void *p = align > _pm_os_page_size() ? _pm_os_map_aligned(map_size, align) : _pm_os_map(map_size);
    if (p == NULL) return NULL;
    pthread_mutex_lock(&huge_lock);
    if ((table_count + 1) * 2 > table_cap && !grow()) {
        pthread_mutex_unlock(&huge_lock);
        _pm_os_unmap(p, map_size);
        errno = ENOMEM;
        return NULL;
    }
    put(table, table_cap, (huge_entry_t){ (uintptr_t)p, map_size, size, 0 });
    table_count++;
    bytes_requested += size;
    bytes_mapped += map_size;
    pthread_mutex_unlock(&huge_lock);
    return p;
}

bool _pm_huge_free(void *p) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e == NULL) { pthread_mutex_unlock(&huge_lock); return false; }
    size_t map_size = e->map_size;
    bytes_requested -= e->size;
    bytes_mapped -= map_size;
    table_count--;
    erase(e);
    pthread_mutex_unlock(&huge_lock);
    _pm_os_unmap(p, map_size);
    return true;
}

size_t _pm_huge_usable(const void *p, bool *sampled) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    size_t n = e ? e->map_size : 0;
    if (e && sampled) *sampled = e->sampled;
    pthread_mutex_unlock(&huge_lock);
    return n;
}

void _pm_huge_set_sampled(void *p) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    if (e) e->sampled = 1;
    pthread_mutex_unlock(&huge_lock);
}

/* Resize a huge block to another huge size: in place when the page count is unchanged, otherwise
 * mremap, which grows in place when the address space after it is free and else moves the pages
 * without copying them. NULL with *is_huge false: p is not a huge block. */
void *_pm_huge_realloc(void *p, size_t size, bool *is_huge) {
    pthread_mutex_lock(&huge_lock);
    huge_entry_t *e = find((uintptr_t)p);
    *is_huge = e != NULL;
    if (e == NULL) { pthread_mutex_unlock(&huge_lock); return NULL; }
    size_t map_size = page_round(size), old_map = e->map_size;
    if (map_size == 0 || map_size > PTRDIFF_MAX) { pthread_mutex_unlock(&huge_lock); errno = ENOMEM; return NULL; }
    void *q = p;
    if (map_size != old_map) {
        q = _pm_os_remap(p, old_map, map_size);
        if (q == NULL) { pthread_mutex_unlock(&huge_lock); return NULL; }
    }
    huge_entry_t moved = { (uintptr_t)q, map_size, size, 0 };   /* the caller forgot its sample */
    bytes_requested += size - e->size;
    bytes_mapped += map_size - old_map;
    erase(e);
    put(table, table_cap, moved);
    pthread_mutex_unlock(&huge_lock);
    return q;
}

void _pm_huge_counts(pm_huge_counts_t *out) {
    pthread_mutex_lock(&huge_lock);
    out->count = table_count;
    out->requested = bytes_requested;
    out->mapped = bytes_mapped;
    pthread_mutex_unlock(&huge_lock);
}

void _pm_huge_fork_prepare(void) { pthread_mutex_lock(&huge_lock); }
void _pm_huge_fork_parent(void) { pthread_mutex_unlock(&huge_lock); }
void _pm_huge_fork_child(void) { pthread_mutex_init(&huge_lock, NULL); }
