//! A deterministic in-memory simulation of a multicast group: four senders (a wall switch, a
//! motion sensor, a thermostat and a door contact), five listeners (lights and a logger), a
//! virtual clock in milliseconds, a seeded RNG, and a network that loses, duplicates, reorders,
//! delays and corrupts datagrams. Halfway through, the key server rekeys the group (epoch 1 →
//! 2): it stages the new epoch everywhere, the senders switch over one by one, the listeners make
//! it current later, and the old epoch's grace period ends. Meanwhile senders lose power and
//! reboot with their sequence store intact.
//!
//! Every listener is shadowed by a reference model of what it must do with each intact
//! datagram (wire-format.md §4–§6, trust-first admission):
//! - epoch not held at arrival (never installed, or past its grace period) → `UnknownEpoch`;
//! - first record of a sender in an epoch newer than what the listener knows of it → delivered,
//!   and the sender's window opens there (lower numbers count as seen);
//! - a record in the sender's current or previous epoch → delivered iff it is fresh: not
//!   delivered before, not below the first accepted one (`Replay`), and inside the window
//!   (`seq > top - 64`, else `TooOld`; in the previous epoch `seq > top - 16`, the window a
//!   receiver keeps of a sender's previous epoch, docs/decisions.md "Receiver state");
//! - a record in an epoch older than both → `TooOld`.
//!
//! The simulation asserts, for every datagram copy that reaches a listener:
//! - the listener's verdict is exactly the model's (so every record that arrived intact, inside
//!   its sender's window, after that sender's first accepted record in that epoch, while its
//!   epoch was held, is delivered; and nothing else intact is);
//! - a delivered record was sent exactly once, with this plaintext, and is delivered at most
//!   once per listener; a corrupted copy is never delivered;
//! - after every copy, the listener's view of the senders equals the model's;
//! - counters add up: accepted = deliveries, and each drop reason's count is what the model
//!   predicted plus what corruption caused;
//!
//! and for every record sent, that `(epoch, sid, seq)` was never used before, across reboots.
//!
//! The stories (one `#[test]` each):
//! - a quiet network: nothing lost, nothing reordered; across the rekey and three reboots every
//!   listener hears every record exactly once;
//! - a stormy network, four seeds: the listeners follow the model copy by copy, and the storm
//!   reaches every path (fresh, replay, too old, unknown epoch, corruption);
//! - a record from the old epoch held by the network until just before, exactly at, and after
//!   the end of the grace period;
//! - a listener that missed all of a sender's old-epoch records, then gets a late one;
//! - a reboot: the thermostat resumes at its reservation mark, reusing nothing, and its
//!   records from both sides of the reboot arrive.
//!
//! Run with `--nocapture` to see, per seed, records sent, copies lost, duplicated, corrupted,
//! delivered, and dropped by reason.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Range;

use group_core::counters::Event;
use group_core::group::{Group, GroupConfig, SenderInfo};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, RecordHeader, SenderId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

type Member = Group<16, 2>;

const GROUP_ID: u32 = 0x0000_B1D6;
const WINDOW: u64 = 64;
/// The window kept of a sender's previous epoch (issue 12).
const PREVIOUS_WINDOW: u64 = 16;
const SENDER_NAMES: [&str; 4] = ["wall switch", "motion sensor", "thermostat", "door contact"];
const SIDS: [SenderId; 4] = [SenderId(11), SenderId(12), SenderId(13), SenderId(14)];
const LISTENERS: usize = 5;
/// K: sequence numbers reserved per store write. Small, so a reboot skips only a few numbers
/// and records sent before the crash can still land inside the window.
const RESERVE_STEP: u64 = 16;
const OLD: Epoch = Epoch(1);
const NEW: Epoch = Epoch(2);

fn keys(suite: Suite, epoch: Epoch) -> RecordKeys {
    let secret = EpochSecret([0x30 + epoch.0 as u8; 32]);
    native_keys(GROUP_ID, epoch, suite, &secret).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The script of a story.

/// How the network treats each copy of a datagram to each listener.
#[derive(Clone, Debug)]
struct Network {
    loss: f64,
    duplicate: f64,
    corrupt: f64,
    delay_ms: Range<u64>,
    /// Probability that a copy is held back much longer (a straggler).
    straggler: f64,
    straggler_delay_ms: Range<u64>,
}

impl Network {
    /// Every datagram arrives once, intact, after the same delay: nothing is reordered.
    fn calm() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            delay_ms: 5..6,
            straggler: 0.0,
            straggler_delay_ms: 0..1,
        }
    }

    /// 10% loss, 10% duplicates, 5% corrupted copies, reordering by random delays, and 2% of
    /// copies held back up to 1.5 s.
    fn stormy() -> Self {
        Self {
            loss: 0.10,
            duplicate: 0.10,
            corrupt: 0.05,
            delay_ms: 1..40,
            straggler: 0.02,
            straggler_delay_ms: 200..1500,
        }
    }
}

/// A sender loses power at `at` and boots again `down_ms` later.
#[derive(Clone, Debug)]
struct Crash {
    sender: usize,
    at: u64,
    down_ms: u64,
}

/// The first record `sender` sends within `sent_in` is held by the network and reaches every
/// listener at `arrives_at` (its random fate is not drawn).
#[derive(Clone, Debug)]
struct Hold {
    sender: usize,
    sent_in: Range<u64>,
    arrives_at: u64,
}

#[derive(Clone, Debug)]
struct Story {
    seed: u64,
    suite: Suite,
    /// Senders stop sending here; the network then drains.
    end_ms: u64,
    /// Probability that a running sender sends a record in a given millisecond.
    send_per_ms: f64,
    /// The key server stages epoch 2 in every member.
    install_new_at: u64,
    /// Each sender switches to epoch 2 (staggered).
    senders_switch_at: [u64; 4],
    /// The listeners make epoch 2 current; epoch 1 stays receivable for `grace_ms`.
    listeners_switch_at: u64,
    grace_ms: u64,
    crashes: Vec<Crash>,
    holds: Vec<Hold>,
    /// `(listener, sender, epoch)`: that listener hears nothing of that sender in that epoch
    /// (held records excepted).
    deaf: Vec<(usize, usize, Epoch)>,
    network: Network,
}

impl Story {
    /// The common timeline: 3 s of traffic, epoch 2 staged at 1.0 s, senders switch at 1.1,
    /// 1.2, 1.3 and 1.4 s, listeners at 1.5 s, epoch 1 retired at 2.0 s. The thermostat
    /// reboots in epoch 1, the door contact reboots while epoch 2 is staged but not yet used,
    /// and the wall switch reboots in epoch 2.
    fn rekey_with_reboots(seed: u64, network: Network) -> Self {
        let suites = [Suite::AES_128_CCM_8, Suite::AES_128_CCM, Suite::AES_128_GCM];
        Self {
            seed,
            suite: suites[(seed % 3) as usize],
            end_ms: 3_000,
            send_per_ms: 0.1,
            install_new_at: 1_000,
            senders_switch_at: [1_100, 1_200, 1_300, 1_400],
            listeners_switch_at: 1_500,
            grace_ms: 500,
            crashes: vec![
                Crash {
                    sender: 2,
                    at: 600,
                    down_ms: 40,
                },
                Crash {
                    sender: 3,
                    at: 1_150,
                    down_ms: 100,
                },
                Crash {
                    sender: 0,
                    at: 1_700,
                    down_ms: 60,
                },
            ],
            holds: vec![],
            deaf: vec![],
            network,
        }
    }

    /// Whether a listener holds `epoch` at time `t`, from the script alone.
    fn listener_holds(&self, epoch: Epoch, t: u64) -> bool {
        match epoch {
            OLD => t < self.listeners_switch_at + self.grace_ms,
            NEW => t >= self.install_new_at,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model of one listener.

#[derive(Clone, Debug)]
struct WindowModel {
    epoch: Epoch,
    first: u64,
    top: u64,
    seen: BTreeSet<u64>,
}

impl WindowModel {
    fn open(epoch: Epoch, seq: u64) -> Self {
        Self {
            epoch,
            first: seq,
            top: seq,
            seen: BTreeSet::from([seq]),
        }
    }

    fn verdict(&self, seq: u64) -> Result<(), OpenError> {
        self.verdict_within(seq, WINDOW)
    }

    /// The verdict of a window `size` records wide (the previous epoch's: 16, issue 12).
    fn verdict_within(&self, seq: u64, size: u64) -> Result<(), OpenError> {
        if seq + size <= self.top {
            Err(OpenError::TooOld)
        } else if self.seen.contains(&seq) || seq < self.first {
            Err(OpenError::Replay)
        } else {
            Ok(())
        }
    }

    fn accept(&mut self, seq: u64) {
        self.seen.insert(seq);
        self.top = self.top.max(seq);
    }
}

#[derive(Clone, Debug, Default)]
struct SenderModel {
    current: Option<WindowModel>,
    previous: Option<WindowModel>,
}

/// What the model says about an intact record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Deliver: the sender's window in this epoch exists and the record is fresh in it. This is
    /// the delivery the task's liveness rule requires.
    Fresh,
    /// Deliver: first record of this sender in an epoch newer than any seen from it.
    FirstContact,
    Refuse(OpenError),
}

#[derive(Debug, Default)]
struct ListenerModel {
    senders: BTreeMap<SenderId, SenderModel>,
}

impl ListenerModel {
    fn verdict(&self, story: &Story, t: u64, epoch: Epoch, sid: SenderId, seq: u64) -> Verdict {
        if !story.listener_holds(epoch, t) {
            return Verdict::Refuse(OpenError::UnknownEpoch(epoch));
        }
        let Some(s) = self.senders.get(&sid) else {
            return Verdict::FirstContact;
        };
        let verdict = match (&s.current, &s.previous) {
            (Some(c), _) if c.epoch == epoch => c.verdict(seq),
            (Some(c), _) if epoch > c.epoch => return Verdict::FirstContact,
            // Of its previous epoch a receiver keeps the 16 numbers up to the highest.
            (_, Some(p)) if p.epoch == epoch => p.verdict_within(seq, PREVIOUS_WINDOW),
            _ => return Verdict::Refuse(OpenError::TooOld),
        };
        match verdict {
            Ok(()) => Verdict::Fresh,
            Err(e) => Verdict::Refuse(e),
        }
    }

    fn deliver(&mut self, epoch: Epoch, sid: SenderId, seq: u64) {
        let s = self.senders.entry(sid).or_default();
        match &mut s.current {
            Some(c) if c.epoch == epoch => c.accept(seq),
            Some(c) if epoch > c.epoch => {
                s.previous = s.current.replace(WindowModel::open(epoch, seq));
            }
            Some(_) => s
                .previous
                .as_mut()
                .filter(|p| p.epoch == epoch)
                .expect("model: delivery into an epoch it has no window for")
                .accept(seq),
            None => s.current = Some(WindowModel::open(epoch, seq)),
        }
    }

    fn infos(&self) -> Vec<SenderInfo> {
        self.senders
            .iter()
            .map(|(sid, s)| SenderInfo {
                sender_id: *sid,
                current: s.current.as_ref().map(|w| (w.epoch, Some(w.top))),
                previous: s.previous.as_ref().map(|w| (w.epoch, Some(w.top))),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The members.

struct SenderNode {
    name: &'static str,
    sid: SenderId,
    /// Survives reboots (flash).
    store: MemorySequenceStore,
    /// Lost on reboot (RAM). `None` while powered off.
    group: Option<Member>,
    boots_at: Option<u64>,
    sent: u64,
}

impl SenderNode {
    /// Powers on at `t` and fetches from the key server whatever it currently hands this sender.
    fn boot(&mut self, story: &Story, index: usize, t: u64) {
        let mut config = GroupConfig::new(GROUP_ID)
            .with_sender_id(self.sid)
            .with_grace_ms(story.grace_ms);
        config.sequence_reserve_step = RESERVE_STEP;
        let mut g = Member::new(config);
        let now = Instant(t);
        g.install_and_activate(OLD, &keys(story.suite, OLD), now)
            .unwrap();
        if t >= story.install_new_at {
            g.install_epoch(NEW, &keys(story.suite, NEW)).unwrap();
        }
        if t >= story.senders_switch_at[index] {
            g.activate_epoch(NEW, now).unwrap();
        }
        self.group = Some(g);
        self.boots_at = None;
    }
}

struct ListenerNode {
    group: Member,
    model: ListenerModel,
    delivered: BTreeSet<(Epoch, SenderId, u64)>,
    copies: u64,
}

/// One copy of a datagram in the network, ordered by arrival time, then by when it was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: u64,
    order: u64,
    listener: usize,
    record: usize,
    /// The bit the network flips, if it corrupts this copy.
    flip: Option<usize>,
}

/// A record as it left its sender.
struct Sent {
    epoch: Epoch,
    sid: SenderId,
    seq: u64,
    plaintext: Vec<u8>,
    bytes: Vec<u8>,
}

// ---------------------------------------------------------------------------------------------
// What happened.

#[derive(Debug, Default)]
struct Report {
    sent: u64,
    sent_by: BTreeMap<&'static str, u64>,
    copies_lost: u64,
    copies_duplicated: u64,
    copies_corrupted: u64,
    copies_arrived: u64,
    delivered: u64,
    delivered_fresh: u64,
    delivered_first_contact: u64,
    /// Drops of intact copies, by reason (as the model predicted them).
    refused_intact: BTreeMap<&'static str, u64>,
    /// Drops of corrupted copies, by reason.
    refused_corrupted: BTreeMap<&'static str, u64>,
    /// Every record sent: (ms, epoch, sid, seq).
    sent_log: Vec<(u64, Epoch, SenderId, u64)>,
    /// Outcome per record and listener: "delivered" or the drop reason, for each copy.
    fates: HashMap<(Epoch, SenderId, u64), Vec<Vec<&'static str>>>,
    /// The record each hold picked, if it sent one.
    held: Vec<Option<(Epoch, SenderId, u64)>>,
}

impl Report {
    fn print(&self, story: &Story) {
        println!(
            "seed {} suite {:?}: {} records sent {:?}",
            story.seed, story.suite, self.sent, self.sent_by
        );
        println!(
            "  network: {} copies arrived ({} corrupted), {} lost, {} duplicated",
            self.copies_arrived, self.copies_corrupted, self.copies_lost, self.copies_duplicated
        );
        println!(
            "  delivered {} (fresh in a window: {}, first contact in an epoch: {})",
            self.delivered, self.delivered_fresh, self.delivered_first_contact
        );
        println!("  dropped, intact copies:    {:?}", self.refused_intact);
        println!("  dropped, corrupted copies: {:?}", self.refused_corrupted);
    }
}

fn bump(m: &mut BTreeMap<&'static str, u64>, k: &'static str) {
    *m.entry(k).or_default() += 1;
}

// ---------------------------------------------------------------------------------------------
// The simulation.

fn run(story: &Story) -> Report {
    let mut rng = ChaCha8Rng::seed_from_u64(story.seed);
    let mut report = Report {
        held: vec![None; story.holds.len()],
        ..Report::default()
    };

    let mut senders: Vec<SenderNode> = (0..4)
        .map(|i| SenderNode {
            name: SENDER_NAMES[i],
            sid: SIDS[i],
            store: MemorySequenceStore::commissioned(),
            group: None,
            boots_at: None,
            sent: 0,
        })
        .collect();
    for (i, s) in senders.iter_mut().enumerate() {
        s.boot(story, i, 0);
    }
    let mut listeners: Vec<ListenerNode> = (0..LISTENERS)
        .map(|_| {
            let mut g = Member::new(GroupConfig::new(GROUP_ID).with_grace_ms(story.grace_ms));
            g.install_and_activate(OLD, &keys(story.suite, OLD), Instant(0))
                .unwrap();
            ListenerNode {
                group: g,
                model: ListenerModel::default(),
                delivered: BTreeSet::new(),
                copies: 0,
            }
        })
        .collect();

    // Everything ever sent, and (epoch, sid, seq) -> index: the no-reuse ledger.
    let mut sent: Vec<Sent> = Vec::new();
    let mut ledger: HashMap<(Epoch, SenderId, u64), usize> = HashMap::new();
    let mut in_flight: BinaryHeap<Reverse<InFlight>> = BinaryHeap::new();
    let mut order = 0u64;

    let mut t = 0u64;
    loop {
        // 1. The network delivers what is due.
        while let Some(Reverse(c)) = in_flight.peek().copied() {
            if c.at > t {
                break;
            }
            in_flight.pop();
            let node = &mut listeners[c.listener];
            arrive(
                story,
                c.listener,
                node,
                &sent[c.record],
                c.flip,
                t,
                &mut report,
            );
        }

        // 2. The script: rekey, switch-overs, crashes and reboots.
        if t == story.install_new_at {
            for s in senders.iter_mut() {
                if let Some(g) = s.group.as_mut() {
                    g.install_epoch(NEW, &keys(story.suite, NEW)).unwrap();
                }
            }
            for l in listeners.iter_mut() {
                l.group.install_epoch(NEW, &keys(story.suite, NEW)).unwrap();
            }
        }
        for (i, s) in senders.iter_mut().enumerate() {
            if t == story.senders_switch_at[i]
                && let Some(g) = s.group.as_mut()
            {
                g.activate_epoch(NEW, Instant(t)).unwrap();
            }
        }
        if t == story.listeners_switch_at {
            for l in listeners.iter_mut() {
                l.group.activate_epoch(NEW, Instant(t)).unwrap();
            }
        }
        for c in &story.crashes {
            if t == c.at {
                let s = &mut senders[c.sender];
                s.group = None; // RAM is gone; the store is not.
                s.boots_at = Some(t + c.down_ms);
            }
        }
        for (i, s) in senders.iter_mut().enumerate() {
            if s.boots_at == Some(t) {
                s.boot(story, i, t);
            }
        }

        // 3. Timers, as a driver would run them.
        for g in senders
            .iter_mut()
            .filter_map(|s| s.group.as_mut())
            .chain(listeners.iter_mut().map(|l| &mut l.group))
        {
            if g.poll_timeout().is_some_and(|d| d <= Instant(t)) {
                g.handle_timeout(Instant(t));
            }
        }

        // 4. Senders that are up send now and then.
        if t < story.end_ms {
            for (i, s) in senders.iter_mut().enumerate() {
                let Some(g) = s.group.as_mut() else { continue };
                if !rng.random_bool(story.send_per_ms) {
                    continue;
                }
                s.sent += 1;
                let mut plaintext = format!("{} #{}:", s.name, s.sent).into_bytes();
                let extra = rng.random_range(0..24);
                plaintext.extend((0..extra).map(|_| rng.random::<u8>()));
                let mut buf = vec![0u8; plaintext.len() + 64];
                let n = g
                    .seal(Instant(t), &mut s.store, &plaintext, &mut buf)
                    .unwrap();
                buf.truncate(n);
                let h = RecordHeader::parse(&buf).unwrap();
                assert_eq!(h.sender_id, s.sid);
                assert_eq!(Some(h.epoch), g.current_epoch());
                let key = (h.epoch, h.sender_id, h.seq);
                let idx = sent.len();
                assert!(
                    ledger.insert(key, idx).is_none(),
                    "seed {}: {} reused {key:?}",
                    story.seed,
                    s.name
                );
                sent.push(Sent {
                    epoch: h.epoch,
                    sid: h.sender_id,
                    seq: h.seq,
                    plaintext,
                    bytes: buf,
                });
                report.sent += 1;
                report.sent_log.push((t, h.epoch, h.sender_id, h.seq));
                bump(&mut report.sent_by, s.name);

                let hold = story
                    .holds
                    .iter()
                    .position(|hd| hd.sender == i && hd.sent_in.contains(&t));
                let hold = hold.filter(|&k| report.held[k].is_none());
                if let Some(k) = hold {
                    report.held[k] = Some(key);
                    for l in 0..LISTENERS {
                        order += 1;
                        let at = story.holds[k].arrives_at;
                        in_flight.push(Reverse(InFlight {
                            at,
                            order,
                            listener: l,
                            record: idx,
                            flip: None,
                        }));
                    }
                    continue;
                }
                for l in 0..LISTENERS {
                    let net = &story.network;
                    if story.deaf.contains(&(l, i, h.epoch)) || rng.random_bool(net.loss) {
                        report.copies_lost += 1;
                        continue;
                    }
                    let copies = if rng.random_bool(net.duplicate) {
                        report.copies_duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let delay = if rng.random_bool(net.straggler) {
                            rng.random_range(net.straggler_delay_ms.clone())
                        } else {
                            rng.random_range(net.delay_ms.clone())
                        };
                        let flip = rng
                            .random_bool(net.corrupt)
                            .then(|| rng.random_range(0..n * 8));
                        order += 1;
                        in_flight.push(Reverse(InFlight {
                            at: t + delay,
                            order,
                            listener: l,
                            record: idx,
                            flip,
                        }));
                    }
                }
            }
        }

        if t >= story.end_ms && in_flight.is_empty() {
            break;
        }
        t += 1;
    }

    // Final accounting, listener by listener.
    for (l, node) in listeners.iter_mut().enumerate() {
        let c = *node.group.counters();
        assert_eq!(c.accepted, node.delivered.len() as u64, "listener {l}");
        assert_eq!(c.accepted + c.dropped(), node.copies, "listener {l}");
        // The old epoch was retired once, after its grace period, and nothing else happened.
        assert_eq!(
            node.group.poll_event(),
            Some(Event::EpochRetired { epoch: OLD }),
            "listener {l}"
        );
        assert_eq!(node.group.poll_event(), None, "listener {l}");
        assert_eq!(node.group.epochs().previous(), None);
        assert_eq!(node.group.current_epoch(), Some(NEW));
    }
    let mut by_reason: BTreeMap<&'static str, u64> = BTreeMap::new();
    for node in &listeners {
        for (reason, n) in node.group.counters().drop_reasons() {
            if n > 0 {
                *by_reason.entry(reason).or_default() += n;
            }
        }
    }
    let mut expected = report.refused_intact.clone();
    for (k, v) in &report.refused_corrupted {
        *expected.entry(k).or_default() += v;
    }
    assert_eq!(by_reason, expected, "drop counters vs. the model's reasons");
    for (i, s) in senders.iter().enumerate() {
        assert_eq!(
            s.group.as_ref().and_then(|g| g.current_epoch()),
            Some(NEW),
            "{} ends in epoch 2",
            SENDER_NAMES[i]
        );
    }
    report
}

/// One copy of `record` reaches a listener at `t` (with one bit flipped if `flip`).
fn arrive(
    story: &Story,
    l: usize,
    node: &mut ListenerNode,
    record: &Sent,
    flip: Option<usize>,
    t: u64,
    report: &mut Report,
) {
    node.copies += 1;
    report.copies_arrived += 1;
    let mut buf = record.bytes.clone();
    if let Some(bit) = flip {
        buf[bit / 8] ^= 1 << (bit % 8);
        report.copies_corrupted += 1;
    }
    let key = (record.epoch, record.sid, record.seq);
    let verdict = flip.is_none().then(|| {
        node.model
            .verdict(story, t, record.epoch, record.sid, record.seq)
    });
    let outcome = node
        .group
        .open(Instant(t), &mut buf)
        .map(|d| (d.epoch, d.sender_id, d.seq, d.plaintext.to_vec()));
    let fate = match outcome {
        Ok((epoch, sid, seq, plaintext)) => {
            let ctx = format!("seed {} t={t} {key:?}", story.seed);
            assert_eq!(flip, None, "{ctx}: a corrupted copy was delivered");
            assert_eq!(
                (epoch, sid, seq),
                key,
                "{ctx}: delivered under another name"
            );
            assert_eq!(plaintext, record.plaintext, "{ctx}: plaintext differs");
            assert!(node.delivered.insert(key), "{ctx}: delivered twice");
            match verdict {
                Some(Verdict::Fresh) => report.delivered_fresh += 1,
                Some(Verdict::FirstContact) => report.delivered_first_contact += 1,
                other => panic!("{ctx}: delivered, but the model says {other:?}"),
            }
            report.delivered += 1;
            node.model.deliver(epoch, sid, seq);
            "delivered"
        }
        Err(e) => {
            match verdict {
                Some(Verdict::Refuse(expected)) => assert_eq!(
                    e, expected,
                    "seed {} t={t} {key:?}: refused for another reason",
                    story.seed
                ),
                Some(v) => panic!(
                    "seed {} t={t} {key:?}: intact, model says {v:?}, but refused: {e:?}",
                    story.seed
                ),
                None => {}
            }
            let bucket = if flip.is_some() {
                &mut report.refused_corrupted
            } else {
                &mut report.refused_intact
            };
            bump(bucket, e.reason());
            e.reason()
        }
    };
    report
        .fates
        .entry(key)
        .or_insert_with(|| vec![Vec::new(); LISTENERS])[l]
        .push(fate);
    // The listener's view of the senders is the model's, after every copy.
    let mut actual: Vec<SenderInfo> = node.group.senders().collect();
    actual.sort_by_key(|s| s.sender_id);
    assert_eq!(
        actual,
        node.model.infos(),
        "seed {} t={t}: sender state",
        story.seed
    );
}

/// The outcomes of `key` at every listener: "delivered" or the drop reasons of its copies.
fn fate_of(report: &Report, key: (Epoch, SenderId, u64)) -> &Vec<Vec<&'static str>> {
    &report.fates[&key]
}

// ---------------------------------------------------------------------------------------------
// The stories.

/// A quiet evening: the network neither loses nor reorders anything. The group rekeys and three
/// senders reboot, and still every listener hears every record exactly once: nothing is dropped.
#[test]
fn quiet_network_everyone_hears_everything_across_rekey_and_reboots() {
    for seed in [1, 2, 3] {
        let story = Story::rekey_with_reboots(seed, Network::calm());
        let report = run(&story);
        report.print(&story);
        assert!(report.sent > 1_000, "seed {seed}: {} sent", report.sent);
        assert_eq!(report.delivered, report.sent * LISTENERS as u64);
        assert!(
            report.refused_intact.is_empty(),
            "{:?}",
            report.refused_intact
        );
        // Each sender's first record (and nothing else) opens its window, once per epoch.
        assert_eq!(report.delivered_first_contact, 4 * 2 * LISTENERS as u64);
    }
}

/// A stormy night: 10% loss, 10% duplicates, 5% corruption, reordering and stragglers, during
/// the rekey and the reboots. The listeners follow the model copy by copy.
#[test]
fn stormy_network_listeners_follow_the_model() {
    let mut totals = Report::default();
    for seed in 1..=4 {
        let story = Story::rekey_with_reboots(seed, Network::stormy());
        let report = run(&story);
        report.print(&story);
        // Most records get through: loss and corruption cost about 15% of the copies.
        let possible = report.sent * LISTENERS as u64;
        assert!(
            report.delivered * 100 >= possible * 75,
            "seed {seed}: {} of {possible}",
            report.delivered
        );
        totals.delivered_fresh += report.delivered_fresh;
        totals.copies_corrupted += report.copies_corrupted;
        for (k, v) in report.refused_intact {
            *totals.refused_intact.entry(k).or_default() += v;
        }
    }
    // The storm exercised every path the model distinguishes.
    assert!(totals.delivered_fresh > 0);
    assert!(totals.copies_corrupted > 0);
    for reason in ["replay", "too_old", "unknown_epoch"] {
        assert!(
            totals.refused_intact.get(reason).is_some_and(|&n| n > 0),
            "no intact copy was refused as {reason}: {:?}",
            totals.refused_intact
        );
    }
}

/// The motion sensor sends one record just before it switches to epoch 2, and the network
/// sits on it. The listeners make epoch 2 current at 1500 ms, so epoch 1 is receivable until
/// 2000 ms (exclusive). Released at 1450 ms or 1999 ms, the record is still inside the sensor's
/// old window and its epoch is held: delivered everywhere. Released at 2000 ms or later, it is
/// refused everywhere as an unknown epoch.
#[test]
fn a_record_from_the_old_epoch_arrives_late() {
    for (arrives_at, expect) in [
        (1_450, "delivered"),
        (1_999, "delivered"),
        (2_000, "unknown_epoch"),
        (2_600, "unknown_epoch"),
    ] {
        let mut story = Story::rekey_with_reboots(7, Network::calm());
        story.holds = vec![Hold {
            sender: 1,
            sent_in: 1_150..1_200,
            arrives_at,
        }];
        assert_eq!(story.listeners_switch_at + story.grace_ms, 2_000);
        let report = run(&story);
        let key = report.held[0].expect("the motion sensor sent in [1150, 1200)");
        assert_eq!(key.0, OLD);
        let fate = fate_of(&report, key);
        assert_eq!(
            fate,
            &vec![vec![expect]; LISTENERS],
            "arrives at {arrives_at}"
        );
        let lost = if expect == "delivered" { 0 } else { 1 };
        assert_eq!(
            report.delivered,
            (report.sent - lost) * LISTENERS as u64,
            "only the held record may be missing"
        );
    }
}

/// The cellar light (listener 0) hears nothing the door contact says in epoch 1. The door
/// contact switches to epoch 2 at 1400 ms; one record it sent just before is held by the
/// network until 1600 ms. By then every listener has the door contact's epoch-2 records. The
/// others still hold its epoch-1 window as its previous one and deliver the late record; the
/// cellar light never had an epoch-1 window for it, the record is from an epoch older than the
/// door contact's, and it is refused as too old.
#[test]
fn a_listener_that_missed_a_senders_old_epoch_refuses_its_late_records() {
    let mut story = Story::rekey_with_reboots(5, Network::calm());
    story.deaf = vec![(0, 3, OLD)];
    story.holds = vec![Hold {
        sender: 3,
        sent_in: 1_350..1_400,
        arrives_at: 1_600,
    }];
    let report = run(&story);
    let key = report.held[0].expect("the door contact sent in [1350, 1400)");
    assert_eq!(key.0, OLD);
    let mut expected = vec![vec!["delivered"]; LISTENERS];
    expected[0] = vec!["too_old"];
    assert_eq!(fate_of(&report, key), &expected);
    let door_contact_old = report
        .sent_log
        .iter()
        .filter(|(_, e, s, _)| *e == OLD && *s == SIDS[3])
        .count() as u64;
    assert_eq!(
        report.delivered,
        report.sent * LISTENERS as u64 - door_contact_old,
        "everything else reaches everyone"
    );
}

/// The thermostat reboots with its sequence store intact. It resumes above every number it
/// reserved before the crash, so nothing is reused; the records it sent just before the crash
/// (still in flight) and just after both arrive, since the skip (at most K = 16) is inside the
/// window.
#[test]
fn a_reboot_skips_ahead_and_never_reuses() {
    let mut story = Story::rekey_with_reboots(11, Network::calm());
    story.holds = vec![Hold {
        sender: 2,
        sent_in: 560..600,
        arrives_at: 690,
    }];
    let report = run(&story);
    let held = report.held[0].expect("the thermostat sent in [560, 600)");
    assert_eq!(fate_of(&report, held), &vec![vec!["delivered"]; LISTENERS]);

    let thermostat: Vec<(u64, u64)> = report
        .sent_log
        .iter()
        .filter(|(_, e, s, _)| *e == OLD && *s == SIDS[2])
        .map(|(t, _, _, q)| (*t, *q))
        .collect();
    let last_before = thermostat.iter().rfind(|(t, _)| *t < 600).unwrap().1;
    let first_after = thermostat.iter().find(|(t, _)| *t >= 640).unwrap().1;
    assert!(first_after > last_before);
    assert_eq!(
        first_after % RESERVE_STEP,
        0,
        "resumes at a reservation mark"
    );
    assert!(
        first_after - last_before <= RESERVE_STEP,
        "skips at most K numbers"
    );
    // Before and after the reboot, it counts up one by one.
    for w in thermostat.windows(2) {
        if w[1].0 < 600 || w[0].0 >= 640 {
            assert_eq!(w[1].1, w[0].1 + 1, "{w:?}");
        }
    }
    // Every one of its records was delivered everywhere.
    for (_, seq) in &thermostat {
        assert_eq!(
            fate_of(&report, (OLD, SIDS[2], *seq)),
            &vec![vec!["delivered"]; LISTENERS]
        );
    }
}
