//! # group-core
//!
//! A `no_std`, allocation-free, sans-IO DTLS 1.2 record layer for **group keys**: one sender
//! seals one datagram for a multicast group, and every member authenticates it, drops replays
//! and forgeries, and delivers it. The record layout (epoch 16 | sender ID 8 | seq 40 in the DTLS
//! 1.2 header) follows draft-keoh-dice-multicast-security-08 §4 and is wire-compatible with
//! wolfSSL's DTLS multicast and with plain DTLS 1.2 AEAD records.
//!
//! No I/O, clock or randomness: bytes, `now` ([`Instant`]) and key material come in; records,
//! deadlines, counters and events go out.
//!
//! ```text
//!  wire (bytes <-> structure)
//!   ├─ suite (AEAD, keys, nonce)   replay (windows)   schedule / epochs (keys per epoch)
//!   │  signature (ECDSA P-256)     policy (defaults)  sequence (send counters, persistence)
//!   └─ record (seal / open one record)
//!        └─ group (senders, policy, counters, events: the handle_* / poll_* surface)
//!             ├─ datagram (Group::open_datagram: every record of a datagram, in place)
//!             └─ keydist (key-distribution messages and their protection; KeyServer, and
//!                         Member, which installs the keys into the Group it holds)
//! ```
//!
//! The types a user touches to seal, open and join are re-exported here, at the crate root
//! ([`Group`], [`GroupConfig`], [`OpenError`], [`SealError`], [`Epoch`], [`SenderId`],
//! [`Suite`], [`native_keys`], [`EpochSecret`], [`SequenceStore`], [`MemorySequenceStore`],
//! [`Instant`], [`Member`], [`MemberConfig`], ...), and so are the [`p256`] and [`rand_core`]
//! crates the API takes keys and random generators from: depend on `group-core` alone and
//! name them as `group_core::p256` and `group_core::rand_core`, so their versions always
//! match. The modules hold the rest. `docs/architecture.md` in the repository shows the
//! crates, the modules and the path of a record and of a key bundle through them.
//!
//! ## Example
//!
//! ```
//! use group_core::{
//!     Epoch, EpochSecret, Group, GroupConfig, Instant, MemorySequenceStore, SenderId, Suite,
//!     native_keys,
//! };
//!
//! // Key material as the key server hands it out (here: a fixed secret).
//! let keys = native_keys(7, Epoch(1), Suite::AES_128_CCM, &EpochSecret([0x42; 32])).unwrap();
//! let now = Instant(0);
//!
//! // A switch (sender ID 1) and a light (a listener).
//! let mut switch: Group = Group::new(GroupConfig::new(7).with_sender_id(SenderId(1)));
//! let mut light: Group = Group::new(GroupConfig::new(7));
//! switch.install_and_activate(Epoch(1), &keys, now).unwrap();
//! light.install_and_activate(Epoch(1), &keys, now).unwrap();
//!
//! // The switch's sequence numbers are reserved in durable storage before use.
//! let mut store = MemorySequenceStore::commissioned();
//! let mut datagram = [0u8; 128];
//! let len = switch.seal(now, &mut store, b"on", &mut datagram).unwrap();
//! let captured = datagram;
//!
//! let delivery = light.open(now, &mut datagram[..len]).unwrap();
//! assert_eq!(delivery.sender_id, SenderId(1));
//! assert_eq!(delivery.plaintext, b"on");
//!
//! // A replay is dropped and counted.
//! let mut replay = captured;
//! assert!(light.open(now, &mut replay[..len]).is_err());
//! assert_eq!(light.counters().replay, 1);
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

#[cfg(all(
    feature = "keydist-member",
    not(any(feature = "signed", feature = "psk"))
))]
compile_error!("the `keydist-member` feature needs a key-distribution mode: `signed` and/or `psk`");

pub mod counters;
pub mod datagram;
pub mod epochs;
pub mod group;
#[cfg(any(feature = "keydist-member", feature = "keydist-server"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "keydist-member", feature = "keydist-server")))
)]
pub mod keydist;
mod log;
pub mod policy;
pub mod record;
pub mod replay;
pub mod schedule;
pub mod sequence;
pub mod signature;
pub mod suite;
pub mod time;
pub mod wire;

// The front door: what a user touches to seal, open and join.
pub use counters::{Counters, Event, RekeyReason};
pub use group::{Admission, Delivery, Group, GroupConfig};
#[cfg(any(feature = "keydist-member", feature = "keydist-server"))]
pub use keydist::{DeviceId, Role};
#[cfg(feature = "keydist-member")]
pub use keydist::{Member, MemberConfig, MemberCredentials, MemberEvent};
pub use record::{NonceProfile, OpenError, SealError};
pub use schedule::EpochSecret;
#[cfg(feature = "native-schedule")]
pub use schedule::native_keys;
#[cfg(feature = "wolfssl-schedule")]
pub use schedule::{WolfSslDerivation, tls12_prf_sha256, wolfssl_keys};
pub use sequence::{MemorySequenceStore, SequenceStore, StoreError, StoredSequence};
pub use suite::{KeyError, RecordKeys, Suite};
pub use time::Instant;
pub use wire::{Epoch, SenderId};

/// The P-256 crate (ECDSA keys for signed records and key distribution), re-exported so that
/// its version always matches the one `group-core` takes keys from.
pub use p256;
/// The `rand_core` crate ([`CryptoRng`](rand_core::CryptoRng) for key distribution and
/// sealed secrets), re-exported so that its version always matches.
pub use rand_core;

/// The workspace README and the design documents in `docs/`: every Rust block in them is
/// compiled and run by `cargo test -p group-core --doc` (the other blocks are marked with
/// their language).
#[cfg(doctest)]
pub mod doc_tests {
    /// `README.md`.
    #[doc = include_str!("../../README.md")]
    pub struct Readme;
    /// `docs/architecture.md`.
    #[doc = include_str!("../../docs/architecture.md")]
    pub struct Architecture;
    /// `docs/wire-format.md`.
    #[doc = include_str!("../../docs/wire-format.md")]
    pub struct WireFormat;
    /// `docs/key-distribution.md`.
    #[doc = include_str!("../../docs/key-distribution.md")]
    pub struct KeyDistribution;
    /// `docs/decisions.md`.
    #[doc = include_str!("../../docs/decisions.md")]
    pub struct Decisions;
    /// `docs/performance.md`.
    #[doc = include_str!("../../docs/performance.md")]
    pub struct Performance;
    /// `docs/threat-model.md`.
    #[doc = include_str!("../../docs/threat-model.md")]
    pub struct ThreatModel;
}
