//! Sliding anti-replay window, one per (sender, epoch) (wire.md §3, RFC 6347 §4.1.2.6,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow<const WORDS: usize = 2> {
    top: Option<u64>,
    start: WindowStart,
    bitmap: [u32; WORDS],
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
            top: None,
            start,
            bitmap: [0; WORDS],
        }
    }

    /// The highest accepted sequence number, if any.
    pub fn highest(&self) -> Option<u64> {
        self.top
    }

    fn bit(seq: u64) -> (usize, u32) {
        // SIZE is a non-zero constant (checked at compile time), so these can't fail.
        let pos = seq.checked_rem(Self::SIZE).unwrap_or(0);
        let word = usize::try_from(pos.checked_div(32).unwrap_or(0)).unwrap_or(0);
        (word, 1u32.checked_shl((pos & 31) as u32).unwrap_or(0))
    }

    fn is_set(&self, seq: u64) -> bool {
        let (w, mask) = Self::bit(seq);
        self.bitmap.get(w).is_some_and(|v| v & mask != 0)
    }

    fn set(&mut self, seq: u64) {
        let (w, mask) = Self::bit(seq);
        if let Some(v) = self.bitmap.get_mut(w) {
            *v |= mask;
        }
    }

    fn clear(&mut self, seq: u64) {
        let (w, mask) = Self::bit(seq);
        if let Some(v) = self.bitmap.get_mut(w) {
            *v &= !mask;
        }
    }

    /// Whether `seq` would be accepted. Changes nothing.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        if seq > MAX_SEQ {
            return Err(ReplayError::TooOld);
        }
        let Some(top) = self.top else {
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
        match self.top {
            None => {
                self.top = Some(seq);
                match self.start {
                    // Everything in (seq - size, seq] counts as seen.
                    WindowStart::TrustFirst => self.bitmap = [u32::MAX; WORDS],
                    WindowStart::Empty => {
                        self.bitmap = [0; WORDS];
                        self.set(seq);
                    }
                }
            }
            Some(top) if seq > top => {
                let advance = seq.saturating_sub(top);
                if advance >= Self::SIZE {
                    self.bitmap = [0; WORDS];
                } else {
                    let mut s = top;
                    while s < seq {
                        s = s.saturating_add(1);
                        self.clear(s);
                    }
                }
                self.top = Some(seq);
                self.set(seq);
            }
            Some(_) => self.set(seq),
        }
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
