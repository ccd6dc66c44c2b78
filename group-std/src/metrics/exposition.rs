//! The text exposition format (version 0.0.4): families, samples, histograms, escaping, and
//! the `dtls_group_build_info` family every node has.

use std::fmt::Write as _;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a metric family (its `# TYPE` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process restarts); names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in cumulative buckets, with `_bucket`, `_sum` and `_count` series.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample value: integers are written exactly, floats in Go's (and Prometheus's) spelling of
/// the special values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// An integer (counters, counts, epochs).
    Int(u64),
    /// A float (seconds, sums).
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(u64::try_from(v).unwrap_or(u64::MAX))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

impl Value {
    fn write(self, out: &mut String) {
        match self {
            Value::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Float(v) => write_float(out, v),
        }
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a help text: backslash and line feed.
fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// A page in the text exposition format, written family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Writes the samples of one family (returned by [`Exposition::family`]).
#[derive(Debug)]
pub struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: writes its `# HELP` and `# TYPE` lines. Its samples follow through the
    /// returned writer (a family's samples must be contiguous, which this shape ensures).
    pub fn family<'a>(&'a mut self, name: &'a str, kind: MetricType, help: &str) -> Family<'a> {
        let _ = write!(self.out, "# HELP {name} ");
        escape_help(&mut self.out, help);
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
        Family {
            out: &mut self.out,
            name,
        }
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: Value,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(extra) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    value.write(out);
    out.push('\n');
}

impl Family<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        write_series(self.out, self.name, "", labels, None, value.into());
        self
    }

    /// The series of one histogram (`_bucket` per bound and `+Inf`, `_sum`, `_count`).
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cumulative = 0u64;
        let mut le = String::new();
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative = cumulative.saturating_add(*n);
            le.clear();
            write_float(&mut le, *bound);
            write_series(
                self.out,
                self.name,
                "_bucket",
                labels,
                Some(("le", &le)),
                Value::Int(cumulative),
            );
        }
        write_series(
            self.out,
            self.name,
            "_bucket",
            labels,
            Some(("le", "+Inf")),
            Value::Int(h.count),
        );
        write_series(
            self.out,
            self.name,
            "_sum",
            labels,
            None,
            Value::Float(h.sum),
        );
        write_series(
            self.out,
            self.name,
            "_count",
            labels,
            None,
            Value::Int(h.count),
        );
        self
    }
}

/// A histogram with fixed bucket bounds (upper bounds, ascending; `+Inf` is implied).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative): `counts[i]` are those in
    /// `(bounds[i-1], bounds[i]]`; above the last bound only `count` grows.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b)
            && let Some(c) = self.counts.get_mut(i)
        {
            *c = c.saturating_add(1);
        }
        self.sum += v;
        self.count = self.count.saturating_add(1);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The `dtls_group_build_info` family: 1, with the version as a label.
pub fn render_build_info(page: &mut Exposition, node: &str) {
    page.family(
        "dtls_group_build_info",
        MetricType::Gauge,
        "Always 1; the labels say which build and which kind of node this is.",
    )
    .sample(
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("DTLS_GROUP_COMMIT")),
            ("node", node),
        ],
        1u64,
    );
}
