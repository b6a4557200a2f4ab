"""workload.py: a deterministic, allocation-heavy CPython workload for tests/integration/t_python.sh.

Run with PYTHONMALLOC=malloc so that every object allocation goes through malloc/realloc/free,
once under glibc and once under LD_PRELOAD of the allocator: stdout must be identical. Each
section prints one line "name: <digest>" (a sha256 prefix of everything the section computed)
and the last line is a digest of all sections. Nothing depends on addresses, hash seeds, time
or thread scheduling.
"""
import array
import base64
import bisect
import collections
import csv
import dataclasses
import decimal
import fractions
import functools
import gc
import hashlib
import heapq
import io
import itertools
import json
import math
import pickle
import random
import re
import sqlite3
import string
import struct
import sys
import textwrap
import threading
import weakref
import zlib

TOTAL = hashlib.sha256()
if hasattr(sys, "set_int_max_str_digits"):          # 3.11+: allow big int <-> str conversions
    sys.set_int_max_str_digits(0)


def section(fn):
    h = hashlib.sha256()

    def emit(*parts):
        for p in parts:
            h.update(repr(p).encode())
            h.update(b"\x00")

    fn(emit)
    digest = h.hexdigest()[:16]
    TOTAL.update(digest.encode())
    print(f"{fn.__name__}: {digest}")
    return fn


def rand_text(rng, n):
    letters = string.ascii_letters + string.digits + " \u00e9\u00df\u4e2d\u2603"
    return "".join(rng.choice(letters) for _ in range(n))


@section
def json_round_trips(emit):
    rng = random.Random(1)

    def value(depth):
        k = rng.randrange(8 if depth < 5 else 4)
        if k == 0:
            return rng.randrange(-10**12, 10**12)
        if k == 1:
            return rng.random() * 1e6
        if k == 2:
            return rand_text(rng, rng.randrange(0, 40))
        if k == 3:
            return rng.choice([True, False, None])
        if k in (4, 5):
            return [value(depth + 1) for _ in range(rng.randrange(0, 8))]
        return {rand_text(rng, rng.randrange(1, 12)): value(depth + 1) for _ in range(rng.randrange(0, 8))}

    for i in range(300):
        doc = {"id": i, "payload": value(0)}
        s1 = json.dumps(doc, sort_keys=True, ensure_ascii=(i % 2 == 0))
        back = json.loads(s1)
        s2 = json.dumps(back, sort_keys=True, ensure_ascii=(i % 2 == 0), indent=i % 3 or None)
        assert json.loads(s2) == back
        emit(len(s1), hashlib.md5(s2.encode()).hexdigest())


@section
def sorting(emit):
    rng = random.Random(2)
    for n in (10, 1000, 50000):
        xs = [rng.randrange(10**9) for _ in range(n)]
        emit(sorted(xs)[:: max(1, n // 50)])
        words = [rand_text(rng, rng.randrange(1, 20)) for _ in range(n // 5 + 1)]
        emit(sorted(words, key=lambda w: (len(w), w))[:20])
        pairs = [(rng.randrange(100), rng.random()) for _ in range(n // 5 + 1)]
        pairs.sort(key=lambda p: p[0])               # stable sort: ties keep insertion order
        emit(pairs[:10], pairs[-10:])
    xs = list(range(100000))
    rng.shuffle(xs)
    xs.sort(reverse=True)
    emit(xs[:5], sum(xs[::997]))


@section
def dict_set_churn(emit):
    rng = random.Random(3)
    d = {}
    s = set()
    for step in range(200000):
        k = rng.randrange(20000)
        op = rng.randrange(4)
        if op == 0:
            d[k] = str(k) * (k % 7)
        elif op == 1:
            d.pop(k, None)
        elif op == 2:
            s.add((k, str(k)))
        else:
            s.discard((k, str(k)))
        if step % 50000 == 0:
            emit(len(d), len(s))
    emit(len(d), len(s), sum(d), sum(len(v) for v in d.values()), sorted(s)[:10])
    # many small dicts and sets, built and dropped
    acc = 0
    for i in range(20000):
        m = {f"k{j}": j * i for j in range(i % 17)}
        acc += sum(m.values()) + len(frozenset(m))
    emit(acc)


@section
def string_building(emit):
    rng = random.Random(4)
    parts = []
    for i in range(30000):
        parts.append(f"{i:06d}:{rand_text(rng, i % 13)}|")
    big = "".join(parts)
    emit(len(big), hashlib.sha1(big.encode("utf-8")).hexdigest())
    s = ""
    for i in range(5000):                             # quadratic-ish growth: realloc in place
        s += chr(0x41 + i % 26) * (i % 5)
    emit(len(s), s[-50:])
    b = bytearray()
    for i in range(100000):
        b += struct.pack("<I", i * 2654435761 % 2**32)
    emit(len(b), hashlib.sha256(b).hexdigest())
    emit(big.upper()[:40], big.count("0"), big.replace("|", "||")[:60], big.split(":")[7])
    wrapped = textwrap.fill(big[:5000].replace("|", " "), width=37)
    emit(wrapped.count("\n"), wrapped[-80:])
    emit(" ".join(reversed(big[:2000].split("|"))))
    emit("".join(sorted(set(big))))


@section
def class_hierarchy(emit):
    class Shape:
        registry = []

        def __init__(self, name):
            self.name = name
            Shape.registry.append(weakref.ref(self))

        def area(self):
            raise NotImplementedError

        def __repr__(self):
            return f"{type(self).__name__}({self.name}, {self.area():.4f})"

    class Rect(Shape):
        def __init__(self, name, w, h):
            super().__init__(name)
            self.w, self.h = w, h

        def area(self):
            return self.w * self.h

    class Square(Rect):
        def __init__(self, name, s):
            super().__init__(name, s, s)

    class Circle(Shape):
        __slots__ = ("r",)

        def __init__(self, name, r):
            super().__init__(name)
            self.r = r

        def area(self):
            return math.pi * self.r * self.r

    @dataclasses.dataclass(order=True, frozen=True)
    class Point:
        x: int
        y: int
        tags: tuple = ()

    rng = random.Random(5)
    shapes = []
    for i in range(20000):
        k = i % 3
        if k == 0:
            shapes.append(Rect(f"r{i}", rng.randrange(1, 100), rng.randrange(1, 100)))
        elif k == 1:
            shapes.append(Square(f"s{i}", rng.randrange(1, 100)))
        else:
            shapes.append(Circle(f"c{i}", rng.random() * 10))
    shapes.sort(key=lambda s: (s.area(), s.name))
    emit([repr(s) for s in shapes[:5]], [repr(s) for s in shapes[-5:]])
    emit(collections.Counter(type(s).__name__ for s in shapes).most_common())
    del shapes
    gc.collect()
    emit(sum(1 for r in Shape.registry if r() is not None))
    pts = sorted({Point(rng.randrange(50), rng.randrange(50), tuple(range(i % 4))) for i in range(5000)})
    emit(len(pts), pts[:3], pts[-3:])


@section
def regular_expressions(emit):
    rng = random.Random(6)
    text = "\n".join(
        f"{rng.choice(['GET', 'POST', 'PUT'])} /api/v{rng.randrange(1, 4)}/item/{rng.randrange(10**6)}"
        f"?q={rand_text(rng, 6).replace(' ', '+')} HTTP/1.1 {rng.choice([200, 404, 500])} {rng.randrange(10**5)}"
        for _ in range(8000)
    )
    line = re.compile(r"^(GET|POST|PUT) /api/v(\d)/item/(\d+)\?q=(\S*) HTTP/1\.1 (\d{3}) (\d+)$", re.M)
    rows = line.findall(text)
    emit(len(rows), rows[:3])
    emit(collections.Counter(r[4] for r in rows).most_common())
    emit(hashlib.md5(re.sub(r"\d+", lambda m: str(int(m.group()) % 97), text).encode()).hexdigest())
    emit(re.split(r"[/?=+ ]+", text[:3000])[:40])
    for i in range(300):                               # many distinct compiled patterns
        pat = re.compile("(?:%s)+[a-z]{%d,%d}" % (re.escape(rand_text(rng, 3)), i % 3, i % 3 + 2))
        emit(len(pat.findall(text[:4000])))
    re.purge()


@section
def collections_itertools(emit):
    rng = random.Random(7)
    dq = collections.deque(maxlen=1000)
    for i in range(100000):
        dq.append(i * 7 % 1009)
        if i % 3 == 0:
            dq.popleft()
        if i % 11 == 0:
            dq.rotate(rng.randrange(-50, 50))
    emit(list(dq)[:20], sum(dq))
    dd = collections.defaultdict(list)
    for i in range(50000):
        dd[i % 997].append(i)
    emit(sorted((k, len(v), sum(v)) for k, v in dd.items())[:10])
    od = collections.OrderedDict()
    for i in range(20000):
        od[i % 3000] = i
        if i % 5 == 0:
            od.move_to_end(i % 3000, last=False)
        if len(od) > 2000:
            od.popitem(last=False)
    emit(list(od.items())[:10])
    Rec = collections.namedtuple("Rec", "a b c")
    recs = [Rec(i, str(i), [i] * (i % 4)) for i in range(30000)]
    emit(recs[12345], sum(r.a for r in recs))
    cm = collections.ChainMap({"a": 1}, {"b": 2}, {"a": 3, "c": 4})
    emit(sorted(cm.items()))
    emit(list(itertools.islice(itertools.permutations(range(8)), 1000, 1010)))
    emit(sum(1 for _ in itertools.combinations(range(22), 5)))
    emit([(k, len(list(g))) for k, g in itertools.groupby(sorted(rand_text(rng, 2000)))][:20])
    h = []
    for i in range(50000):
        heapq.heappush(h, (i * 7919) % 50021)
        if i % 3 == 0:
            heapq.heappop(h)
    emit(heapq.nsmallest(10, h), heapq.nlargest(10, h))
    sl = []
    for i in range(20000):
        bisect.insort(sl, (i * 104729) % 20011)
    emit(sl[::1000])


@section
def decimal_fractions_bigint(emit):
    decimal.getcontext().prec = 300
    D = decimal.Decimal
    e = sum(D(1) / math.factorial(k) for k in range(180))
    emit(str(e)[:302])
    emit(str(D(2).sqrt()), str(D(10).ln())[:100], str(D(7).exp())[:100])
    f = sum(fractions.Fraction(1, k) for k in range(1, 400))
    emit(f.numerator % 10**40, f.denominator % 10**40)
    n = math.factorial(3000)
    emit(len(str(n)), n % (10**30 + 7), (n >> 1000) % 999983)
    a = pow(3, 20000) - 1
    b = pow(7, 9000) + 3
    emit(math.gcd(a, b), (a * b) % (2**127 - 1), divmod(a, b)[1] % 10**20)
    emit(str(2**10000)[-50:], int("9" * 3000) // 12345 % 10**15)


@section
def serialization(emit):
    rng = random.Random(8)
    obj = {
        "ints": list(range(5000)),
        "strs": [rand_text(rng, 10) for _ in range(2000)],
        "nested": [[{"k": i, "v": (i, str(i), b"x" * (i % 40))} for i in range(30)] for _ in range(50)],
        "set": frozenset(range(0, 3000, 7)),
        "float": [rng.random() for _ in range(1000)],
    }
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(obj, protocol=proto)
        back = pickle.loads(data)
        assert back == obj
        emit(proto, len(back["strs"]))
    raw = json.dumps({k: v for k, v in obj.items() if k in ("ints", "strs", "float")}).encode()
    for level in (1, 6, 9):
        z = zlib.compress(raw, level)
        assert zlib.decompress(z) == raw
        emit(level, len(raw))
    co = zlib.compressobj(9)
    stream = b"".join(co.compress(raw[i:i + 777]) for i in range(0, len(raw), 777)) + co.flush()
    emit(zlib.decompress(stream) == raw)
    emit(base64.b85encode(raw[:3000]).decode()[-60:], base64.b64encode(raw[-999:])[:60])
    buf = io.StringIO()
    w = csv.writer(buf)
    for i in range(5000):
        w.writerow([i, rand_text(rng, 8), f"quote\"d {i}", i * 0.5])
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    emit(len(rows), rows[1234])
    arr = array.array("d", (math.sin(i) for i in range(50000)))
    arr.extend(array.array("d", [1.5] * 1000))
    emit(len(arr), round(sum(arr), 6), arr.tobytes()[-16:])
    emit(hashlib.sha512(arr.tobytes()).hexdigest()[:32], hashlib.blake2b(raw).hexdigest()[:32])


@section
def sqlite_module(emit):
    con = sqlite3.connect(":memory:")
    con.execute("create table t(id integer primary key, grp int, name text, val real)")
    rng = random.Random(9)
    con.executemany("insert into t(grp, name, val) values (?, ?, ?)",
                    ((rng.randrange(50), rand_text(rng, 12), rng.random()) for _ in range(20000)))
    con.execute("create index t_grp on t(grp, val)")
    emit(con.execute("select grp, count(*), round(sum(val), 6) from t group by grp order by grp limit 7").fetchall())
    emit(con.execute("select name from t order by name limit 5").fetchall())
    emit(con.execute("select count(*) from t a join t b on a.grp = b.grp and a.id < b.id where a.id < 300").fetchone())
    con.close()


@section
def gc_cycles_and_weakrefs(emit):
    class Node:
        def __init__(self, i):
            self.i = i
            self.children = []
            self.parent = None

    alive = []
    for rnd in range(30):
        nodes = [Node(i) for i in range(3000)]
        for i, n in enumerate(nodes[1:], 1):
            p = nodes[(i * 31) % i]
            n.parent = p
            p.children.append(n)
        refs = [weakref.ref(n) for n in nodes[::100]]
        keep = nodes[rnd] if rnd % 5 == 0 else None
        del nodes, n, p
        gc.collect()
        alive.append(sum(1 for r in refs if r() is not None))
        if keep is not None:
            emit(keep.i, len(keep.children))
    emit(alive)
    wd = weakref.WeakValueDictionary()
    objs = [Node(i) for i in range(1000)]
    for o in objs:
        wd[o.i] = o
    del objs[::2]
    gc.collect()
    emit(len(wd), sorted(wd.keys())[:5])


@section
def threads(emit):
    # each thread computes on its own data; results are combined in a fixed order
    results = [None] * 4

    def work(k):
        rng = random.Random(100 + k)
        d = {}
        for i in range(40000):
            key = rng.randrange(5000)
            d[key] = d.get(key, "") + chr(97 + i % 26)
            if i % 7 == 0:
                d.pop(rng.randrange(5000), None)
        lst = sorted(d.items())
        results[k] = (len(lst), hashlib.sha256(repr(lst).encode()).hexdigest()[:16])

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    emit(results)


@section
def functools_and_closures(emit):
    @functools.lru_cache(maxsize=512)
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    emit(fib(400) % 10**30, fib.cache_info().hits)
    adders = [(lambda k: (lambda x: x + k))(k) for k in range(10000)]
    emit(functools.reduce(lambda acc, f: f(acc) % 1000003, adders, 1))
    gen = (x * x for x in range(200000) if x % 3)
    emit(sum(gen))
    comp = {i: [j for j in range(i % 10)] for i in range(30000)}
    emit(sum(map(len, comp.values())))


print(f"total: {TOTAL.hexdigest()}")
sys.stdout.flush()
