//! Retransmission with exponential backoff, as the key server (bundles) and the member (join
//! requests, leaves, reports) both do it: first after
//! [`INITIAL_RTO_MS`], then doubling up to [`MAX_RTO_MS`], and on at that interval.

use crate::policy::{INITIAL_RTO_MS, MAX_RTO_MS};
use crate::time::Instant;

/// When a message is (re)sent next, and the timeout after that.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Retry {
    next_at: u64,
    rto: u64,
}

impl Default for Retry {
    /// Due at time 0 (at once), with the first timeout.
    fn default() -> Self {
        Self::now(Instant(0))
    }
}

impl Retry {
    /// Due at `now`, with the first timeout.
    pub(crate) const fn now(now: Instant) -> Self {
        Self {
            next_at: now.0,
            rto: INITIAL_RTO_MS,
        }
    }

    /// When it is due (ms).
    pub(crate) const fn next_at(&self) -> u64 {
        self.next_at
    }

    /// Whether it is due at `now` (the member's question; the server orders its schedules by
    /// `next_at` in its due index instead).
    #[cfg(any(feature = "keydist-member", test))]
    pub(crate) const fn due(&self, now: Instant) -> bool {
        self.next_at <= now.0
    }

    /// Sent at `now`: due again after the timeout, which doubles (up to the largest).
    pub(crate) fn backoff(&mut self, now: Instant) {
        let rto = self.rto.max(INITIAL_RTO_MS);
        self.next_at = now.0.saturating_add(rto);
        self.rto = rto.saturating_mul(2).min(MAX_RTO_MS);
    }

    /// How many times the message was sent since this schedule started (since the last sign of
    /// progress): read from the timeout, which doubles on each send (counted up to the send
    /// that reached the largest timeout).
    #[cfg(feature = "keydist-member")]
    pub(crate) const fn sends(&self) -> u32 {
        let mut n: u32 = 0;
        let mut rto = INITIAL_RTO_MS;
        while rto < self.rto && rto < MAX_RTO_MS {
            rto = rto.saturating_mul(2);
            n = n.saturating_add(1);
        }
        n
    }

    /// Back to the first timeout for the next transmission (keeping when it is due).
    #[cfg(feature = "keydist-server")]
    pub(crate) fn reset_timeout(&mut self) {
        self.rto = INITIAL_RTO_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "keydist-member")]
    #[test]
    fn counts_sends_up_to_the_largest_timeout() {
        let mut r = Retry::now(Instant(0));
        assert_eq!(r.sends(), 0);
        let mut at = 0;
        for expected in [1, 2, 3, 4, 5, 6, 6, 6] {
            r.backoff(Instant(at));
            at = r.next_at();
            assert_eq!(r.sends(), expected);
        }
    }

    #[test]
    fn doubles_up_to_the_largest_timeout() {
        let mut r = Retry::now(Instant(5));
        assert!(r.due(Instant(5)) && !r.due(Instant(4)));
        let mut at = 5;
        let mut gaps = [0u64; 9];
        for g in gaps.iter_mut() {
            r.backoff(Instant(at));
            *g = r.next_at() - at;
            at = r.next_at();
        }
        assert_eq!(
            gaps,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 64_000, 64_000
            ]
        );
        r.reset_timeout();
        r.backoff(Instant(at));
        assert_eq!(r.next_at() - at, 1_000);
        assert_eq!(Retry::default(), Retry::now(Instant(0)));
    }
}
