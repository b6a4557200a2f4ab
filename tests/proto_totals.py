#!/usr/bin/env python3
"""proto_totals.py PROFILE.pb.gz REPORT.json: a profile.proto report (formats:proto) read by
`go tool pprof -raw` must have the four sample types in their order, inuse_space the default, and
each type's sum over the samples equal to the JSON report's of the same dump: its sites' estimates
plus sites_omitted (the sites past 2,000). Prints the totals; exits 1, saying why, if they differ.
Used by tests/integration/t_reports.sh and tests/python/test_module.py."""
import json
import os
import re
import subprocess
import sys
import tempfile

KEYS = ("alloc_count", "alloc_bytes", "live_count", "live_bytes")
TYPES = ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]


def main(profile, report):
    env = dict(os.environ, GOCACHE=os.environ.get("GOCACHE") or tempfile.mkdtemp(prefix="gocache-"))
    env.setdefault("HOME", tempfile.gettempdir())
    p = subprocess.run(["go", "tool", "pprof", "-raw", profile], capture_output=True, text=True, env=env, timeout=300)
    if p.returncode != 0:
        sys.exit("go tool pprof -raw failed: " + p.stderr[-500:])
    if "Samples:\n" not in p.stdout:
        sys.exit("no samples in go tool pprof -raw's output: " + p.stdout[:500])
    rows = p.stdout.split("Samples:\n", 1)[1].splitlines()
    types = [t.split("/")[0] for t in rows[0].replace("[dflt]", "").split()]
    if types != TYPES or "inuse_space/bytes[dflt]" not in rows[0]:
        sys.exit("sample types %r, want %r with inuse_space the default" % (rows[0], TYPES))
    sums = [0, 0, 0, 0]
    for line in rows[1:]:
        m = re.match(r"^\s+([\d ]+):", line)
        if not m:
            break
        for i, v in enumerate(m.group(1).split()):
            sums[i] += int(v)
    with open(report) as f:
        doc = json.load(f)
    want = [sum(s[k] for s in doc["sites"]) + doc["sites_omitted"][k] for k in KEYS]
    print("go tool pprof totals", dict(zip(TYPES, sums)), "JSON", dict(zip(KEYS, want)))
    if sums != want:
        sys.exit("the profile's totals %r are not the JSON's %r" % (sums, want))
    return p.stdout


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
