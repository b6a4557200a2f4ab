#!/usr/bin/env bash
# Installs the Debian packages poolmalloc needs, and only those that are missing. It is the one
# place that calls apt-get, and the Makefile runs it before its first compile (an order-only
# prerequisite of every object), so a fresh machine never ends a build in a compiler error.
#
#   scripts/install-deps.sh LEVEL...          install what the levels need
#   scripts/install-deps.sh --verify LEVEL... install nothing: name the first missing package in
#                                             one line, with the command that installs it, exit 1
# Levels (several may be given; each includes build):
#   build   compiler, libunwind, zlib, pkg-config               (make, make install, make debug)
#   demo    + python3                                           (make demo)
#   python  + python3-dev, CPython's headers                    (make python, make install)
#   check   + Criterion and the real programs the tests run,    (make check, make fuzz)
#             clang and libFuzzer for the fuzzers (tests/fuzz)
#   bench   + jemalloc, mimalloc and tcmalloc, the baselines,   (make bench)
#             python3-dev for the CPython module's benchmark
set -euo pipefail
verify=0
[ "${1:-}" = "--verify" ] && { verify=1; shift; }
[ $# -gt 0 ] || set -- build
want=(gcc make pkg-config libunwind-dev zlib1g-dev)
for level in "$@"; do
  case "$level" in
    build) ;;
    demo) want+=(python3) ;;
    python) want+=(python3 python3-dev) ;;
    check)
      want+=(libcriterion-dev python3 sqlite3 perl git coreutils)
      # the CPython module (make python, tested by make python-check)
      want+=(python3-dev)
      # google-pprof and jeprof, which must read our pprof reports
      want+=(google-perftools libjemalloc-dev)
      # go tool pprof, which must read our profile.proto reports (formats:proto)
      want+=(golang-go)
      # a real browser for the HTML report (formats:html), headless
      want+=(chromium)
      # CPython's own regression tests, which tests/integration/t_python.sh runs under the preload
      pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3.11)
      want+=("libpython$pyver-testsuite")
      # the libFuzzer targets (tests/fuzz): clang and its libFuzzer runtime, of one LLVM version
      # (Debian 12's default, 14; the Makefile's FUZZ_CC is clang-14 to match)
      want+=(clang-14 libfuzzer-14-dev) ;;
    bench) want+=(python3 python3-dev sqlite3 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 valgrind time) ;;
    *) echo "usage: $0 [--verify] build|demo|python|check|bench..." >&2; exit 2 ;;
  esac
done
missing=()
for p in "${want[@]}"; do
  case " ${missing[*]} " in *" $p "*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ $verify -eq 1 ]; then
  word=package; [ ${#missing[@]} -gt 1 ] && word=packages
  echo "poolmalloc: missing Debian $word ${missing[*]}; install with: make deps (or: ${SUDO:+sudo }apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
