/* The one hash table (util/table.c): exact counts, backward-shift erase in the middle of a probe
 * run and in a run that wraps past the last slot, growth, repeated keys, ENOMEM when os.c fails,
 * and a checker that names the invariant a corrupted table breaks. */
#include "helpers.h"
#include <errno.h>

typedef struct { uintptr_t key; uint64_t value; } entry_t;

/* The home slot of key in t, as table.c computes it: the top log2(cap) bits of the hash. */
static size_t home(const pm_table_t *t, uintptr_t key) {
    return (size_t)(_pm_hash(key) >> (64 - __builtin_ctzll(t->cap)));
}

static entry_t *slot(const pm_table_t *t, size_t i) { return (entry_t *)(t->slots + i * t->esize); }

/* `n` distinct keys at or above *from whose home is `h`. */
static void keys_with_home(const pm_table_t *t, size_t h, uintptr_t *from, uintptr_t *out, int n) {
    for (int k = 0; k < n; (*from)++)
        if (home(t, *from) == h) out[k++] = *from;
}

static entry_t *put(pm_table_t *t, uintptr_t key, uint64_t value) {
    entry_t *e = _pm_table_insert(t, key);
    cr_assert_not_null(e, "insert %#lx", (unsigned long)key);
    cr_assert_eq(e->key, key);
    cr_assert_eq(e->value, 0, "a fresh entry is zeroed but for its key");
    e->value = value;
    return e;
}

static void assert_has(const pm_table_t *t, uintptr_t key, uint64_t value) {
    const entry_t *e = _pm_table_find(t, key);
    cr_assert_not_null(e, "key %#lx is in the table", (unsigned long)key);
    cr_assert_eq(e->value, value);
}

Test(table, insert_find_erase_with_exact_counts) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    cr_assert_null(_pm_table_find(&t, 42), "an empty table has no slots to look in");
    assert_sound(_pm_table_check(&t));
    for (uintptr_t k = 1; k <= 100; k++) put(&t, k * 16, k);
    cr_assert_eq(t.count, 100);
    for (uintptr_t k = 1; k <= 100; k++) assert_has(&t, k * 16, k);
    cr_assert_null(_pm_table_find(&t, 8));
    for (uintptr_t k = 2; k <= 100; k += 2) _pm_table_erase(&t, _pm_table_find(&t, k * 16));
    cr_assert_eq(t.count, 50);
    for (uintptr_t k = 1; k <= 100; k++) {
        if (k % 2) assert_has(&t, k * 16, k);
        else cr_assert_null(_pm_table_find(&t, k * 16), "erased key %lu is gone", (unsigned long)k);
    }
    assert_sound(_pm_table_check(&t));
    size_t pos = 0, seen = 0;
    uint64_t sum = 0;
    for (const entry_t *e; (e = _pm_table_next(&t, &pos)) != NULL; seen++) sum += e->value;
    cr_assert_eq(seen, 50, "iteration visits every entry once");
    cr_assert_eq(sum, 50 * 50, "the odd values 1..99");
    _pm_table_free(&t);
    cr_assert_eq(t.count, 0);
    cr_assert_null(t.slots);
    cr_assert_null(_pm_table_find(&t, 16));
    put(&t, 16, 1);                                       /* a freed table is usable again */
    cr_assert_eq(t.count, 1);
    _pm_table_free(&t);
}

/* Three keys share home h and a fourth has home h+1, so the run is h: a0 a1 a2 b. Erasing a0
 * shifts a1 and a2 back by one and b back into its home. */
Test(table, erase_in_the_middle_of_a_probe_run) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    put(&t, 1, 0);
    _pm_table_erase(&t, _pm_table_find(&t, 1));             /* now t.cap is known */
    size_t h = t.cap / 3;
    uintptr_t from = 2, a[3], b[1];
    keys_with_home(&t, h, &from, a, 3);
    keys_with_home(&t, h + 1, &from, b, 1);
    for (int i = 0; i < 3; i++) put(&t, a[i], 10 + (uint64_t)i);
    put(&t, b[0], 20);
    cr_assert_eq(slot(&t, h + 3)->key, b[0], "b was pushed past the a's");
    _pm_table_erase(&t, _pm_table_find(&t, a[0]));
    cr_assert_eq(slot(&t, h)->key, a[1]);
    cr_assert_eq(slot(&t, h + 1)->key, a[2]);
    cr_assert_eq(slot(&t, h + 2)->key, b[0], "b moved back by one");
    cr_assert_eq(slot(&t, h + 3)->key, 0, "the hole moved to the end of the run");
    _pm_table_erase(&t, _pm_table_find(&t, a[2]));           /* the middle of the run again */
    cr_assert_eq(slot(&t, h + 1)->key, b[0], "b is back home");
    cr_assert_null(_pm_table_find(&t, a[0]));
    cr_assert_null(_pm_table_find(&t, a[2]));
    assert_has(&t, a[1], 11);
    assert_has(&t, b[0], 20);
    cr_assert_eq(t.count, 2);
    assert_sound(_pm_table_check(&t));
    _pm_table_free(&t);
}

/* Keys whose home is the last slot wrap around to slots 0 and 1, where a key of home 0 waits
 * behind them: erasing the one in the last slot must pull the wrapped ones back across the end,
 * but not the home-0 key over its home. */
Test(table, erase_in_a_run_that_wraps_past_the_last_slot) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    put(&t, 1, 0);
    _pm_table_erase(&t, _pm_table_find(&t, 1));
    size_t last = t.cap - 1;
    uintptr_t from = 2, w[3], z[1];
    keys_with_home(&t, last, &from, w, 3);
    keys_with_home(&t, 0, &from, z, 1);
    for (int i = 0; i < 3; i++) put(&t, w[i], 30 + (uint64_t)i);
    put(&t, z[0], 40);
    cr_assert_eq(slot(&t, last)->key, w[0]);
    cr_assert_eq(slot(&t, 0)->key, w[1], "the run wraps");
    cr_assert_eq(slot(&t, 1)->key, w[2]);
    cr_assert_eq(slot(&t, 2)->key, z[0]);
    _pm_table_erase(&t, _pm_table_find(&t, w[0]));
    cr_assert_eq(slot(&t, last)->key, w[1], "pulled back across the end");
    cr_assert_eq(slot(&t, 0)->key, w[2]);
    cr_assert_eq(slot(&t, 1)->key, z[0]);
    cr_assert_eq(slot(&t, 2)->key, 0);
    _pm_table_erase(&t, _pm_table_find(&t, w[1]));           /* the wrapped member in the last slot */
    cr_assert_eq(slot(&t, last)->key, w[2]);
    cr_assert_eq(slot(&t, 0)->key, z[0], "z goes home");
    assert_has(&t, w[2], 32);
    assert_has(&t, z[0], 40);
    cr_assert_eq(t.count, 2);
    assert_sound(_pm_table_check(&t));
    _pm_table_free(&t);
}

Test(table, growth_doubles_and_keeps_every_entry) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    enum { N = 20000 };
    size_t cap = 0, doublings = 0;
    for (uintptr_t k = 1; k <= N; k++) {
        put(&t, k << 12, k);                              /* page-aligned, like huge blocks */
        if (t.cap != cap) { cr_assert(cap == 0 || t.cap == 2 * cap); cap = t.cap; doublings++; }
        cr_assert_leq(t.count * PM_TABLE_LOAD_DEN, t.cap * PM_TABLE_LOAD_NUM, "the load stays within its bound");
    }
    cr_assert_gt(doublings, 5);
    cr_assert_eq(t.count, N);
    cr_assert_eq(t.cap & (t.cap - 1), 0, "a power of two");
    for (uintptr_t k = 1; k <= N; k++) assert_has(&t, k << 12, k);
    assert_sound(_pm_table_check(&t));
    _pm_table_free(&t);
}

Test(table, zero_is_never_a_valid_key) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    errno = 0;
    cr_assert_null(_pm_table_insert(&t, 0));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(t.count, 0);
    for (uintptr_t k = 1; k <= 50; k++) put(&t, k, k);
    cr_assert_null(_pm_table_insert(&t, 0));
    cr_assert_null(_pm_table_find(&t, 0), "0 marks empty slots, never an entry");
    cr_assert_eq(t.count, 50);
    assert_sound(_pm_table_check(&t));
    _pm_table_free(&t);
}

Test(table, a_failed_mapping_gives_null_and_enomem_and_changes_nothing) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    _pm_os_fail_next_maps(1);
    errno = 0;
    cr_assert_null(_pm_table_insert(&t, 16), "the first insert maps the slots");
    cr_assert_eq(errno, ENOMEM);
    cr_assert_eq(t.count, 0);
    cr_assert_null(t.slots);
    uintptr_t k = 1;
    put(&t, k, k);
    while (t.count * PM_TABLE_LOAD_DEN < t.cap * PM_TABLE_LOAD_NUM) { k++; put(&t, k, k); }
    size_t cap = t.cap, count = t.count;
    uint8_t *slots = t.slots;
    _pm_os_fail_next_maps(1);
    errno = 0;
    cr_assert_null(_pm_table_insert(&t, k + 1), "full to the bound: the insert must grow");
    cr_assert_eq(errno, ENOMEM);
    _pm_os_fail_next_maps(1);
    cr_assert_eq(_pm_table_reserve(&t, 1), ENOMEM);
    _pm_os_fail_next_maps(0);
    cr_assert_eq(t.cap, cap);
    cr_assert_eq(t.count, count);
    cr_assert_eq(t.slots, slots, "the old slots stay");
    for (uintptr_t j = 1; j <= k; j++) assert_has(&t, j, j);
    assert_sound(_pm_table_check(&t));
    cr_assert_eq(_pm_table_reserve(&t, 1), 0, "it grows once mmap works again");
    cr_assert_eq(t.cap, 2 * cap);
    _pm_os_fail_next_maps(1);
    put(&t, k + 1, k + 1);                                /* reserved: no mapping needed */
    _pm_os_fail_next_maps(0);
    _pm_table_free(&t);
}

/* Repeated keys (the sampler's site index: two stacks may share a hash) are all found, in probe
 * order, and erasing one leaves the others. */
Test(table, repeated_keys_are_found_one_after_another) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    for (uint64_t v = 1; v <= 5; v++) put(&t, 777, v);
    put(&t, 778, 9);
    uint64_t seen = 0;
    for (const entry_t *e = _pm_table_find(&t, 777); e; e = _pm_table_find_next(&t, e)) seen |= 1u << e->value;
    cr_assert_eq(seen, 0x3e, "all five entries of key 777");
    entry_t *e = _pm_table_find(&t, 777);
    while (e->value != 3) e = _pm_table_find_next(&t, e);
    _pm_table_erase(&t, e);
    seen = 0;
    for (e = _pm_table_find(&t, 777); e; e = _pm_table_find_next(&t, e)) seen |= 1u << e->value;
    cr_assert_eq(seen, 0x36, "the other four stay");
    assert_has(&t, 778, 9);
    assert_sound(_pm_table_check(&t));
    _pm_table_free(&t);
}

/* Random inserts and erases of keys from a small range (long runs, many wraps) against a plain
 * array of what should be there; the checker after every step. */
Test(table, random_churn_agrees_with_a_plain_array) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    enum { KEYS = 600 };
    static uint64_t want[KEYS + 1];
    uint64_t seed = 0x9e1ull;
    size_t count = 0;
    for (int step = 0; step < 20000; step++) {
        uintptr_t k = 1 + test_rand(&seed) % KEYS;
        entry_t *e = _pm_table_find(&t, k);
        cr_assert_eq(e != NULL, want[k] != 0, "step %d key %lu", step, (unsigned long)k);
        if (e) { cr_assert_eq(e->value, want[k]); _pm_table_erase(&t, e); want[k] = 0; count--; }
        else { put(&t, k, (uint64_t)step + 1); want[k] = (uint64_t)step + 1; count++; }
        cr_assert_eq(t.count, count);
        if (step % 64 == 0) assert_sound(_pm_table_check(&t));
    }
    for (uintptr_t k = 1; k <= KEYS; k++)
        if (want[k]) assert_has(&t, k, want[k]); else cr_assert_null(_pm_table_find(&t, k));
    _pm_table_free(&t);
}

static bool says(const char *why, const char *word) { return why != NULL && strstr(why, word) != NULL; }

Test(table, the_checker_names_the_invariant_a_corrupted_table_breaks) {
    pm_table_t t = PM_TABLE_INIT(entry_t);
    put(&t, 1, 0);
    _pm_table_erase(&t, _pm_table_find(&t, 1));
    size_t h = t.cap / 2;
    uintptr_t from = 2, a[3];
    keys_with_home(&t, h, &from, a, 3);
    for (int i = 0; i < 3; i++) put(&t, a[i], (uint64_t)i);
    for (uintptr_t k = 1000; k < 1040; k++) if (!_pm_table_find(&t, k)) put(&t, k, k);
    cr_assert_null(_pm_table_check(&t), "sound");

    t.count++;
    const char *why = _pm_table_check(&t);
    cr_assert(says(why, "count"), "a wrong count: %s", why ? why : "NULL");
    t.count--;

    uintptr_t saved = slot(&t, h + 1)->key;                  /* a hole in the run, count adjusted */
    cr_assert_eq(saved, a[1]);
    slot(&t, h + 1)->key = 0;
    t.count--;
    why = _pm_table_check(&t);
    cr_assert(says(why, "cut off"), "an entry past an empty slot: %s", why ? why : "NULL");
    slot(&t, h + 1)->key = saved;
    t.count++;
    cr_assert_null(_pm_table_check(&t), "sound again");

    size_t cap = t.cap;                                      /* over the load bound, written by hand */
    for (uintptr_t k = 5000; t.count * PM_TABLE_LOAD_DEN <= cap * PM_TABLE_LOAD_NUM; k++) {
        if (_pm_table_find(&t, k)) continue;
        size_t i = home(&t, k);
        while (slot(&t, i)->key) i = (i + 1) & (cap - 1);
        slot(&t, i)->key = k;
        t.count++;
    }
    why = _pm_table_check(&t);
    cr_assert(says(why, "load"), "too full: %s", why ? why : "NULL");
    _pm_table_free(&t);

    pm_table_t bad = PM_TABLE_INIT(entry_t);
    bad.count = 1;
    cr_assert_not_null(_pm_table_check(&bad), "entries without slots");
}
