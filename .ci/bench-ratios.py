#!/usr/bin/env python3
"""Ratios group / raw AEAD from the criterion output of group-core's `record` bench.

Usage: cargo bench -p group-core --bench record
       python3 .ci/bench-ratios.py [CRITERION_DIR] [--check]

CRITERION_DIR defaults to $CARGO_TARGET_DIR/criterion or target/criterion. Reads the
`new/estimates.json` criterion wrote for <suite>/<op>_{raw,group}/<size> in the last run and
prints a Markdown table: median times, the ratio of the medians, and the ratio's range from the
medians' 95% confidence intervals (group low / raw high .. group high / raw low). Goals
(issue 2): at most 1.25 x raw at 64 bytes, 1.05 x raw at 1400 bytes. With --check, the exit
status is 1 if any median ratio misses its goal. Standard library only.
"""

import json
import os
import sys

SUITES = ["ccm8", "ccm", "gcm"]
OPS = ["seal", "open"]
GOALS = {64: 1.25, 1400: 1.05}


def estimate(root, suite, bench, size):
    path = os.path.join(root, suite, bench, str(size), "new", "estimates.json")
    try:
        with open(path) as f:
            m = json.load(f)["median"]
    except FileNotFoundError:
        return None
    ci = m["confidence_interval"]
    return m["point_estimate"], ci["lower_bound"], ci["upper_bound"]


def fmt_ns(v):
    return f"{v / 1000:.2f} µs" if v >= 1000 else f"{v:.0f} ns"


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if args:
        root = args[0]
    else:
        root = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")
    rows, missed, found = [], [], 0
    for suite in SUITES:
        for size, goal in GOALS.items():
            for op in OPS:
                raw = estimate(root, suite, f"{op}_raw", size)
                grp = estimate(root, suite, f"{op}_group", size)
                if raw is None or grp is None:
                    continue
                found += 1
                ratio = grp[0] / raw[0]
                lo, hi = grp[1] / raw[2], grp[2] / raw[1]
                ok = ratio <= goal
                if not ok:
                    missed.append(f"{suite} {op} {size} B")
                rows.append(
                    f"| {suite} | {op} | {size} | {fmt_ns(raw[0])} | {fmt_ns(grp[0])} "
                    f"| {ratio:.3f} | {lo:.2f}..{hi:.2f} | ≤ {goal:.2f} | "
                    f"{'met' if ok else 'MISSED'} |"
                )
    if not found:
        print(f"no criterion results for the record bench under {root}", file=sys.stderr)
        return 2
    print("| suite | op | bytes | raw AEAD (median) | group (median) | ratio | ratio range (95% CI) | goal | |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print()
    print("goals missed: " + (", ".join(missed) if missed else "none"))
    return 1 if check and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
