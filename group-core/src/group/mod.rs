//! A group context: epochs, sender states with their replay windows, own sending state,
//! counters and events. The only `handle_*` / `poll_*` surface of the record layer.
//!
//! Receiving follows wire-format.md §4: parse → epoch held? → sender known or admissible? → replay
//! pre-check → AEAD open → commit replay state → deliver. Any failure drops the record,
//! counts it by reason and leaves all state as it was.
//!
//! One file per concern: `config` (the policy), `errors` ([`OpenError`], [`SealError`]),
//! `senders` (sender states, admission, replay plans), `open` (receiving) and `seal`
//! (sending); this file holds the context itself, its epochs and its events.

mod config;
pub(crate) mod errors;
mod open;
mod seal;
mod senders;

use heapless::{Deque, Vec};
#[cfg(feature = "record-signatures")]
use p256::ecdsa::SigningKey;

use crate::counters::{Counters, Event, PackedEvent};
use crate::epochs::EpochSet;
use crate::replay::ReplayWindow;
use crate::sequence::SequenceCounter;
use crate::suite::{KeyError, RecordKeys};
use crate::time::Instant;
use crate::wire::Epoch;

pub use crate::signature::SIGNATURE_LEN;
pub use config::{Admission, GroupConfig, default_confidentiality_limit, default_integrity_limit};
pub use errors::{OpenError, SealError};
pub use open::Delivery;
pub use senders::SenderInfo;
use senders::{BlockedThrough, SenderState};

/// Capacity of the event queue: 8 events, each held in 8 bytes (76 bytes of the `Group` on a
/// 32-bit target). An event that does not fit is dropped and counted in
/// [`Counters::events_dropped`]; poll with [`Group::poll_event`] after each call.
pub const EVENT_QUEUE_LEN: usize = 8;

/// A group context with room for `SENDERS` sender states and replay windows of `32 × WORDS`
/// records (see [`ReplayWindow`]).
pub struct Group<const SENDERS: usize = 16, const WORDS: usize = 2> {
    config: GroupConfig,
    epochs: EpochSet,
    senders: Vec<SenderState<WORDS>, SENDERS>,
    /// Sender IDs whose state was dropped (evicted, reused as dead, or removed by the key
    /// server), each refused in every epoch up to its own bound, whether or not a state for it
    /// exists again (wire-format.md §6).
    blocked: BlockedThrough,
    /// The eviction order's clock (see `senders::next_tick`).
    tick: u16,
    counters: Counters,
    events: Deque<PackedEvent, EVENT_QUEUE_LEN>,
    sending: Option<SequenceCounter>,
    budget_event_for: Option<Epoch>,
    exhausted_event_for: Option<Epoch>,
    #[cfg(feature = "record-signatures")]
    signing_key: Option<SigningKey>,
}

impl<const SENDERS: usize, const WORDS: usize> core::fmt::Debug for Group<SENDERS, WORDS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Group")
            .field("config", &self.config)
            .field("epochs", &self.epochs)
            .field("senders", &self.senders.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// A group with no keys yet.
    pub fn new(config: GroupConfig) -> Self {
        let _ = ReplayWindow::<WORDS>::SIZE;
        Self {
            config,
            epochs: EpochSet::new(),
            senders: Vec::new(),
            blocked: BlockedThrough::default(),
            tick: 0,
            counters: Counters::default(),
            events: Deque::new(),
            sending: None,
            budget_event_for: None,
            exhausted_event_for: None,
            #[cfg(feature = "record-signatures")]
            signing_key: None,
        }
    }

    /// Empties this context in place for `config`, as `*self = Group::new(config)` without a
    /// `Group` by value on the stack: keys dropped (zeroized), senders, blocks, counters and
    /// events gone. (Only the key-distribution member uses it.)
    #[cfg(feature = "keydist-member")]
    pub(crate) fn reset(&mut self, config: GroupConfig) {
        self.config = config;
        self.epochs.clear();
        self.senders.clear();
        self.blocked.clear();
        self.tick = 0;
        self.counters = Counters::default();
        self.events.clear();
        self.sending = None;
        self.budget_event_for = None;
        self.exhausted_event_for = None;
        #[cfg(feature = "record-signatures")]
        {
            self.signing_key = None;
        }
    }

    /// The policy.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Counters by outcome.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The epochs held.
    pub fn epochs(&self) -> &EpochSet {
        &self.epochs
    }

    /// The current epoch, if any.
    pub fn current_epoch(&self) -> Option<Epoch> {
        self.epochs.current().map(|c| c.epoch())
    }

    /// Next queued event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front().map(PackedEvent::unpack)
    }

    pub(super) fn push_event(&mut self, e: Event) {
        crate::log::event(&e);
        if self.events.push_back(PackedEvent::pack(&e)).is_err() {
            self.counters.events_dropped = self.counters.events_dropped.saturating_add(1);
        }
    }

    /// Stages `epoch` with `keys` (receivable at once; sent in after [`activate_epoch`]).
    ///
    /// [`activate_epoch`]: Self::activate_epoch
    pub fn install_epoch(&mut self, epoch: Epoch, keys: &RecordKeys) -> Result<(), KeyError> {
        if self.config.signatures_required && !cfg!(feature = "record-signatures") {
            return Err(KeyError::SignaturesNotEnabled);
        }
        let staged = self.epochs.staged();
        self.epochs.install(epoch, keys)?;
        if staged.is_some() && self.epochs.staged() != staged {
            // A newer epoch replaced the staged one: the blocks follow the slots.
            self.blocked.staged_replaced();
        }
        crate::log::epoch_installed(epoch);
        Ok(())
    }

    /// Makes the staged `epoch` current: this node sends in it from now on; the old current
    /// epoch stays receivable for the grace period.
    pub fn activate_epoch(&mut self, epoch: Epoch, now: Instant) -> Result<(), KeyError> {
        let moves = self.epochs.staged() == Some(epoch);
        let retired = self.epochs.activate(epoch, now, self.config.grace_ms)?;
        if moves {
            // Every epoch moved one slot down: the blocks follow the slots.
            self.blocked.shift();
        }
        crate::log::epoch_activated(epoch);
        if let Some(dropped) = retired {
            self.push_event(Event::EpochRetired { epoch: dropped });
        }
        Ok(())
    }

    /// Installs and activates `epoch` in one step (first keys, or a rekey with no staging).
    pub fn install_and_activate(
        &mut self,
        epoch: Epoch,
        keys: &RecordKeys,
        now: Instant,
    ) -> Result<(), KeyError> {
        self.install_epoch(epoch, keys)?;
        self.activate_epoch(epoch, now)
    }

    /// Drops the previous epoch if its grace period is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(epoch) = self.epochs.expire(now) {
            self.push_event(Event::EpochRetired { epoch });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.epochs.next_deadline()
    }
}

/// Counts one record protected under `keys`; true when this crosses the confidentiality
/// limit for the first time.
pub(super) fn count_usage(keys: &mut crate::epochs::EpochKeys, limit: Option<u64>) -> bool {
    keys.records = keys.records.saturating_add(1);
    let limit = limit.unwrap_or_else(|| default_confidentiality_limit(keys.cipher().suite()));
    if crate::epochs::reached(keys.records, limit) && !keys.usage_event_raised {
        keys.usage_event_raised = true;
        return true;
    }
    false
}

#[cfg(all(test, feature = "aes-ccm"))]
mod tests {
    use super::*;
    use crate::counters::RekeyReason;
    use crate::sequence::MemorySequenceStore;
    use crate::suite::Suite;
    use crate::wire::SenderId;

    const NOW: Instant = Instant(0);

    fn keyed(config: GroupConfig) -> Group<4, 2> {
        let keys = RecordKeys::new(Suite::AES_128_CCM_8, &[3; 16], &[4; 4]).unwrap();
        let mut g = Group::new(config);
        g.install_and_activate(Epoch(1), &keys, NOW).unwrap();
        g
    }

    fn set_records(g: &mut Group<4, 2>, n: u32) {
        g.epochs.get_mut(Epoch(1), NOW).unwrap().1.records = n;
    }

    fn records(g: &mut Group<4, 2>) -> u64 {
        g.epochs.get_mut(Epoch(1), NOW).unwrap().1.records()
    }

    fn usage_events(g: &mut Group<4, 2>) -> usize {
        core::iter::from_fn(|| g.poll_event())
            .filter(|e| {
                matches!(
                    e,
                    Event::RekeyNeeded {
                        reason: RekeyReason::GroupUsage,
                        ..
                    }
                )
            })
            .count()
    }

    /// The record counter of an epoch key is a saturating `u32`: with a confidentiality limit
    /// above its range (ChaCha20-Poly1305's default is `u64::MAX`; here a configured one) the
    /// usage event comes when it saturates, once, and the counter stays there (it never wraps
    /// back under the limit). A limit inside the range is met exactly.
    #[test]
    fn the_usage_counter_saturates_and_raises_its_event_once_at_the_boundary() {
        for limit in [u64::MAX, 1 << 32, u64::from(u32::MAX)] {
            let mut cfg = GroupConfig::new(9).with_sender_id(SenderId(1));
            cfg.confidentiality_limit = Some(limit);
            let mut g = keyed(cfg);
            let mut store = MemorySequenceStore::commissioned();
            let mut out = [0u8; 64];
            set_records(&mut g, u32::MAX - 2);
            g.seal(NOW, &mut store, b"a", &mut out).unwrap();
            assert_eq!(records(&mut g), u64::from(u32::MAX) - 1);
            assert_eq!(usage_events(&mut g), 0, "limit {limit}: one short");
            g.seal(NOW, &mut store, b"b", &mut out).unwrap();
            assert_eq!(records(&mut g), u64::from(u32::MAX));
            assert_eq!(usage_events(&mut g), 1, "limit {limit}: at the boundary");
            g.seal(NOW, &mut store, b"c", &mut out).unwrap();
            assert_eq!(
                records(&mut g),
                u64::from(u32::MAX),
                "saturated, not wrapped"
            );
            assert_eq!(usage_events(&mut g), 0, "limit {limit}: raised once");
        }
        // A limit below the range: exactly at the limit.
        let mut cfg = GroupConfig::new(9).with_sender_id(SenderId(1));
        cfg.confidentiality_limit = Some(1 << 20);
        let mut g = keyed(cfg);
        let mut store = MemorySequenceStore::commissioned();
        let mut out = [0u8; 64];
        set_records(&mut g, (1 << 20) - 2);
        g.seal(NOW, &mut store, b"a", &mut out).unwrap();
        assert_eq!(usage_events(&mut g), 0);
        g.seal(NOW, &mut store, b"b", &mut out).unwrap();
        assert_eq!(usage_events(&mut g), 1);
    }

    /// The failure counter of an epoch key saturates too: with an integrity limit above its
    /// range (GCM's and ChaCha20-Poly1305's default, 2^36) the event comes at `u32::MAX`
    /// failures, once, and reports them.
    #[test]
    fn the_failure_counter_saturates_and_raises_its_event_once_at_the_boundary() {
        let mut cfg = GroupConfig::new(9).with_sender_id(SenderId(1));
        cfg.integrity_limit = Some(1 << 36);
        let mut sender = keyed(cfg);
        let mut g = keyed(cfg.with_sender_id(SenderId(2)));
        let mut store = MemorySequenceStore::commissioned();
        let mut rec = [0u8; 64];
        let len = sender.seal(NOW, &mut store, b"on", &mut rec).unwrap();
        g.epochs.get_mut(Epoch(1), NOW).unwrap().1.auth_failures = u32::MAX - 1;
        let failures = |g: &mut Group<4, 2>| {
            let mut bad = rec;
            if let Some(b) = bad.get_mut(len - 1) {
                *b ^= 1;
            }
            assert_eq!(
                g.open(NOW, &mut bad[..len]).map(|_| ()),
                Err(OpenError::AuthenticationFailed)
            );
            let events: heapless::Vec<Event, 8> = core::iter::from_fn(|| g.poll_event()).collect();
            (g.epochs().current().unwrap().auth_failures(), events)
        };
        let (n, events) = failures(&mut g);
        assert_eq!(n, u64::from(u32::MAX));
        assert_eq!(
            events.as_slice(),
            [Event::IntegrityLimitReached {
                epoch: Epoch(1),
                failures: u64::from(u32::MAX)
            }]
        );
        let (n, events) = failures(&mut g);
        assert_eq!(n, u64::from(u32::MAX), "saturated, not wrapped");
        assert!(events.is_empty(), "raised once");
        // The genuine record still opens.
        let mut good = rec;
        assert!(g.open(NOW, &mut good[..len]).is_ok());
    }
}
