//! A simulated NOR flash in RAM that enforces the rules of real NOR flash and can lose power at
//! any step, for tests, simulations and firmware self-tests.
//!
//! Rules enforced:
//! - reads, writes and erases must be aligned and in bounds (`WORD`-byte write unit, `PAGE`-byte
//!   erase unit);
//! - programming only clears bits (1 → 0); only an erase sets them back to 1;
//! - a word is programmed at most once between erases (as on flash with ECC): a second program
//!   of the same word is an error ([`SimError::Reprogram`]), so a store that passes on this
//!   flash also runs on the strictest parts.
//!
//! Power cuts: every word programmed and every page erased is one *step*. [`SimNorFlash::cut_at`]
//! arms a cut at a given step; the operation in progress is torn as the [`Tear`] says, and
//! every operation after it fails with [`SimError::PowerOff`] until [`SimNorFlash::power_on`]
//! (the reboot). A write is programmed word by word in address order, so a torn write leaves a
//! prefix of its words programmed.

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// Errors of the simulated flash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SimError {
    /// Offset or length not aligned to the read, write or erase unit.
    NotAligned,
    /// Outside the flash.
    OutOfBounds,
    /// Power is off (after a cut, until [`SimNorFlash::power_on`]).
    PowerOff,
    /// A word was programmed twice without an erase in between.
    Reprogram,
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SimError::NotAligned => "not aligned to the flash's units",
            SimError::OutOfBounds => "outside the flash",
            SimError::PowerOff => "power is off",
            SimError::Reprogram => "word programmed twice without an erase",
        })
    }
}

impl core::error::Error for SimError {}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            SimError::PowerOff | SimError::Reprogram => NorFlashErrorKind::Other,
        }
    }
}

/// What happens to the operation a power cut interrupts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tear {
    /// Nothing of it happens.
    Untouched,
    /// Half of it: for a word, the bits of a fixed pattern (every other bit) are programmed;
    /// for a page, its first half is erased.
    Partial,
    /// It completes, and power fails right after.
    Complete,
    /// For a word, a pseudo-random subset of its 1 → 0 transitions; for a page, pseudo-random
    /// bytes (a weak erase).
    Garbage(u32),
}

/// A NOR flash of `PAGES` erase pages of `PAGE` bytes, with a `WORD`-byte write unit.
#[derive(Clone, Debug)]
pub struct SimNorFlash<const PAGES: usize, const PAGE: usize, const WORD: usize> {
    data: [[u8; PAGE]; PAGES],
    programmed: [[bool; PAGE]; PAGES],
    erases: [u32; PAGES],
    steps: u64,
    cut: Option<(u64, Tear)>,
    powered: bool,
}

impl<const PAGES: usize, const PAGE: usize, const WORD: usize> Default
    for SimNorFlash<PAGES, PAGE, WORD>
{
    fn default() -> Self {
        Self::new()
    }
}

fn xorshift(state: &mut u32) -> u32 {
    let mut x = *state | 1;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}

impl<const PAGES: usize, const PAGE: usize, const WORD: usize> SimNorFlash<PAGES, PAGE, WORD> {
    /// A factory-fresh (erased) flash, powered on.
    pub const fn new() -> Self {
        Self {
            data: [[0xff; PAGE]; PAGES],
            programmed: [[false; PAGE]; PAGES],
            erases: [0; PAGES],
            steps: 0,
            cut: None,
            powered: true,
        }
    }

    /// Steps (words programmed, pages erased) executed since creation.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Cuts power at step `step` (counted as [`steps`](Self::steps) counts), tearing that
    /// operation as `tear` says.
    pub fn cut_at(&mut self, step: u64, tear: Tear) {
        self.cut = Some((step, tear));
    }

    /// Whether power is on.
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Turns power back on (a reboot) and disarms any pending cut.
    pub fn power_on(&mut self) {
        self.powered = true;
        self.cut = None;
    }

    /// Erase count of every page.
    pub fn erase_counts(&self) -> &[u32; PAGES] {
        &self.erases
    }

    /// The raw bytes of page `page`.
    pub fn page(&self, page: usize) -> Option<&[u8; PAGE]> {
        self.data.get(page)
    }

    /// Flips bits of the stored data directly (a fault outside the power-cut model).
    pub fn corrupt(&mut self, offset: usize, xor: u8) {
        let (p, o) = (offset.checked_div(PAGE), offset.checked_rem(PAGE));
        if let (Some(p), Some(o)) = (p, o)
            && let Some(b) = self.data.get_mut(p).and_then(|pg| pg.get_mut(o))
        {
            *b ^= xor;
        }
    }

    /// Whether the next step is the one to cut; if so, turns power off.
    fn cutting(&mut self) -> Option<Tear> {
        let now = self.steps;
        self.steps = self.steps.saturating_add(1);
        match self.cut {
            Some((at, tear)) if at == now => {
                self.cut = None;
                self.powered = false;
                Some(tear)
            }
            _ => None,
        }
    }

    fn locate(offset: u32, len: usize) -> Result<(usize, usize), SimError> {
        let offset = usize::try_from(offset).map_err(|_| SimError::OutOfBounds)?;
        let end = offset.checked_add(len).ok_or(SimError::OutOfBounds)?;
        if end > PAGES.saturating_mul(PAGE) {
            return Err(SimError::OutOfBounds);
        }
        let page = offset.checked_div(PAGE).ok_or(SimError::OutOfBounds)?;
        let at = offset.checked_rem(PAGE).ok_or(SimError::OutOfBounds)?;
        Ok((page, at))
    }

    fn program_word(&mut self, offset: usize, word: &[u8]) -> Result<(), SimError> {
        let (page, at) = Self::locate(
            u32::try_from(offset).map_err(|_| SimError::OutOfBounds)?,
            word.len(),
        )?;
        let end = at.checked_add(word.len()).ok_or(SimError::OutOfBounds)?;
        let flags = self
            .programmed
            .get_mut(page)
            .and_then(|p| p.get_mut(at..end))
            .ok_or(SimError::OutOfBounds)?;
        if flags.iter().any(|f| *f) {
            return Err(SimError::Reprogram);
        }
        let tear = self.cutting();
        let cells = self
            .data
            .get_mut(page)
            .and_then(|p| p.get_mut(at..end))
            .ok_or(SimError::OutOfBounds)?;
        let mut seed = match tear {
            Some(Tear::Garbage(s)) => s,
            _ => 0,
        };
        for (cell, new) in cells.iter_mut().zip(word) {
            let target = *cell & *new;
            *cell = match tear {
                None | Some(Tear::Complete) => target,
                Some(Tear::Untouched) => *cell,
                // Clear only the pattern's share of the bits that should go to 0.
                Some(Tear::Partial) => *cell & (target | 0x55),
                Some(Tear::Garbage(_)) => *cell & (target | xorshift(&mut seed).to_le_bytes()[0]),
            };
        }
        let flags = self
            .programmed
            .get_mut(page)
            .and_then(|p| p.get_mut(at..end))
            .ok_or(SimError::OutOfBounds)?;
        if tear != Some(Tear::Untouched) {
            flags.fill(true);
        }
        if tear.is_some() {
            return Err(SimError::PowerOff);
        }
        Ok(())
    }

    fn erase_one(&mut self, page: usize) -> Result<(), SimError> {
        let tear = self.cutting();
        let data = self.data.get_mut(page).ok_or(SimError::OutOfBounds)?;
        let flags = self.programmed.get_mut(page).ok_or(SimError::OutOfBounds)?;
        match tear {
            None | Some(Tear::Complete) => {
                data.fill(0xff);
                flags.fill(false);
            }
            Some(Tear::Untouched) => {}
            Some(Tear::Partial) => {
                let half = PAGE / 2;
                if let Some(d) = data.get_mut(..half) {
                    d.fill(0xff);
                }
                if let Some(f) = flags.get_mut(..half) {
                    f.fill(false);
                }
            }
            Some(Tear::Garbage(mut seed)) => {
                for b in data.iter_mut() {
                    *b = xorshift(&mut seed).to_le_bytes()[0];
                }
                // Unknown cell state: a store must not program it before erasing again.
                flags.fill(true);
            }
        }
        if tear != Some(Tear::Untouched)
            && let Some(c) = self.erases.get_mut(page)
        {
            *c = c.saturating_add(1);
        }
        if tear.is_some() {
            return Err(SimError::PowerOff);
        }
        Ok(())
    }
}

impl<const PAGES: usize, const PAGE: usize, const WORD: usize> ErrorType
    for SimNorFlash<PAGES, PAGE, WORD>
{
    type Error = SimError;
}

impl<const PAGES: usize, const PAGE: usize, const WORD: usize> ReadNorFlash
    for SimNorFlash<PAGES, PAGE, WORD>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerOff);
        }
        let (mut page, mut at) = Self::locate(offset, bytes.len())?;
        for b in bytes.iter_mut() {
            *b = *self
                .data
                .get(page)
                .and_then(|p| p.get(at))
                .ok_or(SimError::OutOfBounds)?;
            at = at.saturating_add(1);
            if at == PAGE {
                at = 0;
                page = page.saturating_add(1);
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        PAGES.saturating_mul(PAGE)
    }
}

impl<const PAGES: usize, const PAGE: usize, const WORD: usize> NorFlash
    for SimNorFlash<PAGES, PAGE, WORD>
{
    const WRITE_SIZE: usize = WORD;
    const ERASE_SIZE: usize = PAGE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerOff);
        }
        let len = to.checked_sub(from).ok_or(SimError::OutOfBounds)?;
        let len = usize::try_from(len).map_err(|_| SimError::OutOfBounds)?;
        let (first, at) = Self::locate(from, len)?;
        if at != 0 || !len.is_multiple_of(PAGE) {
            return Err(SimError::NotAligned);
        }
        let count = len.checked_div(PAGE).ok_or(SimError::NotAligned)?;
        for page in first..first.saturating_add(count) {
            self.erase_one(page)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerOff);
        }
        Self::locate(offset, bytes.len())?;
        let start = usize::try_from(offset).map_err(|_| SimError::OutOfBounds)?;
        if WORD == 0 || !start.is_multiple_of(WORD) || !bytes.len().is_multiple_of(WORD) {
            return Err(SimError::NotAligned);
        }
        for (i, word) in bytes.chunks(WORD).enumerate() {
            let at = i
                .checked_mul(WORD)
                .and_then(|o| o.checked_add(start))
                .ok_or(SimError::OutOfBounds)?;
            self.program_word(at, word)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type F = SimNorFlash<2, 64, 4>;

    #[test]
    fn enforces_nor_rules() {
        let mut f = F::new();
        assert_eq!(f.write(1, &[0; 4]), Err(SimError::NotAligned));
        assert_eq!(f.write(0, &[0; 3]), Err(SimError::NotAligned));
        assert_eq!(f.write(128, &[0; 4]), Err(SimError::OutOfBounds));
        assert_eq!(f.erase(0, 32), Err(SimError::NotAligned));
        f.write(0, &[0x0f, 0xf0, 0xaa, 0x55]).unwrap();
        // Second program of the same word: refused, whatever the data.
        assert_eq!(f.write(0, &[0; 4]), Err(SimError::Reprogram));
        let mut b = [0u8; 4];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0x0f, 0xf0, 0xaa, 0x55]);
        f.erase(0, 64).unwrap();
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0xff; 4]);
        assert_eq!(f.erase_counts(), &[1, 0]);
        // Bits only go 1 -> 0 when programming.
        f.corrupt(4, 0xff); // word 1 reads 0x00 in its first byte now
        f.write(4, &[0xff, 0, 0, 0]).unwrap();
        f.read(4, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 0]);
    }

    #[test]
    fn power_cut_tears_a_write_to_a_prefix() {
        for (tear, expect) in [
            (Tear::Untouched, [0u8, 0, 0xff, 0xff]),
            (Tear::Partial, [0, 0, 0x55, 0xff]),
            (Tear::Complete, [0, 0, 0, 0xff]),
        ] {
            let mut f = SimNorFlash::<1, 8, 1>::new();
            f.cut_at(2, tear);
            assert_eq!(f.write(0, &[0; 4]), Err(SimError::PowerOff));
            let mut b = [0u8; 4];
            assert_eq!(f.read(0, &mut b), Err(SimError::PowerOff));
            f.power_on();
            f.read(0, &mut b).unwrap();
            assert_eq!(b, expect, "{tear:?}");
            assert_eq!(f.steps(), 3);
        }
    }

    #[test]
    fn power_cut_tears_an_erase() {
        let mut f = SimNorFlash::<1, 8, 1>::new();
        f.write(0, &[0; 8]).unwrap();
        f.cut_at(8, Tear::Partial);
        assert_eq!(f.erase(0, 8), Err(SimError::PowerOff));
        f.power_on();
        assert_eq!(f.page(0).unwrap(), &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(f.write(4, &[0]), Err(SimError::Reprogram));
        f.write(0, &[1]).unwrap();
    }
}
