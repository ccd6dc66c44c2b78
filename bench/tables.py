#!/usr/bin/env python3
"""Prints the paired results of the issue-14 benchmarks as Markdown tables.

    python3 bench/tables.py [BENCH ...]     default: every target/criterion/*-paired.jsonl

Each bench binary of package group-bench writes target/criterion/<bench>-paired.jsonl (one JSON
object per comparison: its variants' median time per operation and their ratio to the first
variant, the anchor, with quartiles). One table per bench; one row per comparison and variant.
"""
import glob
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.1f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def table(path):
    name = os.path.basename(path)[: -len("-paired.jsonl")]
    print(f"### {name}\n")
    rows = [json.loads(line) for line in open(path) if line.strip()]
    paired = [r for r in rows if "figures" in r]
    if paired:
        print("| case | variant | median per op | ops/s | ratio to the anchor | quartiles | rounds |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for r in paired:
            anchor = r["figures"][0]["name"]
            for i, f in enumerate(r["figures"]):
                ratio = "anchor" if i == 0 else f"{f['ratio']:.3f}"
                q = "" if i == 0 else f"{f['q1']:.3f}..{f['q3']:.3f}"
                rate = f"{1e9 / f['ns']:,.0f}" if f["ns"] > 0 else ""
                label = f"{f['name']} (anchor)" if i == 0 else f["name"]
                print(
                    f"| {r['case']} | {label} | {fmt_ns(f['ns'])} | {rate} | {ratio} | {q} | "
                    f"{r['rounds']} |"
                )
        print()
    others = [r for r in rows if "figures" not in r]
    for r in others:
        print(json.dumps(r))
    if others:
        print()


def main():
    names = sys.argv[1:]
    if names:
        paths = [os.path.join(TARGET, "criterion", f"{n}-paired.jsonl") for n in names]
    else:
        paths = sorted(glob.glob(os.path.join(TARGET, "criterion", "*-paired.jsonl")))
    if not paths:
        print("no paired results: run `cargo bench -p group-bench` first", file=sys.stderr)
        return 1
    for p in paths:
        table(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
