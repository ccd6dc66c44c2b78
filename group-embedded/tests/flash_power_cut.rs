//! The flash sequence store under power cuts at every step, driving a real sending [`Group`].
//!
//! A device commissions its store, sends records in epoch 1, is rekeyed to epoch 2 and sends
//! more, with K = 3 (a flash write every third record) on a simulated NOR flash of 3 pages x
//! 8 slots, so the log wraps round the ring more than once. Power is cut at every step the
//! flash executes (every word programmed, every page erased), with every way the interrupted
//! operation can be torn. After each cut the device reboots: new store, new `Group` (RAM is
//! gone), same keys, and carries on where the script was. Checked:
//! - after a reboot, `load` returns the last state a `save` reported durable, or the state the
//!   interrupted save was writing, never anything older, and never an error once
//!   commissioning completed;
//! - no `(epoch, sid, seq)` is ever sent twice, and per epoch the sequence numbers sent only
//!   grow;
//! - the run always completes (a single cut never leaves the sender unable to send).

use std::collections::{BTreeMap, HashSet};

use embedded_storage::nor_flash::NorFlash;
use group_core::group::{Group, GroupConfig};
use group_core::record::SealError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::{
    SequenceCounter, SequenceError, SequenceStore, StoreError, StoredSequence,
};
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, Record, SenderId};
use group_embedded::flash::sim::{SimNorFlash, Tear};
use group_embedded::flash::{FlashSequenceStore, Loss, SetupError, StoreState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Flash = SimNorFlash<3, 256, 4>;
const PAGES: u32 = 3;
const SID: SenderId = SenderId(4);
const GROUP_ID: u32 = 0x51;

#[derive(Clone, Copy, Debug)]
enum Step {
    Send,
    Rekey(u16),
}

fn script() -> Vec<Step> {
    let mut s = vec![Step::Send; 40];
    s.push(Step::Rekey(2));
    s.extend([Step::Send; 40]);
    s
}

fn keys(epoch: u16) -> RecordKeys {
    native_keys(
        GROUP_ID,
        Epoch(epoch),
        Suite::AES_128_CCM_8,
        &EpochSecret([epoch as u8; 32]),
    )
    .unwrap()
}

/// A store wrapper that remembers what was reported durable and what is being written.
struct Recording<'a, S> {
    inner: &'a mut S,
    durable: &'a mut Option<StoredSequence>,
    pending: &'a mut Option<StoredSequence>,
}

impl<S: SequenceStore> SequenceStore for Recording<'_, S> {
    fn load(&mut self) -> Result<Option<StoredSequence>, StoreError> {
        self.inner.load()
    }
    fn save(&mut self, state: &StoredSequence) -> Result<(), StoreError> {
        *self.pending = Some(*state);
        let r = self.inner.save(state);
        if r.is_ok() {
            *self.durable = Some(*state);
            *self.pending = None;
        }
        r
    }
}

#[derive(Default, Debug)]
struct Outcome {
    reboots: u32,
    sent: usize,
    erases: Vec<u32>,
}

/// How the next cut is chosen after each boot.
trait Cutter {
    fn arm(&mut self, flash: &mut Flash);
}

/// One cut at a fixed step.
struct Once(Option<(u64, Tear)>);
impl Cutter for Once {
    fn arm(&mut self, flash: &mut Flash) {
        if let Some((at, tear)) = self.0.take() {
            flash.cut_at(at, tear);
        }
    }
}

/// Up to `left` cuts, each a random number of steps after the boot.
struct Random {
    rng: ChaCha8Rng,
    left: u32,
}
impl Cutter for Random {
    fn arm(&mut self, flash: &mut Flash) {
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        let at = flash.steps() + self.rng.random_range(0..60);
        let tear = match self.rng.random_range(0..4) {
            0 => Tear::Untouched,
            1 => Tear::Partial,
            2 => Tear::Complete,
            _ => Tear::Garbage(self.rng.random()),
        };
        flash.cut_at(at, tear);
    }
}

fn run(cutter: &mut dyn Cutter, label: &str) -> Outcome {
    let script = script();
    let mut flash = Flash::new();
    let mut pc = 0usize;
    let mut commissioned = false;
    let mut epoch = 1u16;
    let mut durable: Option<StoredSequence> = None;
    let mut pending: Option<StoredSequence> = None;
    let mut sent: HashSet<(u16, u8, u64)> = HashSet::new();
    let mut highest: BTreeMap<u16, u64> = BTreeMap::new();
    let mut out = Outcome::default();
    let now = Instant(0);

    'boot: loop {
        cutter.arm(&mut flash);
        if !commissioned {
            match FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES) {
                Ok(()) => commissioned = true,
                Err(SetupError::Flash(_)) => {
                    // Cut while commissioning: the region is blank or garbage, or (a cut after
                    // the last word, before the read-back) commissioned and empty.
                    assert!(
                        !flash.is_powered(),
                        "{label}: commission failed with power on"
                    );
                    flash.power_on();
                    let (_, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
                    assert!(
                        matches!(
                            state,
                            StoreState::CommissionedEmpty
                                | StoreState::Lost(Loss::Blank | Loss::Corrupt)
                        ),
                        "{label}: after a cut in commissioning: {state:?}"
                    );
                    commissioned = state == StoreState::CommissionedEmpty;
                    out.reboots += 1;
                    continue 'boot;
                }
                Err(e) => panic!("{label}: commission: {e:?}"),
            }
        }
        let (mut store, state) = FlashSequenceStore::open(flash, 0, PAGES).unwrap();
        // What the flash says after the reboot: the durable state or the one in flight (or,
        // before the first reservation, commissioned and empty). Never lost.
        let l = state.load_result();
        let ok = l == Ok(durable) || (pending.is_some() && l == Ok(pending));
        assert!(
            ok,
            "{label}: after reboot the store is {state:?}; durable {durable:?}, in flight {pending:?}"
        );
        // What the device read back is now the baseline no later boot may go below.
        durable = l.unwrap();
        pending = None;

        let mut config = GroupConfig::new(GROUP_ID).with_sender_id(SID);
        config.sequence_reserve_step = 3;
        let mut group: Group = Group::new(config);
        group
            .install_and_activate(Epoch(epoch), &keys(epoch), now)
            .unwrap();
        while pc < script.len() {
            match script[pc] {
                Step::Rekey(e) => {
                    group.install_and_activate(Epoch(e), &keys(e), now).unwrap();
                    epoch = e;
                }
                Step::Send => {
                    let mut buf = [0u8; 64];
                    let mut rec = Recording {
                        inner: &mut store,
                        durable: &mut durable,
                        pending: &mut pending,
                    };
                    match group.seal(now, &mut rec, b"dim 40", &mut buf) {
                        Ok(len) => {
                            let view = Record::new_checked(&buf[..len]).unwrap();
                            let h = view.header();
                            let key = (h.epoch.0, h.sender_id.0, h.seq);
                            assert!(sent.insert(key), "{label}: nonce reused: {key:?}");
                            let hi = highest.entry(h.epoch.0).or_insert(0);
                            assert!(
                                h.seq >= *hi,
                                "{label}: seq went back in epoch {}: {} after {}",
                                h.epoch.0,
                                h.seq,
                                *hi
                            );
                            *hi = h.seq + 1;
                        }
                        Err(SealError::SequenceStore(StoreError::Io)) => {
                            // Power cut in the middle of a reservation: reboot.
                            flash = store.into_inner();
                            assert!(!flash.is_powered(), "{label}: store I/O error, power on");
                            flash.power_on();
                            out.reboots += 1;
                            continue 'boot;
                        }
                        Err(e) => panic!("{label}: seal: {e:?}"),
                    }
                }
            }
            pc += 1;
        }
        // The end state is durable and readable.
        assert!(durable.is_some());
        assert_eq!(store.load(), Ok(durable), "{label}: final load");
        let flash = store.into_inner();
        out.sent = sent.len();
        out.erases = flash.erase_counts().to_vec();
        return out;
    }
}

#[test]
fn uncut_run_wraps_the_ring() {
    let o = run(&mut Once(None), "uncut");
    assert_eq!(o.reboots, 0);
    assert_eq!(o.sent, 80);
    // 3 commissioning erases, then one per page entered: 28 saves over 24 slots wrap once.
    assert!(
        o.erases.iter().all(|e| *e >= 2),
        "every page erased again: {:?}",
        o.erases
    );
}

#[test]
fn every_single_cut_at_every_step_and_tear() {
    // Count the steps of the uncut run.
    let steps = {
        let mut flash = Flash::new();
        // Mirror of `run` without cuts, to read the flash's step counter at the end.
        FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES).unwrap();
        let (mut store, _) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
        let mut config = GroupConfig::new(GROUP_ID).with_sender_id(SID);
        config.sequence_reserve_step = 3;
        let mut group: Group = Group::new(config);
        group
            .install_and_activate(Epoch(1), &keys(1), Instant(0))
            .unwrap();
        for step in script() {
            match step {
                Step::Rekey(e) => group
                    .install_and_activate(Epoch(e), &keys(e), Instant(0))
                    .unwrap(),
                Step::Send => {
                    let mut buf = [0u8; 64];
                    group
                        .seal(Instant(0), &mut store, b"dim 40", &mut buf)
                        .unwrap();
                }
            }
        }
        flash.steps()
    };
    // 3 erases + 8 words to commission, 28 saves of 8 words, a few erases.
    assert!(steps > 200, "steps {steps}");
    eprintln!("uncut run: {steps} flash steps; cutting at each with 4 tears");
    let mut runs = 0;
    for at in 0..steps {
        for tear in [
            Tear::Untouched,
            Tear::Partial,
            Tear::Complete,
            Tear::Garbage((at as u32).wrapping_mul(2654435761)),
        ] {
            let o = run(
                &mut Once(Some((at, tear))),
                &format!("cut at {at} {tear:?}"),
            );
            assert_eq!(o.reboots, 1, "cut at {at} {tear:?} did not fire");
            assert_eq!(o.sent, 80);
            runs += 1;
        }
    }
    assert_eq!(runs, steps * 4);
}

#[test]
fn random_multiple_cuts() {
    for seed in 0..300u64 {
        let mut c = Random {
            rng: ChaCha8Rng::seed_from_u64(seed),
            left: 6,
        };
        let o = run(&mut c, &format!("seed {seed}"));
        assert_eq!(o.sent, 80, "seed {seed}");
        assert!(o.reboots >= 1, "seed {seed}: no cut fired");
    }
}

#[test]
fn wear_is_spread_over_pages() {
    let mut flash: SimNorFlash<4, 256, 4> = SimNorFlash::new();
    FlashSequenceStore::commission_at_factory(&mut flash, 0, 4).unwrap();
    let (mut store, _) = FlashSequenceStore::open(&mut flash, 0, 4).unwrap();
    let saves = 1000u64;
    for i in 1..=saves {
        store
            .save(&StoredSequence {
                epoch: Epoch(1),
                sender_id: SID,
                reserved_until: i * 1000,
            })
            .unwrap();
    }
    assert_eq!(
        store.load(),
        Ok(Some(StoredSequence {
            epoch: Epoch(1),
            sender_id: SID,
            reserved_until: saves * 1000,
        }))
    );
    let stats = store.stats();
    assert_eq!(stats.writes as u64, saves);
    let counts = *flash.erase_counts();
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    // 1001 records in 8-slot pages: about 125 page erases, spread evenly.
    assert!(max - min <= 1, "erase counts {counts:?}");
    assert!(min >= 31, "erase counts {counts:?}");
    // Commissioning erased each of the 4 pages once.
    assert_eq!(counts.iter().sum::<u32>(), stats.erases + 4);
}

#[test]
fn blank_is_missing_and_garbage_is_corrupt() {
    let mut flash = Flash::new();
    let (mut s, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    assert_eq!(state, StoreState::Lost(Loss::Blank));
    assert_eq!(s.load(), Err(StoreError::Missing));
    flash.write(40, &[0x12, 0x34, 0x56, 0x78]).unwrap();
    let (mut s, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    assert_eq!(state, StoreState::Lost(Loss::Corrupt));
    assert_eq!(s.load(), Err(StoreError::Corrupt));
    // A sender refuses to start on lost state, and recovers only through a new epoch.
    assert_eq!(
        SequenceCounter::start(&mut s, Epoch(1), SID, 10).unwrap_err(),
        SequenceError::StateLost(StoreError::Corrupt)
    );
    let mut c = SequenceCounter::start_recovered(&mut s, Epoch(3), SID, 10).unwrap();
    assert_eq!(c.take(&mut s).unwrap(), 0);
    let (mut s2, _) = FlashSequenceStore::open(s.into_inner(), 0, PAGES).unwrap();
    let mut c = SequenceCounter::start(&mut s2, Epoch(3), SID, 10).unwrap();
    assert_eq!(c.take(&mut s2).unwrap(), 10);
}

#[test]
fn commissioning_refuses_to_reset_a_valid_store() {
    let mut flash = Flash::new();
    FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES).unwrap();
    // A commissioned store is not commissioned twice.
    assert_eq!(
        FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES),
        Err(SetupError::AlreadyCommissioned)
    );
    let (mut s, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    assert_eq!(state, StoreState::CommissionedEmpty);
    assert_eq!(s.load(), Ok(None));
    let st = StoredSequence {
        epoch: Epoch(2),
        sender_id: SID,
        reserved_until: 77,
    };
    s.save(&st).unwrap();
    assert_eq!(
        FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES),
        Err(SetupError::AlreadyCommissioned)
    );
    let (mut s, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    assert_eq!(state, StoreState::Reserved(st));
    assert_eq!(s.load(), Ok(Some(st)));
}

#[test]
fn a_decayed_newest_record_is_detected_only_by_its_crc() {
    // Outside the power-cut model: flipping a bit of the newest record makes load fall back
    // to the previous record. Documented as not covered; this test pins the behaviour.
    let mut flash = Flash::new();
    FlashSequenceStore::commission_at_factory(&mut flash, 0, PAGES).unwrap();
    let (mut s, _) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    let a = StoredSequence {
        epoch: Epoch(1),
        sender_id: SID,
        reserved_until: 10,
    };
    let b = StoredSequence {
        reserved_until: 20,
        ..a
    };
    s.save(&a).unwrap();
    s.save(&b).unwrap();
    // The first save moved to page 1 (slot 8), the second is slot 9.
    flash.corrupt(256 + 32 + 17, 0x01);
    let (mut s, state) = FlashSequenceStore::open(&mut flash, 0, PAGES).unwrap();
    assert_eq!(state, StoreState::Reserved(a));
    assert_eq!(s.load(), Ok(Some(a)));
}

#[test]
fn geometry_is_checked() {
    assert_eq!(
        FlashSequenceStore::open(Flash::new(), 0, 1).unwrap_err(),
        SetupError::Geometry
    );
    assert_eq!(
        FlashSequenceStore::open(Flash::new(), 128, 2).unwrap_err(),
        SetupError::Geometry
    );
    assert_eq!(
        FlashSequenceStore::open(Flash::new(), 256, 3).unwrap_err(),
        SetupError::Geometry
    );
    assert!(FlashSequenceStore::open(Flash::new(), 256, 2).is_ok());
    // Write units of 1, 8, 64 bytes: slots of 32, 32, 64 bytes.
    assert_eq!(
        FlashSequenceStore::<SimNorFlash<2, 256, 1>>::slot_len(),
        Some(32)
    );
    assert_eq!(
        FlashSequenceStore::<SimNorFlash<2, 256, 8>>::slot_len(),
        Some(32)
    );
    assert_eq!(
        FlashSequenceStore::<SimNorFlash<2, 256, 64>>::slot_len(),
        Some(64)
    );
    assert_eq!(
        FlashSequenceStore::<SimNorFlash<2, 16, 4>>::slot_len(),
        None
    );
    // Every write unit round-trips a save through a reboot.
    fn round_trip<const W: usize>() {
        let mut flash: SimNorFlash<2, 256, W> = SimNorFlash::new();
        FlashSequenceStore::commission_at_factory(&mut flash, 0, 2).unwrap();
        let (mut s, _) = FlashSequenceStore::open(&mut flash, 0, 2).unwrap();
        for i in 0..20u64 {
            s.save(&StoredSequence {
                epoch: Epoch(1),
                sender_id: SID,
                reserved_until: i,
            })
            .unwrap();
        }
        let (mut s, _) = FlashSequenceStore::open(&mut flash, 0, 2).unwrap();
        assert_eq!(s.load().unwrap().unwrap().reserved_until, 19, "W = {W}");
    }
    round_trip::<1>();
    round_trip::<2>();
    round_trip::<8>();
    round_trip::<32>();
    round_trip::<64>();
}
