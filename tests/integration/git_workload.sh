#!/usr/bin/env bash
# git_workload.sh DIR: a deterministic git session in DIR (used by t_git.sh). Run whole under
# LD_PRELOAD, so bash, git and every helper git starts (pack-objects, index-pack, gc, ...) use
# the allocator. Author/committer names and dates are fixed, so every hash is reproducible.
set -euo pipefail
dir=$1
export HOME="$dir/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null TZ=UTC LC_ALL=C
export GIT_AUTHOR_NAME="Ada Tester" GIT_AUTHOR_EMAIL=ada@example.org
export GIT_COMMITTER_NAME="Bob Committer" GIT_COMMITTER_EMAIL=bob@example.org
mkdir -p "$HOME" "$dir/repo"
cd "$dir/repo"
t=1700000000
first() {             # first N CMD...: the first N lines of CMD's output (no SIGPIPE for CMD)
    local n=$1; shift
    "$@" >"$dir/first.tmp"
    head -n "$n" "$dir/first.tmp"
}
commit() {            # commit MESSAGE: commit everything with the next fixed timestamp
    t=$((t + 3600))
    GIT_AUTHOR_DATE="@$t +0000" GIT_COMMITTER_DATE="@$t +0000" git commit -q -m "$1"
}
git init -q -b main .
git config core.autocrlf false
git config gc.auto 0
git config pack.threads 2

# 40 commits touching generated files of varied sizes
for i in $(seq 1 40); do
    mkdir -p "src/d$((i % 5))"
    awk -v i="$i" 'BEGIN { for (l = 0; l < 200 + i * 40; l++) printf "line %d of file %d: %x %s\n", l, i, (l * 2654435761 + i) % 4294967296, (l % 7 == i % 7 ? "changed" : "same") }' \
        >"src/d$((i % 5))/file$((i % 13)).txt"
    seq "$i" 7 $((i * 500)) >"numbers$((i % 3)).txt"
    [ $((i % 9)) -ne 0 ] || git rm -q --cached "numbers$((i % 3)).txt"
    git add -A
    commit "commit $i: update file$((i % 13)) in d$((i % 5))"
done
GIT_COMMITTER_DATE="@$t +0000" git tag -a v1 -m "version 1"

# a branch, diverging work, and a merge
git checkout -q -b feature HEAD~10
for i in 1 2 3 4 5; do
    seq -f "feature $i line %g" 1 $((i * 100)) >"feature$i.txt"
    sed -i "s/same/feat$i/" src/d1/file*.txt 2>/dev/null || true
    git add -A
    commit "feature step $i"
done
git checkout -q main
t=$((t + 3600))
GIT_AUTHOR_DATE="@$t +0000" GIT_COMMITTER_DATE="@$t +0000" git merge -q -X theirs --no-edit feature -m "merge feature"

echo "== log"
first 60 git log --graph --format='%h %an %ad %s' --date=iso-strict
echo "== log --stat (last 5)"
git log -5 --stat --format='%H%n%s'
echo "== diff v1..main --stat, and a patch excerpt"
first 200 git diff --stat v1 main | tail -n 5
first 80 git diff v1 main -- src/d1
git diff --numstat HEAD~20 HEAD | sort
echo "== blame, grep, show"
first 20 git blame -s --date=short src/d1/file1.txt
git grep -c changed | sort
first 20 git show --stat HEAD~3
echo "== gc, repack, fsck"
git gc --quiet --aggressive
git repack -q -a -d -f --threads=2 --window=50 --depth=20
git fsck --full --strict --no-progress 2>&1
git count-objects -v | grep -E '^(count|in-pack|packs|garbage):'
git rev-list --all --objects | sort | sha256sum
echo "== archive and rev-parse"
git archive --format=tar HEAD | sha256sum
git rev-parse HEAD v1 main~7 feature
git ls-tree -r HEAD | sha256sum
echo "== clone and bundle"
git clone -q --no-local "$dir/repo" "$dir/clone"
git -C "$dir/clone" log --oneline | wc -l
git bundle create -q "$dir/all.bundle" --all
git bundle verify -q "$dir/all.bundle" 2>&1 | sed "s|$dir|DIR|g"
