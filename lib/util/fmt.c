/* fmt.c: printf-style formatting into a caller's fixed buffer, flushed with write(2).
 *
 * An allocator cannot call stdio while it reports on itself: stdio may allocate, and the report may
 * be about a corrupted heap. This formatter never allocates and takes no lock. It knows what our
 * reports use: %s %.*s %c %d %u %ld %lu %zu %zd %llu %x %lx %zx %p %%, with an optional '-' flag, '0'
 * flag and width. */
#define _GNU_SOURCE
#include "util/util.h"

#include <errno.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const int _pm_debug_level = PM_DEBUG;

void _pm_out_init(pm_out_t *o, char *buf, size_t cap, int fd) {
    o->buf = buf; o->cap = cap; o->len = 0; o->fd = fd; o->err = 0;
}

void _pm_out_flush(pm_out_t *o) {
    size_t done = 0;
    while (done < o->len) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n < 0 && errno == EINTR) continue;     /* a signal handler ran: the rest still goes */
        if (n <= 0) {                              /* the rest is dropped; the writer learns why */
            if (o->err == 0) o->err = n < 0 ? errno : EIO;
            break;
        }
        done += (size_t)n;
    }
    o->len = 0;
}

/* With fd < 0 the buffer is a string: what does not fit is dropped. */
static void put(pm_out_t *o, char c) {
    if (o->len == o->cap) {
        if (o->fd < 0) return;
        _pm_out_flush(o);
    }
    o->buf[o->len++] = c;
}

static void put_field(pm_out_t *o, const char *s, size_t n, int width, bool left, char pad) {
    size_t w = width > 0 ? (size_t)width : 0;
    if (!left) for (size_t i = n; i < w; i++) put(o, pad);
    for (size_t i = 0; i < n; i++) put(o, s[i]);
    if (left) for (size_t i = n; i < w; i++) put(o, ' ');
}

static void vformat(pm_out_t *o, const char *fmt, va_list ap) {
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') { put(o, *f); continue; }
        f++;
        bool left = false; char pad = ' '; int width = 0, longs = 0; bool size_mod = false;
        for (;; f++) {
            if (*f == '-') left = true;
            else if (*f == '0') pad = '0';
            else break;
        }
        while (*f >= '0' && *f <= '9') width = width * 10 + (*f++ - '0');
        int prec = -1;
        if (*f == '.') {
            f++;
            if (*f == '*') { prec = va_arg(ap, int); f++; }
            else for (prec = 0; *f >= '0' && *f <= '9'; f++) prec = prec * 10 + (*f - '0');
        }
        while (*f == 'l') { longs++; f++; }
        if (*f == 'z') { size_mod = true; f++; }
        char tmp[32]; size_t n = 0;
        unsigned long long u = 0; bool neg = false; unsigned base = 10; bool is_num = true;
        switch (*f) {
        case 'd': {
            long long v = size_mod ? (long long)va_arg(ap, ssize_t)
                        : longs ? (longs > 1 ? va_arg(ap, long long) : va_arg(ap, long)) : va_arg(ap, int);
            neg = v < 0; u = neg ? 0ull - (unsigned long long)v : (unsigned long long)v;
            break;
        }
        case 'u': case 'x':
            u = size_mod ? va_arg(ap, size_t)
              : longs ? (longs > 1 ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned long))
              : va_arg(ap, unsigned);
            base = *f == 'x' ? 16 : 10;
            break;
        case 'p':
            u = (uintptr_t)va_arg(ap, void *); base = 16;
            tmp[n++] = '0'; tmp[n++] = 'x';
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == NULL) s = "(null)";
            put_field(o, s, prec >= 0 ? strnlen(s, (size_t)prec) : strlen(s), width, left, ' ');
            is_num = false;
            break;
        }
        case 'c': tmp[0] = (char)va_arg(ap, int); put_field(o, tmp, 1, width, left, ' '); is_num = false; break;
        case '%': put(o, '%'); is_num = false; break;
        default: put(o, '%'); if (*f) put(o, *f); else f--; is_num = false; break;
        }
        if (!is_num) continue;
        char digits[24]; size_t nd = 0;
        do { digits[nd++] = "0123456789abcdef"[u % base]; u /= base; } while (u);
        if (neg) tmp[n++] = '-';
        while (nd) tmp[n++] = digits[--nd];
        put_field(o, tmp, n, width, left, pad);
    }
}

void _pm_out_printf(pm_out_t *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vformat(o, fmt, ap);
    va_end(ap);
}

void _pm_out_vprintf(pm_out_t *o, const char *fmt, va_list ap) { vformat(o, fmt, ap); }

static void say(const char *fmt, va_list ap) {
    char buf[512];
    pm_out_t o;
    _pm_out_init(&o, buf, sizeof buf, 2);
    _pm_out_printf(&o, "poolmalloc: ");
    vformat(&o, fmt, ap);
    put(&o, '\n');
    _pm_out_flush(&o);
}

void _pm_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
}

_Noreturn void _pm_fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    abort();
}

/* s as a JSON string, quoted: '<' as \u003c too, so that the JSON can sit in an HTML <script>. */
void _pm_out_json_string(pm_out_t *o, const char *s) {
    _pm_out_printf(o, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') _pm_out_printf(o, "\\%c", c);
        else if (c == '<') _pm_out_printf(o, "\\u003c");
        else if (c < 0x20) _pm_out_printf(o, "\\u%04x", c);
        else _pm_out_printf(o, "%c", c);
    }
    _pm_out_printf(o, "\"");
}
