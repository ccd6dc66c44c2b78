#!/usr/bin/env python3
"""Ratios group / raw AEAD from group-core's `record` bench.

Usage: cargo bench -p group-core --bench record
       python3 .ci/bench-ratios.py [CRITERION_DIR] [--check]

CRITERION_DIR defaults to $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion, else
target/criterion. Prints two Markdown tables from the last run:

1. the paired measurement the bench writes to record-paired.json: per round, a chunk of raw
   operations and a chunk of group operations timed back to back; the median of the per-round
   ratios and their quartiles. This one is robust to load that changes during the run;
2. criterion's own estimates (<suite>/<op>_{raw,group}/<bytes>/new/estimates.json): the ratio of
   the medians, and its range from the medians' 95% confidence intervals
   (group low / raw high .. group high / raw low).

Goals (issue 2): at most 1.25 x raw at 64 bytes, 1.05 x raw at 1400 bytes. With --check, the
exit status is 1 if a goal is missed (judged on the paired ratios when present, else on the
criterion ratios). Standard library only.
"""

import json
import os
import sys

SUITES = ["ccm8", "ccm", "gcm"]
OPS = ["seal", "open"]
GOALS = {64: 1.25, 1400: 1.05}


def criterion_dir(args):
    if args:
        return args[0]
    if os.environ.get("CRITERION_HOME"):
        return os.environ["CRITERION_HOME"]
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "criterion")


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


def verdict(ratio, goal):
    return "met" if ratio <= goal else "**missed**"


def paired_table(root):
    path = os.path.join(root, "record-paired.json")
    try:
        with open(path) as f:
            rows = json.load(f)
    except FileNotFoundError:
        return None, []
    order = {(s, b, o): i for i, (s, b, o) in enumerate(
        (s, b, o) for s in SUITES for b in GOALS for o in OPS)}
    rows.sort(key=lambda r: order.get((r["suite"], r["bytes"], r["op"]), 99))
    out = [
        "| suite | op | bytes | raw AEAD | group | ratio (median) | quartiles | goal | |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    missed = []
    for r in rows:
        goal = GOALS.get(r["bytes"])
        if goal is None:
            continue
        if r["ratio"] > goal:
            missed.append(f"{r['suite']} {r['op']} {r['bytes']} B")
        out.append(
            f"| {r['suite']} | {r['op']} | {r['bytes']} | {fmt_ns(r['raw_ns'])} "
            f"| {fmt_ns(r['group_ns'])} | {r['ratio']:.3f} "
            f"| {r['ratio_q1']:.3f}..{r['ratio_q3']:.3f} | ≤ {goal:.2f} "
            f"| {verdict(r['ratio'], goal)} |"
        )
    rounds = sorted({(r["rounds"], r["chunk"]) for r in rows})
    out.append("")
    out.append(
        f"({min(r for r, _ in rounds)} to {max(r for r, _ in rounds)} rounds of "
        f"{rounds[0][1]} operations per side; times are per-operation medians over rounds)"
    )
    return "\n".join(out), missed


def criterion_table(root):
    out = [
        "| suite | op | bytes | raw AEAD (median) | group (median) | ratio of medians | range (95% CI) | goal | |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    missed, found = [], 0
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
                if ratio > goal:
                    missed.append(f"{suite} {op} {size} B")
                out.append(
                    f"| {suite} | {op} | {size} | {fmt_ns(raw[0])} | {fmt_ns(grp[0])} "
                    f"| {ratio:.3f} | {lo:.2f}..{hi:.2f} | ≤ {goal:.2f} | {verdict(ratio, goal)} |"
                )
    if not found:
        return None, []
    return "\n".join(out), missed


def main(argv):
    check = "--check" in argv
    root = criterion_dir([a for a in argv if a != "--check"])
    paired, paired_missed = paired_table(root)
    crit, crit_missed = criterion_table(root)
    if paired is None and crit is None:
        print(f"no results of the record bench under {root}", file=sys.stderr)
        return 2
    if paired is not None:
        print("Paired measurement (record-paired.json):\n")
        print(paired)
        print("\ngoals missed (paired): " + (", ".join(paired_missed) or "none") + "\n")
    if crit is not None:
        print("criterion estimates:\n")
        print(crit)
        print("\ngoals missed (criterion medians): " + (", ".join(crit_missed) or "none"))
    missed = paired_missed if paired is not None else crit_missed
    return 1 if check and missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
