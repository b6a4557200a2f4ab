/*
 * fastpath: N malloc+free pairs of one fixed size, for counting the
 * instructions of an allocator's fast path under callgrind.
 *
 *   fastpath SIZE N
 *
 * Run it with two different N under `valgrind --tool=callgrind`; the
 * difference of the instruction totals divided by the difference of N is
 * the cost of one pair (plus this loop's few instructions, the same for
 * every allocator).  A warm-up of 1000 pairs runs first so that first-use
 * initialisation lands in both totals and cancels out.  The pointer is
 * stored to a volatile variable so the compiler cannot drop the pair.
 */
#include <stdio.h>
#include <stdlib.h>

void *volatile sink;

static void pairs(size_t size, long n)
{
    for (long i = 0; i < n; i++) {
        void *p = malloc(size);
        sink = p;
        free(p);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: fastpath SIZE N\n");
        return 2;
    }
    size_t size = (size_t)strtoul(argv[1], NULL, 10);
    long n = atol(argv[2]);
    pairs(size, 1000);
    pairs(size, n);
    printf("checksum: %zu %ld\n", size, n);
    return 0;
}
