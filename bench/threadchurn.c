/*
 * threadchurn: many short-lived threads, each allocating a bit.
 *
 * Models thread-per-task servers and libraries that spawn helper threads:
 * every new thread makes the allocator set up its per-thread state (thread
 * cache, heap, arena assignment) and every exiting thread makes it tear
 * that state down or hand it over.  Each thread allocates 1000 blocks of
 * 16..1024 bytes, frees three quarters of them itself and returns the rest
 * to the main thread, which frees them after the thread is gone (frees of
 * blocks owned by a dead thread).
 *
 * Threads run two at a time (the machine has 2 cores).
 *
 *   threadchurn [SCALE]    threads = 6000 * SCALE
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONCURRENT 2
#define BLOCKS 1000
#define KEEP (BLOCKS / 4)
#define MINSZ 16
#define MAXSZ 1024

struct task {
    uint64_t rng;
    unsigned char *kept[KEEP];
    uint64_t checksum;
};

static inline uint64_t rnd(struct task *t)
{
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 0x2545F4914F6CDD1Dull;
}

static uint64_t check_and_free(unsigned char *p, uint64_t sum)
{
    uint32_t size, tag;
    memcpy(&size, p, 4);
    memcpy(&tag, p + 4, 4);
    if (size < MINSZ || size > MAXSZ || p[size - 1] != (unsigned char)tag) {
        fprintf(stderr, "threadchurn: heap corruption detected\n");
        exit(1);
    }
    free(p);
    return sum * 31 + tag + size;
}

static void *run(void *arg)
{
    struct task *t = arg;
    unsigned char *block[BLOCKS];
    for (uint32_t i = 0; i < BLOCKS; i++) {
        uint32_t size = MINSZ + (uint32_t)(rnd(t) % (MAXSZ - MINSZ + 1));
        unsigned char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "threadchurn: out of memory\n");
            exit(1);
        }
        memcpy(p, &size, 4);
        memcpy(p + 4, &i, 4);
        p[size - 1] = (unsigned char)i;
        block[i] = p;
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < BLOCKS; i++) {
        if (i % 4 == 0)
            t->kept[i / 4] = block[i];
        else
            sum = check_and_free(block[i], sum);
    }
    t->checksum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    long threads = 6000 * (scale > 0 ? scale : 1);
    struct task *tasks = calloc(CONCURRENT, sizeof *tasks);
    pthread_t th[CONCURRENT];
    uint64_t checksum = 0;

    if (!tasks)
        return 1;
    for (long n = 0; n < threads; n += CONCURRENT) {
        for (int i = 0; i < CONCURRENT; i++) {
            tasks[i].rng = 0x9FB21C651E98DF25ull ^ (uint64_t)(n + i) * 0x9E3779B97F4A7C15ull;
            if (pthread_create(&th[i], NULL, run, &tasks[i])) {
                fprintf(stderr, "threadchurn: cannot create threads\n");
                return 1;
            }
        }
        for (int i = 0; i < CONCURRENT; i++) {
            pthread_join(th[i], NULL);
            checksum = checksum * 1000003 + tasks[i].checksum;
            for (int k = 0; k < KEEP; k++)
                checksum = check_and_free(tasks[i].kept[k], checksum);
        }
    }
    free(tasks);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
