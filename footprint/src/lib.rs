//! Footprint images (issue 12): what a light, a PSK member and a signed member cost in flash,
//! RAM and stack on a Cortex-M4 (thumbv7em-none-eabihf).
//!
//! Four `#![no_main]` images share this library: `baseline` (the application's part: runtime,
//! vector table, semihosting output, stack painting and the known-answer data, no library
//! call), `record` (one suite, AES-128-CCM_8, a group tracking 32 senders, seal and open),
//! `member-psk` and `member-signed` (a key-distribution member joining through a key bundle
//! made on the host by the real key server, then a rekey, then seal and open). Every image
//! also runs the GnuTLS 3.7.9 AES-128-CCM_8 known answers. `.ci/footprint.sh` builds them with
//! the `firmware` profile, runs them under QEMU `mps2-an386`, reads the figures they print and
//! fails if any is over its budget (`docs/footprint.md`).
//!
//! On the host the same images are ordinary programs running the same work (no stack figures).
#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]

pub mod exit;
pub mod kat;
#[cfg(feature = "member")]
pub mod member;
pub mod record;
/// The test generator, shared with the firmware's self-test (one file).
#[path = "../../firmware/src/test_rng.rs"]
pub mod rng;
pub mod stack;
pub mod transcript;
#[path = "../../firmware/src/vectors.rs"]
pub mod vectors;

/// The group every image works in.
pub const GROUP_ID: u32 = 7;

/// What went wrong in an image's work (the image prints it and exits with failure).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Failure {
    /// A GnuTLS record was not opened to its plaintext.
    KatOpen,
    /// A tampered GnuTLS record was accepted.
    KatTamperedAccepted,
    /// Keys could not be installed.
    Keys,
    /// Sealing failed.
    Seal,
    /// Opening a fresh record failed or gave the wrong content.
    Open,
    /// The transcript could not be read.
    Transcript,
    /// The member refused a key-server message or did not join.
    Join,
    /// The member did not move to the rekeyed epoch.
    Rekey,
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Failure::KatOpen => "a GnuTLS record was not opened to its plaintext",
            Failure::KatTamperedAccepted => "a tampered GnuTLS record was accepted",
            Failure::Keys => "keys could not be installed",
            Failure::Seal => "sealing failed",
            Failure::Open => "opening a fresh record failed or gave the wrong content",
            Failure::Transcript => "the transcript could not be read",
            Failure::Join => "the member refused a key-server message or did not join",
            Failure::Rekey => "the member did not move to the rekeyed epoch",
        })
    }
}

impl core::error::Error for Failure {}

/// The figures an image prints: `footprint-run stack=.. ram_group32=..`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Figures {
    /// Peak stack of the library calls measured (bytes below the caller's stack pointer),
    /// the largest of the phases below.
    pub stack: usize,
    /// `size_of` of the image's group or member context for 32 senders.
    pub ram_group32: usize,
    /// Peak stack of sealing.
    pub seal: usize,
    /// Peak stack of opening.
    pub open: usize,
    /// Peak stack of joining (handling the key server's messages and answering them).
    pub join: usize,
    /// Peak stack of a rekey (handling the rekey bundle and acknowledging it).
    pub rekey: usize,
}

impl Figures {
    /// Sets [`stack`](Self::stack) to the largest phase.
    pub fn finish(mut self) -> Self {
        self.stack = self.seal.max(self.open).max(self.join).max(self.rekey);
        self
    }
}

/// A sum over the known-answer data, so that the baseline links the same data as the images
/// that check it (the data is the test's, not the library's).
pub fn vectors_checksum() -> u32 {
    let mut sum = 0u32;
    for r in vectors::APP_RECORDS {
        for b in r.record.iter().chain(r.plaintext).chain(r.key).chain(r.iv) {
            sum = sum.rotate_left(5) ^ u32::from(*b);
        }
    }
    for t in vectors::TAMPERED {
        for b in t.record.iter().chain(t.key).chain(t.iv) {
            sum = sum.rotate_left(5) ^ u32::from(*b);
        }
    }
    sum
}

/// The application's own memory work, which every image (the baseline too) does once before it
/// reports: copying, clearing, filling and comparing buffers of bytes, of 4-byte and of 8-byte
/// words, as any firmware does (its network stack, its buffers). It links `compiler_builtins`'
/// `mem*` routines (`memcpy` and `__aeabi_memcpy`/`4`/`8`, `__aeabi_memclr`/`4`/`8`,
/// `__aeabi_memset4`, `memcmp`) into every image: issue 12 counts them as the application's
/// ("vector table, runtime and `mem*` are the application's"), so the baseline must link them
/// too and they are not charged to the library. Returns a value folded from the buffers (so no
/// step is optimised away); the same in every image.
#[inline(never)]
pub fn app_memory_work() -> u32 {
    use core::hint::black_box;
    let src = vectors::APP_RECORDS.first().map_or(&[][..], |r| r.record);
    let n = black_box(src.len().min(48));
    // Bytes: copy, compare, clear.
    let mut bytes = [0u8; 48];
    if let (Some(d), Some(s)) = (bytes.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
    let same = bytes.get(..n) == src.get(..n);
    let mut acc = u32::from(same) ^ u32::from(bytes[black_box(3)]);
    if let Some(d) = bytes.get_mut(black_box(1)..n) {
        d.fill(0);
    }
    acc = acc.rotate_left(5) ^ u32::from(bytes[black_box(2)]);
    // 4-byte words: copy, fill with a pattern, clear.
    let k = black_box(n / 4);
    let mut words = [0u32; 12];
    let mut words2 = [0u32; 12];
    for (w, c) in words.iter_mut().zip(src.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    if let (Some(d), Some(s)) = (words2.get_mut(..k), words.get(..k)) {
        d.copy_from_slice(s);
    }
    acc = acc.rotate_left(5) ^ words2[black_box(1)];
    if let Some(d) = words.get_mut(..k) {
        d.fill(black_box(0xa5a5_a5a5));
    }
    acc = acc.rotate_left(5) ^ words[black_box(2)];
    if let Some(d) = words2.get_mut(..k) {
        d.fill(0);
    }
    acc = acc.rotate_left(5) ^ words2[black_box(1)];
    // 8-byte words: copy, clear.
    let j = black_box(n / 8);
    let mut longs = [0u64; 6];
    let mut longs2 = [0u64; 6];
    for (l, c) in longs.iter_mut().zip(words.chunks_exact(2)) {
        *l = u64::from(c[0]) << 32 | u64::from(c[1]);
    }
    if let (Some(d), Some(s)) = (longs2.get_mut(..j), longs.get(..j)) {
        d.copy_from_slice(s);
    }
    acc = acc.rotate_left(5) ^ (longs2[black_box(1)] as u32);
    if let Some(d) = longs2.get_mut(..j) {
        d.fill(0);
    }
    acc.rotate_left(5) ^ (longs2[black_box(0)] as u32)
}

/// The baseline's work: no library call, only what every image has (the painting of the stack
/// and the known-answer data).
#[inline(never)]
pub fn baseline() -> Result<Figures, Failure> {
    let (sum, _) = stack::measure(vectors_checksum);
    if sum == 0 {
        return Err(Failure::KatOpen);
    }
    Ok(Figures::default())
}

/// Runs the known answers, then `work`.
pub fn with_kat(work: impl FnOnce() -> Result<Figures, Failure>) -> Result<Figures, Failure> {
    kat::run()?;
    work()
}
