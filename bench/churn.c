/*
 * churn: single-threaded small-object churn over a large working set.
 *
 * Models a long-running program (a cache, an interpreter heap, a compiler's
 * symbol tables) holding ~1M live small objects and continually replacing
 * random ones.  The working set is far bigger than the CPU caches, so the
 * allocator's metadata locality and free-list reuse dominate.
 *
 * An array of 1M slots is filled with blocks of 16..256 bytes (uniform), then
 * random slots are freed and replaced.  Every block carries a tag in its first
 * and last bytes; tags are verified when the block is freed and summed into
 * the checksum, so all allocators must do (and preserve) exactly the same work.
 *
 *   churn [SCALE]    replacements = 1.5M * SCALE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

#define SLOTS (1u << 20)
#define MINSZ 16
#define MAXSZ 256

static uint64_t checksum;

static unsigned char *make(uint32_t tag)
{
    uint32_t size = MINSZ + (uint32_t)(rnd() % (MAXSZ - MINSZ + 1));
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "churn: out of memory\n");
        exit(1);
    }
    memcpy(p, &size, 4);
    memcpy(p + 4, &tag, 4);
    p[size - 1] = (unsigned char)tag;
    return p;
}

static void drop(unsigned char *p)
{
    uint32_t size, tag;
    memcpy(&size, p, 4);
    memcpy(&tag, p + 4, 4);
    if (size < MINSZ || size > MAXSZ || p[size - 1] != (unsigned char)tag) {
        fprintf(stderr, "churn: heap corruption detected\n");
        exit(1);
    }
    checksum = checksum * 31 + tag + size;
    free(p);
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    uint64_t ops = 1500000ull * (uint64_t)(scale > 0 ? scale : 1);
    unsigned char **slot = calloc(SLOTS, sizeof *slot);
    uint32_t tag = 0;

    if (!slot)
        return 1;
    for (uint32_t i = 0; i < SLOTS; i++)
        slot[i] = make(tag++);
    for (uint64_t i = 0; i < ops; i++) {
        uint32_t k = (uint32_t)(rnd() % SLOTS);
        drop(slot[k]);
        slot[k] = make(tag++);
    }
    for (uint32_t i = 0; i < SLOTS; i++)
        drop(slot[i]);
    free(slot);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
