//! The policy of a group: admission, nonce profile, grace, limits.

use crate::policy;
use crate::record::NonceProfile;
use crate::suite::Suite;
use crate::wire::{MAX_FRAGMENT_LEN, SenderId};

/// How a receiver treats a sender it has no state for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Admission {
    /// Accept its first authenticated record and open its window there; every lower number
    /// counts as seen (default).
    #[default]
    TrustFirst,
    /// Accept only senders the key server provided
    /// ([`Group::add_sender`](super::Group::add_sender)).
    Strict,
}

/// Per-group policy. Build with [`GroupConfig::new`] and adjust fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConfig {
    /// Group identifier (bound into the native key schedule).
    pub group_id: u32,
    /// This node's sender ID; `None` for a listener.
    pub own_sender_id: Option<SenderId>,
    /// Unknown-sender policy.
    pub admission: Admission,
    /// Explicit-nonce policy.
    pub nonce_profile: NonceProfile,
    /// How long the previous epoch stays receivable after a new one is activated (ms).
    pub grace_ms: u64,
    /// Largest fragment accepted or sent (at most 2^14 + 2048). Independently, a plaintext is at
    /// most 2^14 bytes ([`MAX_PLAINTEXT_LEN`](crate::wire::MAX_PLAINTEXT_LEN)); the largest
    /// plaintext is the smaller of the two limits
    /// ([`Group::max_plaintext_len`](super::Group::max_plaintext_len)).
    pub max_fragment_len: usize,
    /// K: sequence numbers reserved per store write.
    pub sequence_reserve_step: u64,
    /// Raise [`RekeyReason::SenderBudget`](crate::counters::RekeyReason::SenderBudget) when own seq
    /// reaches this.
    pub sender_rekey_budget: u64,
    /// Raise [`RekeyReason::GroupUsage`](crate::counters::RekeyReason::GroupUsage) when records
    /// under one epoch key (sent + accepted) reach this; `None` picks the suite's RFC 9147 §4.5.3
    /// figure.
    pub confidentiality_limit: Option<u64>,
    /// Raise [`Event::IntegrityLimitReached`](crate::counters::Event::IntegrityLimitReached) when
    /// failures under one key reach this; `None` picks the suite's figure.
    pub integrity_limit: Option<u64>,
    /// Source authentication (wire-format.md §8): every record carries a 64-byte ECDSA P-256
    /// signature after the tag, verified with the sender's key before decryption. Senders
    /// without a key ([`Group::set_sender_key`](super::Group::set_sender_key)) are refused.
    pub signatures_required: bool,
}

impl GroupConfig {
    /// Defaults: trust-first, strict nonce profile, 60 s grace, full DTLS record size,
    /// K = 1000, sender budget 2^22.
    pub const fn new(group_id: u32) -> Self {
        Self {
            group_id,
            own_sender_id: None,
            admission: Admission::TrustFirst,
            nonce_profile: NonceProfile::Strict,
            grace_ms: policy::DEFAULT_GRACE_MS as u64,
            max_fragment_len: MAX_FRAGMENT_LEN,
            sequence_reserve_step: policy::DEFAULT_SEQUENCE_RESERVE_STEP,
            sender_rekey_budget: policy::DEFAULT_SENDER_REKEY_BUDGET,
            confidentiality_limit: None,
            integrity_limit: None,
            signatures_required: false,
        }
    }

    /// Requires signed records (source authentication).
    pub const fn with_signatures(mut self) -> Self {
        self.signatures_required = true;
        self
    }

    /// Sets the own sender ID.
    pub const fn with_sender_id(mut self, sid: SenderId) -> Self {
        self.own_sender_id = Some(sid);
        self
    }

    /// Sets the admission policy.
    pub const fn with_admission(mut self, a: Admission) -> Self {
        self.admission = a;
        self
    }

    /// Sets the nonce profile.
    pub const fn with_nonce_profile(mut self, p: NonceProfile) -> Self {
        self.nonce_profile = p;
        self
    }

    /// Sets the grace period.
    pub const fn with_grace_ms(mut self, ms: u64) -> Self {
        self.grace_ms = ms;
        self
    }
}

/// Confidentiality limit (records per key) by suite: RFC 9147 §4.5.3 gives 2^23 for AES-CCM;
/// GCM 2^24.5 is rounded down to 2^24; ChaCha20-Poly1305 has no practical limit.
pub fn default_confidentiality_limit(suite: Suite) -> u64 {
    match suite {
        Suite::AES_128_GCM => 1 << 24,
        Suite::CHACHA20_POLY1305 => u64::MAX,
        _ => 1 << 23,
    }
}

/// Integrity limit (failed authentications per key) by suite: 2^23 for AES-CCM (RFC 9147 gives
/// 2^23.5), 2^16 for CCM_8 (a project choice: RFC 9147 forbids CCM_8 without safeguards), 2^36
/// for GCM and ChaCha20-Poly1305.
pub fn default_integrity_limit(suite: Suite) -> u64 {
    match suite {
        Suite::AES_128_CCM_8 => 1 << 16,
        Suite::AES_128_CCM => 1 << 23,
        _ => 1 << 36,
    }
}
