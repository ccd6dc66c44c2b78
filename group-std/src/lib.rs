//! # group-std
//!
//! std drivers for [`group_core`]: UDP multicast sockets over socket2 ([`net`]), a group member
//! on a real socket ([`endpoint`]), a file-backed sequence store ([`store`]), and the
//! `dtls-group` command-line tool ([`cli`]) with its Prometheus endpoint ([`metrics`]). No protocol
//! logic lives here: it converts sockets,
//! clocks and files into the core's inputs.
//!
//! [`group_core`] is re-exported (and with it `group_core::p256` and `group_core::rand_core`),
//! so a program needs only this crate in its `Cargo.toml`.
//!
//! ```no_run
//! use group_std::group_core::{Epoch, EpochSecret, Group, GroupConfig, SenderId, Suite, native_keys};
//! use group_std::endpoint::{Clock, GroupEndpoint};
//! use group_std::net::{MulticastConfig, MulticastSocket};
//! use group_std::store::FileSequenceStore;
//!
//! let keys = native_keys(1, Epoch(1), Suite::AES_128_CCM, &EpochSecret([7; 32])).unwrap();
//! let socket = MulticastSocket::open(&MulticastConfig::loopback_v4("239.255.0.1:40000".parse().unwrap())).unwrap();
//! let mut group: Group = Group::new(GroupConfig::new(1).with_sender_id(SenderId(1)));
//! let clock = Clock::new();
//! group.install_and_activate(Epoch(1), &keys, clock.now()).unwrap();
//! let store = FileSequenceStore::commission("switch.seq").unwrap();
//! let mut switch = GroupEndpoint::new(socket, group, store, clock);
//! switch.send(b"on").unwrap();
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use group_core;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod async_endpoint;
pub mod cli;
pub mod control;
pub mod endpoint;
pub mod keyfile;
pub mod keyserver;
pub mod member;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod service;
pub mod store;

/// The documents about the std drivers and the tool: every Rust block in them is compiled and
/// run by `cargo test -p group-std --doc` (the other blocks are marked with their language).
#[cfg(doctest)]
pub mod doc_tests {
    /// `docs/cli.md`.
    #[doc = include_str!("../../docs/cli.md")]
    pub struct Cli;
    /// `docs/operations.md`.
    #[doc = include_str!("../../docs/operations.md")]
    pub struct Operations;
    /// `docs/interop.md`.
    #[doc = include_str!("../../docs/interop.md")]
    pub struct Interop;
    /// `docs/troubleshooting.md`.
    #[doc = include_str!("../../docs/troubleshooting.md")]
    pub struct Troubleshooting;
    /// `contrib/wireshark/README.md`.
    #[doc = include_str!("../../contrib/wireshark/README.md")]
    pub struct Wireshark;
    /// `contrib/systemd/README.md`.
    #[doc = include_str!("../../contrib/systemd/README.md")]
    pub struct Systemd;
}
