/*
 * cscratch: allocator-induced false sharing (after Hoard's cache-scratch).
 *
 * Models threads that receive small objects from another thread, free
 * them, and then work intensively on small objects of their own.  The
 * main thread allocates the workers' objects back to back, interleaved
 * (worker 0, worker 1, worker 0, ...), so objects of different workers
 * share cache lines, and hands them out.  Each worker frees the objects it
 * was given, then repeatedly allocates the same number of objects of the
 * same size, writes them many times and frees them.  An allocator that
 * hands the freed blocks (still on the shared cache lines) back to the
 * worker makes the workers' writes ping-pong those lines between cores; a
 * well-behaved one gives each thread memory from its own cache lines.
 *
 * 2 workers, 4 objects of 8 bytes each, 5000 writes per round.
 *
 *   cscratch [SCALE]    rounds per worker = 3000 * SCALE
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 2
#define OBJS 4
#define OBJSIZE 8
#define WRITES 5000

struct job {
    unsigned char *given[OBJS];
    long rounds;
    uint64_t checksum;
    char pad[64];
};

static void *worker(void *arg)
{
    struct job *j = arg;
    volatile unsigned char *p[OBJS];
    uint64_t sum = 0;

    for (int k = 0; k < OBJS; k++)
        free(j->given[k]);
    for (long r = 0; r < j->rounds; r++) {
        for (int k = 0; k < OBJS; k++) {
            p[k] = malloc(OBJSIZE);
            if (!p[k]) {
                fprintf(stderr, "cscratch: out of memory\n");
                exit(1);
            }
            for (int b = 0; b < OBJSIZE; b++)
                p[k][b] = (unsigned char)(r + k + b);
        }
        for (int w = 0; w < WRITES; w++)
            for (int k = 0; k < OBJS; k++)
                for (int b = 0; b < OBJSIZE; b++)
                    p[k][b] = (unsigned char)(p[k][b] * 7 + (unsigned)w);
        for (int k = 0; k < OBJS; k++) {
            for (int b = 0; b < OBJSIZE; b++)
                sum = sum * 31 + p[k][b];
            free((void *)p[k]);
        }
    }
    j->checksum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    struct job jobs[THREADS];
    pthread_t th[THREADS];

    for (int k = 0; k < OBJS; k++)
        for (int i = 0; i < THREADS; i++)
            jobs[i].given[k] = malloc(OBJSIZE);
    for (int i = 0; i < THREADS; i++) {
        jobs[i].rounds = 3000 * (scale > 0 ? scale : 1);
        jobs[i].checksum = 0;
    }
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&th[i], NULL, worker, &jobs[i])) {
            fprintf(stderr, "cscratch: cannot create threads\n");
            return 1;
        }
    uint64_t checksum = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        checksum = checksum * 1000003 + jobs[i].checksum;
    }
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
