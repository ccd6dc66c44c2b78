//! Why a record was not delivered ([`OpenError`]) or not sealed ([`SealError`]): the errors of
//! a [`Group`](super::Group), also those of the stateless [`record`](crate::record) functions
//! (re-exported there).

use core::fmt;

use crate::replay::ReplayError;
use crate::sequence::{SequenceError, StoreError};
use crate::wire::{self, ContentType, Epoch, SenderId};

/// Why a record was not delivered. Every variant maps to one drop counter.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Not a well-formed record.
    Malformed(wire::Error),
    /// Not application data: parsed and reported, not processed.
    UnsupportedContentType(ContentType),
    /// The epoch is not held (never installed, retired, or past its grace period).
    UnknownEpoch(Epoch),
    /// The sender is not known and can't be admitted (strict admission, full table), or it is
    /// refused in this epoch because its state was dropped here (evicted, reused as dead, or
    /// removed) while it may have had records accepted in this epoch.
    UnknownSender(SenderId),
    /// Already received.
    Replay,
    /// Older than the replay window, or in an epoch older than the sender's.
    TooOld,
    /// Authentication failed (opaque).
    AuthenticationFailed,
    /// The record carries this node's own sender ID (own loopback or a sender-ID clash).
    OwnSenderId,
    /// Strict profile: the explicit nonce is not `epoch || sid || seq`.
    NonceMismatch,
    /// The record's plaintext would be longer than 2^14 bytes
    /// ([`MAX_PLAINTEXT_LEN`](crate::wire::MAX_PLAINTEXT_LEN); RFC 6347 §4.1 / RFC 5246 §6.2.1,
    /// alert `record_overflow`). Refused before decryption.
    RecordOverflow,
    /// A key-distribution [`Member`](crate::keydist::Member) holds no keys: it has not joined
    /// yet, or it left or was removed. Never returned by a [`Group`](crate::group::Group);
    /// counted as [`unknown_epoch`](crate::counters::Counters::unknown_epoch) where counted.
    NotJoined,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Malformed(e) => write!(f, "malformed: {e}"),
            OpenError::UnsupportedContentType(t) => write!(f, "unsupported content type {}", t.0),
            OpenError::UnknownEpoch(e) => write!(f, "unknown epoch {}", e.0),
            OpenError::UnknownSender(s) => write!(f, "unknown sender {}", s.0),
            OpenError::Replay => f.write_str("replay"),
            OpenError::TooOld => f.write_str("too old"),
            OpenError::AuthenticationFailed => f.write_str("authentication failed"),
            OpenError::OwnSenderId => f.write_str("own sender id"),
            OpenError::NonceMismatch => f.write_str("explicit nonce mismatch"),
            OpenError::RecordOverflow => f.write_str("record overflow: plaintext over 2^14 bytes"),
            OpenError::NotJoined => f.write_str("not joined: no keys"),
        }
    }
}

impl core::error::Error for OpenError {}

impl OpenError {
    /// A stable snake_case name for logs, counters and the command-line tool.
    pub const fn reason(&self) -> &'static str {
        match self {
            OpenError::Malformed(_) => "malformed",
            OpenError::UnsupportedContentType(_) => "unsupported_content_type",
            OpenError::UnknownEpoch(_) => "unknown_epoch",
            OpenError::UnknownSender(_) => "unknown_sender",
            OpenError::Replay => "replay",
            OpenError::TooOld => "too_old",
            OpenError::AuthenticationFailed => "authentication_failed",
            OpenError::OwnSenderId => "own_sender_id",
            OpenError::NonceMismatch => "nonce_mismatch",
            OpenError::RecordOverflow => "record_overflow",
            OpenError::NotJoined => "not_joined",
        }
    }
}

impl From<ReplayError> for OpenError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Replay => OpenError::Replay,
            ReplayError::TooOld => OpenError::TooOld,
        }
    }
}

impl From<wire::Error> for OpenError {
    fn from(e: wire::Error) -> Self {
        OpenError::Malformed(e)
    }
}

/// Why a record could not be sealed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SealError {
    /// No current epoch to send in.
    NoCurrentEpoch,
    /// This node has no sender ID (a listener).
    NotASender,
    /// The output buffer can't hold the record.
    BufferTooSmall,
    /// The record would exceed the configured maximum fragment length
    /// ([`GroupConfig::max_fragment_len`](super::GroupConfig::max_fragment_len)).
    PlaintextTooLarge,
    /// The plaintext is longer than 2^14 bytes
    /// ([`MAX_PLAINTEXT_LEN`](crate::wire::MAX_PLAINTEXT_LEN)), the DTLS 1.2 limit (RFC 6347 §4.1,
    /// `record_overflow`). Nothing is sealed and no sequence number is used.
    RecordOverflow,
    /// The sequence state is missing or corrupt: wait for a new epoch or sender ID.
    SequenceStateLost(StoreError),
    /// Reserving sequence numbers in the store failed.
    SequenceStore(StoreError),
    /// The store holds a newer epoch or another sender ID for this epoch.
    SequenceStale,
    /// The epoch's sequence numbers are used up: rekey.
    SequenceExhausted,
    /// The record header could not be written: a sequence number above 2^40 − 1 (or a buffer
    /// too small for the header) was given to [`record::seal`](crate::record::seal).
    Header(wire::Error),
    /// The AEAD refused the input.
    Crypto,
    /// The group requires signed records and no signing key is set.
    NoSigningKey,
    /// A key-distribution [`Member`](crate::keydist::Member) lost its sequence state and waits
    /// for the fresh epoch the key server issues for it: nothing may be sent before it.
    AwaitingRecovery,
}

impl From<SequenceError> for SealError {
    fn from(e: SequenceError) -> Self {
        match e {
            SequenceError::StateLost(s) => SealError::SequenceStateLost(s),
            SequenceError::Store(s) => SealError::SequenceStore(s),
            SequenceError::Stale => SealError::SequenceStale,
            SequenceError::Exhausted => SealError::SequenceExhausted,
        }
    }
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::NoCurrentEpoch => f.write_str("no current epoch"),
            SealError::NotASender => f.write_str("no sender id"),
            SealError::BufferTooSmall => f.write_str("buffer too small"),
            SealError::PlaintextTooLarge => f.write_str("plaintext too large"),
            SealError::RecordOverflow => f.write_str("record overflow: plaintext over 2^14 bytes"),
            SealError::SequenceStateLost(e) => write!(f, "sequence state lost: {e}"),
            SealError::SequenceStore(e) => write!(f, "sequence store: {e}"),
            SealError::SequenceStale => f.write_str("sequence store holds a newer state"),
            SealError::SequenceExhausted => f.write_str("sequence numbers exhausted"),
            SealError::Header(e) => write!(f, "record header: {e}"),
            SealError::Crypto => f.write_str("aead refused input"),
            SealError::NoSigningKey => f.write_str("signed group but no signing key"),
            SealError::AwaitingRecovery => {
                f.write_str("sequence state lost: waiting for a fresh epoch from the key server")
            }
        }
    }
}

impl core::error::Error for SealError {}
