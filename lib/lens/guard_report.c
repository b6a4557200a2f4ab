/* guard_report.c: what a fault on a guarded slot prints (guarded sampling, POOLMALLOC_CONF
 * guard:N; the slots are heap/guard.c's).
 *
 * With guard on, start-up (_pm_lens_start) installs one handler for SIGSEGV and SIGBUS, keeping
 * the actions it replaces. A fault the kernel raised (si_code > 0) at an address inside the
 * guarded region is ours: the handler writes a report to stderr (what the access hit, where, the
 * block, and the stacks of the access, of the block's malloc and, once freed, of its free), puts
 * back the default action and returns, so the access faults again and the process dies of the
 * signal as it would have without us (with its core dump). Every other fault goes to the
 * program's own handler as if we were not there: its sa_sigaction or sa_handler, with its mask;
 * for SIG_DFL (and SIG_IGN, which the kernel does not honour for a fault either) the default
 * action comes back and the signal fires again. A program that installs its own handler later
 * replaces ours, and then sees guard faults as plain SIGSEGVs.
 *
 * The report is formatted into a stack buffer and written with write(2), and nothing here calls
 * malloc. Naming the frames takes dladdr (the loader's lock) and libunwind's ELF reader, which a
 * signal handler should not: the process is about to die, and a report without names would be
 * of little use. The slot records are read without a lock (the faulting thread may hold it).
 * When two threads fault at once, the second waits for the first to end the process.
 */
#define _GNU_SOURCE
#include "lens/lens.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#define ACCESS_FRAMES 32

static struct sigaction previous[2];          /* SIGSEGV's and SIGBUS's, as we found them */
static _Atomic int installed, reporting;

static const char *const kind_names[] = {
    [PM_GUARD_PAGE] = "guard page", [PM_GUARD_OVERFLOW] = "heap-buffer-overflow",
    [PM_GUARD_UNDERFLOW] = "heap-buffer-underflow", [PM_GUARD_USE_AFTER_FREE] = "use-after-free",
};

static void default_action(int sig) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
}

/* The faulting instruction and, on x86-64, whether it wrote (the page fault's error code). */
static void *fault_pc(const void *ctx, const char **access) {
    const ucontext_t *uc = ctx;
    *access = "access";
#if defined(__x86_64__)
    *access = (uc->uc_mcontext.gregs[REG_ERR] & 2) ? "write" : "read";
    return (void *)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (void *)uc->uc_mcontext.pc;
#else
    (void)uc;
    return NULL;
#endif
}

static void report(int sig, const uint8_t *addr, const pm_guard_fault_t *f, const void *ctx) {
    char buf[1024];                           /* small: the handler may run on a program's altstack */
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, 2);
    const char *access;
    void *pc = fault_pc(ctx, &access);
    _pm_out_printf(&o, "poolmalloc: guard: %s: %s of address %p", kind_names[f->kind], access, (const void *)addr);
    if (f->block) {
        long offset = (long)(addr - f->block);
        const char *freed = f->freed ? "freed " : "";
        if (f->kind == PM_GUARD_OVERFLOW)
            _pm_out_printf(&o, ", %ld bytes past the end of the %s%zu-byte block %p", (long)(addr - f->block - f->size),
                           freed, f->size, (const void *)f->block);
        else if (f->kind == PM_GUARD_UNDERFLOW)
            _pm_out_printf(&o, ", %ld bytes before the %s%zu-byte block %p", -offset, freed, f->size, (const void *)f->block);
        else
            _pm_out_printf(&o, ", inside the %s%zu-byte block %p", freed, f->size, (const void *)f->block);
        _pm_out_printf(&o, " (offset %ld)\n", offset);
    } else {
        _pm_out_printf(&o, " (no guarded block near it)\n");
    }
    /* The access: the interrupted frames, from the faulting instruction on (libunwind steps
     * through the signal frame). The handler's own frames come first and are skipped. */
    void *frames[ACCESS_FRAMES + 8];
    int n = unw_backtrace(frames, ACCESS_FRAMES + 8), start = -1;
    for (int i = 0; i < n && pc; i++) if (frames[i] == pc) { start = i; break; }
    _pm_out_printf(&o, "poolmalloc: guard: the %s (%s):\n", access, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    if (start >= 0) _pm_report_frames(&o, frames + start, (unsigned)(n - start < ACCESS_FRAMES ? n - start : ACCESS_FRAMES));
    else if (pc) _pm_report_frames(&o, &pc, 1);
    if (f->block) {
        _pm_out_printf(&o, "poolmalloc: guard: the block was allocated at:\n");
        _pm_report_frames(&o, f->alloc_frames, f->nalloc);
        if (f->freed) {
            _pm_out_printf(&o, "poolmalloc: guard: and freed at:\n");
            _pm_report_frames(&o, f->free_frames, f->nfree);
        }
    }
    _pm_out_flush(&o);
}

/* A fault that is not ours, to the action the program had. Its mask applies while it runs; the
 * kernel restores ours when this handler returns. */
static void chain(int sig, siginfo_t *info, void *ctx, struct sigaction *prev) {
    struct sigaction act = *prev;
    if (act.sa_flags & SA_RESETHAND) {        /* a one-shot handler: the next fault is the default's */
        prev->sa_handler = SIG_DFL;
        prev->sa_flags = 0;
    }
    if (act.sa_handler == SIG_IGN && info->si_code <= 0) return;   /* sent by kill(): ignored, as it was */
    if (act.sa_handler == SIG_DFL || act.sa_handler == SIG_IGN) {     /* a real fault cannot be ignored */
        default_action(sig);
        if (info->si_code <= 0) raise(sig);   /* sent by kill(): it does not fire again by itself */
        return;
    }
    /* The mask the kernel would have set for that handler: the one at the signal, its sa_mask,
     * and the signal itself unless it asked for SA_NODEFER (a handler that longjmps out keeps it). */
    sigset_t mask = ((const ucontext_t *)ctx)->uc_sigmask;
    for (int s = 1; s < NSIG; s++) if (sigismember(&act.sa_mask, s) == 1) sigaddset(&mask, s);
    if (act.sa_flags & SA_NODEFER) sigdelset(&mask, sig);
    else sigaddset(&mask, sig);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (act.sa_flags & SA_SIGINFO) act.sa_sigaction(sig, info, ctx);
    else act.sa_handler(sig);
}

static void on_fault(int sig, siginfo_t *info, void *ctx) {
    int saved = errno;
    const void *addr = info->si_addr;
    if (info->si_code > 0 && _pm_is_guard_ptr(addr)) {
        pm_guard_fault_t f;
        if (_pm_guard_describe(addr, &f)) {
            int expected = 0;
            if (!atomic_compare_exchange_strong(&reporting, &expected, 1))
                for (;;) pause();             /* another thread is reporting; its fault ends us */
            report(sig, addr, &f, ctx);
            default_action(sig);
            /* The access would fault again, fatally, unless another thread reopened the slot
             * meanwhile: the signal, pending until this handler returns, ends the process anyway. */
            raise(sig);
            errno = saved;
            return;
        }
    }
    chain(sig, info, ctx, &previous[sig == SIGSEGV ? 0 : 1]);
    errno = saved;
}

void _pm_guard_report_start(void) {
    if (atomic_load_explicit(&installed, memory_order_acquire)) return;   /* at every guarded block */
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return;
    /* Read the program's actions first, so that a fault between the two calls finds them. */
    sigaction(SIGSEGV, NULL, &previous[0]);
    sigaction(SIGBUS, NULL, &previous[1]);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    /* On an alternate stack only if the program's handler asked for one: the program's handler,
     * chained from ours, must run on the stack it expects. */
    sa.sa_flags = SA_SIGINFO | (previous[0].sa_flags & SA_ONSTACK);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}
