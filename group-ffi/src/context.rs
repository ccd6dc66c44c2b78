//! Contexts in caller memory: size, alignment and an initialisation marker bound to the
//! context's address, checked on every call.

use core::mem::{align_of, size_of};
use core::ptr;

use crate::dg_error::{self, *};

/// A context's state behind its marker (the marker is the first field).
#[repr(C)]
pub(crate) struct Checked<T> {
    marker: u64,
    pub(crate) inner: T,
}

/// One magic number per context type.
pub(crate) trait Magic {
    const MAGIC: u64;
}

fn marker<T: Magic>(at: *const Checked<T>) -> u64 {
    T::MAGIC ^ (at as usize as u64)
}

/// The context pointer, checked for null and alignment.
fn locate<T>(ctx: *mut u8) -> Result<*mut Checked<T>, dg_error> {
    if ctx.is_null() {
        return Err(DG_ERR_NULL_POINTER);
    }
    if !(ctx as usize).is_multiple_of(align_of::<Checked<T>>()) {
        return Err(DG_ERR_CONTEXT_UNALIGNED);
    }
    Ok(ctx.cast())
}

/// Writes `value` as the context at `ctx` (`size` bytes of caller memory), dropping (and so
/// zeroizing) a context that was initialised there before.
///
/// # Safety
/// `ctx` is null or points to `size` bytes the caller owns and does not use otherwise while
/// the context lives.
pub(crate) unsafe fn init<T: Magic>(ctx: *mut u8, size: usize, value: T) -> dg_error {
    let fill = |slot: *mut T| {
        // SAFETY: `init_in_place` hands a slot valid for writes of a `T`.
        unsafe { slot.write(value) }
    };
    // SAFETY: forwarded contract; `fill` writes a whole `T`.
    unsafe { init_in_place(ctx, size, fill) }
}

/// As [`init`], but `fill` writes the context's state directly into the caller's memory, so
/// that a large state is not built on the stack and then moved (the C firmware's deepest
/// stack use was `dg_group_init` building its group by value).
///
/// # Safety
/// As [`init`]; `fill` must initialise every field of the `T` it is given.
pub(crate) unsafe fn init_in_place<T: Magic>(
    ctx: *mut u8,
    size: usize,
    fill: impl FnOnce(*mut T),
) -> dg_error {
    let at = match locate::<T>(ctx) {
        Ok(at) => at,
        Err(e) => return e,
    };
    if size < size_of::<Checked<T>>() {
        return DG_ERR_CONTEXT_TOO_SMALL;
    }
    // SAFETY: `ctx` is non-null, aligned for `Checked<T>` and, by the caller's contract, points
    // to at least `size >= size_of::<Checked<T>>()` bytes it owns. A context initialised here
    // before (its marker matches) is dropped in place so that its keys are zeroized, and marked
    // dead before the new state is written; the marker is set only once `fill` has written a
    // whole `T` (its contract), so the context is never live while partly written.
    unsafe {
        if word(at) == busy(at) {
            return DG_ERR_CONTEXT_BUSY;
        }
        if is_live(at) {
            ptr::drop_in_place(at);
        }
        wipe(at);
        fill(&raw mut (*at).inner);
        ptr::write_volatile(at.cast::<u64>(), marker(at));
    }
    DG_OK
}

/// Reads the marker word as plain bytes (memory the C caller never wrote holds whatever it
/// held; it is never interpreted as a Rust value other than an integer).
///
/// # Safety
/// `at` is non-null, aligned, and points to at least 8 readable bytes.
unsafe fn is_live<T: Magic>(at: *const Checked<T>) -> bool {
    // SAFETY: forwarded contract.
    unsafe { word(at) == marker(at) }
}

/// The marker word of a context while a call runs on it: a callback that re-enters the API
/// with the same context (or `init` / `deinit` over it) sees this and is refused with
/// `DG_ERR_CONTEXT_BUSY` instead of making a second `&mut` to state that is in use.
fn busy<T: Magic>(at: *const Checked<T>) -> u64 {
    !marker(at)
}

/// The marker word, read as plain bytes (see [`is_live`]).
///
/// # Safety
/// `at` is non-null, aligned, and points to at least 8 readable bytes.
unsafe fn word<T>(at: *const Checked<T>) -> u64 {
    // SAFETY: per the contract, 8 readable, aligned bytes; volatile so that the check is not
    // reasoned away.
    unsafe { ptr::read_volatile(at.cast::<u64>()) }
}

/// Exclusive access to a live context for the length of one call: the marker says "busy"
/// until the guard is dropped, so that a re-entrant call on the same context is refused.
pub(crate) struct Guard<'a, T: Magic> {
    at: *mut Checked<T>,
    inner: &'a mut T,
}

impl<T: Magic> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner
    }
}

impl<T: Magic> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner
    }
}

impl<T: Magic> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `at` is the non-null, aligned context `get` checked; the marker word is its
        // own field, disjoint from `inner`, so writing it does not touch the borrowed state.
        unsafe { ptr::write_volatile(self.at.cast::<u64>(), marker(self.at)) }
    }
}

/// The live context at `ctx`, marked busy until the returned guard is dropped.
///
/// # Safety
/// `ctx` is null or points to memory the caller gave to `init` (or at least
/// `size_of::<Checked<T>>()` readable bytes of its own), and no other thread uses that
/// context (one context, one thread). Re-entry from a callback on this thread is refused.
pub(crate) unsafe fn get<'a, T: Magic>(ctx: *mut u8) -> Result<Guard<'a, T>, dg_error> {
    let at = locate::<T>(ctx)?;
    // SAFETY: `at` is non-null and aligned; the caller's memory holds at least a marker word.
    let w = unsafe { word(at) };
    if w == busy(at) {
        return Err(DG_ERR_CONTEXT_BUSY);
    }
    if w != marker(at) {
        return Err(DG_ERR_NOT_INITIALISED);
    }
    // SAFETY: the marker matches this address, so `init` wrote a `Checked<T>` here and no
    // `deinit` followed; it was not busy, so no other call on this thread holds a reference
    // to it, and from now until the guard drops it is busy, so none will be made (re-entry
    // sees the busy word). The marker is a separate field from `inner`.
    unsafe {
        ptr::write_volatile(at.cast::<u64>(), busy(at));
        Ok(Guard {
            at,
            inner: &mut (*at).inner,
        })
    }
}

/// Drops the context at `ctx` (zeroizing its keys) and clears its marker.
///
/// # Safety
/// As [`get`].
pub(crate) unsafe fn deinit<T: Magic>(ctx: *mut u8) -> dg_error {
    let at = match locate::<T>(ctx) {
        Ok(at) => at,
        Err(e) => return e,
    };
    // SAFETY: as in `get`: non-null, aligned, at least a marker word; a matching marker means a
    // live `Checked<T>` written by `init` that no call is using (a busy one is refused), which
    // is dropped once and then marked dead.
    unsafe {
        let w = word(at);
        if w == busy(at) {
            return DG_ERR_CONTEXT_BUSY;
        }
        if w != marker(at) {
            return DG_ERR_NOT_INITIALISED;
        }
        ptr::drop_in_place(&mut (*at).inner);
        wipe(at);
    }
    DG_OK
}

/// Zeroes every byte of the context (marker included, so it is dead). Dropping the state
/// zeroizes the keys it owns at the end, but a key moved inside the state during its life (an
/// epoch staged, activated, retired: `Option::take`, swaps) leaves its old bytes behind where
/// no owner's drop reaches them; wiping the whole context's memory reaches them.
///
/// # Safety
/// `at` is non-null, aligned, and points to `size_of::<Checked<T>>()` writable bytes that
/// hold no live value (dropped, or never initialised).
unsafe fn wipe<T>(at: *mut Checked<T>) {
    let bytes = at.cast::<u8>();
    for i in 0..size_of::<Checked<T>>() {
        // SAFETY: `i` is within the context's bytes per the contract; volatile so that the
        // stores to memory about to be released or overwritten are not optimised away.
        unsafe { ptr::write_volatile(bytes.add(i), 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
