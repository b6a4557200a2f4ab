/* helpers.h: shared by the unit tests. They link libpoolmalloc.a, so malloc here is ours, and
 * they may look inside through every layer's header, by lib/init.h (the way Lua's ltests.c exposes internals). */
#ifndef PM_TEST_HELPERS_H
#define PM_TEST_HELPERS_H
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"
#include "poolmalloc.h"

/* A checker returns NULL, or the invariant that failed: say which. */
#define assert_sound(check) do {                                                           \
        const char *why_ = (check);                                                        \
        cr_assert(why_ == NULL, "%s: %s", #check, why_ ? why_ : "");                       \
    } while (0)

void *__libc_memalign(size_t align, size_t size);   /* glibc exports it; no header declares it */

/* Run fn(arg) in a child process with stderr captured. Returns the wait status; the first line of
 * what the child wrote to stderr goes to `msg`. */
static inline int run_in_child(void (*fn)(void *), void *arg, char *msg, size_t cap) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    char rest[4096];
    /* read to the end, keeping what fits: a child must never die of SIGPIPE for our buffer */
    while ((n = len + 1 < cap ? read(fds[0], msg + len, cap - 1 - len) : read(fds[0], rest, sizeof rest)) > 0)
        if (len + 1 < cap) len += (size_t)n;
    msg[len] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

static inline bool aborted_with(int status, const char *msg, const char *want) {
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(msg, want) != NULL;
}

/* The pool descriptor of a live block, for invariant checks. */
static inline pm_pool_t *pool_of(void *p) { return _pm_pool_of(p); }

static inline uint64_t test_rand(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}
#endif
