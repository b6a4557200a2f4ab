"""poolmalloc for Python programs: CPython's three allocator domains served by poolmalloc,
with Python-level allocation sites and CPython's collector in the heap reports.

    python3 -m poolmalloc run [--sample SIZE] [--dir DIR] [--formats LIST] [--signal SIG] script.py args...

runs a script with poolmalloc serving PyMem's raw, mem and object domains (no PYTHONMALLOC, no
LD_PRELOAD); `kill -USR1 <pid>` then writes the heap report. Inside the program:

    import poolmalloc
    poolmalloc.stats()                    # the allocator's totals, a dict
    poolmalloc.report("heap.json")        # a heap report now (format="text", "pprof", "folded")
    poolmalloc.why_alive(obj)             # a chain of referrers from a module global or a local

The C extension (_poolmalloc) holds a whole poolmalloc, whose options come from POOLMALLOC_CONF
when it loads: it is loaded on first use, so that the runner can set them first.
"""
import gc as _gc

__all__ = ["install", "installed", "stats", "report", "ctl", "trim", "why_alive"]

_ext = None


def _load():
    global _ext
    if _ext is None:
        from . import _poolmalloc
        _ext = _poolmalloc
    return _ext


def __getattr__(name):
    # why_alive (poolmalloc/_why.py) loads on first use: a program that never asks pays nothing,
    # and no wrapper frame of ours holds the object it is asked about
    if name == "why_alive":
        from ._why import why_alive
        globals()["why_alive"] = why_alive
        return why_alive
    raise AttributeError("module 'poolmalloc' has no attribute %r" % name)


def install(_root=None, python_stacks=True):
    """Serve the raw, mem and object domains from poolmalloc from now on, record Python frames
    at sampled allocations, and CPython's collections for the heap reports. Blocks allocated
    before stay with the allocator that made them. python_stacks=False samples native stacks
    only. Returns False if already installed."""
    ext = _load()
    # tracemalloc, when it stops (at exit at the latest), puts back the allocator it saw when it
    # started: started before us, it would take poolmalloc out from under the blocks it handed
    # out. So it is stopped, and started again on top of poolmalloc (its traces so far are lost).
    import tracemalloc
    frames = tracemalloc.get_traceback_limit() if tracemalloc.is_tracing() and not ext.installed() else 0
    if frames:
        tracemalloc.stop()
    done = ext.install(_root, python_stacks)
    if frames:
        tracemalloc.start(frames)
    if done and ext.gc_callback not in _gc.callbacks:
        _gc.callbacks.append(ext.gc_callback)
    return done


def installed():
    """True once install() ran in this process."""
    return _ext is not None and _ext.installed()


def stats():
    """The allocator's totals: mapped, in_use, free, overhead, arenas, huge_blocks, resident,
    decaying, returned (bytes or counts), sample_rate, and serving_python."""
    return _load().stats()


def report(path_or_fd, format="json"):
    """Write a heap report now to a path or an open file descriptor: format "text", "json",
    "pprof" or "folded"."""
    return _load().report(path_or_fd, format)


def ctl(name, value=None):
    """pm_ctl: read a setting ("opt.sample", "sample.rate", "stats.live_bytes", ...), or set it to
    value and get the old one (docs/api.md)."""
    return _load().ctl(name, value)


def trim():
    """Give free memory back to the OS now; returns the bytes released."""
    return _load().trim()
