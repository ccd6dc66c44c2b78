//! Shared measurement code of the issue-14 benchmarks (`bench/benches/*.rs`).
//!
//! Every comparison is a set of **variants** (the thing measured and its anchors: the raw
//! AEAD, OpenSSL, the CBC-MAC floor, plain UDP, wolfSSL, raw P-256 ...). Each variant is a
//! closure that runs `n` operations and returns the time they took, its own untimed set-up
//! excluded. Two measurements use the same closures:
//!
//! 1. criterion's (`iter_custom`), one benchmark per variant, statistics in `target/criterion`;
//! 2. a **paired** one: rounds in which every variant runs one chunk of operations, in an order
//!    that rotates between rounds, each chunk timed on its own. The ratio of each variant to
//!    the first is taken per round and its median reported. On a shared, noisy machine this is
//!    the figure to trust: the variants of one round ran within milliseconds of each other.
//!
//! The paired tables are printed as Markdown and appended as JSON lines to
//! `target/criterion/<bench>-paired.jsonl`. `BENCH_PAIRED_SECS` (default 2) is the budget per
//! comparison; `0` skips the paired measurement.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;

pub mod pair;

/// One thing to measure: a name and a closure timing `n` operations.
pub struct Variant<'a> {
    /// Short name (column header, criterion benchmark name).
    pub name: String,
    /// Runs `n` operations and returns how long they took (set-up excluded).
    pub run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl<'a> Variant<'a> {
    /// A variant from a name and a closure.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }

    /// A variant whose operations need no untimed set-up: `op` is timed `n` times in a row.
    pub fn simple(name: impl Into<String>, mut op: impl FnMut() + 'a) -> Self {
        Self::new(name, move |n| {
            let start = Instant::now();
            for _ in 0..n {
                op();
            }
            start.elapsed()
        })
    }
}

/// The result of one variant in a paired measurement.
#[derive(Clone, Debug)]
pub struct Figure {
    /// The variant's name.
    pub name: String,
    /// Median over rounds of the time per operation, in nanoseconds.
    pub ns: f64,
    /// Median over rounds of (this variant's time / the first variant's time).
    pub ratio: f64,
    /// Quartiles of that ratio.
    pub q1: f64,
    /// Upper quartile of that ratio.
    pub q3: f64,
}

/// Paired measurement budget per comparison, from `BENCH_PAIRED_SECS` (default 2 s).
pub fn paired_budget() -> Duration {
    let secs = std::env::var("BENCH_PAIRED_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs.max(0.0))
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

/// Runs the paired measurement: rounds of `chunk` operations per variant, rotating order,
/// until `budget` is spent (at least 5 rounds). Returns one figure per variant and the number
/// of rounds.
pub fn paired(variants: &mut [Variant<'_>], chunk: u64, budget: Duration) -> (Vec<Figure>, usize) {
    let k = variants.len();
    // Warm up every variant once.
    for v in variants.iter_mut() {
        (v.run)(chunk);
    }
    let mut per_op: Vec<Vec<f64>> = vec![Vec::new(); k];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); k];
    let start = Instant::now();
    let mut round = 0usize;
    while round < 5 || start.elapsed() < budget {
        let mut t = vec![0f64; k];
        for j in 0..k {
            let i = (j + round) % k;
            let d = (variants[i].run)(chunk);
            t[i] = d.as_nanos() as f64 / chunk as f64;
        }
        for i in 0..k {
            per_op[i].push(t[i]);
            ratios[i].push(t[i] / t[0]);
        }
        round += 1;
        if round > 1_000_000 {
            break;
        }
    }
    let figures = variants
        .iter()
        .enumerate()
        .map(|(i, v)| Figure {
            name: v.name.clone(),
            ns: median(&mut per_op[i]),
            ratio: median(&mut ratios[i]),
            q1: quantile(&mut ratios[i], 0.25),
            q3: quantile(&mut ratios[i], 0.75),
        })
        .collect();
    (figures, round)
}

/// Registers every variant with criterion as `<group>/<variant>` (`iter_custom`).
pub fn criterion_group(c: &mut Criterion, group: &str, variants: &mut [Variant<'_>]) {
    let mut g = c.benchmark_group(group);
    for v in variants.iter_mut() {
        let run = &mut v.run;
        g.bench_function(v.name.as_str(), |b| b.iter_custom(&mut *run));
    }
    g.finish();
}

/// Formats a time in ns, µs or ms.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Collects the paired results of one bench binary: a Markdown table on stdout and JSON lines
/// in `target/criterion/<bench>-paired.jsonl`.
pub struct Report {
    bench: String,
    lines: Vec<serde_json::Value>,
    table: String,
}

impl Report {
    /// A report for the bench binary `bench`.
    pub fn new(bench: &str) -> Self {
        Self {
            bench: bench.to_string(),
            lines: Vec::new(),
            table: String::new(),
        }
    }

    /// Measures the seal and the open variants of suite `name` at `n` bytes: criterion's
    /// groups `NAME/seal/N` and `NAME/open/N` (when enabled), then the paired comparisons
    /// `NAME seal N` and `NAME open N`.
    pub fn seal_and_open(
        &mut self,
        c: &mut Criterion,
        (name, n): (&str, usize),
        seal: &mut [Variant<'_>],
        open: &mut [Variant<'_>],
        chunk: u64,
    ) {
        if criterion_enabled() {
            criterion_group(c, &format!("{name}/seal/{n}"), seal);
            criterion_group(c, &format!("{name}/open/{n}"), open);
        }
        self.paired(&format!("{name} seal {n}"), seal, chunk);
        self.paired(&format!("{name} open {n}"), open, chunk);
    }

    /// Measures `variants` (paired) for the comparison `case` (e.g. `ccm8 seal 64`), prints a
    /// row per variant and records them. Returns the figures (empty if the budget is 0).
    pub fn paired(&mut self, case: &str, variants: &mut [Variant<'_>], chunk: u64) -> Vec<Figure> {
        let budget = paired_budget();
        if budget.is_zero() {
            return Vec::new();
        }
        let (figures, rounds) = paired(variants, chunk, budget);
        let mut row = format!("| {case} |");
        for f in &figures {
            let _ = write!(
                row,
                " {}: {} ({:.3}, {:.3}..{:.3}) |",
                f.name,
                fmt_ns(f.ns),
                f.ratio,
                f.q1,
                f.q3
            );
        }
        println!("{row}  rounds={rounds}");
        self.table.push_str(&row);
        self.table.push('\n');
        self.lines.push(serde_json::json!({
            "case": case,
            "rounds": rounds,
            "chunk": chunk,
            "figures": figures.iter().map(|f| serde_json::json!({
                "name": f.name, "ns": f.ns, "ratio": f.ratio, "q1": f.q1, "q3": f.q3,
            })).collect::<Vec<_>>(),
        }));
        figures
    }

    /// Records a free-form result (e.g. an end-to-end rate) as a JSON line and prints it.
    pub fn note(&mut self, value: serde_json::Value) {
        println!("{value}");
        self.lines.push(value);
    }

    /// Writes the JSON lines next to criterion's output.
    pub fn finish(self) {
        if self.lines.is_empty() {
            return;
        }
        let dir = target_dir().join("criterion");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{}-paired.jsonl", self.bench));
        if let Ok(mut f) = std::fs::File::create(&path) {
            for l in &self.lines {
                let _ = writeln!(f, "{l}");
            }
            println!("paired results: {}", path.display());
        }
    }
}

/// The cargo target directory (`CARGO_TARGET_DIR` or the workspace's `target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Whether criterion's own measurements should run (`BENCH_CRITERION=0` skips them, leaving
/// the paired tables: the quick way to get the figures).
pub fn criterion_enabled() -> bool {
    std::env::var("BENCH_CRITERION").map_or(true, |v| v != "0")
}
