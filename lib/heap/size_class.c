/* size_class.c: the size classes and the shape of the pool that serves each.
 *
 *   classes  0..31   16..512 bytes in 16-byte steps (pymalloc's classes: at most 15 bytes lost)
 *   classes 32..75   four classes per doubling from 640 bytes to 1 MiB (jemalloc's spacing: at
 *                    most 20% lost; every class above 64 KiB is a multiple of 16 KiB)
 *
 * A pool is 1..64 slots of 16 KiB. The small classes (up to 512 bytes) take one slot: a thread
 * holds at least one pool per class it uses, and one slot keeps that small. The larger classes
 * take at least 64 KiB (PM_LARGE_POOL_MIN), so that a pool of them serves a few allocations before the heap must go
 * back to the arena for another. Every class takes the fewest slots (from there) whose tail, the
 * bytes left after the last whole block, is at most 1/8 of the pool, so that e.g. 40 KiB blocks
 * come three to a 128 KiB pool instead of one to a 64 KiB pool. Pools always start on a 16 KiB boundary and
 * block i sits at offset i*size, so a class whose size is a multiple of a power of two up to
 * 16 KiB hands out blocks aligned to it: that is how posix_memalign is served without any extra
 * metadata.
 */
#include "heap/heap.h"

pm_class_info_t _pm_classes[PM_NCLASSES];
uint8_t _pm_avail_table[PM_TABLE_MAX >> PM_TABLE_SHIFT];

/* Class c's block size: (c + 1) * 16 up to 512; above, the doubling (512 * 2^g, 512 * 2^(g+1)]
 * is cut into PM_STEPS equal steps, and step s ends at 512 * 2^g * (1 + (s + 1) / PM_STEPS). */
static size_t class_size(unsigned c) {
    if (c < PM_SMALL_CLASSES) return (size_t)(c + 1) * PM_ALIGN;
    unsigned group = (c - PM_SMALL_CLASSES) / PM_STEPS, step = (c - PM_SMALL_CLASSES) % PM_STEPS;
    return ((size_t)PM_SMALL_MAX << group) / PM_STEPS * (PM_STEPS + 1 + step);
}

void _pm_classes_init(void) {
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        size_t size = class_size(c);
        unsigned slots = size <= PM_SMALL_MAX ? 1 : (unsigned)((PM_LARGE_POOL_MIN + PM_SLOT_SIZE - 1) / PM_SLOT_SIZE);
        for (;; slots++) {
            size_t pool = slots * PM_SLOT_SIZE, n = pool / size;
            if ((n >= 1 && (pool - n * size) * 8 <= pool) || slots == PM_POOL_MAX_SLOTS) break;
        }
        _pm_classes[c].size = (uint32_t)size;
        _pm_classes[c].slots = (uint8_t)slots;
        _pm_classes[c].capacity = (uint32_t)(slots * PM_SLOT_SIZE / size);
    }
    /* Entry i covers sizes i*128+1 .. (i+1)*128: one class serves them all, because every class
     * boundary in (512, 64 KiB] is a multiple of 128 (test_size_class checks every size). */
    for (size_t i = PM_SMALL_MAX >> PM_TABLE_SHIFT; i < sizeof _pm_avail_table; i++)
        _pm_avail_table[i] = (uint8_t)(_pm_class_of((i << PM_TABLE_SHIFT) + 1) + 1);
}
