//! The one error type of key distribution.

use core::fmt;

use crate::record::SealError;
use crate::sequence::StoreError;
use crate::suite::KeyError;

/// Why a key-distribution message or operation was refused. Nothing changed when one of these
/// is returned: messages are authenticated and checked before any state is committed.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the fixed header and trailer, or a field runs past the end.
    Truncated,
    /// The body does not decode (bad enum tag, bad varint, bad bool, over a capacity).
    Malformed,
    /// Bytes left over after the body (or after the sealed secret's plaintext).
    TrailingBytes,
    /// The body (or the key material) decodes, but is not the canonical encoding of what it
    /// decodes to (a non-minimal varint): every message has exactly one byte string.
    NonCanonical,
    /// The format version byte is not one this build speaks.
    UnsupportedVersion(u8),
    /// The protection-mode byte is unknown (or names a mode this build lacks).
    UnsupportedMode(u8),
    /// The message is protected in another mode than the one agreed with this peer (e.g. a
    /// PSK-protected message to a device that uses signatures): a downgrade attempt.
    ModeMismatch,
    /// A message kind the receiver never accepts (e.g. a join request sent to a device).
    UnexpectedKind,
    /// The signature does not verify with the expected key (or is not low-S).
    BadSignature,
    /// The PSK tag or the sealed secret failed authentication (opaque).
    AuthenticationFailed,
    /// The message names another device.
    WrongDevice,
    /// The message names another group.
    WrongGroup,
    /// A server message whose counter is not above the last one accepted: replayed or
    /// reordered behind a newer one.
    Replayed,
    /// A device message that refers to an earlier membership, or a future server counter.
    Stale,
    /// A join response that does not echo the nonce of the outstanding join request.
    NonceMismatch,
    /// A bundle arrived while no join was outstanding and the device is not a member.
    NotJoined,
    /// The device is not admitted (or its public key differs from the one on file).
    UnknownDevice,
    /// The device is not admitted to this group, or not with the role it asks for.
    NotAdmitted,
    /// The device is not a member of the group.
    NotMember,
    /// The group is not known.
    UnknownGroup,
    /// A public key is not a valid SEC1 P-256 point (33 or 65 bytes).
    BadPublicKey,
    /// The bundle names a suite this build can't use.
    UnsupportedSuite(u16),
    /// The bundle's policy can't be met (e.g. a replay window larger than this build's).
    PolicyUnsupported,
    /// The bundle is inconsistent (a sender ID for a listener, none for a sender, a missing
    /// sender key in a group that requires signatures, an empty secret).
    InconsistentBundle,
    /// The record layer refused the keys.
    Key(KeyError),
    /// The record layer refused to start sending after a recovery.
    Seal(SealError),
    /// The server store failed; nothing was committed.
    Store(StoreError),
    /// The stored server state does not decode: refuse to start rather than reuse epochs.
    StateCorrupt,
    /// The server state does not fit the state buffer.
    StateTooLarge,
    /// A table is full (devices, groups, memberships, senders, retransmissions, queues).
    CapacityExceeded,
    /// No sender ID is free in the group under the current key material.
    SenderIdsExhausted,
    /// The group used all 65535 epochs: create a new group.
    EpochsExhausted,
    /// The group or device already exists.
    AlreadyExists,
    /// The output buffer is too small.
    BufferTooSmall,
    /// A PSK device can't be admitted to a group that requires signed records.
    PskWithSignatures,
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated message"),
            Error::Malformed => f.write_str("malformed message body"),
            Error::TrailingBytes => f.write_str("trailing bytes"),
            Error::NonCanonical => f.write_str("non-canonical encoding"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported version {v}"),
            Error::UnsupportedMode(m) => write!(f, "unsupported protection mode {m}"),
            Error::ModeMismatch => f.write_str("protection mode mismatch (downgrade?)"),
            Error::UnexpectedKind => f.write_str("unexpected message kind"),
            Error::BadSignature => f.write_str("bad signature"),
            Error::AuthenticationFailed => f.write_str("authentication failed"),
            Error::WrongDevice => f.write_str("message for another device"),
            Error::WrongGroup => f.write_str("message for another group"),
            Error::Replayed => f.write_str("replayed or stale server message"),
            Error::Stale => f.write_str("stale device message"),
            Error::NonceMismatch => f.write_str("join response does not echo the request nonce"),
            Error::NotJoined => f.write_str("not joined"),
            Error::UnknownDevice => f.write_str("unknown device"),
            Error::NotAdmitted => f.write_str("not admitted to the group or role"),
            Error::NotMember => f.write_str("not a member"),
            Error::UnknownGroup => f.write_str("unknown group"),
            Error::BadPublicKey => f.write_str("bad public key"),
            Error::UnsupportedSuite(s) => write!(f, "unsupported suite {s:#06x}"),
            Error::PolicyUnsupported => f.write_str("policy not supported by this build"),
            Error::InconsistentBundle => f.write_str("inconsistent bundle"),
            Error::Key(e) => write!(f, "keys refused: {e}"),
            Error::Seal(e) => write!(f, "sending refused: {e}"),
            Error::Store(e) => write!(f, "store: {e}"),
            Error::StateCorrupt => f.write_str("stored server state corrupt"),
            Error::StateTooLarge => f.write_str("server state too large for its buffer"),
            Error::CapacityExceeded => f.write_str("capacity exceeded"),
            Error::SenderIdsExhausted => f.write_str("sender IDs exhausted"),
            Error::EpochsExhausted => f.write_str("epochs exhausted"),
            Error::AlreadyExists => f.write_str("already exists"),
            Error::BufferTooSmall => f.write_str("buffer too small"),
            Error::PskWithSignatures => f.write_str("PSK devices can't join signed groups"),
        }
    }
}

impl core::error::Error for Error {}
