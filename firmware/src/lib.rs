//! # firmware
//!
//! The self-test a Cortex-M4 image (`thumbv7em-none-eabihf`, QEMU `mps2-an386`) runs, and the
//! reference for the footprint figures in `docs/footprint.md`. The same code runs on the host
//! (`cargo test -p firmware`, `cargo run -p firmware`).
//!
//! [`run`] executes, without heap or I/O:
//! 1. the GnuTLS 3.7.9 AES-128-CCM_8 known answers ([`vectors`], copied from the fixture as
//!    data): the TLS 1.2 PRF key block; every captured application_data record opened through
//!    a group receiver (plaintext, epoch, sequence number), then refused as a replay; every
//!    record resealed byte for byte; every tampered copy refused;
//! 2. the flash store's boot path ([`FlashSequenceStore::commission_at_factory`] once, then
//!    [`FlashSequenceStore::open`] at every boot): commissioned-empty after the factory, the
//!    reservation after a reboot, a second commissioning refused, a wiped store and a decayed
//!    first reservation reported as lost (never as new), the sender refusing to start on them,
//!    and recovery in a fresh epoch;
//! 3. a seal/open round trip in each AES suite between a sender whose sequence numbers live in
//!    a [`FlashSequenceStore`] on a simulated NOR flash and a listener, with a replay and a
//!    forgery dropped, then a reboot of the sender that resumes above every number used;
//! 4. with feature `signatures`: a group that requires ECDSA P-256 record signatures;
//! 5. with feature `keydist`: a member joins through a key server (both in the image) and
//!    sends with the sender ID and keys it received;
//! 6. with feature `net`: three smoltcp stacks on an in-memory Ethernet hub, IPv4 multicast,
//!    one sender and two listeners through `group_embedded::net::GroupSocket`.
//!
//! Each step reports a line through [`Report`]; the first failure stops the run with a
//! [`Failure`] whose [`code`](Failure::code) the image prints before exiting through
//! semihosting with a failure status.
//!
//! ```
//! struct Quiet;
//! impl firmware::Report for Quiet {
//!     fn line(&mut self, _: core::fmt::Arguments<'_>) {}
//! }
//! let summary = firmware::run(&mut Quiet).unwrap();
//! assert_eq!(summary.kat_records, 8);
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

#[cfg(feature = "keydist")]
mod keydist;
#[cfg(feature = "net")]
mod net;
#[cfg(feature = "keydist")]
mod test_rng;
pub mod vectors;

use core::fmt;

use embedded_storage::nor_flash::NorFlash;
use group_core::group::{Group, GroupConfig};
use group_core::record::{self, NonceProfile, OpenError};
use group_core::schedule::{EpochSecret, native_keys, tls12_prf_sha256};
use group_core::sequence::{SequenceCounter, SequenceStore, StoredSequence};
use group_core::suite::{EpochCipher, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{ContentType, Epoch, Record, SenderId};
use group_embedded::flash::sim::SimNorFlash;
use group_embedded::flash::{FlashSequenceStore, Loss, SetupError, StoreState};

/// Where the self-test writes its progress (semihosting on the target, stdout on the host).
pub trait Report {
    /// One line of output.
    fn line(&mut self, args: fmt::Arguments<'_>);
}

/// The step that did not give the expected outcome.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Failure {
    /// The PRF did not reproduce GnuTLS's key block.
    Prf,
    /// A captured record did not open to its plaintext.
    KatOpen,
    /// A second copy of a captured record was not refused as a replay.
    KatReplay,
    /// Resealing did not reproduce a captured record.
    KatReseal,
    /// A tampered record was accepted.
    KatTamperedAccepted,
    /// A key schedule or key installation failed.
    Keys,
    /// The seal/open round trip failed.
    RoundTrip,
    /// A replay or forgery was accepted, or counted wrongly.
    DropAccepted,
    /// The flash store failed.
    Flash,
    /// The flash store's boot path reported a state other than the one expected (a lost store
    /// as new, a commissioned store as lost, a second commissioning accepted ...).
    FlashBoot,
    /// After a reboot the sender did not resume above the numbers it used.
    FlashResume,
    /// The signed-record round trip failed.
    Signatures,
    /// The smoltcp multicast round trip failed.
    Net,
    /// Joining through key distribution failed.
    KeyDist,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Failure::Prf => "the PRF did not reproduce GnuTLS's key block",
            Failure::KatOpen => "a captured record did not open to its plaintext",
            Failure::KatReplay => "a second copy of a captured record was not refused as a replay",
            Failure::KatReseal => "resealing did not reproduce a captured record",
            Failure::KatTamperedAccepted => "a tampered record was accepted",
            Failure::Keys => "a key schedule or key installation failed",
            Failure::RoundTrip => "the seal/open round trip failed",
            Failure::DropAccepted => "a replay or forgery was accepted, or counted wrongly",
            Failure::Flash => "the flash store failed",
            Failure::FlashBoot => "the flash store's boot path reported an unexpected state",
            Failure::FlashResume => {
                "after a reboot the sender did not resume above the numbers it used"
            }
            Failure::Signatures => "the signed-record round trip failed",
            Failure::Net => "the smoltcp multicast round trip failed",
            Failure::KeyDist => "joining through key distribution failed",
        })
    }
}

impl core::error::Error for Failure {}

impl Failure {
    /// Exit code of the failure (the image prints it; 0 is success).
    pub const fn code(self) -> u8 {
        match self {
            Failure::Prf => 10,
            Failure::KatOpen => 11,
            Failure::KatReplay => 12,
            Failure::KatReseal => 13,
            Failure::KatTamperedAccepted => 14,
            Failure::Keys => 20,
            Failure::RoundTrip => 21,
            Failure::DropAccepted => 22,
            Failure::Flash => 23,
            Failure::FlashResume => 24,
            Failure::FlashBoot => 25,
            Failure::Signatures => 30,
            Failure::Net => 40,
            Failure::KeyDist => 50,
        }
    }
}

/// What [`run`] checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Summary {
    /// Captured records opened, replay-checked and resealed.
    pub kat_records: usize,
    /// Tampered records refused.
    pub tampered_rejected: usize,
    /// Boot-path states checked on the flash store.
    pub flash_boot_checks: usize,
    /// Records delivered in the round trips.
    pub round_trip_records: usize,
    /// Signed records delivered (0 without feature `signatures`).
    pub signed_records: usize,
    /// Records delivered over smoltcp (0 without feature `net`).
    pub net_records: usize,
    /// Key-distribution bytes exchanged to join (0 without feature `keydist`).
    pub keydist_bytes: usize,
}

const GROUP_ID: u32 = 0x0000_0107;
/// Largest captured record is 629 bytes.
const BUF: usize = 640;

/// Reports the RAM of the main structures on this target (`core::mem::size_of`): a group
/// context per number of tracked senders (64-record windows), the flash store's RAM state, and
/// with feature `net` the smoltcp pieces of one node.
pub fn report_sizes(out: &mut impl Report) {
    use core::mem::size_of;
    out.line(format_args!(
        "size_of Group<4,2>={} Group<8,2>={} Group<16,2>={} Group<32,2>={} bytes",
        size_of::<Group<4, 2>>(),
        size_of::<Group<8, 2>>(),
        size_of::<Group<16, 2>>(),
        size_of::<Group<32, 2>>()
    ));
    out.line(format_args!(
        "size_of FlashSequenceStore<&mut _>={} bytes (RAM state; the flash itself is not RAM)",
        size_of::<FlashSequenceStore<&mut Flash>>()
    ));
    #[cfg(feature = "net")]
    net::report_sizes(out);
}

/// Runs every self-test step.
pub fn run(out: &mut impl Report) -> Result<Summary, Failure> {
    let mut s = Summary::default();
    report_sizes(out);
    kat_prf()?;
    out.line(format_args!("kat prf: key block ok"));
    s.kat_records = kat_records()?;
    out.line(format_args!(
        "kat ccm_8: {} records opened, replayed, resealed",
        s.kat_records
    ));
    s.tampered_rejected = kat_tampered()?;
    out.line(format_args!(
        "kat ccm_8: {} tampered records rejected",
        s.tampered_rejected
    ));
    s.flash_boot_checks = flash_boot()?;
    out.line(format_args!(
        "flash boot: {} checks: factory record, reserved after reboot, recommissioning refused, \
         wiped and decayed stores lost (never new), recovered in a fresh epoch",
        s.flash_boot_checks
    ));
    for suite in [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM] {
        let (n, resumed_at) = round_trip_flash(suite)?;
        s.round_trip_records = s.round_trip_records.saturating_add(n);
        out.line(format_args!(
            "round trip {:#06x}: {} records, replay and forgery dropped, resumed at seq {} after reboot",
            suite.0, n, resumed_at
        ));
    }
    #[cfg(feature = "signatures")]
    {
        s.signed_records = signed_round_trip()?;
        out.line(format_args!(
            "signatures: {} signed records, forged signature dropped",
            s.signed_records
        ));
    }
    #[cfg(feature = "keydist")]
    {
        let (epoch, bytes) = keydist::join_and_send()?;
        s.keydist_bytes = bytes;
        out.line(format_args!(
            "keydist: joined epoch {epoch} as a sender ({bytes} bytes exchanged), sealed seq 0"
        ));
    }
    #[cfg(feature = "net")]
    {
        s.net_records = net::multicast_round_trip()?;
        out.line(format_args!(
            "smoltcp: {} records delivered over IPv4 multicast to 2 listeners",
            s.net_records
        ));
    }
    Ok(s)
}

fn kat_prf() -> Result<(), Failure> {
    let mut block = [0u8; 40];
    tls12_prf_sha256(
        vectors::MASTER_SECRET,
        b"key expansion",
        vectors::SERVER_RANDOM,
        vectors::CLIENT_RANDOM,
        &mut block,
    );
    let mut expected = [0u8; 40];
    expected
        .get_mut(..vectors::KEY_BLOCK.len())
        .ok_or(Failure::Prf)?
        .copy_from_slice(vectors::KEY_BLOCK);
    if cfg!(inject_failure) {
        // A wrong expectation, so that CI can prove it sees a failing image fail
        // (built with FIRMWARE_INJECT_FAILURE=1 in the environment, see build.rs).
        if let Some(b) = expected.first_mut() {
            *b ^= 1;
        }
    }
    if block == expected {
        Ok(())
    } else {
        Err(Failure::Prf)
    }
}

fn cipher(key: &[u8], iv: &[u8]) -> Result<EpochCipher, Failure> {
    let keys = RecordKeys::new(Suite::AES_128_CCM_8, key, iv).map_err(|_| Failure::Keys)?;
    EpochCipher::new(&keys).map_err(|_| Failure::Keys)
}

fn copy(src: &[u8]) -> Result<([u8; BUF], usize), Failure> {
    let mut buf = [0u8; BUF];
    buf.get_mut(..src.len())
        .ok_or(Failure::KatOpen)?
        .copy_from_slice(src);
    Ok((buf, src.len()))
}

fn kat_records() -> Result<usize, Failure> {
    let mut n = 0usize;
    for direction in [0u8, 1] {
        let mut records = vectors::APP_RECORDS
            .iter()
            .filter(|r| r.direction == direction);
        let Some(first) = records.clone().next() else {
            return Err(Failure::KatOpen);
        };
        let keys = RecordKeys::new(Suite::AES_128_CCM_8, first.key, first.iv)
            .map_err(|_| Failure::Keys)?;
        let mut rx: Group<4, 2> = Group::new(GroupConfig::new(0));
        rx.install_and_activate(Epoch(first.epoch), &keys, Instant(0))
            .map_err(|_| Failure::Keys)?;
        for r in records.by_ref() {
            let (mut buf, len) = copy(r.record)?;
            let rec = buf.get_mut(..len).ok_or(Failure::KatOpen)?;
            let d = rx.open(Instant(0), rec).map_err(|_| Failure::KatOpen)?;
            if d.plaintext != r.plaintext
                || d.seq != r.seq
                || d.epoch != Epoch(r.epoch)
                || d.sender_id != SenderId(0)
            {
                return Err(Failure::KatOpen);
            }
            // The same record again is a replay.
            let (mut again, len) = copy(r.record)?;
            let rec = again.get_mut(..len).ok_or(Failure::KatOpen)?;
            if rx.open(Instant(0), rec).err() != Some(OpenError::Replay) {
                return Err(Failure::KatReplay);
            }
            // Sealing the plaintext at the same (epoch, seq) reproduces the capture.
            let c = cipher(r.key, r.iv)?;
            let mut out = [0u8; BUF];
            let len = record::seal(
                &c,
                ContentType::APPLICATION_DATA,
                Epoch(r.epoch),
                SenderId(0),
                r.seq,
                r.plaintext,
                &mut out,
            )
            .map_err(|_| Failure::KatReseal)?;
            if out.get(..len) != Some(r.record) {
                return Err(Failure::KatReseal);
            }
            n = n.saturating_add(1);
        }
        let c = rx.counters();
        let per_dir = vectors::APP_RECORDS
            .iter()
            .filter(|r| r.direction == direction)
            .count() as u64;
        if c.accepted != per_dir || c.replay != per_dir {
            return Err(Failure::KatReplay);
        }
    }
    if n == vectors::APP_RECORDS.len() {
        Ok(n)
    } else {
        Err(Failure::KatOpen)
    }
}

fn kat_tampered() -> Result<usize, Failure> {
    let mut n = 0usize;
    for t in vectors::TAMPERED {
        let c = cipher(t.key, t.iv)?;
        let (mut buf, len) = copy(t.record)?;
        let rec = buf.get_mut(..len).ok_or(Failure::KatOpen)?;
        if record::open_in_place(&c, rec, NonceProfile::Strict).is_ok() {
            return Err(Failure::KatTamperedAccepted);
        }
        n = n.saturating_add(1);
    }
    Ok(n)
}

type Flash = SimNorFlash<2, 1024, 4>;
const MESSAGES: [&[u8]; 4] = [b"on", b"dim 40", b"colour warm", b"off"];

fn sender(keys: &RecordKeys, sid: SenderId) -> Result<Group<4, 2>, Failure> {
    let mut config = GroupConfig::new(GROUP_ID).with_sender_id(sid);
    config.sequence_reserve_step = 16;
    let mut g: Group<4, 2> = Group::new(config);
    g.install_and_activate(Epoch(1), keys, Instant(0))
        .map_err(|_| Failure::Keys)?;
    Ok(g)
}

/// A flash whose store region (pages 0 and 1) went through the factory step.
fn factory_flash() -> Result<Flash, Failure> {
    let mut flash = Flash::new();
    FlashSequenceStore::commission_at_factory(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    Ok(flash)
}

fn expect(state: StoreState, want: StoreState) -> Result<(), Failure> {
    if state == want {
        Ok(())
    } else {
        Err(Failure::FlashBoot)
    }
}

/// The boot path a firmware writes (factory step once, `open` at every boot) through the
/// states a device meets: returns the number of states checked.
fn flash_boot() -> Result<usize, Failure> {
    let sid = SenderId(3);
    let mut checks = 0usize;
    let mut check = |r: Result<(), Failure>| {
        checks = checks.saturating_add(1);
        r
    };
    // Factory, then the first boot.
    let mut flash = factory_flash()?;
    let (mut store, state) =
        FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    check(expect(state, StoreState::CommissionedEmpty))?;
    let mut c =
        SequenceCounter::start(&mut store, Epoch(1), sid, 16).map_err(|_| Failure::FlashBoot)?;
    for _ in 0..5 {
        c.take(&mut store).map_err(|_| Failure::Flash)?;
    }
    let reserved = StoredSequence {
        epoch: Epoch(1),
        sender_id: sid,
        reserved_until: 16,
    };
    // Reboot: the reservation.
    let (_, state) = FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    check(expect(state, StoreState::Reserved(reserved)))?;
    // The factory step refuses a store in use.
    check(
        match FlashSequenceStore::commission_at_factory(&mut flash, 0, 2) {
            Err(SetupError::AlreadyCommissioned) => Ok(()),
            _ => Err(Failure::FlashBoot),
        },
    )?;
    // Wiped in the field: lost, and the sender refuses to start.
    flash.erase(0, 2048).map_err(|_| Failure::Flash)?;
    let (mut store, state) =
        FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    check(expect(state, StoreState::Lost(Loss::Blank)))?;
    check(
        if SequenceCounter::start(&mut store, Epoch(1), sid, 16).is_err() {
            Ok(())
        } else {
            Err(Failure::FlashBoot)
        },
    )?;
    // Recovery in the fresh epoch the key server issued after hearing of the loss.
    let mut c = SequenceCounter::start_recovered(&mut store, Epoch(2), sid, 16)
        .map_err(|_| Failure::FlashBoot)?;
    check(if c.take(&mut store) == Ok(0) {
        Ok(())
    } else {
        Err(Failure::FlashBoot)
    })?;
    let (_, state) = FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    check(expect(
        state,
        StoreState::Reserved(StoredSequence {
            epoch: Epoch(2),
            ..reserved
        }),
    ))?;
    // The only reservation decayed: lost, not new (the factory record went with the first
    // save). The first save went to page 1, slot 0 (offset 1024).
    let mut flash = factory_flash()?;
    let (mut store, _) = FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    store.save(&reserved).map_err(|_| Failure::Flash)?;
    flash.corrupt(1024 + 17, 0x01);
    let (mut store, state) =
        FlashSequenceStore::open(&mut flash, 0, 2).map_err(|_| Failure::Flash)?;
    check(expect(state, StoreState::Lost(Loss::Corrupt)))?;
    check(if store.load().is_err() {
        Ok(())
    } else {
        Err(Failure::FlashBoot)
    })?;
    Ok(checks)
}

/// Seals 40 records, opens them, drops a replay and a forgery, reboots the sender; returns
/// the records delivered and the sequence number the rebooted sender resumed at.
fn round_trip_flash(suite: Suite) -> Result<(usize, u64), Failure> {
    let now = Instant(1_000);
    let keys = native_keys(GROUP_ID, Epoch(1), suite, &EpochSecret([0x5a; 32]))
        .map_err(|_| Failure::Keys)?;
    let (mut store, state) =
        FlashSequenceStore::open(factory_flash()?, 0, 2).map_err(|_| Failure::Flash)?;
    if state != StoreState::CommissionedEmpty {
        return Err(Failure::FlashBoot);
    }
    let sid = SenderId(1);
    let mut tx = sender(&keys, sid)?;
    let mut rx: Group<4, 2> = Group::new(GroupConfig::new(GROUP_ID));
    rx.install_and_activate(Epoch(1), &keys, now)
        .map_err(|_| Failure::Keys)?;

    let mut delivered = 0usize;
    let mut last = ([0u8; 64], 0usize);
    for i in 0..40usize {
        let msg = MESSAGES.iter().cycle().nth(i).copied().unwrap_or(b"");
        let mut buf = [0u8; 64];
        let len = tx
            .seal(now, &mut store, msg, &mut buf)
            .map_err(|_| Failure::RoundTrip)?;
        last = (buf, len);
        let rec = buf.get_mut(..len).ok_or(Failure::RoundTrip)?;
        let d = rx.open(now, rec).map_err(|_| Failure::RoundTrip)?;
        if d.plaintext != msg || d.seq != i as u64 || d.sender_id != sid {
            return Err(Failure::RoundTrip);
        }
        delivered = delivered.saturating_add(1);
    }
    // A replay of the last record, and a copy with one tag bit flipped at a fresh number.
    let (mut replay, len) = last;
    let rec = replay.get_mut(..len).ok_or(Failure::RoundTrip)?;
    if rx.open(now, rec).err() != Some(OpenError::Replay) {
        return Err(Failure::DropAccepted);
    }
    let mut forged = [0u8; 64];
    let len = tx
        .seal(now, &mut store, b"unlock", &mut forged)
        .map_err(|_| Failure::RoundTrip)?;
    let last_byte = forged
        .get_mut(len.saturating_sub(1))
        .ok_or(Failure::RoundTrip)?;
    *last_byte ^= 0x80;
    let rec = forged.get_mut(..len).ok_or(Failure::RoundTrip)?;
    if rx.open(now, rec).err() != Some(OpenError::AuthenticationFailed) {
        return Err(Failure::DropAccepted);
    }
    let c = rx.counters();
    if c.accepted != 40 || c.replay != 1 || c.authentication_failed != 1 {
        return Err(Failure::DropAccepted);
    }

    // Reboot: RAM gone, flash kept. 41 numbers used (0..=40) with K = 16: resume at 48.
    let flash = store.into_inner();
    let (mut store, state) = FlashSequenceStore::open(flash, 0, 2).map_err(|_| Failure::Flash)?;
    if !matches!(state, StoreState::Reserved(r) if r.reserved_until == 48) {
        return Err(Failure::FlashResume);
    }
    let mut tx = sender(&keys, sid)?;
    let mut buf = [0u8; 64];
    let len = tx
        .seal(now, &mut store, b"on", &mut buf)
        .map_err(|_| Failure::FlashResume)?;
    let seq = Record::new_checked(buf.get(..len).ok_or(Failure::FlashResume)?)
        .map_err(|_| Failure::FlashResume)?
        .header()
        .seq;
    if seq != 48 {
        return Err(Failure::FlashResume);
    }
    let rec = buf.get_mut(..len).ok_or(Failure::FlashResume)?;
    let d = rx.open(now, rec).map_err(|_| Failure::FlashResume)?;
    if d.seq != 48 {
        return Err(Failure::FlashResume);
    }
    Ok((delivered.saturating_add(1), seq))
}

#[cfg(feature = "signatures")]
fn signed_round_trip() -> Result<usize, Failure> {
    use group_core::sequence::MemorySequenceStore;
    use p256::ecdsa::SigningKey;

    let now = Instant(0);
    let keys = native_keys(
        GROUP_ID,
        Epoch(1),
        Suite::AES_128_CCM,
        &EpochSecret([0x21; 32]),
    )
    .map_err(|_| Failure::Keys)?;
    let sid = SenderId(2);
    let sk = SigningKey::from_slice(&[0x3c; 32]).map_err(|_| Failure::Signatures)?;
    let vk = *sk.verifying_key();
    let mut tx: Group<4, 2> = Group::new(
        GroupConfig::new(GROUP_ID)
            .with_sender_id(sid)
            .with_signatures(),
    );
    tx.set_signing_key(sk);
    let mut rx: Group<4, 2> = Group::new(GroupConfig::new(GROUP_ID).with_signatures());
    rx.set_sender_key(sid, vk)
        .map_err(|_| Failure::Signatures)?;
    for g in [&mut tx, &mut rx] {
        g.install_and_activate(Epoch(1), &keys, now)
            .map_err(|_| Failure::Keys)?;
    }
    let mut store = MemorySequenceStore::commissioned();
    let mut n = 0usize;
    for msg in MESSAGES {
        let mut buf = [0u8; 128];
        let len = tx
            .seal(now, &mut store, msg, &mut buf)
            .map_err(|_| Failure::Signatures)?;
        let rec = buf.get_mut(..len).ok_or(Failure::Signatures)?;
        let d = rx.open(now, rec).map_err(|_| Failure::Signatures)?;
        if d.plaintext != msg {
            return Err(Failure::Signatures);
        }
        n = n.saturating_add(1);
    }
    // One bit of the signature flipped: refused before decryption.
    let mut buf = [0u8; 128];
    let len = tx
        .seal(now, &mut store, b"x", &mut buf)
        .map_err(|_| Failure::Signatures)?;
    let b = buf
        .get_mut(len.saturating_sub(10))
        .ok_or(Failure::Signatures)?;
    *b ^= 1;
    let rec = buf.get_mut(..len).ok_or(Failure::Signatures)?;
    if rx.open(now, rec).err() != Some(OpenError::AuthenticationFailed) {
        return Err(Failure::Signatures);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lines(usize);
    impl Report for Lines {
        fn line(&mut self, _: fmt::Arguments<'_>) {
            self.0 += 1;
        }
    }

    #[test]
    fn self_test_passes_on_the_host() {
        let mut l = Lines(0);
        if cfg!(inject_failure) {
            assert_eq!(run(&mut l), Err(Failure::Prf));
            return;
        }
        let s = run(&mut l).unwrap();
        assert_eq!(s.kat_records, 8);
        assert_eq!(s.tampered_rejected, 16);
        assert_eq!(s.round_trip_records, 3 * 41);
        assert_eq!(s.flash_boot_checks, 9);
        if cfg!(feature = "signatures") {
            assert_eq!(s.signed_records, 4);
        }
        if cfg!(feature = "net") {
            assert_eq!(s.net_records, 6);
        }
        if cfg!(feature = "keydist") {
            assert!(s.keydist_bytes > 0);
        }
        assert!(l.0 >= 6);
    }

    #[test]
    fn a_wrong_vector_is_caught() {
        // The checks can fail: a record opened with the other direction's keys is refused.
        let r = &vectors::APP_RECORDS[0];
        let other = vectors::APP_RECORDS
            .iter()
            .find(|o| o.direction != r.direction)
            .unwrap();
        let c = cipher(other.key, other.iv).unwrap();
        let (mut buf, len) = copy(r.record).unwrap();
        assert!(record::open_in_place(&c, &mut buf[..len], NonceProfile::Strict).is_err());
    }
}
