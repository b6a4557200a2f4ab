"""gc_bench.py: CPython's gc on the shapes of gc_bench.c, objects with two __slots__.

Prints "shape ns_per_object" for chain, pairs, ring (a timed gc.collect()) and alloc (creating
N objects). Best of REPS runs. Usage: python3 gc_bench.py [N]
"""
import gc
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPS = 5


class Obj:
    __slots__ = ("a", "b")


def build(shape):
    if shape in ("chain", "ring"):
        head = o = Obj()
        for _ in range(N - 1):
            nxt = Obj()
            o.a = nxt
            o = nxt
        if shape == "chain":
            return head
        o.a = head
        return None
    for _ in range(N // 2):
        x, y = Obj(), Obj()
        x.a = y
        y.a = x
    return None


def collect_ns(shape):
    best = float("inf")
    for _ in range(REPS):
        gc.collect()
        gc.disable()
        keep = build(shape)
        t0 = time.perf_counter_ns()
        found = gc.collect()
        t = time.perf_counter_ns() - t0
        want = 0 if keep is not None else N
        if found < want:
            sys.exit(f"gc_bench.py: {shape}: found {found}")
        best = min(best, t)
        del keep
        gc.enable()
    return best / N


def alloc_ns():
    best = float("inf")
    gc.collect()
    gc.disable()
    for _ in range(REPS):
        objs = [None] * N
        t0 = time.perf_counter_ns()
        for i in range(N):
            objs[i] = Obj()
        t = time.perf_counter_ns() - t0
        best = min(best, t)
        del objs
    gc.enable()
    return best / N


for shape in ("chain", "pairs", "ring"):
    print(f"{shape} {collect_ns(shape):.2f}")
print(f"alloc {alloc_ns():.2f}")
