//! A bundle's sender list as the key server builds it and [`parse`](super::parse) decodes it:
//! up to [`MAX_SENDERS`] entries (one per sender ID), at most [`MAX_SIGNING_SENDERS`] of them
//! with a key. On the wire it is the postcard sequence of [`SenderEntry`]; in memory the IDs and
//! the keys are kept apart (1 byte per sender, 33 per keyed one), so a 255-sender list of a group
//! without record signatures costs 255 bytes, not 255 × 35.

use core::fmt;

use heapless::Vec;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::message::{CompressedKey, SenderEntry};
use super::vocabulary::{MAX_SENDERS, MAX_SIGNING_SENDERS};

/// The senders a bundle lists, in order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SenderEntries {
    ids: Vec<u8, MAX_SENDERS>,
    /// Bit `i`: entry `i` has a key (the next one of `keys`).
    keyed: [u32; 8],
    keys: Vec<CompressedKey, MAX_SIGNING_SENDERS>,
}

impl SenderEntries {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            ids: Vec::new(),
            keyed: [0; 8],
            keys: Vec::new(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends an entry; a full list (or a keyed entry beyond [`MAX_SIGNING_SENDERS`]) hands it
    /// back.
    pub fn push(&mut self, entry: SenderEntry) -> Result<(), SenderEntry> {
        let i = self.ids.len();
        if i >= MAX_SENDERS
            || entry
                .public_key
                .is_some_and(|_| self.keys.len() >= MAX_SIGNING_SENDERS)
        {
            return Err(entry);
        }
        if let Some(k) = entry.public_key {
            self.keys.push(k).map_err(|_| entry)?;
            if let Some(w) = self.keyed.get_mut(i / 32) {
                *w |= 1u32 << (i % 32);
            }
        }
        self.ids.push(entry.sender_id).map_err(|_| entry)
    }

    /// A list of `entries` ([`None`] if they don't fit).
    pub fn from_slice(entries: &[SenderEntry]) -> Option<Self> {
        let mut out = Self::new();
        for e in entries {
            out.push(*e).ok()?;
        }
        Some(out)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = SenderEntry> + '_ {
        let mut keys = self.keys.iter();
        self.ids.iter().enumerate().map(move |(i, &sender_id)| {
            let keyed = self
                .keyed
                .get(i / 32)
                .is_some_and(|w| w & (1u32 << (i % 32)) != 0);
            SenderEntry {
                sender_id,
                public_key: if keyed { keys.next().copied() } else { None },
            }
        })
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<SenderEntry> {
        let sender_id = *self.ids.get(i)?;
        let (word, bit) = (i / 32, i % 32);
        let keyed = self.keyed.get(word)? & (1u32 << bit) != 0;
        let public_key = if keyed {
            // Its key is the one after those of the keyed entries before it.
            let below = self.keyed.iter().take(word).map(|w| w.count_ones());
            let here = self
                .keyed
                .get(word)
                .map_or(0, |w| (w & (1u32 << bit).wrapping_sub(1)).count_ones());
            let k = below.sum::<u32>().saturating_add(here);
            self.keys.get(usize::try_from(k).ok()?).copied()
        } else {
            None
        };
        Some(SenderEntry {
            sender_id,
            public_key,
        })
    }

    /// Sorts the entries by sender ID (keys move with their entries).
    pub fn sort_by_sender_id(&mut self) {
        let mut order: Vec<u8, MAX_SENDERS> = (0..self.len())
            .filter_map(|i| u8::try_from(i).ok())
            .collect();
        order.sort_unstable_by_key(|&i| self.ids.get(usize::from(i)).copied());
        let mut sorted = Self::new();
        for i in order {
            if let Some(e) = self.get(usize::from(i)) {
                // Can't fail: the same entries, in another order.
                let _ = sorted.push(e);
            }
        }
        *self = sorted;
    }
}

impl fmt::Debug for SenderEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for SenderEntries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for e in self.iter() {
            seq.serialize_element(&e)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for SenderEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SenderEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "at most {MAX_SENDERS} sender entries, {MAX_SIGNING_SENDERS} with keys"
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SenderEntries, A::Error> {
                let mut out = SenderEntries::new();
                while let Some(e) = seq.next_element::<SenderEntry>()? {
                    out.push(e)
                        .map_err(|_| de::Error::invalid_length(out.len(), &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}
