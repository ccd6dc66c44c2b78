//! Sliding anti-replay window, one per (sender, epoch) (wire-format.md §6, RFC 6347 §4.1.2.6,
//! RFC 4303 §3.4.3).
//!
//! The window is split into [`ReplayWindow::check`], which reads only, and
//! [`ReplayWindow::commit`], which the record layer calls only after the record authenticated.

use crate::wire::MAX_SEQ;

/// Why a sequence number is refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplayError {
    /// Already accepted (or, under trust-first, below the first accepted record inside the window).
    Replay,
    /// Older than the window.
    TooOld,
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ReplayError::Replay => "replay",
            ReplayError::TooOld => "older than the replay window",
        })
    }
}

impl core::error::Error for ReplayError {}

/// How a fresh window treats sequence numbers below its first accepted record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WindowStart {
    /// The sender's state came from the key server and the sender starts the epoch at 0: every
    /// number is fresh until seen.
    Empty,
    /// Trust on first use: the first accepted record sets the window and every lower number is
    /// treated as already seen (Matter's rule; opening with zeros below would let captured
    /// older records in).
    TrustFirst,
}

/// A replay window of `32 × WORDS` sequence numbers (`WORDS` from 1 to 32, so 32 to 1024
/// records; the default, 2 words, gives the usual 64).
///
/// Bit `s mod (32 × WORDS)` of the bitmap records whether `s` was seen, for `s` in
/// `(top - size, top]`.
///
/// Stored compactly for firmware (issue 12): the bitmap as bytes, the highest accepted sequence
/// number in 5 bytes (sequence numbers are 40 bits, [`MAX_SEQ`]) and one state byte, so the
/// window has alignment 1 and `4 × WORDS + 6` bytes (14 for the default), and an
/// `Option<(Epoch, ReplayWindow)>` 16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow<const WORDS: usize = 2> {
    bitmap: [[u8; 4]; WORDS],
    /// The highest accepted sequence number, little-endian; meaningful only in `Seen`.
    top: [u8; 5],
    state: State,
}

/// Whether a window has accepted a record yet, and if not how it will start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing accepted yet; [`WindowStart::Empty`].
    FreshEmpty,
    /// Nothing accepted yet; [`WindowStart::TrustFirst`].
    FreshTrustFirst,
    /// `top` holds the highest accepted sequence number.
    Seen,
}

/// `seq` (at most [`MAX_SEQ`], 40 bits) as 5 little-endian bytes; also the previous epoch's
/// highest sequence number in `group::senders` (whose `check` refuses more than `MAX_SEQ`).
pub(crate) fn pack(seq: u64) -> [u8; 5] {
    let [a, b, c, d, e, ..] = seq.to_le_bytes();
    [a, b, c, d, e]
}

/// The sequence number [`pack`] stored.
pub(crate) fn unpack(top: [u8; 5]) -> u64 {
    let [a, b, c, d, e] = top;
    u64::from_le_bytes([a, b, c, d, e, 0, 0, 0])
}

impl<const WORDS: usize> ReplayWindow<WORDS> {
    /// Window size in records.
    pub const SIZE: u64 = {
        assert!(
            WORDS >= 1 && WORDS <= 32,
            "replay window must be 32..=1024 records"
        );
        32 * WORDS as u64
    };

    /// A window that has seen nothing yet.
    pub const fn new(start: WindowStart) -> Self {
        let _ = Self::SIZE;
        Self {
            bitmap: [[0; 4]; WORDS],
            top: [0; 5],
            state: match start {
                WindowStart::Empty => State::FreshEmpty,
                WindowStart::TrustFirst => State::FreshTrustFirst,
            },
        }
    }

    /// The highest accepted sequence number, if any.
    pub fn highest(&self) -> Option<u64> {
        match self.state {
            State::Seen => Some(unpack(self.top)),
            State::FreshEmpty | State::FreshTrustFirst => None,
        }
    }

    /// Byte index and mask of `seq`'s bit.
    fn bit(seq: u64) -> (usize, u8) {
        // SIZE is a non-zero constant (checked at compile time), so these can't fail.
        let pos = seq.checked_rem(Self::SIZE).unwrap_or(0);
        let byte = usize::try_from(pos.checked_div(8).unwrap_or(0)).unwrap_or(0);
        (byte, 1u8.checked_shl((pos & 7) as u32).unwrap_or(0))
    }

    fn byte(&self, i: usize) -> Option<&u8> {
        self.bitmap
            .get(i.checked_div(4).unwrap_or(0))
            .and_then(|w| w.get(i & 3))
    }

    fn byte_mut(&mut self, i: usize) -> Option<&mut u8> {
        self.bitmap
            .get_mut(i.checked_div(4).unwrap_or(0))
            .and_then(|w| w.get_mut(i & 3))
    }

    fn is_set(&self, seq: u64) -> bool {
        let (b, mask) = Self::bit(seq);
        self.byte(b).is_some_and(|v| v & mask != 0)
    }

    fn set(&mut self, seq: u64) {
        let (b, mask) = Self::bit(seq);
        if let Some(v) = self.byte_mut(b) {
            *v |= mask;
        }
    }

    fn clear(&mut self, seq: u64) {
        let (b, mask) = Self::bit(seq);
        if let Some(v) = self.byte_mut(b) {
            *v &= !mask;
        }
    }

    /// Whether `seq` would be accepted. Changes nothing.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > MAX_SEQ {
            return Err(ReplayError::TooOld);
        }
        let Some(top) = self.highest() else {
            return Ok(());
        };
        if seq > top {
            return Ok(());
        }
        let age = top.saturating_sub(seq);
        if age >= Self::SIZE {
            return Err(ReplayError::TooOld);
        }
        if self.is_set(seq) {
            Err(ReplayError::Replay)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as seen. Call only after [`check`](Self::check) passed and the record
    /// authenticated. A `seq` that `check` refuses leaves the window unchanged.
    pub fn commit(&mut self, seq: u64) {
        if self.check(seq).is_err() {
            return;
        }
        match self.state {
            State::FreshTrustFirst => {
                // Everything in (seq - size, seq] counts as seen.
                self.bitmap = [[u8::MAX; 4]; WORDS];
            }
            State::FreshEmpty => {
                self.bitmap = [[0; 4]; WORDS];
                self.set(seq);
            }
            State::Seen => {
                let top = unpack(self.top);
                if seq > top {
                    let advance = seq.saturating_sub(top);
                    if advance >= Self::SIZE {
                        self.bitmap = [[0; 4]; WORDS];
                    } else {
                        let mut s = top;
                        while s < seq {
                            s = s.saturating_add(1);
                            self.clear(s);
                        }
                    }
                } else {
                    self.set(seq);
                    return;
                }
                self.set(seq);
            }
        }
        // check() refused anything above MAX_SEQ, so seq fits in 5 bytes.
        self.top = pack(seq);
        self.state = State::Seen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_first_treats_lower_as_seen() {
        let mut w = ReplayWindow::<2>::new(WindowStart::TrustFirst);
        assert_eq!(w.check(100), Ok(()));
        w.commit(100);
        assert_eq!(w.check(100), Err(ReplayError::Replay));
        assert_eq!(w.check(99), Err(ReplayError::Replay));
        assert_eq!(w.check(37), Err(ReplayError::Replay));
        assert_eq!(w.check(36), Err(ReplayError::TooOld));
        assert_eq!(w.check(101), Ok(()));
        w.commit(102);
        assert_eq!(w.check(101), Ok(()));
        assert_eq!(w.check(100), Err(ReplayError::Replay));
    }

    #[test]
    fn compact_on_every_target() {
        use crate::wire::Epoch;
        use core::mem::size_of;
        assert_eq!(size_of::<ReplayWindow<2>>(), 14);
        assert_eq!(size_of::<Option<(Epoch, ReplayWindow<2>)>>(), 16);
        assert_eq!(size_of::<ReplayWindow<32>>(), 134);
        let mut w = ReplayWindow::<2>::new(WindowStart::Empty);
        w.commit(MAX_SEQ - 1);
        assert_eq!(w.highest(), Some(MAX_SEQ - 1));
    }

    #[test]
    fn empty_start_accepts_reordered() {
        let mut w = ReplayWindow::<1>::new(WindowStart::Empty);
        w.commit(5);
        assert_eq!(w.check(0), Ok(()));
        assert_eq!(w.check(4), Ok(()));
        w.commit(4);
        assert_eq!(w.check(4), Err(ReplayError::Replay));
        w.commit(40);
        assert_eq!(w.check(8), Err(ReplayError::TooOld));
        assert_eq!(w.check(9), Ok(()));
        assert_eq!(w.check(MAX_SEQ + 1), Err(ReplayError::TooOld));
        w.commit(MAX_SEQ);
        assert_eq!(w.check(MAX_SEQ), Err(ReplayError::Replay));
    }
}
