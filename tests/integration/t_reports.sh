#!/usr/bin/env bash
# t_reports: heap reports from a preloaded program with known allocation sites.
#   - a burst of SIGUSR1 while another thread churns gives a dump (no deadlock, no crash)
#   - every format appears; the JSON parses and its estimates for the known sites (512 MiB and
#     1 GiB live) land within 5 standard deviations of the truth at the default sample rate (512k):
#     the estimate's relative deviation is sqrt(rate / live), 3.1% for 512 MiB, so the bound is
#     15.6% there (a 10% bound, 3.2 deviations, failed about once in 300 runs); its live total is right
#   - google-pprof and jeprof read the .heap file and name the sites
#   - headless Chromium renders the .html report (no script errors, the heap map, the top sites)
#     and writes a screenshot under build/; pm-report html of two dumps puts site_growth first
#   - go tool pprof reads the .pb.gz (profile.proto) file: its totals for each sample type equal
#     the JSON's sums, it names the sites; default type inuse_space, period the rate, build IDs
#   - the folded file has the sites' stacks; pm-report top, diff and folded read the JSON, and diff
#     names the site that grew between two dumps
#   - leaks:true names the leaking site at exit
# Not a glibc comparison: glibc has no reports. The program's own output is checked instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
pm_setup
pm_build sites "$PM_IDIR/sites.c" -O1 -fno-omit-frame-pointer
prog="$PM_BUILD/sites"
out="$PM_TMP/out"; mkdir -p "$out"
ctl="$PM_TMP/ctl"

coproc RUN { LD_PRELOAD="$POOLMALLOC_SO" POOLMALLOC_CONF="formats:all,leaks:true,dir:$out,prefix:t" \
             exec "$prog" "$ctl" 2>"$PM_TMP/stderr"; }
pid=$RUN_PID
read -r -t 60 line <&"${RUN[0]}" || pm_fail "the program did not start" "$(cat "$PM_TMP/stderr")"
[ "$line" = "ready 1" ] || pm_fail "unexpected output: $line"

for _ in $(seq 10); do kill -USR1 "$pid"; done            # a burst, while the churn thread runs
wait_file() { for _ in $(seq 600); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
first="$out/t.$pid.1.json"
wait_file "$first" || pm_fail "no report after SIGUSR1" "$(ls -la "$out"; cat "$PM_TMP/stderr")"
sleep 1                                                      # let the burst finish its dumps
last=$(ls "$out"/t."$pid".*.json | sort -t. -k3 -n | tail -1)
touch "$ctl.grow"
read -r -t 60 line <&"${RUN[0]}" || pm_fail "the program did not reach phase 2"
kill -USR1 "$pid"
seq_before=$(basename "$last" | cut -d. -f3)
grown="$out/t.$pid.$((seq_before + 1)).json"
wait_file "$grown" || pm_fail "no report after the second SIGUSR1" "$(ls "$out")"
sleep 0.5
touch "$ctl.stop"
read -r -t 60 line <&"${RUN[0]}" || true
wait "$pid" || pm_fail "the program failed under the preload (status $?)" "$(tail -5 "$PM_TMP/stderr")"
[ "$line" = "done" ] || pm_fail "the program did not finish: $line"

for ext in txt json heap folded pb.gz html; do
    [ -s "$out/t.$pid.1.$ext" ] || pm_fail "no .$ext report" "$(ls "$out")"
done
for f in "$out"/*; do
    [ "$(stat -c %a "$f")" = 600 ] || pm_fail "$f has mode $(stat -c %a "$f"), want 600"
done
dumps=$(ls "$out"/t."$pid".*.json | wc -l)
echo "dumps: $dumps (11 signals)"

python3 - "$first" "$grown" <<'PY' || pm_fail "the JSON estimates are off" "$(cat "$PM_TMP/py.err" 2>/dev/null)"
import json, sys
first, grown = (json.load(open(p)) for p in sys.argv[1:3])
def site(doc, name):
    for s in doc["sites"]:
        if any(f["symbol"].startswith(name + "+") for f in s["frames"]):
            return s
    raise SystemExit(f"no site through {name}")
RATE = 512 << 10
def check(name, got, want):
    tol = 5 * (RATE / want) ** 0.5          # five standard deviations of a byte-sampled estimate
    print(f"{name}: estimated {got}, true {want}, error {100 * (got - want) / want:+.1f}% (bound {100 * tol:.1f}%)")
    if abs(got - want) > tol * want:
        raise SystemExit(f"{name}: {got} is not within {100 * tol:.1f}% of {want}")
truth = {"site_small": (512 << 20) // 100 * 100, "site_large": (1024 << 20) // (40 << 10) * (40 << 10)}
for name, want in truth.items():
    check(name, site(first, name)["live_bytes"], want)
check("site_growth", site(grown, "site_growth")["live_bytes"], (256 << 20) // 3000 * 3000)
t = first["totals"]
nsmall, nlarge, ngrow = (512 << 20) // 100, (1024 << 20) // (40 << 10), (256 << 20) // 3000
blocks = nsmall * 112 + nlarge * (40 << 10) + 8 * (nsmall + nlarge + ngrow)   # class sizes, pointer arrays
assert blocks <= t["live_bytes"] < blocks + (16 << 20), (t["live_bytes"], blocks)
assert first["sample_rate"] == 524288
PY

for tool in google-pprof jeprof; do
    command -v $tool >/dev/null || pm_fail "$tool is not installed (scripts/install-deps.sh check installs it)"
    $tool --text "$prog" "$out/t.$pid.1.heap" >"$PM_TMP/$tool.out" 2>"$PM_TMP/$tool.err" ||
        pm_fail "$tool cannot read the .heap file" "$(tail -5 "$PM_TMP/$tool.err")"
    for name in site_small site_large; do
        grep -q "$name" "$PM_TMP/$tool.out" || pm_fail "$tool does not name $name" "$(head -20 "$PM_TMP/$tool.out")"
    done
    grep -q "Adjusting heap profiles for 1-in-524288 sampling rate" "$PM_TMP/$tool.err" ||
        pm_fail "$tool did not unbias by the sample rate" "$(cat "$PM_TMP/$tool.err")"
    echo "$tool: $(grep -m1 '^Total' "$PM_TMP/$tool.out")"
done

# profile.proto: go tool pprof reads it, names the sites, and its totals are the JSON's, exactly
command -v go >/dev/null || pm_fail "go is not installed (scripts/install-deps.sh check installs golang-go)"
export GOCACHE="$PM_TMP/gocache" HOME="${HOME:-$PM_TMP}"
for index in inuse_space alloc_space; do
    go tool pprof -top -unit=B -sample_index=$index "$out/t.$pid.1.pb.gz" >"$PM_TMP/gopprof.$index" 2>"$PM_TMP/gopprof.err" ||
        pm_fail "go tool pprof cannot read the .pb.gz file ($index)" "$(tail -5 "$PM_TMP/gopprof.err")"
done
# the totals, each sample type's sum over the samples (-raw: -top rounds its "total" to 6 digits)
go tool pprof -raw "$out/t.$pid.1.pb.gz" >"$PM_TMP/gopprof.raw" 2>/dev/null || pm_fail "go tool pprof -raw failed"
python3 "$PM_ROOT/tests/proto_totals.py" "$out/t.$pid.1.pb.gz" "$out/t.$pid.1.json" >"$PM_TMP/totals.out" 2>&1 ||
    pm_fail "go tool pprof's totals are not the JSON's" "$(cat "$PM_TMP/totals.out")"
cat "$PM_TMP/totals.out"
for name in site_small site_large main; do
    grep -q " $name\$" "$PM_TMP/gopprof.inuse_space" || pm_fail "go tool pprof does not name $name" "$(head -20 "$PM_TMP/gopprof.inuse_space")"
done
go tool pprof -top "$out/t.$pid.1.pb.gz" 2>/dev/null | grep -q "^Type: inuse_space" || pm_fail "the default sample type is not inuse_space"
grep -q "^PeriodType: space bytes" "$PM_TMP/gopprof.raw" || pm_fail "no period type space/bytes" "$(head "$PM_TMP/gopprof.raw")"
grep -q "^Period: 524288" "$PM_TMP/gopprof.raw" || pm_fail "the period is not the sample rate"
grep -qE "build ?[iI][dD]|[0-9a-f]{40}" "$PM_TMP/gopprof.raw" || pm_fail "no build IDs in the mappings" "$(grep -A5 Mappings "$PM_TMP/gopprof.raw")"
echo "go tool pprof: $(sed -n 's/^Showing nodes accounting for //p' "$PM_TMP/gopprof.inuse_space") (inuse_space; the JSON's sum)"

grep -q ';site_small [0-9]' "$out/t.$pid.1.folded" || pm_fail "the folded stacks lack site_small" "$(head "$out/t.$pid.1.folded")"
grep -q '^main;site_small\|;main;site_small' "$out/t.$pid.1.folded" || pm_fail "folded stacks are not outermost first"

report="$PM_ROOT/tools/pm-report"

# The HTML report, in a real browser: headless Chromium runs its script (no errors), the DOM has the
# heap map and the top sites, and a screenshot goes under build/. Then pm-report html of two dumps
# shows what grew.
command -v chromium >/dev/null || pm_fail "chromium is not installed (scripts/install-deps.sh check installs it)"
browse() {   # browse FILE.html OUT.dom [SCREENSHOT.png]
    local args=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$PM_TMP/chrome"
                --window-size=1400,1600 --virtual-time-budget=10000)
    timeout 120 chromium "${args[@]}" --dump-dom "file://$1" >"$2" 2>"$PM_TMP/chromium.err" ||
        pm_fail "chromium could not load $1" "$(tail -5 "$PM_TMP/chromium.err")"
    if [ -n "${3-}" ]; then
        timeout 120 chromium "${args[@]}" --screenshot="$3" "file://$1" >/dev/null 2>>"$PM_TMP/chromium.err" ||
            pm_fail "chromium could not take a screenshot" "$(tail -5 "$PM_TMP/chromium.err")"
    fi
}
mkdir -p "$PM_BUILD/screenshots"
shot="$PM_BUILD/screenshots/heap-report.png"
rm -f "$shot"
browse "$out/t.$pid.1.html" "$PM_TMP/page.dom" "$shot"
python3 - "$PM_TMP/page.dom" <<'PY' || pm_fail "the HTML report did not render as it should" "$(head -c 3000 "$PM_TMP/page.dom")"
import re, sys
dom = open(sys.argv[1]).read()
assert 'data-status="ok"' in dom, "the page's script did not finish: " + (re.findall(r'data-status="(\w+)"', dom) or ["?"])[0]
errors = re.search(r'<pre id="errors">(.*?)</pre>', dom, re.S)
assert errors and not errors.group(1).strip(), "script errors: " + errors.group(1)
pools = dom.count('class="pool"')
assert pools >= 100, f"the heap map has {pools} pools"       # 512 MiB of 100-byte blocks and 1 GiB of 40 KiB
top = re.search(r'<table id="top-sites">(.*?)</table>', dom, re.S).group(1)
names = re.findall(r'class="l mono site-name">([^<]*)<', top)
assert {"site_large", "site_small"} <= set(names[:4]), names
assert 'id="heap-map"' in dom and 'id="bytes-bar"' in dom and 'class="f"' in dom
print(f"html: {pools} pools on the map; top sites {names[:3]}")
PY
[ -s "$shot" ] && [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] ||
    pm_fail "no PNG screenshot at $shot"
"$report" html "$first" "$grown" -o "$PM_TMP/two.html" || pm_fail "pm-report html failed"
browse "$PM_TMP/two.html" "$PM_TMP/two.dom"
python3 - "$PM_TMP/two.dom" <<'PY' || pm_fail "pm-report html of two dumps does not show what grew" "$(head -c 2000 "$PM_TMP/two.dom")"
import re, sys
dom = open(sys.argv[1]).read()
assert 'data-status="ok"' in dom
grew = re.search(r'<table id="growth-table">(.*?)</table>', dom, re.S).group(1)
first = re.findall(r'<td class="l mono">([^<]*)<', grew)
assert first and first[0] == "site_growth", first[:3]
PY
echo "html: rendered by $(chromium --version 2>/dev/null | head -1); screenshot ${shot#"$PM_ROOT"/}"
"$report" top "$first" -n 3 >"$PM_TMP/top.out" || pm_fail "pm-report top failed"
grep -q site_large "$PM_TMP/top.out" || pm_fail "pm-report top does not show site_large" "$(cat "$PM_TMP/top.out")"
"$report" diff "$first" "$grown" -n 1 >"$PM_TMP/diff.out" || pm_fail "pm-report diff failed"
grep -A2 '^#1 ' "$PM_TMP/diff.out" >"$PM_TMP/diff.top" || true
grep -q site_growth "$PM_TMP/diff.top" || pm_fail "pm-report diff does not put site_growth first" "$(cat "$PM_TMP/diff.out")"
"$report" folded "$first" >"$PM_TMP/folded.out" || pm_fail "pm-report folded failed"
grep -q ';site_large [0-9]' "$PM_TMP/folded.out" || pm_fail "pm-report folded lacks site_large"

grep -q "leaks at exit" "$PM_TMP/stderr" || pm_fail "no leak report at exit" "$(tail "$PM_TMP/stderr")"
grep -A3 '^#1 ' "$PM_TMP/stderr" >"$PM_TMP/leak.top" || true
grep -q site_leak "$PM_TMP/leak.top" || pm_fail "the leak report does not name site_leak first" "$(grep -A8 'leaks at exit' "$PM_TMP/stderr")"
echo "ok: $(grep 'leaks at exit' "$PM_TMP/stderr")"
