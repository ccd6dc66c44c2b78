//! Policy defaults: the figures a group starts with unless its configuration says otherwise,
//! in one place for the record layer ([`GroupConfig::new`](crate::group::GroupConfig::new)),
//! the key server ([`GroupSpec::new`](crate::keydist::GroupSpec::new)), the member's
//! retransmissions and the drivers' configuration files (docs/decisions.md).

/// How long the previous epoch stays receivable after a new one is activated (ms).
pub const DEFAULT_GRACE_MS: u32 = 60_000;

/// Delay between the key server creating an epoch and making it the one to send in (ms).
pub const DEFAULT_ACTIVATION_DELAY_MS: u32 = 2_000;

/// Whether a joiner gets an epoch nobody has sent in yet (backward secrecy).
pub const DEFAULT_REKEY_ON_JOIN: bool = true;

/// Smallest replay window (records) the key server asks members to keep per sender.
pub const DEFAULT_REPLAY_WINDOW: u16 = 64;

/// K: sequence numbers reserved per store write (wire-format.md §7).
pub const DEFAULT_SEQUENCE_RESERVE_STEP: u64 = 1000;

/// Own sequence number at which a sender asks for a rekey
/// ([`RekeyReason::SenderBudget`](crate::counters::RekeyReason::SenderBudget)).
pub const DEFAULT_SENDER_REKEY_BUDGET: u64 = 1 << 22;

/// First retransmission timeout of key-distribution messages, at the key server and the
/// member (ms).
pub const INITIAL_RTO_MS: u64 = 1_000;

/// Largest retransmission timeout (ms): retransmission continues at this interval.
pub const MAX_RTO_MS: u64 = 64_000;
