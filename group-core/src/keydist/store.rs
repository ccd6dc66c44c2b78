//! Durable storage of the key server's state.

use heapless::Vec;

use crate::sequence::StoreError;

/// Durable storage for the key server's whole state (one postcard blob).
///
/// Contract (as [`SequenceStore`](crate::sequence::SequenceStore)'s):
/// - `load` returns `Ok(None)` only for a store commissioned empty and never written; a store
///   that lost its state returns `Err(Missing)` or `Err(Corrupt)`, and the key server then
///   refuses to start (starting empty would reuse epochs and sender IDs).
/// - `save` returns only once the state is durable; a crash at any point leaves either the old
///   or the new state readable (write a new file and rename it, or use two flash slots).
///
/// The state holds epoch secrets and PSKs: keep it where only the key server can read it.
pub trait ServerStore {
    /// Copies the stored state into `buf` and returns its length.
    fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError>;
    /// Durably replaces the stored state.
    fn save(&mut self, state: &[u8]) -> Result<(), StoreError>;
}

impl<S: ServerStore + ?Sized> ServerStore for &mut S {
    fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
        (**self).load(buf)
    }
    fn save(&mut self, state: &[u8]) -> Result<(), StoreError> {
        (**self).save(state)
    }
}

/// Capacity of a [`MemoryServerStore`].
pub const MEMORY_STORE_CAPACITY: usize = 16384;

/// In-memory store for tests and simulations. It can simulate a power loss: after
/// [`crash_after`](Self::crash_after)`(n)`, `n` more saves succeed and every later one fails,
/// leaving the last durable state in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryServerStore {
    data: Option<Vec<u8, MEMORY_STORE_CAPACITY>>,
    saves: u64,
    saves_left: Option<u64>,
}

impl Default for MemoryServerStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryServerStore {
    /// A commissioned, empty store.
    pub const fn new() -> Self {
        Self {
            data: None,
            saves: 0,
            saves_left: None,
        }
    }

    /// Lets `n` more saves succeed, then fails every later one (power loss).
    pub fn crash_after(&mut self, n: u64) {
        self.saves_left = Some(n);
    }

    /// Whether the simulated power loss happened.
    pub fn crashed(&self) -> bool {
        self.saves_left == Some(0)
    }

    /// Power is back: saves work again.
    pub fn restore_power(&mut self) {
        self.saves_left = None;
    }

    /// How many saves succeeded.
    pub fn saves(&self) -> u64 {
        self.saves
    }

    /// The stored bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
}

impl ServerStore for MemoryServerStore {
    fn load(&mut self, buf: &mut [u8]) -> Result<Option<usize>, StoreError> {
        match &self.data {
            None => Ok(None),
            Some(d) => {
                let dst = buf.get_mut(..d.len()).ok_or(StoreError::Io)?;
                dst.copy_from_slice(d);
                Ok(Some(d.len()))
            }
        }
    }

    fn save(&mut self, state: &[u8]) -> Result<(), StoreError> {
        match self.saves_left {
            Some(0) => return Err(StoreError::Io),
            Some(n) => self.saves_left = Some(n.saturating_sub(1)),
            None => {}
        }
        self.data = Some(Vec::from_slice(state).map_err(|_| StoreError::Io)?);
        self.saves = self.saves.saturating_add(1);
        Ok(())
    }
}
