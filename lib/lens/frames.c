/* frames.c: frames of an interpreted language beside the native ones (pm_set_frame_source).
 *
 * An interpreter (the CPython module, python/_poolmalloc.c) registers a source. At each sampled
 * allocation the sampler (sample.c) asks it for the language's stack, innermost first, and puts
 * those frames before the native ones in the site's stack. A frame is an id that
 * pm_frame_intern gave for a (function, file, line); in a stack it is the id with PM_FRAME_TAG
 * (bit 63) set, which no user-space return address has. The report writers (report.c) name such
 * a frame from its record here instead of symbolizing an address.
 *
 * Records are never freed or moved: chunks of CHUNK records, found through a fixed array of chunk
 * pointers, so that a report reads them with no lock (a record is complete before its id is
 * returned: the count is published with a release store). Their strings go into a bump arena of
 * mappings. Interning the same frame twice gives the same id: an index keyed by a hash of the
 * three fields, whose entries with one key are compared in full (util/table.c allows repeats).
 * Memory comes from os.c, never from malloc. */
#define _GNU_SOURCE
#include "lens/lens.h"
#include "poolmalloc.h"

#include <string.h>

#define CHUNK      4096u
#define MAX_CHUNKS 256u                   /* a million frames */
#define ARENA      (256u * 1024u)         /* string arena mappings */
#define STR_MAX    512u                   /* longer names and paths are cut */

typedef struct { uintptr_t key; uint64_t id; } index_slot_t;

static pthread_mutex_t frames_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_frame_rec_t *_Atomic chunks[MAX_CHUNKS];
static _Atomic uint64_t nframes;          /* ids 1..nframes are complete */
static pm_table_t index_ = PM_TABLE_INIT(index_slot_t);
static char *arena_at, *arena_end;

static _Atomic(pm_frame_source_fn) source;
static char source_kind[16] = "native";
static char eval_symbol[128];

/* How much of s is kept: at most STR_MAX bytes, cut before a UTF-8 character, not through it. */
static size_t kept_len(const char *s) {
    size_t n = strnlen(s, STR_MAX);
    if (n == STR_MAX) while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
    return n;
}

/* A copy of what is kept of s in the arena; NULL when no memory. */
static const char *keep(const char *s) {
    size_t n = kept_len(s);
    if (arena_at == NULL || (size_t)(arena_end - arena_at) < n + 1) {
        char *m = _pm_os_map(ARENA);
        if (m == NULL) return NULL;
        arena_at = m;
        arena_end = m + ARENA;
    }
    char *d = arena_at;
    memcpy(d, s, n);
    d[n] = 0;
    arena_at += n + 1;
    return d;
}

static uintptr_t key_of(const char *function, const char *file, unsigned line) {
    uint64_t h = _pm_hash(line + 1);
    for (size_t i = 0, n = kept_len(function); i < n; i++) h = _pm_hash(h ^ (unsigned char)function[i]);
    h = _pm_hash(h ^ 0x2f);
    for (size_t i = 0, n = kept_len(file); i < n; i++) h = _pm_hash(h ^ (unsigned char)file[i]);
    return h ? (uintptr_t)h : 1;
}

static pm_frame_rec_t *rec_at(uint64_t id) {   /* id >= 1 */
    pm_frame_rec_t *c = atomic_load_explicit(&chunks[(id - 1) / CHUNK], memory_order_acquire);
    return c ? &c[(id - 1) % CHUNK] : NULL;
}

/* The record holds what keep() kept of each name: compare that much, and no more. */
static bool same_kept(const char *stored, const char *s) {
    size_t n = kept_len(s);
    return strlen(stored) == n && memcmp(stored, s, n) == 0;
}

static bool same(const pm_frame_rec_t *r, const char *function, const char *file, unsigned line) {
    return r->line == line && same_kept(r->function, function) && same_kept(r->file, file);
}

PM_EXPORT uint64_t pm_frame_intern(const char *function, const char *file, unsigned line) {
    if (function == NULL) function = "?";
    if (file == NULL) file = "?";
    uintptr_t key = key_of(function, file, line);
    uint64_t id = 0;
    pthread_mutex_lock(&frames_lock);
    for (const index_slot_t *e = _pm_table_find(&index_, key); e; e = _pm_table_find_next(&index_, e))
        if (same(rec_at(e->id), function, file, line)) { id = e->id; goto out; }
    uint64_t n = atomic_load_explicit(&nframes, memory_order_relaxed);
    if (n >= (uint64_t)MAX_CHUNKS * CHUNK) goto out;
    if (n % CHUNK == 0 && atomic_load_explicit(&chunks[n / CHUNK], memory_order_relaxed) == NULL) {
        pm_frame_rec_t *c = _pm_os_map(CHUNK * sizeof *c);
        if (c == NULL) goto out;
        atomic_store_explicit(&chunks[n / CHUNK], c, memory_order_release);
    }
    /* "function (file:line)", the name every report shows; file alone as its last component */
    char sym[STR_MAX + 64];
    pm_out_t o;
    _pm_out_init(&o, sym, sizeof sym - 1, -1);
    const char *base = strrchr(file, '/');
    _pm_out_printf(&o, "%s (%s:%u)", function, base ? base + 1 : file, line);
    sym[o.len] = 0;
    pm_frame_rec_t r = { keep(function), keep(file), keep(sym), line };
    index_slot_t *e = r.function && r.file && r.symbol ? _pm_table_insert(&index_, key) : NULL;
    if (e == NULL) goto out;
    id = n + 1;
    e->id = id;
    *rec_at(id) = r;
    atomic_store_explicit(&nframes, id, memory_order_release);
out:
    pthread_mutex_unlock(&frames_lock);
    return id;
}

PM_EXPORT void pm_set_frame_source(pm_frame_source_fn fn, const char *kind, const char *eval) {
    pthread_mutex_lock(&frames_lock);
    pm_out_t o;
    _pm_out_init(&o, source_kind, sizeof source_kind - 1, -1);
    _pm_out_printf(&o, "%s", kind ? kind : "interpreted");
    source_kind[o.len] = 0;
    _pm_out_init(&o, eval_symbol, sizeof eval_symbol - 1, -1);
    _pm_out_printf(&o, "%s", eval ? eval : "");
    eval_symbol[o.len] = 0;
    pthread_mutex_unlock(&frames_lock);
    atomic_store_explicit(&source, fn, memory_order_release);
}

const pm_frame_rec_t *_pm_frame_rec(const void *frame) {
    uint64_t id = (uint64_t)(uintptr_t)frame & ~(uint64_t)PM_FRAME_TAG;
    if (!_pm_frame_is_foreign(frame) || id == 0 || id > atomic_load_explicit(&nframes, memory_order_acquire)) return NULL;
    return rec_at(id);
}

const char *_pm_frames_kind(void) { return source_kind; }
const char *_pm_frames_eval_symbol(void) { return eval_symbol; }

/* The source's frames, tagged, into frames[0..max): how many. Ids that are not ids are dropped. */
unsigned _pm_frames_capture(void **frames, unsigned max) {
    pm_frame_source_fn fn = atomic_load_explicit(&source, memory_order_acquire);
    if (fn == NULL || max == 0) return 0;
    uint64_t ids[PM_MAX_FRAMES];
    unsigned n = fn(ids, max < PM_MAX_FRAMES ? max : PM_MAX_FRAMES), m = 0;
    uint64_t known = atomic_load_explicit(&nframes, memory_order_acquire);
    for (unsigned i = 0; i < n && i < max && i < PM_MAX_FRAMES; i++)
        if (ids[i] >= 1 && ids[i] <= known) frames[m++] = (void *)(uintptr_t)(ids[i] | PM_FRAME_TAG);
    return m;
}

void _pm_frames_fork_prepare(void) { pthread_mutex_lock(&frames_lock); }
void _pm_frames_fork_parent(void) { pthread_mutex_unlock(&frames_lock); }
void _pm_frames_fork_child(void) { pthread_mutex_init(&frames_lock, NULL); }
