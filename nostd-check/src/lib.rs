//! # nostd-check
//!
//! The record path of [`group_core`] as a `no_std`, allocation-free round trip, and the binary
//! that proves it links without an allocator.
//!
//! [`round_trip`] drives the core the way a firmware would: keys from the native schedule
//! (and the wolfSSL one), a sending [`Group`] with a [`MemorySequenceStore`], a listening
//! [`Group`], seal, open, a replay, a forgery and the counters, in each AES suite (and
//! ChaCha20-Poly1305 with the `chacha20` feature). It returns which step failed, so the binary
//! can report it through its exit code.
//!
//! Because rustc's allocator check looks at the whole crate graph, a successful link proves
//! more than the round trip: no crate that `group-core` depends on (with the features this
//! build enables) links `alloc` at all, whether or not the round trip calls into it.
//!
//! The binary (`src/main.rs`) is the link proof. Built with `panic = "abort"` (the
//! `[profile.nostd]` of the workspace: `cargo build -p nostd-check --profile nostd`), it is
//! `#![no_std] #![no_main]`, has its own panic handler and a C `main` entry, links libc for
//! the C runtime only, and declares no `#[global_allocator]`. If `group-core` or any of its
//! dependencies linked the `alloc` crate, rustc would refuse to build it with "no global memory
//! allocator found". `.ci/nostd.sh` builds it, runs it and expects exit status 0.
//!
//! This library itself is `#![forbid(unsafe_code)]`; the binary needs three unsafe-attributed
//! items (see its docs) and allows `unsafe_code` on those items only.
#![no_std]
#![forbid(unsafe_code)]

use group_core::group::{Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys, wolfssl_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, Record, SenderId};

/// The step of [`round_trip`] that did not give the expected outcome. The binary exits with
/// [`Failure::code`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    /// A key schedule refused its input.
    KeySchedule,
    /// Installing the epoch keys failed.
    Install,
    /// Sealing failed.
    Seal,
    /// The sealed bytes are not a well-formed record with the expected header.
    Wire,
    /// The fresh record was not delivered, or delivered wrongly.
    Open,
    /// A replayed record was not dropped as a replay.
    ReplayAccepted,
    /// A bit-flipped record was not dropped as an authentication failure.
    ForgeryAccepted,
    /// The counters do not match what happened.
    Counters,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Failure::KeySchedule => "a key schedule refused its input",
            Failure::Install => "installing the epoch keys failed",
            Failure::Seal => "sealing failed",
            Failure::Wire => {
                "the sealed bytes are not a well-formed record with the expected header"
            }
            Failure::Open => "the fresh record was not delivered, or delivered wrongly",
            Failure::ReplayAccepted => "a replayed record was not dropped as a replay",
            Failure::ForgeryAccepted => {
                "a bit-flipped record was not dropped as an authentication failure"
            }
            Failure::Counters => "the counters do not match what happened",
        })
    }
}

impl core::error::Error for Failure {}

impl Failure {
    /// Process exit status for this failure (0 is success).
    pub const fn code(self) -> i32 {
        match self {
            Failure::KeySchedule => 10,
            Failure::Install => 11,
            Failure::Seal => 12,
            Failure::Wire => 13,
            Failure::Open => 14,
            Failure::ReplayAccepted => 15,
            Failure::ForgeryAccepted => 16,
            Failure::Counters => 17,
        }
    }
}

/// What [`round_trip`] did, for a caller that can print.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    /// Suites exercised.
    pub suites: usize,
    /// Records delivered across all suites.
    pub delivered: u64,
    /// Records dropped across all suites (replays and forgeries).
    pub dropped: u64,
}

const GROUP_ID: u32 = 0x0000_0107;

#[cfg(not(feature = "chacha20"))]
const SUITES: [Suite; 3] = [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM];
#[cfg(feature = "chacha20")]
const SUITES: [Suite; 4] = [
    Suite::AES_128_CCM_8,
    Suite::AES_128_CCM,
    Suite::AES_128_GCM,
    Suite::CHACHA20_POLY1305,
];
const MESSAGES: [&[u8]; 3] = [b"on", b"dim 40", b"off"];

/// Runs the record path end to end in every AES suite (and ChaCha20-Poly1305 with the
/// `chacha20` feature), then once more with keys from the wolfSSL schedule, without heap or I/O.
pub fn round_trip() -> Result<Summary, Failure> {
    let mut summary = Summary::default();
    let secret = EpochSecret([0x5a; 32]);
    for suite in SUITES {
        let keys =
            native_keys(GROUP_ID, Epoch(1), suite, &secret).map_err(|_| Failure::KeySchedule)?;
        let (delivered, dropped) = one_suite(&keys)?;
        summary.suites = summary.suites.saturating_add(1);
        summary.delivered = summary.delivered.saturating_add(delivered);
        summary.dropped = summary.dropped.saturating_add(dropped);
    }
    // The wolfSSL-compatible schedule links and yields usable keys too.
    let wolf = wolfssl_keys(Suite::AES_128_CCM_8, &[0x11; 64], &[0x22; 32], &[0x33; 32])
        .map_err(|_| Failure::KeySchedule)?;
    let (delivered, dropped) = one_suite(&wolf.keys)?;
    summary.suites = summary.suites.saturating_add(1);
    summary.delivered = summary.delivered.saturating_add(delivered);
    summary.dropped = summary.dropped.saturating_add(dropped);
    Ok(summary)
}

fn one_suite(keys: &RecordKeys) -> Result<(u64, u64), Failure> {
    let now = Instant(1_000);
    let switch_id = SenderId(1);
    let mut switch: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(switch_id));
    let mut light: Group = Group::new(GroupConfig::new(GROUP_ID));
    switch
        .install_and_activate(Epoch(1), keys, now)
        .map_err(|_| Failure::Install)?;
    light
        .install_and_activate(Epoch(1), keys, now)
        .map_err(|_| Failure::Install)?;
    let mut store = MemorySequenceStore::commissioned();

    let mut last = [0u8; 64];
    let mut last_len = 0;
    for (seq, msg) in (0u64..).zip(MESSAGES) {
        let mut buf = [0u8; 64];
        let len = switch
            .seal(now, &mut store, msg, &mut buf)
            .map_err(|_| Failure::Seal)?;
        let record = buf.get(..len).ok_or(Failure::Seal)?;
        let view = Record::new_checked(record).map_err(|_| Failure::Wire)?;
        let h = view.header();
        if h.epoch != Epoch(1) || h.sender_id != switch_id || h.seq != seq {
            return Err(Failure::Wire);
        }
        last = buf;
        last_len = len;
        let record = buf.get_mut(..len).ok_or(Failure::Seal)?;
        let d = light.open(now, record).map_err(|_| Failure::Open)?;
        if d.plaintext != msg || d.sender_id != switch_id || d.seq != seq {
            return Err(Failure::Open);
        }
    }

    // The last record again: a replay.
    let mut replay = last;
    let record = replay.get_mut(..last_len).ok_or(Failure::Seal)?;
    if light.open(now, record).err() != Some(OpenError::Replay) {
        return Err(Failure::ReplayAccepted);
    }

    // A fresh record with one ciphertext bit flipped: a forgery.
    let mut buf = [0u8; 64];
    let len = switch
        .seal(now, &mut store, b"on", &mut buf)
        .map_err(|_| Failure::Seal)?;
    let byte = buf.get_mut(len.saturating_sub(1)).ok_or(Failure::Seal)?;
    *byte ^= 0x01;
    let record = buf.get_mut(..len).ok_or(Failure::Seal)?;
    if light.open(now, record).err() != Some(OpenError::AuthenticationFailed) {
        return Err(Failure::ForgeryAccepted);
    }

    let c = light.counters();
    let sent = switch.counters().sealed;
    if c.accepted != 3 || c.replay != 1 || c.authentication_failed != 1 || sent != 4 {
        return Err(Failure::Counters);
    }
    if c.dropped() != 2 || light.epochs().current().map(|e| e.auth_failures()) != Some(1) {
        return Err(Failure::Counters);
    }
    Ok((c.accepted, c.dropped()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_succeeds_in_every_suite() {
        let s = round_trip().unwrap();
        let suites = SUITES.len() + 1;
        assert_eq!(
            s,
            Summary {
                suites,
                delivered: 3 * suites as u64,
                dropped: 2 * suites as u64,
            }
        );
    }
}
