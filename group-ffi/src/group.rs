//! The group context's functions: configure, install and activate keys, seal, open, counters,
//! events and timers.

use core::ffi::c_void;
use core::mem::{align_of, size_of};
use core::slice;

use group_core::group::{Admission, Group, GroupConfig};
use group_core::record::NonceProfile;
use group_core::schedule::{EpochSecret, native_keys, wolfssl_keys};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

use crate::context::{self, Magic};
use crate::dg_error::{self, *};
use crate::store::{CallbackStore, dg_sequence_load_fn, dg_sequence_save_fn};
use crate::types::*;

/// The replay windows a context supports (records per sender): one group type each. The
/// context has the size of the largest anyway (caller memory of `DG_GROUP_SIZE`), so boxing
/// the large variants would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Windows {
    W64(Group<32, 2>),
    W128(Group<32, 4>),
    W256(Group<32, 8>),
}

macro_rules! with_group {
    ($windows:expr, $g:ident => $body:expr) => {
        match $windows {
            Windows::W64($g) => $body,
            Windows::W128($g) => $body,
            Windows::W256($g) => $body,
        }
    };
}

/// Bytes of a `dg_group` in every configuration of this library's features (an upper bound,
/// checked by the C tests; `dg_group_size()` gives this build's exact figure, and
/// `dg_group_init` refuses memory smaller than that with `DG_ERR_CONTEXT_TOO_SMALL`).
pub const DG_GROUP_SIZE: usize = 6144;
/// Alignment of a `dg_group` in every configuration of this library (`dg_group_align()` gives
/// this build's figure).
pub const DG_GROUP_ALIGN: usize = 16;

/// Memory for one group context. Declare one (static, on the stack, or allocate
/// `dg_group_size()` bytes aligned to `dg_group_align()`), then `dg_group_init` it. Its
/// content is private; never copy it (a copy is refused: it would repeat sequence numbers).
#[repr(C, align(16))]
pub struct dg_group {
    _opaque: [u8; DG_GROUP_SIZE],
}

// The size bound is checked by the C tests (group-ffi/c/tests/test_group.c, built against
// `cargo build -p group-ffi`, the feature set C programs link), not at compile time: in a build of the
// whole workspace, cargo unifies group-core's features with other crates' (record signatures
// add a signing key and a key per sender), and such a build of this crate, which no C program
// links, may exceed the bound; `dg_group_init` still refuses too little memory at run time.
const _: () = assert!(align_of::<context::Checked<GroupState>>() <= DG_GROUP_ALIGN);
const _: () = assert!(align_of::<dg_group>() == DG_GROUP_ALIGN);

/// The exact size of a group context in this build (at most `DG_GROUP_SIZE`).
#[unsafe(no_mangle)]
pub extern "C" fn dg_group_size() -> usize {
    size_of::<context::Checked<GroupState>>()
}

/// The alignment a group context needs in this build (at most `DG_GROUP_ALIGN`).
#[unsafe(no_mangle)]
pub extern "C" fn dg_group_align() -> usize {
    align_of::<context::Checked<GroupState>>()
}

/// What a `dg_group` holds.
pub(crate) struct GroupState {
    group_id: u32,
    suite: Suite,
    store: Option<CallbackStore>,
    group: Windows,
}

impl Magic for GroupState {
    const MAGIC: u64 = 0x6467_5f67_726f_7570; // "dg_group"
}

/// Bytes from C: null is allowed only with length 0.
///
/// # Safety
/// `p` is null or points to `len` readable bytes that stay valid and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize) -> Result<&'a [u8], dg_error> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(DG_ERR_NULL_POINTER);
    }
    if len > isize::MAX as usize {
        return Err(DG_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, `len` readable bytes per the contract, `len <= isize::MAX`.
    Ok(unsafe { slice::from_raw_parts(p, len) })
}

/// Writable bytes from C: null is allowed only with length 0.
///
/// # Safety
/// `p` is null or points to `len` writable bytes no one else accesses during `'a`.
pub(crate) unsafe fn bytes_mut<'a>(p: *mut u8, len: usize) -> Result<&'a mut [u8], dg_error> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(DG_ERR_NULL_POINTER);
    }
    if len > isize::MAX as usize {
        return Err(DG_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: non-null, `len` writable bytes, exclusively ours for the call, `len <= isize::MAX`.
    Ok(unsafe { slice::from_raw_parts_mut(p, len) })
}

/// One output value from C: must be non-null.
///
/// # Safety
/// `p` is null or points to a writable `T`.
pub(crate) unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T, dg_error> {
    if p.is_null() {
        return Err(DG_ERR_NULL_POINTER);
    }
    if !p.is_aligned() {
        return Err(DG_ERR_POINTER_UNALIGNED);
    }
    // SAFETY: non-null and aligned (both checked); a writable `T` per the contract. The
    // functions that also hold a buffer or the context check that they don't overlap it
    // (`with_state`, `disjoint`) before writing through it.
    Ok(unsafe { &mut *p })
}

/// One input value from C (a configuration): must be non-null and aligned.
///
/// # Safety
/// `p` is null or points to a readable `T` of which every bit pattern is a valid value.
pub(crate) unsafe fn input<'a, T>(p: *const T) -> Result<&'a T, dg_error> {
    if p.is_null() {
        return Err(DG_ERR_NULL_POINTER);
    }
    if !p.is_aligned() {
        return Err(DG_ERR_POINTER_UNALIGNED);
    }
    // SAFETY: non-null and aligned (both checked); readable per the contract.
    Ok(unsafe { &*p })
}

/// An address range one call reads or writes: start and length in bytes.
pub(crate) type Region = (usize, usize);

/// The `len` bytes at `p`.
pub(crate) fn region<T>(p: *const T, len: usize) -> Region {
    (p as usize, len)
}

/// The bytes of a slice.
pub(crate) fn span(s: &[u8]) -> Region {
    region(s.as_ptr(), s.len())
}

/// The one `T` behind `r`.
pub(crate) fn one<T>(r: &T) -> Region {
    region(r, core::mem::size_of::<T>())
}

fn overlap(a: Region, b: Region) -> bool {
    a.1 != 0 && b.1 != 0 && a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// Refuses a call whose buffers and output pointers overlap each other or the context
/// (`ctx`): the Rust references made from them must not alias (a `&mut` output inside a
/// `&[u8]` input, a buffer inside the context's state).
pub(crate) fn disjoint(ctx: Region, regions: &[Region]) -> Result<(), dg_error> {
    for (i, a) in regions.iter().enumerate() {
        if overlap(*a, ctx) || regions.iter().skip(i + 1).any(|b| overlap(*a, *b)) {
            return Err(DG_ERR_BUFFERS_OVERLAP);
        }
    }
    Ok(())
}

/// Runs `f` on the live context at `ctx`, turning `Result` into a status code; `regions`
/// (the call's buffers and outputs) must not overlap each other or the context.
///
/// # Safety
/// As `context::get`.
unsafe fn with_state(
    ctx: *mut dg_group,
    regions: &[Region],
    f: impl FnOnce(&mut GroupState) -> Result<(), dg_error>,
) -> dg_error {
    if let Err(e) = disjoint(region(ctx, crate::dg_group_size()), regions) {
        return e;
    }
    // SAFETY: forwarded contract of `context::get`.
    match unsafe { context::get::<GroupState>(ctx.cast()) }.and_then(|mut g| f(&mut g)) {
        Ok(()) => DG_OK,
        Err(e) => e,
    }
}

fn checked_suite(code: u16) -> Result<Suite, dg_error> {
    let suite = Suite(code);
    if suite.params().is_none() {
        return Err(DG_ERR_UNKNOWN_SUITE);
    }
    if !suite.is_enabled() {
        return Err(DG_ERR_SUITE_NOT_ENABLED);
    }
    Ok(suite)
}

/// A checked configuration: what `dg_group_init` writes into the context.
struct Plan {
    group_id: u32,
    suite: Suite,
    window: u16,
    config: GroupConfig,
}

fn plan(cfg: &dg_group_config) -> Result<Plan, dg_error> {
    let suite = checked_suite(cfg.suite)?;
    let mut config = GroupConfig::new(cfg.group_id).with_grace_ms(cfg.grace_ms);
    config = match cfg.admission {
        DG_ADMISSION_TRUST_FIRST => config.with_admission(Admission::TrustFirst),
        DG_ADMISSION_STRICT => config.with_admission(Admission::Strict),
        _ => return Err(DG_ERR_INVALID_ARGUMENT),
    };
    config = match cfg.nonce_profile {
        DG_NONCE_STRICT => config.with_nonce_profile(NonceProfile::Strict),
        DG_NONCE_COMPATIBILITY => config.with_nonce_profile(NonceProfile::Compatibility),
        _ => return Err(DG_ERR_INVALID_ARGUMENT),
    };
    config = match cfg.is_sender {
        0 => config,
        1 => config.with_sender_id(SenderId(cfg.sender_id)),
        _ => return Err(DG_ERR_INVALID_ARGUMENT),
    };
    if !matches!(cfg.replay_window, 64 | 128 | 256) {
        return Err(DG_ERR_INVALID_ARGUMENT);
    }
    Ok(Plan {
        group_id: cfg.group_id,
        suite,
        window: cfg.replay_window,
        config,
    })
}

/// Writes the state of `plan` into `slot`, field by field.
///
/// # Safety
/// `slot` is valid for writes of a `GroupState`.
unsafe fn fill(slot: *mut GroupState, plan: Plan) {
    // SAFETY: `slot` is valid for writes per the contract; every field is written once.
    unsafe {
        (&raw mut (*slot).group_id).write(plan.group_id);
        (&raw mut (*slot).suite).write(plan.suite);
        (&raw mut (*slot).store).write(None);
        let group = &raw mut (*slot).group;
        match plan.window {
            128 => group.write(Windows::W128(Group::new(plan.config))),
            256 => group.write(Windows::W256(Group::new(plan.config))),
            _ => group.write(Windows::W64(Group::new(plan.config))),
        }
    }
}

/// Fills `*cfg` with the defaults for group `group_id`: a listener, suite AES-128-CCM_8,
/// a 64-record replay window, trust-first admission, strict nonce profile, 60 s grace.
///
/// # Safety
/// `cfg` is null (refused) or points to a writable `dg_group_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_config_init(
    cfg: *mut dg_group_config,
    group_id: u32,
) -> dg_error {
    // SAFETY: `out` checks null; the caller passes a writable config otherwise.
    let cfg = match unsafe { out(cfg) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    let core = GroupConfig::new(group_id);
    *cfg = dg_group_config {
        group_id,
        suite: DG_SUITE_AES_128_CCM_8,
        replay_window: DG_WINDOW_DEFAULT,
        is_sender: 0,
        sender_id: 0,
        admission: DG_ADMISSION_TRUST_FIRST,
        nonce_profile: DG_NONCE_STRICT,
        grace_ms: core.grace_ms,
    };
    DG_OK
}

/// Initialises the group context at `ctx` (`ctx_size` bytes of caller memory, aligned to
/// `dg_group_align()`) with `*cfg`. A context initialised there before is wiped first.
/// Errors: `DG_ERR_NULL_POINTER`, `DG_ERR_CONTEXT_TOO_SMALL`, `DG_ERR_CONTEXT_UNALIGNED`,
/// `DG_ERR_INVALID_ARGUMENT` (admission, nonce_profile, is_sender, replay_window), `DG_ERR_UNKNOWN_SUITE`,
/// `DG_ERR_SUITE_NOT_ENABLED`.
///
/// # Safety
/// `ctx` is null or points to `ctx_size` bytes the caller owns for the life of the context;
/// `cfg` is null or points to a readable `dg_group_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_init(
    ctx: *mut dg_group,
    ctx_size: usize,
    cfg: *const dg_group_config,
) -> dg_error {
    // SAFETY: `as_ref` checks null; otherwise a readable config per the contract. It is
    // plain integers, so any bytes are a valid value.
    let cfg = match unsafe { input(cfg) } {
        Ok(c) => c,
        Err(e) => return e,
    };
    if ctx.is_null() {
        return DG_ERR_NULL_POINTER;
    }
    let plan = match plan(cfg) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let write = |slot: *mut GroupState| {
        // SAFETY: `init_in_place` hands a slot valid for writes of a `GroupState`.
        unsafe { fill(slot, plan) }
    };
    // SAFETY: forwarded contract: `ctx_size` bytes of caller memory at `ctx`; `fill` writes
    // every field of the state.
    unsafe { context::init_in_place(ctx.cast(), ctx_size, write) }
}

/// Wipes the context (keys zeroized) and marks it uninitialised.
///
/// # Safety
/// `ctx` is null or points to memory given to `dg_group_init` (or at least 8 readable bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_deinit(ctx: *mut dg_group) -> dg_error {
    // SAFETY: forwarded contract of `context::deinit`.
    unsafe { context::deinit::<GroupState>(ctx.cast()) }
}

/// Sets the sequence store a sender reserves its sequence numbers in, ahead of use: `load`
/// and `save` are called with `user` during `dg_group_seal` (never after it returns). They
/// must not call this API on the same context.
///
/// # Safety
/// `ctx` as for every function; `load` and `save` are valid for `user` until the store is
/// replaced or the context is deinitialised.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_set_sequence_store(
    ctx: *mut dg_group,
    load: dg_sequence_load_fn,
    save: dg_sequence_save_fn,
    user: *mut c_void,
) -> dg_error {
    if load.is_none() || save.is_none() {
        return DG_ERR_NULL_POINTER;
    }
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            s.store = Some(CallbackStore::new(load, save, user));
            Ok(())
        })
    }
}

fn install(s: &mut GroupState, epoch: u16, keys: &RecordKeys) -> Result<(), dg_error> {
    with_group!(&mut s.group, g => g.install_epoch(Epoch(epoch), keys)).map_err(Into::into)
}

/// Stages `epoch` with keys derived by the native schedule (HKDF-SHA256) from the key
/// server's 32-byte epoch `secret`, for the configured group ID and suite. Records of a staged
/// epoch are received at once; `dg_group_activate` makes it the one this node sends in.
///
/// # Safety
/// `ctx` as for every function; `secret` is null or points to `secret_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_install_native(
    ctx: *mut dg_group,
    epoch: u16,
    secret: *const u8,
    secret_len: usize,
) -> dg_error {
    // SAFETY: forwarded buffer contract.
    let secret = match unsafe { bytes(secret, secret_len) } {
        Ok(s) => s,
        Err(e) => return e,
    };
    let Ok(secret) = <[u8; 32]>::try_from(secret) else {
        return DG_ERR_BAD_KEY_LENGTH;
    };
    let secret = EpochSecret(secret);
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            let keys = native_keys(s.group_id, Epoch(epoch), s.suite, &secret)?;
            install(s, epoch, &keys)
        })
    }
}

/// Stages `epoch` with a raw write key and IV of the configured suite (16-byte key and 4-byte
/// IV for the AES suites, 32 and 12 for ChaCha20-Poly1305).
///
/// # Safety
/// `ctx` as for every function; `key` and `iv` are null or point to `key_len` / `iv_len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_install_raw(
    ctx: *mut dg_group,
    epoch: u16,
    key: *const u8,
    key_len: usize,
    iv: *const u8,
    iv_len: usize,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let (key, iv) = match unsafe { (bytes(key, key_len), bytes(iv, iv_len)) } {
        (Ok(k), Ok(i)) => (k, i),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[span(key), span(iv)], |s| {
            let keys = RecordKeys::new(s.suite, key, iv)?;
            install(s, epoch, &keys)
        })
    }
}

/// Stages `epoch` with the keys of the wolfSSL-compatible schedule (`wolfSSL_set_secret`: the
/// TLS 1.2 PRF over the pre-master secret `pms` and the two 32-byte randoms), for the
/// configured suite: the keys a wolfSSL DTLS multicast peer uses.
///
/// # Safety
/// `ctx` as for every function; `pms` is null or points to `pms_len` readable bytes;
/// `client_random` and `server_random` are null (refused) or point to 32 readable bytes each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_install_wolfssl(
    ctx: *mut dg_group,
    epoch: u16,
    pms: *const u8,
    pms_len: usize,
    client_random: *const u8,
    server_random: *const u8,
) -> dg_error {
    if client_random.is_null() || server_random.is_null() || pms.is_null() {
        return DG_ERR_NULL_POINTER;
    }
    // SAFETY: forwarded buffer contracts (32 bytes for each random).
    let parts = unsafe {
        (
            bytes(pms, pms_len),
            bytes(client_random, 32),
            bytes(server_random, 32),
        )
    };
    let (pms, cr, sr) = match parts {
        (Ok(p), Ok(c), Ok(s)) => (p, c, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let (Ok(cr), Ok(sr)) = (<&[u8; 32]>::try_from(cr), <&[u8; 32]>::try_from(sr)) else {
        return DG_ERR_INVALID_ARGUMENT;
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[span(pms), span(cr), span(sr)], |s| {
            let derived = wolfssl_keys(s.suite, pms, cr, sr)?;
            install(s, epoch, &derived.keys)
        })
    }
}

/// Makes the staged `epoch` current: this node sends in it from now on; the previous epoch
/// stays receivable for the grace period (then `dg_group_handle_timeout` drops it).
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_activate(
    ctx: *mut dg_group,
    epoch: u16,
    now_ms: u64,
) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            with_group!(&mut s.group, g => g.activate_epoch(Epoch(epoch), Instant(now_ms)))
                .map_err(Into::into)
        })
    }
}

/// Adds a sender the key server lists (required under `DG_ADMISSION_STRICT`); a full table
/// (`DG_MAX_SENDERS`) gives `DG_ERR_BUFFER_TOO_SMALL`.
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_add_sender(ctx: *mut dg_group, sender_id: u8) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            with_group!(&mut s.group, g => g.add_sender(SenderId(sender_id)))
                .map_err(|_| DG_ERR_BUFFER_TOO_SMALL)
        })
    }
}

/// Removes a sender (revoked): its records are refused in every epoch installed now.
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_remove_sender(ctx: *mut dg_group, sender_id: u8) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            with_group!(&mut s.group, g => g.remove_sender(SenderId(sender_id)));
            Ok(())
        })
    }
}

/// Seals `plaintext` as this node's next record of the current epoch into `out` (`out_cap`
/// bytes; `plaintext_len + DG_MAX_OVERHEAD` always suffices) and writes its length to
/// `*out_len`. Sequence numbers are reserved in the sequence store before use; a plaintext
/// over 2^14 bytes gives `DG_ERR_RECORD_OVERFLOW` (counted in `seal_record_overflow`) and uses
/// no sequence number.
///
/// # Safety
/// `ctx` as for every function; `plaintext` is null or points to `plaintext_len` readable
/// bytes; `out` to `out_cap` writable bytes not overlapping `plaintext`; `out_len` to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_seal(
    ctx: *mut dg_group,
    now_ms: u64,
    plaintext: *const u8,
    plaintext_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let args = unsafe {
        (
            bytes(plaintext, plaintext_len),
            bytes_mut(out, out_cap),
            self::out(out_len),
        )
    };
    let (pt, buf, len_out) = match args {
        (Ok(p), Ok(b), Ok(l)) => (p, b, l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[span(pt), span(buf), one(len_out)], |s| {
            let is_sender = with_group!(&s.group, g => g.config().own_sender_id.is_some());
            if !is_sender {
                return Err(DG_ERR_NOT_A_SENDER);
            }
            let Some(store) = s.store.as_mut() else {
                return Err(DG_ERR_NO_SEQUENCE_STORE);
            };
            let n = with_group!(&mut s.group, g => g.seal(Instant(now_ms), store, pt, buf))?;
            *len_out = n;
            Ok(())
        })
    }
}

/// Opens one record in place: `buf` (`len` bytes, one record) is authenticated and decrypted;
/// on `DG_OK` `*delivery` tells the sender, epoch, sequence number and where the plaintext is
/// in `buf`. Any other result is a drop, counted by reason (`dg_group_counters`); the would-be
/// plaintext is wiped and no state changes.
///
/// # Safety
/// `ctx` as for every function; `buf` is null or points to `len` writable bytes; `delivery` to
/// a writable `dg_delivery`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_open(
    ctx: *mut dg_group,
    now_ms: u64,
    buf: *mut u8,
    len: usize,
    delivery: *mut dg_delivery,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let args = unsafe { (bytes_mut(buf, len), out(delivery)) };
    let (record, delivery) = match args {
        (Ok(r), Ok(d)) => (r, d),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let base = record.as_ptr();
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[span(record), one(delivery)], |s| {
            let d = with_group!(&mut s.group, g => g
                .open(Instant(now_ms), record)
                .map(|d| dg_delivery::from_delivery(&d, base)))?;
            *delivery = d;
            Ok(())
        })
    }
}

/// Copies the counters into `*counters`.
///
/// # Safety
/// `ctx` as for every function; `counters` points to a writable `dg_counters`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_counters(
    ctx: *mut dg_group,
    counters: *mut dg_counters,
) -> dg_error {
    // SAFETY: forwarded output contract.
    let counters = match unsafe { out(counters) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[one(counters)], |s| {
            *counters = with_group!(&s.group, g => dg_counters::from(g.counters()));
            Ok(())
        })
    }
}

/// Takes the next queued event into `*event` (`kind` `DG_EVENT_NONE` when there is none).
///
/// # Safety
/// `ctx` as for every function; `event` points to a writable `dg_event`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_poll_event(ctx: *mut dg_group, event: *mut dg_event) -> dg_error {
    // SAFETY: forwarded output contract.
    let event = match unsafe { out(event) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[one(event)], |s| {
            *event = with_group!(&mut s.group, g => g.poll_event())
                .map(dg_event::from)
                .unwrap_or_default();
            Ok(())
        })
    }
}

/// Writes to `*deadline_ms` when `dg_group_handle_timeout` next has work to do, or
/// `UINT64_MAX` when it has none.
///
/// # Safety
/// `ctx` as for every function; `deadline_ms` points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_poll_timeout(
    ctx: *mut dg_group,
    deadline_ms: *mut u64,
) -> dg_error {
    // SAFETY: forwarded output contract.
    let deadline = match unsafe { out(deadline_ms) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[one(deadline)], |s| {
            *deadline =
                with_group!(&s.group, g => g.poll_timeout()).map_or(u64::MAX, |t| t.as_millis());
            Ok(())
        })
    }
}

/// Does the timed work due at `now_ms` (drops the previous epoch after its grace period).
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_handle_timeout(ctx: *mut dg_group, now_ms: u64) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[], |s| {
            with_group!(&mut s.group, g => g.handle_timeout(Instant(now_ms)));
            Ok(())
        })
    }
}

/// Writes the current epoch (the one this node sends in) to `*epoch`;
/// `DG_ERR_NO_CURRENT_EPOCH` when none is active.
///
/// # Safety
/// `ctx` as for every function; `epoch` points to a writable `uint16_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_group_current_epoch(ctx: *mut dg_group, epoch: *mut u16) -> dg_error {
    // SAFETY: forwarded output contract.
    let epoch = match unsafe { out(epoch) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_state(ctx, &[one(epoch)], |s| {
            let e = with_group!(&s.group, g => g.current_epoch()).ok_or(DG_ERR_NO_CURRENT_EPOCH)?;
            *epoch = e.0;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    /// A context is at least its marker and at most what a workspace-unified build needs.
    #[test]
    fn size_and_align_are_plausible() {
        assert!(super::dg_group_size() >= 8 && super::dg_group_size() <= 4 * super::DG_GROUP_SIZE);
        assert!(super::dg_group_align() <= super::DG_GROUP_ALIGN);
    }
}
