//! # group-core
//!
//! A `no_std`, allocation-free, sans-IO DTLS 1.2 record layer for **group keys**: one sender
//! seals one datagram for a multicast group, and every member authenticates it, drops replays
//! and forgeries, and delivers it. The record layout (epoch 16 | sender ID 8 | seq 40 in the DTLS
//! 1.2 header) follows draft-keoh-dice-multicast-security-08 §4 and is wire-compatible with
//! wolfSSL's DTLS multicast and with plain DTLS 1.2 AEAD records.
//!
//! No I/O, clock or randomness: bytes, `now` ([`time::Instant`]) and key material come in;
//! records, deadlines, counters and events go out.
//!
//! ```text
//!  wire (bytes <-> structure)
//!   ├─ suite (AEAD, keys, nonce)   replay (windows)   schedule / epochs (keys per epoch)
//!   │                                                 sequence (send counters, persistence)
//!   └─ record (seal / open one record)
//!        └─ group (senders, policy, counters, events: the handle_* / poll_* surface)
//! ```
//!
//! ## Example
//!
//! ```
//! use group_core::group::{Group, GroupConfig};
//! use group_core::schedule::{native_keys, EpochSecret};
//! use group_core::sequence::MemorySequenceStore;
//! use group_core::suite::Suite;
//! use group_core::time::Instant;
//! use group_core::wire::{Epoch, SenderId};
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

pub mod counters;
pub mod datagram;
pub mod epochs;
pub mod group;
pub mod keydist;
pub mod policy;
pub mod record;
pub mod replay;
pub mod schedule;
pub mod sequence;
pub mod signature;
pub mod suite;
pub mod time;
pub mod wire;
