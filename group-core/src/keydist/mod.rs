//! Key distribution (key-distribution.md): how members get, rotate and lose group keys.
//!
//! Compiled in with the `keydist-member` and/or `keydist-server` features; the modes are the
//! `signed` and `psk` features (the key server always has the signed mode: `keydist-server`
//! enables `signed`).
//!
//! Sans-IO and allocation-free like the rest of the core: bytes, `now` and the caller's
//! [`CryptoRng`](rand_core::CryptoRng) come in; messages to send, deadlines and events go out.
//! The full specification, with every field, the flows and golden vectors, is
//! `docs/key-distribution.md`.
//!
//! ```text
//!  vocabulary (version, sizes, Mode, Direction, DeviceId, Role)   error
//!   └─ message (versioned postcard messages, envelope; writer: device messages by hand, view:
//!       server messages by borrowing, the member's two codecs)
//!       └─ sealing (AES-128-CCM: bundle secrets, PSK tags; the secret's associated data)
//!           ├─ signed (ECDSA P-256 signatures, ECDH-ES + HKDF-SHA256 sealing)
//!           └─ psk    (feature `psk`: the same protection from a per-device pre-shared key)
//!               └─ credential (ServerCredentials, DeviceCredential, MemberCredentials: one
//!                   Credential protects, checks, seals and opens in either mode)
//!                   ├─ server (KeyServer: groups, admitted devices, sids, epochs,
//!                   │          retransmission, ServerStore)
//!                   └─ member (Member: join, verify, decrypt, install into a Group, ack,
//!                              report, recover)
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

mod credential;
mod error;
#[cfg(feature = "keydist-member")]
mod member;
mod message;
#[cfg(feature = "psk")]
mod psk;
mod retry;
mod sealing;
mod sender_list;
#[cfg(feature = "keydist-server")]
mod server;
#[cfg(any(feature = "signed", feature = "record-signatures"))]
mod signed;
#[cfg(feature = "keydist-server")]
mod store;
mod view;
mod vocabulary;
mod writer;

#[cfg(feature = "keydist-member")]
pub use credential::MemberCredentials;
#[cfg(feature = "keydist-server")]
pub use credential::{DeviceCredential, ServerCredentials};
pub use error::Error;
#[cfg(feature = "keydist-member")]
pub use member::{Member, MemberConfig, MemberEvent, MemberState};
pub use message::{
    Ack, BundlePolicy, Bytes, CompressedKey, DeviceHeader, JoinChallenge, JoinRequest, KeyBundle,
    KeyMaterial, Leave, MAX_SEALED_LEN, Message, MessageKind, ProtectedMessage, PublicKeyBytes,
    RekeyNeeded, RekeyReport, Removed, RemovedReason, SealedSecret, SenderEntry, SenderKeys,
    ServerHeader, WireAdmission, WireNonceProfile, decode_key_material, encode_key_material, parse,
};
#[cfg(feature = "psk")]
pub use psk::{Psk, encode_psk, open_bundle_secret_psk, seal_secret_psk, verify_psk};
pub use sender_list::SenderEntries;
#[cfg(feature = "keydist-server")]
pub use server::{
    BundleJob, CHALLENGE_TTL_MS, DeviceRec, GroupRec, GroupSpec, HeaplessTables, KeySchedule,
    KeyServer, MemberRec, Outgoing, Received, ServerEvent, ServerTables, Transmit, migrate_v1,
    migrate_v2_row, state_format,
};
#[cfg(feature = "signed")]
pub use signed::{
    SEAL_SALT, SIGN_LABEL, encode_signed, open_bundle_secret, seal_secret, verify_signed,
};
#[cfg(feature = "keydist-server")]
pub use store::{
    MEMORY_STORE_CAPACITY, MemoryServerStore, Row, RowVisitor, ServerStore, Table, member_key,
};
pub use view::{
    BundleView, SealedView, SenderKeysView, SenderList, ServerMessage, ServerProtected,
    parse_server,
};
pub use vocabulary::{
    DeviceId, Direction, MAX_MESSAGE_LEN, MAX_PART_KEYS, MAX_SENDERS, MAX_SIGNING_SENDERS,
    MAX_STALE, Mode, NONCE_LEN, Role, SPLIT_BUNDLE_KEYS, TAG_LEN, VERSION,
};
pub use writer::{DeviceMessage, write_device_body};

pub use crate::signature::SIGNATURE_LEN;
