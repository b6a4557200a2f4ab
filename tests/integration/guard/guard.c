/* guard/guard.c: what guarded sampling (POOLMALLOC_CONF=guard:N) must stop, and what it must leave
 * alone, one case per run, named by argv[1]. t_guard.sh runs it at guard:1 and checks the report.
 * Built with -g -O0 -rdynamic, so that the report can name these functions; the errors happen in
 * noinline functions the compiler cannot see through. A case that is not stopped prints "not
 * caught". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) char *alloc_site(size_t n) { return malloc(n); }
__attribute__((noinline)) void free_site(char *p) { free(p); }
__attribute__((noinline)) void overflow_site(char *p, size_t n) { p[n] = 'A'; }   /* one byte past */
__attribute__((noinline)) void use_after_free_site(char *p) { p[8] = 'B'; }

/* The program's own SIGSEGV handler, the way a garbage collector's write barrier or a JIT uses
 * one: a fault on its own PROT_NONE page opens the page, and the access runs again. Installed
 * from .preinit_array, which runs before any library's constructor, so poolmalloc's handler goes
 * on top of it and must pass these faults on. */
static char *own_page;
static volatile sig_atomic_t own_faults;
static void own_handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    if ((char *)info->si_addr >= own_page && (char *)info->si_addr < own_page + 4096) {
        own_faults++;
        mprotect(own_page, 4096, PROT_READ | PROT_WRITE);
        return;
    }
    signal(SIGSEGV, SIG_DFL);                   /* not its page: die as usual */
}
static void install_own_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
}
static int preinit_argc;
static char **preinit_argv;
static void preinit(int argc, char **argv, char **envp) {
    (void)envp;
    preinit_argc = argc;
    preinit_argv = argv;
    if (argc > 1 && strcmp(argv[1], "handler_first") == 0) install_own_handler();
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_entry)(int, char **, char **) = preinit;

static void touch_own_page_twice(void) {
    own_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    own_page[1] = 1;
    mprotect(own_page, 4096, PROT_NONE);
    own_page[2] = 2;
    printf("own handler: %d faults\n", (int)own_faults);
}

int main(int argc, char **argv) {
    if (argc < 2 || preinit_argc != argc || preinit_argv != argv) return 2;
    const char *what = argv[1];
    if (strcmp(what, "overflow") == 0) {                 /* against the guard page: faults */
        char *p = alloc_site(64);
        overflow_site(p, 64);
    } else if (strcmp(what, "use_after_free") == 0) {
        char *p = alloc_site(64);
        free_site(p);
        use_after_free_site(p);
    } else if (strcmp(what, "slack_overflow") == 0) {    /* into the 12 bytes before the page: free aborts */
        char *p = alloc_site(100);
        overflow_site(p, 100);
        free_site(p);
    } else if (strcmp(what, "handler_first") == 0) {     /* the program's handler, under ours */
        touch_own_page_twice();
        fflush(stdout);
        char *p = alloc_site(64);
        overflow_site(p, 64);                            /* ours: reported, and fatal */
    } else if (strcmp(what, "handler_later") == 0) {     /* the program's handler replaces ours */
        install_own_handler();
        touch_own_page_twice();
        return 0;
    } else if (strcmp(what, "wild") == 0) {              /* a fault nowhere near our blocks */
        char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        page[100] = 1;
    } else {
        return 2;
    }
    puts("not caught");
    return 0;
}
