//! A power-cut-safe [`SequenceStore`] on NOR flash ([`embedded_storage::nor_flash::NorFlash`]).
//!
//! # Format
//!
//! The store owns a region of at least two erase pages and writes a log of fixed-size slots
//! through it, page after page, round the ring. Each save appends one record to the next blank
//! slot; nothing is ever overwritten in place. A slot is `max(32, WRITE_SIZE)` bytes:
//!
//! ```text
//!  0       4   5    6       8     9      12           16                24       28
//!  | "DGSF" | 1 | kind | epoch | sid | 0 0 0 | generation | reserved_until | crc32 | ff.. |
//!  kind        0 = commissioned and empty, 1 = a reservation
//!  generation  u32 BE, one more than the newest record at the time of the write
//!  crc32       CRC-32 (IEEE) of bytes 0..24; never 0xffffffff (the writer skips a generation)
//! ```
//!
//! The newest record is the valid record (magic, version, padding and CRC check) with the
//! highest generation. Bytes are programmed in order, so the CRC is the last word a write
//! programs: a write cut short leaves a slot whose CRC word is still blank or half programmed,
//! and such a slot never validates.
//!
//! # Why a power cut never loses a durable reservation
//!
//! - A save writes a new slot and reads it back before returning `Ok`: the state it reports
//!   durable is on the medium.
//! - The old record is never touched by a save; a torn new slot fails its CRC, so after a cut
//!   during a write, [`load`](SequenceStore::load) returns the old state (the sender never
//!   used a number above the old mark, because the save that would allow it did not return).
//! - A page is erased only when the log moves into it, and never the page that holds the
//!   newest valid record: a cut during an erase leaves the newest record where it was.
//! - A slot that is not blank (a torn write) is skipped, never programmed again.
//!
//! Wear: one erase per `ERASE_SIZE / slot` saves, pages in ring order, so erase counts differ
//! by at most one between pages.
//!
//! Not covered: a completed write that later decays (data retention), which no single-copy
//! format can tell apart from a torn one. A store whose records are all unreadable returns
//! [`StoreError::Corrupt`] (or [`StoreError::Missing`] when the region is blank), and the
//! sender then refuses to send until the key server issues a new epoch or sender ID.
//!
//! [`StoreError::Corrupt`]: group_core::sequence::StoreError::Corrupt

pub mod sim;

use core::fmt;

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use group_core::sequence::{SequenceStore, StoreError, StoredSequence};
use group_core::wire::{Epoch, SenderId};

/// Magic at the start of every record.
pub const MAGIC: [u8; 4] = *b"DGSF";
/// Format version.
pub const VERSION: u8 = 1;
/// Bytes of a record that carry data (the rest of a slot stays blank).
pub const RECORD_LEN: usize = 28;
/// Smallest slot size.
pub const MIN_SLOT: usize = 32;
/// Largest slot size the store supports (flash whose write unit is larger is refused).
pub const MAX_SLOT: usize = 256;

const KIND_EMPTY: u8 = 0;
const KIND_RESERVATION: u8 = 1;
const CRC_AT: usize = 24;

/// Why a store could not be set up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The region is not aligned to erase pages, has fewer than two pages, exceeds the flash,
    /// or the flash's write/read unit does not fit the slot layout.
    Geometry,
    /// [`FlashSequenceStore::commission`] found a valid record: refusing to reset a store
    /// would let the sender reuse sequence numbers.
    AlreadyCommissioned,
    /// The flash refused an operation.
    Flash(NorFlashErrorKind),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Geometry => f.write_str("flash region geometry not supported"),
            SetupError::AlreadyCommissioned => {
                f.write_str("store holds a valid record; refusing to reset it")
            }
            SetupError::Flash(k) => write!(f, "flash error: {k}"),
        }
    }
}

/// Counts of what the store did, for diagnostics. All saturate.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct FlashStats {
    /// Full scans of the region.
    pub scans: u32,
    /// Records written and verified.
    pub writes: u32,
    /// Pages erased.
    pub erases: u32,
    /// Non-blank slots skipped while looking for a blank one (torn writes).
    pub skipped_slots: u32,
    /// Writes whose read-back differed.
    pub verify_failures: u32,
    /// Flash operations that returned an error.
    pub flash_errors: u32,
}

/// Where the newest valid record is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Head {
    slot: u32,
    generation: u32,
}

/// What a scan found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scan {
    /// The newest valid record and its content (`None`: commissioned and empty).
    Found(Head, Option<StoredSequence>),
    /// Every slot is blank.
    Blank,
    /// No valid record, but non-blank slots.
    Garbage,
    /// Two different valid records share the highest generation.
    Ambiguous,
}

/// A [`SequenceStore`] in a region of NOR flash. See the [module docs](self) for the format
/// and its power-cut argument.
#[derive(Debug)]
pub struct FlashSequenceStore<F> {
    flash: F,
    start: u32,
    pages: u32,
    slot_len: u32,
    slots_per_page: u32,
    head: Option<Head>,
    stats: FlashStats,
}

fn bump(c: &mut u32) {
    *c = c.saturating_add(1);
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// Encodes a record into the first [`RECORD_LEN`] bytes of `out` (the rest is left as is).
/// Returns `None` when its CRC would read as a blank word (pick another generation).
fn encode(state: Option<&StoredSequence>, generation: u32, out: &mut [u8; MAX_SLOT]) -> Option<()> {
    let mut r = [0u8; RECORD_LEN];
    let [m0, m1, m2, m3] = MAGIC;
    let [g0, g1, g2, g3] = generation.to_be_bytes();
    let (kind, [e0, e1], sid, ru) = match state {
        None => (KIND_EMPTY, [0, 0], 0, [0u8; 8]),
        Some(s) => (
            KIND_RESERVATION,
            s.epoch.0.to_be_bytes(),
            s.sender_id.0,
            s.reserved_until.to_be_bytes(),
        ),
    };
    let [r0, r1, r2, r3, r4, r5, r6, r7] = ru;
    let head = [
        m0, m1, m2, m3, VERSION, kind, e0, e1, sid, 0, 0, 0, g0, g1, g2, g3, r0, r1, r2, r3, r4,
        r5, r6, r7,
    ];
    let crc = crc32(&head);
    if crc == u32::MAX {
        return None;
    }
    let [c0, c1, c2, c3] = crc.to_be_bytes();
    for (o, i) in r.iter_mut().zip(head.iter().chain([c0, c1, c2, c3].iter())) {
        *o = *i;
    }
    for (o, i) in out.iter_mut().zip(r.iter()) {
        *o = *i;
    }
    Some(())
}

/// Decodes a slot: `Err(())` if it is not a valid record.
#[allow(clippy::result_unit_err)]
fn decode(slot: &[u8]) -> Result<(u32, Option<StoredSequence>), ()> {
    let r: &[u8; RECORD_LEN] = slot
        .get(..RECORD_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(())?;
    let [
        m0,
        m1,
        m2,
        m3,
        version,
        kind,
        e0,
        e1,
        sid,
        p0,
        p1,
        p2,
        g0,
        g1,
        g2,
        g3,
        r0,
        r1,
        r2,
        r3,
        r4,
        r5,
        r6,
        r7,
        c0,
        c1,
        c2,
        c3,
    ] = *r;
    let stored_crc = u32::from_be_bytes([c0, c1, c2, c3]);
    let body = r.get(..CRC_AT).ok_or(())?;
    if [m0, m1, m2, m3] != MAGIC
        || version != VERSION
        || [p0, p1, p2] != [0, 0, 0]
        || stored_crc == u32::MAX
        || crc32(body) != stored_crc
    {
        return Err(());
    }
    let generation = u32::from_be_bytes([g0, g1, g2, g3]);
    let reserved_until = u64::from_be_bytes([r0, r1, r2, r3, r4, r5, r6, r7]);
    match kind {
        KIND_EMPTY if [e0, e1, sid] == [0, 0, 0] && reserved_until == 0 => Ok((generation, None)),
        KIND_RESERVATION => Ok((
            generation,
            Some(StoredSequence {
                epoch: Epoch(u16::from_be_bytes([e0, e1])),
                sender_id: SenderId(sid),
                reserved_until,
            }),
        )),
        _ => Err(()),
    }
}

impl<F: NorFlash> FlashSequenceStore<F> {
    /// Slot length for this flash's write unit, or `None` if the layout does not fit it.
    pub fn slot_len() -> Option<usize> {
        let w = F::WRITE_SIZE.max(1);
        let slot = MIN_SLOT.div_ceil(w).checked_mul(w)?;
        let r = F::READ_SIZE.max(1);
        let fits = slot <= MAX_SLOT
            && slot.is_multiple_of(r)
            && F::ERASE_SIZE >= slot
            && F::ERASE_SIZE.is_multiple_of(slot);
        fits.then_some(slot)
    }

    /// Opens the store in `pages` erase pages of `flash` starting at byte `start` (aligned to
    /// `ERASE_SIZE`). Reads nothing yet: the state is read at [`SequenceStore::load`].
    pub fn new(flash: F, start: u32, pages: u32) -> Result<Self, SetupError> {
        let slot = Self::slot_len().ok_or(SetupError::Geometry)?;
        let erase = u32::try_from(F::ERASE_SIZE).map_err(|_| SetupError::Geometry)?;
        let slot_len = u32::try_from(slot).map_err(|_| SetupError::Geometry)?;
        let len = erase.checked_mul(pages).ok_or(SetupError::Geometry)?;
        let end = start.checked_add(len).ok_or(SetupError::Geometry)?;
        let cap = u32::try_from(flash.capacity()).unwrap_or(u32::MAX);
        if pages < 2 || !start.is_multiple_of(erase) || end > cap {
            return Err(SetupError::Geometry);
        }
        let slots_per_page = erase.checked_div(slot_len).ok_or(SetupError::Geometry)?;
        // Slot indexes must fit u32 arithmetic.
        slots_per_page
            .checked_mul(pages)
            .ok_or(SetupError::Geometry)?;
        Ok(Self {
            flash,
            start,
            pages,
            slot_len,
            slots_per_page,
            head: None,
            stats: FlashStats::default(),
        })
    }

    /// Commissions a blank or garbage region: erases it and writes the "commissioned, empty"
    /// record, so that [`SequenceStore::load`] returns `Ok(None)`. Refuses a region that holds
    /// a valid record ([`SetupError::AlreadyCommissioned`]): resetting it would let the sender
    /// reuse sequence numbers. A power cut during commissioning leaves the region blank or
    /// garbage (load says `Missing` or `Corrupt`); commission again.
    pub fn commission(&mut self) -> Result<(), SetupError> {
        self.head = None;
        match self.scan() {
            Ok(Scan::Found(..)) | Ok(Scan::Ambiguous) => {
                return Err(SetupError::AlreadyCommissioned);
            }
            Ok(Scan::Blank | Scan::Garbage) => {}
            Err(k) => return Err(SetupError::Flash(k)),
        }
        for page in 0..self.pages {
            self.erase_page(page).map_err(SetupError::Flash)?;
        }
        let mut buf = [0xffu8; MAX_SLOT];
        let mut generation = 1u32;
        while encode(None, generation, &mut buf).is_none() {
            generation = generation.checked_add(1).ok_or(SetupError::Geometry)?;
        }
        if !self.write_slot(0, &buf).map_err(SetupError::Flash)? {
            return Err(SetupError::Flash(NorFlashErrorKind::Other));
        }
        self.head = Some(Head {
            slot: 0,
            generation,
        });
        Ok(())
    }

    /// What the store did so far.
    pub fn stats(&self) -> FlashStats {
        self.stats
    }

    /// The flash, for a caller that shares it.
    pub fn flash_mut(&mut self) -> &mut F {
        &mut self.flash
    }

    /// Gives the flash back (a simulated reboot drops the store and keeps the flash).
    pub fn into_inner(self) -> F {
        self.flash
    }

    /// Number of slots in the region.
    pub fn slots(&self) -> u32 {
        self.slots_per_page.saturating_mul(self.pages)
    }

    fn slot_addr(&self, slot: u32) -> Option<u32> {
        self.start.checked_add(slot.checked_mul(self.slot_len)?)
    }

    fn page_of(&self, slot: u32) -> u32 {
        slot.checked_div(self.slots_per_page).unwrap_or(0)
    }

    fn slot_buf(&self) -> ([u8; MAX_SLOT], usize) {
        ([0xff; MAX_SLOT], self.slot_len as usize)
    }

    fn flash_err<E: NorFlashError>(&mut self, e: E) -> NorFlashErrorKind {
        bump(&mut self.stats.flash_errors);
        self.head = None;
        e.kind()
    }

    fn read_slot(&mut self, slot: u32, buf: &mut [u8; MAX_SLOT]) -> Result<(), NorFlashErrorKind> {
        let len = self.slot_len as usize;
        let addr = self.slot_addr(slot).ok_or(NorFlashErrorKind::OutOfBounds)?;
        let out = buf.get_mut(..len).ok_or(NorFlashErrorKind::OutOfBounds)?;
        match self.flash.read(addr, out) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.flash_err(e)),
        }
    }

    fn is_blank(&mut self, slot: u32) -> Result<bool, NorFlashErrorKind> {
        let (mut buf, len) = self.slot_buf();
        self.read_slot(slot, &mut buf)?;
        Ok(buf.iter().take(len).all(|b| *b == 0xff))
    }

    fn erase_page(&mut self, page: u32) -> Result<(), NorFlashErrorKind> {
        let erase = F::ERASE_SIZE as u32;
        let from = page
            .checked_mul(erase)
            .and_then(|o| self.start.checked_add(o))
            .ok_or(NorFlashErrorKind::OutOfBounds)?;
        let to = from
            .checked_add(erase)
            .ok_or(NorFlashErrorKind::OutOfBounds)?;
        match self.flash.erase(from, to) {
            Ok(()) => {
                bump(&mut self.stats.erases);
                Ok(())
            }
            Err(e) => Err(self.flash_err(e)),
        }
    }

    /// Writes `buf` to `slot` and reads it back. `Ok(false)`: the read-back differed.
    fn write_slot(&mut self, slot: u32, buf: &[u8; MAX_SLOT]) -> Result<bool, NorFlashErrorKind> {
        let len = self.slot_len as usize;
        let addr = self.slot_addr(slot).ok_or(NorFlashErrorKind::OutOfBounds)?;
        let data = buf.get(..len).ok_or(NorFlashErrorKind::OutOfBounds)?;
        if let Err(e) = self.flash.write(addr, data) {
            return Err(self.flash_err(e));
        }
        let mut back = [0u8; MAX_SLOT];
        self.read_slot(slot, &mut back)?;
        if back.get(..len) == Some(data) {
            bump(&mut self.stats.writes);
            Ok(true)
        } else {
            bump(&mut self.stats.verify_failures);
            Ok(false)
        }
    }

    fn scan(&mut self) -> Result<Scan, NorFlashErrorKind> {
        bump(&mut self.stats.scans);
        let mut best: Option<(Head, Option<StoredSequence>)> = None;
        let mut ambiguous = false;
        let mut any_nonblank = false;
        let (mut buf, len) = self.slot_buf();
        for slot in 0..self.slots() {
            self.read_slot(slot, &mut buf)?;
            let bytes = buf.get(..len).unwrap_or(&[]);
            if bytes.iter().all(|b| *b == 0xff) {
                continue;
            }
            any_nonblank = true;
            let Ok((generation, state)) = decode(bytes) else {
                continue;
            };
            match best {
                Some((h, s)) if h.generation == generation => {
                    if s != state {
                        ambiguous = true;
                    }
                }
                Some((h, _)) if h.generation > generation => {}
                _ => {
                    ambiguous = false;
                    best = Some((Head { slot, generation }, state));
                }
            }
        }
        Ok(match best {
            _ if ambiguous => Scan::Ambiguous,
            Some((h, s)) => Scan::Found(h, s),
            None if any_nonblank => Scan::Garbage,
            None => Scan::Blank,
        })
    }

    fn save_inner(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        let head = match self.head {
            Some(h) => Some(h),
            None => match self.scan().map_err(|_| StoreError::Io)? {
                Scan::Found(h, _) => Some(h),
                // Nothing valid to keep: start the log afresh (a recovery after lost state).
                Scan::Blank | Scan::Garbage => None,
                // Don't guess which of two records is newer; the caller must recover.
                Scan::Ambiguous => return Err(StoreError::Corrupt),
            },
        };
        let total = self.slots();
        let (mut candidate, mut generation, keep_page) = match head {
            Some(h) => (
                h.slot.checked_add(1).filter(|s| *s < total).unwrap_or(0),
                h.generation.checked_add(1).ok_or(StoreError::Io)?,
                Some(self.page_of(h.slot)),
            ),
            None => (0, 1, None),
        };
        let mut erased: Option<u32> = None;
        let mut buf = [0xffu8; MAX_SLOT];
        // At most every slot once: past that the flash is failing.
        for _ in 0..total {
            let page = self.page_of(candidate);
            if Some(page) != keep_page && erased != Some(page) {
                if erased.is_some() {
                    // A whole fresh page failed verification.
                    return Err(StoreError::Io);
                }
                self.erase_page(page).map_err(|_| StoreError::Io)?;
                erased = Some(page);
                candidate = page.saturating_mul(self.slots_per_page);
            }
            if !self.is_blank(candidate).map_err(|_| StoreError::Io)? {
                bump(&mut self.stats.skipped_slots);
            } else {
                buf.fill(0xff);
                while encode(Some(state), generation, &mut buf).is_none() {
                    generation = generation.checked_add(1).ok_or(StoreError::Io)?;
                }
                if self
                    .write_slot(candidate, &buf)
                    .map_err(|_| StoreError::Io)?
                {
                    self.head = Some(Head {
                        slot: candidate,
                        generation,
                    });
                    return Ok(());
                }
                // The slot is no longer blank; a later record must win over whatever it holds.
                generation = generation.checked_add(1).ok_or(StoreError::Io)?;
            }
            candidate = candidate.checked_add(1).filter(|s| *s < total).unwrap_or(0);
            if keep_page == Some(self.page_of(candidate)) && erased.is_some() {
                return Err(StoreError::Io);
            }
        }
        Err(StoreError::Io)
    }
}

impl<F: NorFlash> SequenceStore for FlashSequenceStore<F> {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        self.head = None;
        match self.scan().map_err(|_| StoreError::Io)? {
            Scan::Found(h, s) => {
                self.head = Some(h);
                Ok(s)
            }
            Scan::Blank => Err(StoreError::Missing),
            Scan::Garbage | Scan::Ambiguous => Err(StoreError::Corrupt),
        }
    }

    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        let r = self.save_inner(state);
        if r.is_err() {
            self.head = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn record_round_trip_and_every_bit_flip_rejected() {
        let s = StoredSequence {
            epoch: Epoch(0x1234),
            sender_id: SenderId(7),
            reserved_until: 0xff_0000_0001,
        };
        let mut buf = [0xffu8; MAX_SLOT];
        encode(Some(&s), 9, &mut buf).unwrap();
        assert_eq!(decode(&buf[..32]), Ok((9, Some(s))));
        for bit in 0..RECORD_LEN * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&b[..32]), Err(()), "bit {bit}");
        }
        let mut e = [0xffu8; MAX_SLOT];
        encode(None, 1, &mut e).unwrap();
        assert_eq!(decode(&e[..32]), Ok((1, None)));
        assert_eq!(decode(&[0xff; 32]), Err(()));
        assert_eq!(decode(&[0; 8]), Err(()));
    }
}
