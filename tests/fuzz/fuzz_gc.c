/* fuzz_gc.c: a libFuzzer target for poolmalloc/gc.h: refcounted objects and the cycle collector.
 *
 * The input bytes are a program of graph mutations on one collector (a new one per input):
 * new objects of five types, setting and clearing references (incref the new target, decref the
 * old, as a real container does), holding and dropping references from outside, collecting a
 * generation, freeze and unfreeze, untrack and track, weak references (new, get, free), the
 * inspection calls, and a mode in which pm_new collects generation 0 at every allocation
 * (PM_GC_DEBUG_COLLECT_ALWAYS). A reference model (tests/unit/objects/test_collect_random.c's
 * idea, extended) simulates every operation: refcount deaths, finalizers (at most once; the
 * "phoenix" type resurrects itself), generations (merge, promotion, the permanent generation,
 * the saved garbage), CPython's collection algorithm step by step (unreachable set, weakref
 * clearing, finalizers, resurrection, clear, uncollectable objects without `clear`), and the
 * collector's counts. After every operation the fuzzer checks that the real collector agrees:
 *   - each object is alive exactly when the model says, with the model's refcount, references,
 *     tracking, generation and finalized flag, and its payload intact;
 *   - and, from the real objects alone, without the model: every object reachable from a
 *     reference held from outside is alive; an object that nothing the collector must keep
 *     reached before a full collection is dead after it, unless it came back (a phoenix, or what
 *     one reaches) or is uncollectable (on the saved-garbage list, or reached from it);
 *   - pm_gc_collect returns the model's count of unreachable objects, and the collection
 *     callback, pm_gc_get_stats, pm_gc_get_count and pm_gc_get_type_stats agree with the model;
 *   - the generation lists (pm_gc_get_objects, pm_gc_get_freeze_count, pm_gc_get_garbage) and
 *     _pm_gc_check's invariants;
 *   - weakref callbacks run exactly once, when the referent dies or is found unreachable, and
 *     pm_weakref_get answers NULL exactly then;
 *   - pm_gc_get_referents, pm_gc_get_referrers and pm_gc_why_alive (a valid chain from a root,
 *     of the shortest length) against the model's graph.
 * At the end of each input every reference is dropped, every object must die, and the collector
 * is destroyed. Any mismatch prints one line and aborts; FUZZ_GC_TRACE=1 prints the operations. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "objects/objects.h"      /* -Ilib: _pm_gc_check, _pm_gc_generation_of, PM_GEN_* */
#include "fuzz_check.h"

enum { MAX = 96, NREF = 3, NWEAK = 16 };
enum { T_NODE, T_FIN, T_PHOENIX, T_NOCLEAR, T_LEAF, NTYPES };
enum { G_UNTRACKED = -1, G_PERM = PM_GEN_PERMANENT, G_GARBAGE = PM_GEN_GARBAGE };
#define MAGIC 0x6f626a6563742121ull

typedef struct obj {
    uint64_t magic;            /* MAGIC ^ id */
    int      id;
    int      extra;            /* bytes of pattern after the struct */
    void    *ref[NREF];
    unsigned char tail[];
} obj;

/* The model and the checks are the oracle, not the code under test, and most of the time: no
 * coverage callbacks in them (the library's coverage is what guides), and not inlined into code
 * that has them. */
#define ORACLE __attribute__((noinline, no_sanitize("coverage")))
/* FUZZ_GC_TRACE=1 in the environment: one line per operation on stderr, to read a reproducer. */
static bool trace;
#define TRACE(...) do { if (trace) fprintf(stderr, "fuzz_gc: " __VA_ARGS__); } while (0)

/* ---- the real side: what the hooks saw ---- */
static pm_gc *gc;
static struct {
    obj  *p[MAX];
    bool  alive[MAX];          /* set by new, cleared by dealloc */
    int   finalized[MAX];      /* finalizer calls */
    int   held[MAX];           /* references the fuzzer owns (the phoenix adds its own) */
} R;

/* ---- the model ---- */
typedef struct {
    bool alive, tracked, finalized;
    bool gen_either;           /* resurrected by refcount: its old generation, or 0 (trashcan) */
    int  type, held, gen;      /* gen: 0..2, G_PERM, G_GARBAGE, G_UNTRACKED */
    int  edge[NREF];           /* -1 or an id */
} mobj_t;
static mobj_t M[MAX];
static int nobj;
static size_t m_count[3];
static pm_gc_stats m_stats[3];
static size_t m_allocated[NTYPES], m_freed[NTYPES], m_live[NTYPES], m_peak[NTYPES];

typedef struct {
    pm_weakref *w;             /* NULL: the slot is free */
    int  target;
    bool has_cb, cleared;      /* cleared: the model says the referent died or was unreachable */
    int  expect_calls, calls;
} weak_t;
static weak_t W[NWEAK];

static struct { int starts, stops, gen; pm_gc_event stop; } ev;

static bool is_container(int type) { return type != T_LEAF; }
static bool has_clear(int type) { return type != T_NOCLEAR && type != T_LEAF; }
static bool has_finalize(int type) { return type == T_FIN || type == T_PHOENIX; }

/* ---- the types ---- */
static ORACLE int id_of(const void *self) {
    const obj *o = self;
    CHECK(o->id >= 0 && o->id < nobj && o->magic == (MAGIC ^ (uint64_t)o->id) && R.p[o->id] == self,
          "object %p: bad payload (id %d, magic %#llx)", self, o->id, (unsigned long long)o->magic);
    return o->id;
}
static int t_traverse(void *self, pm_visit visit, void *arg) {
    obj *o = self;
    for (int k = 0; k < NREF; k++) {
        if (o->ref[k] == NULL) continue;
        int r = visit(o->ref[k], arg);
        if (r) return r;
    }
    return 0;
}
static int t_clear(void *self) {
    obj *o = self;
    void *old[NREF];
    for (int k = 0; k < NREF; k++) { old[k] = o->ref[k]; o->ref[k] = NULL; }
    for (int k = 0; k < NREF; k++) if (old[k]) pm_decref(old[k]);
    return 0;
}
static void t_finalize(void *self) {
    int id = id_of(self);
    CHECK(R.alive[id], "finalizer of dead object %d", id);
    CHECK(++R.finalized[id] == 1, "object %d finalized %d times", id, R.finalized[id]);
}
static void t_phoenix_finalize(void *self) {
    t_finalize(self);
    pm_incref(self);
    R.held[id_of(self)]++;            /* the fuzzer owns that reference now */
}
static void t_dealloc(void *self) {
    int id = id_of(self);
    obj *o = self;
    CHECK(R.alive[id], "object %d deallocated twice", id);
    if (has_finalize(M[id].type)) CHECK(R.finalized[id] == 1 && pm_gc_is_finalized(self), "object %d deallocated before its finalizer", id);
    for (int i = 0; i < o->extra; i++)
        CHECK(o->tail[i] == (unsigned char)(id * 31 + i), "object %d: payload byte %d overwritten", id, i);
    R.alive[id] = false;
    if (is_container(M[id].type)) t_clear(self);
}
static const pm_type types[NTYPES] = {
    { "node", t_traverse, t_clear, NULL, t_dealloc },
    { "finalized", t_traverse, t_clear, t_finalize, t_dealloc },
    { "phoenix", t_traverse, t_clear, t_phoenix_finalize, t_dealloc },
    { "noclear", t_traverse, NULL, NULL, t_dealloc },
    { "leaf", NULL, NULL, NULL, t_dealloc },
};

static void on_event(const pm_gc_event *e, void *arg) {
    (void)arg;
    if (e->phase == PM_GC_START) { ev.starts++; ev.gen = e->generation; return; }
    CHECK(e->phase == PM_GC_STOP && e->generation == ev.gen, "event phase %d generation %d", e->phase, e->generation);
    ev.stops++;
    ev.stop = *e;
}

static void weak_cb(pm_weakref *ref, void *arg) {
    weak_t *w = arg;
    CHECK(w->w == ref, "weakref callback with another weakref's argument");
    CHECK(pm_weakref_get(ref) == NULL, "a weakref reads non-NULL in its callback");
    w->calls++;
}

/* ---- the model's mechanics ---- */

/* rc[i]: the references held from outside plus those of live objects (the model's refcount). */
static ORACLE void m_refcounts(size_t *rc) {
    for (int i = 0; i < nobj; i++) rc[i] = (size_t)M[i].held;
    for (int j = 0; j < nobj; j++)
        if (M[j].alive) for (int k = 0; k < NREF; k++) if (M[j].edge[k] >= 0) rc[M[j].edge[k]]++;
}

static ORACLE void m_weak_clear(int i) {
    for (int w = 0; w < NWEAK; w++)
        if (W[w].w && W[w].target == i && !W[w].cleared) { W[w].cleared = true; W[w].expect_calls += W[w].has_cb; }
}

/* Refcount deaths until none is left: an object whose count is 0 is finalized once (the phoenix
 * comes back, held by the fuzzer, tracked), or dies and drops its references. The end state does
 * not depend on the order. */
static ORACLE void m_settle(void) {
    size_t rc[MAX];
    int work[MAX * (NREF + 1)], n = 0;
    m_refcounts(rc);
    for (int i = 0; i < nobj; i++) if (M[i].alive && rc[i] == 0) work[n++] = i;
    while (n) {
        int i = work[--n];
        if (!M[i].alive || rc[i] != 0) continue;
        if (has_finalize(M[i].type) && !M[i].finalized) {
            M[i].finalized = true;
            if (M[i].type == T_PHOENIX) {
                M[i].held++;
                rc[i]++;
                if (!M[i].tracked) { M[i].tracked = true; M[i].gen = 0; }
                else M[i].gen_either = true;         /* the trashcan untracks before it finalizes */
                continue;
            }
        }
        M[i].alive = false;
        M[i].tracked = false;
        M[i].gen = G_UNTRACKED;
        for (int k = 0; k < NREF; k++) {
            int t = M[i].edge[k];
            M[i].edge[k] = -1;
            if (t >= 0 && --rc[t] == 0) work[n++] = t;
        }
        m_weak_clear(i);
        m_freed[M[i].type]++;
        m_live[M[i].type]--;
        if (is_container(M[i].type) && m_count[0] > 0) m_count[0]--;
    }
}

/* Within the set `in`: the members that a reference from outside the set reaches (through
 * members). ext = refcount minus references from members. */
static ORACLE void m_reach_within(const bool *in, bool *reach) {
    int stack[MAX], sp = 0;
    size_t rc[MAX], inner[MAX] = { 0 };
    m_refcounts(rc);
    for (int j = 0; j < nobj; j++)
        if (in[j]) for (int k = 0; k < NREF; k++) if (M[j].edge[k] >= 0 && in[M[j].edge[k]]) inner[M[j].edge[k]]++;
    for (int i = 0; i < nobj; i++) {
        reach[i] = in[i] && rc[i] > inner[i];
        if (reach[i]) stack[sp++] = i;
    }
    while (sp) {
        int i = stack[--sp];
        for (int k = 0; k < NREF; k++) {
            int j = M[i].edge[k];
            if (j >= 0 && in[j] && !reach[j]) { reach[j] = true; stack[sp++] = j; }
        }
    }
}

/* collect.c's collect(), step by step. Returns the unreachable count it must report. */
static ORACLE size_t m_collect(int g) {
    if (g + 1 < 3) m_count[g + 1]++;
    for (int i = 0; i <= g; i++) m_count[i] = 0;
    int old = g + 1 < 3 ? g + 1 : 2;
    bool young[MAX], reach[MAX], unreach[MAX], still[MAX];
    for (int i = 0; i < nobj; i++) {
        young[i] = M[i].alive && M[i].tracked && M[i].gen >= 0 && M[i].gen <= g;
        if (young[i]) M[i].gen = g;
    }
    m_reach_within(young, reach);
    int user_calls = 0;
    for (int i = 0; i < nobj; i++) {
        unreach[i] = young[i] && !reach[i];
        if (young[i] && reach[i]) M[i].gen = old;
    }
    for (int i = 0; i < nobj; i++) {                          /* weakrefs: all cleared first */
        if (!unreach[i]) continue;
        for (int w = 0; w < NWEAK; w++)
            if (W[w].w && W[w].target == i && !W[w].cleared) { W[w].cleared = true; W[w].expect_calls += W[w].has_cb; user_calls += W[w].has_cb; }
    }
    for (int i = 0; i < nobj; i++) {                          /* finalizers */
        if (!unreach[i] || !has_finalize(M[i].type) || M[i].finalized) continue;
        M[i].finalized = true;
        user_calls++;
        if (M[i].type == T_PHOENIX) M[i].held++;
    }
    if (user_calls) {                                         /* the resurrected, and what they reach */
        m_reach_within(unreach, reach);
        for (int i = 0; i < nobj; i++) {
            still[i] = unreach[i] && !reach[i];
            if (unreach[i] && reach[i]) M[i].gen = old;
        }
    } else {
        memcpy(still, unreach, sizeof still);
    }
    size_t found = 0;
    for (int i = 0; i < nobj; i++) {
        if (!still[i]) continue;
        found++;
        if (has_clear(M[i].type)) for (int k = 0; k < NREF; k++) M[i].edge[k] = -1;
    }
    m_settle();
    size_t uncollectable = 0;
    for (int i = 0; i < nobj; i++) {
        if (!still[i] || !M[i].alive) continue;
        if (has_clear(M[i].type)) M[i].gen = old;             /* survived its clear */
        else { M[i].gen = G_GARBAGE; uncollectable++; }
    }
    m_stats[g].collections++;
    m_stats[g].collected += found - uncollectable;
    m_stats[g].uncollectable += uncollectable;
    return found;
}

/* ---- checking the real collector against the model ---- */
/* The real generation of every object, from one walk of each list: 0-2, G_GARBAGE, G_PERM (tracked
 * but on no list that can be listed: the frozen ones, counted by pm_gc_get_freeze_count), or
 * G_UNTRACKED. n[] gets the lengths of the lists walked. */
static ORACLE void real_generations(int *rg, size_t *n) {
    void *buf[MAX + 1];
    for (int i = 0; i < nobj; i++) rg[i] = R.alive[i] && pm_is_tracked(R.p[i]) ? G_PERM : G_UNTRACKED;
    for (int g = 0; g <= G_GARBAGE; g++) {
        if (g == G_PERM) continue;
        n[g] = g == G_GARBAGE ? pm_gc_get_garbage(gc, buf, MAX + 1) : pm_gc_get_objects(gc, g, buf, MAX + 1);
        CHECK(n[g] <= MAX, "generation %d holds %zu objects", g, n[g]);
        for (size_t k = 0; k < n[g]; k++) {
            int id = id_of(buf[k]);
            CHECK(rg[id] == G_PERM, "object %d is on two lists, or on one but untracked", id);
            rg[id] = g;
        }
    }
    n[G_PERM] = pm_gc_get_freeze_count(gc);
}

static bool collect_always;

static ORACLE void check_all(const char *when) {
    size_t tracked = 0, in_gen[5] = { 0 }, listed[5] = { 0 }, rcs[MAX];
    int rg[MAX];
    static unsigned checks;
    int spot = nobj ? (int)(checks++ % (unsigned)nobj) : -1;   /* one object a check: the slow lookup too */
    m_refcounts(rcs);
    real_generations(rg, listed);
    {   /* independent of the model: everything reachable from a held reference is alive */
        bool seen[MAX] = { false };
        int stack[MAX], sp = 0;
        for (int i = 0; i < nobj; i++) if (R.held[i] > 0) { seen[i] = true; stack[sp++] = i; }
        while (sp) {
            int i = stack[--sp];
            CHECK(R.alive[i], "%s: object %d is reachable from a held reference but was freed", when, i);
            for (int k = 0; k < NREF; k++) {
                int j = M[i].edge[k];
                if (j >= 0 && !seen[j]) { seen[j] = true; stack[sp++] = j; }
            }
        }
    }
    for (int i = 0; i < nobj; i++) {
        CHECK(R.alive[i] == M[i].alive, "%s: object %d is %s, the model says %s", when, i,
              R.alive[i] ? "alive" : "dead", M[i].alive ? "alive" : "dead");
        CHECK(R.finalized[i] == (int)M[i].finalized, "%s: object %d finalized %d times, the model says %d",
              when, i, R.finalized[i], (int)M[i].finalized);
        CHECK(R.held[i] == M[i].held, "%s: object %d: %d references held, the model says %d", when, i, R.held[i], M[i].held);
        if (!M[i].alive) continue;
        obj *o = R.p[i];
        CHECK(id_of(o) == i, "%s: object %d payload", when, i);
        size_t rc = rcs[i];
        CHECK(pm_refcount(o) == rc, "%s: object %d: refcount %zu, the model says %zu", when, i, pm_refcount(o), rc);
        for (int k = 0; k < NREF; k++) {
            void *want = M[i].edge[k] >= 0 ? R.p[M[i].edge[k]] : NULL;
            CHECK(o->ref[k] == want, "%s: object %d: reference %d changed", when, i, k);
        }
        for (int b = 0; b < o->extra; b++)
            CHECK(o->tail[b] == (unsigned char)(i * 31 + b), "%s: object %d: payload byte %d overwritten", when, i, b);
        CHECK(pm_type_of(o) == &types[M[i].type], "%s: object %d: type", when, i);
        CHECK(pm_is_tracked(o) == M[i].tracked, "%s: object %d: tracked %d, the model says %d", when, i, pm_is_tracked(o), M[i].tracked);
        CHECK(pm_gc_is_finalized(o) == M[i].finalized, "%s: object %d: finalized flag", when, i);
        int g = rg[i];
        if (i == spot) CHECK(_pm_gc_generation_of(gc, o) == g, "%s: object %d: _pm_gc_generation_of", when, i);
        if (M[i].gen_either && (g == 0 || g == M[i].gen)) { M[i].gen = g; M[i].gen_either = false; }
        CHECK(g == M[i].gen, "%s: object %d (%s) is in generation %d, the model says %d", when, i, types[M[i].type].name, g, M[i].gen);
        if (M[i].tracked) {
            CHECK(g >= 0 && g <= G_GARBAGE, "%s: object %d: generation %d", when, i, g);
            tracked++;
            in_gen[g]++;
        }
    }
    size_t n = _pm_gc_check(gc);
    CHECK(n == tracked, "%s: _pm_gc_check: %zu tracked, the model says %zu", when, n, tracked);
    for (int g = 0; g <= G_GARBAGE; g++)
        CHECK(listed[g] == in_gen[g], "%s: generation %d holds %zu objects, the model says %zu", when, g, listed[g], in_gen[g]);
    CHECK(pm_gc_get_objects(gc, PM_GC_ALL, NULL, 0) == in_gen[0] + in_gen[1] + in_gen[2], "%s: get_objects(-1)", when);
    int count[3];
    pm_gc_get_count(gc, count);
    for (int g = 0; g < 3; g++)
        CHECK((size_t)count[g] == m_count[g], "%s: count[%d] is %d, the model says %zu", when, g, count[g], m_count[g]);
    pm_gc_stats st[3];
    pm_gc_get_stats(gc, st);
    for (int g = 0; g < 3; g++)
        CHECK(st[g].collections == m_stats[g].collections && st[g].collected == m_stats[g].collected &&
              st[g].uncollectable == m_stats[g].uncollectable,
              "%s: stats of generation %d: %zu collections, %zu collected, %zu uncollectable; the model says %zu, %zu, %zu",
              when, g, st[g].collections, st[g].collected, st[g].uncollectable,
              m_stats[g].collections, m_stats[g].collected, m_stats[g].uncollectable);
    pm_gc_type_stats ts[NTYPES + 1];
    size_t nt = pm_gc_get_type_stats(gc, ts, NTYPES + 1);
    CHECK(nt <= NTYPES, "%s: %zu types", when, nt);
    for (size_t k = 0; k < nt; k++) {
        int t = (int)(ts[k].type - types);
        CHECK(t >= 0 && t < NTYPES && ts[k].live == m_live[t] && ts[k].allocated == m_allocated[t] &&
              ts[k].freed == m_freed[t] && ts[k].peak == m_peak[t],
              "%s: type stats of %s: live %zu allocated %zu freed %zu peak %zu", when, ts[k].name,
              ts[k].live, ts[k].allocated, ts[k].freed, ts[k].peak);
    }
    for (int w = 0; w < NWEAK; w++)
        if (W[w].w) CHECK(W[w].calls == W[w].expect_calls, "%s: weakref %d: %d callbacks, the model says %d",
                          when, w, W[w].calls, W[w].expect_calls);
}

/* ---- the input ---- */
static const uint8_t *in;
static size_t in_len, in_pos;
static uint8_t u8(void) { return in_pos < in_len ? in[in_pos++] : 0; }

/* What a program can reach: objects held from outside, the saved garbage, what they reference. */
static ORACLE int accessible(int *out) {
    bool seen[MAX] = { false };
    int stack[MAX], sp = 0, n = 0;
    for (int i = 0; i < nobj; i++)
        if (M[i].alive && (M[i].held > 0 || M[i].gen == G_GARBAGE)) { seen[i] = true; stack[sp++] = i; }
    while (sp) {
        int i = stack[--sp];
        for (int k = 0; k < NREF; k++) {
            int j = M[i].edge[k];
            if (j >= 0 && !seen[j]) { seen[j] = true; stack[sp++] = j; }
        }
    }
    for (int i = 0; i < nobj; i++) if (seen[i]) out[n++] = i;
    return n;
}
static int pick(const int *c, int n) { return n ? c[u8() % n] : -1; }

/* ---- the operations, each on the real collector and the model ---- */
static void do_new(int type, int extra) {
    if (nobj == MAX) return;
    int id = nobj;
    int stops = ev.stops;
    size_t want = SIZE_MAX;
    if (is_container(type)) {
        m_count[0]++;
        if (collect_always) want = m_collect(0);        /* pm_new collects before it allocates */
    }
    TRACE("new %d: %s\n", id, types[type].name);
    obj *o = pm_new(gc, &types[type], sizeof(obj) + (size_t)extra);
    CHECK(o != NULL, "pm_new failed");
    CHECK((uintptr_t)o % PM_GC_ALIGN == 0, "pm_new: %p not aligned", (void *)o);
    for (int k = 0; k < NREF; k++) CHECK(o->ref[k] == NULL, "pm_new: payload not zeroed");
    if (want != SIZE_MAX) {
        CHECK(ev.stops == stops + 1 && ev.gen == 0, "pm_new with COLLECT_ALWAYS: no collection of generation 0");
        CHECK(ev.stop.collected + ev.stop.uncollectable == want, "pm_new's collection found %zu + %zu, the model says %zu",
              ev.stop.collected, ev.stop.uncollectable, want);
    } else {
        CHECK(ev.stops == stops, "pm_new collected with collection disabled");
    }
    nobj++;
    o->magic = MAGIC ^ (uint64_t)id;
    o->id = id;
    o->extra = extra;
    for (int b = 0; b < extra; b++) o->tail[b] = (unsigned char)(id * 31 + b);
    R.p[id] = o;
    R.alive[id] = true;
    R.finalized[id] = 0;
    R.held[id] = 1;
    M[id] = (mobj_t){ .alive = true, .tracked = is_container(type), .type = type, .held = 1,
                      .gen = is_container(type) ? 0 : G_UNTRACKED, .edge = { -1, -1, -1 } };
    m_allocated[type]++;
    if (++m_live[type] > m_peak[type]) m_peak[type] = m_live[type];
}

static void do_set(int i, int k, int j) {
    TRACE("%d.ref[%d] = %d\n", i, k, j);
    obj *o = R.p[i];
    void *t = j >= 0 ? R.p[j] : NULL;
    if (t) pm_incref(t);
    void *oldp = o->ref[k];
    o->ref[k] = t;
    M[i].edge[k] = j;                 /* first: the decref below may free the old target, or i */
    if (oldp) pm_decref(oldp);
    m_settle();
}

static void do_drop(int i) {
    TRACE("drop a reference to %d\n", i);
    R.held[i]--;
    M[i].held--;
    pm_decref(R.p[i]);
    m_settle();
}

/* Independent of the model's simulation of collect(), from the real objects alone: `from` marks
 * the objects where a search starts; reach[] gets everything they reference, transitively. */
static ORACLE void real_reach(const bool *from, bool *reach) {
    int stack[MAX], sp = 0;
    for (int i = 0; i < nobj; i++) { reach[i] = from[i] && R.alive[i]; if (reach[i]) stack[sp++] = i; }
    while (sp) {
        obj *o = R.p[stack[--sp]];
        if (!is_container(M[o->id].type)) continue;
        for (int k = 0; k < NREF; k++) {
            if (o->ref[k] == NULL) continue;
            int j = id_of(o->ref[k]);
            if (!reach[j]) { reach[j] = true; stack[sp++] = j; }
        }
    }
}

/* Before a full collection: the objects of generations 0-2 that nothing the collector must keep
 * reaches (a reference held from outside, an untracked, frozen or saved-garbage object). */
static ORACLE void unreachable_before_full(bool *u) {
    bool from[MAX], reach[MAX];
    int rg[MAX];
    size_t n[5];
    real_generations(rg, n);
    for (int i = 0; i < nobj; i++) from[i] = R.alive[i] && (R.held[i] > 0 || rg[i] < 0 || rg[i] > 2);
    real_reach(from, reach);
    for (int i = 0; i < nobj; i++) u[i] = R.alive[i] && !reach[i];
}

/* After it: each of them is dead, or reachable from a held reference (a phoenix came back) or
 * from the saved garbage (uncollectable): an unreachable cycle does not survive a full collection. */
static ORACLE void check_after_full(const bool *u) {
    bool from[MAX], reach[MAX];
    int rg[MAX];
    size_t n[5];
    real_generations(rg, n);
    for (int i = 0; i < nobj; i++) from[i] = R.alive[i] && (R.held[i] > 0 || rg[i] == G_GARBAGE);
    real_reach(from, reach);
    for (int i = 0; i < nobj; i++)
        CHECK(!u[i] || !R.alive[i] || reach[i], "object %d (%s) was unreachable but survived a full collection",
              i, types[M[i].type].name);
}

static void do_collect(int g) {
    int starts = ev.starts, stops = ev.stops;
    bool u[MAX];
    if (g == 2) unreachable_before_full(u);
    size_t want = m_collect(g);
    TRACE("collect(%d): the model says %zu\n", g, want);
    size_t got = pm_gc_collect(gc, g);
    CHECK(got == want, "pm_gc_collect(%d) found %zu unreachable, the model says %zu", g, got, want);
    CHECK(ev.starts == starts + 1 && ev.stops == stops + 1 && ev.gen == g, "collection callback not called once");
    CHECK(ev.stop.collected + ev.stop.uncollectable == got, "callback: %zu + %zu, returned %zu",
          ev.stop.collected, ev.stop.uncollectable, got);
    if (g == 2) check_after_full(u);
}

static void do_inspect(int i) {
    obj *o = R.p[i];
    void *out[MAX];
    /* referents: each non-NULL reference, in traversal order */
    size_t n = pm_gc_get_referents(o, out, MAX), want = 0;
    if (is_container(M[i].type))
        for (int k = 0; k < NREF; k++)
            if (M[i].edge[k] >= 0) { CHECK(want < n && out[want] == R.p[M[i].edge[k]], "referents of %d", i); want++; }
    CHECK(n == want, "object %d: %zu referents, the model says %zu", i, n, want);
    /* referrers: each tracked object referencing i, once */
    n = pm_gc_get_referrers(gc, o, out, MAX);
    want = 0;
    for (int j = 0; j < nobj; j++) {
        if (!M[j].alive || !M[j].tracked) continue;
        bool refs = false;
        for (int k = 0; k < NREF; k++) refs |= M[j].edge[k] == i;
        if (!refs) continue;
        want++;
        bool listed = false;
        for (size_t m = 0; m < n && m < MAX; m++) listed |= out[m] == R.p[j];
        CHECK(listed, "object %d refers to %d but is not among its referrers", j, i);
    }
    CHECK(n == want, "object %d: %zu referrers, the model says %zu", i, n, want);
    /* why alive: roots are tracked objects with references from outside the tracked ones */
    bool tr[MAX], root[MAX];
    int dist[MAX], queue[MAX], qh = 0, qt = 0;
    for (int j = 0; j < nobj; j++) tr[j] = M[j].alive && M[j].tracked;
    size_t rcs[MAX], inner[MAX] = { 0 };
    m_refcounts(rcs);
    for (int m = 0; m < nobj; m++)
        if (tr[m]) for (int k = 0; k < NREF; k++) if (M[m].edge[k] >= 0) inner[M[m].edge[k]]++;
    for (int j = 0; j < nobj; j++) {
        root[j] = tr[j] && rcs[j] > inner[j];
        dist[j] = -1;
        if (root[j]) { dist[j] = 0; queue[qt++] = j; }
    }
    size_t want_len = 0;
    if (tr[i] && root[i]) want_len = 1;
    while (!want_len && qh < qt) {
        int j = queue[qh++];
        for (int k = 0; k < NREF && !want_len; k++) {
            int t = M[j].edge[k];
            if (t == i) want_len = (size_t)dist[j] + 2;
            else if (t >= 0 && tr[t] && dist[t] < 0) { dist[t] = dist[j] + 1; queue[qt++] = t; }
        }
    }
    n = pm_gc_why_alive(gc, o, out, MAX);
    CHECK(n == want_len, "why_alive(%d): a chain of %zu, the model says %zu", i, n, want_len);
    if (n) {
        int r = id_of(out[0]);
        CHECK(tr[r] && root[r], "why_alive(%d): the chain starts at %d, not a root", i, r);
        CHECK(out[n - 1] == o, "why_alive(%d): the chain does not end at it", i);
        for (size_t m = 0; m + 1 < n; m++) {
            int a = id_of(out[m]), b = id_of(out[m + 1]);
            bool edge = false;
            for (int k = 0; k < NREF; k++) edge |= M[a].edge[k] == b;
            CHECK(edge, "why_alive(%d): %d does not refer to %d", i, a, b);
        }
    }
}

static int devnull = -1;

static void run_op(void) {
    int acc[MAX], na = accessible(acc);
    int op = u8() % 16;
    switch (op) {
    case 0:
    case 1: {
        int type = u8() % NTYPES;
        do_new(type, (u8() % 8) * 24);
        break;
    }
    case 2:
    case 3:
    case 4: {                                             /* set or clear a reference */
        int c[MAX], nc = 0;
        for (int m = 0; m < na; m++) if (is_container(M[acc[m]].type)) c[nc++] = acc[m];
        int i = pick(c, nc);
        if (i < 0) break;
        int k = u8() % NREF;
        int j = u8() % 4 == 0 ? -1 : pick(acc, na);
        do_set(i, k, j);
        break;
    }
    case 5: {                                             /* hold another reference */
        int i = pick(acc, na);
        if (i < 0) break;
        TRACE("hold another reference to %d\n", i);
        pm_incref(R.p[i]);
        R.held[i]++;
        M[i].held++;
        break;
    }
    case 6:
    case 7: {                                             /* drop a reference held from outside */
        int c[MAX], nc = 0;
        for (int i = 0; i < nobj; i++) if (M[i].alive && M[i].held > 0) c[nc++] = i;
        int i = pick(c, nc);
        if (i >= 0) do_drop(i);
        break;
    }
    case 8: do_collect(u8() % 3); break;
    case 9:
        if (u8() & 1) {
            TRACE("freeze\n");
            pm_gc_freeze(gc);
            for (int i = 0; i < nobj; i++) if (M[i].alive && M[i].gen >= 0 && M[i].gen <= 2) M[i].gen = G_PERM;
            m_count[0] = 0;
        } else {
            TRACE("unfreeze\n");
            pm_gc_unfreeze(gc);
            for (int i = 0; i < nobj; i++) if (M[i].alive && M[i].gen == G_PERM) M[i].gen = 2;
        }
        break;
    case 10: {                                            /* untrack or track */
        int c[MAX], nc = 0;
        for (int m = 0; m < na; m++) if (is_container(M[acc[m]].type)) c[nc++] = acc[m];
        int i = pick(c, nc);
        if (i < 0) break;
        TRACE("%s %d\n", M[i].tracked ? "untrack" : "track", i);
        if (M[i].tracked) { pm_untrack(R.p[i]); M[i].tracked = false; M[i].gen = G_UNTRACKED; }
        else { pm_track(R.p[i]); M[i].tracked = true; M[i].gen = 0; }
        break;
    }
    case 11: {                                            /* a new weakref, or free one */
        weak_t *w = &W[u8() % NWEAK];
        if (w->w) {
            CHECK(w->calls == w->expect_calls, "weakref callbacks before free");
            TRACE("free weakref %d\n", (int)(w - W));
            pm_weakref_free(w->w);
            w->w = NULL;
            break;
        }
        int i = pick(acc, na);
        if (i < 0) break;
        bool cb = u8() & 1;
        TRACE("weakref %d to %d%s\n", (int)(w - W), i, cb ? ", with a callback" : "");
        *w = (weak_t){ NULL, i, cb, false, 0, 0 };
        w->w = pm_weakref_new(R.p[i], cb ? weak_cb : NULL, w);
        CHECK(w->w != NULL, "pm_weakref_new failed");
        break;
    }
    case 12: {                                            /* read a weakref, maybe keep what it gives */
        weak_t *w = &W[u8() % NWEAK];
        if (!w->w) break;
        TRACE("read weakref %d\n", (int)(w - W));
        void *p = pm_weakref_get(w->w);
        if (w->cleared) { CHECK(p == NULL, "weakref to %d reads %p after it was cleared", w->target, p); break; }
        CHECK(p == R.p[w->target], "weakref to %d reads %p, not %p", w->target, p, (void *)R.p[w->target]);
        if (u8() & 1) { R.held[w->target]++; M[w->target].held++; }
        else { pm_decref(p); }
        break;
    }
    case 13: {
        int i = pick(acc, na);
        if (i >= 0) do_inspect(i);
        break;
    }
    case 14:
        if (u8() & 1) {                                   /* collect generation 0 at every pm_new */
            collect_always = !collect_always;
            TRACE("collect at every pm_new: %s\n", collect_always ? "on" : "off");
            pm_gc_set_debug(gc, collect_always ? PM_GC_DEBUG_COLLECT_ALWAYS : 0);
            if (collect_always) pm_gc_enable(gc); else pm_gc_disable(gc);
        } else {                                          /* the report and a why-alive print */
            pm_gc_report(gc, devnull);
            int i = pick(acc, na);
            if (i >= 0) pm_gc_print_why_alive(gc, R.p[i], devnull);
        }
        break;
    default: do_collect(2); break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (devnull < 0) {
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        trace = getenv("FUZZ_GC_TRACE") != NULL;
    }
    TRACE("---- an input of %zu bytes\n", size);
    in = data;
    in_len = size;
    in_pos = 0;
    memset(&R, 0, sizeof R);
    memset(M, 0, sizeof M);
    memset(W, 0, sizeof W);
    memset(&ev, 0, sizeof ev);
    memset(m_count, 0, sizeof m_count);
    memset(m_stats, 0, sizeof m_stats);
    memset(m_allocated, 0, sizeof m_allocated);
    memset(m_freed, 0, sizeof m_freed);
    memset(m_live, 0, sizeof m_live);
    memset(m_peak, 0, sizeof m_peak);
    nobj = 0;
    collect_always = false;
    gc = pm_gc_new();
    CHECK(gc != NULL, "pm_gc_new failed");
    pm_gc_disable(gc);
    CHECK(pm_gc_add_callback(gc, on_event, NULL) == 0, "pm_gc_add_callback failed");

    while (in_pos < in_len) {
        run_op();
        check_all("after an operation");
    }

    TRACE("teardown\n");
    /* Tear down: drop every reference from outside, collect, then break what is left (saved
     * garbage, untracked cycles) by hand, until nothing is alive. */
    collect_always = false;
    pm_gc_set_debug(gc, 0);
    pm_gc_disable(gc);
    pm_gc_unfreeze(gc);
    for (int i = 0; i < nobj; i++) if (M[i].alive && M[i].gen == G_PERM) M[i].gen = 2;
    for (int round = 0;; round++) {
        CHECK(round < 4, "objects still alive after %d rounds of teardown", round);
        for (int i = 0; i < nobj; i++) while (M[i].alive && M[i].held > 0) do_drop(i);
        check_all("after dropping every reference");
        do_collect(2);
        check_all("after the final collection");
        bool any = false;
        for (int i = 0; i < nobj; i++) {
            if (!M[i].alive) continue;
            any = true;
            if (is_container(M[i].type)) for (int k = 0; k < NREF; k++) if (M[i].alive && M[i].edge[k] >= 0) do_set(i, k, -1);
        }
        check_all("after breaking the rest");
        if (!any) break;
    }
    for (int i = 0; i < nobj; i++) CHECK(!R.alive[i], "object %d leaked", i);
    for (int w = 0; w < NWEAK; w++) {
        if (!W[w].w) continue;
        CHECK(W[w].calls == W[w].expect_calls && W[w].cleared, "weakref %d at the end", w);
        CHECK(pm_weakref_get(W[w].w) == NULL, "weakref %d to a dead object reads non-NULL", w);
        pm_weakref_free(W[w].w);
    }
    pm_gc_destroy(gc);
    gc = NULL;
    return 0;
}
