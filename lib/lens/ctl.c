/* ctl.c: pm_ctl, shaped like jemalloc's mallctl, and pm_report.
 *
 *   name                 type        access  meaning
 *   opt.<option>         char[]      rw      any POOLMALLOC_CONF option, as text ("512k", "USR2",
 *                                            "json+pprof"); setting it parses it like the variable
 *                                            (opt.hardened is read-only: EPERM)
 *   sample.rate          size_t      rw      the same as opt.sample, as a number
 *   stats.live_bytes     size_t      r       bytes in blocks handed out
 *   stats.mapped_bytes   size_t      r       bytes in arenas and huge blocks
 *   stats.resident_bytes size_t      r       resident set of the process
 *   stats.decaying_bytes size_t      r       free but still committed, returned after purge_delay
 *   stats.returned_bytes size_t      r       given back to the OS so far
 *   report.dump          char[]      rw      writing anything dumps the configured formats now;
 *                                            reading gives the paths written, one per line
 *   report.seq           unsigned    r       reports dumped so far
 *
 * Reading: oldp points to a buffer of *oldlenp bytes; *oldlenp becomes the bytes written. For text
 * values the buffer receives a NUL-terminated string (ERANGE if it does not fit). Returns 0 or an
 * errno: ENOENT for an unknown name, EINVAL for a bad value or length, EPERM for writing a
 * read-only name.
 */
#define _GNU_SOURCE
#include "lens/lens.h"
#include "poolmalloc.h"

#include <errno.h>
#include <string.h>

static int read_size(void *oldp, size_t *oldlenp, size_t value) {
    if (oldp == NULL || oldlenp == NULL) return 0;
    if (*oldlenp != sizeof(size_t)) return EINVAL;
    memcpy(oldp, &value, sizeof value);
    return 0;
}

static int read_text(void *oldp, size_t *oldlenp, const char *text) {
    if (oldp == NULL || oldlenp == NULL) return 0;
    size_t n = strlen(text) + 1;
    if (n > *oldlenp) return ERANGE;
    memcpy(oldp, text, n);
    *oldlenp = n;
    return 0;
}

static int opt_ctl(const char *opt, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
    char value[300];
    int err = _pm_options_get(&_pm_options, opt, value, sizeof value);
    if (err) return err;
    if (oldp && (err = read_text(oldp, oldlenp, value))) return err;
    if (newp == NULL) return 0;
    if (strcmp(opt, "hardened") == 0) return EPERM;   /* every block's layout depends on it: start-up only */
    if (newlen == 0 || newlen >= sizeof value) return EINVAL;
    char text[300];
    memcpy(text, newp, newlen);
    text[newlen] = 0;
    pm_options_t next = _pm_options;
    if ((err = _pm_options_set(&next, opt, text))) return err;
    _pm_options_finish(&next);
    _pm_options = next;
    if (_pm_sample_rate() != _pm_options.sample) _pm_sample_set_rate(_pm_options.sample);
    _pm_sample_set_guard_cap(_pm_options.guard_rate);
    if (_pm_sample_guard() != _pm_options.guard) _pm_sample_set_guard(_pm_options.guard);
    _pm_reporter_start();
    return 0;
}

static _Atomic int lens_started;
static pthread_mutex_t lens_lock = PTHREAD_MUTEX_INITIALIZER;

void _pm_lens_start(void) {
    if (atomic_load_explicit(&lens_started, memory_order_acquire)) return;
    _pm_heap_start();
    pthread_mutex_lock(&lens_lock);
    if (!atomic_load_explicit(&lens_started, memory_order_relaxed)) {
        _pm_sample_set_guard_cap(_pm_options.guard_rate);
        _pm_sample_set_guard(_pm_options.guard);
        _pm_sample_set_rate(_pm_options.sample);
        atomic_store_explicit(&lens_started, 1, memory_order_release);
    }
    pthread_mutex_unlock(&lens_lock);
}

PM_EXPORT int pm_ctl(const char *name, void *oldp, size_t *oldlenp, const void *newp, size_t newlen) {
    if (name == NULL) return EINVAL;
    _pm_lens_start();
    if (strncmp(name, "opt.", 4) == 0) return opt_ctl(name + 4, oldp, oldlenp, newp, newlen);
    if (strcmp(name, "sample.rate") == 0) {
        int err = read_size(oldp, oldlenp, _pm_sample_rate());
        if (err || newp == NULL) return err;
        if (newlen != sizeof(size_t)) return EINVAL;
        size_t rate;
        memcpy(&rate, newp, sizeof rate);
        _pm_options.sample = rate;
        _pm_sample_set_rate(rate);
        return 0;
    }
    if (strncmp(name, "stats.", 6) == 0) {
        if (newp) return EPERM;
        pm_stats_t s;
        pm_stats_get(&s);
        if (strcmp(name, "stats.live_bytes") == 0) return read_size(oldp, oldlenp, s.in_use);
        if (strcmp(name, "stats.mapped_bytes") == 0) return read_size(oldp, oldlenp, s.mapped);
        if (strcmp(name, "stats.resident_bytes") == 0) return read_size(oldp, oldlenp, s.resident);
        if (strcmp(name, "stats.decaying_bytes") == 0) return read_size(oldp, oldlenp, s.decaying);
        if (strcmp(name, "stats.returned_bytes") == 0) return read_size(oldp, oldlenp, s.returned);
        return ENOENT;
    }
    if (strcmp(name, "report.dump") == 0) {
        char paths[2048];
        int err = _pm_reporter_dump_now(paths, sizeof paths);
        if (err) return err;
        return read_text(oldp, oldlenp, paths);
    }
    if (strcmp(name, "report.seq") == 0) {
        if (newp) return EPERM;
        return read_size(oldp, oldlenp, _pm_reporter_seq());
    }
    return ENOENT;
}

PM_EXPORT int pm_report(int fd, const char *format) {
    _pm_lens_start();
    unsigned bit = format ? _pm_format_named(format, strlen(format)) : 0;
    return bit ? _pm_report_write(fd, bit, 0) : EINVAL;
}
