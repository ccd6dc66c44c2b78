//! Walking a received datagram: the one rule every driver follows (wire-format.md §1).
//!
//! A datagram may carry several records back to back. [`Group::open_datagram`] (and
//! [`Member::open_datagram`] for a key-distribution member) returns [`Records`], an iterator
//! that splits the datagram into records and opens each one in place, in order, through
//! [`Group::open`]: each item is the [`Delivery`] of an accepted record or the reason the record
//! was dropped (already counted by the group). Bytes that do not frame as a record (a header
//! that does not parse, or a length running past the end of the datagram) are handed to `open`
//! once, so that they are counted as malformed, and end the walk: nothing after them can be
//! framed.
//!
//! Each header is parsed once; drivers parse nothing themselves. Nothing is copied: every
//! delivered plaintext is a slice of the caller's datagram buffer. Records not pulled from the
//! iterator are discarded unopened (and uncounted).
//!
//! ```
//! use group_core::group::{Group, GroupConfig};
//! use group_core::schedule::{native_keys, EpochSecret};
//! use group_core::sequence::MemorySequenceStore;
//! use group_core::suite::Suite;
//! use group_core::time::Instant;
//! use group_core::wire::{Epoch, SenderId};
//!
//! let keys = native_keys(7, Epoch(1), Suite::AES_128_CCM, &EpochSecret([0x42; 32])).unwrap();
//! let now = Instant(0);
//! let mut switch: Group = Group::new(GroupConfig::new(7).with_sender_id(SenderId(1)));
//! let mut light: Group = Group::new(GroupConfig::new(7));
//! switch.install_and_activate(Epoch(1), &keys, now).unwrap();
//! light.install_and_activate(Epoch(1), &keys, now).unwrap();
//! let mut store = MemorySequenceStore::commissioned();
//!
//! // Two records and two stray bytes in one datagram.
//! let mut datagram = [0u8; 128];
//! let a = switch.seal(now, &mut store, b"on", &mut datagram).unwrap();
//! let b = switch.seal(now, &mut store, b"dim 40", &mut datagram[a..]).unwrap();
//! let len = a + b + 2;
//!
//! let mut records = light.open_datagram(now, &mut datagram[..len]);
//! assert_eq!(records.next().unwrap().unwrap().plaintext, b"on");
//! assert_eq!(records.next().unwrap().unwrap().plaintext, b"dim 40");
//! assert!(records.next().unwrap().is_err()); // the stray bytes, counted as malformed
//! assert!(records.next().is_none());
//! assert_eq!(light.counters().accepted, 2);
//! assert_eq!(light.counters().malformed, 1);
//! ```

use core::fmt;
use core::iter::FusedIterator;

use crate::group::{Delivery, Group, OpenError};
#[cfg(feature = "keydist-member")]
use crate::keydist::Member;
#[cfg(feature = "keydist-member")]
use crate::sequence::SequenceStore;
use crate::time::Instant;
use crate::wire::{self, RecordHeader};

/// What opens the records of a datagram: a [`Group`], or a [`Member`] (which holds its group).
pub(crate) trait OpenRecord {
    /// Opens one record in place; `header` is what [`RecordHeader::parse`] returned for it.
    fn open_framed<'a>(
        &mut self,
        now: Instant,
        header: Result<RecordHeader, wire::Error>,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError>;
}

impl<const SENDERS: usize, const WORDS: usize> OpenRecord for Group<SENDERS, WORDS> {
    fn open_framed<'a>(
        &mut self,
        now: Instant,
        header: Result<RecordHeader, wire::Error>,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        Group::open_framed(self, now, header, record)
    }
}

#[cfg(feature = "keydist-member")]
impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> OpenRecord
    for Member<S, SENDERS, WORDS>
{
    fn open_framed<'a>(
        &mut self,
        now: Instant,
        _header: Result<RecordHeader, wire::Error>,
        record: &'a mut [u8],
    ) -> Result<Delivery<'a>, OpenError> {
        self.open(now, record)
    }
}

/// The records of one received datagram, opened one by one in place (see the
/// [module documentation](self)). Made by [`Group::open_datagram`] and
/// [`Member::open_datagram`].
pub struct Records<'b> {
    opener: &'b mut dyn OpenRecord,
    rest: &'b mut [u8],
    now: Instant,
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("now", &self.now)
            .field("remaining", &self.rest.len())
            .finish_non_exhaustive()
    }
}

impl<'b> Records<'b> {
    fn new(opener: &'b mut dyn OpenRecord, now: Instant, datagram: &'b mut [u8]) -> Self {
        Self {
            opener,
            rest: datagram,
            now,
        }
    }

    /// Bytes of the datagram not walked yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'b> Iterator for Records<'b> {
    type Item = Result<Delivery<'b>, OpenError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = core::mem::take(&mut self.rest);
        let header = RecordHeader::parse(rest);
        // A record that frames ends where its header says; bytes that do not frame (no
        // header, or a length running past the end) are handed on whole, so the group counts
        // them as malformed, and end the walk: nothing after them can be framed.
        let at = header
            .as_ref()
            .ok()
            .map(RecordHeader::record_len)
            .filter(|len| *len <= rest.len())
            .unwrap_or(rest.len());
        // `at <= rest.len()`: the split always succeeds.
        let (record, tail) = rest.split_at_mut_checked(at)?;
        self.rest = tail;
        Some(self.opener.open_framed(self.now, header, record))
    }
}

impl FusedIterator for Records<'_> {}

impl<const SENDERS: usize, const WORDS: usize> Group<SENDERS, WORDS> {
    /// Opens every record of one received datagram in place, in order: an iterator of
    /// per-record outcomes, each a [`Delivery`] or the reason the record was dropped (already
    /// counted). See [`datagram`](crate::datagram) for the rule.
    pub fn open_datagram<'b>(&'b mut self, now: Instant, datagram: &'b mut [u8]) -> Records<'b> {
        Records::new(self, now, datagram)
    }
}

#[cfg(feature = "keydist-member")]
#[cfg_attr(docsrs, doc(cfg(feature = "keydist-member")))]
impl<S: SequenceStore, const SENDERS: usize, const WORDS: usize> Member<S, SENDERS, WORDS> {
    /// Opens every record of one received datagram in place through [`Member::open`]: the
    /// member's [`Group::open_datagram`] (before joining, every record is refused).
    pub fn open_datagram<'b>(&'b mut self, now: Instant, datagram: &'b mut [u8]) -> Records<'b> {
        Records::new(self, now, datagram)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::group::GroupConfig;
    use crate::schedule::{EpochSecret, native_keys};
    use crate::sequence::MemorySequenceStore;
    use crate::suite::Suite;
    use crate::wire::{Epoch, SenderId};

    fn pair() -> (Group, Group, MemorySequenceStore) {
        let keys = native_keys(7, Epoch(1), Suite::AES_128_CCM, &EpochSecret([0x42; 32])).unwrap();
        let mut tx: Group = Group::new(GroupConfig::new(7).with_sender_id(SenderId(1)));
        let mut rx: Group = Group::new(GroupConfig::new(7));
        tx.install_and_activate(Epoch(1), &keys, Instant(0))
            .unwrap();
        rx.install_and_activate(Epoch(1), &keys, Instant(0))
            .unwrap();
        (tx, rx, MemorySequenceStore::commissioned())
    }

    type Outcomes = Vec<Result<Vec<u8>, &'static str>>;

    /// The outcomes of the iterator, as `Ok(plaintext)` / `Err(reason)`.
    fn walk(rx: &mut Group, datagram: &mut [u8]) -> Outcomes {
        rx.open_datagram(Instant(0), datagram)
            .map(|r| r.map(|d| d.plaintext.to_vec()).map_err(|e| e.reason()))
            .collect()
    }

    #[test]
    fn walks_records_then_counts_an_unframable_tail_once() {
        let (mut tx, mut rx, mut store) = pair();
        let mut d = [0u8; 128];
        let a = tx.seal(Instant(0), &mut store, b"on", &mut d).unwrap();
        let b = tx
            .seal(Instant(0), &mut store, b"off", &mut d[a..])
            .unwrap();
        let captured = d;
        // Two records, then a header whose length runs past the end.
        let mut dg = [0u8; 128];
        dg[..a + b].copy_from_slice(&captured[..a + b]);
        dg[a + b..a + b + a - 1].copy_from_slice(&captured[..a - 1]);
        let out = walk(&mut rx, &mut dg[..a + b + a - 1]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_deref(), Ok(&b"on"[..]));
        assert_eq!(out[1].as_deref(), Ok(&b"off"[..]));
        assert_eq!(out[2], Err("malformed"));
        assert_eq!(rx.counters().accepted, 2);
        assert_eq!(rx.counters().malformed, 1);

        // A replayed record, then bytes that are not a header at all.
        let mut dg = [0u8; 128];
        dg[..a].copy_from_slice(&captured[..a]);
        dg[a..a + 3].copy_from_slice(&[1, 2, 3]);
        let out = walk(&mut rx, &mut dg[..a + 3]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], Err("replay"));
        assert_eq!(out[1], Err("malformed"));
        assert_eq!(rx.counters().malformed, 2);

        // Nothing in, nothing out, nothing counted.
        assert!(walk(&mut rx, &mut []).is_empty());
        assert_eq!(rx.counters().dropped(), 3);
    }

    #[test]
    fn the_same_outcomes_as_opening_each_record() {
        let (mut tx, mut rx, mut store) = pair();
        let (_, mut rx2, _) = pair();
        let mut d = [0u8; 128];
        let a = tx.seal(Instant(0), &mut store, b"x", &mut d).unwrap();
        let b = tx.seal(Instant(0), &mut store, b"yz", &mut d[a..]).unwrap();
        d[a + 20] ^= 1; // the second record's ciphertext
        let mut one = d;
        let out = walk(&mut rx, &mut d[..a + b]);
        let first = rx2
            .open(Instant(0), &mut one[..a])
            .map(|p| p.plaintext.to_vec());
        let second = rx2
            .open(Instant(0), &mut one[a..a + b])
            .map(|p| p.plaintext.to_vec());
        assert_eq!(out[0], first.map_err(|e| e.reason()));
        assert_eq!(out[1], second.map_err(|e| e.reason()));
        assert_eq!(rx.counters(), rx2.counters());
    }
}
