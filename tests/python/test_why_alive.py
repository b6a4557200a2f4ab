"""Tests of poolmalloc.why_alive (python/poolmalloc/_why.py): exact chains of referrers.

Run from the repository root with either of
    /usr/bin/python3 -m unittest tests/python/test_why_alive.py
    /usr/bin/python3 tests/python/test_why_alive.py

Each test builds its objects inside a helper function that returns nothing (or a weakref), so
that no local of the test holds them and the only roots are the ones the test means: a
temporary module registered as sys.modules["app"], or a named local of a frame.
"""
import collections
import gc
import importlib.util
import os
import re
import sys
import threading
import types
import unittest
import weakref

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(_HERE))
_PYDIR = os.path.join(_REPO, "python")
_THIS_FILE = os.path.basename(__file__)


def _load_why_alive():
    """poolmalloc.why_alive from the package when it imports and has it, else the module file
    python/poolmalloc/_why.py loaded on its own (before the package's __init__.py exists)."""
    if _PYDIR not in sys.path:
        sys.path.insert(0, _PYDIR)
    try:
        import poolmalloc
        fn = getattr(poolmalloc, "why_alive", None)
        if fn is not None:
            return fn
    except Exception:
        pass
    path = os.path.join(_PYDIR, "poolmalloc", "_why.py")
    spec = importlib.util.spec_from_file_location("_poolmalloc_why_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.why_alive


why_alive = _load_why_alive()


class Node:
    pass


class Leaf:
    pass


class Slotted:
    __slots__ = ("a", "__weakref__")


def _app():
    return sys.modules["app"]


# --- builders: each leaves its objects reachable only from where it puts them ----------------

def build_cache():
    node = Node()
    node.child = Leaf()
    _app().cache = {"sessions": [], "users": [Node(), Node(), Node(), node]}


def build_class_attr():
    class C:
        attr = Leaf()
    _app().C = C


def build_closure():
    def make():
        x = Leaf()

        def inner():
            return x
        return inner
    _app().f = make()


def build_cycle(reachable):
    a, b = Node(), Node()
    a.other, b.other = b, a
    if reachable:
        _app().a = a
    return weakref.ref(a), weakref.ref(b)


def build_self_cycle():
    n = Node()
    n.me = n
    return weakref.ref(n)


class WhyAliveTest(unittest.TestCase):

    def setUp(self):
        self._saved_app = sys.modules.get("app")
        sys.modules["app"] = types.ModuleType("app")

    def tearDown(self):
        if self._saved_app is None:
            sys.modules.pop("app", None)
        else:
            sys.modules["app"] = self._saved_app

    # --- the chains asked for -----------------------------------------------------------------

    def test_module_global_dict_list_instance_attribute(self):
        build_cache()
        expected = ["module global app.cache", "dict['users']", "list[3]", "Node.child", "Leaf"]
        self.assertEqual(why_alive(_app().cache["users"][3].child), expected)
        # vars() materializes the instance's __dict__ (one more gc hop): same chain
        vars(_app().cache["users"][3])
        self.assertEqual(why_alive(_app().cache["users"][3].child), expected)

    def test_local_of_the_calling_frame(self):
        def handler():
            d = {"k": Leaf()}
            return why_alive(d["k"]), sys._getframe().f_lineno
        chain, line = handler()
        self.assertEqual(chain, ["local d in handler (%s:%d)" % (_THIS_FILE, line),
                                 "dict['k']", "Leaf"])

    def test_local_of_a_frame_further_up(self):
        def outer():
            keep = [Leaf()]
            return inner(weakref.ref(keep[0])), sys._getframe().f_lineno

        def inner(ref):
            return why_alive(ref())
        chain, line = outer()
        self.assertEqual(chain, ["local keep in outer (%s:%d)" % (_THIS_FILE, line),
                                 "list[0]", "Leaf"])

    def test_class_attribute(self):
        build_class_attr()
        self.assertEqual(why_alive(_app().C.attr), ["module global app.C", "C.attr", "Leaf"])

    def test_closure_cell(self):
        build_closure()
        target = _app().f.__closure__[0].cell_contents
        ref = weakref.ref(target)
        del target
        self.assertEqual(why_alive(ref()),
                         ["module global app.f", "function inner closure cell 'x'", "Leaf"])

    def test_cycle_unreachable_from_roots(self):
        enabled = gc.isenabled()
        gc.disable()          # the cycle is garbage: keep the collector off while we look at it
        try:
            ref_a, ref_b = build_cycle(reachable=False)
            self.assertIsNone(why_alive(ref_a()))
            self.assertIsNone(why_alive(ref_b()))
            ref_n = build_self_cycle()
            self.assertIsNone(why_alive(ref_n()))
        finally:
            if enabled:
                gc.enable()
        gc.collect()
        # why_alive kept nothing: the cycles are collected
        self.assertIsNone(ref_a())
        self.assertIsNone(ref_b())
        self.assertIsNone(ref_n())

    def test_cycle_reachable_from_a_global(self):
        ref_a, ref_b = build_cycle(reachable=True)
        self.assertEqual(why_alive(ref_b()), ["module global app.a", "Node.other", "Node"])
        self.assertEqual(why_alive(ref_a()), ["module global app.a", "Node"])

    def test_max_depth(self):
        _app().deep = [[[Leaf()]]]      # Leaf <- list <- list <- list (app.deep): 3 hops
        target = _app().deep[0][0][0]
        ref = weakref.ref(target)
        del target
        expected = ["module global app.deep", "list[0]", "list[0]", "list[0]", "Leaf"]
        self.assertEqual(why_alive(ref(), max_depth=3), expected)
        self.assertIsNone(why_alive(ref(), max_depth=2))
        self.assertIsNone(why_alive(ref(), max_depth=0))
        _app().x = Leaf()
        self.assertEqual(why_alive(_app().x, max_depth=0), ["module global app.x", "Leaf"])

    # --- the rest of the contract ---------------------------------------------------------------

    def test_direct_module_global(self):
        _app().x = Leaf()
        self.assertEqual(why_alive(_app().x), ["module global app.x", "Leaf"])

    def test_argument_alone_is_not_a_root(self):
        self.assertIsNone(why_alive(Leaf()))

    def test_global_wins_over_local_of_the_same_length(self):
        _app().x = Leaf()
        x = _app().x
        self.assertEqual(why_alive(x), ["module global app.x", "Leaf"])

    def test_shorter_local_wins_over_longer_global(self):
        build_cache()
        users = _app().cache["users"]
        chain, line = why_alive(users[3].child), sys._getframe().f_lineno
        self.assertEqual(chain, ["local users in test_shorter_local_wins_over_longer_global "
                                 "(%s:%d)" % (_THIS_FILE, line),
                                 "list[3]", "Node.child", "Leaf"])

    def test_local_of_another_thread(self):
        ready, done = threading.Event(), threading.Event()
        box = [Leaf()]
        ref = weakref.ref(box[0])
        out = []

        def worker():
            mine = {"slot": box.pop()}
            out.append(sys._getframe().f_lineno + 1)
            ready.set(); done.wait(10)
            del mine
        t = threading.Thread(target=worker)
        t.start()
        try:
            self.assertTrue(ready.wait(10))
            self.assertEqual(why_alive(ref()),
                             ["local mine in worker (%s:%d)" % (_THIS_FILE, out[0]),
                              "dict['slot']", "Leaf"])
        finally:
            done.set()
            t.join()

    def test_slots_deque_set_and_key_repr(self):
        s = Slotted()
        s.a = Leaf()
        _app().s = s
        _app().dq = collections.deque([1, Leaf()])
        _app().st = {frozenset([Leaf()])}
        _app().long = {"k" * 100: [Leaf()]}
        del s
        self.assertEqual(why_alive(_app().s.a), ["module global app.s", "Slotted.a", "Leaf"])
        self.assertEqual(why_alive(_app().dq[1]), ["module global app.dq", "deque[1]", "Leaf"])
        member = weakref.ref(next(iter(next(iter(_app().st)))))
        self.assertEqual(why_alive(member()),
                         ["module global app.st", "set member", "frozenset member", "Leaf"])
        key_step = "dict[" + ("'" + "k" * 100 + "'")[:37] + "...]"
        self.assertEqual(len(key_step), len("dict[]") + 40)
        self.assertEqual(why_alive(_app().long["k" * 100][0]),
                         ["module global app.long", key_step, "list[0]", "Leaf"])

    def test_big_level_uses_the_scan(self):
        leaf = Leaf()
        _app().holder = [[leaf] for _ in range(1000)]   # a level of 1000 lists above the leaf
        ref = weakref.ref(leaf)
        del leaf
        chain = why_alive(ref())
        self.assertEqual(len(chain), 4, chain)
        self.assertEqual(chain[0], "module global app.holder")
        self.assertRegex(chain[1], re.compile(r"^list\[\d+\]$"))
        self.assertEqual(chain[2:], ["list[0]", "Leaf"])

    def test_max_visited_gives_up_with_a_warning(self):
        build_cache()
        with self.assertWarns(RuntimeWarning):
            self.assertIsNone(why_alive(_app().cache["users"][3].child, max_visited=2))

    def test_keeps_no_reference(self):
        build_cache()
        ref = weakref.ref(_app().cache["users"][3].child)
        before = sys.getrefcount(ref())
        chain = why_alive(ref())
        self.assertTrue(all(isinstance(step, str) for step in chain))
        self.assertEqual(sys.getrefcount(ref()), before)
        _app().cache = None             # no cycle: freed by reference counting alone
        self.assertIsNone(ref())


if __name__ == "__main__":
    unittest.main()
