#!/usr/bin/env python3
"""tests/fuzz/seeds.py: writes the seed inputs of the three fuzzers into tests/fuzz/corpus/<target>/.

The seeds are committed; run this again only after changing the input format of a fuzzer (the
opcodes below follow the run_op() switches of fuzz_api.c and fuzz_gc.c). The fuzzers never write
here: `make fuzz` and `make fuzz-check` run on a copy in build/fuzz/corpus/."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_api.c: [op, slot, ...]; sizes are [selector, bytes...] (draw_size) ----
def tiny(n): return bytes([0, n])
def small(n): return bytes([8]) + struct.pack("<H", n - 17)
def pooled(n): return bytes([20]) + struct.pack("<H", n - 513)
def boundary(i): return bytes([26, i])
def huge(extra): return bytes([28]) + struct.pack("<I", extra)
def malloc(s, size): return bytes([0, s]) + size
def calloc(s, size, m): return bytes([2, s]) + size + bytes([m - 1])
def realloc(s, size): return bytes([3, s]) + size
def realloc0(s): return bytes([5, s])
def aligned(op, s, abyte, size): return bytes([op, s, abyte]) + size   # 6 aligned_alloc, 7 posix_memalign, 8 memalign
def free(s): return bytes([9, s])
def usable(s): return bytes([11, s])
def trim(): return bytes([12, 0])
def impossible(s, idx, pair, abyte, variant): return bytes([13, s, idx, pair, abyte, variant])

write("api", "classes", malloc(0, tiny(0)) + malloc(1, tiny(16)) + malloc(2, small(100)) + malloc(3, small(512))
      + malloc(4, pooled(4000)) + malloc(5, boundary(38)) + malloc(6, huge(12345)) + usable(6)
      + free(0) + free(1) + free(2) + free(3) + free(4) + free(5) + free(6))
write("api", "realloc", malloc(7, small(40)) + realloc(7, small(400)) + realloc(7, pooled(30000))
      + realloc(7, huge(1 << 20)) + realloc(7, huge(100)) + realloc(7, pooled(700)) + realloc(7, tiny(3))
      + realloc0(7) + realloc(8, small(64)) + realloc0(9))
write("api", "aligned", aligned(6, 10, 6, small(100)) + aligned(7, 11, 12, pooled(5000)) + aligned(8, 12, 20, small(20))
      + aligned(6, 13, 21, small(30)) + aligned(7, 14, 2, small(30)) + aligned(8, 15, 31, small(30))
      + aligned(8, 16, 25, pooled(3000)) + free(10) + free(11) + free(12) + free(16))
write("api", "calloc_trim", malloc(20, pooled(60000)) + free(20) + calloc(20, pooled(60000), 4)
      + calloc(21, small(200), 1) + trim() + free(21) + calloc(22, huge(4096), 16) + trim())
write("api", "impossible", malloc(30, small(80)) + b"".join(impossible(30, i, i % 7, i % 17, v)
                                                        for v in range(10) for i in (0, 8)))

# ---- fuzz_conf.c: a POOLMALLOC_CONF string, then optionally NUL, a key byte and a value ----
confs = {
    "docs_example": b"stats:true,sample:64k,formats:json+pprof",
    "docs_warnings": b"stats:maybe,foo:1",
    "docs_bad_values": b"sample:64q,signal:KILL,formats:text+,Stats:true",
    "reports": b"dir:/tmp,prefix:app,signal:SIGUSR2,at_exit:yes,leaks:on,interval:1g",
    "limits": b"purge_delay:2000000000,purge:4mb,background:off,verbose:1",
    "rt_signal": b"signal:RTMIN+3,formats:all",
    "set_value": b"stats:1\x00\x06USR1",          # then set key 6 (signal) to "USR1"
}
for name, data in confs.items():
    write("conf", name, data)

# ---- fuzz_gc.c: [op, ...]; picks index the objects a program can reach ----
NODE, FIN, PHOENIX, NOCLEAR, LEAF = range(5)
def new(t, extra=0): return bytes([0, t, extra])
def setref(src, k, tgt): return bytes([2, src, k, 1, tgt])       # the 1: not NULL
def clearref(src, k): return bytes([2, src, k, 0])
def drop(i): return bytes([6, i])
def collect(g): return bytes([8, g])
def freeze(on): return bytes([9, 1 if on else 0])
def weak(slot, pick, cb): return bytes([11, slot, pick, cb])
def weak_get(slot, keep): return bytes([12, slot, keep])
def inspect(pick): return bytes([13, pick])
def always(): return bytes([14, 1])
def full(): return bytes([15])

write("gc", "cycle", new(NODE) + new(NODE) + setref(0, 0, 1) + setref(1, 0, 0) + inspect(0)
      + drop(0) + drop(0) + collect(0) + full())
write("gc", "finalizers", new(FIN) + new(PHOENIX) + setref(0, 0, 1) + setref(1, 1, 0) + drop(0) + drop(0)
      + full() + inspect(0) + drop(0) + full())
write("gc", "uncollectable", new(NOCLEAR) + new(NOCLEAR) + new(NODE) + setref(0, 0, 1) + setref(1, 0, 0)
      + setref(2, 2, 0) + drop(0) + drop(0) + drop(0) + full() + full())
write("gc", "weakrefs", new(NODE) + new(LEAF) + setref(0, 1, 1) + weak(0, 0, 1) + weak(1, 1, 0) + weak_get(0, 0)
      + setref(0, 0, 0) + drop(0) + drop(0) + collect(1) + weak_get(0, 1) + full())
write("gc", "generations", new(NODE) + collect(0) + new(NODE) + collect(1) + new(NODE) + freeze(True)
      + new(NODE) + full() + freeze(False) + always() + new(NODE) + new(FIN) + always() + full())
