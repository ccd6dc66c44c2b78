//! The plain C structs and constants of the API: configuration, delivery, counters, events.

use group_core::counters::{Counters, Event, RekeyReason};
use group_core::group::Delivery;

/// Suite AES-128-CCM_8 (TLS_PSK_WITH_AES_128_CCM_8, 0xC0A8), 8-byte tag.
pub const DG_SUITE_AES_128_CCM_8: u16 = 0xC0A8;
/// Suite AES-128-CCM (0xC0A4), 16-byte tag.
pub const DG_SUITE_AES_128_CCM: u16 = 0xC0A4;
/// Suite AES-128-GCM (0x00A8).
pub const DG_SUITE_AES_128_GCM: u16 = 0x00A8;
/// Suite ChaCha20-Poly1305 (0xCCAB).
pub const DG_SUITE_CHACHA20_POLY1305: u16 = 0xCCAB;

/// Admission: accept a sender's first authenticated record (default).
pub const DG_ADMISSION_TRUST_FIRST: u8 = 0;
/// Admission: accept only senders added with `dg_group_add_sender`.
pub const DG_ADMISSION_STRICT: u8 = 1;

/// Nonce profile: refuse AES records whose explicit nonce is not epoch || sender ID || seq
/// (default: such a sender may be reusing nonces).
pub const DG_NONCE_STRICT: u8 = 0;
/// Nonce profile: accept any explicit nonce (the DTLS 1.2 rule; needed to receive wolfSSL
/// members, which count nonces from 0). This library's senders never do that.
pub const DG_NONCE_COMPATIBILITY: u8 = 1;

/// Largest number of senders a context tracks.
pub const DG_MAX_SENDERS: u32 = 32;
/// Replay window sizes (records) a context supports: 64 (default), 128 or 256.
pub const DG_WINDOW_DEFAULT: u16 = 64;

/// Bytes a record adds to its plaintext at most: 13 header + 8 explicit nonce + 16 tag.
pub const DG_MAX_OVERHEAD: u32 = 37;

/// The configuration of a group context. Fill it with `dg_group_config_init` and change the
/// fields you need before `dg_group_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dg_group_config {
    /// Group identifier (bound into the native key schedule).
    pub group_id: u32,
    /// The suite of the keys installed from a secret (`DG_SUITE_*`).
    pub suite: u16,
    /// Replay window per sender, in records: 64, 128 or 256.
    pub replay_window: u16,
    /// 1: this node sends, with `sender_id`; 0: a listener.
    pub is_sender: u8,
    /// This node's sender ID (when `is_sender` is 1).
    pub sender_id: u8,
    /// `DG_ADMISSION_TRUST_FIRST` or `DG_ADMISSION_STRICT`.
    pub admission: u8,
    /// `DG_NONCE_STRICT` or `DG_NONCE_COMPATIBILITY`.
    pub nonce_profile: u8,
    /// How long the previous epoch stays receivable after a new one is activated (ms).
    pub grace_ms: u64,
}

/// A record delivered by `dg_group_open`: its plaintext is `buf[offset .. offset + length]`
/// of the buffer that was opened in place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct dg_delivery {
    /// The authenticated sender ID.
    pub sender_id: u8,
    /// The record's epoch.
    pub epoch: u16,
    /// The record's sequence number.
    pub seq: u64,
    /// Offset of the plaintext in the opened buffer.
    pub offset: usize,
    /// Length of the plaintext.
    pub length: usize,
}

impl dg_delivery {
    pub(crate) fn from_delivery(d: &Delivery<'_>, base: *const u8) -> Self {
        let offset = (d.plaintext.as_ptr() as usize).saturating_sub(base as usize);
        Self {
            sender_id: d.sender_id.0,
            epoch: d.epoch.0,
            seq: d.seq,
            offset,
            length: d.plaintext.len(),
        }
    }
}

/// Records accepted, sealed and dropped by reason (as group-core's `Counters`; every drop
/// reason has its `DG_ERR_*`). All counters saturate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dg_counters {
    /// Records authenticated and delivered.
    pub accepted: u64,
    /// Records sealed by this node.
    pub sealed: u64,
    /// `DG_ERR_MALFORMED`.
    pub malformed: u64,
    /// `DG_ERR_UNSUPPORTED_CONTENT_TYPE`.
    pub unsupported_content_type: u64,
    /// `DG_ERR_UNKNOWN_EPOCH` (and `DG_ERR_NOT_JOINED`).
    pub unknown_epoch: u64,
    /// `DG_ERR_UNKNOWN_SENDER`.
    pub unknown_sender: u64,
    /// `DG_ERR_REPLAY`.
    pub replay: u64,
    /// `DG_ERR_TOO_OLD`.
    pub too_old: u64,
    /// `DG_ERR_AUTHENTICATION_FAILED`.
    pub authentication_failed: u64,
    /// `DG_ERR_OWN_SENDER_ID`.
    pub own_sender_id: u64,
    /// `DG_ERR_NONCE_MISMATCH`.
    pub nonce_mismatch: u64,
    /// `DG_ERR_RECORD_OVERFLOW` when opening.
    pub record_overflow: u64,
    /// `DG_ERR_RECORD_OVERFLOW` when sealing (refused, not a drop).
    pub seal_record_overflow: u64,
    /// Events lost because the event queue was full.
    pub events_dropped: u64,
}

impl From<&Counters> for dg_counters {
    fn from(c: &Counters) -> Self {
        Self {
            accepted: c.accepted,
            sealed: c.sealed,
            malformed: c.malformed,
            unsupported_content_type: c.unsupported_content_type,
            unknown_epoch: c.unknown_epoch,
            unknown_sender: c.unknown_sender,
            replay: c.replay,
            too_old: c.too_old,
            authentication_failed: c.authentication_failed,
            own_sender_id: c.own_sender_id,
            nonce_mismatch: c.nonce_mismatch,
            record_overflow: c.record_overflow,
            seal_record_overflow: c.seal_record_overflow,
            events_dropped: c.events_dropped,
        }
    }
}

/// No event was queued.
pub const DG_EVENT_NONE: u8 = 0;
/// Ask the key server for a new epoch (`epoch`, `reason`: `DG_REKEY_*`).
pub const DG_EVENT_REKEY_NEEDED: u8 = 1;
/// Authentication failures under `epoch` reached the integrity limit (`value`: failures).
pub const DG_EVENT_INTEGRITY_LIMIT: u8 = 2;
/// An authentic record carried this node's own sender ID (`epoch`, `value`: its seq).
pub const DG_EVENT_SENDER_ID_CLASH: u8 = 3;
/// `sender_id`'s state was evicted from a full table.
pub const DG_EVENT_SENDER_EVICTED: u8 = 4;
/// `epoch`'s grace period ended; its key is dropped.
pub const DG_EVENT_EPOCH_RETIRED: u8 = 5;
/// An event this version of the header does not know.
pub const DG_EVENT_OTHER: u8 = 255;

/// Rekey reason: this node's sequence number passed its budget.
pub const DG_REKEY_SENDER_BUDGET: u8 = 1;
/// Rekey reason: records under the epoch key passed the confidentiality limit.
pub const DG_REKEY_GROUP_USAGE: u8 = 2;
/// Rekey reason: this node's sequence numbers are used up.
pub const DG_REKEY_SEQUENCE_EXHAUSTED: u8 = 3;

/// Something the application should act on (`dg_group_poll_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dg_event {
    /// `DG_EVENT_*`; `DG_EVENT_NONE` when the queue was empty.
    pub kind: u8,
    /// `DG_REKEY_*` for `DG_EVENT_REKEY_NEEDED`, else 0.
    pub reason: u8,
    /// The sender concerned (`DG_EVENT_SENDER_EVICTED`), else 0.
    pub sender_id: u8,
    /// The epoch concerned, else 0.
    pub epoch: u16,
    /// Failures (`DG_EVENT_INTEGRITY_LIMIT`) or sequence number (`DG_EVENT_SENDER_ID_CLASH`).
    pub value: u64,
}

impl From<Event> for dg_event {
    fn from(e: Event) -> Self {
        let mut out = dg_event {
            kind: DG_EVENT_OTHER,
            ..Self::default()
        };
        match e {
            Event::RekeyNeeded { epoch, reason } => {
                out.kind = DG_EVENT_REKEY_NEEDED;
                out.epoch = epoch.0;
                out.reason = match reason {
                    RekeyReason::SenderBudget => DG_REKEY_SENDER_BUDGET,
                    RekeyReason::GroupUsage => DG_REKEY_GROUP_USAGE,
                    RekeyReason::SequenceExhausted => DG_REKEY_SEQUENCE_EXHAUSTED,
                };
            }
            Event::IntegrityLimitReached { epoch, failures } => {
                out.kind = DG_EVENT_INTEGRITY_LIMIT;
                out.epoch = epoch.0;
                out.value = failures;
            }
            Event::PossibleSenderIdClash { epoch, seq } => {
                out.kind = DG_EVENT_SENDER_ID_CLASH;
                out.epoch = epoch.0;
                out.value = seq;
            }
            Event::SenderEvicted { sender_id } => {
                out.kind = DG_EVENT_SENDER_EVICTED;
                out.sender_id = sender_id.0;
            }
            Event::EpochRetired { epoch } => {
                out.kind = DG_EVENT_EPOCH_RETIRED;
                out.epoch = epoch.0;
            }
            _ => {}
        }
        out
    }
}
