//! The sequence store as a pair of C callbacks with a user pointer.

use core::ffi::c_void;

use group_core::sequence::{SequenceStore, StoreError, StoredSequence};
use group_core::wire::{Epoch, SenderId};

/// A callback returned the stored state (`load`) or made it durable (`save`).
pub const DG_STORE_OK: i32 = 0;
/// `load`: the store was commissioned empty and never written.
pub const DG_STORE_EMPTY: i32 = 1;
/// `load`: the state that should be there is gone (erased flash, deleted file).
pub const DG_STORE_MISSING: i32 = 2;
/// `load`: the state is there but fails its integrity check.
pub const DG_STORE_CORRUPT: i32 = 3;
/// The medium refused the read or write. Any value not listed here counts as this.
pub const DG_STORE_IO: i32 = 4;

/// What the sequence store holds: every sequence number below `reserved_until` in
/// (`epoch`, `sender_id`) may have been used; none at or above it has.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dg_sequence_state {
    /// Epoch of the reservation.
    pub epoch: u16,
    /// Sender ID of the reservation.
    pub sender_id: u8,
    /// First sequence number not yet reserved.
    pub reserved_until: u64,
}

/// Reads the stored state into `*state`; returns `DG_STORE_OK`, or `DG_STORE_EMPTY` for a
/// commissioned store never written, or `DG_STORE_MISSING` / `DG_STORE_CORRUPT` /
/// `DG_STORE_IO`.
pub type dg_sequence_load_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, state: *mut dg_sequence_state) -> i32>;

/// Durably replaces the stored state with `*state` (returns only once it is durable: fsync, a
/// completed flash write; a crash at any point leaves the old or the new state readable);
/// returns `DG_STORE_OK` or `DG_STORE_IO`.
pub type dg_sequence_save_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, state: *const dg_sequence_state) -> i32>;

/// What this context last read from or wrote to its store.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing yet (a store set, not read): the first save is not checked.
    Unknown,
    /// `load` said `DG_STORE_EMPTY`.
    Empty,
    /// `load` returned, or `save` wrote, this state.
    State(dg_sequence_state),
}

/// The callbacks of one context (none: a listener's store, which refuses with `Io`), and what
/// the context last saw in the store.
#[derive(Clone, Copy)]
pub(crate) struct CallbackStore {
    pub(crate) load: dg_sequence_load_fn,
    pub(crate) save: dg_sequence_save_fn,
    pub(crate) user: *mut c_void,
    pub(crate) seen: Seen,
}

impl CallbackStore {
    /// A store of the two callbacks and their user pointer, not read yet.
    pub(crate) fn new(
        load: dg_sequence_load_fn,
        save: dg_sequence_save_fn,
        user: *mut c_void,
    ) -> Self {
        Self {
            load,
            save,
            user,
            seen: Seen::Unknown,
        }
    }

    /// Calls `load`: what the store holds now.
    fn read(&self) -> Result<Seen, StoreError> {
        let Some(load) = self.load else {
            return Err(StoreError::Io);
        };
        let mut state = dg_sequence_state::default();
        // SAFETY: `load` is a function pointer the caller registered for this context
        // (`dg_group_set_sequence_store` or the member's configuration), documented to take the user pointer
        // given with it and a pointer to one writable `dg_sequence_state`; `state` is a live,
        // initialised local that outlives the call. The result is read as a plain integer.
        let rc = unsafe { load(self.user, &mut state) };
        match rc {
            DG_STORE_OK => Ok(Seen::State(state)),
            DG_STORE_EMPTY => Ok(Seen::Empty),
            other => Err(status(other)),
        }
    }
}

fn status(code: i32) -> StoreError {
    match code {
        DG_STORE_MISSING => StoreError::Missing,
        DG_STORE_CORRUPT => StoreError::Corrupt,
        _ => StoreError::Io,
    }
}

impl SequenceStore for CallbackStore {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        let seen = self.read()?;
        self.seen = seen;
        Ok(match seen {
            Seen::State(state) => Some(StoredSequence {
                epoch: Epoch(state.epoch),
                sender_id: SenderId(state.sender_id),
                reserved_until: state.reserved_until,
            }),
            Seen::Empty | Seen::Unknown => None,
        })
    }

    /// Before writing a new reservation, checks that the store still holds what this context
    /// last read or wrote: if another writer moved it (a second context with the same sender
    /// ID and store, another process), writing would extend this context's reservation over
    /// numbers the other one uses. Refused as `Io` (`DG_ERR_SEQUENCE_STORE`): nothing is
    /// sealed until the context is initialised again and reads the store afresh.
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        let Some(save) = self.save else {
            return Err(StoreError::Io);
        };
        if self.seen != Seen::Unknown && self.read()? != self.seen {
            return Err(StoreError::Io);
        }
        let c = dg_sequence_state {
            epoch: state.epoch.0,
            sender_id: state.sender_id.0,
            reserved_until: state.reserved_until,
        };
        // SAFETY: as in `read`: a registered callback, given its user pointer and a pointer to
        // a live local it may only read.
        let rc = unsafe { save(self.user, &c) };
        if rc == DG_STORE_OK {
            self.seen = Seen::State(c);
            Ok(())
        } else {
            Err(StoreError::Io)
        }
    }
}
