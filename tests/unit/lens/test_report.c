/* Each report format's writer, the file naming rules, pm_ctl, and the signal trigger. */
#include "helpers.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

/* Run pm_report(fd, format) into a temporary file and return its contents (static buffer). */
static char *report_of(const char *format) {
    static char buf[1 << 20];
    char path[] = "/tmp/pm-report-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(pm_report(fd, format), 0, "pm_report(%s)", format);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    return buf;
}

__attribute__((noinline)) static void *keep_alive(size_t n) { void *p = malloc(n); memset(p, 3, n); return p; }

static void with_samples(void) {
    _pm_sample_set_rate(1);
    _pm_heap_get()->sample.left = -1;
    for (int i = 0; i < 100; i++) (void)keep_alive(1000);     /* left live on purpose */
    _pm_sample_set_rate(0);
}

static size_t json_number(const char *json, const char *key) {
    const char *p = strstr(json, key);
    cr_assert_not_null(p, "no %s in the report", key);
    return strtoull(p + strlen(key), NULL, 10);
}

Test(report, json_totals_match_the_allocator_statistics) {
    with_samples();
    pm_stats_t s;
    pm_stats_get(&s);
    char *json = report_of("json");
    cr_assert(strncmp(json, "{\"schema\":\"poolmalloc.heap\",\"version\":2,", 40) == 0, "%.80s", json);
    size_t live = json_number(json, "\"live_bytes\":"), mapped = json_number(json, "\"mapped_bytes\":");
    cr_assert(live + (64u << 10) > s.in_use && live < s.in_use + (64u << 10), "live %zu vs stats %zu", live, s.in_use);
    cr_assert_eq(mapped, s.mapped);
    size_t rss = json_number(json, "\"resident_bytes\":"), peak_rss = json_number(json, "\"peak_resident_bytes\":");
    cr_assert(rss > 0 && peak_rss >= rss, "resident %zu, peak %zu", rss, peak_rss);
    cr_assert(strstr(json, "\"sites\":[\n {\"live_bytes\":100000,\"live_count\":100,"), "the sampled site leads: %s", strstr(json, "\"sites\""));
    cr_assert(strstr(json, "\"symbol\":\"keep_alive+0x"), "frames are symbolized");
    cr_assert(strstr(json, "\"classes\":[\n {\"class\":"));
    size_t len = strlen(json);
    cr_assert(len > 2 && json[len - 2] == '}' && json[len - 1] == '\n', "the document is closed");
}

Test(report, pprof_is_a_gperftools_heap_v2_profile) {
    with_samples();
    _pm_sample_set_rate(524288);
    char *heap = report_of("pprof");
    _pm_sample_set_rate(0);
    unsigned long long ic, ib, ac, ab;
    unsigned long rate;
    cr_assert_eq(sscanf(heap, "heap profile: %llu: %llu [%llu: %llu] @ heap_v2/%lu", &ic, &ib, &ac, &ab, &rate), 5, "%.100s", heap);
    cr_assert_eq(rate, 524288);
    cr_assert_geq(ic, 100);
    char *line = strchr(heap, '\n') + 1;
    unsigned long long c, b, c2, b2;
    cr_assert_eq(sscanf(line, "%llu: %llu [%llu: %llu] @ 0x", &c, &b, &c2, &b2), 4, "%.100s", line);
    char *maps = strstr(heap, "\nMAPPED_LIBRARIES:\n");
    cr_assert_not_null(maps);
    cr_assert(strstr(maps, "r-xp") && strstr(maps, "libc"), "followed by /proc/self/maps");
}

/* ---- profile.proto, read back: gunzip, then the protobuf wire format by hand ---- */

static size_t gunzip_report(uint8_t *out, size_t cap) {
    static uint8_t gz[1 << 20];
    char path[] = "/tmp/pm-report-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(pm_report(fd, "proto"), 0);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, gz, sizeof gz);
    close(fd);
    cr_assert(n > 18 && gz[0] == 0x1f && gz[1] == 0x8b, "a gzip stream");
    z_stream z;
    memset(&z, 0, sizeof z);
    cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz; z.avail_in = (uInt)n; z.next_out = out; z.avail_out = (uInt)cap;
    cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END, "one complete gzip member");
    size_t len = z.total_out;
    inflateEnd(&z);
    return len;
}

static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    cr_assert_fail("a varint runs past the end");
    return 0;
}

typedef struct { unsigned field, wire; uint64_t v; const uint8_t *p; size_t len; } pbfield_t;

static bool next_field(const uint8_t **p, const uint8_t *end, pbfield_t *f) {
    if (*p >= end) return false;
    uint64_t key = varint(p, end);
    f->field = (unsigned)(key >> 3);
    f->wire = (unsigned)(key & 7);
    cr_assert(f->wire == 0 || f->wire == 2, "only varints and length-delimited fields");
    if (f->wire == 0) { f->v = varint(p, end); return true; }
    f->len = varint(p, end);
    cr_assert_leq(f->len, (size_t)(end - *p));
    f->p = *p;
    *p += f->len;
    return true;
}

Test(report, proto_is_a_gzipped_profile_with_the_unbiased_estimates) {
    with_samples();                            /* rate 1: every estimate is exact */
    _pm_sample_set_rate(524288);
    static uint8_t pb[4 << 20];
    size_t n = gunzip_report(pb, sizeof pb);
    _pm_sample_set_rate(0);
    const uint8_t *p = pb, *end = pb + n;
    pbfield_t f;
    unsigned types = 0, samples = 0, locations = 0, functions = 0, mappings = 0;
    const char *strs[4096];
    size_t lens[4096], nstr = 0;
    uint64_t default_type = 0, period = 0, drop = 0, site_values[4] = { 0 };
    bool found_site = false;
    while (next_field(&p, end, &f)) {
        switch (f.field) {
        case 1: types++; break;
        case 2: {                              /* Sample: packed locations, packed values */
            samples++;
            const uint8_t *q = f.p, *qend = f.p + f.len;
            pbfield_t g;
            while (next_field(&q, qend, &g)) {
                if (g.field != 2) continue;
                uint64_t v[4] = { 0 };
                const uint8_t *r = g.p;
                for (unsigned i = 0; i < 4; i++) v[i] = varint(&r, g.p + g.len);
                cr_assert_eq(r, g.p + g.len, "four values a sample");
                if (v[3] == 100000) { memcpy(site_values, v, sizeof v); found_site = true; }
            }
            break;
        }
        case 3: mappings++; break;
        case 4: locations++; break;
        case 5: functions++; break;
        case 6: if (nstr < 4096) { strs[nstr] = (const char *)f.p; lens[nstr++] = f.len; } break;
        case 7: drop = f.v; break;
        case 12: period = f.v; break;
        case 14: default_type = f.v; break;
        default: break;
        }
    }
    cr_assert_eq(types, 4);
    cr_assert_eq(period, 524288);
    cr_assert(found_site, "the keep_alive site's sample: 100 blocks of 1000 bytes, live");
    cr_assert_eq(site_values[0], 100); cr_assert_eq(site_values[1], 100000);
    cr_assert_eq(site_values[2], 100); cr_assert_eq(site_values[3], 100000);
    cr_assert(samples >= 1 && locations >= 2 && functions >= 2 && mappings >= 1, "%u %u %u %u", samples, locations, functions, mappings);
    cr_assert_eq(lens[0], 0, "the string table starts with \"\"");
    cr_assert_lt(default_type, nstr);
    cr_assert(lens[default_type] == 11 && memcmp(strs[default_type], "inuse_space", 11) == 0);
    cr_assert(drop > 0 && drop < nstr && memmem(strs[drop], lens[drop], "pm_.*", 5), "drop_frames names our entry points");
    bool named = false;
    for (size_t i = 0; i < nstr; i++) named |= lens[i] == 10 && memcmp(strs[i], "keep_alive", 10) == 0;
    cr_assert(named, "functions carry their names");
}

Test(report, folded_lines_are_stacks_and_a_byte_count) {
    with_samples();
    char *folded = report_of("folded");
    char *line = strstr(folded, "keep_alive ");
    cr_assert_not_null(line, "%s", folded);
    while (line > folded && line[-1] != '\n') line--;
    cr_assert(strstr(line, ";") < strstr(line, "keep_alive "), "callers come first: %.200s", line);
    cr_assert_eq(strtoull(strstr(line, "keep_alive ") + 11, NULL, 10), 100000);
}

Test(report, text_has_totals_the_class_table_and_sites) {
    with_samples();
    char *text = report_of("text");
    cr_assert(strstr(text, "=== poolmalloc heap report: pid "));
    cr_assert(strstr(text, "=== poolmalloc statistics"));
    cr_assert(strstr(text, "(balanced)"));
    cr_assert(strstr(text, "live ~100000 bytes in ~100 blocks (100 sampled)"), "%s", strstr(text, "allocation sites"));
    cr_assert(strstr(text, "keep_alive+0x"));
    cr_assert_eq(pm_report(1, "xml"), EINVAL);
}

static char dir[64];
static void use_temp_dir(void) {
    strcpy(dir, "/tmp/pm-dir-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(pm_ctl("opt.dir", NULL, NULL, dir, strlen(dir)), 0);
    cr_assert_eq(pm_ctl("opt.prefix", NULL, NULL, "t", 1), 0);
}

static bool exists(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

Test(report, dumps_are_numbered_exclusive_and_private) {
    use_temp_dir();
    cr_assert_eq(pm_ctl("opt.formats", NULL, NULL, "json+pprof+text+folded", 22), 0);
    char paths[1024];
    size_t len = sizeof paths;
    cr_assert_eq(pm_ctl("report.dump", paths, &len, "1", 1), 0);
    char name[128];
    const char *ext[] = { "txt", "json", "heap", "folded" };
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "t.%d.1.%s", (int)getpid(), ext[i]);
        cr_assert(exists(name), "%s in %s", name, paths);
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        struct stat st;
        cr_assert_eq(stat(path, &st), 0);
        cr_assert_eq(st.st_mode & 0777, 0600);
        cr_assert(strstr(paths, path), "pm_ctl returned the path %s: %s", path, paths);
    }
    /* a file already at seq 2 and a planted symlink at seq 3 are never written through */
    char p2[256], p3[256];
    snprintf(p2, sizeof p2, "%s/t.%d.2.json", dir, (int)getpid());
    snprintf(p3, sizeof p3, "%s/t.%d.3.json", dir, (int)getpid());
    int fd = open(p2, O_CREAT | O_WRONLY, 0644);
    cr_assert_eq(write(fd, "mine", 4), 4);
    close(fd);
    cr_assert_eq(symlink("/tmp/pm-should-not-exist", p3), 0);
    cr_assert_eq(pm_ctl("opt.formats", NULL, NULL, "json", 4), 0);
    cr_assert_eq(pm_ctl("report.dump", NULL, NULL, "1", 1), 0);
    snprintf(name, sizeof name, "t.%d.4.json", (int)getpid());
    cr_assert(exists(name), "seq moved past the taken names");
    char back[8] = { 0 };
    fd = open(p2, O_RDONLY);
    cr_assert_eq(read(fd, back, sizeof back), 4);
    close(fd);
    cr_assert_str_eq(back, "mine");
    cr_assert_neq(access("/tmp/pm-should-not-exist", F_OK), 0);
    size_t seq, sl = sizeof seq;
    cr_assert_eq(pm_ctl("report.seq", &seq, &sl, NULL, 0), 0);
    cr_assert_eq(seq, 4);
}

Test(report, ctl_reads_and_sets_options) {
    char v[64];
    size_t len = sizeof v;
    cr_assert_eq(pm_ctl("opt.sample", NULL, NULL, "64k", 3), 0);
    cr_assert_eq(pm_ctl("opt.sample", v, &len, NULL, 0), 0);
    cr_assert_str_eq(v, "65536");
    size_t rate, rl = sizeof rate;
    cr_assert_eq(pm_ctl("sample.rate", &rate, &rl, NULL, 0), 0);
    cr_assert_eq(rate, 65536);
    len = sizeof v;
    cr_assert_eq(pm_ctl("opt.signal", v, &len, NULL, 0), 0);
    cr_assert_str_eq(v, "10", "asking for reports set the default signal, USR1");
    cr_assert_eq(pm_ctl("opt.sample", NULL, NULL, "lots", 4), EINVAL);
    cr_assert_eq(pm_ctl("opt.nosuch", NULL, NULL, "1", 1), ENOENT);
    cr_assert_eq(pm_ctl("nosuch", NULL, NULL, NULL, 0), ENOENT);
    cr_assert_eq(pm_ctl("stats.live_bytes", NULL, NULL, "1", 1), EPERM);
    size_t live, ll = sizeof live;
    cr_assert_eq(pm_ctl("stats.live_bytes", &live, &ll, NULL, 0), 0);
    cr_assert_gt(live, 0);
    len = 2;
    cr_assert_eq(pm_ctl("opt.prefix", v, &len, NULL, 0), ERANGE);
    _pm_sample_set_rate(0);
}

static bool wait_for(const char *name, int ms) {
    for (int i = 0; i < ms / 10; i++) {
        if (exists(name)) return true;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return false;
}

static _Atomic int churning;
static void *churn(void *arg) {
    (void)arg;
    void *keep[64] = { 0 };
    unsigned i = 0;
    while (atomic_load(&churning)) { free(keep[i % 64]); keep[i % 64] = malloc(16 + i % 3000); i++; }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}

Test(report, a_burst_of_signals_during_churn_dumps_without_deadlock, .timeout = 60) {
    use_temp_dir();
    cr_assert_eq(pm_ctl("opt.formats", NULL, NULL, "json", 4), 0);
    cr_assert_eq(pm_ctl("opt.sample", NULL, NULL, "4k", 2), 0);
    cr_assert_eq(pm_ctl("opt.signal", NULL, NULL, "USR2", 4), 0);
    atomic_store(&churning, 1);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, NULL);
    for (int i = 0; i < 200; i++) { raise(SIGUSR2); if (i % 20 == 0) sched_yield(); }
    char name[64];
    snprintf(name, sizeof name, "t.%d.1.json", (int)getpid());
    cr_assert(wait_for(name, 20000), "a dump appeared");
    atomic_store(&churning, 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    size_t seq, sl = sizeof seq;
    pm_ctl("report.seq", &seq, &sl, NULL, 0);
    cr_assert_geq(seq, 1);
    cr_assert_leq(seq, 200, "signals coalesce");
    _pm_sample_set_rate(0);
}

Test(report, the_child_of_a_fork_dumps_under_its_own_pid, .timeout = 60) {
    use_temp_dir();
    cr_assert_eq(pm_ctl("opt.formats", NULL, NULL, "text", 4), 0);
    cr_assert_eq(pm_ctl("opt.signal", NULL, NULL, "USR2", 4), 0);
    pid_t pid = fork();
    if (pid == 0) {
        raise(SIGUSR2);
        char name[64];
        snprintf(name, sizeof name, "t.%d.1.txt", (int)getpid());
        _exit(wait_for(name, 20000) ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child wrote its own report");
}

#include "poolmalloc/gc.h"
typedef struct cell { struct cell *next; } cell;
static int cell_traverse(void *self, pm_visit visit, void *arg) { cell *c = self; return c->next ? visit(c->next, arg) : 0; }
static int cell_clear(void *self) { cell *c = self; cell *n = c->next; c->next = NULL; if (n) pm_decref(n); return 0; }
static void cell_dealloc(void *self) { cell_clear(self); }
static const pm_type cell_type = { "report_cell", cell_traverse, cell_clear, NULL, cell_dealloc };

Test(report, collectors_appear_in_the_text_and_json_reports) {
    pm_gc *gc = pm_gc_new();
    cell *keep[10];
    for (int i = 0; i < 10; i++) keep[i] = pm_new(gc, &cell_type, sizeof(cell));
    for (int i = 0; i < 20; i++) {                 /* 20 garbage 2-cycles */
        cell *a = pm_new(gc, &cell_type, sizeof(cell)), *b = pm_new(gc, &cell_type, sizeof(cell));
        a->next = b;                               /* our reference to b moves into a */
        b->next = a; pm_incref(a);                 /* b holds a reference to a */
        pm_decref(a);                              /* and we drop ours */
    }
    cr_assert_eq(pm_gc_collect(gc, 2), 40);
    char *json = report_of("json");
    char want[256];
    snprintf(want, sizeof want, "\"gc\":[\n {\"collector\":\"%p\",\"enabled\":true,\"generations\":[", (void *)gc);
    cr_assert(strstr(json, want), "%s", strstr(json, "\"gc\""));
    cr_assert(strstr(json, "{\"name\":\"report_cell\",\"live\":10,\"peak\":50,\"allocated\":50,\"freed\":40}"), "%s", strstr(json, "\"gc\""));
    cr_assert(strstr(json, "\"uncollectable\":0,\"pause_total_ns\":"));
    char *text = report_of("text");
    cr_assert(strstr(text, "collectors (poolmalloc/gc.h):"));
    cr_assert(strstr(text, "report_cell                        10           50             50             40"), "%s", strstr(text, "collectors"));
    for (int i = 0; i < 10; i++) pm_decref(keep[i]);
    pm_gc_destroy(gc);
    json = report_of("json");
    cr_assert(strstr(json, "\"gc\":[]"), "a destroyed collector leaves the report");
}

/* A name longer than the 512 bytes kept is cut before a UTF-8 character, and interning it again
 * still finds it (the comparison and the hash take the kept part only). */
Test(report, long_interpreted_names_intern_once) {
    char name[700];
    memset(name, 'a', sizeof name);
    for (size_t i = 509; i + 1 < 600; i += 2) { name[i] = (char)0xc3; name[i + 1] = (char)0xa9; }   /* "é"s across the cut */
    name[600] = 0;
    uint64_t a = pm_frame_intern(name, "long.py", 7), b = pm_frame_intern(name, "long.py", 7);
    cr_assert_neq(a, 0);
    cr_assert_eq(a, b, "the same long frame interns to one id");
    const pm_frame_rec_t *r = _pm_frame_rec((void *)(uintptr_t)(a | PM_FRAME_TAG));
    cr_assert_not_null(r);
    size_t n = strlen(r->function);
    cr_assert(n <= 512 && n >= 510, "%zu bytes kept", n);
    cr_assert_neq((unsigned char)r->function[n - 1], 0xc3, "not cut inside a character");
    cr_assert_neq(pm_frame_intern(name, "long.py", 8), a, "another line is another frame");
}

/* Found by a review: a type's name went into the JSON as it was, so a quote broke the document and
 * "</script>" could close the HTML report's data element. */
static const pm_type odd_type = { "map<K, \"V\"></script>", cell_traverse, cell_clear, NULL, cell_dealloc };

Test(report, type_names_are_escaped_in_json) {
    pm_gc *gc = pm_gc_new();
    cell *c = pm_new(gc, &odd_type, sizeof(cell));
    char *json = report_of("json");
    cr_assert(strstr(json, "{\"name\":\"map\\u003cK, \\\"V\\\">\\u003c/script>\",\"live\":1,"), "%s", strstr(json, "\"types\""));
    cr_assert_null(strstr(json, "</script>"), "no closing tag survives");
    pm_decref(c);
    pm_gc_destroy(gc);
}

Test(report, interval_dumps_every_so_many_bytes_allocated, .timeout = 60) {
    use_temp_dir();
    cr_assert_eq(pm_ctl("opt.formats", NULL, NULL, "json", 4), 0);
    cr_assert_eq(pm_ctl("opt.sample", NULL, NULL, "16k", 3), 0);
    cr_assert_eq(pm_ctl("opt.interval", NULL, NULL, "4m", 2), 0);      /* starts the reporter */
    for (int k = 1; k <= 3; k++) {                                      /* 6 MB, then a dump */
        for (int i = 0; i < 600; i++) free(malloc(10000));
        char name[64];
        snprintf(name, sizeof name, "t.%d.%d.json", (int)getpid(), k);
        cr_assert(wait_for(name, 20000), "dump %d after %d MB allocated", k, 6 * k);
    }
    size_t seq = 0, sl = sizeof seq;
    pm_ctl("report.seq", &seq, &sl, NULL, 0);
    cr_assert_eq(seq, 3, "one dump per crossing of 4 MB: %zu", seq);
    _pm_sample_set_rate(0);
}

/* A daemon closes every descriptor and opens files of its own, which take the numbers of the
 * reporter's pipe: a signal must not write into them. */
static void close_everything_then_signal(void *arg) {
    (void)arg;
    if (pm_ctl("opt.signal", NULL, NULL, "USR2", 4) != 0) _exit(2);
    for (int fd = 3; fd < 1024; fd++) close(fd);
    char path[64];
    int fds[64];
    for (int i = 0; i < 64; i++) {
        snprintf(path, sizeof path, "/tmp/pm-daemon-%d-%d", (int)getpid(), i);
        fds[i] = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
        unlink(path);
    }
    for (int i = 0; i < 20; i++) raise(SIGUSR2);
    struct timespec ts = { 0, 200 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    for (int i = 0; i < 64; i++) {
        struct stat st;
        if (fds[i] >= 0 && fstat(fds[i], &st) == 0 && st.st_size != 0) _exit(1);
    }
    _exit(0);
}

Test(report, a_signal_never_writes_into_a_reused_descriptor) {
    char out[1024];
    int st = run_in_child(close_everything_then_signal, NULL, out, sizeof out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d: %s", st, out);
}
