"""python3 -m poolmalloc run [options] (script.py | -m module | -c command) [args...]

Runs a Python program with poolmalloc serving CPython's raw, mem and object domains, sampling
allocation sites with their Python stacks, and writing heap reports on a signal, as pm-run does
for native programs. The options are pm-run's and make the same POOLMALLOC_CONF (docs/options.md):

  --sample SIZE     mean bytes between sampled allocations (default 512k; 1: every one)
  --formats LIST    report formats joined by +: text, json, pprof, folded, proto, html
                    (default text+json)
  --dir DIR         where the reports go (default: the current directory)
  --prefix NAME     report file prefix (default poolmalloc)
  --signal SIG      the signal that writes the reports (default USR1; "off" for none)
  --interval SIZE   write them every SIZE bytes allocated (estimated)
  --at-exit         write them once more when the program exits
  --leaks           at exit, list the sites of sampled blocks still live
  --stats           print the allocator's statistics at exit
  --verbose         say where each report was written
  --no-python-stacks  sample native stacks only (what recording Python's costs: make bench)
"""
import os
import sys
import types

USAGE = __doc__


def _fail(msg):
    sys.stderr.write("python3 -m poolmalloc: %s\n\n%s" % (msg, USAGE))
    sys.exit(2)


def _parse(argv):
    conf = []
    opts = {"python_stacks": True}
    flags = {"--sample": "sample", "--formats": "formats", "--prefix": "prefix", "--signal": "signal",
             "--interval": "interval"}
    switches = {"--at-exit": "at_exit", "--leaks": "leaks", "--stats": "stats", "--verbose": "verbose"}
    i = 0
    while i < len(argv):
        a = argv[i]
        name, eq, val = a.partition("=")
        if name in flags or name == "--dir":
            if not eq:
                if i + 1 >= len(argv):
                    _fail("%s needs a value" % a)
                val = argv[i + 1]
                i += 1
            if "," in val:
                _fail("%s %s: a comma would end the option in POOLMALLOC_CONF" % (name, val))
            if name == "--dir":
                if not os.path.isdir(val):
                    _fail("report directory %s does not exist" % val)
                conf.append("dir:" + os.path.abspath(val))
            else:
                conf.append("%s:%s" % (flags[name], val))
        elif a in switches:
            conf.append(switches[a] + ":true")
        elif a == "--no-python-stacks":
            opts["python_stacks"] = False
        elif a in ("-h", "--help"):
            sys.stdout.write(USAGE)
            sys.exit(0)
        elif a == "--":
            i += 1
            break
        elif a.startswith("-") and a not in ("-m", "-c"):
            _fail("unknown option " + a)
        else:
            break
        i += 1
    return conf, opts, argv[i:]


def run(argv):
    conf, opts, rest = _parse(argv)
    if not rest:
        _fail("no program given")
    if not any(c.startswith("formats:") for c in conf):
        conf.append("formats:text+json")       # a report option, so that sampling and USR1 apply
    joined = ",".join(conf)
    if os.environ.get("POOLMALLOC_CONF"):
        joined = os.environ["POOLMALLOC_CONF"] + "," + joined
    # The extension reads POOLMALLOC_CONF when it loads; the program's children do not inherit it.
    previous = os.environ.get("POOLMALLOC_CONF")
    os.environ["POOLMALLOC_CONF"] = joined
    import poolmalloc
    try:
        poolmalloc._load()
    finally:
        if previous is None:
            del os.environ["POOLMALLOC_CONF"]
        else:
            os.environ["POOLMALLOC_CONF"] = previous
    # sampled stacks stop above the program's own frames
    poolmalloc.install(_start.__code__, python_stacks=opts["python_stacks"])
    _start(rest)


def _start(rest):
    if rest[0] == "-m":
        if len(rest) < 2:
            _fail("-m needs a module")
        sys.argv = rest[1:]
        import importlib.util
        import runpy
        try:
            found = importlib.util.find_spec(rest[1])
        except (ImportError, ValueError) as e:
            found, why = None, e
        else:
            why = "No module named %s" % rest[1]
        if found is None:
            sys.stderr.write("%s: %s\n" % (sys.executable, why))   # as python3 -m says it
            sys.exit(1)
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    elif rest[0] == "-c":
        if len(rest) < 2:
            _fail("-c needs a command")
        sys.argv = ["-c"] + rest[2:]
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main            # as python3 -c makes it
        exec(compile(rest[1], "<string>", "exec"), main.__dict__)
    else:
        script = rest[0]
        if not os.path.exists(script):
            _fail("no such script: " + script)
        sys.argv = rest
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        # as `python3 script.py` runs it: compiled from its bytes (so a coding cookie counts)
        # into a fresh __main__ (runpy.run_path would import pkgutil and typing: 10 ms)
        with open(script, "rb") as f:
            source = f.read()
        main = types.ModuleType("__main__")
        main.__file__ = os.path.abspath(script)    # absolute, as python3 makes it since 3.9
        main.__cached__ = None
        sys.modules["__main__"] = main
        exec(compile(source, main.__file__, "exec"), main.__dict__)


def main():
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        sys.exit(0 if argv else 2)
    if argv[0] != "run":
        _fail("unknown command %s (the one command is: run)" % argv[0])
    run(argv[1:])


if __name__ == "__main__":
    main()
