//! # group-std
//!
//! std drivers for [`group_core`]: the `dtls-group` command-line tool today; UDP multicast
//! sockets, the key server and member runtime and file-backed stores are planned (see the
//! README's feature table).
#![forbid(unsafe_code)]

pub use group_core;
