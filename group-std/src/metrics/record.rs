//! The record layer of one group: its counters, epochs, senders and sequence reservations,
//! and the events its driver polled.

use std::time::Instant;

use group_core::counters::{Event, RekeyReason};
use group_core::group::Group;
use group_core::sequence::LAST_SEQ;

use super::exposition::{Exposition, MetricType};

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
