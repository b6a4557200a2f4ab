/* gc_listdict.c: a small object model on poolmalloc's refcounted objects and cycle collector:
 * an integer, a list and a dict, the way an interpreter would define them.
 *
 *   cc -std=gnu11 -Iinclude examples/gc_listdict.c build/libpoolmalloc.a -lunwind -lm -lpthread -o gc_listdict
 *
 * Each container type says how to visit its references (traverse) and how to drop them (clear);
 * refcounting frees what it can, and pm_gc_collect frees the cycles. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "poolmalloc.h"
#include "poolmalloc/gc.h"

/* ---- int: holds no references, so it is never tracked ---- */
typedef struct { long value; } Int;
static const pm_type Int_type = { "int", NULL, NULL, NULL, NULL };

static Int *int_new(pm_gc *gc, long v) {
    Int *i = pm_new(gc, &Int_type, sizeof(Int));
    i->value = v;
    return i;
}

/* ---- list: a growable array of references ---- */
typedef struct { size_t len, cap; void **items; } List;

static int list_traverse(void *self, pm_visit visit, void *arg) {
    List *l = self;
    for (size_t i = 0; i < l->len; i++) {
        int r = visit(l->items[i], arg);
        if (r) return r;
    }
    return 0;
}
static int list_clear(void *self) {
    List *l = self;
    void **items = l->items;
    size_t len = l->len;
    l->items = NULL;                  /* detach first: a decref below may reach this list again */
    l->len = l->cap = 0;
    for (size_t i = 0; i < len; i++) pm_decref(items[i]);
    pm_free(items);
    return 0;
}
static void list_dealloc(void *self) { list_clear(self); }
static const pm_type List_type = { "list", list_traverse, list_clear, NULL, list_dealloc };

static List *list_new(pm_gc *gc) { return pm_new(gc, &List_type, sizeof(List)); }
static void list_append(List *l, void *obj) {
    if (l->len == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 4;
        l->items = pm_realloc(l->items, l->cap * sizeof *l->items);
    }
    pm_incref(obj);
    l->items[l->len++] = obj;
}

/* ---- dict: string keys (copied) to references, linear probing ---- */
typedef struct { char *key; void *value; } Entry;
typedef struct { size_t used, cap; Entry *entries; } Dict;

static int dict_traverse(void *self, pm_visit visit, void *arg) {
    Dict *d = self;
    for (size_t i = 0; i < d->cap; i++) {
        if (d->entries[i].key == NULL) continue;
        int r = visit(d->entries[i].value, arg);
        if (r) return r;
    }
    return 0;
}
static int dict_clear(void *self) {
    Dict *d = self;
    Entry *e = d->entries;
    size_t cap = d->cap;
    d->entries = NULL;
    d->used = d->cap = 0;
    for (size_t i = 0; i < cap; i++) {
        if (e[i].key == NULL) continue;
        pm_free(e[i].key);
        pm_decref(e[i].value);
    }
    pm_free(e);
    return 0;
}
static void dict_dealloc(void *self) { dict_clear(self); }
static const pm_type Dict_type = { "dict", dict_traverse, dict_clear, NULL, dict_dealloc };

static size_t hash(const char *s) { size_t h = 5381; while (*s) h = h * 33 + (unsigned char)*s++; return h; }

static Dict *dict_new(pm_gc *gc) { return pm_new(gc, &Dict_type, sizeof(Dict)); }
static void dict_set(Dict *d, const char *key, void *value) {
    if (2 * (d->used + 1) > d->cap) {                      /* grow, rehash */
        Entry *old = d->entries;
        size_t old_cap = d->cap;
        d->cap = d->cap ? 2 * d->cap : 8;
        d->entries = pm_calloc(d->cap, sizeof(Entry));
        d->used = 0;
        for (size_t i = 0; i < old_cap; i++) {
            if (old[i].key == NULL) continue;
            size_t j = hash(old[i].key) & (d->cap - 1);
            while (d->entries[j].key) j = (j + 1) & (d->cap - 1);
            d->entries[j] = old[i];
            d->used++;
        }
        pm_free(old);
    }
    size_t j = hash(key) & (d->cap - 1);
    while (d->entries[j].key && strcmp(d->entries[j].key, key) != 0) j = (j + 1) & (d->cap - 1);
    pm_incref(value);
    if (d->entries[j].key) {                               /* replace */
        void *old = d->entries[j].value;
        d->entries[j].value = value;
        pm_decref(old);
        return;
    }
    size_t n = strlen(key) + 1;
    d->entries[j].key = memcpy(pm_malloc(n), key, n);
    d->entries[j].value = value;
    d->used++;
}

static void show(pm_gc *gc, const char *when) {
    pm_gc_type_stats ts[8];
    size_t n = pm_gc_get_type_stats(gc, ts, 8);
    printf("%-34s", when);
    for (size_t i = 0; i < n && i < 8; i++) printf(" %s=%zu", ts[i].name, ts[i].live);
    printf("\n");
}

int main(void) {
    pm_gc *gc = pm_gc_new();

    /* A module-like dict holding a list of numbers, and the list holding the dict back. */
    Dict *module = dict_new(gc);
    List *numbers = list_new(gc);
    for (long i = 0; i < 5; i++) {
        Int *x = int_new(gc, i * i);
        list_append(numbers, x);
        pm_decref(x);                                      /* the list owns it now */
    }
    dict_set(module, "numbers", numbers);
    list_append(numbers, module);                          /* a cycle: module <-> numbers */
    pm_decref(numbers);
    show(gc, "built:");

    /* A self-referencing list, dropped at once: refcounting cannot free it. */
    List *self_ref = list_new(gc);
    list_append(self_ref, self_ref);
    pm_decref(self_ref);
    show(gc, "after dropping a self-cycle:");
    printf("collect: %zu unreachable\n", pm_gc_collect(gc, 2));
    show(gc, "after collect:");

    /* Why is the list of numbers alive? Because `module` is held from here. */
    void *chain[4];
    size_t len = pm_gc_why_alive(gc, numbers, chain, 4);
    printf("why is the list alive: %zu links:", len);
    for (size_t i = 0; i < len && i < 4; i++) printf(" %s", pm_type_of(chain[i])->name);
    printf("\n");

    /* Drop the last outside reference: the module cycle becomes garbage. */
    pm_decref(module);
    show(gc, "after dropping the module:");
    printf("collect: %zu unreachable\n", pm_gc_collect(gc, 2));
    show(gc, "after collect:");

    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    printf("full collections: %zu, collected %zu, uncollectable %zu\n",
           st[2].collections, st[2].collected, st[2].uncollectable);
    fflush(stdout);
    pm_gc_destroy(gc);
    return 0;
}
