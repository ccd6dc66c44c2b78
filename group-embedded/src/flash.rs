//! A power-cut-safe [`SequenceStore`] on NOR flash ([`embedded_storage::nor_flash::NorFlash`]),
//! with a boot path that can't mistake a lost store for a new one.
//!
//! # Factory, then boot
//!
//! A store is set up once, **at the factory** (or by whatever provisioning step makes a device
//! a device), and only opened afterwards:
//!
//! ```
//! use group_embedded::flash::{FlashSequenceStore, Loss, StoreState};
//! use group_embedded::flash::sim::SimNorFlash;
//!
//! let mut flash: SimNorFlash<2, 256, 4> = SimNorFlash::new();
//! // Factory station, once per device, never in the field image's boot code:
//! FlashSequenceStore::commission_at_factory(&mut flash, 0, 2).unwrap();
//!
//! // Every boot, in the field:
//! let (store, state) = FlashSequenceStore::open(&mut flash, 0, 2).unwrap();
//! match state {
//!     StoreState::CommissionedEmpty => { /* first boot after the factory */ }
//!     StoreState::Reserved(_) => { /* normal boot */ }
//!     // Erased, corrupted or unreadable: nothing to do here. Hand the store to the member
//!     // anyway; `Member::join` sees the loss (`load` fails) and asks the key server for a
//!     // fresh epoch before this device sends again.
//!     StoreState::Lost(loss) => { let _ = loss; }
//! }
//! # assert_eq!(state, StoreState::CommissionedEmpty);
//! # drop(store);
//! # let _ = Loss::Blank;
//! ```
//!
//! There is no "open or create": [`open`](FlashSequenceStore::open) never writes, and a store
//! opened in the field has no method that commissions it. The boot code a firmware author
//! might write first, "if the store is missing, commission it", would turn a wiped store into a
//! new one and let the sender reuse every sequence number it had used; it does not compile:
//!
//! ```compile_fail
//! use group_core::sequence::{SequenceStore, StoreError};
//! use group_embedded::flash::FlashSequenceStore;
//! use group_embedded::flash::sim::SimNorFlash;
//!
//! let flash: SimNorFlash<2, 256, 4> = SimNorFlash::new();
//! let (mut store, _) = FlashSequenceStore::open(flash, 0, 2).unwrap();
//! if store.load() == Err(StoreError::Missing) {
//!     store.commission().unwrap(); // no such method: commissioning is a factory step
//! }
//! ```
//!
//! [`commission_at_factory`](FlashSequenceStore::commission_at_factory) is a separate function
//! on the flash, not on a store; it refuses a region that holds any valid record. It can't
//! refuse a region that was wiped in the field (an erased page looks like a factory-fresh one),
//! so it belongs in the factory image or station only.
//!
//! What [`open`](FlashSequenceStore::open) reports ([`StoreState`]):
//! - `CommissionedEmpty`: the factory record and no reservation: the sender starts at 0 in the
//!   epoch the key server gives it. Only the factory record says this, and a wiped, zeroed or
//!   half-written region can't imitate it (magic, a fixed factory mark and a CRC-32, the CRC
//!   programmed last).
//! - `Reserved(state)`: the newest reservation.
//! - `Lost(Blank | Corrupt | Ambiguous | Flash(_))`: the state is gone. `load` fails
//!   (`Missing`, `Corrupt`, `Corrupt`, `Io`), so the core's `SequenceCounter::start` refuses to
//!   send and `Member::join` reports the loss; the device sends again only in an epoch the key
//!   server issues after it learnt of the loss (`SequenceCounter::start_recovered`).
//!
//! The first save moves off the page of the factory record and then erases that page, so from
//! the first reservation on the factory record is gone: a later wipe, or a decayed first
//! reservation, is `Lost`, never `CommissionedEmpty`.
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
//!  kind        1 = a reservation
//!              2 = the factory record: epoch 0, sid 0, and "FACTORY1" in place of
//!                  reserved_until (kind 0, "commissioned-empty" in earlier builds, is no longer
//!                  valid: such a store reads as lost, and recovers through the key server)
//!  generation  u32 BE, one more than the newest record at the time of the write
//!  crc32       CRC-32 (IEEE) of bytes 0..24; never 0xffffffff (the writer skips a generation)
//! ```
//!
//! The newest record is the valid record (magic, version, padding and CRC check) with the
//! highest generation. Bytes are programmed in order, so the CRC is the last word a write
//! programs: a write cut short leaves a slot whose CRC word is still blank or half programmed,
//! and such a slot never validates. A factory record is `CommissionedEmpty` only if no
//! reservation exists beside it.
//!
//! # Why a power cut never loses a durable reservation
//!
//! - A save writes a new slot and reads it back before returning `Ok`: the state it reports
//!   durable is on the medium.
//! - The old record is never touched by a save; a torn new slot fails its CRC, so after a cut
//!   during a write, [`load`](SequenceStore::load) returns the old state (the sender never
//!   used a number above the old mark, because the save that would allow it did not return).
//! - A page is erased only when the log moves into it, and never the page that holds the
//!   newest valid record: a cut during an erase leaves the newest record where it was. The one
//!   other erase, of the factory record's page, comes after the first reservation is written
//!   and verified on another page.
//! - A slot that is not blank (a torn write) is skipped, never programmed again.
//! - A cut while commissioning leaves a region that reads as `Lost(Blank)` or `Lost(Corrupt)`
//!   (or, cut after the last word, `CommissionedEmpty`); the factory commissions it again.
//!
//! Wear: one erase per `ERASE_SIZE / slot` saves, pages in ring order, so erase counts differ
//! by at most one between pages.
//!
//! Not covered: a completed write that later decays (data retention), which no single-copy
//! format can tell apart from a torn one: `load` falls back to the previous reservation (or,
//! for the first one, reports the store lost).

mod record;
pub mod sim;

use core::fmt;

use embedded_storage::nor_flash::{NorFlash, NorFlashError, NorFlashErrorKind};
use group_core::sequence::{SequenceStore, StoreError, StoredSequence};

use record::{Content, decode, encode};
pub use record::{FACTORY_MARK, MAGIC, MAX_SLOT, MIN_SLOT, RECORD_LEN, VERSION, crc32};

/// Why a store could not be set up or commissioned.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The region is not aligned to erase pages, has fewer than two pages, exceeds the flash,
    /// or the flash's write/read unit does not fit the slot layout.
    Geometry,
    /// [`FlashSequenceStore::commission_at_factory`] found a valid record (a factory record or
    /// a reservation): commissioning it again would let the sender reuse sequence numbers.
    AlreadyCommissioned,
    /// The flash refused an operation, or a write did not read back as written.
    Flash(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] NorFlashErrorKind),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Geometry => f.write_str("flash region geometry not supported"),
            SetupError::AlreadyCommissioned => f.write_str(
                "sequence store region holds a valid record; refusing to commission it again",
            ),
            SetupError::Flash(k) => write!(f, "flash error: {k}"),
        }
    }
}

impl core::error::Error for SetupError {}

/// How a store's state was lost (see [`StoreState::Lost`]).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Loss {
    /// Every byte of the region is erased: the store was wiped after commissioning (or the
    /// device never went through the factory step; the flash can't tell which).
    Blank,
    /// Bytes that are no valid record (zeroed, torn, overwritten, or a factory record next to
    /// reservations, which the store never writes).
    Corrupt,
    /// Two different valid records with the same generation: which one is newer is unknown.
    Ambiguous,
    /// The flash returned an error while the region was read.
    Flash(#[cfg_attr(feature = "defmt", defmt(Debug2Format))] NorFlashErrorKind),
}

impl Loss {
    /// The [`StoreError`] [`SequenceStore::load`] returns for this loss.
    pub const fn store_error(self) -> StoreError {
        match self {
            Loss::Blank => StoreError::Missing,
            Loss::Corrupt | Loss::Ambiguous => StoreError::Corrupt,
            Loss::Flash(_) => StoreError::Io,
        }
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Blank => f.write_str("region erased"),
            Loss::Corrupt => f.write_str("no valid record"),
            Loss::Ambiguous => f.write_str("two records claim to be the newest"),
            Loss::Flash(k) => write!(f, "flash error: {k}"),
        }
    }
}

/// What a store's region holds, as [`FlashSequenceStore::open`] found it.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StoreState {
    /// The factory record and no reservation: a device that never reserved a sequence number.
    /// [`SequenceStore::load`] returns `Ok(None)`; the sender starts at 0.
    CommissionedEmpty,
    /// The newest reservation; [`SequenceStore::load`] returns it. The normal boot.
    Reserved(StoredSequence),
    /// The state is gone. [`SequenceStore::load`] fails with [`Loss::store_error`], so the
    /// sender refuses to start and `Member::join` reports the loss to the key server. Never
    /// commission such a store: keep it, the first save after recovery writes to it.
    Lost(Loss),
}

impl StoreState {
    /// Whether the state was lost.
    pub const fn is_lost(&self) -> bool {
        matches!(self, StoreState::Lost(_))
    }

    /// What [`SequenceStore::load`] returns in this state.
    pub const fn load_result(&self) -> Result<Option<StoredSequence>, StoreError> {
        match self {
            StoreState::CommissionedEmpty => Ok(None),
            StoreState::Reserved(s) => Ok(Some(*s)),
            StoreState::Lost(l) => Err(l.store_error()),
        }
    }
}

/// Counts of what the store did, for diagnostics. All saturate.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
    /// It is the factory record (the next save moves to another page).
    factory: bool,
}

/// What a scan found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scan {
    /// Every slot is blank.
    Blank,
    /// No valid record, but non-blank slots.
    Garbage,
    /// The newest valid record.
    Found {
        head: Head,
        content: Content,
        /// Another valid record has the same generation and different content.
        ambiguous: bool,
        /// A reservation exists beside a factory record that claims to be newer.
        inconsistent: bool,
        /// The page of a factory record that is not the newest record (to be erased).
        stale_factory: Option<u32>,
    },
}

impl Scan {
    fn state(&self) -> StoreState {
        match *self {
            Scan::Blank => StoreState::Lost(Loss::Blank),
            Scan::Garbage => StoreState::Lost(Loss::Corrupt),
            Scan::Found {
                ambiguous: true, ..
            } => StoreState::Lost(Loss::Ambiguous),
            Scan::Found {
                inconsistent: true, ..
            } => StoreState::Lost(Loss::Corrupt),
            Scan::Found {
                content: Content::Factory,
                ..
            } => StoreState::CommissionedEmpty,
            Scan::Found {
                content: Content::Reservation(s),
                ..
            } => StoreState::Reserved(s),
        }
    }
}

/// A [`SequenceStore`] in a region of NOR flash. See the [module docs](self) for the boot path,
/// the format and its power-cut argument.
#[derive(Debug)]
pub struct FlashSequenceStore<F> {
    flash: F,
    start: u32,
    pages: u32,
    slot_len: u32,
    slots_per_page: u32,
    head: Option<Head>,
    /// A page still holding a factory record older than the head: erased after the next
    /// successful write.
    stale_factory: Option<u32>,
    stats: FlashStats,
}

fn bump(c: &mut u32) {
    *c = c.saturating_add(1);
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

    /// Checks the geometry; reads nothing.
    fn with_geometry(flash: F, start: u32, pages: u32) -> Result<Self, SetupError> {
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
            stale_factory: None,
            stats: FlashStats::default(),
        })
    }

    /// Opens the store in `pages` erase pages of `flash` starting at byte `start` (aligned to
    /// `ERASE_SIZE`), and says what the region holds. The boot path: it never writes, and
    /// there is nothing to do on [`StoreState::Lost`] but carry on (the member reports the
    /// loss when it joins). The only error is a geometry the store can't use.
    pub fn open(flash: F, start: u32, pages: u32) -> Result<(Self, StoreState), SetupError> {
        let mut store = Self::with_geometry(flash, start, pages)?;
        let state = store.state();
        Ok((store, state))
    }

    /// **Factory step**, once per device, in the factory image or station, never in the boot
    /// code of a device in the field: commissions the region of `flash` (as
    /// [`open`](Self::open) takes it) so that the next [`open`](Self::open) says
    /// [`StoreState::CommissionedEmpty`].
    ///
    /// Erases the region and writes the factory record, read back before returning. Refuses
    /// a region that holds any valid record ([`SetupError::AlreadyCommissioned`]). It can't
    /// refuse a region wiped in the field (that looks like factory-fresh flash): called on the
    /// [`StoreState::Lost`] path, it would turn a lost store into a new one and let the sender
    /// reuse the sequence numbers it used before. A power cut while commissioning leaves a
    /// region that opens as `Lost(Blank)` or `Lost(Corrupt)`: commission it again.
    pub fn commission_at_factory(flash: &mut F, start: u32, pages: u32) -> Result<(), SetupError> {
        let mut s = FlashSequenceStore::<&mut F>::with_geometry(flash, start, pages)?;
        match s.scan() {
            Ok(Scan::Blank | Scan::Garbage) => {}
            Ok(Scan::Found { .. }) => return Err(SetupError::AlreadyCommissioned),
            Err(k) => return Err(SetupError::Flash(k)),
        }
        for page in 0..s.pages {
            s.erase_page(page).map_err(SetupError::Flash)?;
        }
        let mut buf = [0xffu8; MAX_SLOT];
        let mut generation = 1u32;
        while encode(Content::Factory, generation, &mut buf).is_none() {
            generation = generation.checked_add(1).ok_or(SetupError::Geometry)?;
        }
        if !s.write_slot(0, &buf).map_err(SetupError::Flash)? {
            return Err(SetupError::Flash(NorFlashErrorKind::Other));
        }
        Ok(())
    }

    /// Reads the region again and says what it holds (what [`open`](Self::open) says).
    pub fn state(&mut self) -> StoreState {
        self.head = None;
        self.stale_factory = None;
        match self.scan() {
            Ok(scan) => {
                if let Scan::Found {
                    head,
                    stale_factory,
                    ..
                } = scan
                {
                    self.head = Some(head);
                    self.stale_factory = stale_factory;
                }
                scan.state()
            }
            Err(k) => StoreState::Lost(Loss::Flash(k)),
        }
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
                if self.stale_factory == Some(page) {
                    self.stale_factory = None;
                }
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
        let mut best: Option<(Head, Content)> = None;
        let mut ambiguous = false;
        let mut any_nonblank = false;
        let mut any_reservation = false;
        let mut factory_page: Option<u32> = None;
        let (mut buf, len) = self.slot_buf();
        for slot in 0..self.slots() {
            self.read_slot(slot, &mut buf)?;
            let bytes = buf.get(..len).unwrap_or(&[]);
            if bytes.iter().all(|b| *b == 0xff) {
                continue;
            }
            any_nonblank = true;
            let Ok((generation, content)) = decode(bytes) else {
                continue;
            };
            match content {
                Content::Factory => factory_page = Some(self.page_of(slot)),
                Content::Reservation(_) => any_reservation = true,
            }
            match best {
                Some((h, c)) if h.generation == generation => {
                    if c != content {
                        ambiguous = true;
                    }
                }
                Some((h, _)) if h.generation > generation => {}
                _ => {
                    ambiguous = false;
                    let factory = content == Content::Factory;
                    best = Some((
                        Head {
                            slot,
                            generation,
                            factory,
                        },
                        content,
                    ));
                }
            }
        }
        Ok(match best {
            Some((head, content)) => Scan::Found {
                head,
                content,
                ambiguous,
                inconsistent: head.factory && any_reservation,
                stale_factory: factory_page
                    .filter(|p| !head.factory || *p != self.page_of(head.slot)),
            },
            None if any_nonblank => Scan::Garbage,
            None => Scan::Blank,
        })
    }

    fn save_inner(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        let head = match self.head {
            Some(h) => Some(h),
            None => match self.scan().map_err(|_| StoreError::Io)? {
                // Lost as Ambiguous or Corrupt (a factory record beside reservations) too: this
                // save is the recovery (a counter never saves on a store whose load failed,
                // except through `start_recovered`), and its record gets a generation above
                // every record there, so it is the one state the store holds afterwards.
                Scan::Found {
                    head,
                    stale_factory,
                    ..
                } => {
                    self.stale_factory = stale_factory;
                    Some(head)
                }
                // Nothing valid to keep: start the log afresh (a recovery after lost state).
                Scan::Blank | Scan::Garbage => {
                    self.stale_factory = None;
                    None
                }
            },
        };
        let total = self.slots();
        let (mut candidate, mut generation, keep_page) = match head {
            // The first save after the factory moves to the next page; the factory record's
            // page is erased once this reservation is durable.
            Some(h) if h.factory => {
                let page = self.page_of(h.slot);
                self.stale_factory = Some(page);
                let next = page.checked_add(1).filter(|p| *p < self.pages).unwrap_or(0);
                (
                    next.saturating_mul(self.slots_per_page),
                    h.generation.checked_add(1).ok_or(StoreError::Io)?,
                    Some(page),
                )
            }
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
                while encode(Content::Reservation(*state), generation, &mut buf).is_none() {
                    generation = generation.checked_add(1).ok_or(StoreError::Io)?;
                }
                if self
                    .write_slot(candidate, &buf)
                    .map_err(|_| StoreError::Io)?
                {
                    // The reservation is durable: now the factory record may go. If that
                    // erase fails, the save still succeeded; the next one tries again.
                    if let Some(p) = self.stale_factory
                        && p != self.page_of(candidate)
                    {
                        let _ = self.erase_page(p);
                    }
                    self.head = Some(Head {
                        slot: candidate,
                        generation,
                        factory: false,
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
    /// Reads the region again: `Ok(None)` only for [`StoreState::CommissionedEmpty`], the
    /// newest reservation for [`StoreState::Reserved`], and an error for every
    /// [`StoreState::Lost`] ([`Loss::store_error`]).
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        self.state().load_result()
    }

    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        let r = self.save_inner(state);
        if r.is_err() {
            self.head = None;
            self.stale_factory = None;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use group_core::wire::{Epoch, SenderId};

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
        encode(Content::Reservation(s), 9, &mut buf).unwrap();
        assert_eq!(decode(&buf[..32]), Ok((9, Content::Reservation(s))));
        for bit in 0..RECORD_LEN * 8 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&b[..32]), Err(()), "bit {bit}");
        }
        let mut e = [0xffu8; MAX_SLOT];
        encode(Content::Factory, 1, &mut e).unwrap();
        assert_eq!(decode(&e[..32]), Ok((1, Content::Factory)));
        for bit in 0..RECORD_LEN * 8 {
            let mut b = e;
            b[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode(&b[..32]), Err(()), "factory record, bit {bit}");
        }
        // Every prefix of the factory record's words (a torn write), the rest blank.
        for words in 0..RECORD_LEN / 4 {
            let mut b = [0xffu8; 32];
            b[..words * 4].copy_from_slice(&e[..words * 4]);
            assert_eq!(decode(&b), Err(()), "{words} words written");
        }
        // Erased and zeroed flash.
        assert_eq!(decode(&[0; 32]), Err(()));
        assert_eq!(decode(&[0xff; 32]), Err(()));
        assert_eq!(decode(&[0; 8]), Err(()));
    }
}
