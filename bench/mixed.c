/*
 * mixed: mixed object sizes from 16 B to 1 MiB over a random-replacement
 * working set.
 *
 * Models programs that juggle buffers of every size at once (document
 * editors, web servers with request/response bodies, build tools): the
 * size distribution is log-uniform, so every power-of-two band between
 * 16 B and 1 MiB is equally likely, which exercises small size classes,
 * medium runs and the large (often mmap-backed) path together, as well as
 * fragmentation between them.
 *
 * 2000 slots are filled, then random slots are freed and reallocated.  Each
 * block is touched like a program would (a header, one byte per 4 KiB page,
 * the last byte); tags are verified on free and summed into the checksum.
 *
 *   mixed [SCALE]    replacements = 150k * SCALE
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0xD1B54A32D192ED03ull;
static inline uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

#define SLOTS 2000
#define MINLOG 4.0  /* 16 B */
#define MAXLOG 20.0 /* 1 MiB */

static uint64_t checksum;

static size_t pick_size(void)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0; /* [0,1) */
    return (size_t)exp2(MINLOG + u * (MAXLOG - MINLOG));
}

static unsigned char *make(uint32_t tag)
{
    size_t size = pick_size();
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "mixed: out of memory\n");
        exit(1);
    }
    memcpy(p, &size, sizeof size);
    memcpy(p + sizeof size, &tag, 4);
    for (size_t off = 4096; off < size; off += 4096)
        p[off] = (unsigned char)(tag + off / 4096);
    p[size - 1] = (unsigned char)tag;
    return p;
}

static void drop(unsigned char *p)
{
    size_t size;
    uint32_t tag;
    memcpy(&size, p, sizeof size);
    memcpy(&tag, p + sizeof size, 4);
    if (size < 16 || size > (1u << 20) || p[size - 1] != (unsigned char)tag) {
        fprintf(stderr, "mixed: heap corruption detected\n");
        exit(1);
    }
    for (size_t off = 4096; off < size - 1; off += 4096)
        if (p[off] != (unsigned char)(tag + off / 4096)) {
            fprintf(stderr, "mixed: heap corruption detected\n");
            exit(1);
        }
    checksum = checksum * 31 + tag + size;
    free(p);
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    uint64_t ops = 150000ull * (uint64_t)(scale > 0 ? scale : 1);
    static unsigned char *slot[SLOTS];
    uint32_t tag = 0;

    for (int i = 0; i < SLOTS; i++)
        slot[i] = make(tag++);
    for (uint64_t i = 0; i < ops; i++) {
        uint32_t k = (uint32_t)(rnd() % SLOTS);
        drop(slot[k]);
        slot[k] = make(tag++);
    }
    for (int i = 0; i < SLOTS; i++)
        drop(slot[i]);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
