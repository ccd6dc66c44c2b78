//! A bundle whose sender list continues in [`SenderKeys`](super::super::SenderKeys) parts (a
//! group that requires record signatures with more senders than one message holds,
//! docs/key-distribution.md §3 and §8): the bundle is checked, its secret opened and its
//! record keys derived when it arrives, then held here with the keys it lists; each part adds
//! the keys it carries. Nothing is installed, no counter accepted and nothing acknowledged
//! until every listed entry has its key: then the bundle is installed as a whole (the last
//! part's [`Member::handle_message`](super::Member::handle_message)) and acknowledged.
//!
//! Everything is kept in the member (no buffer on the stack of a join or rekey): the sender
//! IDs (1 byte each) and the compressed keys (33 bytes each) of at most `SENDERS` entries
//! (a longer list is refused with `CapacityExceeded` in a signed group anyway).
//!
//! Only with the `record-signatures` feature: without it a member refuses groups with record
//! signatures (`PolicyUnsupported`), the only ones whose lists are split, and `Pending` is an
//! empty type (no RAM in the member images without signed records).

#[cfg(feature = "record-signatures")]
use heapless::Vec;

use super::super::error::Error;
#[cfg(feature = "record-signatures")]
use super::super::message::BundlePolicy;
#[cfg(feature = "record-signatures")]
use super::super::message::{COMPRESSED_KEY_LEN, CompressedKey};
#[cfg(feature = "record-signatures")]
use super::super::view::BundleView;
use super::super::view::SenderKeysView;
#[cfg(feature = "record-signatures")]
use super::super::vocabulary::MAX_STALE;
#[cfg(feature = "record-signatures")]
use super::super::vocabulary::NONCE_LEN;
#[cfg(feature = "record-signatures")]
use super::bundle::SidSet;
#[cfg(feature = "record-signatures")]
use crate::suite::RecordKeys;

/// The bundle's fields that its installation needs (everything but the sender list, the stale
/// list and the sealed secret, whose record keys are derived already).
#[cfg(feature = "record-signatures")]
#[derive(Clone, Copy)]
pub(super) struct PendingFields {
    /// The bundle's counter (parts name it).
    pub(super) counter: u64,
    pub(super) epoch: u16,
    pub(super) echo: Option<[u8; NONCE_LEN]>,
    pub(super) sender_id: Option<u8>,
    pub(super) policy: BundlePolicy,
    pub(super) activate_in_ms: u32,
    pub(super) lifetime_ms: u32,
    /// Member clock when the bundle arrived (activation is counted from there).
    pub(super) received_at: u64,
    pub(super) answers_join: bool,
    pub(super) recovering: bool,
}

/// Without signed records nothing is ever split: no bundle is held.
#[cfg(not(feature = "record-signatures"))]
pub(super) struct Pending<const SENDERS: usize>;

#[cfg(not(feature = "record-signatures"))]
impl<const SENDERS: usize> Pending<SENDERS> {
    pub(super) const fn new() -> Self {
        Self
    }
    pub(super) fn clear(&mut self) {}
    pub(super) fn is_active(&self) -> bool {
        false
    }
    pub(super) fn last_counter(&self) -> u64 {
        0
    }
    pub(super) fn check_part(&self, _p: &SenderKeysView<'_>) -> Result<(), Error> {
        Err(Error::Stale)
    }
}

/// The bundle being completed, if any.
#[cfg(feature = "record-signatures")]
pub(super) struct Pending<const SENDERS: usize> {
    pub(super) fields: Option<PendingFields>,
    /// The record keys derived from the bundle's secret (zeroized on drop).
    pub(super) keys: Option<RecordKeys>,
    /// Highest counter among the bundle and its accepted parts.
    pub(super) last_counter: u64,
    /// The listed sender IDs, in list order.
    pub(super) ids: Vec<u8, SENDERS>,
    pub(super) stale: Vec<u8, MAX_STALE>,
    /// Entry `i`'s key, valid iff `have` holds `i`.
    entry_keys: [[u8; COMPRESSED_KEY_LEN]; SENDERS],
    have: SidSet,
    missing: usize,
}

#[cfg(feature = "record-signatures")]
impl<const SENDERS: usize> Pending<SENDERS> {
    pub(super) const fn new() -> Self {
        Self {
            fields: None,
            keys: None,
            last_counter: 0,
            ids: Vec::new(),
            stale: Vec::new(),
            entry_keys: [[0; COMPRESSED_KEY_LEN]; SENDERS],
            have: SidSet::EMPTY,
            missing: 0,
        }
    }

    /// Forgets the pending bundle (its record keys are zeroized).
    pub(super) fn clear(&mut self) {
        self.fields = None;
        self.keys = None;
        self.last_counter = 0;
        self.ids.clear();
        self.stale.clear();
        self.have = SidSet::EMPTY;
        self.missing = 0;
    }

    /// Whether a bundle is being completed.
    pub(super) fn is_active(&self) -> bool {
        self.fields.is_some()
    }

    /// Highest counter among the held bundle and its accepted parts.
    pub(super) fn last_counter(&self) -> u64 {
        self.last_counter
    }

    /// Holds a checked bundle whose list lacks keys, with its derived record keys (in place:
    /// nothing of its size on the stack). The list fits `SENDERS` (checked before).
    pub(super) fn start(
        &mut self,
        fields: PendingFields,
        keys: RecordKeys,
        b: &BundleView<'_>,
    ) -> Result<(), Error> {
        self.clear();
        for (i, s) in b.senders.iter().enumerate() {
            self.ids
                .push(s.sender_id)
                .map_err(|_| Error::CapacityExceeded)?;
            match (s.public_key, self.entry_keys.get_mut(i)) {
                (Some(k), Some(slot)) => {
                    *slot = k.0;
                    self.have.insert(index(i)?);
                }
                (Some(_), None) => return Err(Error::CapacityExceeded),
                (None, _) => self.missing = self.missing.saturating_add(1),
            }
        }
        self.stale = Vec::from_slice(b.stale).map_err(|_| Error::CapacityExceeded)?;
        self.last_counter = fields.counter;
        self.fields = Some(fields);
        self.keys = Some(keys);
        Ok(())
    }

    /// Checks a part against the pending bundle (changes nothing): it must name this bundle
    /// and epoch (`Stale` otherwise: a part of an older bundle or epoch, or one that arrived
    /// before its bundle or after its completion), come after the bundle (`Replayed`), carry
    /// at least one key, only for listed entries (`InconsistentBundle`), none already held
    /// (`Replayed`: the key server sends each part of a bundle once).
    pub(super) fn check_part(&self, p: &SenderKeysView<'_>) -> Result<(), Error> {
        let f = self.fields.as_ref().ok_or(Error::Stale)?;
        if p.bundle != f.counter || p.epoch != f.epoch {
            return Err(Error::Stale);
        }
        if p.header.counter <= f.counter {
            return Err(Error::Replayed);
        }
        let first = usize::from(p.first);
        let end = first
            .checked_add(p.len())
            .ok_or(Error::InconsistentBundle)?;
        if p.is_empty() || end > self.ids.len() {
            return Err(Error::InconsistentBundle);
        }
        for i in first..end {
            if self.have.contains(index(i)?) {
                return Err(Error::Replayed);
            }
        }
        Ok(())
    }

    /// Adds a checked part's keys (already parsed by the caller); returns whether every
    /// listed entry now has its key.
    pub(super) fn add_part(&mut self, p: &SenderKeysView<'_>) -> Result<bool, Error> {
        let first = usize::from(p.first);
        for (i, k) in (first..).zip(p.keys()) {
            let slot = self
                .entry_keys
                .get_mut(i)
                .ok_or(Error::InconsistentBundle)?;
            *slot = k.0;
            self.have.insert(index(i)?);
            self.missing = self.missing.saturating_sub(1);
        }
        self.last_counter = self.last_counter.max(p.header.counter);
        Ok(self.missing == 0)
    }

    /// The listed entries with their keys (complete lists only).
    pub(super) fn entries(&self) -> impl Iterator<Item = (u8, Option<CompressedKey>)> + Clone + '_ {
        self.ids
            .iter()
            .zip(self.entry_keys.iter())
            .map(|(&sid, k)| (sid, Some(CompressedKey::from(*k))))
    }
}

/// A list index as a set element (lists have at most 255 entries).
#[cfg(feature = "record-signatures")]
fn index(i: usize) -> Result<u8, Error> {
    u8::try_from(i).map_err(|_| Error::InconsistentBundle)
}
