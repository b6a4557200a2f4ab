#include "helpers.h"

static pm_options_t defaults(void) { return (pm_options_t){ .stats = false, .verbose = false, .purge = 8u << 20, .purge_delay = 1000 }; }
static char msg[16384];

Test(options, parses_booleans_and_sizes) {
    pm_options_t o = defaults();
    cr_assert_eq(_pm_options_parse("stats:true,verbose:on,purge:64k", &o), 0);
    cr_assert(o.stats);
    cr_assert(o.verbose);
    cr_assert_eq(o.purge, 64u << 10);
    cr_assert_eq(_pm_options_parse("stats:0,verbose:FALSE,purge:2M", &o), 0);
    cr_assert_not(o.stats);
    cr_assert_not(o.verbose);
    cr_assert_eq(o.purge, 2u << 20);
    cr_assert_eq(_pm_options_parse("purge:1g,,stats:yes,", &o), 0);
    cr_assert_eq(o.purge, (size_t)1 << 30);
    cr_assert(o.stats);
    cr_assert_eq(_pm_options_parse("purge:123,purge_delay:10", &o), 0);
    cr_assert_eq(o.purge, 123);
    cr_assert_eq(o.purge_delay, 10);
    cr_assert_eq(_pm_options_parse("", &o), 0);
}

static void parse_bad(void *arg) {
    pm_options_t o = defaults();
    int w = _pm_options_parse(arg, &o);
    if (o.stats || o.purge != (8u << 20)) _exit(10);       /* defaults kept */
    _exit(w);
}

Test(options, bad_input_warns_once_per_item_and_keeps_defaults) {
    struct { const char *conf; int warnings; const char *says; } cases[] = {
        { "nosuch:1", 1, "unknown option 'nosuch'" },
        { "stats:maybe", 1, "bad value 'maybe' for 'stats'" },
        { "purge:12q", 1, "bad value '12q' for 'purge'" },
        { "purge:", 1, "bad value '' for 'purge'" },
        { "purge:99999999999999999999", 1, "bad value" },
        { "purge:20000000000g", 1, "bad value" },
        { "stats", 1, "bad value '' for 'stats'" },
        { ":::,stats:tru,x", 3, "unknown option ''" },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_in_child(parse_bad, (void *)cases[i].conf, msg, sizeof msg);
        cr_assert(WIFEXITED(st), "%s crashed", cases[i].conf);
        cr_assert_eq(WEXITSTATUS(st), cases[i].warnings, "%s: %d warnings", cases[i].conf, WEXITSTATUS(st));
        cr_assert(strstr(msg, cases[i].says), "%s said: %s", cases[i].conf, msg);
        cr_assert(strstr(msg, "poolmalloc: POOLMALLOC_CONF: ") == msg, "%s", msg);
    }
}

static void print_stats(void *arg) { (void)arg; void *p = malloc(1000); pm_stats_print(2); free(p); }

Test(options, stats_report_has_the_class_table_and_balances) {
    int st = run_in_child(print_stats, NULL, msg, sizeof msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_assert(strstr(msg, "=== poolmalloc statistics"), "%s", msg);
    cr_assert(strstr(msg, "   35     1024 "), "class 35 (1024 bytes) is listed: %s", msg);
    cr_assert(strstr(msg, "(balanced)"), "%s", msg);
}

static void clamp_delay(void *arg) {
    (void)arg;
    pm_options_t o = defaults();
    _pm_options_parse("purge_delay:3000000000", &o);
    _pm_options_finish(&o);
    _exit(o.purge_delay == PM_PURGE_DELAY_MAX ? 0 : 1);
}

Test(options, a_purge_delay_above_the_limit_warns_and_takes_the_limit) {
    int st = run_in_child(clamp_delay, NULL, msg, sizeof msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s", msg);
    cr_assert(strstr(msg, "purge_delay 3000000000 is above the limit of 1073741824 ms"), "%s", msg);
}

Test(options, report_options_turn_on_sampling_and_the_signal) {
    pm_options_t o = defaults();
    cr_assert_eq(_pm_options_parse("formats:json+pprof,dir:/var/tmp,prefix:svc", &o), 0);
    _pm_options_finish(&o);
    cr_assert_eq(o.formats, PM_FMT_JSON | PM_FMT_PPROF);
    cr_assert_eq(o.sample, 512u << 10);
    cr_assert_eq(o.signal, SIGUSR1);
    cr_assert_str_eq(o.dir, "/var/tmp");
    cr_assert_str_eq(o.prefix, "svc");

    pm_options_t quiet = defaults();
    cr_assert_eq(_pm_options_parse("stats:true,signal:off", &quiet), 0);
    _pm_options_finish(&quiet);
    cr_assert_eq(quiet.sample, 0, "no report option, no sampling");
    cr_assert_eq(quiet.signal, 0);

    pm_options_t all = defaults();
    cr_assert_eq(_pm_options_parse("sample:1,signal:SIGUSR2,formats:all,at_exit:true,leaks:on,interval:1g", &all), 0);
    _pm_options_finish(&all);
    cr_assert_eq(all.sample, 1);
    cr_assert_eq(all.signal, SIGUSR2);
    cr_assert_eq(all.formats, PM_FMT_ALL);
    cr_assert(all.at_exit && all.leaks);
    cr_assert_eq(all.interval, (size_t)1 << 30);
    cr_assert_eq(all.dir[0], 0, "defaults() has no dir: nothing was given");
}

Test(options, signals_by_name_and_number) {
    cr_assert_eq(_pm_signal_number("USR1", 4), SIGUSR1);
    cr_assert_eq(_pm_signal_number("sigusr2", 7), SIGUSR2);
    cr_assert_eq(_pm_signal_number("12", 2), 12);
    cr_assert_eq(_pm_signal_number("off", 3), 0);
    cr_assert_eq(_pm_signal_number("RTMIN+3", 7), SIGRTMIN + 3);
    /* found by fuzz_conf: a large n wrapped the int sum to SIGKILL or a fault signal, or overflowed */
    cr_assert_eq(_pm_signal_number("RTMIN+4294967271", 16), -1);
    cr_assert_eq(_pm_signal_number("RTMIN+2147483645", 16), -1);
    cr_assert_eq(_pm_signal_number("RTMIN+4294967273", 16), -1);
    cr_assert_eq(_pm_signal_number("RTMIN+99", 8), -1);
    cr_assert_eq(_pm_signal_number("KILL", 4), -1);
    cr_assert_eq(_pm_signal_number("9", 1), -1, "SIGKILL cannot be caught");
    cr_assert_eq(_pm_signal_number("11", 2), -1, "SIGSEGV is not a report trigger");
    cr_assert_eq(_pm_signal_number("USR", 3), -1);
}

Test(options, bad_report_values_warn) {
    struct { const char *conf; const char *says; } cases[] = {
        { "formats:xml", "bad value 'xml' for 'formats'" },
        { "formats:json+", "bad value 'json+' for 'formats'" },
        { "signal:KILL", "bad value 'KILL' for 'signal'" },
        { "dir:", "bad value '' for 'dir'" },
        { "interval:often", "bad value 'often' for 'interval'" },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = run_in_child(parse_bad, (void *)cases[i].conf, msg, sizeof msg);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s", cases[i].conf);
        cr_assert(strstr(msg, cases[i].says), "%s said: %s", cases[i].conf, msg);
    }
}
