//! Key distribution (wire.md §7): how members get, rotate and lose group keys.
//!
//! Sans-IO and allocation-free like the rest of the core: bytes, `now` and the caller's
//! [`CryptoRng`](rand_core::CryptoRng) come in; messages to send, deadlines and events go out.
//! The full specification, with every field, the flows and golden vectors, is
//! `docs/key-distribution.md`.
//!
//! ```text
//!  message (versioned postcard messages, envelope, sizes)
//!   ├─ crypto (ECDSA P-256 signatures, ECDH-ES + HKDF-SHA256 + AES-128-CCM sealing)
//!   ├─ psk    (feature `psk`: the same protection from a per-device pre-shared key)
//!   ├─ server (KeyServer: groups, admitted devices, sids, epochs, retransmission, ServerStore)
//!   └─ member (Member: join, verify, decrypt, install into a Group, ack, report, recover)
//! ```
//!
//! Every message is `version[1] || mode[1] || postcard(body) || trailer` (canonical: a body
//! that is not the encoder's byte string for what it decodes to is refused): the trailer is an
//! ECDSA P-256 signature (`r || s`, 64 bytes) in [`Mode::Signed`] and an AES-128-CCM tag
//! (16 bytes) in [`Mode::Psk`]. Server messages carry a per-server strictly increasing
//! counter and are bound to the recipient (its device ID and, in signed mode, its public key);
//! device messages carry a fresh 16-byte nonce and are bound to the key server. A join request
//! changes the key server's state only if it covers the server's fresh challenge
//! ([`JoinChallenge`]).
//!
//! ## Example: one device joins
//!
//! ```
//! use group_core::keydist::{
//!     DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
//!     MemoryServerStore, MessageKind, Received, Role, ServerCredentials, DeviceCredential,
//! };
//! use group_core::sequence::MemorySequenceStore;
//! use group_core::suite::Suite;
//! use group_core::time::Instant;
//! use p256::ecdsa::{SigningKey, VerifyingKey};
//! # struct Rng(u64);
//! # impl rand_core::TryRng for Rng {
//! #     type Error = core::convert::Infallible;
//! #     fn try_next_u32(&mut self) -> Result<u32, Self::Error> { Ok(self.try_next_u64()? as u32) }
//! #     fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
//! #         self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
//! #         Ok(self.0 >> 11) }
//! #     fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), Self::Error> {
//! #         for b in d { *b = self.try_next_u64()? as u8; } Ok(()) }
//! # }
//! # impl rand_core::TryCryptoRng for Rng {}   // doc example only: not a real CSPRNG
//! # let mut rng = Rng(1);
//! let server_key = SigningKey::from_slice(&[0x5a; 32]).unwrap();
//! let device_key = SigningKey::from_slice(&[0x3c; 32]).unwrap();
//! let now = Instant(0);
//!
//! let mut server: KeyServer<_> = KeyServer::open(
//!     ServerCredentials::new(server_key.clone()),
//!     MemoryServerStore::new(),
//! ).unwrap();
//! server.create_group(GroupSpec::new(7, Suite::AES_128_CCM), now, &mut rng).unwrap();
//! server.admit_device(DeviceId(1), DeviceCredential::public_key(device_key.verifying_key()),
//!     Role::Sender, &[7]).unwrap();
//!
//! let mut light: Member<_> = Member::new(
//!     MemberConfig::new(DeviceId(1), 7, Role::Sender),
//!     MemberCredentials::signed(device_key, *server_key.verifying_key()),
//!     MemorySequenceStore::commissioned(),
//! );
//! light.join(now).unwrap();
//!
//! // The join request is answered with a challenge; the request again, covering it, with
//! // the bundle.
//! let mut buf = [0u8; 1200];
//! let n = light.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
//! let r = server.handle_message(now, &mut rng, &buf[..n]).unwrap();
//! assert_eq!(r, Received::Challenged(DeviceId(1)));
//! let t = server.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
//! assert_eq!(t.kind, MessageKind::JoinChallenge);
//! light.handle_message(now, &buf[..t.len]).unwrap();
//! let n = light.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
//! let r = server.handle_message(now, &mut rng, &buf[..n]).unwrap();
//! assert_eq!(r, Received::Fresh(DeviceId(1)));  // the driver may note the device's address
//! let t = server.poll_transmit(now, &mut rng, &mut buf).unwrap().unwrap();
//! light.handle_message(now, &buf[..t.len]).unwrap();
//! assert!(light.is_joined());
//! assert_eq!(light.group().unwrap().current_epoch().map(|e| e.0), Some(1));
//! ```

mod crypto;
mod error;
mod member;
mod message;
#[cfg(feature = "psk")]
mod psk;
mod retry;
mod server;
mod store;

pub use crypto::{SEAL_SALT, SIGN_LABEL};
pub use error::Error;
pub use member::{Member, MemberConfig, MemberCredentials, MemberEvent, MemberState};
pub use message::{
    Ack, BundlePolicy, Bytes, CompressedKey, DeviceHeader, JoinChallenge, JoinRequest, KeyBundle,
    KeyMaterial, Leave, MAX_SEALED_LEN, Message, MessageKind, ProtectedMessage, PublicKeyBytes,
    RekeyNeeded, RekeyReport, Removed, RemovedReason, SealedSecret, SenderEntry, ServerHeader,
    WireAdmission, WireNonceProfile, decode_key_material, encode_key_material, parse,
};
#[cfg(feature = "psk")]
pub use psk::Psk;
pub use server::{
    CHALLENGE_TTL_MS, DeviceCredential, GroupSpec, KeySchedule, KeyServer, Received,
    ServerCredentials, ServerEvent, Transmit,
};
pub use store::{MEMORY_STORE_CAPACITY, MemoryServerStore, ServerStore};

use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

// ---- low-level building blocks ---------------------------------------------------------------
// The state machines are built from these; they are public for tools, tests and the golden
// vectors. They check nothing beyond what their names say.

/// Encodes `message` in signed mode: `version || mode || body || signature`, the signature by
/// `key` bound to `peer` (the recipient device's key for server messages, the key server's
/// key for device messages). Returns the length written to `out`.
pub fn encode_signed(
    message: &Message,
    key: &SigningKey,
    peer: &VerifyingKey,
    out: &mut [u8],
) -> Result<usize, Error> {
    crypto::protect(message, crypto::Protect::Signed { key, peer }, out)
}

/// Encodes `message` in PSK mode: `version || mode || body || tag`.
#[cfg(feature = "psk")]
pub fn encode_psk(message: &Message, psk: &Psk, out: &mut [u8]) -> Result<usize, Error> {
    crypto::protect(message, crypto::Protect::Psk(psk), out)
}

/// Parses `bytes` and verifies its signature by `key`, bound to `peer`.
pub fn verify_signed<'a>(
    bytes: &'a [u8],
    key: &VerifyingKey,
    peer: &VerifyingKey,
) -> Result<ProtectedMessage<'a>, Error> {
    let pm = parse(bytes)?;
    crypto::check(&pm, crypto::Check::Signed { key, peer })?;
    Ok(pm)
}

/// Parses `bytes` and verifies its PSK tag.
#[cfg(feature = "psk")]
pub fn verify_psk<'a>(bytes: &'a [u8], psk: &Psk) -> Result<ProtectedMessage<'a>, Error> {
    let pm = parse(bytes)?;
    crypto::check(&pm, crypto::Check::Psk(psk))?;
    Ok(pm)
}

/// Seals key material to `recipient` for the bundle with this header, epoch and suite
/// (ephemeral-static ECDH, HKDF-SHA256, AES-128-CCM).
pub fn seal_secret<R: rand_core::CryptoRng + ?Sized>(
    rng: &mut R,
    recipient: &VerifyingKey,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let aad = crypto::secret_aad(
        header.group_id,
        header.device_id,
        header.counter,
        epoch,
        suite,
    );
    crypto::seal_ecdh(rng, recipient, &aad, material)
}

/// Seals key material with a device's PSK for the bundle with this header, epoch and suite.
#[cfg(feature = "psk")]
pub fn seal_secret_psk(
    psk: &Psk,
    header: &ServerHeader,
    epoch: u16,
    suite: u16,
    material: &KeyMaterial,
) -> Result<SealedSecret, Error> {
    let aad = crypto::secret_aad(
        header.group_id,
        header.device_id,
        header.counter,
        epoch,
        suite,
    );
    psk::seal(psk, header.device_id, header.counter, &aad, material)
}

/// Decrypts the key material of a bundle addressed to the holder of `device_key` (signed
/// mode), without any other check: for diagnostics, test taps and golden vectors. Members use
/// [`Member::handle_message`], which verifies everything first.
pub fn open_bundle_secret(
    device_key: &SigningKey,
    bundle: &KeyBundle,
) -> Result<KeyMaterial, Error> {
    let aad = crypto::secret_aad(
        bundle.header.group_id,
        bundle.header.device_id,
        bundle.header.counter,
        bundle.epoch,
        bundle.suite,
    );
    crypto::open_ecdh(device_key, &bundle.sealed, &aad)
}

/// [`open_bundle_secret`] for a PSK device.
#[cfg(feature = "psk")]
pub fn open_bundle_secret_psk(psk: &Psk, bundle: &KeyBundle) -> Result<KeyMaterial, Error> {
    let aad = crypto::secret_aad(
        bundle.header.group_id,
        bundle.header.device_id,
        bundle.header.counter,
        bundle.epoch,
        bundle.suite,
    );
    psk::open(
        psk,
        bundle.header.device_id,
        bundle.header.counter,
        &bundle.sealed,
        &aad,
    )
}

/// The key-distribution format version: the first byte of every message. Another value is
/// refused with [`Error::UnsupportedVersion`]; the version byte is covered by the signature
/// (or PSK tag), so it can't be rewritten.
/// Version 2 added the join challenge (kind 6, [`JoinChallenge`]) and the `challenge` field of
/// [`JoinRequest`] (issue 10, finding 1).
pub const VERSION: u8 = 2;

/// Length of the fresh nonce in every device message.
pub const NONCE_LEN: usize = 16;

/// Largest number of senders a bundle lists (and a key server admits per group).
pub const MAX_SENDERS: usize = 16;

/// Largest number of stale sender IDs a bundle lists.
pub const MAX_STALE: usize = 16;

/// Largest encoded message (fits one IPv6 minimum-MTU datagram with room for headers).
pub const MAX_MESSAGE_LEN: usize = 1200;

pub use crate::signature::SIGNATURE_LEN;

/// Length of an AES-128-CCM tag (the PSK trailer and the sealed secret's tag).
pub const TAG_LEN: usize = 16;

/// How a message is protected: the second byte of every message.
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
pub struct DeviceId(pub u32);

/// What a device may do in a group.
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
