/*
 * measure: run one command and report its wall time, peak RSS and page faults.
 *
 *   measure [-o FILE] [-t SECONDS] [-e NAME=VALUE]... [-u NAME]... -- PROG [ARGS...]
 *
 * The command is fork/exec'd; -e and -u change the environment of the child
 * only (so LD_PRELOAD=... never applies to measure itself).  measure waits with
 * wait4() and writes a single line to FILE (default: stderr):
 *
 *   STATUS ELAPSED_SECONDS MAXRSS_KIB MINOR_FAULTS
 *
 * STATUS is "ok" (exit 0), "exitN", "sigN" or "timeout".  Elapsed time is
 * taken with CLOCK_MONOTONIC around fork..wait4; peak RSS is ru_maxrss of the
 * child, and the faults are its ru_minflt (pages the kernel had to map in: on a
 * VM each costs microseconds, which is what freed memory handed back too early costs).  With -t the child (and its process group) is killed after SECONDS.
 * measure itself exits 0 whenever it could run the child, whatever the child
 * did; it exits 2 on usage errors and 3 if fork/exec failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: measure [-o FILE] [-t SECONDS] [-e NAME=VALUE]... "
                    "[-u NAME]... -- PROG [ARGS...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *outfile = NULL;
    unsigned timeout = 0;
    char **sets = calloc((size_t)argc, sizeof *sets);
    char **unsets = calloc((size_t)argc, sizeof *unsets);
    int nsets = 0, nunsets = 0, opt;

    if (!sets || !unsets)
        return 3;
    while ((opt = getopt(argc, argv, "+o:t:e:u:")) != -1) {
        switch (opt) {
        case 'o': outfile = optarg; break;
        case 't': timeout = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'e':
            if (!strchr(optarg, '='))
                usage();
            sets[nsets++] = optarg;
            break;
        case 'u': unsets[nunsets++] = optarg; break;
        default: usage();
        }
    }
    if (optind >= argc)
        usage();

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: wait4 must return EINTR */
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("measure: fork");
        return 3;
    }
    if (pid == 0) {
        setpgid(0, 0); /* so a timeout can kill everything it started */
        for (int i = 0; i < nunsets; i++)
            unsetenv(unsets[i]);
        for (int i = 0; i < nsets; i++) {
            char *eq = strchr(sets[i], '=');
            *eq = '\0';
            setenv(sets[i], eq + 1, 1);
        }
        execvp(argv[optind], &argv[optind]);
        fprintf(stderr, "measure: cannot run %s: %s\n", argv[optind], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also from the parent, to avoid a race with kill */
    if (timeout)
        alarm(timeout);

    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t r = wait4(pid, &status, 0, &ru);
        if (r == pid)
            break;
        if (r < 0 && errno == EINTR) {
            if (timed_out) {
                kill(-pid, SIGKILL);
                kill(pid, SIGKILL);
            }
            continue;
        }
        perror("measure: wait4");
        return 3;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);

    char st[32];
    if (timed_out)
        snprintf(st, sizeof st, "timeout");
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(st, sizeof st, "ok");
    else if (WIFEXITED(status))
        snprintf(st, sizeof st, "exit%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(st, sizeof st, "sig%d", WTERMSIG(status));
    else
        snprintf(st, sizeof st, "unknown");

    double elapsed = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    FILE *out = stderr;
    if (outfile && !(out = fopen(outfile, "w"))) {
        perror(outfile);
        return 3;
    }
    fprintf(out, "%s %.4f %ld %ld\n", st, elapsed, ru.ru_maxrss, ru.ru_minflt);
    if (out != stderr)
        fclose(out);
    return 0;
}
