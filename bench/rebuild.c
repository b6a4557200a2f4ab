/*
 * rebuild: free everything and build it again.
 *
 * Models a program that builds a large structure of small nodes (a parse tree, an index, a
 * request's object graph), drops all of it, and builds it again: a compiler pass per file, a
 * cache rebuilt on reload, a batch job per input. An allocator that gives the freed pages back
 * to the kernel at once pays a page fault for every page of the next build.
 *
 * Each round builds a graph of 800k nodes (32..200 bytes each, ~90 MiB): each node is appended
 * to a list and points to a random earlier node, as an object graph's references do. It then
 * checks every node's tag and its reference and frees every node, newest first.
 * Rounds follow each other with no pause, as a batch job's do.
 *
 *   rebuild [SCALE]    rounds = 16 * SCALE
 */
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

typedef struct node {
    struct node *next, *ref;
    uint32_t size, tag;
    unsigned char payload[];
} node_t;

#define NODES 800000u

int main(int argc, char **argv)
{
    unsigned scale = argc > 1 ? (unsigned)atoi(argv[1]) : 1, rounds = 16 * (scale ? scale : 1);
    node_t **index = malloc(NODES * sizeof *index);
    uint64_t checksum = 0, bytes = 0;
    if (!index)
        return 1;
    for (unsigned r = 0; r < rounds; r++) {
        node_t *head = NULL, **tail = &head;   /* the list in build order */
        for (uint32_t i = 0; i < NODES; i++) {
            uint32_t size = 32 + (uint32_t)(rnd() % 169);
            node_t *n = malloc(size);
            if (!n) {
                fprintf(stderr, "rebuild: out of memory\n");
                return 1;
            }
            n->next = NULL;
            n->ref = i ? index[rnd() % i] : n;
            n->size = size;
            n->tag = i;
            n->payload[0] = (unsigned char)i;
            n->payload[size - sizeof *n - 1] = (unsigned char)i;
            index[i] = n;
            *tail = n;
            tail = &n->next;
            bytes += size;
        }
        /* newest first: a node's reference, to an older node, is still live when it is checked */
        for (uint32_t i = NODES; i-- > 0;) {
            node_t *n = index[i];
            if (n->payload[0] != (unsigned char)n->tag || n->payload[n->size - sizeof *n - 1] != (unsigned char)n->tag ||
                n->ref->tag > n->tag || n->next != (i + 1 < NODES ? index[i + 1] : NULL)) {
                fprintf(stderr, "rebuild: node %u corrupted\n", n->tag);
                return 1;
            }
            checksum += n->tag ^ n->ref->tag ^ n->size;
            free(n);
        }
    }
    free(index);
    printf("checksum: %016llx %llu\n", (unsigned long long)checksum, (unsigned long long)bytes);
    return 0;
}
