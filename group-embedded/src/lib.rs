//! # group-embedded
//!
//! [`group_core`] on bare metal: what a `no_std`, allocation-free firmware links next to the
//! record layer.
//!
//! - [`flash`]: [`FlashSequenceStore`](flash::FlashSequenceStore), a
//!   [`SequenceStore`](group_core::sequence::SequenceStore) on NOR flash
//!   ([`embedded_storage`]) that survives a power cut at any write or erase step without ever
//!   letting the sender reuse a sequence number, with wear spread over its pages; commissioned
//!   once at the factory (`commission_at_factory`) and only opened at boot (`open` says
//!   whether the state is there or lost, and nothing in the boot path turns a lost store into
//!   a new one); and
//!   [`SimNorFlash`](flash::sim::SimNorFlash), a simulated NOR flash that enforces the flash
//!   rules and cuts power on demand.
//! - `net` (feature `smoltcp`, on by default): [`GroupSocket`](net::GroupSocket), a poll-style
//!   group socket on a smoltcp [`Interface`](smoltcp::iface::Interface): joins the multicast
//!   group, seals and sends, receives and opens every record of a datagram through the core;
//!   caller-owned buffers. `hub`: an in-memory Ethernet hub device for tests and simulations.
//! - `member` (feature `smoltcp`): `MemberSocket`, a key-distribution member on smoltcp: its
//!   join, acks and reports go to the key server over unicast UDP, its group records over the
//!   same socket type as `GroupSocket` (`net::RecordSocket`, generic over what it drives).
//! - `embassy` (feature `embassy`): `AsyncGroupSocket`, the same socket on embassy-net with
//!   async `send` / `recv`, sharing `net::GroupEndpoint` with the poll-style socket.
//!
//! ```text
//!   application
//!     └─ net::GroupSocket ── smoltcp Interface / udp::Socket ── Device (hub, MAC driver)
//!          ├─ group_core::group::Group (seal / open / counters / events)
//!          └─ flash::FlashSequenceStore ── embedded_storage NorFlash
//! ```
//!
//! No I/O of its own, no clock, no heap, no `unsafe`.
//!
//! The crates a firmware would otherwise have to pin at the same versions by hand are
//! re-exported: [`group_core`] (and through it [`p256`] and [`rand_core`]),
//! [`embedded_storage`], and `smoltcp` (feature `smoltcp`) and `embassy_net` (feature
//! `embassy`). `docs/embedded.md` in the repository walks through a firmware's boot path.
//!
//! ## Example: sequence numbers that survive a reboot
//!
//! ```
//! use group_embedded::flash::sim::SimNorFlash;
//! use group_embedded::flash::{FlashSequenceStore, StoreState};
//! use group_embedded::group_core::wire::Record;
//! use group_embedded::group_core::{
//!     Epoch, EpochSecret, Group, GroupConfig, Instant, SenderId, Suite, native_keys,
//! };
//!
//! let keys = native_keys(7, Epoch(1), Suite::AES_128_CCM, &EpochSecret([0x42; 32])).unwrap();
//! let config = GroupConfig::new(7).with_sender_id(SenderId(1));
//! let now = Instant(0);
//!
//! // Two 256-byte pages of a flash with a 4-byte write unit, commissioned at the factory.
//! let mut flash: SimNorFlash<2, 256, 4> = SimNorFlash::new();
//! FlashSequenceStore::commission_at_factory(&mut flash, 0, 2).unwrap();
//!
//! // Boot: open the store (it says what it found; a lost store is handed on all the same).
//! let (mut store, state) = FlashSequenceStore::open(flash, 0, 2).unwrap();
//! assert_eq!(state, StoreState::CommissionedEmpty);
//! let mut sender: Group = Group::new(config);
//! sender.install_and_activate(Epoch(1), &keys, now).unwrap();
//! let mut buf = [0u8; 64];
//! for _ in 0..3 {
//!     sender.seal(now, &mut store, b"on", &mut buf).unwrap();
//! }
//!
//! // Reboot: RAM is gone, the flash stays. The sender resumes above every number it used.
//! let (mut store, state) = FlashSequenceStore::open(store.into_inner(), 0, 2).unwrap();
//! assert!(matches!(state, StoreState::Reserved(_)));
//! let mut sender: Group = Group::new(config);
//! sender.install_and_activate(Epoch(1), &keys, now).unwrap();
//! let len = sender.seal(now, &mut store, b"on", &mut buf).unwrap();
//! let seq = Record::new_checked(&buf[..len]).unwrap().header().seq;
//! assert_eq!(seq, 1000); // K = 1000 numbers reserved per flash write
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

#[cfg(feature = "embassy")]
#[cfg_attr(docsrs, doc(cfg(feature = "embassy")))]
pub mod embassy;
pub mod flash;
#[cfg(feature = "smoltcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smoltcp")))]
pub mod hub;
#[cfg(feature = "smoltcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smoltcp")))]
pub mod member;
#[cfg(feature = "smoltcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smoltcp")))]
pub mod net;

#[cfg(feature = "embassy")]
#[cfg_attr(docsrs, doc(cfg(feature = "embassy")))]
pub use embassy_net;
pub use embedded_storage;
pub use group_core;
/// The P-256 crate `group_core` takes keys from (re-exported from [`group_core::p256`]).
pub use group_core::p256;
/// The `rand_core` crate `group_core` takes random generators from (re-exported from
/// [`group_core::rand_core`]).
pub use group_core::rand_core;
#[cfg(feature = "smoltcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "smoltcp")))]
pub use smoltcp;

/// The examples of `docs/embedded.md`, compiled and run as doctests.
#[cfg(all(doctest, feature = "smoltcp"))]
#[doc = include_str!("../../docs/embedded.md")]
pub struct EmbeddedDocTests;

/// The commands of `docs/footprint.md` (no Rust examples; kept here so that one added later
/// is compiled).
#[cfg(doctest)]
#[doc = include_str!("../../docs/footprint.md")]
pub struct FootprintDocTests;
