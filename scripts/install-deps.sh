#!/usr/bin/env bash
# Installs the Debian packages poolmalloc needs, and only those that are missing.
#   scripts/install-deps.sh build   compiler, libunwind, pkg-config
#   scripts/install-deps.sh check   + Criterion and the real programs the integration tests run
#   scripts/install-deps.sh bench   + jemalloc, mimalloc and tcmalloc, the comparison baselines
# It is the one place that calls apt-get; `make demo`, `make check` and `make bench` call it.
set -euo pipefail
want=(gcc make pkg-config libunwind-dev)
case "${1:-build}" in
  build) ;;
  check)
    want+=(libcriterion-dev python3 sqlite3 perl git coreutils)
    # google-pprof and jeprof, which must read our pprof reports
    want+=(google-perftools libjemalloc-dev)
    # CPython's own regression tests, which tests/integration/t_python.sh runs under the preload
    pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 3.11)
    want+=("libpython$pyver-testsuite") ;;
  bench) want+=(libcriterion-dev python3 sqlite3 libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4 valgrind) ;;
  *) echo "usage: $0 build|check|bench" >&2; exit 2 ;;
esac
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
