/* fuzz_conf.c: a libFuzzer target for the POOLMALLOC_CONF parser (lib/util/options.c).
 *
 * The input up to its first NUL byte is a POOLMALLOC_CONF string. It is parsed into a fresh
 * pm_options_t holding the defaults (the initializer of _pm_options, copied below and checked
 * against the library's at start-up), then finished (_pm_options_finish), and the fuzzer checks:
 *   - nothing crashes, and the warning count is not negative;
 *   - parsing is idempotent (the same string again changes nothing, with as many warnings), and
 *     so is finishing;
 *   - the string options stay NUL-terminated within their arrays, and non-empty;
 *   - formats stay within PM_FMT_ALL, the signal is off or one the syntax allows (docs/options.md:
 *     1 to 64, not KILL, STOP, SEGV, BUS, FPE, ILL or ABRT), purge_delay <= PM_PURGE_DELAY_MAX
 *     after finishing, and finishing applies the report defaults exactly when a report option
 *     was given;
 *   - every key's value read with _pm_options_get round-trips through _pm_options_set: setting
 *     the text read back is accepted, changes nothing but the key's `given` bit, and reads back
 *     the same text. (formats is 0, which reads as "", until a report option turns reports on:
 *     "" is no valid value to set, so that one case is skipped.)
 * The bytes after the first NUL, if any, are one more value: the byte after the NUL picks a key,
 * the rest is given to _pm_options_set, which must accept it (and then round-trip as above) or
 * refuse it with EINVAL and leave the options as they were.
 *
 * The parser warns on stderr about every bad entry, by design: `make fuzz` runs this target with
 * -close_fd_mask=2, and libFuzzer keeps its own output (and crash reports) on a copy of stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#define FUZZ_CHECK_FD 1   /* `make fuzz` closes this target's stderr (-close_fd_mask=2) */
#include "fuzz_check.h"

/* The options table's keys, in its order: bit i of `given` is key i (checked at start-up). */
static const char *const keys[] = {
    "stats", "verbose", "purge", "purge_delay", "background", "hardened", "sample", "signal", "dir",
    "prefix", "formats", "at_exit", "leaks", "interval", "guard", "guard_rate",
};
#define NKEYS (sizeof keys / sizeof keys[0])
enum { K_SAMPLE = 6, K_SIGNAL = 7, K_FORMATS = 10 };

/* The defaults: lib/util/options.c's initializer of _pm_options. */
static const pm_options_t defaults = {
    .purge_delay = 1000,
    .background = true,
    .guard_rate = 500,
    .dir = ".",
    .prefix = "poolmalloc",
};


static bool same_but_given(const pm_options_t *a, const pm_options_t *b) {
    pm_options_t x = *a, y = *b;
    x.given = y.given = 0;
    return memcmp(&x, &y, sizeof x) == 0;
}

static bool signal_ok(int sig) {
    if (sig == 0) return true;
    if (sig < 1 || sig > 64 || sig > SIGRTMAX) return false;
    return sig != SIGKILL && sig != SIGSTOP && sig != SIGSEGV && sig != SIGBUS && sig != SIGFPE &&
           sig != SIGILL && sig != SIGABRT;
}

static void check_fields(const pm_options_t *o, const char *when) {
    CHECK(memchr(o->dir, 0, sizeof o->dir) != NULL, "%s: dir is not NUL-terminated", when);
    CHECK(memchr(o->prefix, 0, sizeof o->prefix) != NULL, "%s: prefix is not NUL-terminated", when);
    CHECK(o->dir[0] != 0 && o->prefix[0] != 0, "%s: an empty dir or prefix", when);
    CHECK((o->formats & ~(unsigned)PM_FMT_ALL) == 0, "%s: formats %#x outside PM_FMT_ALL", when, o->formats);
    CHECK(signal_ok(o->signal), "%s: signal %d is not one the syntax allows", when, o->signal);
    CHECK((o->given >> NKEYS) == 0, "%s: given %#x names no key", when, o->given);
}

/* Every key: get, set what was read on a copy, get again. */
static void check_round_trip(const pm_options_t *o, const char *when) {
    for (unsigned i = 0; i < NKEYS; i++) {
        char got[320], again[320];
        CHECK(_pm_options_get(o, keys[i], got, sizeof got) == 0, "%s: get %s failed", when, keys[i]);
        CHECK(memchr(got, 0, sizeof got) != NULL, "%s: get %s: no NUL", when, keys[i]);
        if (i == K_FORMATS && o->formats == 0) {
            CHECK(got[0] == 0, "%s: formats 0 reads as '%s'", when, got);
            continue;                                  /* "" cannot be set: see the top */
        }
        pm_options_t c = *o;
        int r = _pm_options_set(&c, keys[i], got);
        CHECK(r == 0, "%s: %s: the value read back, '%s', is refused by _pm_options_set (%d)", when, keys[i], got, r);
        CHECK(same_but_given(&c, o), "%s: %s: setting the value read back ('%s') changed the options", when, keys[i], got);
        CHECK(c.given == (o->given | 1u << i), "%s: %s: given %#x after the set, not %#x", when, keys[i], c.given, o->given | 1u << i);
        CHECK(_pm_options_get(&c, keys[i], again, sizeof again) == 0, "%s: get %s failed", when, keys[i]);
        CHECK(strcmp(got, again) == 0, "%s: %s reads '%s', set back it reads '%s'", when, keys[i], got, again);
    }
}

static void check_finish(const pm_options_t *before) {
    pm_options_t o = *before;
    bool reports = _pm_options_reports(&o);
    _pm_options_finish(&o);
    CHECK(o.purge_delay <= PM_PURGE_DELAY_MAX, "purge_delay %zu above the limit after finish", o.purge_delay);
    CHECK(o.purge_delay == (before->purge_delay > PM_PURGE_DELAY_MAX ? PM_PURGE_DELAY_MAX : before->purge_delay),
          "finish changed purge_delay %zu to %zu", before->purge_delay, o.purge_delay);
    CHECK(o.given == before->given, "finish changed given");
    if (reports) {
        CHECK(o.sample == (before->given & 1u << K_SAMPLE ? before->sample : (size_t)512 << 10), "finish: sample %zu", o.sample);
        CHECK(o.signal == (before->given & 1u << K_SIGNAL ? before->signal : SIGUSR1), "finish: signal %d", o.signal);
        CHECK(o.formats == (before->given & 1u << K_FORMATS ? before->formats : (unsigned)(PM_FMT_TEXT | PM_FMT_JSON)),
              "finish: formats %#x", o.formats);
        CHECK(o.formats != 0, "reports on, but no format");
    } else {
        CHECK(o.sample == before->sample && o.signal == before->signal && o.formats == before->formats,
              "finish changed a report default without reports");
    }
    check_fields(&o, "after finish");
    pm_options_t twice = o;
    _pm_options_finish(&twice);
    CHECK(memcmp(&twice, &o, sizeof o) == 0, "finishing twice is not finishing once");
    check_round_trip(&o, "after finish");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    /* The key list is the table's, in its order; the defaults are the library's. */
    for (unsigned i = 0; i < NKEYS; i++) {
        pm_options_t o = defaults;
        char v[320];
        CHECK(_pm_options_get(&o, keys[i], v, sizeof v) == 0, "key %s is not in the options table", keys[i]);
        if (i == K_FORMATS) strcpy(v, "text");
        CHECK(_pm_options_set(&o, keys[i], v) == 0 && o.given == 1u << i, "key %s is not entry %u of the table", keys[i], i);
    }
    char v[8];
    CHECK(_pm_options_get(&defaults, "no_such_key", v, sizeof v) == ENOENT, "an unknown key is found");
    if (getenv("POOLMALLOC_CONF") == NULL) {
        pm_options_t d = defaults;
        _pm_options_finish(&d);
        CHECK(memcmp(&d, &_pm_options, sizeof d) == 0, "the defaults here are not lib/util/options.c's");
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *conf = malloc(size + 1);
    CHECK(conf != NULL, "out of memory");
    memcpy(conf, data, size);
    conf[size] = 0;
    size_t len = strlen(conf);

    pm_options_t o = defaults;
    int warnings = _pm_options_parse(conf, &o);
    CHECK(warnings >= 0, "%d warnings", warnings);
    check_fields(&o, "after parse");
    pm_options_t again = o;
    CHECK(_pm_options_parse(conf, &again) == warnings, "parsing twice: another warning count");
    CHECK(memcmp(&again, &o, sizeof o) == 0, "parsing the same string twice changed the options");
    check_round_trip(&o, "after parse");
    check_finish(&o);

    if (len + 1 < size) {                              /* one more value, for one key */
        unsigned k = (unsigned char)conf[len + 1] % NKEYS;
        const char *value = conf + len + 2;            /* NUL-terminated by conf[size] */
        pm_options_t c = o;
        int r = _pm_options_set(&c, keys[k], value);
        CHECK(r == 0 || r == EINVAL, "set %s: %d", keys[k], r);
        if (r == EINVAL) {
            CHECK(memcmp(&c, &o, sizeof o) == 0, "a refused set of %s changed the options", keys[k]);
        } else {
            CHECK(c.given == (o.given | 1u << k), "set %s: given %#x", keys[k], c.given);
            check_fields(&c, "after set");
            check_round_trip(&c, "after set");
            check_finish(&c);
        }
    }
    free(conf);
    return 0;
}
