/* The fault handler of guarded sampling (guard_report.c): a fault on a guarded slot prints its
 * report and the process still dies of the signal; every other fault goes to the program's own
 * action, whatever it was. Each case runs in a child, which installs the handler. */
#include "helpers.h"
#include <sys/mman.h>

static char msg[8192];

#define SITE __attribute__((noinline))
SITE static char *guard_alloc_site(size_t n) { char *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
SITE static void guard_free_site(char *p) { free(p); __asm__ volatile("" ::: "memory"); }

static void guard_on(void) {
    _pm_guard_report_start();
    _pm_sample_set_guard(1);
    _pm_heap_get()->sample.left = -1;
}

static void overflow(void *arg) {
    (void)arg;
    guard_on();
    volatile char *p = guard_alloc_site(64);
    p[64] = 1;
    fprintf(stderr, "not caught\n");
}
static void use_after_free(void *arg) {
    (void)arg;
    guard_on();
    volatile char *p = guard_alloc_site(200);
    guard_free_site((char *)p);
    fprintf(stderr, "read %d: not caught\n", p[7]);
}

static bool has(const char *s) { return strstr(msg, s) != NULL; }

Test(guard_report, an_overflow_is_reported_and_the_process_dies_of_sigsegv) {
    int st = run_in_child(overflow, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %d: %s", st, msg);
    cr_assert(strncmp(msg, "poolmalloc: guard: heap-buffer-overflow: write of address 0x", 60) == 0, "%s", msg);
    cr_assert(has(", 0 bytes past the end of the 64-byte block 0x") && has(" (offset 64)\n"), "%s", msg);
    cr_assert(has("poolmalloc: guard: the write (SIGSEGV):\n"), "%s", msg);
    cr_assert(has("poolmalloc: guard: the block was allocated at:\n"), "%s", msg);
    cr_assert(has("  guard_alloc_site+0x"), "the allocation site is named: %s", msg);
    cr_assert(!has("freed at"), "a live block has no free stack: %s", msg);
}

Test(guard_report, a_use_after_free_names_both_stacks) {
    int st = run_in_child(use_after_free, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "status %d: %s", st, msg);
    cr_assert(strncmp(msg, "poolmalloc: guard: use-after-free: read of address 0x", 53) == 0, "%s", msg);
    cr_assert(has(", inside the freed 200-byte block 0x") && has(" (offset 7)\n"), "%s", msg);
    const char *alloc = strstr(msg, "the block was allocated at:"), *freed = strstr(msg, "and freed at:");
    cr_assert(alloc && freed && alloc < freed, "%s", msg);
    cr_assert(strstr(alloc, "guard_alloc_site+0x") && strstr(alloc, "guard_alloc_site+0x") < freed, "%s", msg);
    cr_assert(strstr(freed, "guard_free_site+0x"), "the free site is named: %s", msg);
}

/* A program's own handler, installed before ours: it opens the page it faulted on and returns. */
static volatile int own_faults;
static char *own_page;
static void own_handler(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    if ((char *)info->si_addr >= own_page && (char *)info->si_addr < own_page + 4096) {
        own_faults++;
        mprotect(own_page, 4096, PROT_READ | PROT_WRITE);
    }
}
static void program_handler_chained(void *arg) {
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    guard_on();                                /* ours goes on top, and keeps theirs */
    own_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    own_page[10] = 1;
    mprotect(own_page, 4096, PROT_NONE);
    own_page[20] = 2;
    fprintf(stderr, "own faults %d\n", own_faults);
}
static void no_handler(void *arg) {
    (void)arg;
    guard_on();
    char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page[0] = 1;
    fprintf(stderr, "not stopped\n");
}
static void ignored(void *arg) {
    (void)arg;
    signal(SIGSEGV, SIG_IGN);
    guard_on();
    char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    page[0] = 1;
    fprintf(stderr, "not stopped\n");
}
static void sent_by_kill(void *arg) {
    (void)arg;
    guard_on();
    kill(getpid(), SIGSEGV);
    fprintf(stderr, "not stopped\n");
}
static void bus_sent_by_kill(void *arg) {
    (void)arg;
    guard_on();
    kill(getpid(), SIGBUS);
    fprintf(stderr, "not stopped\n");
}

Test(guard_report, faults_that_are_not_ours_go_to_the_programs_action) {
    int st = run_in_child(program_handler_chained, NULL, msg, sizeof msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, msg);
    cr_assert_str_eq(msg, "own faults 2\n", "the program's handler saw both of its faults");
    st = run_in_child(no_handler, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "SIG_DFL: status %d: %s", st, msg);
    cr_assert_str_eq(msg, "", "and no report of ours");
    st = run_in_child(ignored, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "SIG_IGN does not hold a fault back: status %d: %s", st, msg);
    st = run_in_child(sent_by_kill, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "kill(SIGSEGV): status %d: %s", st, msg);
    st = run_in_child(bus_sent_by_kill, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGBUS, "kill(SIGBUS): status %d: %s", st, msg);
}

/* Found by a review: an ignored SIGSEGV sent by raise() stays ignored; a handler installed with
 * SA_NODEFER before ours runs with the signal unblocked, so it can longjmp out and catch the next
 * fault too. And the report's handler now raises the signal itself, so that a slot another
 * thread reopened meanwhile cannot let the access through (that race is not forced here: the
 * case checks that the report still ends in the signal). */
static void ignored_raise(void *arg) {
    (void)arg;
    signal(SIGSEGV, SIG_IGN);
    guard_on();
    raise(SIGSEGV);
    fprintf(stderr, "survived\n");
}
#include <setjmp.h>
static jmp_buf nodefer_jump;
static void nodefer_handler(int sig) { (void)sig; longjmp(nodefer_jump, 1); }
static void nodefer_twice(void *arg) {
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nodefer_handler;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    guard_on();
    char *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int caught = 0;
    for (int i = 0; i < 3; i++)
        if (setjmp(nodefer_jump) == 0) ((volatile char *)page)[0] = 1;
        else caught++;
    fprintf(stderr, "caught %d\n", caught);
}
static void uaf_after_reopen(void *arg) {
    (void)arg;
    guard_on();
    volatile char *p = guard_alloc_site(64);
    guard_free_site((char *)p);
    p[3] = 1;
    fprintf(stderr, "not stopped\n");
}

Test(guard_report, review_cases_signals_keep_their_meaning) {
    int st = run_in_child(ignored_raise, NULL, msg, sizeof msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 && has("survived"), "raise of an ignored SIGSEGV: status %d: %s", st, msg);
    st = run_in_child(nodefer_twice, NULL, msg, sizeof msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, msg);
    cr_assert_str_eq(msg, "caught 3\n", "an SA_NODEFER handler catches every fault");
    st = run_in_child(uaf_after_reopen, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && has("use-after-free") && !has("not stopped"),
              "status %d: %s", st, msg);
}
