//! Prometheus metrics: the text exposition format (version 0.0.4) and a minimal HTTP/1.1
//! responder that serves it at `/metrics`.
//!
//! `dtls-group listen`, `member` and `keyserver` take `--metrics ADDR:PORT`. The responder
//! runs in its own thread on a [`std::net::TcpListener`], one connection at a time (a slow or
//! silent client is cut off after 2 s), and asks the node's own loop for the page through a
//! bounded channel ([`MetricsServer::poll`], called where the node also polls its control
//! socket): the page is rendered by the thread that owns the state, so nothing is shared or
//! locked, and a scrape sees one consistent moment.
//!
//! The metric names, their labels and what they mean are listed in `docs/operations.md`
//! (§ "Prometheus metrics"). Rendering is split from serving so that it can be tested alone:
//! [`Exposition`] writes families, [`RecordMetrics`] the record layer of one group,
//! [`KeyServerMetrics`] what only the key server's driver sees (refusals, bundles, rekey
//! durations).
//!
//! ```
//! use group_std::metrics::{Exposition, MetricType};
//!
//! let mut page = Exposition::new();
//! page.family("dtls_group_records_accepted_total", MetricType::Counter, "Records delivered.")
//!     .sample(&[("group", "239.255.0.1:40000")], 3u64);
//! let text = page.finish();
//! let lines: Vec<&str> = text.lines().collect();
//! assert_eq!(lines, [
//!     "# HELP dtls_group_records_accepted_total Records delivered.",
//!     "# TYPE dtls_group_records_accepted_total counter",
//!     "dtls_group_records_accepted_total{group=\"239.255.0.1:40000\"} 3",
//! ]);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use group_core::counters::{Event, RekeyReason};
use group_core::group::Group;
use group_core::sequence::LAST_SEQ;

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

// ---- the record layer --------------------------------------------------------------------

/// The names of [`Event`] kinds, as the `event` label of `dtls_group_events_total`.
pub const EVENT_KINDS: [&str; 5] = [
    "rekey_needed",
    "integrity_limit_reached",
    "possible_sender_id_clash",
    "sender_evicted",
    "epoch_retired",
];

/// The names of [`RekeyReason`]s, as the `reason` label of
/// `dtls_group_rekey_needed_events_total`.
pub const REKEY_REASONS: [&str; 3] = ["sender_budget", "group_usage", "sequence_exhausted"];

/// What a node's driver sees of one group beyond the group's own counters: the events it
/// polled (the group hands each out once) and when the current epoch became current.
#[derive(Clone, Debug, Default)]
pub struct RecordMetrics {
    events: [u64; EVENT_KINDS.len()],
    rekey_reasons: [u64; REKEY_REASONS.len()],
    /// The current epoch as last observed, and since when.
    epoch_seen: Option<(u16, Instant)>,
}

impl RecordMetrics {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one event the driver polled from the group.
    pub fn count_event(&mut self, e: &Event) {
        let kind = match e {
            Event::RekeyNeeded { reason, .. } => {
                let r = match reason {
                    RekeyReason::SenderBudget => 0,
                    RekeyReason::GroupUsage => 1,
                    RekeyReason::SequenceExhausted => 2,
                };
                if let Some(c) = self.rekey_reasons.get_mut(r) {
                    *c = c.saturating_add(1);
                }
                0
            }
            Event::IntegrityLimitReached { .. } => 1,
            Event::PossibleSenderIdClash { .. } => 2,
            Event::SenderEvicted { .. } => 3,
            Event::EpochRetired { .. } => 4,
            _ => return,
        };
        if let Some(c) = self.events.get_mut(kind) {
            *c = c.saturating_add(1);
        }
    }

    /// Notes the group's current epoch at `now`: the epoch age restarts when it changes. Call
    /// it once per turn of the node's loop (and before rendering).
    pub fn observe<const N: usize, const W: usize>(&mut self, group: &Group<N, W>, now: Instant) {
        let current = group.current_epoch().map(|e| e.0);
        match (current, self.epoch_seen) {
            (None, _) => self.epoch_seen = None,
            (Some(e), Some((seen, _))) if seen == e => {}
            (Some(e), _) => self.epoch_seen = Some((e, now)),
        }
    }

    /// Writes the record-layer families of `group` (none held: epoch 0, age 0), each sample
    /// with `labels`.
    pub fn render<const N: usize, const W: usize>(
        &self,
        page: &mut Exposition,
        group: &Group<N, W>,
        labels: &[(&str, &str)],
        now: Instant,
    ) {
        let c = group.counters();
        page.family(
            "dtls_group_records_accepted_total",
            MetricType::Counter,
            "Records authenticated and delivered.",
        )
        .sample(labels, c.accepted);
        let mut f = page.family(
            "dtls_group_records_dropped_total",
            MetricType::Counter,
            "Records dropped, by reason (docs/operations.md, reading the drop counters).",
        );
        let mut with: Vec<(&str, &str)> = labels.to_vec();
        for (reason, n) in c.drop_reasons() {
            with.truncate(labels.len());
            with.push(("reason", reason));
            f.sample(&with, n);
        }
        page.family(
            "dtls_group_records_sealed_total",
            MetricType::Counter,
            "Records this node sealed.",
        )
        .sample(labels, c.sealed);
        page.family(
            "dtls_group_seal_refused_record_overflow_total",
            MetricType::Counter,
            "Seal calls refused because the plaintext exceeded 2^14 bytes.",
        )
        .sample(labels, c.seal_record_overflow);
        let epochs = group.epochs();
        page.family(
            "dtls_group_epoch",
            MetricType::Gauge,
            "Epochs held, by role (current, previous, staged); 0 when none is held.",
        )
        .sample(
            &with_label(labels, "role", "current"),
            epoch_or_zero(group.current_epoch()),
        )
        .sample(
            &with_label(labels, "role", "previous"),
            epoch_or_zero(epochs.previous()),
        )
        .sample(
            &with_label(labels, "role", "staged"),
            epoch_or_zero(epochs.staged()),
        );
        let age = match (self.epoch_seen, group.current_epoch()) {
            (Some((seen, since)), Some(e)) if seen == e.0 => {
                now.saturating_duration_since(since).as_secs_f64()
            }
            _ => 0.0,
        };
        page.family(
            "dtls_group_epoch_age_seconds",
            MetricType::Gauge,
            "Seconds since the current epoch became current here (0 when none is held).",
        )
        .sample(labels, age);
        page.family(
            "dtls_group_epoch_authentication_failures",
            MetricType::Gauge,
            "Authentication failures under the current epoch key (the integrity limit counts these).",
        )
        .sample(labels, epochs.current().map_or(0, |k| k.auth_failures()));
        page.family(
            "dtls_group_senders_tracked",
            MetricType::Gauge,
            "Senders this node keeps replay state for.",
        )
        .sample(labels, group.senders().count());
        let counter = group.send_counter();
        page.family(
            "dtls_group_send_sequence_reserved_left",
            MetricType::Gauge,
            "Sequence numbers left before the sequence store must reserve again (0 when not sending).",
        )
        .sample(
            labels,
            counter.map_or(0, |c| c.reserved_until().saturating_sub(c.peek())),
        );
        page.family(
            "dtls_group_send_sequence_left",
            MetricType::Gauge,
            "Sequence numbers left in the current epoch before 2^40 - 1 (0 when not sending).",
        )
        .sample(
            labels,
            counter.map_or(0, |c| LAST_SEQ.saturating_add(1).saturating_sub(c.peek())),
        );
        let mut f = page.family(
            "dtls_group_events_total",
            MetricType::Counter,
            "Record-layer events, by kind.",
        );
        for (kind, n) in EVENT_KINDS.iter().zip(self.events) {
            f.sample(&with_label(labels, "event", kind), n);
        }
        let mut f = page.family(
            "dtls_group_rekey_needed_events_total",
            MetricType::Counter,
            "Rekey-needed events, by reason.",
        );
        for (reason, n) in REKEY_REASONS.iter().zip(self.rekey_reasons) {
            f.sample(&with_label(labels, "reason", reason), n);
        }
        page.family(
            "dtls_group_events_dropped_total",
            MetricType::Counter,
            "Events lost because the group's event queue was full.",
        )
        .sample(labels, c.events_dropped);
    }
}

fn epoch_or_zero(e: Option<group_core::wire::Epoch>) -> u64 {
    e.map_or(0, |e| u64::from(e.0))
}

fn with_label<'a>(
    labels: &[(&'a str, &'a str)],
    k: &'a str,
    v: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut l = labels.to_vec();
    l.push((k, v));
    l
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

// ---- the key server ----------------------------------------------------------------------

/// Bucket bounds of `dtls_group_keyserver_rekey_duration_seconds`.
pub const REKEY_DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

/// A key-distribution error as a label value: the variant's name in snake case
/// (`UnknownDevice` → `unknown_device`; `UnsupportedVersion(3)` → `unsupported_version`).
/// Bounded: one value per variant.
pub fn reason_label(debug: &str) -> String {
    let name = debug.split(['(', ' ', '{']).next().unwrap_or("");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push_str("other");
    }
    out
}

/// What a bundle says, as far as retransmissions go: a bundle to the same device and group
/// saying the same as the previous one is a retransmission.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BundleContent {
    /// Epoch of the bundle.
    pub epoch: u16,
    /// The recipient's sender ID.
    pub sender_id: Option<u8>,
    /// The group's senders, in the bundle's order.
    pub senders: Vec<u8>,
    /// Released sender IDs.
    pub stale: Vec<u8>,
}

/// Counters the key server's driver keeps for its metrics: what the state machine does not
/// count itself (per-group joins, leaves and rekeys, refusals by reason, bundles, rekey
/// durations). Bounded: one entry per group, device and reason.
#[derive(Clone, Debug, Default)]
pub struct KeyServerMetrics {
    joins: BTreeMap<u32, u64>,
    leaves: BTreeMap<u32, u64>,
    revocations: u64,
    /// (group, cause) → epochs created.
    rekeys: BTreeMap<(u32, &'static str), u64>,
    durations: BTreeMap<u32, Histogram>,
    /// Group → (epoch, when created): the rekey in progress.
    rekey_started: HashMap<u32, (u16, Instant)>,
    refused: BTreeMap<String, u64>,
    bundles_sent: u64,
    bundles_retransmitted: u64,
    challenges_sent: u64,
    removal_notices_sent: u64,
    send_failures: u64,
    last_bundle: HashMap<(u32, u32), BundleContent>,
}

/// The `cause` label of a key server's rekey cause (`RekeyCause`, by its debug name), in snake case.
pub fn cause_label(cause_debug: &str) -> &'static str {
    match cause_debug {
        "Created" => "created",
        "Join" => "join",
        "Removal" => "removal",
        "Recovery" => "recovery",
        "Report" => "report",
        "Scheduled" => "scheduled",
        "Operator" => "operator",
        _ => "other",
    }
}

/// One group's view for [`KeyServerMetrics::render`].
#[derive(Clone, Debug, Default)]
pub struct GroupView {
    /// The group ID.
    pub id: u32,
    /// Devices admitted to the group (configured and not revoked).
    pub devices: usize,
    /// Devices that joined.
    pub members: usize,
    /// Members that have not acknowledged the group's newest content.
    pub pending: usize,
    /// The current epoch (0: none).
    pub current: u16,
    /// The staged epoch (0: none).
    pub staged: u16,
}

/// Counts the key server keeps itself, for [`KeyServerMetrics::render`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerTotals {
    /// Device messages refused (all reasons).
    pub rejected: u64,
    /// Authenticated messages that proved no freshness.
    pub replays: u64,
    /// Join challenges issued.
    pub challenges_issued: u64,
    /// Events lost from a full queue.
    pub events_dropped: u64,
}

impl KeyServerMetrics {
    /// Nothing counted yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `device` joined (or rejoined) `group`: its next bundle there is a first transmission.
    pub fn joined(&mut self, device: u32, group: u32) {
        bump(self.joins.entry(group).or_default());
        self.last_bundle.remove(&(device, group));
    }

    /// A device left `group`.
    pub fn left(&mut self, group: u32) {
        bump(self.leaves.entry(group).or_default());
    }

    /// A device was revoked.
    pub fn revoked(&mut self) {
        bump(&mut self.revocations);
    }

    /// An epoch was created in `group` at `now` (a rekey starts; one still in progress there is
    /// superseded and not observed).
    pub fn epoch_created(&mut self, group: u32, epoch: u16, cause: &'static str, now: Instant) {
        bump(self.rekeys.entry((group, cause)).or_default());
        self.rekey_started.insert(group, (epoch, now));
    }

    /// Groups with a rekey in progress, and its epoch.
    pub fn rekeys_in_progress(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.rekey_started.iter().map(|(g, (e, _))| (*g, *e))
    }

    /// The rekey of `group` to `epoch` is complete (the epoch is current and every member
    /// acknowledged it) at `now`: its duration is observed.
    pub fn rekey_done(&mut self, group: u32, epoch: u16, now: Instant) {
        if let Some((e, since)) = self.rekey_started.get(&group).copied()
            && e == epoch
        {
            self.rekey_started.remove(&group);
            self.durations
                .entry(group)
                .or_insert_with(|| Histogram::new(REKEY_DURATION_BUCKETS))
                .observe(now.saturating_duration_since(since).as_secs_f64());
        }
    }

    /// A device message was refused; `reason` from [`reason_label`].
    pub fn refused(&mut self, reason: String) {
        bump(self.refused.entry(reason).or_default());
    }

    /// A bundle was sent to `device` for `group`, saying `content`; returns whether it was a
    /// retransmission (the same content as the previous bundle to that device and group).
    pub fn bundle_sent(&mut self, device: u32, group: u32, content: BundleContent) -> bool {
        bump(&mut self.bundles_sent);
        let again = self.last_bundle.get(&(device, group)) == Some(&content);
        if again {
            bump(&mut self.bundles_retransmitted);
        } else {
            self.last_bundle.insert((device, group), content);
        }
        again
    }

    /// A join challenge was sent.
    pub fn challenge_sent(&mut self) {
        bump(&mut self.challenges_sent);
    }

    /// A removal notice was sent.
    pub fn removal_notice_sent(&mut self) {
        bump(&mut self.removal_notices_sent);
    }

    /// A message could not be sent (no address yet, or a socket error).
    pub fn send_failed(&mut self) {
        bump(&mut self.send_failures);
    }

    /// Forgets what is kept per device (after a revocation).
    pub fn forget_device(&mut self, device: u32) {
        self.last_bundle.retain(|(d, _), _| *d != device);
    }

    /// Writes the key server's families.
    pub fn render(&self, page: &mut Exposition, groups: &[GroupView], totals: ServerTotals) {
        let ids: Vec<String> = groups.iter().map(|g| g.id.to_string()).collect();
        let per_group = |page: &mut Exposition,
                         name: &str,
                         kind: MetricType,
                         help: &str,
                         value: &dyn Fn(&GroupView) -> u64| {
            let mut f = page.family(name, kind, help);
            for (g, id) in groups.iter().zip(&ids) {
                f.sample(&[("group_id", id)], value(g));
            }
        };
        per_group(
            page,
            "dtls_group_keyserver_devices",
            MetricType::Gauge,
            "Devices admitted to the group (configured, not revoked).",
            &|g| g.devices as u64,
        );
        per_group(
            page,
            "dtls_group_keyserver_members",
            MetricType::Gauge,
            "Devices that joined the group.",
            &|g| g.members as u64,
        );
        per_group(
            page,
            "dtls_group_keyserver_members_pending",
            MetricType::Gauge,
            "Members that have not acknowledged the group's newest epoch or sender list.",
            &|g| g.pending as u64,
        );
        per_group(
            page,
            "dtls_group_keyserver_epoch",
            MetricType::Gauge,
            "The group's current epoch (0: none).",
            &|g| u64::from(g.current),
        );
        per_group(
            page,
            "dtls_group_keyserver_staged_epoch",
            MetricType::Gauge,
            "The group's staged epoch, waiting for its activation (0: none).",
            &|g| u64::from(g.staged),
        );
        per_group(
            page,
            "dtls_group_keyserver_joins_total",
            MetricType::Counter,
            "Joins (and rejoins) accepted.",
            &|g| self.joins.get(&g.id).copied().unwrap_or(0),
        );
        per_group(
            page,
            "dtls_group_keyserver_leaves_total",
            MetricType::Counter,
            "Devices that left the group.",
            &|g| self.leaves.get(&g.id).copied().unwrap_or(0),
        );
        page.family(
            "dtls_group_keyserver_revocations_total",
            MetricType::Counter,
            "Devices revoked.",
        )
        .sample(&[], self.revocations);
        let mut f = page.family(
            "dtls_group_keyserver_rekeys_total",
            MetricType::Counter,
            "Epochs created, by group and cause (created, join, removal, recovery, report, scheduled, operator).",
        );
        for (g, id) in groups.iter().zip(&ids) {
            for cause in [
                "created",
                "join",
                "removal",
                "recovery",
                "report",
                "scheduled",
                "operator",
            ] {
                let n = self.rekeys.get(&(g.id, cause)).copied().unwrap_or(0);
                f.sample(&[("group_id", id), ("cause", cause)], n);
            }
        }
        let mut f = page.family(
            "dtls_group_keyserver_rekey_duration_seconds",
            MetricType::Histogram,
            "From an epoch's creation until it is current and every member acknowledged it.",
        );
        let empty = Histogram::new(REKEY_DURATION_BUCKETS);
        for (g, id) in groups.iter().zip(&ids) {
            f.histogram(
                &[("group_id", id)],
                self.durations.get(&g.id).unwrap_or(&empty),
            );
        }
        page.family(
            "dtls_group_keyserver_bundles_sent_total",
            MetricType::Counter,
            "Key bundles sent, retransmissions included.",
        )
        .sample(&[], self.bundles_sent);
        page.family(
            "dtls_group_keyserver_bundles_retransmitted_total",
            MetricType::Counter,
            "Key bundles sent again with the same content (not acknowledged in time).",
        )
        .sample(&[], self.bundles_retransmitted);
        page.family(
            "dtls_group_keyserver_join_challenges_total",
            MetricType::Counter,
            "Join challenges issued.",
        )
        .sample(&[], totals.challenges_issued.max(self.challenges_sent));
        page.family(
            "dtls_group_keyserver_removal_notices_sent_total",
            MetricType::Counter,
            "Removal notices sent to devices that left or were revoked.",
        )
        .sample(&[], self.removal_notices_sent);
        page.family(
            "dtls_group_keyserver_send_failures_total",
            MetricType::Counter,
            "Messages not sent: no address known for the device yet, or a socket error.",
        )
        .sample(&[], self.send_failures);
        let mut f = page.family(
            "dtls_group_keyserver_messages_refused_total",
            MetricType::Counter,
            "Device messages refused, by reason.",
        );
        // Always present, so that rate() works from the first refusal on.
        for reason in ["unknown_device", "not_admitted", "bad_signature", "stale"] {
            if !self.refused.contains_key(reason) {
                f.sample(&[("reason", reason)], 0u64);
            }
        }
        for (reason, n) in &self.refused {
            f.sample(&[("reason", reason)], *n);
        }
        page.family(
            "dtls_group_keyserver_messages_refused_all_total",
            MetricType::Counter,
            "Device messages refused, all reasons (as rejected in admin status).",
        )
        .sample(&[], totals.rejected);
        page.family(
            "dtls_group_keyserver_replays_total",
            MetricType::Counter,
            "Authenticated device messages that proved no freshness (duplicates, replays).",
        )
        .sample(&[], totals.replays);
        page.family(
            "dtls_group_keyserver_events_dropped_total",
            MetricType::Counter,
            "Key-server events lost from a full queue.",
        )
        .sample(&[], totals.events_dropped);
    }
}

fn bump(c: &mut u64) {
    *c = c.saturating_add(1);
}

// ---- the HTTP responder ------------------------------------------------------------------

/// How long the responder waits for a request, or for the node to render the page.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest request head read.
const MAX_REQUEST: usize = 8192;

/// One scrape waiting for the page.
struct Scrape {
    reply: mpsc::SyncSender<String>,
}

/// A `/metrics` endpoint: an HTTP/1.1 responder in its own thread, answered from the node's
/// loop through [`poll`](Self::poll). Dropping it stops the thread and closes the port.
pub struct MetricsServer {
    requests: mpsc::Receiver<Scrape>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` (TCP) and starts the responder thread. Errors name the address.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // At most a few scrapes wait at once; more are answered 503 by the responder.
        let (tx, rx) = mpsc::sync_channel::<Scrape>(2);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(&listener, &tx, &stop_thread))?;
        Ok(Self {
            requests: rx,
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the port chosen, if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers the scrapes waiting now (if any) with `render()`, called at most once.
    pub fn poll(&self, render: impl FnOnce() -> String) {
        let Ok(first) = self.requests.try_recv() else {
            return;
        };
        let page = render();
        let mut next = Some(first);
        while let Some(s) = next {
            let _ = s.reply.try_send(page.clone());
            next = self.requests.try_recv().ok();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, tx: &mpsc::SyncSender<Scrape>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = answer(stream, tx, stop);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads the request head (up to the blank line, at most [`MAX_REQUEST`] bytes).
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST {
            return Err(io::Error::other("request head too long"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or(&[]));
    }
    Ok(head)
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (with or without a query); `head` for `HEAD`.
    Metrics {
        /// A HEAD request: headers only.
        head: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP request line.
    BadRequest,
}

/// Routes an HTTP request line (`GET /metrics HTTP/1.1`).
pub fn route(request_line: &str) -> Route {
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Route::BadRequest;
    }
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::MethodNotAllowed,
    };
    if path == "/metrics" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

fn answer(
    mut stream: TcpStream,
    tx: &mpsc::SyncSender<Scrape>,
    stop: &AtomicBool,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let (status, body, head_only) = match route(line) {
        Route::Metrics { head } => {
            let (reply, page) = mpsc::sync_channel(1);
            match tx.try_send(Scrape { reply }) {
                Ok(()) => {
                    // The node answers from its loop (every 20 to 100 ms); give up after the
                    // timeout, or when the server is being dropped.
                    let deadline = Instant::now() + IO_TIMEOUT;
                    let mut got = None;
                    while got.is_none()
                        && Instant::now() < deadline
                        && !stop.load(Ordering::Relaxed)
                    {
                        got = page.recv_timeout(Duration::from_millis(50)).ok();
                    }
                    match got {
                        Some(p) => ("200 OK", p, head),
                        None => (
                            "503 Service Unavailable",
                            "the node did not answer\n".into(),
                            head,
                        ),
                    }
                }
                Err(_) => ("503 Service Unavailable", "busy\n".into(), head),
            }
        }
        Route::NotFound => ("404 Not Found", "try /metrics\n".into(), false),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "GET /metrics\n".into(), false),
        Route::BadRequest => ("400 Bad Request", "bad request\n".into(), false),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        if status.starts_with("200") {
            CONTENT_TYPE
        } else {
            "text/plain; charset=utf-8"
        },
        body.len()
    );
    if status.starts_with("405") {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// Fetches `http://addr/metrics` (for tests and `dtls-group` users without curl): the status
/// code and the body.
pub fn fetch(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("no HTTP head"))?;
    let code = head
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other("no status code"))?;
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use group_core::group::GroupConfig;
    use group_core::wire::Epoch;

    #[test]
    fn families_have_help_type_and_escaped_labels() {
        let mut p = Exposition::new();
        p.family("x_total", MetricType::Counter, "a \\ b\nc")
            .sample(&[("a", "q\"u\\o\nte")], 7u64)
            .sample(&[], 0u64);
        p.family("y", MetricType::Gauge, "h")
            .sample(&[], 0.5)
            .sample(&[], f64::NAN);
        assert_eq!(
            p.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\"} 7\nx_total 0\n\
             # HELP y h\n# TYPE y gauge\ny 0.5\ny NaN\n"
        );
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut p = Exposition::new();
        p.family("d_seconds", MetricType::Histogram, "d")
            .histogram(&[("g", "1")], &h);
        let text = p.finish();
        assert!(
            text.contains("d_seconds_bucket{g=\"1\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{g=\"1\",le=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("d_seconds_bucket{g=\"1\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("d_seconds_sum{g=\"1\"} 4.25\n"), "{text}");
        assert!(text.contains("d_seconds_count{g=\"1\"} 4\n"), "{text}");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("dtls_group_x:y_total"));
        assert!(!valid_metric_name("1x"));
        assert!(!valid_metric_name(""));
        assert!(!valid_metric_name("a-b"));
        assert!(valid_label_name("group_id"));
        assert!(!valid_label_name("__name"));
        assert!(!valid_label_name("le-x"));
    }

    /// Every sample line of a page: (name, labels, value).
    /// (name, labels, value) of one sample line.
    type Sample = (String, Vec<(String, String)>, String);

    fn samples(page: &str) -> Vec<Sample> {
        page.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => {
                        let inner = rest.strip_suffix('}').unwrap();
                        let labels = inner
                            .split("\",")
                            .filter(|s| !s.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once("=\"").unwrap();
                                (k.to_owned(), v.trim_end_matches('"').to_owned())
                            })
                            .collect();
                        (n.to_owned(), labels)
                    }
                    None => (series.to_owned(), vec![]),
                };
                (name, labels, value.to_owned())
            })
            .collect()
    }

    /// Checks the conventions: valid names, counters end in `_total`, a HELP and TYPE before
    /// each family, families not repeated, no duplicate series.
    fn check_conventions(page: &str) {
        let mut seen_families = std::collections::HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut series = std::collections::HashSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_owned();
                assert!(valid_metric_name(&name), "{name}");
                assert!(seen_families.insert(name.clone()), "family {name} twice");
                current = Some((name, String::new()));
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let (cur, _) = current.clone().unwrap();
                assert_eq!(name, cur);
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "counter {name}");
                } else {
                    assert!(!name.ends_with("_total"), "{kind} {name}");
                }
                current = Some((cur, kind.to_owned()));
            } else {
                let (fam, kind) = current.clone().unwrap();
                let (name, labels, value) = samples(line).pop().unwrap();
                if kind == "histogram" {
                    assert!(
                        [
                            format!("{fam}_bucket"),
                            format!("{fam}_sum"),
                            format!("{fam}_count")
                        ]
                        .contains(&name),
                        "{name}"
                    );
                } else {
                    assert_eq!(name, fam);
                }
                for (k, _) in &labels {
                    assert!(valid_label_name(k), "{k}");
                }
                assert!(
                    value.parse::<f64>().is_ok()
                        || ["NaN", "+Inf", "-Inf"].contains(&value.as_str()),
                    "{line}"
                );
                assert!(series.insert((name, labels)), "duplicate series {line}");
            }
        }
    }

    #[test]
    fn record_metrics_follow_the_group() {
        let mut g: Group = Group::new(GroupConfig::new(1));
        let t0 = Instant::now();
        let mut m = RecordMetrics::new();
        m.observe(&g, t0);
        let mut p = Exposition::new();
        m.render(&mut p, &g, &[("group", "239.255.0.1:1")], t0);
        let text = p.finish();
        check_conventions(&text);
        assert!(text.contains("dtls_group_epoch{group=\"239.255.0.1:1\",role=\"current\"} 0\n"));
        assert!(text.contains("dtls_group_epoch_age_seconds{group=\"239.255.0.1:1\"} 0\n"));
        let keys = group_core::schedule::native_keys(
            1,
            Epoch(3),
            group_core::suite::Suite::AES_128_CCM,
            &group_core::schedule::EpochSecret([7; 32]),
        )
        .unwrap();
        g.install_and_activate(Epoch(3), &keys, group_core::time::Instant(0))
            .unwrap();
        let mut junk = [0u8; 5];
        assert!(g.open(group_core::time::Instant(0), &mut junk).is_err());
        m.observe(&g, t0);
        m.count_event(&Event::RekeyNeeded {
            epoch: Epoch(3),
            reason: RekeyReason::GroupUsage,
        });
        m.count_event(&Event::IntegrityLimitReached {
            epoch: Epoch(3),
            failures: 9,
        });
        let later = t0 + Duration::from_millis(1500);
        m.observe(&g, later);
        let mut p = Exposition::new();
        m.render(&mut p, &g, &[("group", "g")], later);
        let text = p.finish();
        check_conventions(&text);
        for want in [
            "dtls_group_epoch{group=\"g\",role=\"current\"} 3\n",
            "dtls_group_epoch_age_seconds{group=\"g\"} 1.5\n",
            "dtls_group_records_dropped_total{group=\"g\",reason=\"malformed\"} 1\n",
            "dtls_group_records_dropped_total{group=\"g\",reason=\"replay\"} 0\n",
            "dtls_group_events_total{group=\"g\",event=\"rekey_needed\"} 1\n",
            "dtls_group_events_total{group=\"g\",event=\"integrity_limit_reached\"} 1\n",
            "dtls_group_rekey_needed_events_total{group=\"g\",reason=\"group_usage\"} 1\n",
            "dtls_group_send_sequence_reserved_left{group=\"g\"} 0\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }

    #[test]
    fn a_sender_shows_its_reservation() {
        let mut g: Group =
            Group::new(GroupConfig::new(1).with_sender_id(group_core::wire::SenderId(4)));
        let keys = group_core::schedule::native_keys(
            1,
            Epoch(1),
            group_core::suite::Suite::AES_128_CCM,
            &group_core::schedule::EpochSecret([7; 32]),
        )
        .unwrap();
        g.install_and_activate(Epoch(1), &keys, group_core::time::Instant(0))
            .unwrap();
        let mut store = group_core::sequence::MemorySequenceStore::commissioned();
        let mut buf = [0u8; 128];
        for _ in 0..3 {
            g.seal(group_core::time::Instant(0), &mut store, b"on", &mut buf)
                .unwrap();
        }
        let m = RecordMetrics::new();
        let mut p = Exposition::new();
        m.render(&mut p, &g, &[], Instant::now());
        let text = p.finish();
        let step = GroupConfig::new(1).sequence_reserve_step;
        assert!(
            text.contains(&format!(
                "dtls_group_send_sequence_reserved_left {}\n",
                step - 3
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "dtls_group_send_sequence_left {}\n",
            LAST_SEQ + 1 - 3
        )));
        assert!(text.contains("dtls_group_records_sealed_total 3\n"));
    }

    #[test]
    fn key_server_metrics() {
        let mut k = KeyServerMetrics::new();
        let t0 = Instant::now();
        k.joined(5, 1);
        k.joined(6, 1);
        k.left(1);
        k.revoked();
        k.epoch_created(1, 2, cause_label("Join"), t0);
        assert_eq!(k.rekeys_in_progress().collect::<Vec<_>>(), vec![(1, 2)]);
        k.rekey_done(1, 1, t0 + Duration::from_secs(1)); // another epoch: ignored
        k.rekey_done(1, 2, t0 + Duration::from_millis(700));
        assert_eq!(k.rekeys_in_progress().count(), 0);
        k.refused(reason_label("UnknownDevice"));
        k.refused(reason_label("UnsupportedVersion(3)"));
        let c = BundleContent {
            epoch: 2,
            sender_id: None,
            senders: vec![1],
            stale: vec![],
        };
        assert!(!k.bundle_sent(5, 1, c.clone()));
        assert!(k.bundle_sent(5, 1, c.clone()));
        assert!(!k.bundle_sent(6, 1, c.clone()));
        let mut p = Exposition::new();
        k.render(
            &mut p,
            &[GroupView {
                id: 1,
                devices: 3,
                members: 2,
                pending: 1,
                current: 2,
                staged: 0,
            }],
            ServerTotals {
                rejected: 2,
                replays: 1,
                challenges_issued: 4,
                events_dropped: 0,
            },
        );
        render_build_info(&mut p, "keyserver");
        let text = p.finish();
        check_conventions(&text);
        for want in [
            "dtls_group_keyserver_devices{group_id=\"1\"} 3\n",
            "dtls_group_keyserver_members{group_id=\"1\"} 2\n",
            "dtls_group_keyserver_joins_total{group_id=\"1\"} 2\n",
            "dtls_group_keyserver_leaves_total{group_id=\"1\"} 1\n",
            "dtls_group_keyserver_revocations_total 1\n",
            "dtls_group_keyserver_rekeys_total{group_id=\"1\",cause=\"join\"} 1\n",
            "dtls_group_keyserver_rekey_duration_seconds_bucket{group_id=\"1\",le=\"0.5\"} 0\n",
            "dtls_group_keyserver_rekey_duration_seconds_bucket{group_id=\"1\",le=\"1\"} 1\n",
            "dtls_group_keyserver_rekey_duration_seconds_count{group_id=\"1\"} 1\n",
            "dtls_group_keyserver_bundles_sent_total 3\n",
            "dtls_group_keyserver_bundles_retransmitted_total 1\n",
            "dtls_group_keyserver_messages_refused_total{reason=\"unknown_device\"} 1\n",
            "dtls_group_keyserver_messages_refused_total{reason=\"unsupported_version\"} 1\n",
            "dtls_group_keyserver_messages_refused_total{reason=\"bad_signature\"} 0\n",
            "dtls_group_keyserver_join_challenges_total 4\n",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }

    #[test]
    fn reason_labels() {
        assert_eq!(reason_label("UnknownDevice"), "unknown_device");
        assert_eq!(reason_label("Store(Io)"), "store");
        assert_eq!(reason_label("Key(BadLength { a: 1 })"), "key");
        assert_eq!(reason_label(""), "other");
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("GET /metrics HTTP/1.1"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route("GET /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route("HEAD /metrics HTTP/1.1"),
            Route::Metrics { head: true }
        );
        assert_eq!(route("GET / HTTP/1.1"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(route("GET /metrics"), Route::BadRequest);
        assert_eq!(route(""), Route::BadRequest);
        assert_eq!(route("GET /metrics SSH/2 x"), Route::BadRequest);
    }

    #[test]
    fn serves_the_page_from_the_polling_thread() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let client = std::thread::spawn(move || {
            let ok = fetch(addr, "/metrics").unwrap();
            let missing = fetch(addr, "/").unwrap();
            (ok, missing)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut polls = 0;
        while !client.is_finished() {
            assert!(Instant::now() < deadline, "no answer");
            server.poll(|| {
                polls += 1;
                "a_total 1\n".to_owned()
            });
            std::thread::sleep(Duration::from_millis(5));
        }
        let ((code, body), (code404, _)) = client.join().unwrap();
        assert_eq!((code, body.as_str()), (200, "a_total 1\n"));
        assert_eq!(code404, 404);
        assert_eq!(polls, 1);
        // A node that does not poll: 503 after the timeout, not a hang.
        let t = Instant::now();
        let (code, _) = fetch(addr, "/metrics").unwrap();
        assert_eq!(code, 503);
        assert!(t.elapsed() < Duration::from_secs(4));
        drop(server);
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }
}
