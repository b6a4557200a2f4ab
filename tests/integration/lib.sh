# tests/integration/lib.sh: shared helpers, sourced by run.sh and by every t_*.sh.
#
# Contract between run.sh and a test script t_NAME.sh:
#   * exit status 0 means PASS, anything else FAIL;
#   * pm_fail writes the one-line reason to $PM_REASON_FILE (run.sh prints "FAIL NAME: reason")
#     and the details (diff excerpts, stderr tails) to the script's stderr, which run.sh keeps in
#     build/tests/logs/NAME.log and echoes (indented) on its own stderr;
#   * pm_note adds a remark (e.g. "skipped X: not installed") that run.sh shows under PASS/FAIL.
# A t_*.sh can also be run by hand:  POOLMALLOC_SO=$PWD/build/libpoolmalloc.so bash tests/integration/t_sort.sh
#
# Environment:
#   POOLMALLOC_SO   absolute path of the allocator to preload (required)
#   PM_TIMEOUT      seconds allowed for one program run (default 120)
#   PM_KEEP_TMP=1   keep the scratch directory (its path is printed)
#   CC              C compiler for the test programs (default cc)
#   PM_PRELOAD_CONF POOLMALLOC_CONF for the preloaded runs (t_hardened.sh sets it)

PM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PM_IDIR="$PM_ROOT/tests/integration"
PM_BUILD="$PM_ROOT/build/tests"
PM_TIMEOUT=${PM_TIMEOUT:-120}
PM_TEST_NAME=${PM_TEST_NAME:-$(basename "$0" .sh)}
PM_TMP=""

# pm_fail REASON [DETAILS]: record the reason, print the details, save the runs' outputs, exit 1.
pm_fail() {
    local reason=$1 details=${2-}
    if [ -n "${PM_REASON_FILE-}" ]; then printf '%s\n' "$reason" >"$PM_REASON_FILE"; fi
    printf 'FAIL: %s\n' "$reason" >&2
    if [ -n "$details" ]; then printf '%s\n' "$details" >&2; fi
    if [ -n "$PM_TMP" ] && [ -d "$PM_TMP" ]; then
        local keep="$PM_BUILD/logs/$PM_TEST_NAME.failed"
        rm -rf "$keep" && mkdir -p "$keep"
        find "$PM_TMP" -maxdepth 1 -type f \( -name '*.out' -o -name '*.err' -o -name '*.rc' \) \
            -size -20M -exec cp {} "$keep/" \; 2>/dev/null || true
        printf '(outputs of both runs kept in %s)\n' "${keep#"$PM_ROOT"/}" >&2
    fi
    exit 1
}

pm_note() {
    printf 'note: %s\n' "$*" >&2
    if [ -n "${PM_NOTE_FILE-}" ]; then printf '%s\n' "$*" >>"$PM_NOTE_FILE"; fi
}

# pm_check_so: the allocator to preload must exist, be absolute, export malloc & co, and load.
pm_check_so() {
    [ -n "${POOLMALLOC_SO-}" ] || { echo "POOLMALLOC_SO is not set"; return 1; }
    case "$POOLMALLOC_SO" in /*) ;; *) echo "POOLMALLOC_SO=$POOLMALLOC_SO is not an absolute path"; return 1 ;; esac
    [ -f "$POOLMALLOC_SO" ] || { echo "POOLMALLOC_SO=$POOLMALLOC_SO does not exist"; return 1; }
    if command -v nm >/dev/null 2>&1; then
        local syms missing="" f
        syms=$(nm -D --defined-only "$POOLMALLOC_SO" 2>/dev/null | awk '{print $NF}')
        for f in malloc free calloc realloc; do
            grep -qx "$f" <<<"$syms" || missing+=" $f"
        done
        [ -z "$missing" ] || { echo "$POOLMALLOC_SO does not export:$missing"; return 1; }
    fi
    local err
    err=$(env LD_PRELOAD="$POOLMALLOC_SO" /bin/true 2>&1) || { echo "/bin/true fails under LD_PRELOAD=$POOLMALLOC_SO: $err"; return 1; }
    if grep -q 'ld.so' <<<"$err"; then echo "$err"; return 1; fi
    return 0
}

# pm_setup: scratch directory (removed on exit) and allocator checks. Call first in every t_*.sh.
pm_setup() {
    local why
    why=$(pm_check_so) || pm_fail "bad POOLMALLOC_SO: $why"
    mkdir -p "$PM_BUILD"
    rm -rf "$PM_BUILD/logs/$PM_TEST_NAME.failed"    # outputs kept by an earlier failing run
    PM_TMP=$(mktemp -d "${TMPDIR:-/tmp}/pm-$PM_TEST_NAME.XXXXXX")
    if [ "${PM_KEEP_TMP:-0}" = 1 ]; then
        echo "scratch directory: $PM_TMP" >&2
    else
        trap 'rm -rf "$PM_TMP"' EXIT
    fi
}

# pm_build NAME SOURCE [EXTRA CFLAGS...]: compile build/tests/NAME from SOURCE unless up to date.
pm_build() {
    local name=$1 src=$2 out
    shift 2
    out="$PM_BUILD/$name"
    mkdir -p "$PM_BUILD"
    case "$src" in /*) ;; *) src="$PM_ROOT/$src" ;; esac
    if [ -x "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$PM_IDIR/lib.sh" ]; then return 0; fi
    local log
    if ! log=$("${CC:-cc}" -O2 -g -pthread -Wall -Wextra -o "$out.tmp$$" "$src" "$@" 2>&1); then
        rm -f "$out.tmp$$"
        pm_fail "cannot build $name from ${src#"$PM_ROOT"/}" "$(head -30 <<<"$log")"
    fi
    [ -z "$log" ] || printf '%s\n' "$log" >&2      # warnings
    mv -f "$out.tmp$$" "$out"
}

# pm_signame RC: "exit status N" or "killed by SIGxxx" or "timed out".
pm_describe_rc() {
    local rc=$1
    if [ "$rc" = 124 ]; then echo "timed out after ${PM_TIMEOUT}s"
    elif [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then echo "killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128))) (status $rc)"
    else echo "exit status $rc"; fi
}

# pm_run MODE LABEL CMD...: run CMD under MODE (glibc = no preload, preload = LD_PRELOAD of
# $POOLMALLOC_SO), stdin from $PM_STDIN (default /dev/null), in $PM_CWD (default $PM_TMP).
# Leaves $PM_TMP/LABEL.MODE.{out,err,rc}. Never fails itself.
pm_run() {
    local mode=$1 label=$2 rc=0
    shift 2
    local -a pre=(env -u LD_PRELOAD)
    [ "$mode" = preload ] && pre=(env LD_PRELOAD="$POOLMALLOC_SO" ${PM_PRELOAD_CONF:+POOLMALLOC_CONF="$PM_PRELOAD_CONF"})
    local base="$PM_TMP/$label.$mode"
    (cd "${PM_CWD:-$PM_TMP}" && exec timeout -k 10 "$PM_TIMEOUT" "${pre[@]}" "$@") \
        <"${PM_STDIN:-/dev/null}" >"$base.out" 2>"$base.err" || rc=$?
    echo "$rc" >"$base.rc"
    return 0
}

# pm_last_err FILE: the last non-empty line of a stderr file, shortened, for a reason line.
pm_last_err() {
    local line
    line=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1 | cut -c1-200) || true
    [ -z "$line" ] || printf ' -- %s' "$line"
}

# pm_expect_ok MODE LABEL: fail unless that run exited 0 without ld.so complaints.
pm_expect_ok() {
    local mode=$1 label=$2 base rc
    base="$PM_TMP/$label.$mode"
    rc=$(cat "$base.rc")
    if [ "$mode" = preload ] && grep -q 'ld\.so.*LD_PRELOAD' "$base.err"; then
        pm_fail "$label: LD_PRELOAD was not applied" "$(grep 'ld\.so' "$base.err" | head -5)"
    fi
    if [ "$rc" != 0 ]; then
        local who="under LD_PRELOAD=$POOLMALLOC_SO"
        [ "$mode" = glibc ] && who="under glibc (no preload) -- an environment problem, not the allocator"
        pm_fail "$label: $(pm_describe_rc "$rc") $who$(pm_last_err "$base.err")" \
            "--- last lines of its stderr:
$(tail -n 20 "$base.err")
--- last lines of its stdout:
$(tail -n 10 "$base.out")"
    fi
}

# pm_compare_runs LABEL: both runs of LABEL must have the same exit status and stdout.
pm_compare_runs() {
    local label=$1 g="$PM_TMP/$1.glibc" p="$PM_TMP/$1.preload" rg rp
    rg=$(cat "$g.rc"); rp=$(cat "$p.rc")
    if grep -q 'ld\.so.*LD_PRELOAD' "$p.err"; then
        pm_fail "$label: LD_PRELOAD was not applied" "$(grep 'ld\.so' "$p.err" | head -5)"
    fi
    if [ "$rg" != "$rp" ]; then
        pm_fail "$label: $(pm_describe_rc "$rp") under preload, $(pm_describe_rc "$rg") under glibc$(pm_last_err "$p.err")" \
            "--- last lines of stderr under preload:
$(tail -n 20 "$p.err")
--- last lines of stderr under glibc:
$(tail -n 5 "$g.err")"
    fi
    if ! cmp -s "$g.out" "$p.out"; then
        pm_fail "$label: stdout differs between glibc and preload ($(wc -l <"$g.out") vs $(wc -l <"$p.out") lines)" \
            "--- diff -u glibc preload | head -40:
$(diff -u --label glibc --label preload "$g.out" "$p.out" | head -40)
--- last lines of stderr under preload:
$(tail -n 10 "$p.err")"
    fi
}

# pm_compare LABEL CMD...: run CMD under glibc and under preload, require both to exit 0 with
# identical stdout. Set PM_ANY_RC=1 to only require equal exit statuses.
pm_compare() {
    local label=$1
    shift
    pm_run glibc "$label" "$@"
    pm_run preload "$label" "$@"
    if [ "${PM_ANY_RC:-0}" != 1 ]; then
        pm_expect_ok glibc "$label"
        pm_expect_ok preload "$label"
    fi
    pm_compare_runs "$label"
    printf 'ok %s: identical stdout (%s lines), exit status %s\n' "$label" \
        "$(wc -l <"$PM_TMP/$label.glibc.out")" "$(cat "$PM_TMP/$label.glibc.rc")"
}
