/* options.c: the options table, read once from POOLMALLOC_CONF.
 *
 * POOLMALLOC_CONF is a comma-separated list of key:value pairs, like jemalloc's MALLOC_CONF.
 * Booleans take true/false/on/off/yes/no/1/0; sizes take a k, m or g suffix. An unknown key or a bad
 * value gets one warning line naming it and keeps the default; nothing here can crash or abort.
 * When the process runs with AT_SECURE (setuid or setgid), the environment is ignored entirely. */
#define _GNU_SOURCE
#include "internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

pm_options_t _pm_options = {
    .stats = false,
    .verbose = false,
    .purge = (size_t)256 << 20,
    .purge_delay = 1000,
};

typedef enum { OPT_BOOL, OPT_SIZE } opt_kind_t;
typedef struct {
    const char *name;
    opt_kind_t  kind;
    size_t      offset;
    const char *doc;
} opt_t;

static const opt_t table[] = {
    { "stats",   OPT_BOOL, offsetof(pm_options_t, stats),   "print statistics to stderr at exit" },
    { "verbose", OPT_BOOL, offsetof(pm_options_t, verbose), "report what the allocator does (arena maps)" },
    { "purge",   OPT_SIZE, offsetof(pm_options_t, purge),   "decommit every free pool slot once this many bytes are dirty" },
    { "purge_delay", OPT_SIZE, offsetof(pm_options_t, purge_delay), "decommit a free pool slot this many ms after it was freed" },
};

static bool parse_bool(const char *s, size_t n, bool *out) {
    static const char *const yes[] = { "true", "on", "yes", "1" }, *const no[] = { "false", "off", "no", "0" };
    for (unsigned i = 0; i < 4; i++) {
        if (strlen(yes[i]) == n && strncasecmp(s, yes[i], n) == 0) { *out = true; return true; }
        if (strlen(no[i]) == n && strncasecmp(s, no[i], n) == 0) { *out = false; return true; }
    }
    return false;
}

static bool parse_size(const char *s, size_t n, size_t *out) {
    size_t v = 0, i = 0;
    if (n == 0) return false;
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
        if (len == 0) { s = end ? end + 1 : NULL; continue; }
        const opt_t *opt = NULL;
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
            if (strlen(table[i].name) == klen && strncmp(table[i].name, s, klen) == 0) opt = &table[i];
        if (opt == NULL) {
            _pm_warn("POOLMALLOC_CONF: unknown option '%.*s' ignored", (int)klen, s);
            warnings++;
        } else {
            void *field = (char *)out + opt->offset;
            bool ok = opt->kind == OPT_BOOL ? parse_bool(val, vlen, field) : parse_size(val, vlen, field);
            if (!ok) {
                _pm_warn("POOLMALLOC_CONF: bad value '%.*s' for '%s' (%s), default kept", (int)vlen, val,
                         opt->name, opt->kind == OPT_BOOL ? "want true or false" : "want a size like 64k");
                warnings++;
            }
        }
        s = end ? end + 1 : NULL;
    }
    return warnings;
}

void _pm_options_init(void) {
    if (getauxval(AT_SECURE)) return;
    const char *conf = getenv("POOLMALLOC_CONF");
    if (conf) _pm_options_parse(conf, &_pm_options);
}
