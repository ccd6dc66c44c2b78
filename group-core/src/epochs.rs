//! The epochs a group holds (wire-format.md §5): previous (until its grace deadline), current, and a
//! staged next. Epochs only move forward: none is reused and none wraps.

use crate::suite::{EpochCipher, KeyError, RecordKeys};
use crate::time::Instant;
use crate::wire::Epoch;

/// One installed epoch: its keyed cipher and its usage counters.
///
/// It keeps no copy of its [`RecordKeys`]: a retransmitted bundle is recognised by
/// [`EpochCipher::same_keys`]. The counters are `u32` and saturate: each guards a limit
/// (records against the confidentiality limit, failures against the integrity limit) and is
/// compared with it through `reached`, which treats a limit above `u32::MAX` as `u32::MAX`,
/// so a saturated counter always stands at or above its limit (the event comes at 2^32 - 1 at
/// the latest, never later, and the counter never wraps back under it).
#[derive(Debug)]
pub struct EpochKeys {
    epoch: Epoch,
    cipher: EpochCipher,
    /// Authentication failures seen under this key (saturating).
    pub(crate) auth_failures: u32,
    /// Whether the integrity-limit event was raised for this key.
    pub(crate) integrity_event_raised: bool,
    /// Records protected under this key (sealed here plus accepted from others; saturating).
    pub(crate) records: u32,
    /// Whether the usage-limit event was raised for this key.
    pub(crate) usage_event_raised: bool,
}

/// Whether a saturating `u32` usage counter has reached `limit`; a limit above `u32::MAX` is
/// reached at `u32::MAX` (the counter can go no higher).
pub(crate) fn reached(count: u32, limit: u64) -> bool {
    u64::from(count) >= limit.min(u64::from(u32::MAX))
}

impl EpochKeys {
    /// The epoch number.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The keyed cipher.
    pub fn cipher(&self) -> &EpochCipher {
        &self.cipher
    }

    /// Authentication failures counted under this key (saturating at 2^32 - 1).
    pub fn auth_failures(&self) -> u64 {
        u64::from(self.auth_failures)
    }

    /// Records protected under this key: sealed here plus accepted from others (saturating at
    /// 2^32 - 1).
    pub fn records(&self) -> u64 {
        u64::from(self.records)
    }
}

/// Which of the held epochs an epoch number refers to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EpochRole {
    /// The previous epoch, inside its grace period.
    Previous,
    /// The current epoch (the one this node sends in).
    Current,
    /// The staged next epoch (receivable; not yet used for sending).
    Next,
}

/// Previous / current / next epochs of one group.
#[derive(Debug, Default)]
pub struct EpochSet {
    previous: Option<EpochKeys>,
    /// The previous epoch's grace deadline (meaningful while `previous` is `Some`; kept beside
    /// it rather than in a tuple with it, which would pad each to the `u64`'s alignment).
    deadline: Instant,
    current: Option<EpochKeys>,
    next: Option<EpochKeys>,
    highest: Option<Epoch>,
}

impl EpochSet {
    /// No keys yet.
    pub const fn new() -> Self {
        Self {
            previous: None,
            deadline: Instant(0),
            current: None,
            next: None,
            highest: None,
        }
    }

    /// Drops every epoch in place (keys zeroized), as [`EpochSet::new`] without building one.
    pub fn clear(&mut self) {
        self.previous = None;
        self.deadline = Instant(0);
        self.current = None;
        self.next = None;
        self.highest = None;
    }

    /// The highest epoch ever installed here.
    pub fn highest(&self) -> Option<Epoch> {
        self.highest
    }

    /// Stages `epoch` as the next epoch. It must be newer than every epoch installed before;
    /// a staged epoch that was never activated is replaced. Installing the same epoch with the
    /// same keys again is accepted and changes nothing (a retransmitted bundle; recognised by
    /// [`EpochCipher::same_keys`], no copy of the keys is held).
    pub fn install(&mut self, epoch: Epoch, keys: &RecordKeys) -> Result<(), KeyError> {
        if epoch.0 == 0 {
            return Err(KeyError::EpochZero);
        }
        let cipher = EpochCipher::new(keys)?;
        if let Some(h) = self.highest
            && epoch <= h
        {
            let same = [self.next.as_ref(), self.current.as_ref()]
                .into_iter()
                .flatten()
                .any(|k| k.epoch == epoch && k.cipher.same_keys(&cipher));
            return if same {
                Ok(())
            } else {
                Err(KeyError::EpochNotNewer)
            };
        }
        self.next = Some(EpochKeys {
            epoch,
            cipher,
            auth_failures: 0,
            integrity_event_raised: false,
            records: 0,
            usage_event_raised: false,
        });
        self.highest = Some(epoch);
        Ok(())
    }

    /// Makes the staged `epoch` current. The old current becomes previous, accepted until
    /// `now + grace_ms`; an older previous is dropped at once. Returns the epoch dropped, if any.
    pub fn activate(
        &mut self,
        epoch: Epoch,
        now: Instant,
        grace_ms: u64,
    ) -> Result<Option<Epoch>, KeyError> {
        if self.current.as_ref().is_some_and(|c| c.epoch == epoch) {
            return Ok(None);
        }
        if self.next.as_ref().is_none_or(|n| n.epoch != epoch) {
            return Err(KeyError::NotStaged);
        }
        let next = self.next.take();
        let dropped = self.previous.take().map(|p| p.epoch);
        self.previous = self.current.take();
        self.deadline = now.plus_millis(grace_ms);
        self.current = next;
        Ok(dropped)
    }

    /// Drops the previous epoch if its grace period is over; returns it.
    pub fn expire(&mut self, now: Instant) -> Option<Epoch> {
        match &self.previous {
            Some(p) if now >= self.deadline => {
                let e = p.epoch;
                self.previous = None;
                Some(e)
            }
            _ => None,
        }
    }

    /// When [`expire`](Self::expire) next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.previous.as_ref().map(|_| self.deadline)
    }

    /// The current epoch's keys.
    pub fn current(&self) -> Option<&EpochKeys> {
        self.current.as_ref()
    }

    /// The staged next epoch, if any.
    pub fn staged(&self) -> Option<Epoch> {
        self.next.as_ref().map(|n| n.epoch)
    }

    /// The previous epoch, if still held.
    pub fn previous(&self) -> Option<Epoch> {
        self.previous.as_ref().map(|p| p.epoch)
    }

    /// Looks up a held epoch that is still valid at `now`.
    pub fn get_mut(&mut self, epoch: Epoch, now: Instant) -> Option<(EpochRole, &mut EpochKeys)> {
        if let Some(c) = self.current.as_mut().filter(|c| c.epoch == epoch) {
            return Some((EpochRole::Current, c));
        }
        if let Some(n) = self.next.as_mut().filter(|n| n.epoch == epoch) {
            return Some((EpochRole::Next, n));
        }
        match self.previous.as_mut() {
            Some(p) if p.epoch == epoch && now < self.deadline => Some((EpochRole::Previous, p)),
            _ => None,
        }
    }

    /// The slot `epoch` is in, whatever the time (the previous slot until
    /// [`expire`](Self::expire) empties it); `None` for an epoch in no slot.
    pub(crate) fn slot_of(&self, epoch: Epoch) -> Option<EpochRole> {
        if self.current.as_ref().is_some_and(|c| c.epoch == epoch) {
            Some(EpochRole::Current)
        } else if self.next.as_ref().is_some_and(|n| n.epoch == epoch) {
            Some(EpochRole::Next)
        } else if self.previous.as_ref().is_some_and(|p| p.epoch == epoch) {
            Some(EpochRole::Previous)
        } else {
            None
        }
    }

    /// The newest slot whose epoch is at most `bound` (slots hold previous < current < next).
    pub(crate) fn newest_slot_through(&self, bound: Epoch) -> Option<EpochRole> {
        if self.next.as_ref().is_some_and(|n| n.epoch <= bound) {
            Some(EpochRole::Next)
        } else if self.current.as_ref().is_some_and(|c| c.epoch <= bound) {
            Some(EpochRole::Current)
        } else if self.previous.as_ref().is_some_and(|p| p.epoch <= bound) {
            Some(EpochRole::Previous)
        } else {
            None
        }
    }

    /// Whether `epoch` is held (in any role) at `now`.
    pub fn holds(&self, epoch: Epoch, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|c| c.epoch == epoch)
            || self.next.as_ref().is_some_and(|n| n.epoch == epoch)
            || self
                .previous
                .as_ref()
                .is_some_and(|p| p.epoch == epoch && now < self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Suite;

    fn keys(b: u8) -> RecordKeys {
        RecordKeys::new(Suite::AES_128_CCM_8, &[b; 16], &[b; 4]).unwrap()
    }

    #[test]
    fn epochs_move_forward_only() {
        let mut s = EpochSet::new();
        assert_eq!(s.install(Epoch(0), &keys(1)), Err(KeyError::EpochZero));
        s.install(Epoch(1), &keys(1)).unwrap();
        assert_eq!(
            s.activate(Epoch(2), Instant(0), 10),
            Err(KeyError::NotStaged)
        );
        s.activate(Epoch(1), Instant(0), 10).unwrap();
        // Same bundle again: no-op. Same epoch, other keys: refused.
        s.install(Epoch(1), &keys(1)).unwrap();
        assert_eq!(s.install(Epoch(1), &keys(2)), Err(KeyError::EpochNotNewer));
        s.install(Epoch(3), &keys(3)).unwrap();
        assert_eq!(s.install(Epoch(2), &keys(2)), Err(KeyError::EpochNotNewer));
        s.activate(Epoch(3), Instant(100), 50).unwrap();
        assert!(s.holds(Epoch(1), Instant(149)));
        assert!(!s.holds(Epoch(1), Instant(150)));
        assert_eq!(s.expire(Instant(149)), None);
        assert_eq!(s.expire(Instant(150)), Some(Epoch(1)));
        assert_eq!(s.current().map(|c| c.epoch()), Some(Epoch(3)));
        s.install(Epoch(u16::MAX), &keys(4)).unwrap();
        assert_eq!(
            s.install(Epoch(u16::MAX), &keys(5)),
            Err(KeyError::EpochNotNewer)
        );
    }

    /// A retransmitted bundle (same epoch, same keys) is accepted, in the current and in the
    /// staged slot; the same epoch with a key, an IV or a suite that differs in one bit or one
    /// code point is refused. No copy of the keys is held: this goes through
    /// `EpochCipher::same_keys`.
    #[test]
    fn same_epoch_is_accepted_only_with_the_same_keys() {
        let flip = |suite: Suite, key_bit: Option<usize>, iv_bit: Option<usize>| {
            let mut key = [7u8; 16];
            let mut iv = [9u8; 4];
            if let Some(b) = key_bit {
                key[b / 8] ^= 1 << (b % 8);
            }
            if let Some(b) = iv_bit {
                iv[b / 8] ^= 1 << (b % 8);
            }
            RecordKeys::new(suite, &key, &iv).unwrap()
        };
        let same = flip(Suite::AES_128_CCM_8, None, None);
        let mut s = EpochSet::new();
        s.install(Epoch(4), &same).unwrap();
        s.activate(Epoch(4), Instant(0), 10).unwrap();
        s.install(Epoch(5), &same).unwrap();
        for epoch in [Epoch(4), Epoch(5)] {
            assert_eq!(s.install(epoch, &same), Ok(()), "{epoch:?} same keys");
            for bit in [0, 1, 63, 64, 127] {
                let other = flip(Suite::AES_128_CCM_8, Some(bit), None);
                assert_eq!(
                    s.install(epoch, &other),
                    Err(KeyError::EpochNotNewer),
                    "{epoch:?} key bit {bit}"
                );
            }
            for bit in [0, 31] {
                let other = flip(Suite::AES_128_CCM_8, None, Some(bit));
                assert_eq!(
                    s.install(epoch, &other),
                    Err(KeyError::EpochNotNewer),
                    "{epoch:?} iv bit {bit}"
                );
            }
            let other = flip(Suite::AES_128_CCM, None, None);
            assert_eq!(
                s.install(epoch, &other),
                Err(KeyError::EpochNotNewer),
                "{epoch:?} other suite, same bytes"
            );
        }
        // Nothing was replaced by the refused installs.
        assert_eq!(s.current().map(|c| c.epoch()), Some(Epoch(4)));
        assert_eq!(s.staged(), Some(Epoch(5)));
        let mine = EpochCipher::new(&same).unwrap();
        assert!(s.current().unwrap().cipher().same_keys(&mine));
    }

    /// The usage counters saturate at `u32::MAX` and stay at or above any limit there.
    #[test]
    fn a_saturated_counter_has_reached_every_limit() {
        assert!(!reached(u32::MAX - 1, u64::from(u32::MAX)));
        assert!(reached(u32::MAX, u64::from(u32::MAX)));
        assert!(reached(u32::MAX, 1 << 32));
        assert!(reached(u32::MAX, 1 << 36));
        assert!(reached(u32::MAX, u64::MAX));
        assert!(!reached(u32::MAX - 1, u64::MAX));
        assert!(!reached(3, 4));
        assert!(reached(4, 4));
        assert!(reached(0, 0));
    }
}
