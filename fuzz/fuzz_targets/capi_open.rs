//! The C API (`group-ffi`) driven through its `extern "C"` functions by arbitrary call
//! sequences: a sender context whose sequence store fails in arbitrary ways (any return code
//! from `load` and `save`, except `DG_STORE_EMPTY` after a save: see `Op::StoreFails`),
//! re-initialised over itself at any point, and a twin context with the same sender ID and
//! store; a receiver opening the
//! sender's records, mutated copies, arbitrary datagrams, null buffers and lengths;
//! epochs installed, activated and retired; deinit and re-init of either.
//!
//! Asserts: nothing panics (the process would abort: `extern "C"`); every call returns one of
//! its documented errors; the sender never seals the same (epoch, sender, seq) twice, across
//! re-inits, store failures and the twin; the receiver delivers only records the sender sealed (same
//! epoch, sender, seq and plaintext), each once per receiver life; a refusal bumps exactly its
//! drop counter.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;

use arbitrary::Arbitrary;
use dtls_group::dg_error::*;
use dtls_group::*;
use libfuzzer_sys::fuzz_target;

const SID: u8 = 3;
const SENDER: u8 = 0;
const RECEIVER: u8 = 1;
/// A second context with the same sender ID and store (a C program's mistake).
const TWIN: u8 = 2;

/// An honest store whose medium fails when told to: `load` answers EMPTY only if nothing was
/// ever saved (a store that forgets would be outside the contract).
#[derive(Default)]
struct Store {
    state: Option<dg_sequence_state>,
    load_rc: i32,
    save_rc: i32,
}

unsafe extern "C" fn load(user: *mut c_void, out: *mut dg_sequence_state) -> i32 {
    // SAFETY: the target passes its live `Store`.
    let s = unsafe { &mut *user.cast::<Store>() };
    if s.load_rc != DG_STORE_OK {
        return s.load_rc;
    }
    match s.state {
        // SAFETY: the library passes a writable state.
        Some(st) => unsafe { *out = st },
        None => return DG_STORE_EMPTY,
    }
    DG_STORE_OK
}

unsafe extern "C" fn save(user: *mut c_void, st: *const dg_sequence_state) -> i32 {
    // SAFETY: as in `load`.
    let s = unsafe { &mut *user.cast::<Store>() };
    if s.save_rc != DG_STORE_OK {
        return s.save_rc;
    }
    // SAFETY: the library passes a readable state.
    s.state = Some(unsafe { *st });
    DG_STORE_OK
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Seal on the sender, or (`twin`) on the second context with its sender ID and store.
    Seal { len: u16, cap: u16, fill: u8, twin: bool },
    /// Seal up to 1 199 one-byte records in a row (to cross the store's 1 000-record
    /// reservation step).
    Burst { n: u16, twin: bool },
    /// Open a copy of sealed record `which`, with bytes changed and its length cut or grown.
    Open { which: u8, flips: Vec<(u8, u8)>, cut: u8, grow: u8 },
    /// Open arbitrary bytes.
    OpenRaw { bytes: Vec<u8> },
    /// Open a null buffer with a length.
    OpenNull { len: u16 },
    /// The store's next answers (0 is OK; anything else a failure of some kind).
    StoreFails { load: i32, save: i32 },
    StoreHeals,
    /// Install `epoch` (keys from a per-epoch secret) on one or both, maybe activate it.
    Install { epoch: u16, on: u8, activate: bool },
    Timeout { ms: u32 },
    Init { who: u8, window: u8 },
    Deinit { who: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    ops: Vec<Op>,
}

fn secret(epoch: u16) -> [u8; 32] {
    let mut s = [0x5a; 32];
    s[..2].copy_from_slice(&epoch.to_be_bytes());
    s
}

/// Context memory of `dg_group_size()` bytes, 16-aligned: this crate's build unifies
/// group-core's features with group-std's, so its contexts can exceed `DG_GROUP_SIZE` (which
/// bounds the builds C programs link); a C program allocating its own memory does the same.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
struct Block([u8; 16]);

fn context_memory() -> Vec<Block> {
    assert!(dg_group_align() <= 16);
    vec![Block([0; 16]); dg_group_size().div_ceil(16)]
}

struct World {
    ctx: [Vec<Block>; 3],
    store: Box<Store>,
    now: u64,
    /// Every (epoch, sender, seq) sealed, with its plaintext.
    sealed: HashMap<(u16, u8, u64), Vec<u8>>,
    records: Vec<Vec<u8>>,
    delivered: HashSet<(u16, u8, u64)>,
}

impl World {
    fn ctx(&mut self, who: u8) -> *mut dg_group {
        self.ctx[usize::from(who % 3)].as_mut_ptr().cast()
    }

    fn init(&mut self, who: u8, window: u8) {
        let mut cfg = std::mem::MaybeUninit::<dg_group_config>::uninit();
        // SAFETY: writable config, filled by `dg_group_config_init`.
        let mut cfg = unsafe {
            assert_eq!(dg_group_config_init(cfg.as_mut_ptr(), 7), DG_OK);
            cfg.assume_init()
        };
        cfg.replay_window = [64, 128, 256, 100][usize::from(window & 3)];
        cfg.grace_ms = 1_000;
        if who % 3 != RECEIVER {
            cfg.is_sender = 1;
            cfg.sender_id = SID;
        }
        let g = self.ctx(who);
        let store: *mut Store = &mut *self.store;
        // SAFETY: the context's memory, its full size; the store outlives the context.
        unsafe {
            let rc = dg_group_init(g, dg_group_size(), &cfg);
            if cfg.replay_window == 100 {
                assert_eq!(rc, DG_ERR_INVALID_ARGUMENT);
                return;
            }
            assert_eq!(rc, DG_OK);
            if who % 3 != RECEIVER {
                assert_eq!(
                    dg_group_set_sequence_store(g, Some(load), Some(save), store.cast()),
                    DG_OK
                );
            } else {
                self.delivered.clear();
            }
            let s = secret(1);
            assert_eq!(dg_group_install_native(g, 1, s.as_ptr(), 32), DG_OK);
            assert_eq!(dg_group_activate(g, 1, self.now), DG_OK);
        }
    }

    fn open(&mut self, mut buf: Vec<u8>) {
        let g = self.ctx(RECEIVER);
        let mut before = dg_counters::default();
        let mut d = dg_delivery::default();
        // SAFETY: live or refused context; a writable buffer of its length; writable outputs.
        let rc = unsafe {
            let live = dg_group_counters(g, &mut before);
            let rc = dg_group_open(g, self.now, buf.as_mut_ptr(), buf.len(), &mut d);
            if live != DG_OK {
                assert_eq!(rc, DG_ERR_NOT_INITIALISED);
                return;
            }
            rc
        };
        let mut after = dg_counters::default();
        // SAFETY: as above.
        assert_eq!(unsafe { dg_group_counters(g, &mut after) }, DG_OK);
        if rc == DG_OK {
            let key = (d.epoch, d.sender_id, d.seq);
            let pt = self
                .sealed
                .get(&key)
                .unwrap_or_else(|| panic!("delivered {key:?}, never sealed"));
            let end = d.offset.checked_add(d.length).expect("in range");
            assert_eq!(&buf[d.offset..end], &pt[..], "delivered {key:?} altered");
            assert!(self.delivered.insert(key), "delivered {key:?} twice");
            assert_eq!(after.accepted, before.accepted + 1);
            return;
        }
        let code = rc as i32;
        assert!((40..=59).contains(&code), "open: undocumented {rc:?}");
        let bumped = [
            after.malformed - before.malformed,
            after.unsupported_content_type - before.unsupported_content_type,
            after.unknown_epoch - before.unknown_epoch,
            after.unknown_sender - before.unknown_sender,
            after.replay - before.replay,
            after.too_old - before.too_old,
            after.authentication_failed - before.authentication_failed,
            after.own_sender_id - before.own_sender_id,
            after.nonce_mismatch - before.nonce_mismatch,
            after.record_overflow - before.record_overflow,
        ];
        assert_eq!(bumped.iter().sum::<u64>(), 1, "{rc:?}: {bumped:?}");
        assert_eq!(after.accepted, before.accepted);
    }

    fn seal(&mut self, len: u16, cap: u16, fill: u8, twin: bool) {
        let len = usize::from(len) % (16 * 1024 + 64);
        let pt = vec![fill; len];
        let mut out = vec![0u8; usize::from(cap) % (len + 64)];
        let mut n = 0usize;
        let g = self.ctx(if twin { TWIN } else { SENDER });
        // SAFETY: disjoint buffers of their lengths, a writable length.
        let rc = unsafe {
            dg_group_seal(g, self.now, pt.as_ptr(), len, out.as_mut_ptr(), out.len(), &mut n)
        };
        match rc {
            DG_OK => {
                assert!(n <= out.len() && n >= 13 + len);
                let rec = &out[..n];
                let epoch = u16::from_be_bytes([rec[3], rec[4]]);
                let mut s = [0u8; 8];
                s[3..].copy_from_slice(&rec[6..11]);
                let key = (epoch, rec[5], u64::from_be_bytes(s));
                assert_eq!(key.1, SID);
                assert!(
                    self.sealed.insert(key, pt).is_none(),
                    "sealed {key:?} twice: nonce reuse"
                );
                if self.records.len() < 256 {
                    self.records.push(rec.to_vec());
                }
            }
            DG_ERR_NOT_INITIALISED
            | DG_ERR_NO_CURRENT_EPOCH
            | DG_ERR_BUFFER_TOO_SMALL
            | DG_ERR_RECORD_OVERFLOW
            | DG_ERR_PLAINTEXT_TOO_LARGE
            | DG_ERR_SEQUENCE_STATE_LOST
            | DG_ERR_SEQUENCE_STORE
            | DG_ERR_SEQUENCE_STALE
            | DG_ERR_SEQUENCE_EXHAUSTED => {}
            other => panic!("seal: undocumented {other:?}"),
        }
    }

    fn install(&mut self, epoch: u16, on: u8, activate: bool) {
        for who in [SENDER, RECEIVER, TWIN] {
            if on & (1 << who) == 0 {
                continue;
            }
            let g = self.ctx(who);
            let s = secret(epoch);
            // SAFETY: a readable secret; the context is live or refused.
            unsafe {
                let rc = dg_group_install_native(g, epoch, s.as_ptr(), 32);
                let ok = [
                    DG_OK,
                    DG_ERR_NOT_INITIALISED,
                    DG_ERR_EPOCH_ZERO,
                    DG_ERR_EPOCH_NOT_NEWER,
                    DG_ERR_KEY,
                ];
                assert!(ok.contains(&rc), "install: undocumented {rc:?}");
                if activate {
                    let rc = dg_group_activate(g, epoch, self.now);
                    let ok = [DG_OK, DG_ERR_NOT_INITIALISED, DG_ERR_NOT_STAGED, DG_ERR_KEY];
                    assert!(ok.contains(&rc), "activate: undocumented {rc:?}");
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let mut w = World {
        ctx: [context_memory(), context_memory(), context_memory()],
        store: Box::default(),
        now: 0,
        sealed: HashMap::new(),
        records: Vec::new(),
        delivered: HashSet::new(),
    };
    w.init(SENDER, 0);
    w.init(RECEIVER, 0);
    w.init(TWIN, 0);
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Seal {
                len,
                cap,
                fill,
                twin,
            } => w.seal(len, cap, fill, twin),
            Op::Open {
                which,
                flips,
                cut,
                grow,
            } => {
                let Some(rec) = w.records.get(usize::from(which) % w.records.len().max(1)) else {
                    continue;
                };
                let mut rec = rec.clone();
                for (at, x) in flips.into_iter().take(4) {
                    let i = usize::from(at) % rec.len();
                    rec[i] ^= x;
                }
                rec.truncate(rec.len().saturating_sub(usize::from(cut % 16)));
                rec.extend(std::iter::repeat_n(0xA5, usize::from(grow % 16)));
                w.open(rec);
            }
            Op::Burst { n, twin } => {
                for _ in 0..n % 1200 {
                    w.seal(1, 64, 0x42, twin);
                }
            }
            Op::OpenRaw { bytes } => w.open(bytes),
            Op::OpenNull { len } => {
                let mut d = dg_delivery::default();
                let g = w.ctx(RECEIVER);
                // SAFETY: a null buffer is refused before use; `d` is writable.
                let rc = unsafe { dg_group_open(g, w.now, std::ptr::null_mut(), len.into(), &mut d) };
                let ok = [DG_ERR_NULL_POINTER, DG_ERR_NOT_INITIALISED, DG_ERR_MALFORMED];
                assert!(ok.contains(&rc), "open(null, {len}): {rc:?}");
            }
            Op::StoreFails { load, save } => {
                // DG_STORE_EMPTY is not a failure: it says "commissioned empty, never written"
                // (group-ffi/src/store.rs). A store that answers it after a save has forgotten
                // what it held, which no sequence check can see through (two contexts sharing
                // that store would both start over at 0): outside the contract, so this honest
                // store never says it; a wiped store answers DG_STORE_MISSING.
                // Regression input: fuzz/regressions/capi_open/store-says-empty-after-save.
                w.store.load_rc = if load == DG_STORE_EMPTY { DG_STORE_OK } else { load };
                w.store.save_rc = save;
            }
            Op::StoreHeals => {
                w.store.load_rc = DG_STORE_OK;
                w.store.save_rc = DG_STORE_OK;
            }
            Op::Install {
                epoch,
                on,
                activate,
            } => w.install(epoch % 8, on, activate),
            Op::Timeout { ms } => {
                w.now += u64::from(ms % 5_000);
                let mut e = dg_event::default();
                for who in [SENDER, RECEIVER, TWIN] {
                    let g = w.ctx(who);
                    // SAFETY: live or refused context; writable event.
                    unsafe {
                        let rc = dg_group_handle_timeout(g, w.now);
                        assert!(matches!(rc, DG_OK | DG_ERR_NOT_INITIALISED));
                        while dg_group_poll_event(g, &mut e) == DG_OK && e.kind != DG_EVENT_NONE {}
                    }
                }
            }
            Op::Init { who, window } => w.init(who, window),
            Op::Deinit { who } => {
                let g = w.ctx(who);
                // SAFETY: live or refused context.
                let rc = unsafe { dg_group_deinit(g) };
                assert!(matches!(rc, DG_OK | DG_ERR_NOT_INITIALISED));
            }
        }
    }
});
