"""The CPython module (python/_poolmalloc.c, python/poolmalloc/): `make python-check` runs this with
/usr/bin/python3 and PYTHONPATH=build/python.

Each test runs a real program in a child python3, through `python3 -m poolmalloc run` or with an
explicit poolmalloc.install(), and checks what it printed and the reports it wrote.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import unittest

PY = os.environ.get("PM_PYTHON", sys.executable)


def run(args, cwd, timeout=120, env_extra=None):
    env = dict(os.environ)
    env.pop("POOLMALLOC_CONF", None)
    env.update(env_extra or {})
    return subprocess.run([PY] + args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def read(path):
    with open(path) as f:
        return f.read()


def write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))


# Sends itself the report signal, then waits for every format's file to be complete.
WAIT_FOR_REPORTS = """
import glob, json, os, signal, sys, time
def dump_and_wait(d, exts, sig=signal.SIGUSR1):
    os.kill(os.getpid(), sig)
    deadline = time.time() + 30
    while time.time() < deadline:
        files = {e: glob.glob(os.path.join(d, "*." + e)) for e in exts}
        if all(files.values()):
            try:
                if "json" in exts:
                    json.load(open(files["json"][0]))
                sizes = [os.path.getsize(f[0]) for f in files.values()]
                time.sleep(0.3)
                if sizes == [os.path.getsize(f[0]) for f in files.values()]:
                    return
            except ValueError:
                pass
        time.sleep(0.05)
    sys.exit("no report in 30 s")
"""

SITES_SCRIPT = WAIT_FOR_REPORTS + """
def hold_buffers():
    return [bytearray(4096) for _ in range(4096)]         # SITE buffers
def hold_strings():
    return ["%0500d" % i for i in range(16384)]            # SITE strings
bufs = hold_buffers()
strs = hold_strings()
print("expect", sum(sys.getsizeof(b) for b in bufs), sum(sys.getsizeof(s) for s in strs))
dump_and_wait(sys.argv[1], sys.argv[2].split(","), getattr(signal, sys.argv[3]))
print("done", len(bufs), len(strs))
"""


def site_line(script_text, tag):
    for i, line in enumerate(script_text.splitlines(), 1):
        if "# SITE " + tag in line:
            return i
    raise AssertionError(tag)


def python_frames(site):
    return [f for f in site["frames"] if f.get("kind") == "python"]


def estimate_for(report, function):
    """Estimated live bytes of the sites whose Python stack holds `function`, and their samples."""
    est, sampled = 0, 0
    for s in report["sites"]:
        if any(f["function"] == function for f in python_frames(s)):
            est += s["live_bytes"]
            sampled += s["sampled_live"]
    return est, sampled


class Runner(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="pm-py-")
        self.reports = os.path.join(self.dir, "reports")
        os.mkdir(self.reports)
        self.script = os.path.join(self.dir, "sites.py")
        write(self.script, SITES_SCRIPT)

    def run_sites(self, sample="64k", formats="text+json+folded", signal_name="USR1"):
        exts = [{"text": "txt", "pprof": "heap"}.get(f, f) for f in formats.split("+")]
        args = ["-m", "poolmalloc", "run", "--sample", sample, "--dir", self.reports, "--formats", formats]
        if signal_name != "USR1":
            args += ["--signal", signal_name]
        p = run(args + [self.script, self.reports, ",".join(exts), "SIG" + signal_name], cwd=self.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.search(r"expect (\d+) (\d+)", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        self.assertIn("done 4096 16384", p.stdout)
        return int(m.group(1)), int(m.group(2))

    def report_name(self, ext):
        files = [f for f in os.listdir(self.reports) if f.endswith("." + ext)]
        self.assertEqual(len(files), 1, files)
        return files[0]

    def report(self, ext):
        return read(os.path.join(self.reports, self.report_name(ext)))

    def test_report_names_python_sites_with_estimates_within_sampling_error(self):
        rate = 64 * 1024
        want_bufs, want_strs = self.run_sites()
        rep = json.loads(self.report("json"))
        self.assertEqual(rep["sample_rate"], rate)
        text = read(self.script)
        for function, tag, want in (("hold_buffers", "buffers", want_bufs), ("hold_strings", "strings", want_strs)):
            est, sampled = estimate_for(rep, function)
            # about want/rate samples (each allocation is much smaller than the rate), a Poisson
            # count: five standard deviations either side
            sd = want / math.sqrt(want / rate)
            self.assertLess(abs(est - want), 5 * sd, "%s: estimated %d, want %d (%d samples)" % (function, est, want, sampled))
            self.assertGreater(sampled, 50)
            # the innermost Python frame is the allocating line, in this script
            line = site_line(text, tag)
            innermost = [python_frames(s)[0] for s in rep["sites"]
                         if python_frames(s) and any(f["function"] == function for f in python_frames(s))]
            self.assertTrue(any(f["line"] == line and f["file"] == self.script for f in innermost), innermost[:3])
        # Python frames come first, in the shape existing readers read
        top = rep["sites"][0]
        self.assertEqual(top["frames"][0]["kind"], "python")
        self.assertRegex(top["frames"][0]["symbol"], r"^\S+ \(sites\.py:\d+\)$")
        kinds = [f["kind"] for f in top["frames"]]
        self.assertEqual(kinds, sorted(kinds, key=lambda k: k != "python"), "python frames, then native ones")
        # the runner's own frames are not the program's
        for s in rep["sites"]:
            for f in python_frames(s):
                self.assertNotIn("poolmalloc", f["file"], f)
                self.assertNotIn("runpy", f["file"], f)
        # text: the sites read in Python
        txt = self.report("txt")
        self.assertRegex(txt, r"python  hold_buffers\.<locals>\.<listcomp> \(sites\.py:%d\)" % site_line(text, "buffers"))
        self.assertRegex(txt, r"python  hold_strings \(sites\.py:%d\)" % site_line(text, "strings"))
        # folded: a flame graph rooted at the module, Python outermost, C at the leaves
        folded = self.report("folded").splitlines()
        roots = [l for l in folded if "hold_buffers" in l]
        self.assertTrue(roots)
        for l in roots:
            self.assertRegex(l, r"^<module> \(sites\.py:\d+\);hold_buffers \(sites\.py:\d+\);")
        with_python = [l for l in folded if re.search(r" \(\S+\.py:\d+\)", l)]
        self.assertGreater(len(with_python), 3)
        self.assertFalse(any("_PyEval_EvalFrameDefault" in l for l in with_python), "native frames stop inside the interpreter")

    def test_signal_formats_and_dir_options(self):
        self.run_sites(formats="folded+json", signal_name="USR2")
        names = sorted(os.listdir(self.reports))
        self.assertEqual([n.rsplit(".", 1)[1] for n in names], ["folded", "json"], names)
        for n in names:
            self.assertRegex(n, r"^poolmalloc\.\d+\.1\.(folded|json)$")

    def test_pprof_readers_name_python_frames(self):
        self.run_sites(formats="pprof")
        heap = os.path.join(self.reports, [f for f in os.listdir(self.reports) if f.endswith(".heap")][0])
        line = site_line(read(self.script), "buffers")
        for tool in ("google-pprof", "jeprof"):
            p = subprocess.run([tool, "--text", "--cum", heap], capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr)
            rows = {}
            for l in p.stdout.splitlines():
                m = re.match(r"\s*[\d.]+\s+[\d.]+%\s+[\d.]+%\s+[\d.]+\s+([\d.]+)%\s+(.*)$", l)
                if m:
                    rows[m.group(2)] = float(m.group(1))
            name = "hold_buffers.{locals}.{listcomp} [%s:%d]" % (self.script, line)
            self.assertIn(name, rows, "%s:\n%s" % (tool, p.stdout[:2000]))
            self.assertGreater(rows[name], 45.0, "%s: 16 MiB of the 25 MiB live" % tool)
            # the module-level line that called it holds the same bytes: the stack goes up to it
            self.assertAlmostEqual(rows["{module} [%s:%d]" % (self.script, line + 3)], rows[name], delta=1.0, msg=tool)

    def test_proto_of_thousands_of_sites_is_whole_and_sums_to_the_json(self):
        # found by a review: a .pb.gz whose compressed stream passed 64 KiB lost its end, and the
        # JSON's 2,000-site cap made its totals differ from the proto's
        script = os.path.join(self.dir, "many.py")
        write(script, WAIT_FOR_REPORTS + """
src = "\\n".join("def f%d():\\n    return [bytearray(100) for _ in range(3)]" % i for i in range(3000))
ns = {}
exec(compile(src, "gen.py", "exec"), ns)
keep = [ns["f%d" % i]() for i in range(3000)]
dump_and_wait(sys.argv[1], ["json", "pb.gz"])
print("done")
""")
        p = run(["-m", "poolmalloc", "run", "--sample", "1", "--dir", self.reports, "--formats", "json+proto", script,
                 self.reports], cwd=self.dir)
        self.assertEqual((p.returncode, p.stdout), (0, "done\n"), p.stderr)
        pb = [f for f in os.listdir(self.reports) if f.endswith(".pb.gz")][0]
        import gzip
        with open(os.path.join(self.reports, pb), "rb") as f:
            packed = f.read()
        self.assertGreater(len(packed), 65536, "more than one output buffer")
        gzip.decompress(packed)                # the whole stream, trailer and CRC included
        # tests/proto_totals.py: the four sums of the profile are the JSON's, exactly
        checker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto_totals.py")
        raw = subprocess.run([PY, checker, os.path.join(self.reports, pb), os.path.join(self.reports, self.report_name("json"))],
                             capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, GOCACHE=os.path.join(self.dir, "gocache")))
        self.assertEqual(raw.returncode, 0, raw.stdout + raw.stderr)
        doc = json.loads(self.report("json"))
        self.assertEqual(len(doc["sites"]), 2000)
        self.assertGreater(doc["sites_omitted"]["sites"], 1000)
        raw = subprocess.run(["go", "tool", "pprof", "-raw", os.path.join(self.reports, pb)], capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, GOCACHE=os.path.join(self.dir, "gocache")))
        self.assertIn("more sites]", raw.stdout)

    def test_exit_status_argv_and_module_and_command_forms(self):
        write(os.path.join(self.dir, "exits.py"), "import sys\nprint(sys.argv[1:])\nsys.exit(3)\n")
        p = run(["-m", "poolmalloc", "run", "exits.py", "a", "b"], cwd=self.dir)
        self.assertEqual((p.returncode, p.stdout), (3, "['a', 'b']\n"), p.stderr)
        write(os.path.join(self.dir, "modform.py"), "import sys, poolmalloc\nprint(__name__, sys.argv[1:], poolmalloc.installed())\n")
        p = run(["-m", "poolmalloc", "run", "-m", "modform", "x"], cwd=self.dir, env_extra={"PYTHONPATH": os.environ.get("PYTHONPATH", "") + ":" + self.dir})
        self.assertEqual((p.returncode, p.stdout), (0, "__main__ ['x'] True\n"), p.stderr)
        p = run(["-m", "poolmalloc", "run", "-c", "import sys, poolmalloc; print(sys.argv, poolmalloc.stats()['serving_python'])", "z"], cwd=self.dir)
        self.assertEqual((p.returncode, p.stdout), (0, "['-c', 'z'] True\n"), p.stderr)
        p = run(["-m", "poolmalloc", "run", "--bogus", "x.py"], cwd=self.dir)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown option --bogus", p.stderr)
        p = run(["-m", "poolmalloc", "run", "--dir", os.path.join(self.dir, "nope"), "x.py"], cwd=self.dir)
        self.assertEqual(p.returncode, 2)
        self.assertIn("does not exist", p.stderr)


class Collector(unittest.TestCase):
    def test_cpython_collections_in_the_gc_section(self):
        d = tempfile.mkdtemp(prefix="pm-py-")
        write(os.path.join(d, "cycles.py"), """
            import gc, json, sys, poolmalloc
            class Node:
                pass
            def make_cycles(n):
                for _ in range(n):
                    a, b = Node(), Node()
                    a.other, b.other = b, a
            make_cycles(30000)
            gc.collect()
            poolmalloc.report(sys.argv[1])
            poolmalloc.report(sys.argv[1] + ".txt", format="text")
            print("ok")
            """)
        out = os.path.join(d, "r.json")
        p = run(["-m", "poolmalloc", "run", "cycles.py", out], cwd=d)
        self.assertEqual((p.returncode, p.stdout), (0, "ok\n"), p.stderr)
        rep = json.loads(read(out))
        cpy = [c for c in rep["gc"] if c["collector"] == "cpython"]
        self.assertEqual(len(cpy), 1, rep["gc"])
        gens = cpy[0]["generations"]
        self.assertEqual(len(gens), 3)
        self.assertGreaterEqual(gens[2]["collections"], 1, "gc.collect() is a generation-2 collection")
        self.assertGreater(gens[0]["collections"], 10, "60000 new objects pass the threshold of 700 many times")
        self.assertGreaterEqual(sum(g["collected"] for g in gens), 60000, "every Node of every cycle")
        for g in gens:
            self.assertEqual(set(g), {"collections", "collected", "uncollectable", "pause_total_ns", "pause_max_ns",
                                      "pause_p50_ns", "pause_p99_ns", "pause_hist"})
            self.assertEqual(sum(n for _, n in g["pause_hist"]), g["collections"], "the histogram counts every pause")
            if g["collections"]:
                self.assertGreater(g["pause_total_ns"], 0)
                self.assertLessEqual(g["pause_p50_ns"], g["pause_p99_ns"])
                self.assertLessEqual(g["pause_p99_ns"], g["pause_max_ns"])
                self.assertLessEqual(g["pause_max_ns"], g["pause_total_ns"])
        txt = read(out + ".txt")
        self.assertRegex(txt, r"collector cpython\n +generation +collections")


class Api(unittest.TestCase):
    def test_blocks_from_before_the_switch_are_freed_and_resized_by_their_allocator(self):
        p = run(["-c", textwrap.dedent("""
            import poolmalloc
            old = [str(i) * 10 for i in range(200000)]          # pymalloc's
            lists = {i: [i] for i in range(50000)}
            assert poolmalloc.install() is True
            assert poolmalloc.install() is False
            new = [str(i) * 10 for i in range(200000)]          # poolmalloc's
            del old                                              # freed through pymalloc
            for v in lists.values():
                v.extend(range(20))                              # resized through pymalloc
            total = sum(len(v) for v in lists.values())
            s = poolmalloc.stats()
            print(total, s["serving_python"], s["in_use"] > 8 << 20, len(new))
            """)], cwd=tempfile.gettempdir())
        self.assertEqual((p.returncode, p.stdout), (0, "1050000 True True 200000\n"), p.stderr)

    def test_stats_report_and_ctl(self):
        d = tempfile.mkdtemp(prefix="pm-py-")
        p = run(["-c", textwrap.dedent("""
            import json, os, sys, poolmalloc
            poolmalloc.install()
            keep = [bytes(100) for _ in range(10000)]
            s = poolmalloc.stats()
            print(sorted(s))
            print(s["mapped"] >= s["in_use"] + s["free"], s["in_use"] >= 10000 * 100)
            d = sys.argv[1]
            poolmalloc.report(os.path.join(d, "a.json"))
            fd = os.open(os.path.join(d, "b.txt"), os.O_WRONLY | os.O_CREAT)
            poolmalloc.report(fd, format="text"); os.close(fd)
            try:
                poolmalloc.report(os.path.join(d, "c"), format="xml")
            except ValueError as e:
                print("ValueError", e)
            try:
                poolmalloc.report("/nonexistent/dir/x.json")
            except OSError as e:
                print("OSError", e.errno)
            print(json.load(open(os.path.join(d, "a.json")))["schema"])
            print(open(os.path.join(d, "b.txt")).readline().startswith("=== poolmalloc heap report"))
            print(poolmalloc.ctl("sample.rate"), poolmalloc.ctl("opt.sample"))
            """), d], cwd=d, env_extra={"POOLMALLOC_CONF": "sample:256k"})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "['arenas', 'decaying', 'free', 'huge_blocks', 'in_use', 'mapped', 'overhead', 'resident', 'returned', "
            "'sample_rate', 'serving_python']",
            "True True",
            "ValueError report(): unknown format 'xml' (text, json, pprof, folded, proto, html)",
            "OSError 2",
            "poolmalloc.heap",
            "True",
            "262144 262144",
        ])

    def test_why_alive(self):
        p = run(["-c", textwrap.dedent("""
            import poolmalloc, sys, types
            app = types.ModuleType("app"); sys.modules["app"] = app
            class Leak: pass
            app.cache = {"users": [Leak()]}
            print(poolmalloc.why_alive(app.cache["users"][0]))
            """)], cwd=tempfile.gettempdir())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("module global app.cache", p.stdout)

    def test_threads_allocate_through_every_domain(self):
        p = run(["-m", "poolmalloc", "run", "--sample", "16k", "-c", textwrap.dedent("""
            import hashlib, threading, zlib
            def work(k, out):
                h = hashlib.sha256()
                for i in range(3000):
                    b = zlib.compress(bytes(range(256)) * (i % 7 + 1))
                    h.update(zlib.decompress(b))
                    h.update(repr([str(j) for j in range(i % 50)]).encode())
                out[k] = h.hexdigest()
            out = {}
            ts = [threading.Thread(target=work, args=(k, out)) for k in range(4)]
            for t in ts: t.start()
            for t in ts: t.join()
            print(len(set(out.values())), len(out))
            """)], cwd=tempfile.gettempdir())
        self.assertEqual((p.returncode, p.stdout), (0, "1 4\n"), p.stderr)


class Review(unittest.TestCase):
    """What a review broke, each a reproducer (the fixes are in python/_poolmalloc.c and
    python/poolmalloc/__init__.py)."""

    def check(self, args, want_out, env_extra=None):
        p = run(args, cwd=tempfile.gettempdir(), env_extra=env_extra)
        self.assertEqual((p.returncode, p.stdout), (0, want_out), p.stderr[-2000:])

    def test_tracemalloc_started_first_does_not_take_the_allocator_away(self):
        # tracemalloc puts back the allocator it saw when it stops: install() restarts it on top
        self.check(["-X", "tracemalloc", "-m", "poolmalloc", "run", "-c",
                    "import tracemalloc; x = [str(i) for i in range(10000)]; print(tracemalloc.is_tracing())"], "True\n")
        self.check(["-X", "tracemalloc=5", "-c", "import poolmalloc, tracemalloc; poolmalloc.install(); "
                    "print(tracemalloc.get_traceback_limit()); tracemalloc.stop(); x = [str(i) for i in range(10000)]; "
                    "del x; print(poolmalloc.stats()['serving_python'])"], "5\nTrue\n")

    def test_debug_hooks_blocks_grown_into_the_raw_domain(self):
        # under the debug hooks pymalloc moves a block past 512 bytes to PyMem_RawMalloc (ours now)
        # and hands out its address + 16: a pointer into our block that is the old allocator's
        code = ("l = [1, 2, 3]\nimport poolmalloc\npoolmalloc.install()\nl.extend(range(1000))\nl.append(0)\n"
                "del l\nprint('ok')")
        for env in ({"PYTHONMALLOC": "debug"}, {"PYTHONMALLOC": "pymalloc_debug"}):
            self.check(["-c", code], "ok\n", env)
        self.check(["-X", "dev", "-m", "poolmalloc", "run", "-c",
                    "import sys; sys.path.extend(['x'] * 1000); del sys.path[-1000:]; print(len(sys.path) > 0)"], "True\n")

    def test_raw_allocations_without_the_gil_once_a_subinterpreter_exists(self):
        # PyGILState_Check says yes for every thread then: liblzma's PyMem_RawMalloc with the GIL
        # released must not walk Python frames
        self.check(["-m", "poolmalloc", "run", "--sample", "1k", "-c",
                    "import _xxsubinterpreters, lzma\n_xxsubinterpreters.create()\n"
                    "data = lzma.compress(b'x' * 1000)\nfor i in range(300): lzma.decompress(data)\nprint('ok')"], "ok\n")

    def test_code_objects_are_not_kept_alive_by_the_frame_cache(self):
        self.check(["-m", "poolmalloc", "run", "--sample", "1", "-c", textwrap.dedent("""
            import gc, weakref
            refs = []
            for i in range(300):
                ns = {}
                exec(compile("def f():\\n    return [%d] * 100\\nf()" % i, "gen%d.py" % i, "exec"), ns)
                refs.append(weakref.ref(ns["f"].__code__))
                del ns
            gc.collect()
            print(sum(r() is not None for r in refs))
            """)], "0\n")

    def test_report_errors_are_raised_and_leave_files_alone(self):
        d = tempfile.mkdtemp(prefix="pm-py-")
        keep = os.path.join(d, "keep.txt")
        write(keep, "precious\n")
        p = run(["-c", textwrap.dedent("""
            import os, sys, poolmalloc
            keep = sys.argv[1]
            for args in ((keep, "bogus"), (True,), (-1,), (2**32 + 1,), (99999,)):
                try:
                    poolmalloc.report(*args)
                    print("no error")
                except (ValueError, TypeError, OSError) as e:
                    print(type(e).__name__)
            r, w = os.pipe(); os.close(r)
            try:
                poolmalloc.report(w)
            except OSError as e:
                print(type(e).__name__)
            print(open(keep).read().strip())
            """), keep], cwd=d)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.split(), ["ValueError", "TypeError", "ValueError", "ValueError", "OSError",
                                            "BrokenPipeError", "precious"])

    def test_verbose_alone_keeps_sampling_and_the_signal(self):
        d = tempfile.mkdtemp(prefix="pm-py-")
        p = run(["-m", "poolmalloc", "run", "--verbose", "--dir", d, "-c", textwrap.dedent("""
            import os, signal, time, poolmalloc
            print(poolmalloc.ctl("sample.rate"))
            os.kill(os.getpid(), signal.SIGUSR1)
            for _ in range(200):
                if any(f.endswith(".json") for f in os.listdir(%r)):
                    break
                time.sleep(0.05)
            print("alive")
            """ % d)], cwd=d)
        self.assertEqual((p.returncode, p.stdout), (0, "524288\nalive\n"), p.stderr)
        self.assertIn("poolmalloc: wrote", p.stderr)

    def test_comma_in_an_option_value_is_refused(self):
        p = run(["-m", "poolmalloc", "run", "--prefix", "a,sample:1", "-c", "pass"], cwd=tempfile.gettempdir())
        self.assertEqual(p.returncode, 2)
        self.assertIn("a comma would end the option", p.stderr)
        p = run(["-m", "poolmalloc", "run", "-m", "no_such_module_here"], cwd=tempfile.gettempdir())
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.strip(), PY + ": No module named no_such_module_here")


if __name__ == "__main__":
    unittest.main()
