/* malloc(0) hands out unique pointers into address space that faults (zero.c), and arenas are
 * PROT_NONE beyond the slots their pools opened (arena.c): both turn silent memory errors into
 * an immediate fault. Sized frees check the size they name. */
#include "helpers.h"

Test(zero, zero_size_blocks_are_distinct_freeable_and_hold_nothing) {
    enum { N = 300000 };                         /* more than one zero arena holds */
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(0);
        cr_assert_not_null(p[i]);
        cr_assert_eq((uintptr_t)p[i] % 16, 0);
    }
    cr_assert_eq(_pm_zero_count(), N);
    for (int i = 1; i < N; i++) cr_assert_neq(p[i], p[i - 1]);
    cr_assert_eq(malloc_usable_size(p[7]), 0);
    for (int i = 0; i < N; i++) free(p[i]);
    cr_assert_eq(_pm_zero_count(), 0);
    void *a = malloc(0), *b = calloc(0, 8), *c = realloc(NULL, 0);
    cr_assert(_pm_is_zero_ptr(a) && _pm_is_zero_ptr(b) && _pm_is_zero_ptr(c));
    free(a); free(b); free(c);
}

Test(zero, realloc_grows_a_zero_size_block_and_shrinks_to_nothing) {
    char *p = malloc(0);
    p = realloc(p, 100);
    cr_assert_not_null(p);
    cr_assert(!_pm_is_zero_ptr(p));
    memset(p, 'x', 100);
    cr_assert_null(realloc(p, 0));               /* glibc: size 0 frees */
    cr_assert_eq(_pm_zero_count(), 0);
}

/* The asm hides where p came from, so that UBSan's object-size check does not stop the access first. */
static void read_zero(void *arg) {
    (void)arg;
    volatile char *p = malloc(0);
    __asm__("" : "+r"(p));
    fprintf(stderr, "read %d\n", p[0]);
}
static void write_zero(void *arg) {
    (void)arg;
    char *p = malloc(0);
    __asm__("" : "+r"(p));
    p[0] = 1;
    free(p);
    fprintf(stderr, "written\n");
}
static void double_free_zero(void *arg) { (void)arg; void *p = malloc(0); free(p); free(p); }
static void interior_zero(void *arg) { (void)arg; char *p = malloc(0); free(p + 8); }

Test(zero, touching_a_zero_size_block_faults) {
    char msg[256];
    int status = run_in_child(read_zero, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "%s", msg);
    status = run_in_child(write_zero, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "%s", msg);
}

Test(zero, bad_frees_of_zero_size_blocks_abort_with_a_message) {
    char msg[256];
    int status = run_in_child(double_free_zero, NULL, msg, sizeof msg);
    cr_assert(aborted_with(status, msg, "free(): double free (zero-size block is already free)"), "%s", msg);
    status = run_in_child(interior_zero, NULL, msg, sizeof msg);
    cr_assert(aborted_with(status, msg, "free(): invalid pointer (inside a poolmalloc zero-size arena"), "%s", msg);
}

/* Slots no pool has opened are PROT_NONE: a stray write there faults (the end-to-end case, an
 * overflow a megabyte past a block in a fresh process, is tests/integration/t_memerrors.sh). */
static void write_closed_slot(void *arg) {
    (void)arg;
    free(malloc(100));
    uint8_t *target = NULL;
    pthread_mutex_lock(&_pm_arena_lock);
    for (pm_arena_t *a = _pm_arena_first(); a && !target; a = a->all_next)
        for (unsigned i = PM_HEADER_SLOTS; i < PM_SLOTS && !target; i++)
            if (!((a->slots_open.w[i / 64] >> (i % 64)) & 1)) target = (uint8_t *)a + ((size_t)i << PM_SLOT_SHIFT);
    pthread_mutex_unlock(&_pm_arena_lock);
    if (target == NULL) { fprintf(stderr, "no closed slot\n"); return; }
    target[100] = 1;
    fprintf(stderr, "not caught\n");
}

Test(zero, slots_no_pool_opened_fault) {
    char msg[256];
    int status = run_in_child(write_closed_slot, NULL, msg, sizeof msg);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "%s", msg);
    assert_sound(_pm_arena_check());
}

void free_sized(void *p, size_t size);
void _ZdlPvm(void *p, size_t size);
static void sized_too_big(void *arg) { (void)arg; free_sized(malloc(8), 72); }
static void delete_too_big(void *arg) { (void)arg; _ZdlPvm(malloc(1), 72); }

Test(zero, sized_frees_check_the_size_they_name) {
    free_sized(malloc(10), 10);
    free_sized(malloc(10), 16);                  /* the block's usable size is 16 */
    _ZdlPvm(malloc(24), 24);
    free_sized(malloc(0), 0);
    free_sized(malloc(3 << 20), 3 << 20);
    char msg[256];
    int status = run_in_child(sized_too_big, NULL, msg, sizeof msg);
    cr_assert(aborted_with(status, msg, "free_sized(): sized free of more bytes than the block holds"), "%s", msg);
    status = run_in_child(delete_too_big, NULL, msg, sizeof msg);
    cr_assert(aborted_with(status, msg, "operator delete(): sized free of more bytes than the block holds"), "%s", msg);
}
