//! The key-distribution member: credentials (PSK or signed), join, datagrams from and to the
//! key server, the keys it installs, and the record functions on its group. The random number
//! generator is a callback.

use core::convert::Infallible;
use core::ffi::c_void;

use group_core::keydist::{
    DeviceId, Member, MemberConfig, MemberCredentials, MemberEvent, Psk, RemovedReason, Role,
};
use group_core::rand_core::{TryCryptoRng, TryRng};
use group_core::time::Instant;

use crate::context::{self, Magic};
use crate::dg_error::{self, *};
use crate::group::{Region, bytes, bytes_mut, disjoint, input, one, out, region, span};
use crate::store::{CallbackStore, dg_sequence_load_fn, dg_sequence_save_fn};
use crate::types::*;

/// Bytes of a `dg_member` in every configuration of this library (an upper bound, checked by
/// the C tests; `dg_member_size()` gives this build's figure, and `dg_member_init_*` refuse
/// less memory with `DG_ERR_CONTEXT_TOO_SMALL`).
pub const DG_MEMBER_SIZE: usize = 6144;
/// Alignment of a `dg_member` (`dg_member_align()` gives this build's figure).
pub const DG_MEMBER_ALIGN: usize = 16;

/// Memory for one key-distribution member. Declare one (or allocate `dg_member_size()` bytes
/// aligned to `dg_member_align()`), then `dg_member_init_psk` or `dg_member_init_signed` it.
/// Never copy it.
#[repr(C, align(16))]
pub struct dg_member {
    _opaque: [u8; DG_MEMBER_SIZE],
}

const _: () = assert!(core::mem::align_of::<dg_member>() == DG_MEMBER_ALIGN);

/// Role: receives only.
pub const DG_ROLE_LISTENER: u8 = 0;
/// Role: sends and receives (gets a sender ID from the key server; needs a sequence store).
pub const DG_ROLE_SENDER: u8 = 1;

/// Fills `len` bytes at `buf` with cryptographically secure random bytes (a hardware TRNG, the
/// OS); returns 0 on success, anything else on failure.
pub type dg_rng_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, buf: *mut u8, len: usize) -> i32>;

/// What a member is: its device, group and role, its sequence store (senders) and its random
/// number generator. Fill with `dg_member_config_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dg_member_config {
    /// This device's ID at the key server.
    pub device_id: u32,
    /// The group to join.
    pub group_id: u32,
    /// `DG_ROLE_LISTENER` or `DG_ROLE_SENDER`.
    pub role: u8,
    /// Sequence store `load` (required for a sender).
    pub load: dg_sequence_load_fn,
    /// Sequence store `save` (required for a sender).
    pub save: dg_sequence_save_fn,
    /// Passed to `load` and `save`.
    pub store_user: *mut c_void,
    /// Random bytes (required).
    pub rng: dg_rng_fn,
    /// Passed to `rng`.
    pub rng_user: *mut c_void,
}

/// The member's random bytes, from the C callback. A failure is remembered (and the bytes
/// zeroed); the call that needed them then reports `DG_ERR_RNG` and sends nothing.
struct CallbackRng {
    f: unsafe extern "C" fn(*mut c_void, *mut u8, usize) -> i32,
    user: *mut c_void,
    failed: bool,
}

impl TryRng for CallbackRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if dst.is_empty() {
            return Ok(());
        }
        // SAFETY: `f` is the callback the caller configured, documented to write `len` bytes
        // at `buf`; `dst` is a live, writable slice of exactly that length.
        let rc = unsafe { (self.f)(self.user, dst.as_mut_ptr(), dst.len()) };
        if rc != 0 {
            self.failed = true;
            dst.fill(0);
        }
        Ok(())
    }
}

impl TryCryptoRng for CallbackRng {}

/// What a `dg_member` holds.
pub(crate) struct MemberState {
    member: Member<CallbackStore, 32, 2>,
    rng: CallbackRng,
}

impl Magic for MemberState {
    const MAGIC: u64 = 0x6467_5f6d_656d_6272; // "dg_membr"
}

/// The exact size of a member context in this build (at most `DG_MEMBER_SIZE`).
#[unsafe(no_mangle)]
pub extern "C" fn dg_member_size() -> usize {
    core::mem::size_of::<context::Checked<MemberState>>()
}

/// The alignment a member context needs in this build (at most `DG_MEMBER_ALIGN`).
#[unsafe(no_mangle)]
pub extern "C" fn dg_member_align() -> usize {
    core::mem::align_of::<context::Checked<MemberState>>()
}

/// Fills `*cfg` with a listener `device_id` of group `group_id`, without callbacks.
///
/// # Safety
/// `cfg` is null (refused) or points to a writable `dg_member_config`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_config_init(
    cfg: *mut dg_member_config,
    device_id: u32,
    group_id: u32,
) -> dg_error {
    // SAFETY: `out` checks null; otherwise a writable config per the contract.
    let cfg = match unsafe { out(cfg) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    *cfg = dg_member_config {
        device_id,
        group_id,
        role: DG_ROLE_LISTENER,
        load: None,
        save: None,
        store_user: core::ptr::null_mut(),
        rng: None,
        rng_user: core::ptr::null_mut(),
    };
    DG_OK
}

/// # Safety
/// As `dg_member_init_psk`.
unsafe fn init(
    ctx: *mut dg_member,
    ctx_size: usize,
    cfg: *const dg_member_config,
    creds: impl FnOnce() -> Result<MemberCredentials, dg_error>,
) -> dg_error {
    // SAFETY: `as_ref` checks null; otherwise a readable config (integers, nullable function
    // pointers and raw pointers: any bits are valid) per the contract.
    let cfg = match unsafe { input(cfg) } {
        Ok(c) => c,
        Err(e) => return e,
    };
    if ctx.is_null() {
        return DG_ERR_NULL_POINTER;
    }
    let role = match cfg.role {
        DG_ROLE_LISTENER => Role::Listener,
        DG_ROLE_SENDER if cfg.load.is_some() && cfg.save.is_some() => Role::Sender,
        DG_ROLE_SENDER => return DG_ERR_NO_SEQUENCE_STORE,
        _ => return DG_ERR_INVALID_ARGUMENT,
    };
    let Some(f) = cfg.rng else {
        return DG_ERR_NULL_POINTER;
    };
    let creds = match creds() {
        Ok(c) => c,
        Err(e) => return e,
    };
    let store = CallbackStore::new(cfg.load, cfg.save, cfg.store_user);
    let state = MemberState {
        member: Member::new(
            MemberConfig::new(DeviceId(cfg.device_id), cfg.group_id, role),
            creds,
            store,
        ),
        rng: CallbackRng {
            f,
            user: cfg.rng_user,
            failed: false,
        },
    };
    // SAFETY: forwarded contract: `ctx_size` bytes of caller memory at `ctx`.
    unsafe { context::init(ctx.cast(), ctx_size, state) }
}

/// Initialises a member in PSK mode: `psk` is the device's 16-byte pre-shared key (the key
/// server holds the same).
///
/// # Safety
/// `ctx` is null or points to `ctx_size` bytes the caller owns for the life of the context;
/// `cfg` is null or points to a readable `dg_member_config` whose callbacks stay valid as long
/// as the context; `psk` is null or points to `psk_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_init_psk(
    ctx: *mut dg_member,
    ctx_size: usize,
    cfg: *const dg_member_config,
    psk: *const u8,
    psk_len: usize,
) -> dg_error {
    // SAFETY: forwarded buffer contract.
    let psk = match unsafe { bytes(psk, psk_len) } {
        Ok(p) => p,
        Err(e) => return e,
    };
    let Ok(psk) = <[u8; 16]>::try_from(psk) else {
        return DG_ERR_BAD_KEY_LENGTH;
    };
    // SAFETY: forwarded contract.
    unsafe { init(ctx, ctx_size, cfg, || Ok(MemberCredentials::Psk(Psk(psk)))) }
}

/// Initialises a member in signed mode: `device_key` is the device's 32-byte P-256 private
/// scalar (`dtls-group keygen`'s `.key`), `server_key` the key server's SEC1 public key (33 or
/// 65 bytes, its `.pub`). `DG_ERR_NOT_ENABLED` without the `member-signed` feature.
///
/// # Safety
/// As `dg_member_init_psk`; `device_key` and `server_key` are null or point to
/// `device_key_len` / `server_key_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_init_signed(
    ctx: *mut dg_member,
    ctx_size: usize,
    cfg: *const dg_member_config,
    device_key: *const u8,
    device_key_len: usize,
    server_key: *const u8,
    server_key_len: usize,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let keys = unsafe {
        (
            bytes(device_key, device_key_len),
            bytes(server_key, server_key_len),
        )
    };
    let (device_key, server_key) = match keys {
        (Ok(d), Ok(s)) => (d, s),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    #[cfg(feature = "member-signed")]
    {
        use group_core::p256::ecdsa::{SigningKey, VerifyingKey};
        let creds = || {
            let d = SigningKey::from_slice(device_key).map_err(|_| DG_ERR_BAD_KEY_LENGTH)?;
            let s = VerifyingKey::from_sec1_bytes(server_key).map_err(|_| DG_ERR_BAD_KEY_LENGTH)?;
            Ok(MemberCredentials::signed(d, s))
        };
        // SAFETY: forwarded contract.
        unsafe { init(ctx, ctx_size, cfg, creds) }
    }
    #[cfg(not(feature = "member-signed"))]
    {
        let _ = (ctx, ctx_size, cfg, device_key, server_key);
        DG_ERR_NOT_ENABLED
    }
}

/// Runs `f` on the live member at `ctx`; `regions` (the call's buffers and outputs) must not
/// overlap each other or the context.
///
/// # Safety
/// As `context::get`.
unsafe fn with_member(
    ctx: *mut dg_member,
    regions: &[Region],
    f: impl FnOnce(&mut MemberState) -> Result<(), dg_error>,
) -> dg_error {
    if let Err(e) = disjoint(region(ctx, dg_member_size()), regions) {
        return e;
    }
    // SAFETY: forwarded contract of `context::get`.
    match unsafe { context::get::<MemberState>(ctx.cast()) }.and_then(|mut g| f(&mut g)) {
        Ok(()) => DG_OK,
        Err(e) => e,
    }
}

/// Wipes the member (keys zeroized) and marks it uninitialised.
///
/// # Safety
/// `ctx` is null or points to memory given to `dg_member_init_*` (or at least 8 bytes).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_deinit(ctx: *mut dg_member) -> dg_error {
    // SAFETY: forwarded contract of `context::deinit`.
    unsafe { context::deinit::<MemberState>(ctx.cast()) }
}

/// Starts joining (or rejoining): the join request comes out of `dg_member_poll_transmit`.
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_join(ctx: *mut dg_member, now_ms: u64) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[], |m| {
            m.member.join(Instant(now_ms)).map_err(Into::into)
        })
    }
}

/// Asks to leave the group (the request comes out of `dg_member_poll_transmit`); keys are
/// dropped at once.
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_leave(ctx: *mut dg_member, now_ms: u64) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[], |m| {
            m.member.leave(Instant(now_ms)).map_err(Into::into)
        })
    }
}

/// Handles one datagram from the key server (challenge, bundle, rekey, removal). A refused
/// message changes nothing; the error says why (`DG_ERR_KD_*`).
///
/// # Safety
/// `ctx` as for every function; `data` is null or points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_handle_datagram(
    ctx: *mut dg_member,
    now_ms: u64,
    data: *const u8,
    len: usize,
) -> dg_error {
    // SAFETY: forwarded buffer contract.
    let data = match unsafe { bytes(data, len) } {
        Ok(d) => d,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[span(data)], |m| {
            m.member
                .handle_message(Instant(now_ms), data)
                .map_err(Into::into)
        })
    }
}

/// Writes the next datagram for the key server into `buf` (`cap` bytes; 1 500 suffice) and its
/// length to `*len`, or 0 when there is nothing to send now. Call it after every other call
/// and when `dg_member_poll_timeout`'s deadline passes, until it gives 0.
///
/// # Safety
/// `ctx` as for every function; `buf` is null or points to `cap` writable bytes; `len` to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_poll_transmit(
    ctx: *mut dg_member,
    now_ms: u64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let args = unsafe { (bytes_mut(buf, cap), out(len)) };
    let (buf, len) = match args {
        (Ok(b), Ok(l)) => (b, l),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    *len = 0;
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[span(buf), one(len)], |m| {
            // Probe the generator first, so that a failing one stops us before the member
            // commits to a nonce it could not draw.
            let mut probe = [0u8; 16];
            m.rng.failed = false;
            let _ = m.rng.try_fill_bytes(&mut probe);
            if m.rng.failed {
                return Err(DG_ERR_RNG);
            }
            let n = m.member.poll_transmit(Instant(now_ms), &mut m.rng, buf)?;
            if m.rng.failed {
                buf.fill(0);
                return Err(DG_ERR_RNG);
            }
            *len = n.unwrap_or(0);
            Ok(())
        })
    }
}

/// Writes when `dg_member_handle_timeout` next has work (retransmissions, activations, grace
/// periods) to `*deadline_ms`, or `UINT64_MAX`.
///
/// # Safety
/// `ctx` as for every function; `deadline_ms` points to a writable `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_poll_timeout(
    ctx: *mut dg_member,
    deadline_ms: *mut u64,
) -> dg_error {
    // SAFETY: forwarded output contract.
    let deadline = match unsafe { out(deadline_ms) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[one(deadline)], |m| {
            *deadline = m.member.poll_timeout().map_or(u64::MAX, |t| t.as_millis());
            Ok(())
        })
    }
}

/// Does the timed work due at `now_ms`.
///
/// # Safety
/// `ctx` as for every function.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_handle_timeout(ctx: *mut dg_member, now_ms: u64) -> dg_error {
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[], |m| {
            m.member.handle_timeout(Instant(now_ms));
            Ok(())
        })
    }
}

/// Member event: none queued.
pub const DG_MEMBER_EVENT_NONE: u8 = 0;
/// Member event: a bundle was installed (`epoch`, `sender_id` if `has_sender_id`,
/// `activate_in_ms`).
pub const DG_MEMBER_EVENT_BUNDLE_INSTALLED: u8 = 1;
/// Member event: `epoch` became the one this node sends in.
pub const DG_MEMBER_EVENT_EPOCH_ACTIVATED: u8 = 2;
/// Member event: sending restarted at 0 in `epoch` after the sequence store was lost.
pub const DG_MEMBER_EVENT_RECOVERED: u8 = 3;
/// Member event: the key server removed this device (`removed_reason`); keys are gone.
pub const DG_MEMBER_EVENT_REMOVED: u8 = 4;
/// Member event: `epoch`'s keys expired without a new bundle.
pub const DG_MEMBER_EVENT_KEYS_EXPIRED: u8 = 5;
/// Member event: an event of the record layer (`group`).
pub const DG_MEMBER_EVENT_GROUP: u8 = 6;
/// Member event: one this header does not know.
pub const DG_MEMBER_EVENT_OTHER: u8 = 255;
/// Removal reason: the device asked to leave.
pub const DG_REMOVED_LEFT: u8 = 1;
/// Removal reason: the operator revoked it.
pub const DG_REMOVED_REVOKED: u8 = 2;

/// Something a member's application may act on (`dg_member_poll_event`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct dg_member_event {
    /// `DG_MEMBER_EVENT_*`.
    pub kind: u8,
    /// 1 when `sender_id` is set (`DG_MEMBER_EVENT_BUNDLE_INSTALLED` for a sender).
    pub has_sender_id: u8,
    /// This node's sender ID in the bundle.
    pub sender_id: u8,
    /// `DG_REMOVED_*` for `DG_MEMBER_EVENT_REMOVED`.
    pub removed_reason: u8,
    /// The epoch concerned.
    pub epoch: u16,
    /// Milliseconds until an installed bundle's epoch becomes the one to send in.
    pub activate_in_ms: u32,
    /// The record layer's event, for `DG_MEMBER_EVENT_GROUP`.
    pub group: dg_event,
}

fn member_event(e: MemberEvent) -> dg_member_event {
    let mut out = dg_member_event {
        kind: DG_MEMBER_EVENT_OTHER,
        ..dg_member_event::default()
    };
    match e {
        MemberEvent::BundleInstalled {
            epoch,
            sender_id,
            activate_in_ms,
        } => {
            out.kind = DG_MEMBER_EVENT_BUNDLE_INSTALLED;
            out.epoch = epoch.0;
            out.has_sender_id = u8::from(sender_id.is_some());
            out.sender_id = sender_id.map_or(0, |s| s.0);
            out.activate_in_ms = activate_in_ms;
        }
        MemberEvent::EpochActivated { epoch } => {
            out.kind = DG_MEMBER_EVENT_EPOCH_ACTIVATED;
            out.epoch = epoch.0;
        }
        MemberEvent::Recovered { epoch } => {
            out.kind = DG_MEMBER_EVENT_RECOVERED;
            out.epoch = epoch.0;
        }
        MemberEvent::Removed { reason } => {
            out.kind = DG_MEMBER_EVENT_REMOVED;
            out.removed_reason = match reason {
                RemovedReason::Left => DG_REMOVED_LEFT,
                RemovedReason::Revoked => DG_REMOVED_REVOKED,
            };
        }
        MemberEvent::KeysExpired { epoch } => {
            out.kind = DG_MEMBER_EVENT_KEYS_EXPIRED;
            out.epoch = epoch.0;
        }
        MemberEvent::Group(g) => {
            out.kind = DG_MEMBER_EVENT_GROUP;
            out.group = dg_event::from(g);
        }
        _ => {}
    }
    out
}

/// Takes the next member event into `*event` (`DG_MEMBER_EVENT_NONE` when none).
///
/// # Safety
/// `ctx` as for every function; `event` points to a writable `dg_member_event`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_poll_event(
    ctx: *mut dg_member,
    event: *mut dg_member_event,
) -> dg_error {
    // SAFETY: forwarded output contract.
    let event = match unsafe { out(event) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[one(event)], |m| {
            *event = m.member.poll_event().map(member_event).unwrap_or_default();
            Ok(())
        })
    }
}

/// Writes the epoch this member sends in to `*epoch`; `DG_ERR_NOT_JOINED` before its first
/// bundle (or after removal).
///
/// # Safety
/// `ctx` as for every function; `epoch` points to a writable `uint16_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_current_epoch(ctx: *mut dg_member, epoch: *mut u16) -> dg_error {
    // SAFETY: forwarded output contract.
    let epoch = match unsafe { out(epoch) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[one(epoch)], |m| {
            let e = m
                .member
                .group()
                .and_then(|g| g.current_epoch())
                .filter(|_| m.member.is_joined())
                .ok_or(DG_ERR_NOT_JOINED)?;
            *epoch = e.0;
            Ok(())
        })
    }
}

/// Seals `plaintext` as this member's next record (see `dg_group_seal`).
///
/// # Safety
/// As `dg_group_seal`, with a member context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_seal(
    ctx: *mut dg_member,
    now_ms: u64,
    plaintext: *const u8,
    plaintext_len: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> dg_error {
    // SAFETY: forwarded buffer contracts.
    let args = unsafe {
        (
            bytes(plaintext, plaintext_len),
            bytes_mut(buf, cap),
            out(len),
        )
    };
    let (pt, buf, len) = match args {
        (Ok(p), Ok(b), Ok(l)) => (p, b, l),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[span(pt), span(buf), one(len)], |m| {
            *len = m.member.seal(Instant(now_ms), pt, buf)?;
            Ok(())
        })
    }
}

/// Opens one record in place (see `dg_group_open`); `DG_ERR_NOT_JOINED` without keys.
///
/// # Safety
/// As `dg_group_open`, with a member context.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_open(
    ctx: *mut dg_member,
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
        with_member(ctx, &[span(record), one(delivery)], |m| {
            let d = m.member.open(Instant(now_ms), record)?;
            *delivery = dg_delivery::from_delivery(&d, base);
            Ok(())
        })
    }
}

/// Copies the record layer's counters into `*counters` (all zero before the first bundle).
///
/// # Safety
/// `ctx` as for every function; `counters` points to a writable `dg_counters`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dg_member_counters(
    ctx: *mut dg_member,
    counters: *mut dg_counters,
) -> dg_error {
    // SAFETY: forwarded output contract.
    let counters = match unsafe { out(counters) } {
        Ok(v) => v,
        Err(e) => return e,
    };
    // SAFETY: forwarded context contract.
    unsafe {
        with_member(ctx, &[one(counters)], |m| {
            *counters = m
                .member
                .group()
                .map(|g| dg_counters::from(g.counters()))
                .unwrap_or_default();
            Ok(())
        })
    }
}
