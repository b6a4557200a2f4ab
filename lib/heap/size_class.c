/* size_class.c: the size classes and the shape of the pool that serves each.
 *
 *   classes  0..31   16..512 bytes in 16-byte steps (pymalloc's classes: at most 15 bytes lost)
 *   classes 32..75   four classes per doubling from 640 bytes to 1 MiB (jemalloc's spacing: at
 *                    most 20% lost; every class above 64 KiB is a multiple of 16 KiB)
 *
 * A pool is 1..64 slots of 16 KiB. The small classes (up to 512 bytes) take one slot: a thread
 * holds at least one pool per class it uses, and one slot keeps that small. The larger classes
 * take at least 64 KiB, so that a pool of them serves a few allocations before the heap must go
 * back to the arena for another. Every class takes the fewest slots (from there) whose tail, the
 * bytes left after the last whole block, is at most 1/8 of the pool, so that e.g. 40 KiB blocks
 * come three to a 128 KiB pool instead of one to a 64 KiB pool. Pools always start on a 16 KiB boundary and
 * block i sits at offset i*size, so a class whose size is a multiple of a power of two up to
 * 16 KiB hands out blocks aligned to it: that is how posix_memalign is served without any extra
 * metadata.
 */
#include "heap/heap.h"

pm_class_info_t _pm_classes[PM_NCLASSES];
uint8_t _pm_avail_table[PM_TABLE_MAX >> 7];

static size_t class_size(unsigned c) {
    if (c < 32) return (size_t)(c + 1) * 16;
    unsigned group = (c - 32) / 4, step = (c - 32) % 4;     /* sizes in (512*2^g, 512*2^(g+1)] */
    return ((size_t)512 << group) / 4 * (5 + step);
}

void _pm_classes_init(void) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        size_t size = class_size(c);
        unsigned slots = size <= PM_SMALL_MAX ? 1 : (unsigned)((((size_t)64 << 10) + PM_SLOT_SIZE - 1) / PM_SLOT_SIZE);
        for (;; slots++) {
            size_t pool = slots * PM_SLOT_SIZE, n = pool / size;
            if ((n >= 1 && (pool - n * size) * 8 <= pool) || slots == PM_POOL_MAX_SLOTS) break;
        }
        _pm_classes[c].size = (uint32_t)size;
        _pm_classes[c].slots = (uint8_t)slots;
        _pm_classes[c].capacity = (uint32_t)(slots * PM_SLOT_SIZE / size);
    }
    for (size_t i = PM_SMALL_MAX >> 7; i < sizeof _pm_avail_table; i++)   /* sizes i*128+1 .. (i+1)*128 */
        _pm_avail_table[i] = (uint8_t)(_pm_class_of(i * 128 + 1) + 1);
}
