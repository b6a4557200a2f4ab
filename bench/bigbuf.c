/*
 * bigbuf: a batch job's large buffers, grown with realloc and freed every round.
 *
 * Models a batch or request loop that takes a few big buffers per item (a file read whole, a
 * decoded image, an output being assembled), writes them, grows some of them as the output turns
 * out longer than guessed, and frees them all before the next item. An allocator that unmaps a
 * freed buffer at once faults every page of the next item's buffers in again.
 *
 * Each round takes 4 buffers of 1..32 MiB (log-uniform), writes every page, grows half of them
 * with realloc by 1.25x..2x (writing the new part), checks a tag at the start, the old end and
 * the new end of each, and frees them all.
 *
 *   bigbuf [SCALE]    rounds = 60 * SCALE
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x8CB92BA72F3D8DD7ull;
static inline uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static void touch(unsigned char *p, size_t from, size_t to, unsigned char tag)
{
    for (size_t off = from; off < to; off += 4096)
        p[off] = tag;
    p[to - 1] = tag;
}

int main(int argc, char **argv)
{
    unsigned scale = argc > 1 ? (unsigned)atoi(argv[1]) : 1, rounds = 60 * (scale ? scale : 1);
    uint64_t checksum = 0, bytes = 0;
    for (unsigned r = 0; r < rounds; r++) {
        unsigned char *buf[4];
        size_t size[4];
        for (int i = 0; i < 4; i++) {
            double u = (double)(rnd() >> 11) / 9007199254740992.0;
            size[i] = (size_t)(exp2(20.0 + 5.0 * u));          /* 1..32 MiB */
            buf[i] = malloc(size[i]);
            if (!buf[i]) {
                fprintf(stderr, "bigbuf: out of memory\n");
                return 1;
            }
            touch(buf[i], 0, size[i], (unsigned char)(r + i));
            bytes += size[i];
        }
        for (int i = 0; i < 4; i += 2) {
            size_t grown = size[i] + size[i] / 4 + (size_t)(rnd() % (size[i] * 3 / 4 + 1));
            unsigned char *q = realloc(buf[i], grown);
            if (!q) {
                fprintf(stderr, "bigbuf: out of memory\n");
                return 1;
            }
            if (q[0] != (unsigned char)(r + i) || q[size[i] - 1] != (unsigned char)(r + i)) {
                fprintf(stderr, "bigbuf: realloc lost the contents\n");
                return 1;
            }
            touch(q, size[i], grown, (unsigned char)(r + i + 1));
            buf[i] = q;
            bytes += grown - size[i];
            size[i] = grown;
        }
        for (int i = 0; i < 4; i++) {
            checksum += buf[i][0] + buf[i][size[i] - 1] * 3u + size[i];
            free(buf[i]);
        }
    }
    printf("checksum: %016llx %llu\n", (unsigned long long)checksum, (unsigned long long)bytes);
    return 0;
}
