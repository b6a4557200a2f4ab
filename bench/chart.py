"""Draws build/bench/results.svg from the raw runs of bench/run.sh.

    chart.py --csv results.csv --out results.svg

A grouped bar chart: one group per timed workload plus the geometric mean,
one bar per allocator, bar height = median time divided by jemalloc's median
time for that workload (glibc's if jemalloc was not measured), on a log
scale with bars drawn from the 1.0 line (up = slower, down = faster).
Standard library only.
"""
import argparse
import math
from xml.sax.saxutils import escape

from report import Results, geomean, load_runs

COLORS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "mimalloc": "#2ca02c",
          "tcmalloc": "#ff7f0e", "poolmalloc": "#d62728"}
EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#17becf"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    res = Results(load_runs(args.csv))
    allocs = res.main_allocs
    norm = "jemalloc" if "jemalloc" in allocs else "glibc"
    groups = []  # (label, {alloc: ratio or None})
    for wl in res.timed:
        base = res.time(wl, norm)
        groups.append((wl, {a: (res.time(wl, a) / base if base and res.time(wl, a) else None)
                            for a in allocs}))
    groups.append(("geomean", {a: geomean([g[1][a] for g in groups]) for a in allocs}))

    ratios = [r for _, g in groups for r in g.values() if r]
    lo = min([0.5] + ratios)
    hi = max([2.0] + ratios)
    lo_e, hi_e = math.floor(math.log2(lo)), math.ceil(math.log2(hi))

    bar_w, gap = 14, 22
    left, right, top, bottom = 80, 20, 70, 70
    # wide enough for the title and legend even with few workloads
    group_w = max(bar_w * len(allocs) + gap, 720 // len(groups))
    plot_h = 340
    width = left + right + group_w * len(groups)
    height = top + plot_h + bottom

    def y(v):  # log2 scale
        return top + plot_h * (hi_e - math.log2(v)) / (hi_e - lo_e)

    colors = {}
    for i, a in enumerate(allocs):
        colors[a] = COLORS.get(a, EXTRA_COLORS[i % len(EXTRA_COLORS)])

    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (width, height),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="22" font-size="16" font-weight="bold">Allocator benchmark: '
           'time relative to %s (median of runs)</text>' % (left, norm)]
    # grid and y axis labels
    for e in range(lo_e, hi_e + 1):
        v = 2.0 ** e
        yy = y(v)
        svg.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="%s"/>'
                   % (left, yy, width - right, yy, "#444" if e == 0 else "#ddd",
                      "1.5" if e == 0 else "1"))
        label = ("%g" % v) if v >= 1 else "1/%d" % round(1 / v)
        svg.append('<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>'
                   % (left - 6, yy, label))
    svg.append('<text transform="translate(20,%d) rotate(-90)" text-anchor="middle">'
               'time ÷ %s time (log scale; lower is better)</text>' % (top + plot_h // 2, norm))
    # bars
    for gi, (label, vals) in enumerate(groups):
        gx = left + gi * group_w + (group_w - bar_w * len(allocs)) // 2
        for ai, a in enumerate(allocs):
            x = gx + ai * bar_w
            v = vals[a]
            if v is None:
                svg.append('<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s">×</text>'
                           % (x + bar_w / 2, y(1.0) - 3, colors[a]))
                continue
            y0, y1 = sorted((y(1.0), y(v)))
            if y1 - y0 < 3:  # the reference (and near-equal) bars: a visible sliver
                y0, y1 = (y0 + y1) / 2 - 1.5, (y0 + y1) / 2 + 1.5
            svg.append('<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s">'
                       '<title>%s, %s: %.2f × %s</title></rect>'
                       % (x, y0, bar_w - 2, y1 - y0, colors[a], escape(label), a, v, norm))
        svg.append('<text x="%.1f" y="%d" text-anchor="middle"%s>%s</text>'
                   % (gx + bar_w * len(allocs) / 2, top + plot_h + 18,
                      ' font-weight="bold"' if label == "geomean" else "", escape(label)))
    svg.append('<text x="%d" y="%d" text-anchor="middle">workload</text>'
               % (left + (width - left - right) // 2, top + plot_h + 44))
    # legend
    lx = left
    for a in allocs:
        svg.append('<rect x="%d" y="36" width="12" height="12" fill="%s"/>' % (lx, colors[a]))
        svg.append('<text x="%d" y="46">%s</text>' % (lx + 16, a))
        lx += 30 + 8 * len(a)
    svg.append('<text x="%d" y="46" fill="#666">(× = not measured or failed)</text>' % (lx + 10))
    svg.append("</svg>")
    with open(args.out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
