/* report.c: the heap report in four formats, written to a file descriptor.
 *
 *   text    totals, the statistics report (class table, arenas, byte accounting), top sites
 *   json    the same as data: schema "poolmalloc.heap", version 1 (docs/reports.md: "The JSON schema")
 *   pprof   gperftools' heap profile text format (heap_v2), read by google-pprof and jeprof
 *   folded  collapsed stacks, "outer;inner bytes", for flamegraph.pl and speedscope
 *
 * A report is made from copies: the statistics snapshot and the sampler's site table are copied
 * under their locks, then formatted with no allocator lock held, because symbolizing (dladdr,
 * libunwind's ELF reader) may allocate and takes the loader's lock. Output goes through a fixed
 * buffer and write(2), never stdio. Sites are ordered by estimated live bytes; symbols are looked
 * up once per address per report, through a cache that is a table of symbol_t keyed by the
 * address (util/table.c), up to MAX_SYMBOLS addresses.
 */
#define _GNU_SOURCE
#include "lens/lens.h"

#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define TOP_TEXT_SITES   20
#define TOP_TEXT_FRAMES  12
#define MAX_REPORT_SITES 2000     /* json and folded: the largest sites, by estimated live bytes */
#define SYMTAB_SEEN      16       /* objects whose .symtab answer is remembered: a program maps few */
#define MAX_SECTIONS     4        /* report sections of higher layers (the collector adds one) */
#define ERROR_FRAMES     4        /* frames named in an error message's one line */
#define REPORT_BUF       (2 * PM_OUT_BUF)   /* report files are long: written in bigger pieces */
#define MAX_SYMBOLS      2048     /* distinct addresses per report: 4096 slots, about 1 MiB */
#define STR_NAME_MAX     600      /* an interpreted frame's name in the pprof format */

/* ---- symbols, cached per report ---- */

/* libunwind's ELF reader names the nearest symbol below an address without checking its size, so
 * it is trusted only for objects that keep a full symbol table (.symtab: static functions too). */
static bool has_symtab(const char *path) {
    if (strchr(path, '/') == NULL) path = "/proc/self/exe";    /* the program, named by argv[0] */
    static struct { char path[200]; bool yes; } seen[SYMTAB_SEEN];
    static unsigned next;
    for (unsigned i = 0; i < SYMTAB_SEEN; i++) if (strcmp(seen[i].path, path) == 0) return seen[i].yes;
    bool yes = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ElfW(Ehdr) eh;
    if (fd >= 0 && pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_shentsize == sizeof(ElfW(Shdr))) {
        for (unsigned i = 0; i < eh.e_shnum && !yes; i++) {
            ElfW(Shdr) sh;
            if (pread(fd, &sh, sizeof sh, (off_t)(eh.e_shoff + i * sizeof sh)) != (ssize_t)sizeof sh) break;
            yes = sh.sh_type == SHT_SYMTAB;
        }
    }
    if (fd >= 0) close(fd);
    unsigned slot = next++ % SYMTAB_SEEN;
    size_t n = strnlen(path, sizeof seen[slot].path - 1);
    memcpy(seen[slot].path, path, n);
    seen[slot].path[n] = 0;
    seen[slot].yes = yes;
    return yes;
}

typedef struct { uintptr_t ip; char name[120]; char object[136]; } symbol_t;   /* ip: the key */

static void copy_str(char *dst, size_t cap, const char *src) {   /* a loop: gcc's strnlen bound check */
    size_t n = 0;                                                   /* misfires on string literals */
    for (; n + 1 < cap && src[n]; n++) dst[n] = src[n];
    dst[n] = 0;
}

/* Name the return address ip into *s; an interpreted frame (frames.c) by its record: its
 * "function (file:line)" and its file. */
static void symbolize(symbol_t *s, void *ip) {
    s->ip = (uintptr_t)ip;
    if (_pm_frame_is_foreign(ip)) {
        const pm_frame_rec_t *r = _pm_frame_rec(ip);
        copy_str(s->name, sizeof s->name, r ? r->symbol : "?");
        copy_str(s->object, sizeof s->object, r ? r->file : "");
        return;
    }
    void *at = (char *)ip - 1;                         /* a return address: look inside the call */
    Dl_info info;
    char name[256];
    unw_word_t off = 0;
    bool named = false;
    pm_out_t o;
    _pm_out_init(&o, s->name, sizeof s->name - 1, -1);
    memset(&info, 0, sizeof info);
    const ElfW(Sym) *sym = NULL;
    int found = dladdr1(at, &info, (void **)&sym, RTLD_DL_SYMENT);
    /* dladdr names the nearest exported symbol below the address; a static function of a
     * stripped binary would borrow its neighbour's name. Trust it only inside the symbol's size. */
    if (found && info.dli_sname && (sym == NULL || sym->st_size == 0 ||
                                    (uintptr_t)at - (uintptr_t)info.dli_saddr < sym->st_size)) {
        _pm_out_printf(&o, "%s+0x%lx", info.dli_sname, (unsigned long)((char *)ip - (char *)info.dli_saddr));
        named = true;
    } else {
        unw_accessors_t *acc = unw_get_accessors(unw_local_addr_space);
        if (found && info.dli_fname && has_symtab(info.dli_fname) && acc && acc->get_proc_name &&
            acc->get_proc_name(unw_local_addr_space, (unw_word_t)at, name, sizeof name, &off, NULL) == 0) {
            _pm_out_printf(&o, "%s+0x%lx", name, (unsigned long)off + 1);
            named = true;
        }
    }
    if (!named && found && info.dli_fname) {             /* object+offset, as pprof prints it */
        const char *base = strrchr(info.dli_fname, '/');
        _pm_out_printf(&o, "%s+0x%lx", base ? base + 1 : info.dli_fname,
                       (unsigned long)((char *)ip - (char *)info.dli_fbase));
        named = true;
    }
    s->name[o.len] = 0;
    const char *obj = info.dli_fname ? info.dli_fname : "";
    size_t n = strnlen(obj, sizeof s->object - 1);
    memcpy(s->object, obj, n);
    s->object[n] = 0;
}

/* The function name alone (for folded stacks): up to the '+'. */
static size_t function_name(const symbol_t *s, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = s->name; *p && *p != '+' && n + 1 < cap; p++) out[n++] = (*p == ';' || *p == ' ') ? '_' : *p;
    out[n] = 0;
    return n;
}

/* An interpreted frame's name for folded stacks: all of it, as py-spy writes them, but for the
 * separator ';' and control characters (a file name may hold a newline). */
static size_t folded_name(const symbol_t *s, char *out, size_t cap) {
    size_t n = 0;
    for (const char *p = s->name; *p && n + 1 < cap; p++)   /* a line each: no control characters */
        out[n++] = *p == ';' ? '_' : (unsigned char)*p < 0x20 ? '?' : *p;
    out[n] = 0;
    return n;
}

/* ---- sites, ordered ---- */

typedef struct {
    pm_sites_t sites;
    uint32_t  *order;      /* indices into sites, by estimated live bytes, then allocated bytes */
    size_t     norder;
    pm_table_t syms;       /* the symbol cache: symbol_t by address */
} sitesview_t;

static int by_live_desc(const pm_site_t *a, const pm_site_t *b) {
    if (a->live_est_bytes != b->live_est_bytes) return a->live_est_bytes > b->live_est_bytes ? -1 : 1;
    if (a->alloc_est_bytes != b->alloc_est_bytes) return a->alloc_est_bytes > b->alloc_est_bytes ? -1 : 1;
    return 0;
}

static void sort_sites(sitesview_t *v) {                  /* heap sort: no recursion, no malloc */
    uint32_t *a = v->order;
    size_t n = v->norder;
    const pm_site_t *s = v->sites.sites;
    for (size_t k = n / 2; k-- > 0;) {
        for (size_t i = k;;) {
            size_t c = 2 * i + 1;
            if (c >= n) break;
            if (c + 1 < n && by_live_desc(&s[a[c + 1]], &s[a[c]]) > 0) c++;
            if (by_live_desc(&s[a[c]], &s[a[i]]) <= 0) break;
            uint32_t t = a[i]; a[i] = a[c]; a[c] = t; i = c;
        }
    }
    for (size_t end = n; end-- > 1;) {
        uint32_t t = a[0]; a[0] = a[end]; a[end] = t;
        for (size_t i = 0;;) {
            size_t c = 2 * i + 1;
            if (c >= end) break;
            if (c + 1 < end && by_live_desc(&s[a[c + 1]], &s[a[c]]) > 0) c++;
            if (by_live_desc(&s[a[c]], &s[a[i]]) <= 0) break;
            uint32_t u = a[i]; a[i] = a[c]; a[c] = u; i = c;
        }
    }
}

static int view_open(sitesview_t *v) {
    memset(v, 0, sizeof *v);
    int err = _pm_sites_snapshot(&v->sites);
    if (err) return err;
    size_t n = v->sites.nsites;
    v->order = n ? _pm_os_map(n * sizeof *v->order) : NULL;
    v->syms = (pm_table_t)PM_TABLE_INIT(symbol_t);
    if (n && !v->order) return ENOMEM;
    for (size_t i = 0; i < n; i++) v->order[i] = (uint32_t)i;
    v->norder = n;
    sort_sites(v);
    return 0;
}

static void view_close(sitesview_t *v) {
    if (v->order) _pm_os_unmap(v->order, v->sites.nsites * sizeof *v->order);
    _pm_table_free(&v->syms);
    _pm_sites_free(&v->sites);
}

/* The symbol of ip, from the cache or put there. Past MAX_SYMBOLS distinct addresses, or when
 * the cache cannot grow, an address prints raw (in *scratch) rather than fill memory. */
static const symbol_t *frame_symbol(sitesview_t *v, void *ip, symbol_t *scratch) {
    symbol_t *s = _pm_table_find(&v->syms, (uintptr_t)ip);
    if (s) return s;
    if (v->syms.count < MAX_SYMBOLS && (s = _pm_table_insert(&v->syms, (uintptr_t)ip)) != NULL) {
        symbolize(s, ip);
        return s;
    }
    memset(scratch, 0, sizeof *scratch);
    pm_out_t o;
    _pm_out_init(&o, scratch->name, sizeof scratch->name - 1, -1);
    _pm_out_printf(&o, "%p", ip);
    scratch->name[o.len] = 0;
    return scratch;
}

/* How many of a site's frames a reader of the interpreted language wants, innermost first: with
 * no interpreted frames, all of them; else the interpreted ones (they come first) and the native
 * frames inside the interpreter's evaluation function, if the source named one and it is there. */
static unsigned frames_wanted(sitesview_t *v, void *const *frames, unsigned n) {
    unsigned nf = 0;
    while (nf < n && _pm_frame_is_foreign(frames[nf])) nf++;
    const char *eval = _pm_frames_eval_symbol();
    if (nf == 0 || eval[0] == 0) return n;
    size_t len = strlen(eval);
    for (unsigned i = nf; i < n; i++) {
        symbol_t scratch;
        const symbol_t *s = frame_symbol(v, frames[i], &scratch);
        if (strncmp(s->name, eval, len) == 0 && (s->name[len] == '+' || s->name[len] == 0)) return i;
    }
    return n;
}

/* ---- shared pieces ---- */

typedef struct {
    pm_stats_snapshot_t stats;
    size_t peak_mapped, all_mapped;
    long   resident, peak_resident;
    unsigned frag;            /* (mapped - live) / mapped, in thousandths */
} totals_t;

static void totals(totals_t *t) {
    _pm_stats_snapshot(&t->stats);
    t->all_mapped = _pm_os_mapped(&t->peak_mapped);
    t->resident = _pm_os_resident_bytes();
    t->peak_resident = _pm_os_peak_resident_bytes();
    size_t mapped = t->stats.mapped, live = t->stats.in_use + t->stats.huge_requested;
    t->frag = mapped ? (unsigned)(((mapped - live) * 1000 + mapped / 2) / mapped) : 0;
}

static size_t live_bytes(const totals_t *t) { return t->stats.in_use + t->stats.huge_requested; }


static void out_double(pm_out_t *o, double x) {   /* an integer estimate; JSON has no NaN */
    if (!(x > 0)) x = 0;
    _pm_out_printf(o, "%llu", (unsigned long long)llround(x));
}

static void json_string(pm_out_t *o, const char *s) { _pm_out_json_string(o, s); }

/* ---- sections of higher layers ---- */

static _Atomic(pm_report_section_fn) sections[MAX_SECTIONS];

void _pm_report_add_section(pm_report_section_fn fn) {
    for (unsigned i = 0; i < MAX_SECTIONS; i++) {
        pm_report_section_fn expected = NULL;
        if (atomic_load(&sections[i]) == fn) return;
        if (atomic_compare_exchange_strong(&sections[i], &expected, fn)) return;
    }
}

static void write_sections(pm_out_t *o, unsigned format) {
    for (unsigned i = 0; i < MAX_SECTIONS; i++) {
        pm_report_section_fn fn = atomic_load(&sections[i]);
        if (!fn) continue;
        if (format == PM_FMT_JSON) _pm_out_printf(o, ",\n");
        fn(o, format);
    }
}

/* A frame of a stack in the text report: address, symbol, object; an interpreted one: its kind
 * ("python") in the address's column, then "function (file:line)". */
static void print_frame(pm_out_t *o, void *frame, const symbol_t *s) {
    if (_pm_frame_is_foreign(frame)) _pm_out_printf(o, "      %18s  %s\n", _pm_frames_kind(), s->name);
    else _pm_out_printf(o, "      %18p  %s  %s\n", frame, s->name, s->object);
}

/* One line naming where a block was allocated, for error messages. */
void _pm_report_stack(pm_out_t *o, void *const *frames, unsigned n) {
    symbol_t s;
    for (unsigned i = 0; i < n && i < ERROR_FRAMES; i++) {
        symbolize(&s, frames[i]);
        _pm_out_printf(o, "%s%s", i ? " <- " : "", s.name);
    }
}

/* A stack as the text report prints a site's: address, symbol, object, one frame a line. Each
 * frame is named afresh (no cache), so that a fault handler can call it: it allocates nothing. */
void _pm_report_frames(pm_out_t *o, void *const *frames, unsigned n) {
    symbol_t s;
    for (unsigned i = 0; i < n; i++) {
        symbolize(&s, frames[i]);
        print_frame(o, frames[i], &s);
    }
}

/* ---- text ---- */

/* The top `max` sites with their stacks; `leaks_only`: only sites with sampled blocks still live. */
static void print_sites(pm_out_t *o, sitesview_t *v, size_t max, bool leaks_only) {
    symbol_t scratch;
    size_t shown = 0;
    for (size_t k = 0; k < v->norder && shown < max; k++) {
        const pm_site_t *s = &v->sites.sites[v->order[k]];
        if (leaks_only && s->live_count == 0) continue;
        _pm_out_printf(o, "#%zu  live ~", ++shown);
        out_double(o, s->live_est_bytes);
        _pm_out_printf(o, " bytes in ~");
        out_double(o, s->live_est_count);
        _pm_out_printf(o, " blocks (%llu sampled); allocated ~", (unsigned long long)s->live_count);
        out_double(o, s->alloc_est_bytes);
        _pm_out_printf(o, " bytes in total\n");
        unsigned want = frames_wanted(v, s->frames, s->nframes), show = want < TOP_TEXT_FRAMES ? want : TOP_TEXT_FRAMES;
        for (unsigned f = 0; f < show; f++) print_frame(o, s->frames[f], frame_symbol(v, s->frames[f], &scratch));
        if (s->nframes > show) _pm_out_printf(o, "      ... %u more frames\n", s->nframes - show);
    }
}

static int write_text(int fd, unsigned seq, sitesview_t *v) {
    totals_t t;
    totals(&t);
    char buf[REPORT_BUF];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    _pm_out_printf(&o, "=== poolmalloc heap report: pid %d, report %u ===\n", (int)getpid(), seq);
    _pm_out_printf(&o, "live      %14zu bytes in blocks handed out\n", live_bytes(&t));
    _pm_out_printf(&o, "mapped    %14zu bytes in arenas and huge blocks (fragmentation %u.%u%%: mapped but not live)\n",
                   t.stats.mapped, t.frag / 10, t.frag % 10);
    _pm_out_printf(&o, "all maps  %14zu bytes now, %zu at the peak (with poolmalloc's own metadata)\n",
                   t.all_mapped, t.peak_mapped);
    if (t.resident >= 0)
        _pm_out_printf(&o, "resident  %14ld bytes now, %ld at the peak (whole process)\n", t.resident, t.peak_resident);
    _pm_out_flush(&o);
    _pm_stats_print(fd);

    size_t rate = v->sites.rate;
    if (rate == 0 && v->sites.nsites == 0) {
        _pm_out_printf(&o, "allocation sites: sampling is off (POOLMALLOC_CONF=sample:512k turns it on)\n");
        write_sections(&o, PM_FMT_TEXT);
        _pm_out_flush(&o);
        return o.err;
    }
    _pm_out_printf(&o, "allocation sites: sampling 1 in %zu bytes, %zu sites; top %d by estimated live bytes\n",
                   rate, v->sites.nsites, TOP_TEXT_SITES);
    print_sites(&o, v, TOP_TEXT_SITES, false);
    write_sections(&o, PM_FMT_TEXT);
    _pm_out_flush(&o);
    return o.err;
}

/* ---- json ---- */

/* The sites after the first MAX_REPORT_SITES (by live bytes): how many, and their estimates
 * alloc_count, alloc_bytes, live_count, live_bytes summed in site order (the JSON and proto
 * reports both sum them so, and round the sums alike). */
static size_t omitted(const sitesview_t *v, double out[4]) {
    out[0] = out[1] = out[2] = out[3] = 0;
    for (size_t k = MAX_REPORT_SITES; k < v->norder; k++) {
        const pm_site_t *s = &v->sites.sites[v->order[k]];
        out[0] += s->alloc_est_count; out[1] += s->alloc_est_bytes;
        out[2] += s->live_est_count;  out[3] += s->live_est_bytes;
    }
    return v->norder > MAX_REPORT_SITES ? v->norder - MAX_REPORT_SITES : 0;
}

/* "map": every arena's slots and pools, and the huge blocks (version 2): what the HTML report draws.
 * A slot is h (the arena's header), . (free), d (free, not yet decommitted) or p (in a pool); a
 * pool is [first slot, slots, class, block size, blocks used, capacity, owning heap]. */
static void write_map(pm_out_t *o) {
    pm_heapmap_t m;
    if (_pm_heapmap_snapshot(&m) != 0) { _pm_out_printf(o, "\"map\":null"); return; }
    _pm_out_printf(o, "\"map\":{\"slot_size\":%zu,\"slots\":%u,\"arenas\":[", (size_t)PM_SLOT_SIZE, (unsigned)PM_SLOTS);
    for (size_t k = 0; k < m.narenas; k++) {
        const pm_map_arena_t *a = &m.arenas[k];
        _pm_out_printf(o, "%s\n {\"base\":\"0x%lx\",\"slots\":\"%.*s\",\"pools\":[", k ? "," : "",
                       (unsigned long)a->base, (int)PM_SLOTS, a->slots);
        for (uint32_t i = 0; i < a->npools; i++) {
            const pm_map_pool_t *p = &a->pools[i];
            _pm_out_printf(o, "%s[%u,%u,%u,%u,%u,%u,%lu]", i ? "," : "", p->slot, p->slots, p->size_class,
                           _pm_classes[p->size_class].size, p->used, p->capacity, (unsigned long)p->heap);
        }
        _pm_out_printf(o, "]}");
    }
    _pm_out_printf(o, "],\n\"huge\":[");
    for (size_t k = 0; k < m.nhuge; k++)
        _pm_out_printf(o, "%s[\"0x%lx\",%zu,%zu]", k ? "," : "", (unsigned long)m.huge[k].ptr, m.huge[k].size, m.huge[k].mapped);
    _pm_out_printf(o, "]}");
    _pm_heapmap_free(&m);
}

static int write_json(int fd, unsigned seq, sitesview_t *v) {
    totals_t t;
    totals(&t);
    char buf[REPORT_BUF];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    _pm_out_printf(&o, "{\"schema\":\"poolmalloc.heap\",\"version\":2,\"pid\":%d,\"seq\":%u,\"time\":%lld,",
                   (int)getpid(), seq, (long long)time(NULL));
    _pm_out_printf(&o, "\"sample_rate\":%zu,\n\"totals\":{\"live_bytes\":%zu,\"mapped_bytes\":%zu,"
                   "\"all_mapped_bytes\":%zu,\"peak_mapped_bytes\":%zu,\"resident_bytes\":%ld,\"peak_resident_bytes\":%ld,"
                   "\"free_bytes\":%zu,\"fragmentation\":%u.%03u,\"huge_blocks\":%zu},\n",
                   v->sites.rate, live_bytes(&t), t.stats.mapped, t.all_mapped, t.peak_mapped, t.resident, t.peak_resident,
                   t.stats.free_in_pools, t.frag / 1000, t.frag % 1000, t.stats.huge_count);
    _pm_out_printf(&o, "\"accounting\":{\"in_use\":%zu,\"free_in_pools\":%zu,\"pool_tails\":%zu,"
                   "\"arena_headers\":%zu,\"free_slots\":%zu,\"huge_rounding\":%zu,\"huge_cached\":%zu},\n",
                   live_bytes(&t), t.stats.free_in_pools, t.stats.quantization, t.stats.arena_headers,
                   t.stats.free_slots, t.stats.huge_mapped - t.stats.huge_requested, t.stats.huge_cached);
    _pm_out_printf(&o, "\"memory_return\":{\"decaying_bytes\":%zu,\"dirty_slot_bytes\":%zu,\"huge_cached_bytes\":%zu,"
                   "\"huge_cached_runs\":%zu,\"huge_reused_total\":%zu,\"returned_bytes\":%zu,\"purge_delay_ms\":%zu,"
                   "\"background\":\"%s\"},\n",
                   t.stats.decaying, t.stats.dirty_slots * PM_SLOT_SIZE, t.stats.huge_cached, t.stats.huge_cached_runs,
                   t.stats.huge_reused_total, t.stats.returned, _pm_options.purge_delay, _pm_purge_thread_state());
    _pm_out_printf(&o, "\"arenas\":{\"mapped_now\":%zu,\"mapped_total\":%zu,\"unmapped_total\":%zu,"
                   "\"free_slots\":%zu,\"dirty_slots\":%zu,\"heaps\":%zu,\"heaps_abandoned\":%zu},\n",
                   t.stats.arenas, t.stats.arenas_mapped_total, t.stats.arenas_unmapped_total,
                   t.stats.free_slots / PM_SLOT_SIZE, t.stats.dirty_slots, t.stats.heaps, t.stats.heaps_abandoned);
    _pm_out_printf(&o, "\"classes\":[");
    const char *sep = "";
    for (unsigned c = 0; c < PM_NCLASSES; c++) {
        const pm_class_stats_t *cs = &t.stats.cls[c];
        if (cs->pools == 0) continue;
        _pm_out_printf(&o, "%s\n {\"class\":%u,\"size\":%u,\"pools\":%zu,\"blocks_used\":%zu,\"blocks_free\":%zu}",
                       sep, c, _pm_classes[c].size, cs->pools, cs->blocks_used, cs->blocks_free);
        sep = ",";
    }
    _pm_out_printf(&o, "],\n");
    write_map(&o);
    _pm_out_printf(&o, ",\n\"sites\":[");
    symbol_t scratch;
    sep = "";
    for (size_t k = 0; k < v->norder && k < MAX_REPORT_SITES; k++) {
        const pm_site_t *s = &v->sites.sites[v->order[k]];
        _pm_out_printf(&o, "%s\n {\"live_bytes\":", sep);
        out_double(&o, s->live_est_bytes);
        _pm_out_printf(&o, ",\"live_count\":");
        out_double(&o, s->live_est_count);
        _pm_out_printf(&o, ",\"alloc_bytes\":");
        out_double(&o, s->alloc_est_bytes);
        _pm_out_printf(&o, ",\"alloc_count\":");
        out_double(&o, s->alloc_est_count);
        _pm_out_printf(&o, ",\"sampled_live\":%llu,\"sampled_live_bytes\":%llu,\"frames\":[",
                       (unsigned long long)s->live_count, (unsigned long long)s->live_bytes);
        for (unsigned f = 0; f < s->nframes; f++) {
            const symbol_t *sym = frame_symbol(v, s->frames[f], &scratch);
            const pm_frame_rec_t *r = _pm_frame_rec(s->frames[f]);
            if (r) {       /* an interpreted frame: its kind, function, file and line */
                _pm_out_printf(&o, "%s{\"kind\":", f ? "," : "");
                json_string(&o, _pm_frames_kind());
                _pm_out_printf(&o, ",\"symbol\":");
                json_string(&o, sym->name);
                _pm_out_printf(&o, ",\"function\":");
                json_string(&o, r->function);
                _pm_out_printf(&o, ",\"file\":");
                json_string(&o, r->file);
                _pm_out_printf(&o, ",\"line\":%u}", r->line);
                continue;
            }
            _pm_out_printf(&o, "%s{\"kind\":\"native\",\"addr\":\"%p\",\"symbol\":", f ? "," : "", s->frames[f]);
            json_string(&o, sym->name);
            _pm_out_printf(&o, ",\"object\":");
            json_string(&o, sym->object);
            _pm_out_printf(&o, "}");
        }
        _pm_out_printf(&o, "]}");
        sep = ",";
    }
    _pm_out_printf(&o, "]");
    /* the sites past the largest MAX_REPORT_SITES, summed, so that totals stay whole (version 2) */
    double rest[4];
    size_t nrest = omitted(v, rest);
    _pm_out_printf(&o, ",\n\"sites_omitted\":{\"sites\":%zu,\"alloc_count\":", nrest);
    out_double(&o, rest[0]);
    _pm_out_printf(&o, ",\"alloc_bytes\":");
    out_double(&o, rest[1]);
    _pm_out_printf(&o, ",\"live_count\":");
    out_double(&o, rest[2]);
    _pm_out_printf(&o, ",\"live_bytes\":");
    out_double(&o, rest[3]);
    _pm_out_printf(&o, "}");
    write_sections(&o, PM_FMT_JSON);
    _pm_out_printf(&o, "}\n");
    _pm_out_flush(&o);
    return o.err;
}

/* ---- pprof (gperftools heap profile, heap_v2) ----
 * Counts and bytes are the raw sampled ones: google-pprof and jeprof unbias them from the rate in
 * the header. The file ends with MAPPED_LIBRARIES: and a copy of /proc/self/maps, which is how the
 * tools find the binaries to symbolize the addresses.
 *
 * With interpreted frames (pm_set_frame_source) the file is a "symbolized profile" instead, which
 * the tools read without a binary argument (`google-pprof --text FILE`): a `--- symbol` section
 * names every address of the profile, then `---` and the profile. The tools then look nothing up
 * themselves, so native frames are named here too. Each address X gets two lines, X and X-1:
 * google-pprof looks up X as written, jeprof X-1 for every frame but the innermost. An
 * interpreted frame becomes the address 2^62 + 16 * id: the tools drop addresses from 2^63 up,
 * and ids one apart would make X-1 of one the X of another. Its name is "function [file:line]",
 * with <> as {} and -- as -: their text output strips (...) and <...>, and splits names at --. */
#define PPROF_FOREIGN ((uint64_t)1 << 62)

static uint64_t pprof_addr(const void *frame) {
    if (!_pm_frame_is_foreign(frame)) return (uint64_t)(uintptr_t)frame;
    return PPROF_FOREIGN | ((uint64_t)(uintptr_t)frame & ~(uint64_t)PM_FRAME_TAG) << 4;
}

static void pprof_name(const void *frame, const symbol_t *sym, char *out, size_t cap) {
    const pm_frame_rec_t *r = _pm_frame_rec(frame);
    if (r == NULL) { function_name(sym, out, cap); return; }
    char raw[STR_NAME_MAX];
    pm_out_t o;
    _pm_out_init(&o, raw, sizeof raw - 1, -1);
    _pm_out_printf(&o, "%s [%s:%u]", r->function, r->file, r->line);
    raw[o.len] = 0;
    size_t n = 0;
    for (const char *p = raw; *p && n + 1 < cap; p++) {
        char c = *p == '<' ? '{' : *p == '>' ? '}' : (unsigned char)*p < 0x20 ? '?' : *p;
        if (c == '-' && n > 0 && out[n - 1] == '-') continue;
        out[n++] = c;
    }
    out[n] = 0;
}

typedef struct { uintptr_t addr; } seen_t;

static int write_pprof(int fd, unsigned seq, sitesview_t *v) {
    (void)seq;
    char buf[REPORT_BUF];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    unsigned long long ic = 0, ib = 0, ac = 0, ab = 0;
    bool foreign = false;
    for (size_t i = 0; i < v->sites.nsites; i++) {
        const pm_site_t *s = &v->sites.sites[i];
        ic += s->live_count; ib += s->live_bytes; ac += s->alloc_count; ab += s->alloc_bytes;
        if (s->nframes && _pm_frame_is_foreign(s->frames[0])) foreign = true;
    }
    if (foreign) {
        _pm_out_printf(&o, "--- symbol\n");
        pm_table_t seen = PM_TABLE_INIT(seen_t);
        symbol_t scratch;
        char name[STR_NAME_MAX];
        for (size_t k = 0; k < v->norder; k++) {
            const pm_site_t *s = &v->sites.sites[v->order[k]];
            for (unsigned f = 0; f < s->nframes; f++) {
                uint64_t a = pprof_addr(s->frames[f]);
                if (_pm_table_find(&seen, (uintptr_t)a)) continue;
                if (_pm_table_insert(&seen, (uintptr_t)a) == NULL) { _pm_table_free(&seen); return ENOMEM; }
                pprof_name(s->frames[f], frame_symbol(v, s->frames[f], &scratch), name, sizeof name);
                _pm_out_printf(&o, "0x%016llx %s\n0x%016llx %s\n", (unsigned long long)a, name,
                               (unsigned long long)(a - 1), name);
            }
        }
        _pm_table_free(&seen);
        _pm_out_printf(&o, "---\n");
    }
    size_t rate = v->sites.rate ? v->sites.rate : 1;
    _pm_out_printf(&o, "heap profile: %6llu: %8llu [%6llu: %8llu] @ heap_v2/%zu\n", ic, ib, ac, ab, rate);
    for (size_t k = 0; k < v->norder; k++) {
        const pm_site_t *s = &v->sites.sites[v->order[k]];
        _pm_out_printf(&o, "%6llu: %8llu [%6llu: %8llu] @", (unsigned long long)s->live_count,
                       (unsigned long long)s->live_bytes, (unsigned long long)s->alloc_count,
                       (unsigned long long)s->alloc_bytes);
        /* innermost first, as the stack really ran: the native frames inside the interpreter,
         * then the interpreted ones (which the site holds first); the rest of the native stack,
         * the interpreter's own start, is left out, as in folded stacks */
        unsigned want = frames_wanted(v, s->frames, s->nframes), nf = 0;
        while (nf < want && _pm_frame_is_foreign(s->frames[nf])) nf++;
        for (unsigned j = 0; j < want; j++) {
            unsigned f = j < want - nf ? nf + j : j - (want - nf);
            _pm_out_printf(&o, " 0x%016llx", (unsigned long long)pprof_addr(s->frames[f]));
        }
        _pm_out_printf(&o, "\n");
    }
    _pm_out_printf(&o, "\nMAPPED_LIBRARIES:\n");
    _pm_out_flush(&o);
    if (o.err) return o.err;
    return _pm_os_copy_file("/proc/self/maps", fd, buf, sizeof buf);
}

/* ---- html: report.html with the JSON report in it (html.c) ---- */

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? errno : EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int write_html(int fd, unsigned seq, sitesview_t *v) {
    const char *page = _pm_html_page, *mark = strstr(page, PM_HTML_MARKER);
    if (mark == NULL) return EINVAL;
    int err = write_all(fd, page, (size_t)(mark - page));
    if (err == 0) err = write_json(fd, seq, v);
    const char *rest = mark + strlen(PM_HTML_MARKER);
    if (err == 0) err = write_all(fd, rest, strlen(rest));
    return err;
}

/* ---- proto (proto.c encodes it) ---- */

typedef struct { sitesview_t *v; char names[PM_MAX_FRAMES][128]; } proto_view_t;

/* The stack in pprof's order, as write_pprof writes it; names as the folded format gives them. */
static unsigned proto_site(void *arg, size_t k, void **frames, const char **names, const char **files,
                           unsigned *lines, double *values) {
    proto_view_t *pv = arg;
    sitesview_t *v = pv->v;
    if (k == MAX_REPORT_SITES) {           /* the rest, as the JSON report's sites_omitted */
        size_t n = omitted(v, values);
        pm_out_t o;
        _pm_out_init(&o, pv->names[0], sizeof pv->names[0] - 1, -1);
        _pm_out_printf(&o, "[%zu more sites]", n);
        pv->names[0][o.len] = 0;
        frames[0] = (void *)(uintptr_t)1;  /* no address: its own location */
        names[0] = pv->names[0]; files[0] = ""; lines[0] = 0;
        return 1;
    }
    const pm_site_t *s = &v->sites.sites[v->order[k]];
    values[0] = s->alloc_est_count; values[1] = s->alloc_est_bytes;
    values[2] = s->live_est_count;  values[3] = s->live_est_bytes;
    unsigned want = frames_wanted(v, s->frames, s->nframes), nf = 0;
    while (nf < want && _pm_frame_is_foreign(s->frames[nf])) nf++;
    symbol_t scratch;
    for (unsigned j = 0; j < want; j++) {
        unsigned f = j < want - nf ? nf + j : j - (want - nf);
        frames[j] = s->frames[f];
        const pm_frame_rec_t *r = _pm_frame_rec(s->frames[f]);
        if (r) {               /* pprof strips <...> from names: <module> as {module} */
            size_t m = 0;
            for (const char *p = r->function; *p && m + 1 < sizeof pv->names[j]; p++)
                pv->names[j][m++] = *p == '<' ? '{' : *p == '>' ? '}' : *p;
            pv->names[j][m] = 0;
            names[j] = pv->names[j]; files[j] = r->file; lines[j] = r->line;
        } else {
            /* a frame that only its object names ("libsqlite3.so.0+0x1234") keeps its offset:
             * cut to the object, every such frame of it would be one function */
            const symbol_t *sym = frame_symbol(v, s->frames[f], &scratch);
            const char *base = strrchr(sym->object, '/');
            base = base ? base + 1 : sym->object;
            size_t bl = strlen(base);
            if (bl && strncmp(sym->name, base, bl) == 0 && sym->name[bl] == '+') copy_str(pv->names[j], sizeof pv->names[j], sym->name);
            else function_name(sym, pv->names[j], sizeof pv->names[j]);
            names[j] = pv->names[j]; files[j] = ""; lines[j] = 0;
        }
    }
    return want;
}

static int write_proto(int fd, sitesview_t *v) {
    proto_view_t *pv = _pm_os_map(sizeof *pv);
    if (pv == NULL) return ENOMEM;
    pv->v = v;
    /* the JSON report's sites, and their rest as one sample: the same totals, sample type by type */
    size_t n = v->norder > MAX_REPORT_SITES ? MAX_REPORT_SITES + 1 : v->norder;
    int err = _pm_proto_write(fd, proto_site, pv, n, v->sites.rate);
    _pm_os_unmap(pv, sizeof *pv);
    return err;
}

/* ---- folded ---- */

static int write_folded(int fd, unsigned seq, sitesview_t *v) {
    (void)seq;
    char buf[REPORT_BUF], fn[128];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, fd);
    symbol_t scratch;
    for (size_t k = 0; k < v->norder && k < MAX_REPORT_SITES; k++) {
        const pm_site_t *s = &v->sites.sites[v->order[k]];
        if (!(s->live_est_bytes >= 0.5)) continue;
        /* outermost first: the interpreted frames (which the stack holds first), then the native
         * frames inside the interpreter, which are the allocation's innermost */
        unsigned want = frames_wanted(v, s->frames, s->nframes), nf = 0;
        while (nf < want && _pm_frame_is_foreign(s->frames[nf])) nf++;
        for (unsigned j = 0; j < want; j++) {
            unsigned f = j < nf ? nf - 1 - j : want - 1 - (j - nf);
            const symbol_t *sym = frame_symbol(v, s->frames[f], &scratch);
            if (_pm_frame_is_foreign(s->frames[f])) folded_name(sym, fn, sizeof fn);   /* "f (app.py:3)" */
            else function_name(sym, fn, sizeof fn);
            _pm_out_printf(&o, "%s%s", fn, j + 1 < want ? ";" : " ");
        }
        if (s->nframes == 0) _pm_out_printf(&o, "[unknown] ");
        out_double(&o, s->live_est_bytes);
        _pm_out_printf(&o, "\n");
    }
    _pm_out_flush(&o);
    return o.err;
}

/* At exit with leaks:true: the sites whose sampled blocks are still live. */
void _pm_report_leaks(int fd) {
    sitesview_t v;
    if (view_open(&v) == 0) {
        char buf[PM_OUT_BUF];
        pm_out_t o;
        _pm_out_init(&o, buf, sizeof buf, fd);
        double bytes = 0;
        size_t n = 0;
        for (size_t i = 0; i < v.sites.nsites; i++)
            if (v.sites.sites[i].live_count) { n++; bytes += v.sites.sites[i].live_est_bytes; }
        _pm_out_printf(&o, "poolmalloc: leaks at exit: ~");
        out_double(&o, bytes);
        _pm_out_printf(&o, " bytes (estimated from samples) still allocated from %zu sites\n", n);
        print_sites(&o, &v, 50, true);
        _pm_out_flush(&o);
    }
    view_close(&v);
}

static int write_from(sitesview_t *v, int fd, unsigned format, unsigned seq) {
    switch (format) {
    case PM_FMT_TEXT:   return write_text(fd, seq, v);
    case PM_FMT_JSON:   return write_json(fd, seq, v);
    case PM_FMT_PPROF:  return write_pprof(fd, seq, v);
    case PM_FMT_FOLDED: return write_folded(fd, seq, v);
    case PM_FMT_PROTO:  return write_proto(fd, v);
    case PM_FMT_HTML:   return write_html(fd, seq, v);
    default:            return EINVAL;
    }
}

int _pm_report_write(int fd, unsigned format, unsigned seq) {
    sitesview_t v;
    int err = view_open(&v);
    if (err == 0) err = write_from(&v, fd, format, seq);
    view_close(&v);
    return err;
}

/* One dump's formats from one copy of the site table, so that they agree with each other. */
void *_pm_report_dump_open(int *err) {
    sitesview_t *v = _pm_os_map(sizeof *v);
    if (v == NULL) { *err = ENOMEM; return NULL; }
    *err = view_open(v);
    if (*err) { view_close(v); _pm_os_unmap(v, sizeof *v); return NULL; }
    return v;
}
int _pm_report_dump_write(void *view, int fd, unsigned format, unsigned seq) { return write_from(view, fd, format, seq); }
void _pm_report_dump_close(void *view) {
    if (view == NULL) return;
    view_close(view);
    _pm_os_unmap(view, sizeof(sitesview_t));
}
