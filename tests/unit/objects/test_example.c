/* The example program of docs/objects.md (examples/gc_listdict.c: a list and a dict type on the
 * gc API) is compiled into this binary and its output checked line for line, so the documented
 * example keeps compiling and keeps printing the output that docs/objects.md shows. */
#include "helpers.h"
#define main gc_listdict_main
#include "../../../examples/gc_listdict.c"
#undef main

static const char expected[] =
    "built:                             dict=1 list=1 int=5\n"
    "after dropping a self-cycle:       dict=1 list=2 int=5\n"
    "collect: 1 unreachable\n"
    "after collect:                     dict=1 list=1 int=5\n"
    "why is the list alive: 2 links: dict list\n"
    "after dropping the module:         dict=1 list=1 int=5\n"
    "collect: 2 unreachable\n"
    "after collect:                     dict=0 list=0 int=0\n"
    "full collections: 2, collected 3, uncollectable 0\n";

Test(example, listdict_prints_the_documented_output) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        _exit(gc_listdict_main());
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t n;
    while (len + 1 < sizeof out && (n = read(fds[0], out + len, sizeof out - 1 - len)) > 0) len += (size_t)n;
    out[len] = 0;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_str_eq(out, expected);
}
