/* _poolmalloc.c: the CPython extension behind `python3 -m poolmalloc` (python/poolmalloc/).
 *
 * It links the static library (build/libpoolmalloc.a, its names kept local to this module), so
 * loading it brings a whole poolmalloc into the process, without LD_PRELOAD: the options come from
 * POOLMALLOC_CONF when the module loads (the runner sets it first), and the library's constructor
 * starts the reporter and its signal, as in a preloaded program.
 *
 *   install()      poolmalloc serves the three PyMem domains (raw, mem, object). CPython allows
 *                  a new allocator after start-up only if it wraps the old one: blocks that the
 *                  old allocator (pymalloc) handed out before the switch are freed and resized
 *                  through it; pm_owns tells the two apart (one load for our pooled blocks). It
 *                  also registers the Python frame source and CPython's collector.
 *   Python frames  at each sampled allocation (about one per `sample` bytes) the library asks
 *                  py_frames for the Python stack of the allocating thread, if it holds the GIL.
 *                  CPython 3.11 keeps its frames in _PyInterpreterFrame records: they are walked
 *                  as tracemalloc walks them, without creating frame objects (a frame object would
 *                  be an allocation from inside an allocation). Each (code, line) is interned in
 *                  the library once (pm_frame_intern) and cached here, the code object kept alive
 *                  by the cache so that its address names it for good.
 *   gc_callback    CPython's collections, timed between gc.callbacks' "start" and "stop", go to
 *                  the heap reports' gc section as collector "cpython" (pm_gc_external_record).
 *   stats(), report(), the rest: the library's pm_stats_get, pm_report and pm_ctl.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030C0000
#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
#undef Py_BUILD_CORE
#define PM_PY_INTERNAL_FRAMES 1
#endif

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "poolmalloc.h"
#include "poolmalloc/gc.h"
/* The heap's inline fast paths (lib/heap/heap.h), so that PyObject_Malloc and PyObject_Free cost
 * what malloc and free cost a preloaded program, with no call between them. The module is built
 * from the same tree as the archive it links, so their private layout agrees. */
#include "heap/heap.h"

/* ---- the three domains ---------------------------------------------------------------------- */

static PyMemAllocatorEx old_alloc[3];            /* raw, mem, obj: what served them before */
static int installed;

/* CPython asks for 0 bytes and expects a unique pointer it may resize: give it one byte, as its
 * own raw allocator does. */
static void *dom_malloc(void *ctx, size_t n) { (void)ctx; return _pm_malloc_at(n ? n : 1, PM_CALLER); }
static void *dom_calloc(void *ctx, size_t count, size_t size) {
    (void)ctx;
    if (count == 0 || size == 0) count = size = 1;
    return pm_calloc(count, size);
}
static void *dom_realloc(void *ctx, void *p, size_t n) {
    if (p == NULL || pm_owns(p)) return pm_realloc(p, n ? n : 1);
    const PyMemAllocatorEx *old = ctx;           /* a block from before the switch stays there */
    return old->realloc(old->ctx, p, n);
}
/* A pooled block we handed out, told with the map, the slot and one multiply: the free goes inline.
 * A pointer into one of our blocks that is not its start was handed out by an allocator in front
 * of ours (CPython's debug hooks give block + 16 of a block they took from the raw domain): it
 * is the old allocator's. Everything else (zero-size, guarded, huge, hardened) asks pm_owns. */
static void dom_free(void *ctx, void *p) {
    uintptr_t i = (uintptr_t)p >> PM_ARENA_SHIFT;
    if (PM_LIKELY(i < sizeof _pm_arena_map && _pm_arena_map[i] == PM_MAP_ARENA && !_pm_hardened) &&
        PM_LIKELY(_pm_pool_is_block_start(_pm_pool_of(p), p))) {
        _pm_free(p);
        return;
    }
    if (p == NULL) return;
    if (pm_owns(p)) { pm_free(p); return; }
    const PyMemAllocatorEx *old = ctx;
    old->free(old->ctx, p);
}

/* ---- Python frames -------------------------------------------------------------------------- */

#define CACHE_BITS 16
#define CACHE_SIZE (1u << CACHE_BITS)
/* (code, line) -> id, under the GIL. No reference is held (that kept every sampled code object
 * and its constants alive for good): a slot also records the code's name and file objects and
 * their hashes, so that a new code object at a freed one's address is told apart; one with the
 * same names and line gets the same id anyway. */
typedef struct { PyCodeObject *code; PyObject *name, *file; Py_hash_t name_hash, file_hash; int line; uint64_t id; } cache_slot_t;
static cache_slot_t frame_cache[CACHE_SIZE];

static const char *utf8_or(PyObject *s, const char *dflt) {
    if (s == NULL || !PyUnicode_Check(s)) return dflt;
    const char *u = PyUnicode_AsUTF8(s);        /* compact ASCII: no allocation */
    if (u == NULL) { PyErr_Clear(); return dflt; }
    return u;
}

static Py_hash_t str_hash(PyObject *s) {         /* a str caches its hash: no allocation */
    Py_hash_t h = s && PyUnicode_Check(s) ? PyObject_Hash(s) : 0;
    if (h == -1) PyErr_Clear();
    return h;
}

/* The caller saved the error indicator (py_frames). */
static uint64_t frame_id(PyCodeObject *code, int line) {
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *name = code->co_qualname;
#else
    PyObject *name = code->co_name;
#endif
    PyObject *file = code->co_filename;
    uintptr_t h = ((uintptr_t)code >> 4) * 0x9e3779b97f4a7c15u ^ (uintptr_t)(unsigned)line * 0xc2b2ae3d27d4eb4fu;
    unsigned home = (unsigned)(h >> (64 - CACHE_BITS)), i = home;
    Py_hash_t nh = str_hash(name), fh = str_hash(file);
    for (unsigned probe = 0; probe < 4; probe++, i = (i + 1) & (CACHE_SIZE - 1)) {
        cache_slot_t *s = &frame_cache[i];
        if (s->code == code && s->line == line && s->name == name && s->file == file && s->name_hash == nh &&
            s->file_hash == fh)
            return s->id;
    }
    uint64_t id = pm_frame_intern(utf8_or(name, "?"), utf8_or(file, "?"), line > 0 ? (unsigned)line : 0);
    if (id == 0) return 0;
    /* into the first free slot of the probe run, else over the home slot (a stale entry is
     * harmless: it is checked before use) */
    cache_slot_t *s = &frame_cache[home];
    for (unsigned probe = 0, j = home; probe < 4; probe++, j = (j + 1) & (CACHE_SIZE - 1))
        if (frame_cache[j].code == NULL) { s = &frame_cache[j]; break; }
    *s = (cache_slot_t){ code, name, file, nh, fh, line, id };
    return id;
}

/* The runner's own frames (python3 -m poolmalloc run) are not the program's: the stack is cut at
 * root_code, the runner's function that starts the program, and at the runpy frames inside it. */
static PyObject *root_code;

static int is_runpy(PyCodeObject *code) {
    const char *file = utf8_or(code->co_filename, "");
    size_t n = strlen(file);
    return strcmp(file, "<frozen runpy>") == 0 || (n >= 8 && strcmp(file + n - 8, "runpy.py") == 0);
}

/* The thread state of this thread if it holds the GIL, else NULL. PyGILState_Check says 1 for
 * every thread once a subinterpreter exists, so it cannot tell: the thread state that holds the
 * GIL is compared with this thread. Only the main interpreter's threads are walked: the frame
 * cache must not outlive a subinterpreter's code objects' names. */
static PyThreadState *gil_holder(void) {
    PyThreadState *ts = _PyThreadState_UncheckedGet();
    if (ts == NULL || ts->thread_id != PyThread_get_thread_ident()) return NULL;
    return ts->interp == PyInterpreterState_Main() ? ts : NULL;
}

static unsigned walk(PyThreadState *ts, uint64_t *ids, unsigned max);

static unsigned py_frames(uint64_t *ids, unsigned max) {
    if (!installed) return 0;
    PyThreadState *ts = gil_holder();              /* NULL: a raw allocation without the GIL */
    if (ts == NULL) return 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);             /* an allocation must not touch the error state */
    unsigned n = walk(ts, ids, max);
    PyErr_Restore(type, value, tb);
    return n;
}

static unsigned walk(PyThreadState *ts, uint64_t *ids, unsigned max) {
    unsigned n = 0;
#ifdef PM_PY_INTERNAL_FRAMES
    _PyInterpreterFrame *top = ts->cframe ? ts->cframe->current_frame : NULL;
    /* How many frames are the program's: up to the runner's, less the runpy frames inside it.
     * Only the first max + 8 are looked at: in a deeper stack the runner's frames are past the
     * ones kept anyway (and a walk to the bottom at every sample would cost O(depth)). */
    unsigned keep = UINT_MAX;
    if (root_code) {
        unsigned depth = 0, program = 0;
        for (_PyInterpreterFrame *f = top; f && depth < max + 8; f = f->previous) {
            if (_PyFrame_IsIncomplete(f)) continue;
            if ((PyObject *)f->f_code == root_code) { keep = program; break; }
            depth++;
            if (!is_runpy(f->f_code)) program = depth;
        }
    }
    for (_PyInterpreterFrame *f = top; f && n < max && n < keep; f = f->previous) {
        if (_PyFrame_IsIncomplete(f)) continue;
        PyCodeObject *code = f->f_code;
        int line = PyCode_Addr2Line(code, _PyInterpreterFrame_LASTI(f) * (int)sizeof(_Py_CODEUNIT));
        uint64_t id = frame_id(code, line);
        if (id) ids[n++] = id;
        else keep--;                                /* a frame not interned still counts */
    }
#else
    /* Other versions: the public API, which creates frame objects (sampling is suspended on this
     * thread meanwhile, so their allocation is not sampled in turn). */
    PyFrameObject *f = PyThreadState_GetFrame(ts);
    while (f && n < max) {
        PyCodeObject *code = PyFrame_GetCode(f);
        uint64_t id = frame_id(code, PyFrame_GetLineNumber(f));
        Py_DECREF(code);
        if (id) ids[n++] = id;
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
#endif
    return n;
}

/* ---- CPython's collector --------------------------------------------------------------------- */

static pm_gc_external *cpython_gc;
static uint64_t gc_started_ns[3];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static long dict_long(PyObject *d, const char *key) {
    PyObject *v = PyDict_Check(d) ? PyDict_GetItemString(d, key) : NULL;   /* borrowed */
    long x = v && PyLong_Check(v) ? PyLong_AsLong(v) : 0;
    if (x == -1 && PyErr_Occurred()) { PyErr_Clear(); x = 0; }
    return x;
}

/* gc.callbacks calls it with ("start" or "stop", {"generation": g, "collected": n, ...}). */
static PyObject *gc_callback(PyObject *self, PyObject *args) {
    (void)self;
    const char *phase;
    PyObject *info;
    if (!PyArg_ParseTuple(args, "sO:gc_callback", &phase, &info)) return NULL;
    long gen = dict_long(info, "generation");
    if (cpython_gc && gen >= 0 && gen < 3) {
        if (strcmp(phase, "start") == 0) {
            gc_started_ns[gen] = now_ns();
        } else if (strcmp(phase, "stop") == 0 && gc_started_ns[gen]) {
            uint64_t pause = now_ns() - gc_started_ns[gen];
            gc_started_ns[gen] = 0;
            pm_gc_external_record(cpython_gc, (int)gen, (size_t)dict_long(info, "collected"),
                                  (size_t)dict_long(info, "uncollectable"), pause);
        }
    }
    Py_RETURN_NONE;
}

/* ---- the module's functions ------------------------------------------------------------------ */

static PyObject *install(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *root = NULL;
    int python_stacks = 1;
    if (!PyArg_ParseTuple(args, "|Op:install", &root, &python_stacks)) return NULL;
    if (root && root != Py_None) {
        if (!PyCode_Check(root)) return PyErr_Format(PyExc_TypeError, "install(): root must be a code object");
        Py_INCREF(root);
        Py_XSETREF(root_code, root);
    }
    if (installed) Py_RETURN_FALSE;
    static const PyMemAllocatorDomain domains[3] = { PYMEM_DOMAIN_RAW, PYMEM_DOMAIN_MEM, PYMEM_DOMAIN_OBJ };
    if (cpython_gc == NULL) cpython_gc = pm_gc_external_new("cpython");
    for (int i = 0; i < 3; i++) {
        PyMem_GetAllocator(domains[i], &old_alloc[i]);
        PyMemAllocatorEx ours = { &old_alloc[i], dom_malloc, dom_calloc, dom_realloc, dom_free };
        PyMem_SetAllocator(domains[i], &ours);
    }
    installed = 1;
    if (python_stacks) pm_set_frame_source(py_frames, "python", "_PyEval_EvalFrameDefault");
    Py_RETURN_TRUE;
}

static PyObject *is_installed(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return PyBool_FromLong(installed);
}

static int put(PyObject *d, const char *key, size_t v) {
    PyObject *x = PyLong_FromSize_t(v);
    int r = x ? PyDict_SetItemString(d, key, x) : -1;
    Py_XDECREF(x);
    return r;
}

static PyObject *stats(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    pm_stats_t s;
    Py_BEGIN_ALLOW_THREADS
    pm_stats_get(&s);
    Py_END_ALLOW_THREADS
    size_t rate = 0, len = sizeof rate;
    if (pm_ctl("sample.rate", &rate, &len, NULL, 0) != 0) rate = 0;
    PyObject *d = PyDict_New();
    if (d == NULL) return NULL;
    if (put(d, "mapped", s.mapped) || put(d, "in_use", s.in_use) || put(d, "free", s.free) ||
        put(d, "overhead", s.overhead) || put(d, "arenas", s.arenas) || put(d, "huge_blocks", s.huge_blocks) ||
        put(d, "resident", s.resident) || put(d, "decaying", s.decaying) || put(d, "returned", s.returned) ||
        put(d, "sample_rate", rate) || PyDict_SetItemString(d, "serving_python", installed ? Py_True : Py_False)) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* report(path_or_fd, format="json"): the heap report, now, in any of the library's formats. */
static PyObject *report(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *names[] = { "path_or_fd", "format", NULL };
    PyObject *where;
    const char *format = "json";
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|s:report", names, &where, &format)) return NULL;
    unsigned bit = _pm_format_named(format, strlen(format));   /* the library's own list */
    if (bit == 0 || bit == PM_FMT_ALL) {
        char known[128] = "";
        for (unsigned i = 0; i < PM_NFORMATS; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", _pm_formats[i].name);
        return PyErr_Format(PyExc_ValueError, "report(): unknown format '%s' (%s)", format, known);
    }
    int fd, close_it = 0;
    if (PyBool_Check(where)) {
        return PyErr_Format(PyExc_TypeError, "report(): path_or_fd must be a path or a file descriptor, not bool");
    } else if (PyLong_Check(where)) {
        long v = PyLong_AsLong(where);
        if (v == -1 && PyErr_Occurred()) return NULL;
        if (v < 0 || v > INT_MAX) return PyErr_Format(PyExc_ValueError, "report(): %ld is not a file descriptor", v);
        fd = (int)v;
    } else {
        PyObject *bytes;
        if (!PyUnicode_FSConverter(where, &bytes)) return NULL;
        Py_BEGIN_ALLOW_THREADS
        fd = open(PyBytes_AS_STRING(bytes), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        Py_END_ALLOW_THREADS
        if (fd < 0) {
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, where);
            Py_DECREF(bytes);
            return NULL;
        }
        Py_DECREF(bytes);
        close_it = 1;
    }
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = pm_report(fd, format);
    if (close_it && close(fd) != 0 && err == 0) err = errno;
    Py_END_ALLOW_THREADS
    if (err) { errno = err; return PyErr_SetFromErrno(PyExc_OSError); }   /* EBADF, EPIPE, ENOSPC... */
    Py_RETURN_NONE;
}

/* ctl(name[, value]): pm_ctl for the settings that are text or size_t, as in the C API. */
static PyObject *ctl(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    PyObject *value = NULL;
    if (!PyArg_ParseTuple(args, "s|O:ctl", &name, &value)) return NULL;
    int err;
    if (strncmp(name, "opt.", 4) == 0 || strcmp(name, "report.dump") == 0) {
        char old[4096] = "";
        size_t len = sizeof old - 1;
        const char *nv = NULL;
        if (value && value != Py_None && (nv = PyUnicode_AsUTF8(value)) == NULL) return NULL;
        Py_BEGIN_ALLOW_THREADS
        err = pm_ctl(name, old, &len, nv, nv ? strlen(nv) : 0);
        Py_END_ALLOW_THREADS
        if (err) { errno = err; return PyErr_SetFromErrno(PyExc_OSError); }
        old[len < sizeof old ? len : sizeof old - 1] = 0;
        return PyUnicode_FromString(old);
    }
    size_t old = 0, len = sizeof old, nv = 0;
    if (value && value != Py_None) {
        nv = PyLong_AsSize_t(value);
        if (nv == (size_t)-1 && PyErr_Occurred()) return NULL;
    }
    err = pm_ctl(name, &old, &len, value && value != Py_None ? &nv : NULL, value && value != Py_None ? sizeof nv : 0);
    if (err) { errno = err; return PyErr_SetFromErrno(PyExc_OSError); }
    return PyLong_FromSize_t(old);
}

static PyObject *trim(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    size_t n;
    Py_BEGIN_ALLOW_THREADS
    n = pm_trim();
    Py_END_ALLOW_THREADS
    return PyLong_FromSize_t(n);
}

static PyMethodDef methods[] = {
    { "install", install, METH_VARARGS, "install(root=None, python_stacks=True)\n--\n\nServe the raw, mem and object "
                                        "domains from poolmalloc; False if it already does. Python stacks stop at the code "
                                        "object root." },
    { "installed", is_installed, METH_NOARGS, "installed()\n--\n\nTrue once install() ran." },
    { "stats", stats, METH_NOARGS, "stats()\n--\n\nThe allocator's totals, as a dict of ints." },
    { "report", (PyCFunction)(void (*)(void))report, METH_VARARGS | METH_KEYWORDS,
      "report(path_or_fd, format='json')\n--\n\nWrite a heap report now: text, json, pprof or folded." },
    { "ctl", ctl, METH_VARARGS, "ctl(name, value=None)\n--\n\npm_ctl: read a setting, or set it and get the old one." },
    { "trim", trim, METH_NOARGS, "trim()\n--\n\nReturn free memory to the OS now; the bytes released." },
    { "gc_callback", gc_callback, METH_VARARGS, "gc_callback(phase, info)\n--\n\nFor gc.callbacks: CPython's "
                                                "collections into the heap reports." },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_poolmalloc", "poolmalloc serving CPython's allocator domains (see poolmalloc).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__poolmalloc(void) { return PyModule_Create(&module); }
