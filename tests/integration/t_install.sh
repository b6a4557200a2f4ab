#!/usr/bin/env bash
# t_install: `make install PREFIX=...` into a scratch prefix, then a program linked explicitly
# three ways (pkg-config and the shared library, the static archive, and plain glibc for the
# reference) must print the same thing; the two poolmalloc builds must also see their own
# statistics (pm_stats_get), which proves malloc is really ours in them. The CPython module
# installed with them must run from the prefix.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup

prefix="$PM_TMP/prefix"
make -C "$PM_ROOT" --no-print-directory -s install PREFIX="$prefix" >"$PM_TMP/install.log" 2>&1 ||
    pm_fail "make install failed: $(pm_last_err "$PM_TMP/install.log")"
for f in lib/libpoolmalloc.so lib/libpoolmalloc.a include/poolmalloc.h lib/pkgconfig/poolmalloc.pc bin/pm-demo bin/pm-run bin/pm-report; do
    [ -e "$prefix/$f" ] || pm_fail "make install did not install $f"
done
# the CPython module, where /usr/bin/python3 finds local packages under the prefix
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
site="$prefix/lib/python$pyver/dist-packages"
out=$(cd "$PM_TMP" && PYTHONPATH="$site" /usr/bin/python3 -m poolmalloc run -c \
      'import poolmalloc, os; print(poolmalloc.stats()["serving_python"], os.path.dirname(poolmalloc.__file__))' 2>&1) ||
    pm_fail "the installed Python module does not run: $out"
[ "$out" = "True $site/poolmalloc" ] || pm_fail "the installed Python module: got '$out', want 'True $site/poolmalloc'"

cat >"$PM_TMP/app.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef WITH_POOLMALLOC
#include <poolmalloc.h>
#endif
int main(void) {
    char *words[1000];
    size_t total = 0;
    for (int i = 0; i < 1000; i++) {
        words[i] = malloc((size_t)i * 17 + 1);
        memset(words[i], 'a' + i % 26, (size_t)i * 17);
        words[i][i * 17] = 0;
        total += strlen(words[i]);
    }
    printf("total %zu\n", total);
#ifdef WITH_POOLMALLOC
    pm_stats_t s;
    pm_stats_get(&s);
    if (s.in_use < total) { fprintf(stderr, "pm_stats_get sees only %zu bytes\n", s.in_use); return 1; }
#endif
    for (int i = 0; i < 1000; i++) free(words[i]);
    return 0;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc=${CC:-cc}
# shellcheck disable=SC2046
$cc -O2 -DWITH_POOLMALLOC "$PM_TMP/app.c" $(pkg-config --cflags --libs poolmalloc) \
    -Wl,-rpath,"$prefix/lib" -o "$PM_TMP/app_shared" 2>"$PM_TMP/cc.err" || pm_fail "cannot link with pkg-config: $(pm_last_err "$PM_TMP/cc.err")"
# shellcheck disable=SC2046
$cc -O2 -DWITH_POOLMALLOC "$PM_TMP/app.c" $(pkg-config --static --cflags --libs poolmalloc | sed 's/-lpoolmalloc/-l:libpoolmalloc.a/') \
    -o "$PM_TMP/app_static" 2>"$PM_TMP/cc.err" || pm_fail "cannot link the static archive: $(pm_last_err "$PM_TMP/cc.err")"
$cc -O2 "$PM_TMP/app.c" -o "$PM_TMP/app_glibc"

want=$("$PM_TMP/app_glibc")
for kind in shared static; do
    got=$("$PM_TMP/app_$kind" 2>"$PM_TMP/$kind.err") || pm_fail "the $kind build failed: $(pm_last_err "$PM_TMP/$kind.err")"
    [ "$got" = "$want" ] || pm_fail "the $kind build printed '$got', glibc's '$want'"
done
libs=$(ldd "$PM_TMP/app_shared")              # not piped into grep -q: pipefail and SIGPIPE
grep -q "$prefix/lib/libpoolmalloc.so" <<<"$libs" || pm_fail "app_shared does not load the installed library" "$libs"
# the installed pm-run finds the installed library by itself
( cd "$PM_TMP" && "$prefix/bin/pm-run" --formats json --at-exit --dir "$PM_TMP" --prefix inst -- "$PM_TMP/app_glibc" ) \
    >"$PM_TMP/run.out" 2>"$PM_TMP/run.err" || pm_fail "installed pm-run failed: $(pm_last_err "$PM_TMP/run.err")"
ls "$PM_TMP"/inst.*.1.json >/dev/null 2>&1 || pm_fail "installed pm-run wrote no report" "$(cat "$PM_TMP/run.err")"
"$prefix/bin/pm-report" top "$PM_TMP"/inst.*.1.json >/dev/null || pm_fail "installed pm-report cannot read the report"
echo "ok: installed, linked with pkg-config and statically: $want"
