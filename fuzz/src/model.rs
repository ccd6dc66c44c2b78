//! `record_model`: several senders and receivers ([`Group`]s) driven through an operation list
//! (seal, loss, duplication, reordering, corruption, replay, epoch changes, evictions, sender
//! removals and re-listings, reboots with and without the sequence store) and checked after
//! every step against a reference model:
//!
//! - nothing is delivered that was not sealed (same epoch, sender, seq and plaintext);
//! - no receiver delivers the same `(epoch, sid, seq)` twice;
//! - no `(epoch, sid, seq)` is sealed twice (the keys are a function of the epoch here, so this
//!   is "no nonce used twice under one key");
//! - every refusal bumps exactly its own drop counter.
//!
//! Loss is a record never delivered; duplication, reordering and replay are deliveries of any
//! captured record, any number of times, in any order.

use std::collections::{HashMap, HashSet};

use arbitrary::{Arbitrary, Unstructured};
use group_core::counters::Counters;
use group_core::group::{Admission, Group, GroupConfig};
use group_core::record::{NonceProfile, OpenError};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{KeyError, RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, RecordHeader, SenderId};

use crate::epoch_keys;

/// One step. Indices are taken modulo the number of senders, receivers, nodes or captured
/// records; a step that can't apply (no epoch to send in, ...) is a no-op.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A sender seals a record of `len % 48` bytes; it is captured by the network.
    Seal {
        /// Sender index.
        sender: u8,
        /// Plaintext length.
        len: u8,
    },
    /// The network delivers a captured record (`pkt` counts back from the newest) to a
    /// receiver: delivery, duplication, reordering and replay.
    Deliver {
        /// Captured record, 0 = newest.
        pkt: u8,
        /// Receiver index.
        rx: u8,
    },
    /// As `Deliver`, with one byte flipped.
    Corrupt {
        /// Captured record, 0 = newest.
        pkt: u8,
        /// Receiver index.
        rx: u8,
        /// Byte position (modulo the length).
        pos: u8,
        /// XOR mask (0 is taken as 1).
        xor: u8,
    },
    /// The key server makes a new epoch (nobody holds it yet).
    Rekey,
    /// A node (senders first, then receivers) installs the key server's newest epoch: staged,
    /// replacing an older staged one that was never activated.
    Stage {
        /// Node index.
        node: u8,
    },
    /// A node activates its staged epoch.
    Activate {
        /// Node index.
        node: u8,
    },
    /// Time passes (`ms × 16` milliseconds; the grace period is 2 s).
    Advance {
        /// Amount.
        ms: u8,
    },
    /// A receiver removes a sender (revoked or stale).
    Remove {
        /// Receiver index.
        rx: u8,
        /// Sender index.
        sender: u8,
    },
    /// A receiver is told of a sender (a bundle lists it).
    Add {
        /// Receiver index.
        rx: u8,
        /// Sender index.
        sender: u8,
    },
    /// A sender restarts: its group state is rebuilt from its current epoch's keys and its
    /// sequence store, which is wiped first if `lose`.
    Reboot {
        /// Sender index.
        sender: u8,
        /// The store is lost.
        lose: bool,
    },
    /// A sender that lost its store starts over at 0 in its current epoch. Only applied when
    /// the sender never sealed in that epoch (the key server's guarantee after a loss report).
    Recover {
        /// Sender index.
        sender: u8,
    },
    /// A sender's store starts (or stops) failing its writes.
    FailSaves {
        /// Sender index.
        sender: u8,
        /// Fail from now on.
        fail: bool,
    },
}

/// Most operations decoded from one input.
pub const MAX_OPS: usize = 400;
/// Captured records kept (oldest dropped first).
pub const POOL: usize = 64;
/// Sender IDs of the senders (spread over the words of a 256-bit set).
pub const SIDS: [u8; 4] = [1, 2, 33, 200];
/// Receivers: table sizes 2, 3 and 4; trust-first, trust-first with the compatibility nonce
/// profile, strict.
pub const RECEIVERS: usize = 3;
const GRACE_MS: u64 = 2_000;
const SUITE: Suite = Suite::AES_128_CCM_8;

/// Decodes the operations of an input (stops at the first that does not decode).
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// Encodes operations so that [`decode`] gives them back (for hand-written seeds).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    const VARIANTS: u64 = 12;
    let mut out = Vec::new();
    let tag = |out: &mut Vec<u8>, i: u64| {
        let v = ((i << 32) + VARIANTS - 1) / VARIANTS;
        out.extend_from_slice(&(v as u32).to_le_bytes());
    };
    for op in ops {
        match *op {
            Op::Seal { sender, len } => {
                tag(&mut out, 0);
                out.extend([sender, len]);
            }
            Op::Deliver { pkt, rx } => {
                tag(&mut out, 1);
                out.extend([pkt, rx]);
            }
            Op::Corrupt { pkt, rx, pos, xor } => {
                tag(&mut out, 2);
                out.extend([pkt, rx, pos, xor]);
            }
            Op::Rekey => tag(&mut out, 3),
            Op::Stage { node } => {
                tag(&mut out, 4);
                out.push(node);
            }
            Op::Activate { node } => {
                tag(&mut out, 5);
                out.push(node);
            }
            Op::Advance { ms } => {
                tag(&mut out, 6);
                out.push(ms);
            }
            Op::Remove { rx, sender } => {
                tag(&mut out, 7);
                out.extend([rx, sender]);
            }
            Op::Add { rx, sender } => {
                tag(&mut out, 8);
                out.extend([rx, sender]);
            }
            Op::Reboot { sender, lose } => {
                tag(&mut out, 9);
                out.extend([sender, u8::from(lose)]);
            }
            Op::Recover { sender } => {
                tag(&mut out, 10);
                out.push(sender);
            }
            Op::FailSaves { sender, fail } => {
                tag(&mut out, 11);
                out.extend([sender, u8::from(fail)]);
            }
        }
    }
    out
}

/// The receiver operations the model needs, over any table size.
trait Rx {
    fn open_record(
        &mut self,
        now: Instant,
        record: &mut [u8],
    ) -> Result<(Epoch, SenderId, u64, Vec<u8>), OpenError>;
    fn install(&mut self, epoch: Epoch, keys: &RecordKeys) -> Result<(), KeyError>;
    fn activate(&mut self, now: Instant) -> Result<(), KeyError>;
    fn add(&mut self, sid: SenderId) -> Result<(), SenderId>;
    fn remove(&mut self, sid: SenderId);
    fn counts(&self) -> Counters;
    fn drain(&mut self, now: Instant);
}

impl<const S: usize, const W: usize> Rx for Group<S, W> {
    fn open_record(
        &mut self,
        now: Instant,
        record: &mut [u8],
    ) -> Result<(Epoch, SenderId, u64, Vec<u8>), OpenError> {
        self.open(now, record)
            .map(|d| (d.epoch, d.sender_id, d.seq, d.plaintext.to_vec()))
    }
    fn install(&mut self, epoch: Epoch, keys: &RecordKeys) -> Result<(), KeyError> {
        self.install_epoch(epoch, keys)
    }
    fn activate(&mut self, now: Instant) -> Result<(), KeyError> {
        match self.epochs().staged() {
            Some(e) => self.activate_epoch(e, now),
            None => Ok(()),
        }
    }
    fn add(&mut self, sid: SenderId) -> Result<(), SenderId> {
        self.add_sender(sid)
    }
    fn remove(&mut self, sid: SenderId) {
        self.remove_sender(sid)
    }
    fn counts(&self) -> Counters {
        *self.counters()
    }
    fn drain(&mut self, now: Instant) {
        self.handle_timeout(now);
        while self.poll_event().is_some() {}
    }
}

struct Sender {
    sid: SenderId,
    group: Group,
    store: MemorySequenceStore,
}

fn sender_config(sid: SenderId) -> GroupConfig {
    let mut c = GroupConfig::new(crate::GROUP_ID)
        .with_sender_id(sid)
        .with_grace_ms(GRACE_MS);
    // A small reservation step: restarts skip ahead often and every few records hit the store.
    c.sequence_reserve_step = 3;
    c
}

fn receiver_config(admission: Admission, profile: NonceProfile) -> GroupConfig {
    GroupConfig::new(crate::GROUP_ID)
        .with_admission(admission)
        .with_nonce_profile(profile)
        .with_grace_ms(GRACE_MS)
}

/// The system under test and the reference model.
pub struct World {
    now: Instant,
    latest: u16,
    senders: Vec<Sender>,
    receivers: Vec<Box<dyn Rx>>,
    pool: Vec<Vec<u8>>,
    /// Every record sealed: `(epoch, sid, seq)` → plaintext.
    sealed: HashMap<(Epoch, SenderId, u64), Vec<u8>>,
    /// Per receiver, every record delivered.
    delivered: Vec<HashSet<(Epoch, SenderId, u64)>>,
    /// A log of the steps, printed with a failure.
    log: Vec<String>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// Epoch 1 installed and active everywhere, no record sealed yet.
    pub fn new() -> Self {
        let now = Instant(0);
        let keys = epoch_keys(SUITE, 1);
        let senders = SIDS
            .iter()
            .map(|&s| {
                let sid = SenderId(s);
                let mut group: Group = Group::new(sender_config(sid));
                group
                    .install_and_activate(Epoch(1), &keys, now)
                    .expect("epoch 1");
                Sender {
                    sid,
                    group,
                    store: MemorySequenceStore::commissioned(),
                }
            })
            .collect();
        let mut receivers: Vec<Box<dyn Rx>> = vec![
            Box::new(Group::<2, 2>::new(receiver_config(
                Admission::TrustFirst,
                NonceProfile::Strict,
            ))),
            Box::new(Group::<3, 2>::new(receiver_config(
                Admission::TrustFirst,
                NonceProfile::Compatibility,
            ))),
            Box::new(Group::<4, 2>::new(receiver_config(
                Admission::Strict,
                NonceProfile::Strict,
            ))),
        ];
        for r in &mut receivers {
            r.install(Epoch(1), &keys).expect("epoch 1");
            r.activate(now).expect("epoch 1");
        }
        Self {
            now,
            latest: 1,
            senders,
            receivers,
            pool: Vec::new(),
            sealed: HashMap::new(),
            delivered: vec![HashSet::new(); RECEIVERS],
            log: Vec::new(),
        }
    }

    fn fail(&self, msg: String) -> ! {
        panic!("{msg}\nsteps:\n  {}", self.log.join("\n  "))
    }

    /// Applies one operation and checks the invariants.
    pub fn step(&mut self, op: Op) {
        self.log.push(format!("{op:?}"));
        let ns = self.senders.len();
        let node_count = ns + RECEIVERS;
        match op {
            Op::Seal { sender, len } => {
                let s = &mut self.senders[usize::from(sender) % ns];
                let plaintext: Vec<u8> = (0..len % 48).map(|i| i ^ len).collect();
                let mut buf = [0u8; 128];
                if let Ok(n) = s.group.seal(self.now, &mut s.store, &plaintext, &mut buf) {
                    let h = RecordHeader::parse(&buf[..n]).expect("own record parses");
                    let sid = s.sid;
                    let current = s.group.current_epoch();
                    if h.sender_id != sid || Some(h.epoch) != current {
                        self.fail(format!("sealed {h:?} as {sid:?} in {current:?}"));
                    }
                    let key = (h.epoch, h.sender_id, h.seq);
                    if self.sealed.insert(key, plaintext).is_some() {
                        self.fail(format!("nonce reuse: {key:?} sealed twice"));
                    }
                    self.log.push(format!("  -> sealed {key:?}"));
                    if self.pool.len() == POOL {
                        self.pool.remove(0);
                    }
                    self.pool.push(buf[..n].to_vec());
                }
            }
            Op::Deliver { pkt, rx } => {
                if let Some(mut rec) = self.captured(pkt) {
                    self.deliver(usize::from(rx) % RECEIVERS, &mut rec);
                }
            }
            Op::Corrupt { pkt, rx, pos, xor } => {
                if let Some(mut rec) = self.captured(pkt) {
                    let i = usize::from(pos) % rec.len();
                    rec[i] ^= xor.max(1);
                    self.deliver(usize::from(rx) % RECEIVERS, &mut rec);
                }
            }
            Op::Rekey => self.latest = self.latest.saturating_add(1),
            Op::Stage { node } => {
                let keys = epoch_keys(SUITE, self.latest);
                let e = Epoch(self.latest);
                let n = usize::from(node) % node_count;
                let r = match n.checked_sub(ns) {
                    None => self.senders[n].group.install_epoch(e, &keys),
                    Some(r) => self.receivers[r].install(e, &keys),
                };
                self.log.push(format!("  -> install {e:?}: {r:?}"));
            }
            Op::Activate { node } => {
                let n = usize::from(node) % node_count;
                let now = self.now;
                let r = match n.checked_sub(ns) {
                    None => {
                        let g = &mut self.senders[n].group;
                        match g.epochs().staged() {
                            Some(e) => g.activate_epoch(e, now),
                            None => Ok(()),
                        }
                    }
                    Some(r) => self.receivers[r].activate(now),
                };
                if let Err(e) = r {
                    self.fail(format!("activating the staged epoch failed: {e:?}"));
                }
            }
            Op::Advance { ms } => self.now = self.now.plus_millis(u64::from(ms) * 16),
            Op::Remove { rx, sender } => {
                let sid = self.senders[usize::from(sender) % ns].sid;
                self.receivers[usize::from(rx) % RECEIVERS].remove(sid);
            }
            Op::Add { rx, sender } => {
                let sid = self.senders[usize::from(sender) % ns].sid;
                let _ = self.receivers[usize::from(rx) % RECEIVERS].add(sid);
            }
            Op::Reboot { sender, lose } => {
                let now = self.now;
                let s = &mut self.senders[usize::from(sender) % ns];
                if lose {
                    s.store.lose();
                }
                let current = s.group.current_epoch();
                s.group = Group::new(sender_config(s.sid));
                if let Some(e) = current {
                    s.group
                        .install_and_activate(e, &epoch_keys(SUITE, e.0), now)
                        .expect("reinstall the current epoch");
                }
            }
            Op::Recover { sender } => {
                let s = &mut self.senders[usize::from(sender) % ns];
                if let Some(e) = s.group.current_epoch() {
                    let sid = s.sid;
                    let used = self.sealed.keys().any(|k| k.0 == e && k.1 == sid);
                    if !used {
                        let r = s.group.recover_sending(&mut s.store);
                        self.log.push(format!("  -> recover in {e:?}: {r:?}"));
                    }
                }
            }
            Op::FailSaves { sender, fail } => {
                self.senders[usize::from(sender) % ns]
                    .store
                    .set_fail_saves(fail);
            }
        }
        let now = self.now;
        for s in &mut self.senders {
            s.group.handle_timeout(now);
            while s.group.poll_event().is_some() {}
        }
        for r in &mut self.receivers {
            r.drain(now);
        }
    }

    fn captured(&self, pkt: u8) -> Option<Vec<u8>> {
        let n = self.pool.len();
        let back = usize::from(pkt) % n.max(1);
        n.checked_sub(1 + back).map(|i| self.pool[i].clone())
    }

    fn deliver(&mut self, rx: usize, record: &mut [u8]) {
        let before = self.receivers[rx].counts();
        let result = self.receivers[rx].open_record(self.now, record);
        let after = self.receivers[rx].counts();
        match result {
            Ok((epoch, sid, seq, plaintext)) => {
                let key = (epoch, sid, seq);
                self.log
                    .push(format!("  -> receiver {rx} delivered {key:?}"));
                match self.sealed.get(&key) {
                    None => self.fail(format!("receiver {rx} delivered {key:?}, never sealed")),
                    Some(p) if *p != plaintext => {
                        self.fail(format!("receiver {rx} delivered {key:?} altered"))
                    }
                    Some(_) => {}
                }
                if !self.delivered[rx].insert(key) {
                    self.fail(format!("receiver {rx} delivered {key:?} twice"));
                }
                let mut expect = before;
                expect.accepted += 1;
                if expect != after {
                    self.fail(format!("delivery miscounted: {before:?} -> {after:?}"));
                }
            }
            Err(e) => {
                self.log.push(format!("  -> receiver {rx} refused: {e:?}"));
                let mut expect = before;
                expect.count_drop(&e);
                if expect != after {
                    self.fail(format!("refusal {e:?} miscounted: {before:?} -> {after:?}"));
                }
            }
        }
    }
}

/// Runs an input through a fresh world.
pub fn run(data: &[u8]) {
    let mut w = World::new();
    for op in decode(data) {
        w.step(op);
    }
}
