/*
 * young: young objects dying young (binary trees, after gc-bench and the
 * "binary-trees" benchmark).
 *
 * Models allocation-intensive code where most objects are short-lived
 * temporaries (parsers building and discarding ASTs, functional-style
 * code, request-scoped data) next to a small amount of long-lived data.
 * A long-lived tree stays alive for the whole run while many short-lived
 * trees of various depths are built bottom-up, walked and freed at once,
 * so the allocator sees bursts of same-size allocations followed by bursts
 * of frees in (mostly) reverse order.
 *
 * The checksum combines node counts and the values stored in the nodes.
 *
 *   young [SCALE]    short-lived nodes ~ 29M * SCALE
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct node {
    struct node *left, *right;
    int64_t value;
};

static struct node *build(int depth, int64_t value)
{
    struct node *n = malloc(sizeof *n);
    if (!n) {
        fprintf(stderr, "young: out of memory\n");
        exit(1);
    }
    n->value = value;
    if (depth > 0) {
        n->left = build(depth - 1, 2 * value - 1);
        n->right = build(depth - 1, 2 * value);
    } else {
        n->left = n->right = NULL;
    }
    return n;
}

static int64_t check(const struct node *n)
{
    if (!n->left)
        return n->value;
    return n->value + check(n->left) - check(n->right);
}

static void destroy(struct node *n)
{
    if (n->left) {
        destroy(n->left);
        destroy(n->right);
    }
    free(n);
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    if (scale < 1)
        scale = 1;
    const int min_depth = 4, max_depth = 18;
    uint64_t checksum = 0;

    struct node *long_lived = build(max_depth, 0);
    for (long s = 0; s < scale; s++) {
        for (int d = min_depth; d <= max_depth - 2; d += 2) {
            /* the same number of nodes (~4M) for every depth */
            long iterations = 1L << (max_depth - d + 2);
            for (long i = 0; i < iterations; i++) {
                struct node *a = build(d, i), *b = build(d, -i);
                checksum = checksum * 31 + (uint64_t)(check(a) + check(b));
                destroy(a);
                destroy(b);
            }
        }
    }
    checksum = checksum * 31 + (uint64_t)check(long_lived);
    destroy(long_lived);
    printf("checksum: %016llx\n", (unsigned long long)checksum);
    return 0;
}
