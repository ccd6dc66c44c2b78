//! The vocabulary every part of key distribution shares: the format version, the sizes, the
//! protection [`Mode`], the [`Direction`] of a message, a device's [`DeviceId`] and [`Role`].

use serde::{Deserialize, Serialize};

use crate::signature::SIGNATURE_LEN;

/// The key-distribution format version: the first byte of every message. Another value is
/// refused with [`Error::UnsupportedVersion`](super::Error::UnsupportedVersion); the version
/// byte is covered by the signature (or PSK tag), so it can't be rewritten.
/// Version 2 added the join challenge (kind 6, [`JoinChallenge`](super::JoinChallenge)) and the
/// `challenge` field of [`JoinRequest`](super::JoinRequest) (issue 10, finding 1).
pub const VERSION: u8 = 2;

/// Length of the fresh nonce in every device message.
pub const NONCE_LEN: usize = 16;

/// Largest number of senders a bundle lists (and a key server admits per group), with or
/// without record signatures: one per sender ID (1..=255); see [`MAX_SIGNING_SENDERS`] for how
/// the keys of a signed group's senders travel. A member whose group tracks fewer senders keeps what fits
/// ([`Member`](super::Member), docs/key-distribution.md §10).
pub const MAX_SENDERS: usize = 255;

/// Largest number of keyed entries in one bundle, and of senders whose keys all travel in the
/// bundle itself: every sender entry of a group that requires record signatures carries its
/// 33-byte verifying key, and the largest such bundle (24 keyed senders, every stale slot, an
/// echo, wolfSSL material, every varint at its widest: 1,175 bytes) must fit
/// [`MAX_MESSAGE_LEN`] (docs/decisions.md, "Bundle capacity"). A signed group with more senders
/// (up to [`MAX_SENDERS`]) has its list split: the bundle carries [`SPLIT_BUNDLE_KEYS`] keys,
/// [`SenderKeys`](super::SenderKeys) parts the others.
pub const MAX_SIGNING_SENDERS: usize = 24;

/// Keys a bundle carries when its group's list does not fit one message (a group that requires
/// record signatures and has more than [`MAX_SIGNING_SENDERS`] senders): the keys of its first
/// 10 entries; the others follow in [`SenderKeys`](super::SenderKeys) parts of at most
/// [`MAX_PART_KEYS`]. The largest such bundle (255 entries, 10 keyed, every stale slot, an echo,
/// wolfSSL material, every varint at its widest) is 1,176 bytes (docs/decisions.md, "Signed
/// groups of 255 senders").
pub const SPLIT_BUNDLE_KEYS: usize = 10;

/// Most keys one [`SenderKeys`](super::SenderKeys) part carries: the largest part (32 keys,
/// every varint at its widest, a signature) is 1,158 bytes, within [`MAX_MESSAGE_LEN`]. A
/// 255-sender signed group's list is its bundle and 8 parts.
pub const MAX_PART_KEYS: usize = 32;

/// Largest number of stale sender IDs a bundle lists.
pub const MAX_STALE: usize = 16;

/// Largest encoded message (fits one IPv6 minimum-MTU datagram with room for headers).
pub const MAX_MESSAGE_LEN: usize = 1200;

/// Length of an AES-128-CCM tag (the PSK trailer and the sealed secret's tag).
pub const TAG_LEN: usize = 16;

/// How a message is protected: the second byte of every message.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    /// ECDSA P-256 signature by the sender; bundle secrets sealed with ephemeral-static ECDH.
    Signed = 1,
    /// AES-128-CCM under keys derived from the device's pre-shared key (feature `psk`).
    Psk = 2,
}

impl Mode {
    /// The mode of a mode byte, if known.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Signed),
            2 => Some(Self::Psk),
            _ => None,
        }
    }

    /// Length of this mode's trailer.
    pub const fn trailer_len(self) -> usize {
        match self {
            Self::Signed => SIGNATURE_LEN,
            Self::Psk => TAG_LEN,
        }
    }
}

/// Which way a message goes (domain separation of signatures and PSK keys).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Direction {
    /// Device to key server.
    DeviceToServer = 1,
    /// Key server to device.
    ServerToDevice = 2,
}

/// A device's identity at the key server, assigned at commissioning.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceId(pub u32);

/// What a device may do in a group.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum Role {
    /// Receives only; gets no sender ID.
    Listener,
    /// Sends and receives; gets a sender ID.
    Sender,
}

impl Role {
    /// Whether a device admitted as `self` may take `wanted`.
    pub const fn allows(self, wanted: Role) -> bool {
        matches!(
            (self, wanted),
            (Role::Sender, _) | (Role::Listener, Role::Listener)
        )
    }
}
