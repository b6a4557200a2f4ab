/*
 * prodcons: producer/consumer, one thread allocates and another frees.
 *
 * Models pipelines and message passing (a network thread allocating
 * requests that worker threads consume, logging queues, actor mailboxes):
 * every block is freed by a thread other than the one that allocated it,
 * which stresses the allocator's remote-free path and how (whether) memory
 * flows back to the producer.
 *
 * The producer allocates blocks of 16..512 bytes, fills a small header and
 * pushes them through a bounded single-producer/single-consumer ring of
 * 1024 entries; the consumer verifies each block, sums its tag into the
 * checksum and frees it.  Waiting is a short spin followed by sched_yield().
 *
 *   prodcons [SCALE]    messages = 2M * SCALE
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 1024u
#define MINSZ 16
#define MAXSZ 512

static void *ring[RING];
static _Alignas(64) _Atomic uint64_t head; /* written by the producer */
static _Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
static _Alignas(64) uint64_t messages;

static void pause_a_bit(unsigned *spins)
{
    if (++*spins < 64)
        __asm__ __volatile__("" ::: "memory");
    else {
        *spins = 0;
        sched_yield();
    }
}

static void *producer(void *arg)
{
    uint64_t rng = 0xA0761D6478BD642Full;
    (void)arg;
    for (uint64_t i = 0; i < messages; i++) {
        rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
        uint32_t size = MINSZ + (uint32_t)((rng * 0x2545F4914F6CDD1Dull) % (MAXSZ - MINSZ + 1));
        unsigned char *p = malloc(size);
        if (!p) {
            fprintf(stderr, "prodcons: out of memory\n");
            exit(1);
        }
        uint32_t tag = (uint32_t)i;
        memcpy(p, &size, 4);
        memcpy(p + 4, &tag, 4);
        p[size - 1] = (unsigned char)tag;
        unsigned spins = 0;
        uint64_t h = atomic_load_explicit(&head, memory_order_relaxed);
        while (h - atomic_load_explicit(&tail, memory_order_acquire) >= RING)
            pause_a_bit(&spins);
        ring[h % RING] = p;
        atomic_store_explicit(&head, h + 1, memory_order_release);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    uint64_t *checksum = arg;
    for (uint64_t i = 0; i < messages; i++) {
        unsigned spins = 0;
        uint64_t t = atomic_load_explicit(&tail, memory_order_relaxed);
        while (atomic_load_explicit(&head, memory_order_acquire) == t)
            pause_a_bit(&spins);
        unsigned char *p = ring[t % RING];
        atomic_store_explicit(&tail, t + 1, memory_order_release);
        uint32_t size, tag;
        memcpy(&size, p, 4);
        memcpy(&tag, p + 4, 4);
        if (size < MINSZ || size > MAXSZ || p[size - 1] != (unsigned char)tag) {
            fprintf(stderr, "prodcons: heap corruption detected\n");
            exit(1);
        }
        *checksum = *checksum * 31 + tag + size;
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    messages = 2000000ull * (uint64_t)(scale > 0 ? scale : 1);
    uint64_t checksum = 0;
    pthread_t prod, cons;

    if (pthread_create(&cons, NULL, consumer, &checksum) ||
        pthread_create(&prod, NULL, producer, NULL)) {
        fprintf(stderr, "prodcons: cannot create threads\n");
        return 1;
    }
    pthread_join(prod, NULL);
    pthread_join(cons, NULL);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
