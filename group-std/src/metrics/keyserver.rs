//! The key server's own families: what its driver counts beyond the state machine (joins,
//! leaves, rekeys and their durations, refusals by reason, bundles, retransmissions).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::exposition::{Exposition, Histogram, MetricType};

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
