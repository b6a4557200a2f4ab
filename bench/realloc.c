/*
 * realloc: realloc-heavy growing buffers.
 *
 * Models string builders, growing vectors and network receive buffers in
 * code that grows its buffers naively: 1000 buffers are alive at once and
 * a random one is extended by 1..64 bytes with realloc() on every step, so
 * the allocator is asked to grow blocks by small amounts all the time and
 * decides when to grow in place and when to move (copy).  When a buffer
 * reaches its target length (log-uniform, 64 B..256 KiB) its contents are
 * verified, it is shrunk to half with realloc, verified again and freed,
 * and a new buffer starts in its slot.
 *
 *   realloc [SCALE]    appends = 1.2M * SCALE
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUFS 1000

static uint64_t rng = 0xE7037ED1A0B428DBull;
static inline uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

struct buf {
    unsigned char *data;
    size_t len, target;
    uint32_t id;
};

static inline unsigned char byte_at(uint32_t id, size_t pos)
{
    return (unsigned char)(pos * 131 + id * 7 + (pos >> 8));
}

static size_t pick_target(void)
{
    double u = (double)(rnd() >> 11) / 9007199254740992.0;
    return (size_t)exp2(6.0 + u * 12.0); /* 64 B .. 256 KiB */
}

static uint64_t verify(const struct buf *b, size_t len, uint64_t sum)
{
    for (size_t pos = 0; pos < len; pos += 61) /* sample, do not re-read everything */
        if (b->data[pos] != byte_at(b->id, pos)) {
            fprintf(stderr, "realloc: contents lost in realloc\n");
            exit(1);
        }
    if (len && b->data[len - 1] != byte_at(b->id, len - 1)) {
        fprintf(stderr, "realloc: contents lost in realloc\n");
        exit(1);
    }
    return sum * 31 + len + b->id;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "realloc: out of memory\n");
        exit(1);
    }
    return q;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    uint64_t appends = 1200000ull * (uint64_t)(scale > 0 ? scale : 1);
    static struct buf bufs[BUFS];
    uint32_t next_id = 0;
    uint64_t checksum = 0;

    for (int i = 0; i < BUFS; i++)
        bufs[i] = (struct buf){NULL, 0, pick_target(), next_id++};
    for (uint64_t step = 0; step < appends; step++) {
        struct buf *b = &bufs[rnd() % BUFS];
        size_t add = 1 + rnd() % 64;
        b->data = xrealloc(b->data, b->len + add);
        for (size_t k = 0; k < add; k++)
            b->data[b->len + k] = byte_at(b->id, b->len + k);
        b->len += add;
        if (b->len >= b->target) {
            checksum = verify(b, b->len, checksum);
            b->data = xrealloc(b->data, b->len / 2);
            checksum = verify(b, b->len / 2, checksum);
            free(b->data);
            *b = (struct buf){NULL, 0, pick_target(), next_id++};
        }
    }
    for (int i = 0; i < BUFS; i++) {
        checksum = verify(&bufs[i], bufs[i].len, checksum);
        free(bufs[i].data);
    }
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
