//! # dtls_group: the C API of group-core
//!
//! A C ABI over [`group_core`]'s record layer for firmware and gateways written in C. The
//! header is `include/dtls_group.h` in the repository, generated from this crate by `cbindgen`
//! (a test fails when the checked-in header differs from a fresh one); `docs/c-api.md` shows
//! how to build, link and use it.
//!
//! ## Rules of the boundary
//! - **Caller memory, no allocation.** A context ([`dg_group`]) lives where the caller puts it
//!   (static, stack, its own allocator). Its size and alignment are [`DG_GROUP_SIZE`] and
//!   [`DG_GROUP_ALIGN`] (upper bounds for every configuration of this crate, checked at compile
//!   time) or, exactly for this build, [`dg_group_size`] and [`dg_group_align`]. No function
//!   allocates.
//! - **Checked contexts.** [`dg_group_init`] checks the pointer, the size the caller passes and
//!   the alignment; every other function checks the pointer, the alignment and an
//!   initialisation marker that binds the context to its address. A null, short, unaligned or
//!   never-initialised context, and a byte copy of a context (which would repeat its sequence
//!   numbers, so nonces), give an error ([`dg_error`]), never undefined behaviour. (A context
//!   whose memory happens to hold exactly the 64-bit marker of its own address is the one case
//!   the check can't tell apart; uninitialised memory is read as bytes, never as Rust values.)
//! - **Checked input.** Null pointers with a non-zero length, short output buffers and
//!   out-of-range values give an error. Values that come from C are read as integers (never as
//!   Rust enums or `bool`s), so no C value is an invalid Rust value.
//! - **No unwinding into C.** Nothing in this crate or in `group-core` panics on any input
//!   (group-core denies `unwrap`, `expect`, `panic`, unchecked indexing and arithmetic overflow
//!   on network data). Should a panic happen anyway, an `extern "C"` function aborts the process
//!   instead of unwinding (Rust ≥ 1.81); on bare metal the panic handler parks the core.
//! - **One context, one thread.** A context is not synchronised: use it from one thread (or
//!   task) at a time. Distinct contexts are independent. Callbacks (sequence store, RNG) run on
//!   the calling thread, inside the call; the context is marked busy for the length of every
//!   call, so a callback that calls the API on the same context (even `init` or `deinit`) is
//!   refused with `DG_ERR_CONTEXT_BUSY` instead of aliasing the state in use.
//! - **No aliasing.** The buffers and output pointers of one call must not overlap each other
//!   or the context (`DG_ERR_BUFFERS_OVERLAP`), and output pointers must be aligned
//!   (`DG_ERR_POINTER_UNALIGNED`): the slices and references made from them never alias.
//! - **Secrets.** Deinit and re-init zero the context's whole memory, reaching the copies a
//!   key leaves behind when it moves inside the state.
//!
//! This is the only crate of the workspace that uses `unsafe`: every block says why it is
//! sound (`// SAFETY:`, enforced by `clippy::undocumented_unsafe_blocks`).
#![cfg_attr(not(test), no_std)]
#![allow(non_camel_case_types)]

// On a host the staticlib and cdylib link std for its panic handler (which aborts: see
// above) and unwinding runtime; nothing here allocates. On bare metal there is no std.
#[cfg(all(not(test), not(target_os = "none")))]
extern crate std;

mod context;
mod error;
mod group;
mod member;
mod store;
mod types;

pub use error::{dg_error, dg_error_name};
pub use group::*;
pub use member::*;
pub use store::{
    DG_STORE_CORRUPT, DG_STORE_EMPTY, DG_STORE_IO, DG_STORE_MISSING, DG_STORE_OK,
    dg_sequence_load_fn, dg_sequence_save_fn, dg_sequence_state,
};
pub use types::*;

/// Bare metal: a panic (there is none on any input) parks the core instead of returning.
#[cfg(all(not(test), target_os = "none"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
