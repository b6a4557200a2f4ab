/*
 * larson: server simulation after Larson & Krishnan's benchmark.
 *
 * Models a multi-threaded server in which connection/request objects are
 * created by one worker and later released by another: each thread works
 * on a region of a shared array, replacing random slots (free the old
 * block, allocate a new one of random size), and after every round the
 * regions are handed to the next thread, so the blocks a thread allocated
 * are freed by a different thread in the following round.
 *
 * 4 threads, 4 regions of 5000 slots, sizes 16..512 bytes.  A region's
 * random state travels with the region and rounds are separated by a
 * barrier, so the work (and checksum) does not depend on scheduling.
 *
 *   larson [SCALE]    rounds = 45 * SCALE, 100k replacements per region per round
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define SLOTS 5000
#define OPS_PER_ROUND 100000
#define MINSZ 16
#define MAXSZ 512

struct region {
    unsigned char *slot[SLOTS];
    uint64_t rng;
    uint64_t checksum;
    uint32_t tag;
    char pad[64];
};

static struct region regions[THREADS];
static pthread_barrier_t barrier;
static long rounds;

static inline uint64_t rnd(struct region *r)
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    return r->rng * 0x2545F4914F6CDD1Dull;
}

static unsigned char *make(struct region *r)
{
    uint32_t size = MINSZ + (uint32_t)(rnd(r) % (MAXSZ - MINSZ + 1));
    uint32_t tag = r->tag++;
    unsigned char *p = malloc(size);
    if (!p) {
        fprintf(stderr, "larson: out of memory\n");
        exit(1);
    }
    memcpy(p, &size, 4);
    memcpy(p + 4, &tag, 4);
    p[size - 1] = (unsigned char)tag;
    return p;
}

static void drop(struct region *r, unsigned char *p)
{
    uint32_t size, tag;
    memcpy(&size, p, 4);
    memcpy(&tag, p + 4, 4);
    if (size < MINSZ || size > MAXSZ || p[size - 1] != (unsigned char)tag) {
        fprintf(stderr, "larson: heap corruption detected\n");
        exit(1);
    }
    r->checksum = r->checksum * 31 + tag + size;
    free(p);
}

static void *worker(void *arg)
{
    long id = (long)arg;
    /* round 0: each thread fills its own region */
    struct region *r = &regions[id];
    for (int i = 0; i < SLOTS; i++)
        r->slot[i] = make(r);
    pthread_barrier_wait(&barrier);
    for (long round = 1; round <= rounds; round++) {
        r = &regions[(id + round) % THREADS]; /* a region another thread filled */
        for (int i = 0; i < OPS_PER_ROUND; i++) {
            uint32_t k = (uint32_t)(rnd(r) % SLOTS);
            drop(r, r->slot[k]);
            r->slot[k] = make(r);
        }
        pthread_barrier_wait(&barrier);
    }
    /* the last round's region is emptied by yet another thread */
    r = &regions[(id + rounds + 1) % THREADS];
    for (int i = 0; i < SLOTS; i++)
        drop(r, r->slot[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    rounds = 45 * (scale > 0 ? scale : 1);
    pthread_t th[THREADS];

    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        regions[i].rng = 0x8BB84B93962EACC9ull * (uint64_t)(i + 1);
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&th[i], NULL, worker, (void *)i)) {
            fprintf(stderr, "larson: cannot create threads\n");
            return 1;
        }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    uint64_t checksum = 0;
    for (int i = 0; i < THREADS; i++)
        checksum = checksum * 1000003 + regions[i].checksum;
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
