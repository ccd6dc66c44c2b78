//! Drop counters and events: the public face of a group that fails silently otherwise.

use crate::group::errors::OpenError;
use crate::wire::{Epoch, SenderId};

/// Records accepted, sealed, and dropped by reason. All counters saturate.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Records authenticated and delivered.
    pub accepted: u64,
    /// Records sealed by this node.
    pub sealed: u64,
    /// Not a well-formed record (or over the size limit).
    pub malformed: u64,
    /// Well-formed but not application data.
    pub unsupported_content_type: u64,
    /// Epoch not held.
    pub unknown_epoch: u64,
    /// Sender not known or not admissible.
    pub unknown_sender: u64,
    /// Already received.
    pub replay: u64,
    /// Older than the window or than the sender's epoch.
    pub too_old: u64,
    /// Failed authentication.
    pub authentication_failed: u64,
    /// Carried this node's own sender ID.
    pub own_sender_id: u64,
    /// Strict profile: explicit nonce differed from epoch||sid||seq.
    pub nonce_mismatch: u64,
    /// Records whose plaintext would exceed 2^14 bytes ([`OpenError::RecordOverflow`], RFC 6347
    /// `record_overflow`), dropped before decryption.
    pub record_overflow: u64,
    /// Seal calls refused because the plaintext exceeded 2^14 bytes
    /// ([`SealError::RecordOverflow`](crate::record::SealError::RecordOverflow)); not drops, so
    /// not in [`dropped`](Self::dropped).
    pub seal_record_overflow: u64,
    /// Events dropped because the event queue was full.
    pub events_dropped: u64,
}

impl Counters {
    /// Counts one dropped record.
    pub fn count_drop(&mut self, e: &OpenError) {
        let c = match e {
            OpenError::Malformed(_) => &mut self.malformed,
            OpenError::UnsupportedContentType(_) => &mut self.unsupported_content_type,
            // A member without keys holds no epoch.
            OpenError::UnknownEpoch(_) | OpenError::NotJoined => &mut self.unknown_epoch,
            OpenError::UnknownSender(_) => &mut self.unknown_sender,
            OpenError::Replay => &mut self.replay,
            OpenError::TooOld => &mut self.too_old,
            OpenError::AuthenticationFailed => &mut self.authentication_failed,
            OpenError::OwnSenderId => &mut self.own_sender_id,
            OpenError::NonceMismatch => &mut self.nonce_mismatch,
            OpenError::RecordOverflow => &mut self.record_overflow,
        };
        *c = c.saturating_add(1);
    }

    /// Total records dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        [
            self.malformed,
            self.unsupported_content_type,
            self.unknown_epoch,
            self.unknown_sender,
            self.replay,
            self.too_old,
            self.authentication_failed,
            self.own_sender_id,
            self.nonce_mismatch,
            self.record_overflow,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// `(reason, count)` pairs for every drop reason, in a fixed order (names as
    /// [`OpenError::reason`]).
    pub fn drop_reasons(&self) -> [(&'static str, u64); 10] {
        [
            ("malformed", self.malformed),
            ("unsupported_content_type", self.unsupported_content_type),
            ("unknown_epoch", self.unknown_epoch),
            ("unknown_sender", self.unknown_sender),
            ("replay", self.replay),
            ("too_old", self.too_old),
            ("authentication_failed", self.authentication_failed),
            ("own_sender_id", self.own_sender_id),
            ("nonce_mismatch", self.nonce_mismatch),
            ("record_overflow", self.record_overflow),
        ]
    }
}

/// Why a rekey is needed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RekeyReason {
    /// This node's sequence number passed the per-sender budget.
    SenderBudget,
    /// Records protected under the epoch key (sent and received, all senders) passed the
    /// group's confidentiality limit (RFC 9147 §4.5.3).
    GroupUsage,
    /// This node's sequence numbers for the epoch are exhausted: it has stopped sending.
    SequenceExhausted,
}

/// Something the application or the key-distribution client should act on.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// Ask the key server for a new epoch.
    RekeyNeeded {
        /// The epoch concerned.
        epoch: Epoch,
        /// Why.
        reason: RekeyReason,
    },
    /// Authentication failures under an epoch key reached the integrity limit.
    IntegrityLimitReached {
        /// The epoch concerned.
        epoch: Epoch,
        /// Failures counted.
        failures: u64,
    },
    /// An authentic record carried this node's own sender ID: another member may hold the same
    /// sid (or multicast loopback is on).
    PossibleSenderIdClash {
        /// Epoch of the record.
        epoch: Epoch,
        /// Sequence number of the record.
        seq: u64,
    },
    /// A sender's state was evicted from a full table; that sender is refused in every epoch
    /// installed at that moment (the staged one too), even if the key server lists it again,
    /// and admitted again only in a newer epoch.
    SenderEvicted {
        /// The evicted sender.
        sender_id: SenderId,
    },
    /// The previous epoch's grace period ended; its key is dropped.
    EpochRetired {
        /// The epoch dropped.
        epoch: Epoch,
    },
}

/// An [`Event`] as the group's queue holds it: 8 bytes with no alignment, where an `Event` is
/// 16 bytes aligned to 8 (its `u64` fields). The kind carries the rekey reason, so unpacking
/// is a total function. A sequence number has 40 bits (wire-format.md §1) and a failure count
/// 32 (the epoch key's counter saturates there, `epochs::reached`); wider values, which
/// can't occur, are packed as the largest value the field holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct PackedEvent {
    kind: EventKind,
    epoch: [u8; 2],
    /// Sender ID (evicted), failures (u32, big endian) or sequence number (u40, big endian).
    value: [u8; 5],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EventKind {
    RekeySenderBudget,
    RekeyGroupUsage,
    RekeySequenceExhausted,
    IntegrityLimitReached,
    PossibleSenderIdClash,
    SenderEvicted,
    EpochRetired,
}

impl PackedEvent {
    /// Packs `e`.
    pub(crate) fn pack(e: &Event) -> Self {
        let (kind, epoch, value) = match *e {
            Event::RekeyNeeded { epoch, reason } => (
                match reason {
                    RekeyReason::SenderBudget => EventKind::RekeySenderBudget,
                    RekeyReason::GroupUsage => EventKind::RekeyGroupUsage,
                    RekeyReason::SequenceExhausted => EventKind::RekeySequenceExhausted,
                },
                epoch,
                0,
            ),
            Event::IntegrityLimitReached { epoch, failures } => (
                EventKind::IntegrityLimitReached,
                epoch,
                failures.min(u64::from(u32::MAX)),
            ),
            Event::PossibleSenderIdClash { epoch, seq } => (
                EventKind::PossibleSenderIdClash,
                epoch,
                seq.min(crate::wire::MAX_SEQ),
            ),
            Event::SenderEvicted { sender_id } => {
                (EventKind::SenderEvicted, Epoch(0), u64::from(sender_id.0))
            }
            Event::EpochRetired { epoch } => (EventKind::EpochRetired, epoch, 0),
        };
        let [_, _, _, v0, v1, v2, v3, v4] = value.to_be_bytes();
        Self {
            kind,
            epoch: epoch.0.to_be_bytes(),
            value: [v0, v1, v2, v3, v4],
        }
    }

    /// The event packed.
    pub(crate) fn unpack(self) -> Event {
        let epoch = Epoch(u16::from_be_bytes(self.epoch));
        let [v0, v1, v2, v3, v4] = self.value;
        let value = u64::from_be_bytes([0, 0, 0, v0, v1, v2, v3, v4]);
        let rekey = |reason| Event::RekeyNeeded { epoch, reason };
        match self.kind {
            EventKind::RekeySenderBudget => rekey(RekeyReason::SenderBudget),
            EventKind::RekeyGroupUsage => rekey(RekeyReason::GroupUsage),
            EventKind::RekeySequenceExhausted => rekey(RekeyReason::SequenceExhausted),
            EventKind::IntegrityLimitReached => Event::IntegrityLimitReached {
                epoch,
                failures: value,
            },
            EventKind::PossibleSenderIdClash => Event::PossibleSenderIdClash { epoch, seq: value },
            EventKind::SenderEvicted => Event::SenderEvicted {
                sender_id: SenderId(v4),
            },
            EventKind::EpochRetired => Event::EpochRetired { epoch },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event kind survives the queue's packing, at the edges of its fields.
    #[test]
    fn packed_events_unpack_to_what_was_packed() {
        let mut events: heapless::Vec<Event, 64> = heapless::Vec::new();
        for epoch in [Epoch(0), Epoch(1), Epoch(0x1234), Epoch(u16::MAX)] {
            for reason in [
                RekeyReason::SenderBudget,
                RekeyReason::GroupUsage,
                RekeyReason::SequenceExhausted,
            ] {
                events.push(Event::RekeyNeeded { epoch, reason }).unwrap();
            }
            for failures in [0, 1, 1 << 16, u64::from(u32::MAX)] {
                events
                    .push(Event::IntegrityLimitReached { epoch, failures })
                    .unwrap();
            }
            for seq in [0, 1, 0x12_3456_789A, crate::wire::MAX_SEQ] {
                events
                    .push(Event::PossibleSenderIdClash { epoch, seq })
                    .unwrap();
            }
            events.push(Event::EpochRetired { epoch }).unwrap();
        }
        for sid in [0, 1, 0x80, u8::MAX] {
            events
                .push(Event::SenderEvicted {
                    sender_id: SenderId(sid),
                })
                .unwrap();
        }
        for e in events {
            assert_eq!(PackedEvent::pack(&e).unpack(), e);
        }
        assert_eq!(core::mem::size_of::<PackedEvent>(), 8);
        // Values no event can carry are packed as the field's largest value.
        let e = Event::IntegrityLimitReached {
            epoch: Epoch(2),
            failures: u64::MAX,
        };
        let failures = u64::from(u32::MAX);
        assert_eq!(
            PackedEvent::pack(&e).unpack(),
            Event::IntegrityLimitReached {
                epoch: Epoch(2),
                failures
            }
        );
    }
}
