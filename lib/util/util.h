/* util/util.h: what every layer above the OS uses: formatting into a fixed buffer (fmt.c), the
 * options table (options.c), and the hash table every internal index is made of (table.c).
 * Options sit this low because the heap reads its own (purge_delay) before it serves the first
 * allocation, and every layer above has some. */
#ifndef PM_UTIL_H
#define PM_UTIL_H
#include "os/os.h"

#include <stdarg.h>

#pragma GCC visibility push(hidden)

/* ---- fmt.c: formatting into a fixed buffer, never malloc ---------------------------------- */
typedef struct pm_out_s pm_out_t;
struct pm_out_s { char *buf; size_t cap, len; int fd, err; };   /* err: the first write error */
void _pm_out_init(pm_out_t *o, char *buf, size_t cap, int fd);
void _pm_out_printf(pm_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void _pm_out_vprintf(pm_out_t *o, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void _pm_out_flush(pm_out_t *o);
void _pm_out_json_string(pm_out_t *o, const char *s);   /* quoted and escaped (< too: HTML-safe) */
void _pm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void _pm_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- PM_DEBUG: the invariant checkers, called at the transitions ---------------------------
 * Each checker returns NULL, or a short text naming the invariant that failed. PM_DEBUG (make
 * debug) calls them where state changes shape, and aborts with that text and the place:
 *   1  the thing that changed: a pool as it becomes full or empty, the arena a pool was taken from
 *      or given back to, the class of the heap that an allocation or free slow path served, and
 *      the collector's lists between the steps of collect() (CPython's validate_list);
 *   2  and the whole structure around it: every arena, every class of the heap, the huge
 *      registry, the sampler's tables.
 * 0 (the default) compiles them out. */
#ifndef PM_DEBUG
#define PM_DEBUG 0
#endif
extern const int _pm_debug_level;   /* PM_DEBUG of the library's build (fmt.c), for tests */
#define PM_DEBUG_CHECK(level, what, check) do {                                              \
        if (PM_DEBUG >= (level)) {                                                           \
            const char *pm_why_ = (check);                                                   \
            if (pm_why_) _pm_fatal("PM_DEBUG: %s: %s (%s:%d)", (what), pm_why_, __FILE__, __LINE__); \
        }                                                                                    \
    } while (0)


/* ---- options.c ---------------------------------------------------------------------------- */
#define PM_PURGE_DELAY_MAX ((uint32_t)1 << 30)    /* ms, about 12 days: deadlines compare as int32 */
/* The report formats: the one list of their names (options, pm_report) and file extensions. */
enum { PM_FMT_TEXT = 1, PM_FMT_JSON = 2, PM_FMT_PPROF = 4, PM_FMT_FOLDED = 8, PM_FMT_PROTO = 16, PM_FMT_HTML = 32, PM_FMT_ALL = 63 };
#define PM_NFORMATS 6
typedef struct { const char *name, *ext; unsigned bit; } pm_format_t;
extern const pm_format_t _pm_formats[PM_NFORMATS];   /* in bit order: _pm_formats[i].bit == 1 << i */
unsigned _pm_format_named(const char *s, size_t n);  /* its PM_FMT_ bit, or 0 */
const char *_pm_format_ext(unsigned bit);            /* the file extension of one format */
typedef struct {
    bool   stats;          /* print statistics at exit */
    bool   verbose;        /* say what happens (report files written) */
    size_t purge;          /* 0, or: decommit all free pool slots at once when this many bytes are dirty */
    size_t purge_delay;    /* ms: return freed memory (slots, arenas, huge mappings) this long after;
                              at most PM_PURGE_DELAY_MAX, since freed times are 32-bit ms */
    bool   background;     /* a background thread returns decayed memory of an idle program */
    bool   hardened;       /* canaries, zeroed freed blocks and a quarantine (heap/harden.c); start-up only */
    size_t sample;         /* mean bytes between sampled allocations; 0: off; 1: every one */
    size_t guard;          /* guard about one allocation in this many (guard.c); 0: off; 1: every one */
    size_t guard_rate;     /* guard at most this many allocations a second; 0: no cap */
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

/* ---- table.c: the one open-addressing hash table, and the one hash function ----------------
 * Entries are the caller's structs, all of t->esize bytes (a multiple of 8), whose first word is
 * a nonzero uintptr_t key; 0 marks an empty slot. Linear probing, backward-shift deletion (no
 * tombstones), a power-of-two capacity that doubles, from os.c memory, before the load would pass
 * 1/2. The table takes no lock. Entry pointers stay valid until the next insert or erase. */
#define PM_TABLE_LOAD_NUM 1
#define PM_TABLE_LOAD_DEN 2
#define PM_TABLE_MIN_CAP  16
typedef struct {
    uint8_t *slots;          /* cap * esize bytes of os.c memory; NULL until the first insert */
    size_t   cap, count;     /* cap: 0 or a power of two; count: occupied slots */
    uint32_t esize;          /* bytes per entry: set once, before the first insert */
} pm_table_t;
#define PM_TABLE_INIT(entry_type) { NULL, 0, 0, sizeof(entry_type) }
uint64_t _pm_hash(uint64_t x);                             /* a bijection; see table.c for why */
void *_pm_table_find(const pm_table_t *t, uintptr_t key);  /* the first entry with key, or NULL */
void *_pm_table_find_next(const pm_table_t *t, const void *entry); /* the next with entry's key */
/* A fresh entry for key, zeroed but for the key; it does not look for key first (callers that
 * keep keys unique find before they insert). NULL with errno ENOMEM when the table had to grow
 * and the mapping failed (the table is unchanged), EINVAL for key 0. */
void *_pm_table_insert(pm_table_t *t, uintptr_t key);
int   _pm_table_reserve(pm_table_t *t, size_t n);    /* the next n inserts cannot fail: 0 or ENOMEM */
void  _pm_table_erase(pm_table_t *t, void *entry);   /* entry came from find, insert or next */
void *_pm_table_next(const pm_table_t *t, size_t *pos); /* iterate: *pos = 0 first; NULL at the end */
void  _pm_table_free(pm_table_t *t);                 /* unmap; the table is empty and reusable */
/* NULL when the table is sound, else which invariant failed: the count matches the occupied
 * slots, every entry is reachable from its home slot without crossing an empty one, the load is
 * within its bound. */
const char *_pm_table_check(const pm_table_t *t);


#pragma GCC visibility pop
#endif
