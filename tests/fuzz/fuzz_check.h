/* fuzz_check.h: how the fuzz targets fail. CHECK(cond, fmt, ...) writes one line, "file:line:
 * message", with write(2) (the heap may be what is broken) to FUZZ_CHECK_FD, then aborts, which
 * libFuzzer records as a crash with its input. A target defines FUZZ_CHECK_FD before it includes
 * this file when stderr is closed under it (fuzz_conf runs with -close_fd_mask=2). */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FUZZ_CHECK_FD
#define FUZZ_CHECK_FD 2
#endif

static void __attribute__((noreturn, format(printf, 3, 4))) fuzz_fail(const char *file, int line, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(buf, sizeof buf, "%s:%d: ", file, line);
    if (n > 0 && (size_t)n < sizeof buf) vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(buf);
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len] = '\n';
    if (write(FUZZ_CHECK_FD, buf, len + 1) < 0) { /* nothing more to say */ }
    abort();
}
#define CHECK(cond, ...) do { if (!(cond)) fuzz_fail(__FILE_NAME__, __LINE__, __VA_ARGS__); } while (0)
#endif
