/* Bad input is reported on one line and aborts: never silent corruption. Each case runs in a
 * child process whose stderr is captured. */
#include "helpers.h"
#include <pthread.h>

static char msg[4096];

static void free_stack_pointer(void *arg) { (void)arg; int x; free(&x); }
static void free_interior_pointer(void *arg) { (void)arg; char *p = malloc(64); free(p + 16); }
static void free_misaligned_pointer(void *arg) { (void)arg; char *p = malloc(64); free(p + 1); }
static void double_free_small(void *arg) { (void)arg; void *p = malloc(40); free(p); free(p); }
static void double_free_after_reuse_of_neighbours(void *arg) {
    (void)arg;
    void *p = malloc(24), *q = malloc(24);
    free(p); free(q);
    (void)malloc(24);                       /* takes q back */
    free(p);                                /* p is still free: caught */
}
static void double_free_huge(void *arg) { (void)arg; void *p = malloc(5u << 20); free(p); free(p); }
static void realloc_invalid(void *arg) { (void)arg; static char buf[64]; (void)realloc(buf + 16, 100); }
static void realloc_freed(void *arg) { (void)arg; void *p = malloc(100); free(p); (void)realloc(p, 200); }
static void usable_size_invalid(void *arg) { (void)arg; static char buf[64]; (void)malloc_usable_size(buf); }
static void *free_in_thread(void *p) { free(p); return NULL; }
static void double_free_from_another_thread(void *arg) {
    (void)arg;
    void *p = malloc(32);
    free(p);
    pthread_t t;
    pthread_create(&t, NULL, free_in_thread, p);
    pthread_join(t, NULL);
}
static void free_in_arena_header(void *arg) {
    (void)arg;
    char *p = malloc(16);
    free((char *)_pm_arena_of(p) + 4096);     /* the header slots never hold blocks */
}

Test(errors, free_of_a_stack_pointer) {
    int st = run_in_child(free_stack_pointer, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): invalid pointer (not allocated by poolmalloc)"), "got: %s", msg);
    cr_assert(strstr(msg, "poolmalloc: ") == msg, "one line that names us: %s", msg);
    cr_assert_eq(strchr(msg, '\n'), msg + strlen(msg) - 1, "exactly one line: %s", msg);
}

Test(errors, free_of_an_interior_pointer) {
    int st = run_in_child(free_interior_pointer, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "not the start of a block"), "got: %s", msg);
}

Test(errors, free_of_a_misaligned_pointer) {
    int st = run_in_child(free_misaligned_pointer, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "not the start of a block"), "got: %s", msg);
}

Test(errors, free_into_the_arena_header) {
    int st = run_in_child(free_in_arena_header, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "invalid pointer"), "got: %s", msg);
}

Test(errors, double_free_of_a_small_block) {
    int st = run_in_child(double_free_small, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): double free"), "got: %s", msg);
    cr_assert(strstr(msg, "0x") != NULL, "the address is named: %s", msg);
}

Test(errors, double_free_is_caught_while_the_block_sits_in_the_free_list) {
    int st = run_in_child(double_free_after_reuse_of_neighbours, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "double free"), "got: %s", msg);
}

Test(errors, double_free_from_another_thread) {
    int st = run_in_child(double_free_from_another_thread, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "double free"), "got: %s", msg);
}

Test(errors, double_free_of_a_huge_block) {
    int st = run_in_child(double_free_huge, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "free(): invalid pointer"), "got: %s", msg);
}

Test(errors, realloc_of_a_pointer_never_handed_out) {
    int st = run_in_child(realloc_invalid, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "realloc(): invalid pointer"), "got: %s", msg);
}

Test(errors, realloc_of_a_freed_block) {
    int st = run_in_child(realloc_freed, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "realloc(): double free"), "got: %s", msg);
}

Test(errors, usable_size_of_a_foreign_pointer) {
    int st = run_in_child(usable_size_invalid, NULL, msg, sizeof msg);
    cr_assert(aborted_with(st, msg, "malloc_usable_size(): invalid pointer"), "got: %s", msg);
}
