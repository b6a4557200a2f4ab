/* proto.c: the heap report as pprof's profile.proto, gzipped (formats:proto, `.pb.gz`), the input
 * of `go tool pprof`, Pyroscope, Parca and Cloud Profiler.
 *
 * The encoder is ours, not protobuf-c's or nanopb's: a report is written by the allocator
 * itself, with no malloc (we are malloc), from the sampler's copied site table, and profile.proto
 * needs five message kinds of varints and byte strings. protobuf-c builds whole messages in
 * allocated structs and wants generated code; nanopb would fit, but its streaming encoder is
 * ~2,000 lines for what is here ~150. Each message of the repeated fields (a Sample, a Location,
 * ...) is encoded into a small stack buffer, then written as one length-delimited field, so no
 * message is ever held whole; the Profile's own fields need no length, since they are the file.
 * Field numbers are profile.proto's (github.com/google/pprof, proto/profile.proto).
 *
 * The bytes go through zlib's deflate in gzip framing (deflateInit2, window 15 + 16), whose
 * state is allocated from os.c mappings (zalloc), never from malloc.
 *
 * What goes in:
 *   sample_type      alloc_objects/count, alloc_space/bytes, inuse_objects/count, inuse_space/bytes
 *   default          inuse_space;  period_type space/bytes, period = the sampling rate
 *   samples          one per site, values the unbiased estimates (as the JSON report's), locations
 *                    innermost first: with interpreted frames, the native frames inside the
 *                    interpreter, then the interpreted ones (as the folded and pprof formats)
 *   locations        one per distinct address (or interpreted frame), each with one Line of its
 *                    Function; native ones carry their address and mapping
 *   functions        one per distinct name (native: the symbol without its offset; interpreted:
 *                    function and file, and the line in the Line)
 *   mappings         the executable segments of every loaded object (dl_iterate_phdr: the
 *                    process's maps), with the GNU build ID from the object's notes
 *   drop_frames      poolmalloc's own entry points, in case a frame of ours is in a stack
 */
#define _GNU_SOURCE
#include "lens/lens.h"

#include <errno.h>
#include <link.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_MAPPINGS 512
#define MSG_BUF      4096      /* one encoded message; a Sample of 48 frames is under 700 bytes */
#define OUT_BUF      (64 * 1024)
#define ARENA_CHUNK  (256 * 1024)

/* ---- the output: protobuf bytes -> deflate -> fd -------------------------------------------- */

typedef struct {
    z_stream z;
    int      fd, err;
    uint8_t  out[OUT_BUF];
} sink_t;

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    size_t n = (size_t)items * size + 16;
    uint8_t *p = _pm_os_map(n);
    if (p == NULL) return Z_NULL;
    memcpy(p, &n, sizeof n);
    return p + 16;
}

static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    if (p == NULL) return;
    size_t n;
    memcpy(&n, (uint8_t *)p - 16, sizeof n);
    _pm_os_unmap((uint8_t *)p - 16, n);
}

static void drain(sink_t *s) {
    size_t n = OUT_BUF - s->z.avail_out, done = 0;
    while (done < n && s->err == 0) {
        ssize_t w = write(s->fd, s->out + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { s->err = w < 0 ? errno : EIO; break; }
        done += (size_t)w;
    }
    s->z.next_out = s->out;
    s->z.avail_out = OUT_BUF;
}

/* Z_FINISH: until deflate says the stream (and its gzip trailer) is out, however many buffers
 * that takes; else until the input is taken. */
static void emit(sink_t *s, const void *p, size_t n, int flush) {
    s->z.next_in = (Bytef *)(uintptr_t)p;
    s->z.avail_in = (uInt)n;
    for (;;) {
        int r = deflate(&s->z, flush);
        if (r == Z_STREAM_ERROR) { if (!s->err) s->err = EIO; return; }
        if (s->z.avail_out == 0 || r == Z_STREAM_END) drain(s);
        if (flush == Z_FINISH ? r == Z_STREAM_END : s->z.avail_in == 0) return;
        if (s->err) return;
    }
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct { uint8_t *p; size_t len, cap; bool over; } msg_t;

static void put_byte(msg_t *m, uint8_t b) {
    if (m->len < m->cap) m->p[m->len++] = b;
    else m->over = true;
}
static void put_varint(msg_t *m, uint64_t v) {
    for (; v >= 0x80; v >>= 7) put_byte(m, (uint8_t)(v | 0x80));
    put_byte(m, (uint8_t)v);
}
static void put_tag(msg_t *m, unsigned field, unsigned wire) { put_varint(m, (uint64_t)field << 3 | wire); }
static void put_uint(msg_t *m, unsigned field, uint64_t v) {    /* 0 is the default: left out */
    if (v) { put_tag(m, field, 0); put_varint(m, v); }
}
static void put_bytes(msg_t *m, unsigned field, const void *p, size_t n) {
    put_tag(m, field, 2);
    put_varint(m, n);
    for (size_t i = 0; i < n; i++) put_byte(m, ((const uint8_t *)p)[i]);
}

/* A finished message of the Profile: field `field`, length-delimited, into the stream. */
static void emit_msg(sink_t *s, unsigned field, const msg_t *m) {
    uint8_t head[16];
    msg_t h = { head, 0, sizeof head, false };
    put_tag(&h, field, 2);
    put_varint(&h, m->len);
    emit(s, head, h.len, Z_NO_FLUSH);
    emit(s, m->p, m->len, Z_NO_FLUSH);
}

/* ---- growing arrays and the string table ---------------------------------------------------- */

typedef struct { void *p; size_t n, cap, elem; } vec_t;

static void *vec_push(vec_t *v) {
    if (v->n == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 1024;
        void *q = _pm_os_map(ncap * v->elem);
        if (q == NULL) return NULL;
        if (v->p) { memcpy(q, v->p, v->n * v->elem); _pm_os_unmap(v->p, v->cap * v->elem); }
        v->p = q;
        v->cap = ncap;
    }
    return (uint8_t *)v->p + v->n++ * v->elem;
}
static void vec_free(vec_t *v) { if (v->p) _pm_os_unmap(v->p, v->cap * v->elem); }

typedef struct { const char *s; uint32_t len; } str_t;
typedef struct { uintptr_t key; uint64_t index; } keyed_t;   /* key: a hash; repeats compared */

typedef struct {
    vec_t strs;                     /* str_t, index order */
    pm_table_t str_index;           /* hash -> index */
    vec_t chunks;                   /* arena chunks for string copies */
    char *at, *end;
    bool oom;
} strtab_t;

static uintptr_t hash_bytes(const char *s, size_t n, uint64_t seed) {
    uint64_t h = _pm_hash(seed + n);
    for (size_t i = 0; i < n; i++) h = _pm_hash(h ^ (unsigned char)s[i]);
    return h ? (uintptr_t)h : 1;
}

static const char *arena_copy(strtab_t *t, const char *s, size_t n) {
    if (t->at == NULL || (size_t)(t->end - t->at) < n + 1) {
        size_t size = n + 1 > ARENA_CHUNK ? n + 1 : ARENA_CHUNK;
        char *c = _pm_os_map(size);
        void **slot = c ? vec_push(&t->chunks) : NULL;
        if (slot == NULL) { if (c) _pm_os_unmap(c, size); return NULL; }
        slot[0] = c;
        slot[1] = (void *)size;
        t->at = c;
        t->end = c + size;
    }
    char *d = t->at;
    memcpy(d, s, n);
    d[n] = 0;
    t->at += n + 1;
    return d;
}

/* The string's index in the table, added if new; 0 ("") when out of memory. */
static uint64_t str_id(strtab_t *t, const char *s) {
    size_t n = strlen(s);
    if (n == 0) return 0;
    uintptr_t key = hash_bytes(s, n, 7);
    for (const keyed_t *e = _pm_table_find(&t->str_index, key); e; e = _pm_table_find_next(&t->str_index, e)) {
        const str_t *x = (const str_t *)t->strs.p + e->index;
        if (x->len == n && memcmp(x->s, s, n) == 0) return e->index;
    }
    const char *copy = arena_copy(t, s, n);
    str_t *x = copy ? vec_push(&t->strs) : NULL;
    keyed_t *e = x ? _pm_table_insert(&t->str_index, key) : NULL;
    if (e == NULL) { if (x) t->strs.n--; t->oom = true; return 0; }
    *x = (str_t){ copy, (uint32_t)n };
    e->index = t->strs.n - 1;
    return e->index;
}

static void strtab_free(strtab_t *t) {
    for (size_t i = 0; i < t->chunks.n; i++) {
        void **slot = (void **)t->chunks.p + 2 * i;
        _pm_os_unmap(slot[0], (size_t)slot[1]);
    }
    vec_free(&t->chunks);
    vec_free(&t->strs);
    _pm_table_free(&t->str_index);
}

/* ---- mappings ------------------------------------------------------------------------------- */

typedef struct {
    uint64_t start, limit, offset, file, build_id;    /* file, build_id: string indices */
} mapping_t;

typedef struct { mapping_t m[MAX_MAPPINGS]; unsigned n; strtab_t *strs; } mappings_t;

/* The GNU build ID from a loaded object's PT_NOTE segments, as lowercase hex into hex[]. */
static bool build_id_of(const struct dl_phdr_info *info, char *hex, size_t cap) {
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
            const uint8_t *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
                nh->n_descsz * 2 < cap) {
                for (unsigned k = 0; k < nh->n_descsz; k++) {
                    hex[2 * k] = "0123456789abcdef"[desc[k] >> 4];
                    hex[2 * k + 1] = "0123456789abcdef"[desc[k] & 15];
                }
                hex[2 * nh->n_descsz] = 0;
                return true;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return false;
}

static int add_object(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    mappings_t *ms = arg;
    char exe[512], hex[128];
    const char *name = info->dlpi_name;
    if (name == NULL || name[0] == 0) {            /* the program itself */
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        name = exe;
    }
    if (name[0] == 0 || strncmp(name, "linux-vdso", 10) == 0) return 0;
    uint64_t build = build_id_of(info, hex, sizeof hex) ? str_id(ms->strs, hex) : 0;
    uint64_t file = str_id(ms->strs, name);
    for (int i = 0; i < info->dlpi_phnum && ms->n < MAX_MAPPINGS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        uint64_t start = info->dlpi_addr + ph->p_vaddr;
        /* as the kernel maps it: from the page of the segment's start, at the page's file offset */
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), pad = start % page;
        ms->m[ms->n++] = (mapping_t){ start - pad, start + ph->p_memsz, ph->p_offset - pad, file, build };
    }
    return 0;
}

static unsigned mapping_of(const mappings_t *ms, uint64_t addr) {   /* its id, 0: none */
    for (unsigned i = 0; i < ms->n; i++)
        if (addr >= ms->m[i].start && addr < ms->m[i].limit) return i + 1;
    return 0;
}

/* ---- the profile ---------------------------------------------------------------------------- */

typedef struct { uint64_t addr, function, line, mapping; } location_t;
typedef struct { uint64_t name, file; } function_t;

int _pm_proto_write(int fd, pm_proto_site_fn site_at, void *view, size_t nsites, size_t rate) {
    sink_t *s = _pm_os_map(sizeof *s);
    mappings_t *ms = _pm_os_map(sizeof *ms);
    if (s == NULL || ms == NULL) {
        if (s) _pm_os_unmap(s, sizeof *s);
        if (ms) _pm_os_unmap(ms, sizeof *ms);
        return ENOMEM;
    }
    memset(&s->z, 0, sizeof s->z);
    s->z.zalloc = z_alloc;
    s->z.zfree = z_free;
    s->fd = fd;
    s->err = 0;
    if (deflateInit2(&s->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        _pm_os_unmap(s, sizeof *s);
        _pm_os_unmap(ms, sizeof *ms);
        return ENOMEM;
    }
    s->z.next_out = s->out;
    s->z.avail_out = OUT_BUF;

    strtab_t strs = { .strs = { .elem = sizeof(str_t) }, .str_index = PM_TABLE_INIT(keyed_t),
                      .chunks = { .elem = 2 * sizeof(void *) } };
    str_t *empty = vec_push(&strs.strs);           /* index 0 is "" */
    if (empty) *empty = (str_t){ "", 0 };
    vec_t locs = { .elem = sizeof(location_t) }, funcs = { .elem = sizeof(function_t) };
    pm_table_t loc_index = PM_TABLE_INIT(keyed_t), func_index = PM_TABLE_INIT(keyed_t);
    ms->n = 0;
    ms->strs = &strs;
    dl_iterate_phdr(add_object, ms);

    uint8_t buf[MSG_BUF];
    msg_t m;
    /* sample types, period, default */
    static const char *const types[4][2] = { { "alloc_objects", "count" }, { "alloc_space", "bytes" },
                                              { "inuse_objects", "count" }, { "inuse_space", "bytes" } };
    for (unsigned i = 0; i < 4; i++) {
        m = (msg_t){ buf, 0, sizeof buf, false };
        put_uint(&m, 1, str_id(&strs, types[i][0]));
        put_uint(&m, 2, str_id(&strs, types[i][1]));
        emit_msg(s, 1, &m);
    }
    bool oom = false;
    for (size_t k = 0; k < nsites && !oom; k++) {
        void *frames[PM_MAX_FRAMES];
        double values[4];
        const char *names[PM_MAX_FRAMES], *files[PM_MAX_FRAMES];
        unsigned lines[PM_MAX_FRAMES];
        unsigned n = site_at(view, k, frames, names, files, lines, values);
        uint64_t ids[PM_MAX_FRAMES];
        for (unsigned f = 0; f < n && !oom; f++) {
            uintptr_t key = (uintptr_t)_pm_hash((uint64_t)(uintptr_t)frames[f] ^ 0x5bd1e995u);
            key = key ? key : 1;
            const keyed_t *e;
            for (e = _pm_table_find(&loc_index, key); e; e = _pm_table_find_next(&loc_index, e))
                if (((location_t *)locs.p)[e->index].addr == (uint64_t)(uintptr_t)frames[f]) break;
            if (e) { ids[f] = e->index + 1; continue; }
            /* a new location, and its function if that is new too */
            uint64_t name = str_id(&strs, names[f]), file = str_id(&strs, files[f]);
            uintptr_t fkey = (uintptr_t)_pm_hash(name * 0x9e3779b97f4a7c15u ^ file);
            fkey = fkey ? fkey : 1;
            const keyed_t *fe;
            for (fe = _pm_table_find(&func_index, fkey); fe; fe = _pm_table_find_next(&func_index, fe))
                if (((function_t *)funcs.p)[fe->index].name == name && ((function_t *)funcs.p)[fe->index].file == file) break;
            uint64_t fid;
            if (fe) fid = fe->index + 1;
            else {
                function_t *fn = vec_push(&funcs);
                keyed_t *ne = fn ? _pm_table_insert(&func_index, fkey) : NULL;
                if (ne == NULL) { oom = true; break; }
                *fn = (function_t){ name, file };
                ne->index = funcs.n - 1;
                fid = funcs.n;
            }
            location_t *loc = vec_push(&locs);
            keyed_t *le = loc ? _pm_table_insert(&loc_index, key) : NULL;
            if (le == NULL) { oom = true; break; }
            bool foreign = _pm_frame_is_foreign(frames[f]);
            *loc = (location_t){ (uint64_t)(uintptr_t)frames[f], fid, lines[f],
                                 foreign ? 0 : mapping_of(ms, (uint64_t)(uintptr_t)frames[f]) };
            le->index = locs.n - 1;
            ids[f] = locs.n;
        }
        if (oom) break;
        m = (msg_t){ buf, 0, sizeof buf, false };
        uint8_t packed[PM_MAX_FRAMES * 10 + 64];
        msg_t p = { packed, 0, sizeof packed, false };
        for (unsigned f = 0; f < n; f++) put_varint(&p, ids[f]);
        if (n) put_bytes(&m, 1, packed, p.len);
        p.len = 0;
        for (unsigned i = 0; i < 4; i++) put_varint(&p, (uint64_t)(values[i] > 0 ? values[i] + 0.5 : 0));
        put_bytes(&m, 2, packed, p.len);
        emit_msg(s, 2, &m);
    }
    for (unsigned i = 0; i < ms->n; i++) {
        const mapping_t *mp = &ms->m[i];
        m = (msg_t){ buf, 0, sizeof buf, false };
        put_uint(&m, 1, i + 1);
        put_uint(&m, 2, mp->start);
        put_uint(&m, 3, mp->limit);
        put_uint(&m, 4, mp->offset);
        put_uint(&m, 5, mp->file);
        put_uint(&m, 6, mp->build_id);
        put_uint(&m, 7, 1);                        /* has_functions: we named them */
        emit_msg(s, 3, &m);
    }
    for (size_t i = 0; i < locs.n; i++) {
        const location_t *l = &((location_t *)locs.p)[i];
        m = (msg_t){ buf, 0, sizeof buf, false };
        put_uint(&m, 1, i + 1);
        put_uint(&m, 2, l->mapping);
        if (l->mapping) put_uint(&m, 3, l->addr);
        uint8_t lb[32];
        msg_t line = { lb, 0, sizeof lb, false };
        put_uint(&line, 1, l->function);
        put_uint(&line, 2, l->line);
        put_bytes(&m, 4, lb, line.len);
        emit_msg(s, 4, &m);
    }
    for (size_t i = 0; i < funcs.n; i++) {
        const function_t *fn = &((function_t *)funcs.p)[i];
        m = (msg_t){ buf, 0, sizeof buf, false };
        put_uint(&m, 1, i + 1);
        put_uint(&m, 2, fn->name);
        put_uint(&m, 3, fn->name);
        put_uint(&m, 4, fn->file);
        emit_msg(s, 5, &m);
    }
    /* the scalar fields' strings first: the table goes last, whole */
    uint64_t drop = str_id(&strs, "^(malloc|calloc|realloc|reallocarray|free|cfree|free_sized|free_aligned_sized|"
                                   "memalign|posix_memalign|aligned_alloc|valloc|pvalloc|operator new.*|"
                                   "operator delete.*|pm_.*|_pm_.*|dom_.*)$");
    uint64_t space = str_id(&strs, "space"), bytes = str_id(&strs, "bytes"), inuse = str_id(&strs, "inuse_space");
    for (size_t i = 0; i < strs.strs.n; i++) {
        const str_t *x = &((str_t *)strs.strs.p)[i];
        uint8_t head[16];
        msg_t h = { head, 0, sizeof head, false };
        put_tag(&h, 6, 2);
        put_varint(&h, x->len);
        emit(s, head, h.len, Z_NO_FLUSH);
        emit(s, x->s, x->len, Z_NO_FLUSH);
    }
    m = (msg_t){ buf, 0, sizeof buf, false };
    put_uint(&m, 7, drop);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    put_uint(&m, 9, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
    uint8_t vb[32];
    msg_t vt = { vb, 0, sizeof vb, false };
    put_uint(&vt, 1, space);
    put_uint(&vt, 2, bytes);
    put_bytes(&m, 11, vb, vt.len);
    put_uint(&m, 12, rate ? rate : 1);
    put_uint(&m, 14, inuse);
    emit(s, m.p, m.len, Z_FINISH);
    int err = s->err ? s->err : (oom || strs.oom) ? ENOMEM : 0;
    deflateEnd(&s->z);
    strtab_free(&strs);
    vec_free(&locs);
    vec_free(&funcs);
    _pm_table_free(&loc_index);
    _pm_table_free(&func_index);
    _pm_os_unmap(s, sizeof *s);
    _pm_os_unmap(ms, sizeof *ms);
    return err;
}
