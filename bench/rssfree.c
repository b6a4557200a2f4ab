/*
 * rssfree: how much memory goes back to the OS after a mass free.
 *
 * Models a program that has a peak phase (loading a big input, a burst of
 * requests) and then drops almost everything: does its resident set shrink
 * again, right after the frees and after a short idle period?
 *
 * Allocates ~500 MiB (about half in small blocks of 16..256 bytes, half in
 * medium blocks of 1..64 KiB, interleaved), touching every page it gets,
 * then frees everything in random order.  It reads its own VmRSS from
 * /proc/self/status at the peak, right after the frees, and again after
 * IDLE_MS milliseconds (default 2000) of idleness with no allocator call at
 * all: a program that has gone idle must still get its memory back, which only
 * an allocator that purges from a thread of its own does.  Output:
 *
 *   rssfree [IDLE_MS]
 *
 *   rss_kib: PEAK AFTER_FREE AFTER_IDLE
 *   checksum: ...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOTAL (500ull << 20)

static uint64_t rng = 0x94D049BB133111EBull;
static inline uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static long vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = atol(line + 6);
            break;
        }
    fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    long idle_ms = argc > 1 ? atol(argv[1]) : 2000;
    /* the pointer table is mmap-sized and allocated up front, so that it is
       not one of the blocks measured; it is freed at the very end */
    size_t cap = 4u << 20, n = 0;
    unsigned char **blocks = malloc(cap * sizeof *blocks);
    uint64_t bytes = 0, checksum = 0;

    if (!blocks)
        return 1;
    while (bytes < TOTAL && n < cap) {
        size_t size = (rnd() % 240 == 0) ? 1024 + rnd() % (63 * 1024 + 1) /* medium */
                                          : 16 + rnd() % 241;             /* small  */
        unsigned char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "rssfree: out of memory\n");
            return 1;
        }
        for (size_t off = 0; off < size; off += 4096)
            p[off] = (unsigned char)n;
        p[size - 1] = (unsigned char)n;
        blocks[n++] = p;
        bytes += size;
    }
    long peak = vm_rss_kib();

    /* free in random order (Fisher-Yates shuffle first) */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rnd() % (i + 1));
        unsigned char *t = blocks[i];
        blocks[i] = blocks[j];
        blocks[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        checksum += blocks[i][0];
        free(blocks[i]);
    }
    long after_free = vm_rss_kib();

    struct timespec ts = {idle_ms / 1000, (idle_ms % 1000) * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0) {
    }
    long after_idle = vm_rss_kib();
    free(blocks);

    printf("rss_kib: %ld %ld %ld\n", peak, after_free, after_idle);
    printf("checksum: %016llx %zu %llu\n", (unsigned long long)checksum, n,
           (unsigned long long)bytes);
    return 0;
}
