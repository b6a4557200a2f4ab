/* reporter.c: when reports are written, and where.
 *
 * Triggers: the signal (POOLMALLOC_CONF signal:, USR1 by default once reports are asked for),
 * every `interval` bytes allocated (estimated from the samples, so it costs nothing unsampled),
 * exit (at_exit:true), and pm_report/pm_ctl("report.dump") on demand.
 *
 * The signal handler only sends one byte on a socket (send with MSG_NOSIGNAL|MSG_DONTWAIT: no
 * SIGPIPE, no blocking) and restores errno: that is all a handler may do while the program it
 * interrupted holds our locks. The socket pair lives on private descriptors (100 and up), and
 * every use checks that the number still is our socket, since a program may close and reuse
 * descriptors. The reporter thread, created with every signal blocked so that the signal is always
 * delivered to some other thread, reads the socket and writes the files. A burst of signals
 * coalesces: bytes that arrive during a dump are drained first, so a burst never queues up work
 * without bound.
 *
 * Files are <dir>/<prefix>.<pid>.<seq>.<ext> (seq from 1; ext txt, json, heap, folded), created
 * with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600: a report never overwrites a file or follows a
 * link someone planted. If the name is taken, seq moves on.
 *
 * fork(): the child has no reporter thread (threads do not survive fork) and shares the parent's
 * socket. The fork handler gives the child its own socket and its own thread.
 */
#define _GNU_SOURCE
#include "lens/lens.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The trigger: a socket pair on private descriptors; [0] is read by the reporter thread, [1]
 * written by the signal handler. Each use checks that the number still is our socket. */
static pm_private_fd_t trigger[2] = { { -1, 0 }, { -1, 0 } };
static pthread_t reporter;
static _Atomic bool reporter_running;
static _Atomic unsigned seq;
static _Atomic size_t interval_bytes;       /* estimated bytes allocated since the last dump */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static pm_private_fd_t exit_fd = { -1, 0 };  /* stderr, duplicated: for the leak report */

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char byte = 's';
    int fd = _pm_os_private_fd_get(&trigger[1]);  /* a daemon may have closed it and reused the number */
    if (fd >= 0) (void)!send(fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);  /* full: a dump is pending */
    errno = saved;
}

void _pm_reporter_trigger(void) { on_signal(0); }

void _pm_reporter_count(size_t est_bytes) {
    size_t every = _pm_options.interval;
    if (every == 0) return;
    size_t before = atomic_fetch_add_explicit(&interval_bytes, est_bytes, memory_order_relaxed);
    if (before / every != (before + est_bytes) / every) _pm_reporter_trigger();
}

/* Create <dir>/<prefix>.<pid>.<seq>.<ext>, never over an existing file. */
static int create_report(unsigned n, unsigned format, char *path, size_t cap) {
    pm_out_t o;
    _pm_out_init(&o, path, cap - 1, -1);
    _pm_out_printf(&o, "%s/%s.%d.%u.%s", _pm_options.dir, _pm_options.prefix, (int)getpid(), n,
                   _pm_format_ext(format));
    path[o.len] = 0;
    if (o.len >= cap - 1) { errno = ENAMETOOLONG; return -1; }
    return open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

/* One dump: every configured format under one sequence number. `paths` (may be NULL) gets the
 * file names, one per line. */
static int dump(char *paths, size_t cap) {
    pthread_mutex_lock(&dump_lock);
    int err = 0;
    unsigned formats = _pm_options.formats ? _pm_options.formats : PM_FMT_TEXT;
    size_t used = 0;
    if (paths && cap) paths[0] = 0;
    void *view = _pm_report_dump_open(&err);     /* every format from one copy of the sites */
    for (int attempt = 0; attempt < 100 && view; attempt++) {
        unsigned n = atomic_fetch_add(&seq, 1) + 1;
        bool clash = false;
        for (unsigned f = PM_FMT_TEXT; f <= PM_FMT_ALL && !clash; f <<= 1) {
            if (!(formats & f)) continue;
            char path[512];
            int fd = create_report(n, f, path, sizeof path);
            if (fd < 0) {
                if (errno == EEXIST) { clash = true; continue; }   /* try the next seq */
                err = errno;
                _pm_warn("cannot create report %s: %s", path, strerror(err));
                continue;
            }
            int werr = _pm_report_dump_write(view, fd, f, n);
            if (close(fd) != 0 && werr == 0) werr = errno;
            if (werr) { err = werr; _pm_warn("report %s is incomplete (error %d)", path, werr); }
            if (_pm_options.verbose) _pm_warn("wrote %s", path);
            if (paths) {
                size_t len = strlen(path);
                if (used + len + 2 <= cap) { memcpy(paths + used, path, len); used += len; paths[used++] = '\n'; paths[used] = 0; }
            }
        }
        if (!clash) break;
    }
    _pm_report_dump_close(view);
    atomic_store_explicit(&interval_bytes, 0, memory_order_relaxed);
    pthread_mutex_unlock(&dump_lock);
    return err;
}

int _pm_reporter_dump_now(char *paths, size_t cap) { return dump(paths, cap); }

size_t _pm_reporter_seq(void) { return atomic_load(&seq); }

static void *reporter_main(void *arg) {
    (void)arg;
    for (;;) {
        int fd = _pm_os_private_fd_get(&trigger[0]);
        if (fd < 0) break;
        char bytes[64];
        ssize_t n = recv(fd, bytes, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        while (recv(fd, bytes, sizeof bytes, MSG_DONTWAIT) > 0) {}   /* coalesce a burst */
        dump(NULL, 0);
    }
    /* The socket is gone (a daemon closed every descriptor): stop, and let pm_ctl start afresh. */
    _pm_os_private_close(&trigger[0]);
    _pm_os_private_close(&trigger[1]);
    atomic_store(&reporter_running, false);
    return NULL;
}

static void start_thread(void) {
    int err = _pm_os_private_socketpair(trigger);
    if (err) { _pm_warn("reports: cannot create the trigger socket: %s", strerror(err)); return; }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);                  /* the thread inherits "all blocked" */
    err = pthread_create(&reporter, NULL, reporter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        _pm_warn("reports: cannot start the reporter thread: %s", strerror(err));
        _pm_os_private_close(&trigger[0]);
        _pm_os_private_close(&trigger[1]);
        return;
    }
    pthread_detach(reporter);
    reporter_running = true;
}

/* Start what the options ask for; called at start-up and again when pm_ctl changes an option. */
static int handled_signal;

void _pm_reporter_start(void) {
    if (!_pm_options_reports(&_pm_options)) return;
    if (_pm_options.leaks && exit_fd.fd < 0) _pm_os_private_fd(2, &exit_fd);
    bool need_thread = _pm_options.signal != 0 || _pm_options.interval != 0;
    if (need_thread && !reporter_running) start_thread();
    if (_pm_options.signal != 0 && _pm_options.signal != handled_signal && reporter_running) {
        handled_signal = _pm_options.signal;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(_pm_options.signal, &sa, NULL) != 0)
            _pm_warn("reports: cannot install the handler for signal %d: %s", _pm_options.signal, strerror(errno));
    }
}

/* fork(): a dump in progress finishes first, so the child never inherits dump_lock held. */
void _pm_reporter_fork_prepare(void) { pthread_mutex_lock(&dump_lock); }
void _pm_reporter_fork_parent(void) { pthread_mutex_unlock(&dump_lock); }

void _pm_reporter_fork_child(void) {
    pthread_mutex_init(&dump_lock, NULL);
    if (!reporter_running) return;
    _pm_os_private_close(&trigger[0]);          /* only if they still are ours */
    _pm_os_private_close(&trigger[1]);
    reporter_running = false;
    atomic_store(&seq, 0);
    start_thread();
}

void _pm_reporter_at_exit(void) {
    if (_pm_options.at_exit) dump(NULL, 0);
    if (_pm_options.leaks) {
        int fd = exit_fd.fd >= 0 ? _pm_os_private_fd_get(&exit_fd) : 2;
        if (fd >= 0) _pm_report_leaks(fd);
    }
}
