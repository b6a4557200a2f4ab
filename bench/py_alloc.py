"""Allocation-heavy pure-Python workload for the allocator benchmark.

Run as `python3 py_alloc.py [SCALE]`.  With PYTHONMALLOC=malloc every Python
object (dicts, lists, tuples, small ints beyond the cache, strings, instances)
is allocated with malloc/free, so the C allocator swapped in with LD_PRELOAD
does all of the work; without it CPython's own pymalloc handles small objects.

It models typical interpreter churn: building records (dicts and instances),
string formatting and joining, short-lived tuples and lists, a growing and
shrinking dict used as a cache, and sorting.  Everything is deterministic
(fixed seed, no dependence on hash order); the last line is a checksum.
"""
import random
import sys


class Point:
    def __init__(self, x, y, tag):
        self.x = x
        self.y = y
        self.tag = tag

    def moved(self, dx, dy):
        return Point(self.x + dx, self.y + dy, self.tag)


class Slotted:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a = a
        self.b = b
        self.c = c


def records(rng, n):
    """Lists of dicts with string values, then aggregate them."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    rows = []
    for i in range(n):
        rows.append({
            "id": i,
            "name": "%s-%d" % (rng.choice(words), rng.randrange(1000)),
            "tags": [rng.choice(words) for _ in range(rng.randrange(1, 5))],
            "score": rng.random() * 100.0,
        })
    by_tag = {}
    for row in rows:
        for t in row["tags"]:
            by_tag.setdefault(t, []).append(row["id"])
    total = sum(len(v) for v in by_tag.values())
    total += sum(len(r["name"]) for r in rows)
    rows.sort(key=lambda r: (r["name"], r["id"]))
    return total + rows[0]["id"] + rows[-1]["id"]


def objects(rng, n):
    """Many small instances, most of them short-lived."""
    pts = [Point(rng.random(), rng.random(), i) for i in range(n)]
    acc = 0
    for step in range(5):
        pts = [p.moved(0.5, -0.25) for p in pts]
        acc += sum(p.tag for p in pts[:: 97])
    slots = [Slotted(i, (i, i + 1), str(i)) for i in range(n)]
    acc += sum(len(s.c) + s.b[1] for s in slots)
    return acc


def strings(rng, n):
    """Formatting, splitting and joining produce lots of short-lived strings."""
    parts = []
    for i in range(n):
        s = "item:%06d:%s" % (i, "x" * rng.randrange(1, 40))
        a, b, c = s.split(":")
        parts.append("-".join((c[:8], b, a.upper())))
    text = "\n".join(parts)
    lines = text.splitlines()
    return len(text) + sum(len(line) for line in lines[::13])


def cache(rng, n):
    """A dict used as a bounded cache: constant insertion and eviction."""
    cache = {}
    hits = 0
    for i in range(n):
        key = ("k", rng.randrange(n // 4))
        if key in cache:
            hits += 1
            cache[key].append(i)
        else:
            cache[key] = [i]
            if len(cache) > 20000:
                for old in list(cache)[:5000]:
                    del cache[old]
    return hits + len(cache)


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    rng = random.Random(12345)
    checksum = 0
    for _ in range(scale):
        checksum = (checksum * 31 + records(rng, 40000)) % (1 << 61)
        checksum = (checksum * 31 + objects(rng, 30000)) % (1 << 61)
        checksum = (checksum * 31 + strings(rng, 60000)) % (1 << 61)
        checksum = (checksum * 31 + cache(rng, 150000)) % (1 << 61)
    print("checksum: %016x" % checksum)


if __name__ == "__main__":
    main()
