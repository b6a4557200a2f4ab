"""Turns the raw runs of bench/run.sh into the Markdown report.

    report.py --csv results.csv --meta meta.txt --notes notes.txt
              [--fastpath fastpath.csv] --out results.md

Only the standard library.  Every number comes from the CSV files; medians
are taken over the runs that finished successfully.
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict

ORDER = ["glibc", "jemalloc", "mimalloc", "tcmalloc", "poolmalloc", "pymalloc"]
POOL = "poolmalloc"
NOT_TIMED = {"rssfree"}  # reported in their own sections


def load_runs(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Results:
    def __init__(self, runs):
        self.runs = runs
        self.workloads = []
        allocs = set()
        self.ok = defaultdict(list)       # (wl, alloc) -> [run]
        self.bad = defaultdict(list)      # (wl, alloc) -> [status]
        for r in runs:
            wl, al = r["workload"], r["allocator"]
            if wl not in self.workloads:
                self.workloads.append(wl)
            allocs.add(al)
            if r["status"] == "ok":
                self.ok[wl, al].append(r)
            else:
                self.bad[wl, al].append(r["status"])
        self.allocs = [a for a in ORDER if a in allocs] + sorted(allocs - set(ORDER))
        self.main_allocs = [a for a in self.allocs if a != "pymalloc"]
        # poolmalloc's own modes (bench/run.sh BENCH_POOL_MODES): never peers
        self.modes = [a for a in self.allocs if a.startswith(POOL + "-")]
        self.peers = [a for a in self.main_allocs if a != POOL and a not in self.modes]
        self.timed = [w for w in self.workloads if w not in NOT_TIMED]

    def median(self, wl, al, field):
        vals = [float(r[field]) for r in self.ok.get((wl, al), []) if r[field] != ""]
        return statistics.median(vals) if vals else None

    def time(self, wl, al):
        return self.median(wl, al, "elapsed_s")

    def spread(self, wl, al):
        vals = [float(r["elapsed_s"]) for r in self.ok.get((wl, al), [])]
        return max(vals) / min(vals) if len(vals) > 1 and min(vals) > 0 else None

    def failure(self, wl, al):
        """Why a cell has no median (or None if it has one)."""
        if self.ok.get((wl, al)):
            return None
        statuses = [s for s in self.bad.get((wl, al), []) if s != "skipped"]
        if not statuses:
            return "—"
        return "FAIL (%s)" % statuses[0] if statuses[0] != "timeout" else "timeout"

    def checksum_mismatches(self, wl):
        """Allocators whose checksum differs from the reference (glibc's)."""
        sums = defaultdict(set)
        for al in self.allocs:
            for r in self.ok.get((wl, al), []):
                sums[al].add(r["checksum"])
        ref_al = "glibc" if sums.get("glibc") else next(iter(sums), None)
        if ref_al is None:
            return []
        ref = sums[ref_al]
        if len(ref) > 1:
            return [ref_al + " (differs between its own runs)"]
        return [al for al, s in sums.items() if s != ref]


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def fmt(x, digits=3):
    return "—" if x is None else ("%.*f" % (digits, x))


def table(header, rows, align=None):
    align = align or (["l"] + ["r"] * (len(header) - 1))
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    return meta


def time_section(res, lines):
    allocs = res.main_allocs
    has_pool = POOL in allocs and any(res.time(w, POOL) for w in res.timed)
    peers = res.peers
    norm = "jemalloc" if "jemalloc" in allocs else "glibc"
    header = ["workload"] + allocs
    if has_pool:
        header += ["pool/%s" % p for p in peers]
    rows = []
    partial = [False]
    for wl in res.timed:
        mism = set(res.checksum_mismatches(wl))
        row = [wl]
        for al in allocs:
            t = res.time(wl, al)
            cell = fmt(t) if t is not None else res.failure(wl, al)
            if t is not None and res.bad.get((wl, al)):
                cell += " †"
                partial[0] = True
            if al in mism:
                cell += " ⚠checksum"
            row.append(cell)
        if has_pool:
            tp = res.time(wl, POOL)
            for p in peers:
                tq = res.time(wl, p)
                row.append(fmt(tp / tq, 2) if tp and tq else "—")
        rows.append(row)
    # geometric means: times normalised to `norm` per workload; pool/peer ratios
    g = ["**geomean**"]
    for al in allocs:
        g.append(fmt(geomean([res.time(w, al) / res.time(w, norm)
                              for w in res.timed if res.time(w, al) and res.time(w, norm)]), 2))
    if has_pool:
        for p in peers:
            g.append("**%s**" % fmt(geomean([res.time(w, POOL) / res.time(w, p)
                                             for w in res.timed
                                             if res.time(w, POOL) and res.time(w, p)]), 2))
    rows.append(g)
    lines.append("## Time (median wall-clock seconds; lower is better)")
    lines.append("")
    lines += table(header, rows)
    lines.append("")
    expl = ("In the **geomean** row the allocator columns are the geometric mean over "
            "workloads of each allocator's time divided by %s's" % norm)
    if has_pool:
        expl += ("; the pool/X columns are the geometric mean of poolmalloc's time divided "
                 "by X's (below 1: poolmalloc is faster)")
    lines.append(expl + ".")
    if partial[0]:
        lines.append("")
        lines.append("† median of the successful runs only; some runs of this cell failed or "
                     "timed out (see Checks).")
    if not has_pool:
        lines.append("")
        lines.append("**poolmalloc was not measured** (see notes above), so there are no "
                     "poolmalloc/peer ratios in this report.")
    lines.append("")

    # run-to-run spread, so that noise can be judged
    lines.append("### Spread (slowest ÷ fastest run of each cell)")
    lines.append("")
    rows = [[wl] + [fmt(res.spread(wl, al), 2) for al in allocs] for wl in res.timed]
    lines += table(["workload"] + allocs, rows)
    lines.append("")


def median_table(res, lines, field, divisor, digits, against=None):
    """One row per timed workload: the median of `field` per allocator, divided by `divisor`,
    and poolmalloc's median over `against`'s, or over the best peer's (jemalloc, mimalloc,
    tcmalloc) when `against` is None."""
    allocs = res.main_allocs
    rows = []
    for wl in res.timed:
        row = [wl]
        for al in allocs:
            k = res.median(wl, al, field)
            row.append(fmt(k / divisor, digits) if k is not None else res.failure(wl, al))
        if POOL in allocs:
            peers = [against] if against in allocs else [p for p in res.peers if p != "glibc"]
            best = [b for b in (res.median(wl, p, field) for p in peers) if b]
            k = res.median(wl, POOL, field)
            row.append(fmt(k / min(best), 2) if k is not None and best else "—")
        rows.append(row)
    name = "pool/%s" % against if against in allocs else "pool/best peer"
    lines += table(["workload"] + allocs + ([name] if POOL in allocs else []), rows)
    lines.append("")


def modes_section(res, lines):
    """Each poolmalloc mode's median time, peak RSS and page faults over the default's."""
    if not res.modes or not any(res.time(w, POOL) for w in res.timed):
        return
    lines.append("## poolmalloc's modes (median ÷ poolmalloc's default; 1.00: no cost)")
    lines.append("")
    header = ["workload"]
    for m in res.modes:
        header += ["%s time" % m, "%s RSS" % m, "%s faults" % m]
    rows, ratios = [], defaultdict(list)
    for wl in res.timed:
        row = [wl]
        for m in res.modes:
            for field in ("elapsed_s", "maxrss_kib", "minflt"):
                a, b = res.median(wl, m, field), res.median(wl, POOL, field)
                if a is not None and b:
                    row.append(fmt(a / b, 2))
                    ratios[m, field].append(a / b)
                else:
                    row.append(res.failure(wl, m) if a is None else "—")
        rows.append(row)
    g = ["**geomean**"]
    for m in res.modes:
        g += ["**%s**" % fmt(geomean(ratios[m, f]), 2) if ratios[m, f] else "—"
              for f in ("elapsed_s", "maxrss_kib", "minflt")]
    rows.append(g)
    lines += table(header, rows)
    lines.append("")


def rss_section(res, lines):
    lines.append("## Peak RSS (median, MiB; lower is better)")
    lines.append("")
    median_table(res, lines, "maxrss_kib", 1024, 1, against="jemalloc")


def faults_section(res, lines):
    lines.append("## Page faults (median minor faults per run, thousands; lower is better)")
    lines.append("")
    lines.append("Each is a page the kernel had to map in; on a VM one costs microseconds. An "
                 "allocator that gives freed memory back too early pays them again.")
    lines.append("")
    median_table(res, lines, "minflt", 1000, 1)


def python_section(res, lines):
    if "python" not in res.workloads:
        return
    ref = res.time("python", "pymalloc")
    lines.append("## Python: C allocators (PYTHONMALLOC=malloc) vs CPython's pymalloc")
    lines.append("")
    lines.append("pymalloc = python3 without preload and without PYTHONMALLOC, i.e. CPython's "
                 "own small-object allocator on top of glibc.")
    lines.append("")
    rows = []
    for al in res.allocs:
        t = res.time("python", al)
        k = res.median("python", al, "maxrss_kib")
        rows.append([al, fmt(t) if t is not None else res.failure("python", al),
                     fmt(k / 1024, 1) if k is not None else "—",
                     fmt(t / ref, 2) if t and ref else "—"])
    lines += table(["allocator", "median time (s)", "peak RSS (MiB)", "time ÷ pymalloc"], rows)
    lines.append("")


def rssfree_section(res, lines):
    if "rssfree" not in res.workloads:
        return
    lines.append("## RSS after mass free (rssfree)")
    lines.append("")
    lines.append("~500 MiB of small (16..256 B) and medium (1..64 KiB) blocks are allocated "
                 "and touched, then all freed in random order. VmRSS is read by the program "
                 "itself at the peak, right after the frees, and after 2 s of idleness with "
                 "no allocator call at all (poolmalloc's purge_delay is 1 s). Medians, MiB.")
    lines.append("")
    rows = []
    for al in res.main_allocs:
        peak = res.median("rssfree", al, "rss_peak_kib")
        after = res.median("rssfree", al, "rss_after_free_kib")
        idle = res.median("rssfree", al, "rss_after_idle_kib")
        if peak is None:
            rows.append([al, res.failure("rssfree", al), "—", "—", "—"])
            continue
        rows.append([al, fmt(peak / 1024, 1), fmt(after / 1024, 1), fmt(idle / 1024, 1),
                     "%d%%" % round(100.0 * (peak - idle) / peak)])
    lines += table(["allocator", "peak", "right after free", "after idle",
                    "returned to OS"], rows)
    lines.append("")


def fastpath_section(path, lines):
    with open(path, newline="") as f:
        runs = list(csv.DictReader(f))
    if not runs:
        return
    sizes = []
    cells = defaultdict(dict)
    for r in runs:
        if r["size"] not in sizes:
            sizes.append(r["size"])
        cells[r["allocator"]][r["size"]] = r["instr_per_pair"]
    n1, n2 = runs[0]["n1"], runs[0]["n2"]
    lines.append("## Fast-path instructions per malloc+free pair (callgrind)")
    lines.append("")
    lines.append("bench/fastpath.c run under `valgrind --tool=callgrind` with N=%s and N=%s "
                 "pairs; (Ir(N2) − Ir(N1)) / (N2 − N1). Includes the benchmark loop's own "
                 "handful of instructions (the same for every allocator)." % (n1, n2))
    lines.append("")
    allocs = [a for a in ORDER if a in cells] + sorted(set(cells) - set(ORDER))
    rows = [[al] + [cells[al].get(s, "—") for s in sizes] for al in allocs]
    lines += table(["allocator"] + ["%s B" % s for s in sizes], rows)
    lines.append("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--notes")
    ap.add_argument("--fastpath")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    res = Results(load_runs(args.csv))
    meta = read_meta(args.meta)
    notes = []
    if args.notes:
        with open(args.notes) as f:
            notes = [l.strip() for l in f if l.strip()]

    lines = ["# poolmalloc benchmarks", ""]
    lines.append("- mode: **%s**, %s interleaved repetitions, scale %s; %s"
                 % (meta.get("mode"), meta.get("reps"), meta.get("scale"), meta.get("date")))
    lines.append("- machine: %s, Linux %s" % (meta.get("cpu"), meta.get("kernel")))
    lines.append("- %s" % meta.get("versions"))
    lines.append("- poolmalloc: `%s`" % meta.get("poolmalloc"))
    lines.append("- the suite had run for %s s when this report was written (timed runs: %s s); "
                 "CPU used meanwhile by other processes: %s s, stolen by the hypervisor: %s s; "
                 "load average at the end: %s"
                 % (meta.get("elapsed_s"), meta.get("runs_wall_s"), meta.get("other_cpu_s"),
                    meta.get("steal_cpu_s"), meta.get("load_avg")))
    for n in notes:
        lines.append("- note: %s" % n)
    lines.append("")

    time_section(res, lines)
    modes_section(res, lines)
    rss_section(res, lines)
    faults_section(res, lines)
    python_section(res, lines)
    rssfree_section(res, lines)
    if args.fastpath:
        fastpath_section(args.fastpath, lines)

    lines.append("## Checks")
    lines.append("")
    problems = []
    for wl in res.workloads:
        for al in res.checksum_mismatches(wl):
            problems.append("checksum mismatch: %s under %s" % (wl, al))
    for (wl, al), sts in sorted(res.bad.items()):
        total = len(sts) + len(res.ok.get((wl, al), []))
        for st in sorted(set(sts)):
            what = "not run again after a timeout" if st == "skipped" else st
            problems.append("%s under %s: %s (%d of %d runs)"
                            % (wl, al, what, sts.count(st), total))
    if problems:
        lines += ["- " + p for p in problems]
    else:
        lines.append("All runs exited successfully and every allocator produced the same "
                     "checksum as glibc for every workload.")
    lines.append("")

    with open(args.out, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
