"""why_alive(obj): "why is this object still alive?", answered with a chain of referrers.

    >>> why_alive(app.cache["users"][3].child)
    ['module global app.cache', "dict['users']", 'list[3]', 'Node.child', 'Leaf']

The chain starts at a root and ends with the type name of obj; each step in between names the
container it stands for and how the next object hangs from it:

    module global app.cache          root: sys.modules["app"].__dict__["cache"]
    local d in handler (srv.py:42)   root: the local d of a live frame (the frame's current line)
    dict['users']                    the dict's value under that key (keys shown with repr(),
    dict key 'k'                       cut to 40 characters); the dict holds it as a key
    list[3]  tuple[0]  deque[2]      the item at that index
    set member  frozenset member     a member of the set
    Node.child                       attribute child of a Node instance (its __dict__ or a slot)
    C.attr                           class attribute: the class C's own __dict__
    function f closure cell 'x'      the free variable x of function f (f -> __closure__ -> cell)
    function f.__defaults__          any C-level attribute of a builtin object (method m.__self__,
    method m.__self__                  cell contents, traceback.tb_frame, partial.args, ...)
    generator g local x              a local of a suspended generator, coroutine or dead frame
    Foo                              fallback: the container's type name, the link not named

Roots are (1) module globals: the __dict__ of a module in sys.modules; (2) frame locals: the
f_locals of every live frame on every thread's stack (sys._current_frames() and the f_back
chains), except the frames running this module's own code.

The caller's frame is a root like any other, but only through its named locals: passing obj to
why_alive puts it in why_alive's frame, which is skipped, so `why_alive(make_thing())` returns
None when nothing else holds the new object, while `t = make_thing(); why_alive(t)` returns
['local t in caller (file.py:N)', 'Thing'].  Between two chains of the same length, one from a
module global wins over one from a frame local (`x = app.x; why_alive(x)` says
"module global app.x"): a global is the lasting reason, a local the passing one.

Method: breadth-first search upwards from obj with gc.get_referrers(), one level at a time, so
the chain found is a shortest one (counted in gc referrer hops).  Each level is one
gc.get_referrers(*level) pass over the heap; a level of more than _SCAN_LEVEL objects is found
instead by one pass of gc.get_referents() over gc.get_objects(), since get_referrers compares
every edge with every object it is given.  The search keeps the objects it met in a dict keyed
by id() (so that ids stay valid), ignores its own containers and the f_locals snapshots it made,
and clears everything before returning: the result holds only strings.

Limits:
  - gc.get_referrers() sees only containers tracked by the cycle collector.  A reference held by
    C code (an extension's static, a C struct, the interpreter itself), by a running frame's
    value stack (the iterator of a for loop, a call's temporaries), or by an object the collector
    does not track is invisible.  CPython untracks dicts holding only atomic values (str, int,
    None...) and tuples of them, so `why_alive(s)` for a str s stored only in such a dict can
    return None; and a dict whose keys are all str does not show its keys to the collector
    (3.11 visits only its values), so a str held only as such a key is not found either.
    Objects moved out by gc.freeze() are invisible too.
  - None therefore means "no chain found", not "not referenced".  It also comes back when the
    search stops: at max_depth hops, or after meeting max_visited objects (that case also
    warns with a RuntimeWarning, since it says nothing about obj).
  - max_depth counts gc hops, not steps of the output: an instance whose __dict__ was
    materialized (by vars(), obj.__dict__, or an earlier why_alive that described it) is two
    hops (instance -> dict -> value), one otherwise (3.11's inline attribute values); a class
    attribute is two (class -> dict -> value) and a closure variable three.
  - Reading f_locals of an optimized frame (CPython 3.11/3.12) makes a snapshot dict that the
    frame keeps until it returns or its locals are read again (as locals() or a debugger do),
    so a local deleted after the call may stay referenced by that snapshot until then.
    Describing a chain reads vars() of the instances on it, which materializes their __dict__.
  - A live frame object is not a referrer of its locals (3.11's frame_traverse skips frames
    run by a thread), which is why the locals of live frames are read, not searched for.
  - Frames of a function that wraps why_alive outside this module are roots like any caller:
    a wrapper that binds obj to a local is what the chain will name.
  - Only the first name found is reported: the first sys.modules key of a module, the innermost
    frame of the current thread first (then the other threads by id), the first key in dict
    order.  Ties inside a level go to the object met first, which is gc list order.
"""
import collections
import gc
import os
import sys
import threading
import types
import warnings

__all__ = ["why_alive"]

_KEY_LEN = 40          # reprs of dict keys are cut to this many characters
_SCAN_LEVEL = 256      # a level bigger than this is searched with one get_referents() pass
_CO_OPTIMIZED = 0x0001  # inspect.CO_OPTIMIZED: f_locals is a snapshot, not the namespace

_FrameType = types.FrameType
_FunctionType = types.FunctionType
_CellType = types.CellType
_C_DESCRIPTORS = (types.GetSetDescriptorType, types.MemberDescriptorType)
# C-level attributes whose getter makes an object (or a snapshot) instead of returning one.
_SKIP_ATTRS = frozenset(("__dict__", "__weakref__", "f_locals", "__annotations__"))


def why_alive(obj, max_depth=64, *, max_visited=100_000):
    """A shortest chain of referrers from a root (a module global or a live frame's local) down
    to obj, as a list of strings, root first and type(obj).__name__ last; None if no chain to a
    root was found within max_depth gc hops and max_visited objects.  See the module docstring
    for the format of the steps and what the search cannot see."""
    keep = {}       # id -> object met: holds them so that ids stay valid during the search
    parent = {}     # id(referrer) -> id(the object one step nearer to obj)
    held = []       # frames, module dicts and local values read for the roots
    skip = set()    # ids of the search's own containers, ignored as referrers
    try:
        return _search(obj, max_depth, max_visited, keep, parent, held, skip)
    finally:
        keep.clear()
        parent.clear()
        held.clear()
        skip.clear()


def _search(obj, max_depth, max_visited, keep, parent, held, skip):
    skip.update((id(keep), id(held)))
    modules = _module_dicts(held)
    local_roots = _frame_locals(held, skip, modules)
    keep[id(obj)] = obj
    level = [obj]
    depth = 0
    while level:
        # Roots at this level: a module dict referring to one of its objects, else a local.
        pos = {}
        for i, x in enumerate(level):
            pos[id(x)] = i
        skip.add(id(level))
        pairs = _referrers(level, pos, skip, keep)
        skip.discard(id(level))
        best = None          # (position in level, module order, key order), key, module name
        next_level = []
        full = False
        for r, child in pairs:
            rid = id(r)
            if rid in modules:
                order, name = modules[rid]
                # every key of this module dict whose value is in the level
                for k_order, (key, value) in enumerate(list(dict.items(r))):
                    i = pos.get(id(value))
                    if i is not None:
                        rank = (i, order, k_order)
                        if best is None or rank < best[0]:
                            best = (rank, key, name)
                continue
            if depth < max_depth and not full:
                if len(keep) >= max_visited:
                    full = True
                    continue
                keep[rid] = r
                parent[rid] = id(level[child])
                next_level.append(r)
        del pairs
        if best is not None:
            (i, _, _), key, name = best
            if isinstance(key, str):
                root = "module global %s.%s" % (name, key)
            else:
                root = "module global %s[%s]" % (name, _short_repr(key))
            return _describe(root, level[i], keep, parent, obj)
        for x in level:
            found = local_roots.get(id(x))
            if found is not None:
                return _describe(found[1], x, keep, parent, obj)
        if full:
            warnings.warn("why_alive gave up after meeting %d objects (max_visited=%d)"
                          % (len(keep), max_visited), RuntimeWarning, stacklevel=3)
            return None
        level = next_level
        depth += 1
    return None


def _referrers(level, pos, skip, keep):
    """(referrer, position in level of an object it refers to) for the referrers of the objects
    of level that are neither met before nor the search's own: the smallest position when it
    refers to several."""
    pairs = []
    skip.add(id(pairs))
    try:
        if len(level) <= _SCAN_LEVEL:
            refs = gc.get_referrers(*level)
            for r in refs:
                if id(r) in skip or id(r) in keep or _own_frame(r):
                    continue
                best = None
                for x in gc.get_referents(r):
                    i = pos.get(id(x))
                    if i is not None and (best is None or i < best):
                        best = i
                if best is not None:
                    pairs.append((r, best))
            del refs
        else:
            objects = gc.get_objects()
            for r in objects:
                best = None
                for x in gc.get_referents(r):
                    i = pos.get(id(x))
                    if i is not None and (best is None or i < best):
                        best = i
                if best is None or id(r) in skip or id(r) in keep or _own_frame(r):
                    continue
                pairs.append((r, best))
            del objects
    finally:
        skip.discard(id(pairs))
    return pairs


def _own_frame(r):
    return type(r) is _FrameType and r.f_code in _OWN_CODES


def _module_dicts(held):
    """id(module.__dict__) -> (order, name) for the modules in sys.modules (first name wins)."""
    modules = {}
    for order, (name, module) in enumerate(list(sys.modules.items())):
        d = getattr(module, "__dict__", None) if isinstance(module, types.ModuleType) else None
        if type(d) is dict and id(d) not in modules:
            held.append(d)
            modules[id(d)] = (order, name)
    return modules


def _frame_locals(held, skip, modules):
    """id(value) -> (order, "local NAME in FUNCTION (FILE:LINE)") over the named locals of the
    live frames of every thread, innermost frame of this thread first, this module's frames
    left out.  The snapshot dicts that reading f_locals makes are added to skip."""
    frames = sys._current_frames()
    me = threading.get_ident()
    tops = [frames.pop(me, None) or sys._getframe()]
    tops.extend(frames[t] for t in sorted(frames))
    del frames
    roots = {}
    seen = set()
    order = 0
    for f in tops:
        while f is not None and id(f) not in seen:
            seen.add(id(f))
            held.append(f)
            code = f.f_code
            if code not in _OWN_CODES:
                f_locals = f.f_locals
                if code.co_flags & _CO_OPTIMIZED:
                    skip.add(id(f_locals))       # a snapshot: the frame's locals, not a referrer
                if id(f_locals) not in modules:  # module-level code: its globals are roots already
                    where = "in %s (%s:%s)" % (code.co_name, os.path.basename(code.co_filename),
                                               f.f_lineno)
                    held.append(f_locals)
                    for name, value in list(f_locals.items()):
                        if id(value) not in roots:
                            held.append(value)
                            roots[id(value)] = (order, "local %s %s" % (name, where))
                            order += 1
            f = f.f_back
    del tops
    return roots


# --- describing the chain found ---------------------------------------------------------------

def _describe(root, first, keep, parent, obj):
    """The output list: root, then one step per container from first down to obj, then the type
    name of obj."""
    path = [first]
    while path[-1] is not obj:
        path.append(keep[parent[id(path[-1])]])
    steps = [root]
    i = 0
    last = len(path) - 1
    while i < last:
        text, used = _step(path, i)
        steps.append(text)
        i += used
    del path
    steps.append(type(obj).__name__)
    return steps


def _step(path, i):
    """(text, how many objects of path it stands for) for how path[i + 1] hangs from path[i]."""
    c, n = path[i], path[i + 1]
    nn = path[i + 2] if i + 2 < len(path) else None
    has_nn = i + 2 < len(path)
    tname = type(c).__name__
    if isinstance(c, dict):
        for key, value in dict.items(c):
            if value is n:
                return "%s[%s]" % (tname, _short_repr(key)), 1
        for key in dict.keys(c):
            if key is n:
                return "%s key %s" % (tname, _short_repr(key)), 1
    if isinstance(c, (list, tuple)):
        for index, value in enumerate(list(list.__iter__(c) if isinstance(c, list)
                                           else tuple.__iter__(c))):
            if value is n:
                return "%s[%d]" % (tname, index), 1
    if isinstance(c, (set, frozenset)):
        return "%s member" % tname, 1
    if isinstance(c, collections.deque):
        for index, value in enumerate(c):
            if value is n:
                return "%s[%d]" % (tname, index), 1
    label = _label(c)
    # function -> __closure__ tuple -> cell -> contents: one step naming the free variable
    if (isinstance(c, _FunctionType) and n is c.__closure__ and i + 3 < len(path)
            and isinstance(nn, _CellType)):
        for index, cell in enumerate(n):
            if cell is nn:
                names = c.__code__.co_freevars
                name = names[index] if index < len(names) else str(index)
                return "%s closure cell %r" % (label, name), 3
    # class -> its own dict -> value: "C.attr"
    if isinstance(c, type) and type(n) is dict and _is_class_dict(c, n):
        if has_nn:
            return _attr_step(label, n, nn), 2
        return "%s.__dict__" % label, 1
    # instance -> __dict__ -> value, or (3.11 inline values) instance -> value: "Node.attr"
    d = _instance_dict(c)
    if d is not None:
        if d is n:
            if has_nn:
                return _attr_step(label, d, nn), 2
            return "%s.__dict__" % label, 1
        for key, value in dict.items(d):
            if value is n:
                return _attr_name(label, key), 1
    # a local of a suspended generator / coroutine, or of a frame no thread runs any more
    frame = c if isinstance(c, _FrameType) else _gen_frame(c)
    if frame is not None:
        try:
            for name, value in frame.f_locals.items():
                if value is n:
                    return "%s local %s" % (label, name), 1
        except Exception:
            pass
    # slots and other C-level attributes (method __self__, cell_contents, tb_frame, ...)
    name = _c_attr(c, n)
    if name is not None:
        return "%s.%s" % (label, name), 1
    return label, 1


def _label(c):
    """How a container is named in a step: its type name, qualified for a few kinds."""
    if isinstance(c, type):
        return _name(c, "?")
    if isinstance(c, _FunctionType):
        return "function %s" % _name(c, "?")
    if isinstance(c, types.MethodType):
        return "method %s" % _name(c, "?")
    if isinstance(c, types.ModuleType):
        return "module %s" % _name(c, "?")
    if isinstance(c, _FrameType):
        code = c.f_code
        return "frame %s (%s:%s)" % (code.co_name, os.path.basename(code.co_filename),
                                     c.f_lineno)
    if isinstance(c, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return "%s %s" % (type(c).__name__, _name(c, "?"))
    return type(c).__name__


def _name(c, default):
    try:
        name = c.__name__
    except Exception:
        return default
    return name if isinstance(name, str) else default


def _attr_step(label, d, value):
    for key, v in dict.items(d):
        if v is value:
            return _attr_name(label, key)
    return "%s.__dict__" % label


def _attr_name(label, key):
    if isinstance(key, str) and key.isidentifier():
        return "%s.%s" % (label, key)
    return "%s.__dict__[%s]" % (label, _short_repr(key))


def _is_class_dict(cls, d):
    """True if d is the dict a class keeps its attributes in (cls.__dict__ is a proxy of it)."""
    try:
        proxy = type.__dict__["__dict__"].__get__(cls)
    except Exception:
        return False
    return any(x is d for x in gc.get_referents(proxy))


def _instance_dict(c):
    """The instance's __dict__ without running its class's code, or None."""
    if isinstance(c, type):
        return None
    try:
        d = object.__getattribute__(c, "__dict__")
    except Exception:
        return None
    return d if isinstance(d, dict) else None


def _gen_frame(c):
    """The frame of a generator, coroutine or async generator not finished yet, or None."""
    if isinstance(c, types.GeneratorType):
        frame = c.gi_frame
    elif isinstance(c, types.CoroutineType):
        frame = c.cr_frame
    elif isinstance(c, types.AsyncGeneratorType):
        frame = c.ag_frame
    else:
        return None
    return frame if isinstance(frame, _FrameType) else None


def _c_attr(c, n):
    """The name of a C-level attribute (slot, member or getset) of c that is n, or None."""
    for klass in type(c).__mro__:
        for name, desc in list(vars(klass).items()):
            if name in _SKIP_ATTRS or not isinstance(desc, _C_DESCRIPTORS):
                continue
            try:
                value = desc.__get__(c, type(c))
            except Exception:
                continue
            if value is n:
                return name
    return None


def _short_repr(x):
    try:
        text = repr(x)
    except Exception:
        text = "<%s object>" % type(x).__name__
    if len(text) > _KEY_LEN:
        text = text[:_KEY_LEN - 3] + "..."
    return text


def _codes(namespace):
    """The code objects of this module's functions and of everything nested in them."""
    out = set()
    todo = [v.__code__ for v in namespace.values() if isinstance(v, _FunctionType)]
    while todo:
        code = todo.pop()
        if code not in out:
            out.add(code)
            todo.extend(k for k in code.co_consts if isinstance(k, types.CodeType))
    return frozenset(out)


_OWN_CODES = _codes(globals())
