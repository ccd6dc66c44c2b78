//! Sending sequence numbers and their persistence contract (wire-format.md §7).
//!
//! A sender never uses `(key, epoch, sid, seq)` twice, across crashes too. Before it uses a
//! sequence number it must have durably reserved it: the [`SequenceStore`] holds a high-water
//! mark written ahead in steps of K (RFC 8613 App. B.1.1). After a restart the sender resumes at
//! the stored mark. A sender whose stored state is missing or unreadable does not send in any
//! epoch it held before the loss (Group OSCORE §2.6.1.1); it needs a new epoch or a new sender ID
//! from the key server, installed through [`SequenceCounter::start_recovered`].

use core::fmt;

use crate::wire::{Epoch, MAX_SEQ, SenderId};

/// The last sequence number a sender of this crate uses in an epoch: 2^40 - 2. wire-format.md §7 has
/// senders stop *before* 2^40 - 1 (the largest value the header can carry, which receivers
/// still accept from other implementations), so the counter can never reach the wrap point.
pub const LAST_SEQ: u64 = MAX_SEQ - 1;

/// What a [`SequenceStore`] holds: every sequence number below `reserved_until` in
/// `(epoch, sender_id)` may have been used; none at or above it has.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoredSequence {
    /// Epoch of the reservation.
    pub epoch: Epoch,
    /// Sender ID of the reservation.
    pub sender_id: SenderId,
    /// First sequence number not yet reserved.
    pub reserved_until: u64,
}

/// Why a store could not load or save.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The state that should be there is gone (e.g. erased flash, deleted file).
    Missing,
    /// The state is there but fails its integrity check.
    Corrupt,
    /// The medium refused the write or read.
    Io,
    /// The store refused the write because another writer holds it now (a shared database
    /// whose lease passed to another key server: the write was fenced off, nothing landed).
    Fenced,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreError::Missing => "sequence state missing",
            StoreError::Corrupt => "sequence state corrupt",
            StoreError::Io => "sequence store I/O error",
            StoreError::Fenced => "store fenced: another writer holds it now",
        })
    }
}

impl core::error::Error for StoreError {}

/// Durable storage for a sender's sequence reservation.
///
/// Contract:
/// - `load` returns `Ok(None)` only for a store that was commissioned empty and never written;
///   a store that lost its state returns `Err(Missing)` or `Err(Corrupt)`.
/// - `save` returns only once the state is durable (fsync, flash write completed); a crash at
///   any point leaves either the old or the new state readable.
pub trait SequenceStore {
    /// Reads the stored reservation.
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError>;
    /// Durably replaces the stored reservation.
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError>;
}

impl<S: SequenceStore + ?Sized> SequenceStore for &mut S {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        (**self).load()
    }
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        (**self).save(state)
    }
}

/// In-memory store, for tests and simulations. It can be told to lose its state or to fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySequenceStore {
    state: Result<Option<StoredSequence>, StoreError>,
    fail_saves: bool,
    saves: u64,
}

impl MemorySequenceStore {
    /// A commissioned, empty store.
    pub const fn commissioned() -> Self {
        Self {
            state: Ok(None),
            fail_saves: false,
            saves: 0,
        }
    }

    /// A store whose state was lost.
    pub const fn lost() -> Self {
        Self {
            state: Err(StoreError::Missing),
            fail_saves: false,
            saves: 0,
        }
    }

    /// Simulates losing the state (erased flash).
    pub fn lose(&mut self) {
        self.state = Err(StoreError::Missing);
    }

    /// Makes every later save fail (or succeed again).
    pub fn set_fail_saves(&mut self, fail: bool) {
        self.fail_saves = fail;
    }

    /// How many saves succeeded.
    pub fn saves(&self) -> u64 {
        self.saves
    }

    /// What is stored.
    pub fn stored(&self) -> Result<Option<StoredSequence>, StoreError> {
        self.state
    }
}

impl SequenceStore for MemorySequenceStore {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        self.state
    }
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        if self.fail_saves {
            return Err(StoreError::Io);
        }
        self.state = Ok(Some(*state));
        self.saves = self.saves.saturating_add(1);
        Ok(())
    }
}

/// Why a sender can't produce a sequence number.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SequenceError {
    /// The store's state is missing or corrupt: don't send until the key server gives a new epoch
    /// or sender ID.
    StateLost(StoreError),
    /// The store failed to save a reservation.
    Store(StoreError),
    /// The store holds a newer epoch, or the same epoch with another sender ID: sending would
    /// risk reusing a nonce.
    Stale,
    /// The epoch's sequence numbers are used up (the last is [`LAST_SEQ`]): rekey.
    Exhausted,
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceError::StateLost(e) => write!(f, "sequence state lost: {e}"),
            SequenceError::Store(e) => write!(f, "sequence reservation not saved: {e}"),
            SequenceError::Stale => f.write_str("store holds a newer epoch or another sender ID"),
            SequenceError::Exhausted => f.write_str("sequence numbers of the epoch used up"),
        }
    }
}

impl core::error::Error for SequenceError {}

/// The sending side's sequence counter for one `(epoch, sid)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceCounter {
    epoch: Epoch,
    sender_id: SenderId,
    next: u64,
    reserved_until: u64,
    step: u64,
}

impl SequenceCounter {
    /// Starts or resumes sending in `(epoch, sid)`, reading the store:
    /// - same `(epoch, sid)` stored: resume at the stored mark (a restart);
    /// - an older epoch stored, or a commissioned empty store: start at 0;
    /// - anything else (newer epoch, same epoch with another sid, lost state): refuse.
    ///
    /// `step` is K, the reservation step (at least 1).
    pub fn start<S: SequenceStore>(
        store: &mut S,
        epoch: Epoch,
        sender_id: SenderId,
        step: u64,
    ) -> Result<Self, SequenceError> {
        let stored = store.load().map_err(SequenceError::StateLost)?;
        let next = match stored {
            None => 0,
            Some(s) if s.epoch == epoch && s.sender_id == sender_id => s.reserved_until,
            Some(s) if s.epoch < epoch => 0,
            Some(_) => return Err(SequenceError::Stale),
        };
        Ok(Self {
            epoch,
            sender_id,
            next,
            reserved_until: next,
            step: step.max(1),
        })
    }

    /// Starts at 0 in `(epoch, sid)` whatever the store holds. Call this only with an epoch or
    /// sender ID the key server issued after this device reported the loss of its state; it
    /// writes the new reservation before returning.
    pub fn start_recovered<S: SequenceStore>(
        store: &mut S,
        epoch: Epoch,
        sender_id: SenderId,
        step: u64,
    ) -> Result<Self, SequenceError> {
        let mut c = Self {
            epoch,
            sender_id,
            next: 0,
            reserved_until: 0,
            step: step.max(1),
        };
        c.reserve(store)?;
        Ok(c)
    }

    fn reserve<S: SequenceStore>(&mut self, store: &mut S) -> Result<(), SequenceError> {
        let until = self
            .next
            .saturating_add(self.step)
            .min(LAST_SEQ.saturating_add(1));
        store
            .save(&StoredSequence {
                epoch: self.epoch,
                sender_id: self.sender_id,
                reserved_until: until,
            })
            .map_err(SequenceError::Store)?;
        self.reserved_until = until;
        Ok(())
    }

    /// The epoch this counter is for.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The sender ID this counter is for.
    pub fn sender_id(&self) -> SenderId {
        self.sender_id
    }

    /// The next sequence number [`take`](Self::take) would return.
    pub fn peek(&self) -> u64 {
        self.next
    }

    /// The reservation mark: numbers below it are reserved in the store; taking the number at
    /// the mark writes a new reservation first. `reserved_until() - peek()` (saturating) is how
    /// many numbers are left before the next store write.
    pub fn reserved_until(&self) -> u64 {
        self.reserved_until
    }

    /// Takes the next sequence number, reserving ahead in the store first when needed.
    /// A number once taken is never returned again, even if the record is then not sent.
    pub fn take<S: SequenceStore>(&mut self, store: &mut S) -> Result<u64, SequenceError> {
        if self.next > LAST_SEQ {
            return Err(SequenceError::Exhausted);
        }
        if self.next >= self.reserved_until {
            self.reserve(store)?;
        }
        let seq = self.next;
        self.next = self.next.saturating_add(1);
        Ok(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumes_at_mark_after_restart() {
        let mut store = MemorySequenceStore::commissioned();
        let mut c = SequenceCounter::start(&mut store, Epoch(1), SenderId(2), 10).unwrap();
        for i in 0..15 {
            assert_eq!(c.take(&mut store).unwrap(), i);
        }
        assert_eq!(store.saves(), 2);
        // Crash: the counter is gone, the store says 20.
        let mut c = SequenceCounter::start(&mut store, Epoch(1), SenderId(2), 10).unwrap();
        assert_eq!(c.take(&mut store).unwrap(), 20);
        // A newer epoch starts at 0; an older one or another sid is refused.
        let mut c2 = SequenceCounter::start(&mut store, Epoch(2), SenderId(2), 10).unwrap();
        assert_eq!(c2.take(&mut store).unwrap(), 0);
        assert_eq!(
            SequenceCounter::start(&mut store, Epoch(1), SenderId(2), 10),
            Err(SequenceError::Stale)
        );
        assert_eq!(
            SequenceCounter::start(&mut store, Epoch(2), SenderId(3), 10),
            Err(SequenceError::Stale)
        );
    }

    #[test]
    fn refuses_when_state_lost_or_save_fails() {
        let mut store = MemorySequenceStore::lost();
        assert_eq!(
            SequenceCounter::start(&mut store, Epoch(1), SenderId(2), 10),
            Err(SequenceError::StateLost(StoreError::Missing))
        );
        let mut c = SequenceCounter::start_recovered(&mut store, Epoch(5), SenderId(9), 4).unwrap();
        assert_eq!(c.take(&mut store).unwrap(), 0);
        store.set_fail_saves(true);
        for i in 1..4 {
            assert_eq!(c.take(&mut store).unwrap(), i);
        }
        assert_eq!(
            c.take(&mut store),
            Err(SequenceError::Store(StoreError::Io))
        );
        assert_eq!(
            c.take(&mut store),
            Err(SequenceError::Store(StoreError::Io))
        );
    }

    #[test]
    fn stops_before_wrap() {
        let mut store = MemorySequenceStore::commissioned();
        store
            .save(&StoredSequence {
                epoch: Epoch(1),
                sender_id: SenderId(1),
                reserved_until: MAX_SEQ - 2,
            })
            .unwrap();
        let mut c = SequenceCounter::start(&mut store, Epoch(1), SenderId(1), 1000).unwrap();
        assert_eq!(c.take(&mut store).unwrap(), MAX_SEQ - 2);
        assert_eq!(c.take(&mut store).unwrap(), LAST_SEQ);
        assert_eq!(c.take(&mut store), Err(SequenceError::Exhausted));
        assert_eq!(c.take(&mut store), Err(SequenceError::Exhausted));
        assert_eq!(store.stored().unwrap().unwrap().reserved_until, MAX_SEQ);
    }
}
