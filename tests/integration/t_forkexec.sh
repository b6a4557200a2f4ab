#!/usr/bin/env bash
# t_forkexec: tests/integration/forkexec.c forks 300 times while four threads allocate and free;
# children allocate at once (the allocator must be usable after fork whatever locks the other
# threads held), then exec /bin/true or echo, or stay and allocate (with a thread, with blocks of
# threads that do not exist in the child, or after a nested fork) and exit 0. The parent checks
# every child's status (a deadlocked child dies of SIGALRM after 30 s and is reported) and
# prints a summary; glibc and preloaded runs must print the same and exit 0.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
pm_build forkexec tests/integration/forkexec.c

pm_compare forkexec "$PM_BUILD/forkexec" 300
tail -n 1 "$PM_TMP/forkexec.glibc.out"
cat "$PM_TMP/forkexec.preload.err"
