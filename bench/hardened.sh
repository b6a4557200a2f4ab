#!/usr/bin/env bash
# hardened.sh: what each technique of hardened:true costs (lib/heap/harden.c). Builds the library
# four more times, each leaving techniques out (never a shipped configuration), and runs the
# make-bench workloads with poolmalloc's default, full hardened:true, and each build, interleaved.
# bench/run.sh writes the table "poolmalloc's modes": each column's median over the default's.
# A technique's cost is full hardened's column over the column of the build without it.
#   no-canary     PM_HARD_NO_CANARY: no canaries written or checked (the header stays)
#   no-zero       PM_HARD_NO_ZERO: freed blocks neither zeroed nor checked in quarantine
#   no-quarantine PM_HARD_NO_QUARANTINE: freed blocks reusable at once
#   bare          all three left out: what routing every call through the slow paths and the
#                 16-byte header cost by themselves
# Environment: as bench/run.sh (BENCH_WORKLOADS, BENCH_MODE, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
modes="hardened=hardened:true"
for v in "no-canary:-DPM_HARD_NO_CANARY" "no-zero:-DPM_HARD_NO_ZERO" "no-quarantine:-DPM_HARD_NO_QUARANTINE" \
         "bare:-DPM_HARD_NO_QUARANTINE -DPM_HARD_NO_ZERO -DPM_HARD_NO_CANARY"; do
    name=${v%%:*}
    make --no-print-directory -s BUILD="build/hardened-$name" EXTRA_CFLAGS="${v#*:}" "build/hardened-$name/libpoolmalloc.so"
    modes+=" $name=hardened:true@$PWD/build/hardened-$name/libpoolmalloc.so"
done
BENCH_ALLOCATORS=${BENCH_ALLOCATORS:-"glibc poolmalloc poolmalloc-hardened poolmalloc-no-canary poolmalloc-no-zero poolmalloc-no-quarantine poolmalloc-bare"} \
BENCH_POOL_MODES=$modes bash bench/run.sh
