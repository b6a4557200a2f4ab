/* util/util.h: what every layer above the OS uses: formatting into a fixed buffer (fmt.c) and the
 * options table (options.c). Options sit this low because the heap reads its own (purge_delay)
 * before it serves the first allocation, and every layer above has some. */
#ifndef PM_UTIL_H
#define PM_UTIL_H
#include "os/os.h"

#pragma GCC visibility push(hidden)

/* ---- fmt.c: formatting into a fixed buffer, never malloc ---------------------------------- */
typedef struct pm_out_s pm_out_t;
struct pm_out_s { char *buf; size_t cap, len; int fd; };
void _pm_out_init(pm_out_t *o, char *buf, size_t cap, int fd);
void _pm_out_printf(pm_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void _pm_out_flush(pm_out_t *o);
void _pm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void _pm_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* ---- options.c ---------------------------------------------------------------------------- */
#define PM_PURGE_DELAY_MAX ((uint32_t)1 << 30)    /* ms, about 12 days: deadlines compare as int32 */
enum { PM_FMT_TEXT = 1, PM_FMT_JSON = 2, PM_FMT_PPROF = 4, PM_FMT_FOLDED = 8, PM_FMT_ALL = 15 };
typedef struct {
    bool   stats;          /* print statistics at exit */
    bool   verbose;        /* say what happens (report files written) */
    size_t purge;          /* 0, or: decommit all free pool slots at once when this many bytes are dirty */
    size_t purge_delay;    /* ms: return freed memory (slots, arenas, huge mappings) this long after;
                              at most PM_PURGE_DELAY_MAX, since freed times are 32-bit ms */
    bool   background;     /* a background thread returns decayed memory of an idle program */
    size_t sample;         /* mean bytes between sampled allocations; 0: off; 1: every one */
    int    signal;         /* dump reports on this signal; 0: off */
    char   dir[256];       /* where report files go */
    char   prefix[64];     /* report file names: <dir>/<prefix>.<pid>.<seq>.<ext> */
    unsigned formats;      /* PM_FMT_* */
    bool   at_exit;        /* dump once more at exit */
    bool   leaks;          /* at exit, list sampled blocks still live, by site */
    size_t interval;       /* dump every this many bytes allocated (estimated by sampling); 0: off */
    unsigned given;        /* bit i: table entry i was set explicitly */
} pm_options_t;
extern pm_options_t _pm_options;
void _pm_options_init(void);
int  _pm_options_parse(const char *conf, pm_options_t *out); /* returns the number of warnings */
void _pm_options_finish(pm_options_t *o);   /* defaults that depend on what was given */
bool _pm_options_reports(const pm_options_t *o); /* was any report option given? */
int  _pm_options_set(pm_options_t *o, const char *name, const char *value); /* 0 or EINVAL/ENOENT */
int  _pm_options_get(const pm_options_t *o, const char *name, char *buf, size_t cap); /* 0 or ENOENT */
int  _pm_signal_number(const char *s, size_t n);  /* "USR1", "SIGUSR2", "12", "off" (0); -1: bad */


#pragma GCC visibility pop
#endif
