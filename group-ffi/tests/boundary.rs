//! The C boundary as an attacker or a careless C programmer uses it, from Rust through the
//! `extern "C"` functions: callbacks that re-enter the API with their own context, buffers and
//! output pointers that overlap each other or the context, misaligned output pointers,
//! out-of-range configuration values, re-initialisation over a live context and what it
//! leaves in memory, and the sequence store returning odd values.
//!
//! The group tests exercise the library as C programs link it (`cargo build -p group-ffi`, its
//! own features), where a context fits a `dg_group` (`DG_GROUP_SIZE`). In `cargo test
//! --workspace`, cargo unifies group-core's features with the other members' (record
//! signatures add a key per sender), so that build's context is larger than a `dg_group`: there
//! each group test checks that `dg_group_init` refuses `DG_GROUP_SIZE` bytes with
//! `DG_ERR_CONTEXT_TOO_SMALL` and stops ([`c_sized_build`]); `.ci/capi.sh` runs them all in
//! the C build.
#![allow(unsafe_code)]

use core::ffi::c_void;
use core::ptr;

use dtls_group::*;

const KEY: [u8; 16] = [0xC7; 16];
const IV: [u8; 4] = [0x3D, 0x3D, 0x3D, 0x3D];

/// An in-memory sequence store, optionally re-entering the API from its callbacks.
#[derive(Default)]
struct Flash {
    state: Option<dg_sequence_state>,
    /// Returned by `load` instead of the state when set.
    load_rc: Option<i32>,
    /// Returned by `save` (after storing nothing) when set.
    save_rc: Option<i32>,
    saves: u32,
    /// When non-null, the callbacks call the API on this context once each and record what
    /// it answered.
    reenter: *mut dg_group,
    reentered: Vec<dg_error>,
}

unsafe extern "C" fn load(user: *mut c_void, out: *mut dg_sequence_state) -> i32 {
    // SAFETY: the tests pass a live `Flash` as the user pointer.
    let f = unsafe { &mut *user.cast::<Flash>() };
    if !f.reenter.is_null() {
        reenter(f);
    }
    if let Some(rc) = f.load_rc {
        return rc;
    }
    match f.state {
        // SAFETY: the library passes a writable state.
        Some(s) => unsafe { *out = s },
        None => return DG_STORE_EMPTY,
    }
    DG_STORE_OK
}

unsafe extern "C" fn save(user: *mut c_void, st: *const dg_sequence_state) -> i32 {
    // SAFETY: as in `load`.
    let f = unsafe { &mut *user.cast::<Flash>() };
    if !f.reenter.is_null() {
        reenter(f);
    }
    if let Some(rc) = f.save_rc {
        return rc;
    }
    // SAFETY: the library passes a readable state.
    f.state = Some(unsafe { *st });
    f.saves += 1;
    DG_STORE_OK
}

/// Every kind of call a callback could make on the context it runs for.
fn reenter(f: &mut Flash) {
    let g = f.reenter;
    let mut rec = [0u8; 64];
    let mut len = 0usize;
    let mut cfg = config(true);
    let mut c = dg_counters::default();
    // SAFETY: `g` is the live context of the running call; the library must refuse these.
    unsafe {
        f.reentered.push(dg_group_seal(
            g,
            0,
            b"x".as_ptr(),
            1,
            rec.as_mut_ptr(),
            rec.len(),
            &mut len,
        ));
        f.reentered.push(dg_group_counters(g, &mut c));
        f.reentered.push(dg_group_deinit(g));
        cfg.sender_id = 9;
        f.reentered
            .push(dg_group_init(g, core::mem::size_of::<dg_group>(), &cfg));
    }
}

fn config(sender: bool) -> dg_group_config {
    let mut cfg = default_config();
    cfg.is_sender = u8::from(sender);
    cfg.sender_id = 1;
    cfg
}

fn default_config() -> dg_group_config {
    let mut cfg = core::mem::MaybeUninit::<dg_group_config>::uninit();
    // SAFETY: a writable config; `dg_group_config_init` fills every field.
    unsafe {
        assert_eq!(dg_group_config_init(cfg.as_mut_ptr(), 7), dg_error::DG_OK);
        cfg.assume_init()
    }
}

/// Whether this build's group context fits a `dg_group` (the build C programs link). When it
/// does not (a workspace build with unified features, see the module docs), checks that init
/// refuses the C-sized memory, says so, and the caller's test ends there.
fn c_sized_build() -> bool {
    if dg_group_size() <= DG_GROUP_SIZE {
        return true;
    }
    let mut g = context();
    let cfg = config(true);
    // SAFETY: live, aligned context memory of `DG_GROUP_SIZE` bytes; a readable config.
    let rc = unsafe { dg_group_init(&mut *g, DG_GROUP_SIZE, &cfg) };
    assert_eq!(rc, dg_error::DG_ERR_CONTEXT_TOO_SMALL);
    eprintln!(
        "this build's context is {} bytes, over DG_GROUP_SIZE ({DG_GROUP_SIZE}): init refuses a \
         dg_group (checked); the rest of this test runs in the C build (.ci/capi.sh)",
        dg_group_size()
    );
    false
}

/// A boxed (aligned) context, zeroed.
fn context() -> Box<dg_group> {
    // SAFETY: `dg_group` is plain bytes; all zero is a valid (never initialised) value.
    Box::new(unsafe { core::mem::zeroed() })
}

/// Initialises `g` as sender 1 (or a listener) with raw keys in epoch 1 and the store `f`.
fn setup(g: &mut dg_group, sender: bool, f: *mut Flash) {
    let cfg = config(sender);
    // SAFETY: live, aligned context memory of full size; readable key material; `f` outlives
    // every use of the context in these tests.
    unsafe {
        assert_eq!(
            dg_group_init(g, core::mem::size_of::<dg_group>(), &cfg),
            dg_error::DG_OK
        );
        if !f.is_null() {
            assert_eq!(
                dg_group_set_sequence_store(g, Some(load), Some(save), f.cast()),
                dg_error::DG_OK
            );
        }
        assert_eq!(
            dg_group_install_raw(g, 1, KEY.as_ptr(), 16, IV.as_ptr(), 4),
            dg_error::DG_OK
        );
        assert_eq!(dg_group_activate(g, 1, 0), dg_error::DG_OK);
    }
}

/// Seals one record and returns it (or the error).
fn seal(g: &mut dg_group, pt: &[u8]) -> Result<Vec<u8>, dg_error> {
    let mut out = [0u8; 128];
    let mut len = 0usize;
    // SAFETY: live context, disjoint readable and writable buffers.
    let rc = unsafe {
        dg_group_seal(
            g,
            0,
            pt.as_ptr(),
            pt.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut len,
        )
    };
    if rc == dg_error::DG_OK {
        Ok(out[..len].to_vec())
    } else {
        Err(rc)
    }
}

/// The sequence number of a record this library sealed (header bytes 5..11: epoch 16 |
/// sender 8 | seq 40).
fn seq_of(rec: &[u8]) -> (u16, u8, u64) {
    let epoch = u16::from_be_bytes([rec[3], rec[4]]);
    let sid = rec[5];
    let mut s = [0u8; 8];
    s[3..].copy_from_slice(&rec[6..11]);
    (epoch, sid, u64::from_be_bytes(s))
}

fn bytes_of(g: &dg_group) -> &[u8] {
    // SAFETY: a `dg_group` is `DG_GROUP_SIZE` initialised bytes (boxed zeroed, then written).
    unsafe { core::slice::from_raw_parts(ptr::from_ref(g).cast::<u8>(), DG_GROUP_SIZE) }
}

/// A store callback that calls the API on its own context is refused (`DG_ERR_CONTEXT_BUSY`)
/// for every kind of call, including `deinit` and `init` over it; the outer call completes and
/// the context stays usable. Before the busy marker, these calls made a second `&mut` to
/// the state in use (the inner seal succeeded, the inner deinit dropped the state under the
/// outer call).
#[test]
fn callbacks_reentering_their_context_are_refused() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    let mut f = Box::new(Flash::default());
    let fp: *mut Flash = &mut *f;
    setup(&mut g, true, fp);
    f.reenter = &mut *g;
    let first = seal(&mut g, b"on").expect("the outer seal completes");
    // load (to start, and before the save to check no one else wrote) and save each
    // re-entered with four calls.
    assert_eq!(f.reentered.len(), 12, "{:?}", f.reentered);
    assert!(
        f.reentered
            .iter()
            .all(|e| *e == dg_error::DG_ERR_CONTEXT_BUSY),
        "{:?}",
        f.reentered
    );
    f.reenter = ptr::null_mut();
    let second = seal(&mut g, b"off").expect("still usable");
    assert_eq!(seq_of(&first), (1, 1, 0));
    assert_eq!(seq_of(&second), (1, 1, 1));
    // SAFETY: live context.
    unsafe {
        assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_OK);
        assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_ERR_NOT_INITIALISED);
    }
}

/// Sealing in place (plaintext and output the same buffer) or with the length output inside
/// the output buffer or inside the context is refused, as is opening with the delivery or the
/// record inside the context: the `&[u8]` and `&mut` the library makes must not alias.
#[test]
fn overlapping_buffers_are_refused() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    let mut f = Box::new(Flash::default());
    setup(&mut g, true, &mut *f);
    let gp: *mut dg_group = &mut *g;
    let mut buf = [0u8; 128];
    let b = buf.as_mut_ptr();
    let mut len = 0usize;
    let mut d = dg_delivery::default();
    // SAFETY: every pointer is valid for what it is given as; the overlaps are the point.
    unsafe {
        assert_eq!(
            dg_group_seal(gp, 0, b, 4, b, 128, &mut len),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_seal(gp, 0, b.add(60), 4, b, 64, &mut len),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_seal(gp, 0, b"on".as_ptr(), 2, b, 128, b.add(64).cast()),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_seal(
                gp,
                0,
                b"on".as_ptr(),
                2,
                gp.cast::<u8>().add(256),
                64,
                &mut len
            ),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_counters(gp, gp.cast::<u8>().add(512).cast()),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_open(gp, 0, b, 64, b.add(32).cast()),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        assert_eq!(
            dg_group_open(gp, 0, gp.cast::<u8>().add(64), 64, &mut d),
            dg_error::DG_ERR_BUFFERS_OVERLAP
        );
        // Nothing was sealed by the refused calls: the next record is number 0.
        assert_eq!(f.saves, 0);
        // Adjacent (not overlapping) buffers are fine.
        assert_eq!(
            dg_group_seal(gp, 0, b.add(100), 2, b, 100, &mut len),
            dg_error::DG_OK
        );
        assert_eq!(seq_of(&buf[..len]), (1, 1, 0));
    }
}

/// Output and configuration pointers that are not aligned for their type are refused, not
/// written through (a misaligned `&mut u64` is undefined behaviour).
#[test]
fn misaligned_out_pointers_are_refused() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    setup(&mut g, false, ptr::null_mut());
    #[repr(C, align(8))]
    struct Raw([u8; 256]);
    let mut raw = Raw([0; 256]);
    let odd = raw.0.as_mut_ptr().wrapping_add(1);
    // SAFETY: `odd` points into `raw` with room for each output; the misalignment is the point.
    unsafe {
        assert_eq!(
            dg_group_poll_timeout(&mut *g, odd.cast()),
            dg_error::DG_ERR_POINTER_UNALIGNED
        );
        assert_eq!(
            dg_group_counters(&mut *g, odd.cast()),
            dg_error::DG_ERR_POINTER_UNALIGNED
        );
        assert_eq!(
            dg_group_current_epoch(&mut *g, odd.cast()),
            dg_error::DG_ERR_POINTER_UNALIGNED
        );
        assert_eq!(
            dg_group_config_init(odd.cast(), 7),
            dg_error::DG_ERR_POINTER_UNALIGNED
        );
        let mut other = context();
        assert_eq!(
            dg_group_init(&mut *other, DG_GROUP_SIZE, odd.cast()),
            dg_error::DG_ERR_POINTER_UNALIGNED
        );
        // Aligned, the same calls work.
        let mut deadline = 0u64;
        assert_eq!(
            dg_group_poll_timeout(&mut *g, &mut deadline),
            dg_error::DG_OK
        );
    }
}

/// Configuration values C can hold but the library does not support give a typed error
/// (sender IDs 0 and 255 are valid IDs on the wire: they work).
#[test]
fn out_of_range_configuration_values_are_refused() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    let size = DG_GROUP_SIZE;
    type Case = (fn(&mut dg_group_config), dg_error);
    let cases: [Case; 8] = [
        (|c| c.replay_window = 0, dg_error::DG_ERR_INVALID_ARGUMENT),
        (
            |c| c.replay_window = 65535,
            dg_error::DG_ERR_INVALID_ARGUMENT,
        ),
        (|c| c.suite = 0, dg_error::DG_ERR_UNKNOWN_SUITE),
        (|c| c.suite = 0xFFFF, dg_error::DG_ERR_UNKNOWN_SUITE),
        (|c| c.admission = 255, dg_error::DG_ERR_INVALID_ARGUMENT),
        (|c| c.nonce_profile = 2, dg_error::DG_ERR_INVALID_ARGUMENT),
        (|c| c.is_sender = 255, dg_error::DG_ERR_INVALID_ARGUMENT),
        (|c| c.grace_ms = u64::MAX, dg_error::DG_OK),
    ];
    for (change, want) in cases {
        let mut cfg = config(true);
        change(&mut cfg);
        // SAFETY: live context memory, readable config.
        assert_eq!(unsafe { dg_group_init(&mut *g, size, &cfg) }, want);
    }
    for sid in [0u8, 255] {
        let mut cfg = config(true);
        cfg.sender_id = sid;
        let mut f = Box::new(Flash::default());
        // SAFETY: as above; `f` outlives the seal.
        unsafe {
            assert_eq!(dg_group_init(&mut *g, size, &cfg), dg_error::DG_OK);
            let fp: *mut Flash = &mut *f;
            dg_group_set_sequence_store(&mut *g, Some(load), Some(save), fp.cast());
            dg_group_install_raw(&mut *g, 1, KEY.as_ptr(), 16, IV.as_ptr(), 4);
            assert_eq!(dg_group_activate(&mut *g, 1, 0), dg_error::DG_OK);
        }
        let rec = seal(&mut g, b"x").expect("seals");
        assert_eq!(seq_of(&rec), (1, sid, 0));
    }
    // Epochs at the edges: 0 refused, 65535 accepted.
    // SAFETY: live context.
    unsafe {
        assert_eq!(
            dg_group_install_raw(&mut *g, 0, KEY.as_ptr(), 16, IV.as_ptr(), 4),
            dg_error::DG_ERR_EPOCH_ZERO
        );
        assert_eq!(
            dg_group_install_raw(&mut *g, u16::MAX, KEY.as_ptr(), 16, IV.as_ptr(), 4),
            dg_error::DG_OK
        );
        // Lengths near usize::MAX are refused before any memory is touched.
        let mut d = dg_delivery::default();
        let mut b = [0u8; 8];
        assert_eq!(
            dg_group_open(&mut *g, 0, b.as_mut_ptr(), usize::MAX, &mut d),
            dg_error::DG_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            dg_group_install_raw(&mut *g, 2, KEY.as_ptr(), usize::MAX, IV.as_ptr(), 4),
            dg_error::DG_ERR_INVALID_ARGUMENT
        );
        assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_OK);
    }
}

/// Re-initialising a live context (a C program that "resets" its context), or a fresh init
/// after a reboot, never repeats a (key, epoch, sender, seq): the new context resumes above
/// what the store reserved. Whatever the store callback returns on failure, nothing is sealed.
#[test]
fn reinit_and_odd_store_results_never_repeat_a_sequence_number() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    let mut f = Box::new(Flash::default());
    let fp: *mut Flash = &mut *f;
    let mut seen = std::collections::HashSet::new();
    for round in 0..4 {
        setup(&mut g, true, fp);
        for _ in 0..5 {
            let rec = seal(&mut g, b"tick").expect("seals");
            assert!(
                seen.insert(seq_of(&rec)),
                "round {round}: repeated {:?}",
                seq_of(&rec)
            );
        }
    }
    // A store that refuses saves with any code, or whose load reports anything but OK or
    // EMPTY: nothing sealed, typed error.
    for rc in [DG_STORE_IO, 77, -1, i32::MIN] {
        setup(&mut g, true, fp);
        f.save_rc = Some(rc);
        assert_eq!(seal(&mut g, b"x"), Err(dg_error::DG_ERR_SEQUENCE_STORE));
        f.save_rc = None;
        f.load_rc = Some(rc);
        setup(&mut g, true, fp);
        assert_eq!(
            seal(&mut g, b"x"),
            Err(dg_error::DG_ERR_SEQUENCE_STATE_LOST)
        );
        f.load_rc = None;
    }
    for rc in [DG_STORE_MISSING, DG_STORE_CORRUPT] {
        f.load_rc = Some(rc);
        setup(&mut g, true, fp);
        assert_eq!(
            seal(&mut g, b"x"),
            Err(dg_error::DG_ERR_SEQUENCE_STATE_LOST)
        );
        f.load_rc = None;
    }
    // A stored mark at the end of the sequence space: exhausted, never wraps to 0.
    f.state = Some(dg_sequence_state {
        epoch: 1,
        sender_id: 1,
        reserved_until: u64::MAX,
    });
    setup(&mut g, true, fp);
    assert_eq!(seal(&mut g, b"x"), Err(dg_error::DG_ERR_SEQUENCE_EXHAUSTED));
    // SAFETY: live context.
    unsafe { assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_OK) };
}

/// Where the raw key's bytes are in the context.
fn key_positions(g: &dg_group) -> Vec<usize> {
    let b = bytes_of(g);
    (0..b.len() - KEY.len())
        .filter(|i| b.get(*i..*i + KEY.len()) == Some(&KEY[..]))
        .collect()
}

/// Overwrites 256 KiB of this thread's stack below the caller with zeros.
#[inline(never)]
fn scrub_stack() {
    let mut block = [0u8; 256 * 1024];
    std::hint::black_box(&mut block);
}

/// Deinit wipes the keys from the caller's memory, including the copies a key leaves behind
/// when it moves inside the state (staged, activated), which no drop reaches: the raw key is
/// in the live context (so the check can fail) and nowhere in it after `dg_group_deinit`.
/// Before the wipe, 5 of its 8 copies were left. Re-init over a live context leaves no copy
/// at all (with the thread's stack scrubbed first: the new state may carry stale stack bytes
/// in its unused storage, see docs/c-api.md, "Secrets"), whatever the state's layout.
#[test]
fn deinit_and_reinit_zeroize_keys() {
    if !c_sized_build() {
        return;
    }
    let mut g = context();
    setup(&mut g, false, ptr::null_mut());
    assert!(key_positions(&g).len() > 1, "{:?}", key_positions(&g));
    // SAFETY: live context.
    unsafe { assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_OK) };
    assert_eq!(key_positions(&g), Vec::<usize>::new());

    setup(&mut g, false, ptr::null_mut());
    let live = key_positions(&g);
    assert!(live.len() > 1, "{live:?}");
    // Stale copies of the key on this thread's stack (temporaries of `install_raw`) would be
    // carried into the new state's unused storage by its by-value construction (docs/c-api.md,
    // "Secrets"): scrub them, so that whatever key bytes the re-initialised context holds
    // can only be left over from the old one, whatever the state's layout.
    scrub_stack();
    let cfg = config(false);
    // SAFETY: live context, readable config.
    unsafe { assert_eq!(dg_group_init(&mut *g, DG_GROUP_SIZE, &cfg), dg_error::DG_OK) };
    assert_eq!(key_positions(&g), Vec::<usize>::new(), "live at {live:?}");
    // SAFETY: live context.
    unsafe { assert_eq!(dg_group_deinit(&mut *g), dg_error::DG_OK) };
    assert_eq!(key_positions(&g), Vec::<usize>::new());
}

/// The member's RNG callback re-entering its own member (`poll_transmit`, `deinit`,
/// `init_psk` over it): refused as busy; the outer call still sends the join request.
#[test]
fn rng_callback_reentering_its_member_is_refused() {
    struct Rng {
        m: *mut dg_member,
        seen: Vec<dg_error>,
    }
    unsafe extern "C" fn rng(user: *mut c_void, buf: *mut u8, len: usize) -> i32 {
        // SAFETY: the test passes its live `Rng`; the library a writable buffer of `len`.
        let r = unsafe { &mut *user.cast::<Rng>() };
        // SAFETY: as above.
        unsafe { core::slice::from_raw_parts_mut(buf, len) }.fill(0x17);
        if r.seen.is_empty() {
            let mut out = [0u8; 64];
            let mut n = 0usize;
            let mut cfg = core::mem::MaybeUninit::<dg_member_config>::uninit();
            // SAFETY: `m` is the member of the running call; the library must refuse these.
            unsafe {
                dg_member_config_init(cfg.as_mut_ptr(), 5, 7);
                (*cfg.as_mut_ptr()).rng = Some(rng);
                let psk = [1u8; 16];
                r.seen.push(dg_member_poll_transmit(
                    r.m,
                    0,
                    out.as_mut_ptr(),
                    out.len(),
                    &mut n,
                ));
                r.seen.push(dg_member_deinit(r.m));
                r.seen.push(dg_member_init_psk(
                    r.m,
                    DG_MEMBER_SIZE,
                    cfg.as_ptr(),
                    psk.as_ptr(),
                    16,
                ));
                r.seen.push(dg_member_join(r.m, 0));
            }
        }
        0
    }
    #[repr(C, align(16))]
    struct Mem([u8; DG_MEMBER_SIZE]);
    let mut mem = Box::new(Mem([0; DG_MEMBER_SIZE]));
    let m: *mut dg_member = ptr::from_mut(&mut *mem).cast();
    let mut r = Box::new(Rng {
        m,
        seen: Vec::new(),
    });
    let mut cfg = core::mem::MaybeUninit::<dg_member_config>::uninit();
    let mut out = [0u8; 1500];
    let mut n = 0usize;
    // SAFETY: aligned member memory of full size, a readable config and key, `r` outlives it.
    unsafe {
        assert_eq!(
            dg_member_config_init(cfg.as_mut_ptr(), 5, 7),
            dg_error::DG_OK
        );
        let mut cfg = cfg.assume_init();
        cfg.rng = Some(rng);
        cfg.rng_user = ptr::from_mut(&mut *r).cast();
        let psk = [1u8; 16];
        // The memory's true size (never more: the library would write past it).
        let size = DG_MEMBER_SIZE;
        if dg_member_size() > size {
            // A workspace build with unified features (see the module docs).
            assert_eq!(
                dg_member_init_psk(m, size, &cfg, psk.as_ptr(), 16),
                dg_error::DG_ERR_CONTEXT_TOO_SMALL
            );
            return;
        }
        assert_eq!(
            dg_member_init_psk(m, size, &cfg, psk.as_ptr(), 16),
            dg_error::DG_OK
        );
        assert_eq!(dg_member_join(m, 0), dg_error::DG_OK);
        assert_eq!(
            dg_member_poll_transmit(m, 0, out.as_mut_ptr(), out.len(), &mut n),
            dg_error::DG_OK
        );
        assert!(n > 0, "the join request is sent");
        assert_eq!(r.seen, [dg_error::DG_ERR_CONTEXT_BUSY; 4]);
        assert_eq!(dg_member_deinit(m), dg_error::DG_OK);
    }
}

/// Two contexts with the same sender ID and one store (a C program that makes a context per
/// thread, or re-creates one elsewhere without deinit): each would otherwise extend its own
/// reservation over the other's, and seal the other's sequence numbers. A save now checks
/// that the store still holds what this context last read or wrote, and refuses
/// (`DG_ERR_SEQUENCE_STORE`, nothing sealed) when another writer moved it.
#[test]
fn two_contexts_sharing_a_sender_id_and_store_never_repeat_a_nonce() {
    if !c_sized_build() {
        return;
    }
    let mut a = context();
    let mut b = context();
    let mut f = Box::new(Flash::default());
    let fp: *mut Flash = &mut *f;
    setup(&mut a, true, fp);
    setup(&mut b, true, fp);
    let mut seen = std::collections::HashSet::new();
    let mut refused = 0;
    // A starts (reserves 0..1000), B starts above it (1000..2000); A runs to the end of its
    // block and would reserve 1000..2000 again.
    for (which, n) in [(0, 1), (1, 1), (0, 1100), (1, 10)] {
        let g = if which == 0 { &mut a } else { &mut b };
        for _ in 0..n {
            match seal(g, b"x") {
                Ok(rec) => assert!(seen.insert(seq_of(&rec)), "sealed {:?} twice", seq_of(&rec)),
                Err(e) => {
                    assert_eq!(e, dg_error::DG_ERR_SEQUENCE_STORE);
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(refused, 101, "A stops at the end of its block (seq 999)");
    // Re-initialised, A reads the store again and resumes above both.
    setup(&mut a, true, fp);
    let rec = seal(&mut a, b"x").expect("seals");
    assert!(seen.insert(seq_of(&rec)));
    assert_eq!(seq_of(&rec).2, 2000);
}
