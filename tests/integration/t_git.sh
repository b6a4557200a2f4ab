#!/usr/bin/env bash
# t_git: a scripted git session (tests/integration/git_workload.sh: init, 45 commits, branch,
# merge, log/diff/blame/grep, gc --aggressive, repack, fsck, archive, clone, bundle) with fixed
# names and dates, run whole under glibc and preloaded (every git subprocess inherits the
# preload); the outputs, which include commit and content hashes, must be identical.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
command -v git >/dev/null || pm_fail "git not found (scripts/install-deps.sh check installs it)"

mkdir -p "$PM_TMP/glibc" "$PM_TMP/preload"
pm_run glibc git bash "$PM_IDIR/git_workload.sh" "$PM_TMP/glibc"
pm_run preload git bash "$PM_IDIR/git_workload.sh" "$PM_TMP/preload"
pm_expect_ok glibc git
pm_expect_ok preload git
pm_compare_runs git
echo "ok git: identical output ($(wc -l <"$PM_TMP/git.glibc.out") lines)"
grep -A4 '^== archive' "$PM_TMP/git.glibc.out"
