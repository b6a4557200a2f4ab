/* table.c: the library's one hash table, and its one hash function.
 *
 * Open addressing over a power-of-two array of fixed-size entries, whose layout the caller
 * defines: the first word of an entry is its key, a nonzero uintptr_t, and 0 marks an empty slot.
 * An entry lives in the first free slot at or after its home slot (linear probing), so each entry
 * is reachable from its home without crossing an empty slot. Deletion keeps that true by shifting
 * later members of the probe run back into the hole (Knuth's Algorithm R), so there are no
 * tombstones and a lookup never walks past dead slots.
 *
 * The load stays at or below PM_TABLE_LOAD_NUM/PM_TABLE_LOAD_DEN (1/2): an insertion that would
 * pass it first doubles the array, rehashing into a fresh mapping from os.c (never malloc: we are
 * malloc). At half load a linear-probing hit costs 1.5 probes and a miss 2.5 on average. When the
 * mapping fails the insertion returns NULL with errno ENOMEM and the table is as it was. Users
 * that must insert where failure is not an outcome (huge.c puts an entry back after mremap)
 * reserve the room beforehand, under their lock. The table takes no lock: callers keep their own.
 *
 * Keys may repeat when the caller inserts them so (the sampler's site index is keyed by a stack
 * hash, and two stacks may share one): _pm_table_find returns the first entry with the key and
 * _pm_table_find_next the ones after it, in probe order.
 */
#include "util/util.h"

#include <errno.h>
#include <string.h>

/* Knuth's multiplicative ("Fibonacci") hashing: 2^64 divided by the golden ratio, rounded to odd.
 * Multiplying by it carries every bit of the key into the high bits of the product, and the home
 * slot is the top log2(cap) of them, so keys that differ only in their high bits or are evenly
 * spaced (page-aligned huge blocks, 16-byte aligned sampled blocks, type descriptors in .data)
 * spread over the table: for an arithmetic progression of keys the golden ratio gives the most
 * even spread there is (the three-distance theorem). The xor folds the high half into the low
 * half, so that the low bits, too, depend on the whole key: the sampler chains _pm_hash over
 * the frames of a stack, and a chain step must not lose its input's high bits. Both steps are
 * bijections, so distinct keys stay distinct. */
#define PM_HASH_GOLDEN 0x9e3779b97f4a7c15ull

uint64_t _pm_hash(uint64_t x) {
    x *= PM_HASH_GOLDEN;
    return x ^ (x >> 32);
}

static uintptr_t key_at(const pm_table_t *t, size_t i) {
    uintptr_t k;
    memcpy(&k, t->slots + i * t->esize, sizeof k);
    return k;
}

static void *slot_at(const pm_table_t *t, size_t i) { return t->slots + i * t->esize; }

/* The top log2(cap) bits of the hash: cap is a power of two, at least PM_TABLE_MIN_CAP. */
static size_t home_of(const pm_table_t *t, uintptr_t key) {
    return (size_t)(_pm_hash(key) >> (64 - __builtin_ctzll(t->cap)));
}

static size_t max_load(size_t cap) { return cap / PM_TABLE_LOAD_DEN * PM_TABLE_LOAD_NUM; }

void *_pm_table_find(const pm_table_t *t, uintptr_t key) {
    if (t->cap == 0 || key == 0) return NULL;
    for (size_t i = home_of(t, key), mask = t->cap - 1;; i = (i + 1) & mask) {
        uintptr_t k = key_at(t, i);
        if (k == key) return slot_at(t, i);
        if (k == 0) return NULL;
    }
}

void *_pm_table_find_next(const pm_table_t *t, const void *entry) {
    uintptr_t key;
    memcpy(&key, entry, sizeof key);
    size_t mask = t->cap - 1, i = (size_t)((const uint8_t *)entry - t->slots) / t->esize;
    for (i = (i + 1) & mask;; i = (i + 1) & mask) {
        uintptr_t k = key_at(t, i);
        if (k == key) return slot_at(t, i);
        if (k == 0) return NULL;
    }
}

/* Where key goes: the first empty slot of its probe run. */
static void *place(pm_table_t *t, uintptr_t key) {
    size_t i = home_of(t, key), mask = t->cap - 1;
    while (key_at(t, i)) i = (i + 1) & mask;
    void *e = slot_at(t, i);
    memset(e, 0, t->esize);
    memcpy(e, &key, sizeof key);
    return e;
}

/* A fresh array of `cap` slots with every entry rehashed into it; false (errno ENOMEM, the table
 * unchanged) if the mapping fails. Mappings read as zero: every slot starts empty. */
static bool resize(pm_table_t *t, size_t cap) {
    pm_table_t n = { NULL, cap, 0, t->esize };
    if (cap > SIZE_MAX / t->esize) { errno = ENOMEM; return false; }
    n.slots = _pm_os_map(cap * t->esize);
    if (n.slots == NULL) { errno = ENOMEM; return false; }
    for (size_t i = 0; i < t->cap; i++) {
        uintptr_t k = key_at(t, i);
        if (k) memcpy(place(&n, k), slot_at(t, i), t->esize);
    }
    n.count = t->count;
    if (t->slots) _pm_os_unmap(t->slots, t->cap * t->esize);
    *t = n;
    return true;
}

/* The first array is one page, or PM_TABLE_MIN_CAP slots if fewer fit in a page. */
static size_t first_cap(uint32_t esize) {
    size_t cap = PM_TABLE_MIN_CAP;
    while (cap * 2 * esize <= _pm_os_page_size()) cap *= 2;
    return cap;
}

int _pm_table_reserve(pm_table_t *t, size_t n) {
    size_t need = t->count + n;
    if (need < n) { errno = ENOMEM; return ENOMEM; }
    if (need <= max_load(t->cap)) return 0;
    size_t cap = t->cap ? t->cap * 2 : first_cap(t->esize);
    while (max_load(cap) < need) {
        if (cap > SIZE_MAX / 2) { errno = ENOMEM; return ENOMEM; }
        cap *= 2;
    }
    return resize(t, cap) ? 0 : ENOMEM;
}

void *_pm_table_insert(pm_table_t *t, uintptr_t key) {
    if (key == 0) { errno = EINVAL; return NULL; }
    if (_pm_table_reserve(t, 1) != 0) return NULL;      /* errno is ENOMEM */
    t->count++;
    return place(t, key);
}

/* Backward shift: walk the probe run after the hole; an entry whose home lies cyclically outside
 * (hole, j] may move into the hole (it is then still reachable from its home), and its old slot
 * becomes the hole. The run ends at the first empty slot. */
void _pm_table_erase(pm_table_t *t, void *entry) {
    size_t mask = t->cap - 1, hole = (size_t)((uint8_t *)entry - t->slots) / t->esize;
    for (size_t j = (hole + 1) & mask;; j = (j + 1) & mask) {
        uintptr_t k = key_at(t, j);
        if (k == 0) break;
        if (((j - home_of(t, k)) & mask) >= ((j - hole) & mask)) {
            memcpy(slot_at(t, hole), slot_at(t, j), t->esize);
            hole = j;
        }
    }
    memset(slot_at(t, hole), 0, t->esize);
    t->count--;
}

void *_pm_table_next(const pm_table_t *t, size_t *pos) {
    for (size_t i = *pos; i < t->cap; i++)
        if (key_at(t, i)) { *pos = i + 1; return slot_at(t, i); }
    *pos = t->cap;
    return NULL;
}

void _pm_table_free(pm_table_t *t) {
    if (t->slots) _pm_os_unmap(t->slots, t->cap * t->esize);
    t->slots = NULL;
    t->cap = t->count = 0;
}

/* Is every slot from the home of the entry at i up to i occupied? */
static bool reachable(const pm_table_t *t, size_t i) {
    size_t mask = t->cap - 1;
    for (size_t j = home_of(t, key_at(t, i)); j != i; j = (j + 1) & mask)
        if (key_at(t, j) == 0) return false;
    return true;
}

const char *_pm_table_check(const pm_table_t *t) {
    if (t->esize < sizeof(uintptr_t) || t->esize % sizeof(uintptr_t))
        return "table: the entry size is not a positive multiple of the key's";
    if (t->cap == 0)
        return t->count || t->slots ? "table: a table without slots has entries" : NULL;
    if ((t->cap & (t->cap - 1)) || t->cap < PM_TABLE_MIN_CAP || t->slots == NULL)
        return "table: the capacity is not a power of two of mapped slots";
    size_t n = 0;
    for (size_t i = 0; i < t->cap; i++) {
        if (key_at(t, i) == 0) continue;
        n++;
        if (!reachable(t, i)) return "table: an entry is cut off from its home slot by an empty slot";
    }
    if (n != t->count) return "table: the count differs from the occupied slots";
    if (n > max_load(t->cap)) return "table: the load is above its bound";
    return NULL;
}
