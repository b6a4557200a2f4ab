/* options.c: the options table, read once from POOLMALLOC_CONF and changeable through pm_ctl.
 *
 * POOLMALLOC_CONF is a comma-separated list of key:value pairs, like jemalloc's MALLOC_CONF.
 * Booleans take true/false/on/off/yes/no/1/0; sizes take a k, m or g suffix. An unknown key or a bad
 * value gets one warning line naming it and keeps the default; nothing here can crash or abort.
 * When the process runs with AT_SECURE (setuid or setgid), the environment is ignored entirely.
 *
 * Reports: once any report option is given (sample, signal, dir, prefix, formats, at_exit, leaks,
 * interval), sampling defaults to 512k, the signal to USR1 and the formats to text+json. */
#define _GNU_SOURCE
#include "util/util.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

pm_options_t _pm_options = {
    .purge_delay = 1000,
    .background = true,
    .guard_rate = 500,
    .dir = ".",
    .prefix = "poolmalloc",
};

typedef enum { OPT_BOOL, OPT_SIZE, OPT_STRING, OPT_SIGNAL, OPT_FORMATS } opt_kind_t;
typedef struct {
    const char *name;
    opt_kind_t  kind;
    size_t      offset, size;
    bool        report;      /* asking for it asks for reports */
    const char *doc;
} opt_t;

#define FIELD(f) offsetof(pm_options_t, f), sizeof(((pm_options_t *)0)->f)
/* Bit i of `given` is entry i, and tests/fuzz/fuzz_conf.c lists the keys in this order: a new key
 * goes at the end. */
static const opt_t table[] = {
    { "stats",       OPT_BOOL,    FIELD(stats),       false, "print the statistics report to stderr at exit" },
    { "verbose",     OPT_BOOL,    FIELD(verbose),     false, "say on stderr where each report went" },
    { "purge",       OPT_SIZE,    FIELD(purge),       false, "0, or return every free pool slot at once when this many bytes wait" },
    { "purge_delay", OPT_SIZE,    FIELD(purge_delay), false, "return freed memory that stayed unused this many ms" },
    { "background",  OPT_BOOL,    FIELD(background),  false, "return decayed memory from a thread, so an idle program gets it back" },
    { "hardened",    OPT_BOOL,    FIELD(hardened),    false, "check block bounds, zero freed blocks and delay their reuse (read at start-up)" },
    { "sample",      OPT_SIZE,    FIELD(sample),      true,  "mean bytes between sampled allocations (0 off, 1 all)" },
    { "signal",      OPT_SIGNAL,  FIELD(signal),      true,  "signal that dumps the reports (USR1, USR2, a number, off)" },
    { "dir",         OPT_STRING,  FIELD(dir),         true,  "directory for report files" },
    { "prefix",      OPT_STRING,  FIELD(prefix),      true,  "report file name prefix" },
    { "formats",     OPT_FORMATS, FIELD(formats),     true,  "report formats joined by +: text, json, pprof, folded" },
    { "at_exit",     OPT_BOOL,    FIELD(at_exit),     true,  "dump the reports once more at exit" },
    { "leaks",       OPT_BOOL,    FIELD(leaks),       true,  "at exit, list sampled blocks still live, by site" },
    { "interval",    OPT_SIZE,    FIELD(interval),    true,  "dump every this many bytes allocated" },
    { "guard",       OPT_SIZE,    FIELD(guard),       false, "put about one allocation in this many against a guard page (0 off, 1 all)" },
    { "guard_rate",  OPT_SIZE,    FIELD(guard_rate),  false, "guard at most this many allocations a second (0: no cap)" },
};
#define NOPTS (sizeof table / sizeof table[0])
_Static_assert(NOPTS <= 32, "`given` is a 32-bit mask");

static bool eq(const char *s, size_t n, const char *word) { return strlen(word) == n && strncasecmp(s, word, n) == 0; }

static bool parse_bool(const char *s, size_t n, bool *out) {
    static const char *const yes[] = { "true", "on", "yes", "1" }, *const no[] = { "false", "off", "no", "0" };
    for (unsigned i = 0; i < 4; i++) {
        if (eq(s, n, yes[i])) { *out = true; return true; }
        if (eq(s, n, no[i])) { *out = false; return true; }
    }
    return false;
}

static bool parse_size(const char *s, size_t n, size_t *out) {
    size_t v = 0, i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (size_t)(s[i] - '0'), &v)) return false;
    }
    if (i == 0) return false;
    unsigned shift = 0;
    if (i < n) {
        switch (s[i++] | 0x20) {
        case 'k': shift = 10; break;
        case 'm': shift = 20; break;
        case 'g': shift = 30; break;
        default: return false;
        }
        if (i < n && (s[i] | 0x20) == 'b') i++;
    }
    if (i != n || (shift && v > (SIZE_MAX >> shift))) return false;
    *out = v << shift;
    return true;
}

static const struct { const char *name; int number; } signals[] = {
    { "USR1", SIGUSR1 }, { "USR2", SIGUSR2 }, { "HUP", SIGHUP }, { "PROF", SIGPROF },
    { "URG", SIGURG }, { "WINCH", SIGWINCH }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU },
};

int _pm_signal_number(const char *s, size_t n) {
    if (eq(s, n, "off") || eq(s, n, "0")) return 0;
    if (n > 3 && strncasecmp(s, "SIG", 3) == 0) { s += 3; n -= 3; }
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
        if (eq(s, n, signals[i].name)) return signals[i].number;
    size_t v;
    if (parse_size(s, n, &v) && v >= 1 && v < 65 && v != SIGKILL && v != SIGSTOP && v != SIGSEGV &&
        v != SIGBUS && v != SIGFPE && v != SIGILL && v != SIGABRT)
        return (int)v;
    if (n > 5 && strncasecmp(s, "RTMIN", 5) == 0 && s[5] == '+' && parse_size(s + 6, n - 6, &v) &&
        v <= (size_t)(SIGRTMAX - SIGRTMIN))      /* bound first: a large v must not wrap the int */
        return SIGRTMIN + (int)v;
    return -1;
}

const pm_format_t _pm_formats[PM_NFORMATS] = {
    { "text", "txt", PM_FMT_TEXT }, { "json", "json", PM_FMT_JSON },
    { "pprof", "heap", PM_FMT_PPROF }, { "folded", "folded", PM_FMT_FOLDED }, { "proto", "pb.gz", PM_FMT_PROTO },
    { "html", "html", PM_FMT_HTML },
};
_Static_assert(PM_FMT_ALL == (1u << PM_NFORMATS) - 1, "one bit per format");

unsigned _pm_format_named(const char *s, size_t n) {
    for (unsigned i = 0; i < PM_NFORMATS; i++) if (eq(s, n, _pm_formats[i].name)) return _pm_formats[i].bit;
    return 0;
}

const char *_pm_format_ext(unsigned bit) {
    for (unsigned i = 0; i < PM_NFORMATS; i++) if (_pm_formats[i].bit == bit) return _pm_formats[i].ext;
    return "out";
}

static bool parse_formats(const char *s, size_t n, unsigned *out) {
    unsigned mask = 0;
    while (n > 0) {
        const char *plus = memchr(s, '+', n);
        size_t len = plus ? (size_t)(plus - s) : n;
        unsigned bit = eq(s, len, "all") ? PM_FMT_ALL : _pm_format_named(s, len);
        if (bit == 0) return false;
        mask |= bit;
        if (!plus) break;
        n -= len + 1;
        s = plus + 1;
        if (n == 0) return false;                 /* a trailing '+' */
    }
    if (mask == 0) return false;
    *out = mask;
    return true;
}

static bool parse_value(const opt_t *opt, const char *val, size_t vlen, pm_options_t *o) {
    void *field = (char *)o + opt->offset;
    switch (opt->kind) {
    case OPT_BOOL:    return parse_bool(val, vlen, field);
    case OPT_SIZE:    return parse_size(val, vlen, field);
    case OPT_FORMATS: return parse_formats(val, vlen, field);
    case OPT_SIGNAL: {
        int sig = _pm_signal_number(val, vlen);
        if (sig < 0) return false;
        *(int *)field = sig;
        return true;
    }
    case OPT_STRING:
        if (vlen == 0 || vlen >= opt->size || memchr(val, 0, vlen)) return false;
        memcpy(field, val, vlen);
        ((char *)field)[vlen] = 0;
        return true;
    }
    return false;
}

static const char *want(opt_kind_t kind) {
    switch (kind) {
    case OPT_BOOL:    return "want true or false";
    case OPT_SIZE:    return "want a size like 64k";
    case OPT_SIGNAL:  return "want USR1, USR2, a signal number or off";
    case OPT_FORMATS: return "want text, json, pprof or folded, joined by +";
    case OPT_STRING:  return "want a non-empty string of at most %zu characters";
    }
    return "";
}

static const opt_t *find(const char *s, size_t n) {
    for (size_t i = 0; i < NOPTS; i++) if (strlen(table[i].name) == n && strncmp(table[i].name, s, n) == 0) return &table[i];
    return NULL;
}

int _pm_options_parse(const char *conf, pm_options_t *out) {
    int warnings = 0;
    const char *s = conf;
    while (s && *s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *colon = memchr(s, ':', len);
        size_t klen = colon ? (size_t)(colon - s) : len;
        const char *val = colon ? colon + 1 : s + len;
        size_t vlen = colon ? len - klen - 1 : 0;
        if (len > 0) {
            const opt_t *opt = find(s, klen);
            if (opt == NULL) {
                _pm_warn("POOLMALLOC_CONF: unknown option '%.*s' ignored", (int)klen, s);
                warnings++;
            } else if (!parse_value(opt, val, vlen, out)) {
                char why[64];            /* the want() text, with a string option's length limit */
                pm_out_t w;
                _pm_out_init(&w, why, sizeof why - 1, -1);
                _pm_out_printf(&w, want(opt->kind), opt->size - 1);
                why[w.len] = 0;
                _pm_warn("POOLMALLOC_CONF: bad value '%.*s' for '%s' (%s), default kept", (int)vlen, val,
                         opt->name, why);
                warnings++;
            } else {
                out->given |= 1u << (opt - table);
            }
        }
        s = end ? end + 1 : NULL;
    }
    return warnings;
}

bool _pm_options_reports(const pm_options_t *o) {
    for (size_t i = 0; i < NOPTS; i++) {
        if (!table[i].report || !(o->given & (1u << i))) continue;
        if (table[i].kind == OPT_SIGNAL && o->signal == 0) continue;      /* signal:off alone */
        if (&table[i] == find("sample", 6) && o->sample == 0) continue;   /* sample:0 alone */
        return true;
    }
    return false;
}

void _pm_options_finish(pm_options_t *o) {
    if (o->purge_delay > PM_PURGE_DELAY_MAX) {      /* freed times are 32-bit milliseconds */
        _pm_warn("POOLMALLOC_CONF: purge_delay %zu is above the limit of %u ms (12 days), limit used",
                 o->purge_delay, (unsigned)PM_PURGE_DELAY_MAX);
        o->purge_delay = PM_PURGE_DELAY_MAX;
    }
    if (!_pm_options_reports(o)) return;
    if (!(o->given & (1u << (find("sample", 6) - table)))) o->sample = (size_t)512 << 10;
    if (!(o->given & (1u << (find("signal", 6) - table)))) o->signal = SIGUSR1;
    if (!(o->given & (1u << (find("formats", 7) - table)))) o->formats = PM_FMT_TEXT | PM_FMT_JSON;
}

void _pm_options_init(void) {
    if (getauxval(AT_SECURE)) return;
    const char *conf = getenv("POOLMALLOC_CONF");
    if (conf) _pm_options_parse(conf, &_pm_options);
    _pm_options_finish(&_pm_options);
}

/* pm_ctl's "opt.NAME": the same parser, so run-time values follow the same rules. */
int _pm_options_set(pm_options_t *o, const char *name, const char *value) {
    const opt_t *opt = find(name, strlen(name));
    if (opt == NULL) return ENOENT;
    if (!parse_value(opt, value, strlen(value), o)) return EINVAL;
    o->given |= 1u << (opt - table);
    return 0;
}

int _pm_options_get(const pm_options_t *o, const char *name, char *buf, size_t cap) {
    const opt_t *opt = find(name, strlen(name));
    if (opt == NULL) return ENOENT;
    pm_out_t out;
    char tmp[300];
    _pm_out_init(&out, tmp, sizeof tmp, -1);
    const void *field = (const char *)o + opt->offset;
    switch (opt->kind) {
    case OPT_BOOL:    _pm_out_printf(&out, "%s", *(const bool *)field ? "true" : "false"); break;
    case OPT_SIZE:    _pm_out_printf(&out, "%zu", *(const size_t *)field); break;
    case OPT_SIGNAL:  _pm_out_printf(&out, "%d", *(const int *)field); break;
    case OPT_STRING:  _pm_out_printf(&out, "%s", (const char *)field); break;
    case OPT_FORMATS: {
        const char *sep = "";
        for (unsigned i = 0; i < PM_NFORMATS; i++)
            if (*(const unsigned *)field & _pm_formats[i].bit) { _pm_out_printf(&out, "%s%s", sep, _pm_formats[i].name); sep = "+"; }
        break;
    }
    }
    size_t n = out.len < cap ? out.len : cap - 1;
    memcpy(buf, tmp, n);
    buf[n] = 0;
    return 0;
}
