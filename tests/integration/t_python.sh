#!/usr/bin/env bash
# t_python: Debian's CPython with PYTHONMALLOC=malloc (every object allocation goes through
# malloc) runs tests/integration/workload.py under glibc and preloaded: identical stdout (one
# digest per section). Then, if CPython's own test suite is installed (Debian package
# libpython3.X-testsuite), a few quick regression tests run under both; they must pass under
# preload exactly as under glibc.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)
{ [ -n "$PY" ] && [ -x "$PY" ]; } || pm_fail "python3 not found (scripts/install-deps.sh check installs it)"
echo "python: $PY ($("$PY" --version 2>&1))"

export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
pm_compare workload "$PY" "$PM_IDIR/workload.py"
tail -n 1 "$PM_TMP/workload.glibc.out"

# CPython's regression tests: only those whose modules are actually installed.
wanted=(test_list test_dict test_set test_unicode test_json test_re test_collections test_sort test_deque test_bytes)
have=$("$PY" - "${wanted[@]}" <<'PYEOF' 2>/dev/null || true
import importlib.util, sys
ok = []
for name in sys.argv[1:]:
    try:
        if importlib.util.find_spec("test." + name) is not None:
            ok.append(name)
    except Exception:
        pass
print(" ".join(ok))
PYEOF
)
if [ -z "$have" ]; then
    pm_note "CPython's test suite is not installed (package libpython3.$("$PY" -c 'import sys; print(sys.version_info[1])')-testsuite): skipped ${wanted[*]}"
    exit 0
fi
missing=$(comm -23 <(printf '%s\n' "${wanted[@]}" | sort) <(tr ' ' '\n' <<<"$have" | sort) | tr '\n' ' ')
[ -z "$missing" ] || pm_note "CPython tests not installed, skipped: $missing"

# The test runner prints timings, so compare only the exit status and the verdict lines.
PM_ANY_RC=1
read -ra have_list <<<"$have"
pm_run glibc regrtest "$PY" -m test -q -j2 "${have_list[@]}"
pm_run preload regrtest "$PY" -m test -q -j2 "${have_list[@]}"
for mode in glibc preload; do
    grep -E '^(Tests result|== Tests result|[0-9]+ tests? (OK|failed|skipped)|All [0-9]+ tests OK)' \
        "$PM_TMP/regrtest.$mode.out" | sed 's/ in [0-9.]* *[a-z]*\.*$//' >"$PM_TMP/verdict.$mode.out" || true
    cp "$PM_TMP/regrtest.$mode.rc" "$PM_TMP/verdict.$mode.rc"
    { cat "$PM_TMP/regrtest.$mode.err"; tail -n 30 "$PM_TMP/regrtest.$mode.out"; } >"$PM_TMP/verdict.$mode.err"
done
[ "$(cat "$PM_TMP/regrtest.glibc.rc")" = 0 ] ||
    pm_note "CPython tests fail even under glibc (status $(cat "$PM_TMP/regrtest.glibc.rc")); comparing verdicts only"
pm_compare_runs verdict
cat "$PM_TMP/verdict.preload.out"
echo "ok CPython tests under both: $have"
