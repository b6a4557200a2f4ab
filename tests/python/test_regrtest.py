"""CPython's own regression tests under the module: the slice that tests/integration/t_python.sh
runs under LD_PRELOAD (PYTHONMALLOC=malloc) runs here through `python3 -m poolmalloc run -m test`,
in one process (no -j: workers would be plain interpreters), with poolmalloc serving every
domain and sampling every 4 KiB with Python stacks. The verdict must be the same as without it.
Needs Debian's libpython3.X-testsuite (scripts/install-deps.sh check installs it)."""
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import unittest

PY = os.environ.get("PM_PYTHON", sys.executable)
WANTED = ["test_list", "test_dict", "test_set", "test_unicode", "test_json", "test_re", "test_collections",
          "test_sort", "test_deque", "test_bytes", "test_gc", "test_weakref"]


def installed():
    out = subprocess.run([PY, "-c", "import importlib.util, sys; print(' '.join(n for n in sys.argv[1:] "
                          "if importlib.util.find_spec('test.' + n)))"] + WANTED,
                         capture_output=True, text=True)
    return out.stdout.split()


def verdict(out):
    lines = [l for l in out.splitlines() if re.match(r"^(== )?Tests result|^All \d+ tests OK|^\d+ tests? (OK|failed)", l)]
    return [re.sub(r" in [0-9.]+ *[a-z]*\.*$", "", l) for l in lines]


class RegressionTests(unittest.TestCase):
    def test_cpython_tests_pass_under_the_module_as_without_it(self):
        have = installed()
        if not have:
            self.fail("CPython's test suite is not installed (Debian package libpython3.%d-testsuite)" % sys.version_info[1])
        env = dict(os.environ)
        env.pop("PYTHONMALLOC", None)
        cwd = tempfile.mkdtemp(prefix="pm-regrtest-")
        plain = subprocess.run([PY, "-m", "test", "-q"] + have, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
        ours = subprocess.run([PY, "-m", "poolmalloc", "run", "--sample", "4k", "-m", "test", "-q"] + have,
                              capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
        self.assertEqual(plain.returncode, 0, "the tests fail without the module: " + plain.stdout[-2000:])
        self.assertEqual(ours.returncode, 0, ours.stdout[-3000:] + ours.stderr[-2000:])
        self.assertEqual(verdict(ours.stdout), verdict(plain.stdout))
        self.assertIn("Tests result: SUCCESS", ours.stdout)


if __name__ == "__main__":
    unittest.main()
