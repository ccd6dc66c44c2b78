//! The adversarial simulation campaign (issue 10): many seeds of one key server and several
//! members on an in-memory network with a virtual clock, under 30% loss, duplication,
//! reordering and corruption, with an attacker who replays, splices and forges records and
//! key-distribution messages (captured joins, acks and leaves included), crashes and restarts of
//! senders, receivers and the key server, removals and rekeys mid-stream.
//!
//! After every step it checks:
//! - no record is accepted that was not sealed (same epoch, sender ID, sequence number and
//!   payload), and none is accepted twice by one node (across its reboots too);
//! - no nonce (epoch, sender ID, sequence number) is sealed twice (the key server's tap checks
//!   that an epoch is never handed out with two secrets and a sender ID never to two devices in
//!   one epoch, so (epoch, sid, seq) names the nonce and its key);
//! - a removed member (which keeps its state and keys and stops listening to the key server)
//!   accepts nothing of an epoch created after its removal;
//! - every copy of a sealed record that arrives intact is delivered, unless the receiver's state
//!   says why not: already delivered, below where its window started (trust-first), older than
//!   the window or than the sender's epochs, an epoch it does not hold, a sender ID removed since
//!   (a revoked or rebooted sealer), or its own sender ID;
//!
//! and at the end of each seed, with the attacker gone and the network repaired, that every
//! member that was not removed gets back into the group's current epoch and receives every live
//! sender's records.
//!
//! `CAMPAIGN_SEEDS=N` sets the number of seeds (default 100, so that `cargo test` stays quick;
//! CI's `campaign` step runs 1,000), `CAMPAIGN_SEED=S` runs one seed with its whole step log. A
//! failing seed prints itself with the command that replays it.

mod keydist_support;

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use group_core::keydist::{GroupSpec, Role};
use group_core::record::OpenError;
use group_core::suite::Suite;
use group_core::wire::{Epoch, HEADER_LEN, RecordHeader};
use keydist_support::{Kind, NetParams, Packet, Sim, TestRng, To};

const GID: u32 = 0x0CA4_9A16;
/// The members' replay window (the default `Member`: 2 words of 32 records).
const WINDOW: u64 = 64;
/// The window a receiver keeps of a sender's previous epoch (issue 12).
const PREVIOUS_WINDOW: u64 = 16;
/// Chaos steps per seed.
const STEPS: usize = 160;
/// Captured messages kept by the attacker (oldest replaced at random beyond that).
const CAPTURE: usize = 64;

fn net() -> NetParams {
    NetParams {
        loss: 0.3,
        dup: 0.1,
        min_delay: 1,
        max_delay: 150,
    }
}

/// Who sealed a record, and what.
struct Sealed {
    device: usize,
    /// The sealer's generation (bumped by a reboot or a revocation): a receiver may refuse the
    /// record's sender ID once the sealer moved on.
    generation: u32,
    payload: Vec<u8>,
}

/// A record copy in flight, managed by the campaign (not by the simulation's network).
struct Flight {
    at: u64,
    to: usize,
    bytes: Vec<u8>,
    /// `Some` if these are exactly the bytes of a sealed record.
    intact: Option<(u16, u8, u64)>,
}

#[derive(Default)]
struct Stats {
    sealed: u64,
    delivered: u64,
    refused: u64,
    attacks: u64,
    kd_replays: u64,
    crashes: u64,
    reboots: u64,
    revocations: u64,
    rekeys: u64,
    leaves: u64,
}

struct Campaign {
    seed: u64,
    sim: Sim,
    rng: TestRng,
    sealed: HashMap<(u16, u8, u64), Sealed>,
    flights: Vec<Flight>,
    records: Vec<Vec<u8>>,
    kd: Vec<(To, Vec<u8>)>,
    kd_seen: u64,
    /// Per node: every (epoch, sid, seq) it accepted, over all its boots.
    delivered: Vec<HashSet<(u16, u8, u64)>>,
    /// Per node, this boot: the first sequence number accepted per (epoch, sid).
    first: Vec<HashMap<(u16, u8), u64>>,
    generation: Vec<u32>,
    /// Per node: the newest epoch the key server had when it was revoked.
    revoked_at: Vec<Option<u16>>,
    log: Vec<String>,
    stats: Stats,
}

impl Campaign {
    fn new(seed: u64) -> Self {
        let mut sim = Sim::new(seed, net(), GID);
        let mut rng = TestRng::seeded(seed ^ 0xA77A_C4E5);
        let suite =
            [Suite::AES_128_CCM, Suite::AES_128_CCM_8, Suite::AES_128_GCM][rng.below(3) as usize];
        let activation = 300 + rng.below(1_500) as u32;
        let grace = 1_000 + rng.below(4_000) as u32;
        sim.create_group(
            GroupSpec::new(GID, suite)
                .with_activation_delay_ms(activation)
                .with_grace_ms(grace),
        );
        let n = 3 + rng.below(3) as usize;
        for id in 1..=n {
            let role = if id == n && rng.chance(0.5) {
                Role::Listener
            } else {
                Role::Sender
            };
            sim.add_device(id as u32, role);
        }
        let log = vec![format!(
            "seed {seed}: {suite:?}, {n} devices, activation {activation} ms, grace {grace} ms"
        )];
        Self {
            seed,
            sim,
            rng,
            sealed: HashMap::new(),
            flights: Vec::new(),
            records: Vec::new(),
            kd: Vec::new(),
            kd_seen: 0,
            delivered: vec![HashSet::new(); n],
            first: vec![HashMap::new(); n],
            generation: vec![0; n],
            revoked_at: vec![None; n],
            log,
            stats: Stats::default(),
        }
    }

    fn note(&mut self, what: String) {
        self.log.push(format!("t={} {what}", self.sim.now));
    }

    fn fail(&self, what: String) -> String {
        let keep = if std::env::var_os("CAMPAIGN_SEED").is_some() {
            usize::MAX
        } else {
            40
        };
        let tail: Vec<&String> = self.log.iter().rev().take(keep).collect();
        let mut s = format!(
            "seed {} failed at t={}: {what}\nlast steps (newest first):\n",
            self.seed, self.sim.now
        );
        for l in tail {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    fn live(&self) -> Vec<usize> {
        (0..self.sim.nodes.len())
            .filter(|&i| self.revoked_at[i].is_none())
            .collect()
    }

    fn join(&mut self, i: usize) {
        let now = self.sim.now();
        let _ = self.sim.nodes[i].member.join(now);
    }

    // ---- records ------------------------------------------------------------------------

    fn seal(&mut self, from: usize) -> Result<(), String> {
        let payload =
            format!("seed {} rec {} from {from}", self.seed, self.stats.sealed).into_bytes();
        let Ok(rec) = self.sim.seal(from, &payload) else {
            return Ok(());
        };
        let h = RecordHeader::parse(&rec).map_err(|e| self.fail(format!("own record: {e:?}")))?;
        let key = (h.epoch.0, h.sender_id.0, h.seq);
        if let Some(old) = self.sealed.get(&key) {
            return Err(self.fail(format!(
                "nonce reused: epoch {} sid {} seq {} sealed by node {} and node {from}",
                key.0, key.1, key.2, old.device
            )));
        }
        self.stats.sealed += 1;
        self.note(format!(
            "node {from} seals e{} s{} q{}",
            key.0, key.1, key.2
        ));
        self.sealed.insert(
            key,
            Sealed {
                device: from,
                generation: self.generation[from],
                payload,
            },
        );
        self.capture_record(&rec);
        for to in 0..self.sim.nodes.len() {
            if to != from {
                self.send_record(to, rec.clone(), Some(key));
            }
        }
        Ok(())
    }

    /// Sends a record copy over the lossy network (loss, duplication, delay, corruption).
    fn send_record(&mut self, to: usize, bytes: Vec<u8>, intact: Option<(u16, u8, u64)>) {
        if self.rng.chance(0.3) {
            return;
        }
        let copies = if self.rng.chance(0.1) { 2 } else { 1 };
        for _ in 0..copies {
            let mut bytes = bytes.clone();
            let mut intact = intact;
            if self.rng.chance(0.05) && !bytes.is_empty() {
                let i = self.rng.below(bytes.len() as u64) as usize;
                bytes[i] ^= 1 << self.rng.below(8);
                intact = None;
            }
            let at = self.sim.now + 1 + self.rng.below(150);
            self.flights.push(Flight {
                at,
                to,
                bytes,
                intact,
            });
        }
    }

    fn capture_record(&mut self, rec: &[u8]) {
        if self.records.len() < CAPTURE {
            self.records.push(rec.to_vec());
        } else {
            let i = self.rng.below(CAPTURE as u64) as usize;
            self.records[i] = rec.to_vec();
        }
    }

    /// Delivers the record copies that are due, checking each outcome.
    fn deliver_records(&mut self) -> Result<(), String> {
        let now = self.sim.now;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.flights.len() {
            if self.flights[i].at <= now {
                due.push(self.flights.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|f| f.at);
        for f in due {
            self.open(f)?;
        }
        Ok(())
    }

    fn open(&mut self, f: Flight) -> Result<(), String> {
        let at = f.to;
        let r = self.sim.open(at, &f.bytes);
        match r {
            Ok(plain) => {
                self.stats.delivered += 1;
                let h = RecordHeader::parse(&f.bytes)
                    .map_err(|e| self.fail(format!("delivered an unparsable record: {e:?}")))?;
                let key = (h.epoch.0, h.sender_id.0, h.seq);
                match self.sealed.get(&key) {
                    Some(s) if s.payload == plain => {}
                    Some(_) => {
                        return Err(self.fail(format!(
                            "node {at} accepted e{} s{} q{} with a payload that was not sealed",
                            key.0, key.1, key.2
                        )));
                    }
                    None => {
                        return Err(self.fail(format!(
                            "node {at} accepted e{} s{} q{} that nobody sealed",
                            key.0, key.1, key.2
                        )));
                    }
                }
                if !self.delivered[at].insert(key) {
                    return Err(self.fail(format!(
                        "node {at} accepted e{} s{} q{} twice",
                        key.0, key.1, key.2
                    )));
                }
                if let Some(r) = self.revoked_at[at]
                    && key.0 > r
                {
                    return Err(self.fail(format!(
                        "node {at}, removed at epoch {r}, accepted a record of epoch {}",
                        key.0
                    )));
                }
                self.first[at].entry((key.0, key.1)).or_insert(key.2);
                Ok(())
            }
            Err(e) => {
                self.stats.refused += 1;
                match f.intact {
                    Some(key) => self.check_refusal(at, key, e),
                    None => Ok(()),
                }
            }
        }
    }

    /// An intact copy of a sealed record was refused: the receiver's state must say why.
    fn check_refusal(&self, at: usize, key: (u16, u8, u64), e: OpenError) -> Result<(), String> {
        let (epoch, sid, seq) = key;
        let node = &self.sim.nodes[at];
        let now = self.sim.now();
        let Some(g) = node.member.group() else {
            // Not joined (rebooted, joining, removed): nothing is held.
            return if matches!(e, OpenError::NotJoined) {
                Ok(())
            } else {
                Err(self.fail(format!(
                    "node {at} (no group) refused e{epoch} s{sid} q{seq}: {e:?}"
                )))
            };
        };
        let sealer = self.sealed.get(&key).map(|s| (s.device, s.generation));
        let sealer_moved =
            sealer.is_some_and(|(d, g0)| self.generation[d] != g0 || self.revoked_at[d].is_some());
        let ok = match e {
            OpenError::UnknownEpoch(x) => x.0 == epoch && !g.epochs().holds(Epoch(epoch), now),
            OpenError::Replay => {
                self.delivered[at].contains(&key)
                    || self.first[at].get(&(epoch, sid)).is_some_and(|&f| seq < f)
            }
            OpenError::TooOld => match g.senders().find(|s| s.sender_id.0 == sid) {
                Some(info) => {
                    // Of a sender's previous epoch a receiver keeps the 16 numbers up to
                    // the highest (docs/decisions.md, "Receiver state and member stack").
                    let in_window = |w: Option<(Epoch, Option<u64>)>, size: u64| match w {
                        Some((e, h)) if e.0 == epoch => {
                            Some(h.is_some_and(|h| h >= seq.saturating_add(size)))
                        }
                        _ => None,
                    };
                    match (
                        in_window(info.current, WINDOW),
                        in_window(info.previous, PREVIOUS_WINDOW),
                    ) {
                        (Some(v), _) | (None, Some(v)) => v,
                        (None, None) => info.current.is_some_and(|(ce, _)| ce.0 > epoch),
                    }
                }
                None => false,
            },
            OpenError::UnknownSender(_) => sealer_moved,
            OpenError::OwnSenderId => g.config().own_sender_id.map(|s| s.0) == Some(sid),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.fail(format!(
                "node {at} refused an intact record e{epoch} s{sid} q{seq} (sealer {sealer:?}, \
                 moved {sealer_moved}): {e:?}; holds current {:?} staged {:?} previous {:?}; \
                 senders {:?}",
                g.current_epoch(),
                g.epochs().staged(),
                g.epochs().previous(),
                g.senders().collect::<Vec<_>>()
            )))
        }
    }

    // ---- the attacker -------------------------------------------------------------------

    /// Captures the key-distribution messages the simulation put on the wire since last time.
    fn capture_kd(&mut self) {
        let mut new: Vec<(To, Vec<u8>)> = self
            .sim
            .inflight
            .iter()
            .filter(|p| p.kind == Kind::Kd && p.seq > self.kd_seen)
            .map(|p| (p.to, p.bytes.clone()))
            .collect();
        if let Some(m) = self.sim.inflight.iter().map(|p| p.seq).max() {
            self.kd_seen = self.kd_seen.max(m);
        }
        for m in new.drain(..) {
            if self.kd.len() < CAPTURE {
                self.kd.push(m);
            } else {
                let i = self.rng.below(CAPTURE as u64) as usize;
                self.kd[i] = m;
            }
        }
    }

    fn inject_kd(&mut self, to: To, bytes: Vec<u8>) {
        self.sim.packet_seq += 1;
        let seq = self.sim.packet_seq;
        self.kd_seen = self.kd_seen.max(seq);
        self.sim.inflight.push(Packet {
            at: self.sim.now + 1 + self.rng.below(50),
            seq,
            to,
            kind: Kind::Kd,
            bytes,
        });
    }

    fn attack_records(&mut self) {
        if self.records.is_empty() {
            return;
        }
        self.stats.attacks += 1;
        let n = self.sim.nodes.len() as u64;
        let to = self.rng.below(n) as usize;
        let a = self.records[self.rng.below(self.records.len() as u64) as usize].clone();
        match self.rng.below(5) {
            0 => {
                // Replay of a captured record: an exact copy, held to the intact rules.
                let h = RecordHeader::parse(&a).ok();
                let key = h.map(|h| (h.epoch.0, h.sender_id.0, h.seq));
                self.note(format!("attacker replays {key:?} to node {to}"));
                self.flights.push(Flight {
                    at: self.sim.now + 1,
                    to,
                    bytes: a,
                    intact: key,
                });
            }
            1 => {
                // Splice: one record's header on another's body.
                let b = self.records[self.rng.below(self.records.len() as u64) as usize].clone();
                if a.len() >= HEADER_LEN && b.len() >= HEADER_LEN && a != b {
                    let mut s = a[..HEADER_LEN].to_vec();
                    s.extend_from_slice(&b[HEADER_LEN..]);
                    self.note(format!("attacker splices to node {to}"));
                    self.forged(to, s);
                }
            }
            2 => {
                // A captured record with its epoch, sid or sequence number changed.
                let mut s = a;
                if s.len() >= HEADER_LEN {
                    let field = [3usize, 4, 5, 6, 7, 8, 9, 10][self.rng.below(8) as usize];
                    s[field] = s[field].wrapping_add(1 + self.rng.below(3) as u8);
                    self.note(format!("attacker edits byte {field} to node {to}"));
                    self.forged(to, s);
                }
            }
            3 => {
                // Truncated, extended, or several records in one datagram.
                let mut s = a;
                let cut = self.rng.below(s.len() as u64 + 1) as usize;
                match self.rng.below(3) {
                    0 => s.truncate(cut),
                    1 => s.extend_from_slice(&[0xAB; 5]),
                    _ => {
                        let b = s.clone();
                        s.extend_from_slice(&b);
                    }
                }
                self.note(format!("attacker reshapes a record to node {to}"));
                self.forged(to, s);
            }
            _ => {
                // Random bytes under a plausible header.
                let mut s = a;
                for b in s.iter_mut().skip(HEADER_LEN) {
                    *b = self.rng.below(256) as u8;
                }
                self.note(format!("attacker forges a body to node {to}"));
                self.forged(to, s);
            }
        }
    }

    fn forged(&mut self, to: usize, bytes: Vec<u8>) {
        // A forgery may happen to equal a sealed record (e.g. a splice of a record with
        // itself); then it is an intact copy.
        let intact = RecordHeader::parse(&bytes)
            .ok()
            .map(|h| (h.epoch.0, h.sender_id.0, h.seq))
            .filter(|k| self.records.contains(&bytes) && self.sealed.contains_key(k));
        self.flights.push(Flight {
            at: self.sim.now + 1,
            to,
            bytes,
            intact,
        });
    }

    fn attack_kd(&mut self) {
        if self.kd.is_empty() {
            return;
        }
        self.stats.kd_replays += 1;
        let (to, mut bytes) = self.kd[self.rng.below(self.kd.len() as u64) as usize].clone();
        let n = self.sim.nodes.len() as u64;
        let to = match (to, self.rng.below(4)) {
            // A server message to another device.
            (To::Device(_), 0) => To::Device(self.sim.nodes[self.rng.below(n) as usize].id),
            (to, _) => to,
        };
        if self.rng.chance(0.3) && !bytes.is_empty() {
            let i = self.rng.below(bytes.len() as u64) as usize;
            bytes[i] ^= 1 << self.rng.below(8);
            self.note(format!(
                "attacker sends an edited key-distribution message to {to:?}"
            ));
        } else {
            self.note(format!(
                "attacker replays a key-distribution message to {to:?}"
            ));
        }
        self.inject_kd(to, bytes);
    }

    // ---- faults and operator actions ----------------------------------------------------

    fn reboot(&mut self, i: usize) {
        let lost = self.rng.chance(0.3);
        self.note(format!("node {i} reboots (store lost: {lost})"));
        self.stats.reboots += 1;
        self.sim.reboot(i, lost);
        self.generation[i] += 1;
        self.first[i].clear();
        self.join(i);
    }

    fn crash_server(&mut self) {
        // Right after its k-th durable event from now (a save, or a message sent): the output of
        // the call that made a save is lost.
        let k = 1 + self.rng.below(4);
        self.note(format!("key server will crash after {k} durable events"));
        self.sim.crash_at = Some(self.sim.events + k);
    }

    fn revoke(&mut self) {
        let live = self.live();
        if live.len() <= 2 {
            return;
        }
        let i = live[self.rng.below(live.len() as u64) as usize];
        let id = self.sim.nodes[i].id;
        let newest = self.sim.server().latest_epoch(GID).unwrap_or(0);
        self.note(format!("operator revokes node {i} (newest epoch {newest})"));
        self.stats.revocations += 1;
        // The removed device keeps its state and keys and stops listening: a member that cheats.
        self.sim.nodes[i].hears_kd = false;
        self.revoked_at[i] = Some(newest);
        self.generation[i] += 1;
        self.sim.revoke(id);
    }

    /// A member leaves (and, at the end, joins again): its sender ID is released.
    fn leave(&mut self, i: usize) {
        if self.revoked_at[i].is_some() {
            return;
        }
        let now = self.sim.now();
        if self.sim.nodes[i].member.leave(now).is_ok() {
            self.note(format!("node {i} leaves"));
            self.stats.leaves += 1;
            self.generation[i] += 1;
            self.first[i].clear();
        }
    }

    fn rekey(&mut self) {
        let now = self.sim.now();
        self.note("operator rekeys".to_string());
        self.stats.rekeys += 1;
        let (server, rng) = (self.sim.server.as_mut().expect("server"), &mut self.sim.rng);
        let _ = server.rekey(GID, now, rng);
    }

    // ---- the run ------------------------------------------------------------------------

    fn step(&mut self, dt: u64) -> Result<(), String> {
        self.capture_kd();
        self.sim.step(dt);
        self.capture_kd();
        self.deliver_records()?;
        if let Some(v) = self.sim.tap.violations.first() {
            return Err(self.fail(format!("key server: {v}")));
        }
        Ok(())
    }

    fn run_for(&mut self, ms: u64) -> Result<(), String> {
        let end = self.sim.now + ms;
        while self.sim.now < end {
            let dt = 10 + self.rng.below(40);
            self.step(dt)?;
        }
        Ok(())
    }

    fn run(mut self) -> Result<Stats, String> {
        for i in 0..self.sim.nodes.len() {
            self.join(i);
        }
        self.run_for(3_000)?;
        for _ in 0..STEPS {
            let n = self.sim.nodes.len() as u64;
            let x = self.rng.below(1000);
            match x {
                0..=449 => {
                    let i = self.rng.below(n) as usize;
                    self.seal(i)?;
                }
                450..=599 => self.attack_records(),
                600..=749 => self.attack_kd(),
                750..=779 => {
                    let i = self.rng.below(n) as usize;
                    if self.revoked_at[i].is_none() {
                        self.reboot(i);
                    }
                }
                780..=794 => self.crash_server(),
                795..=804 => self.revoke(),
                805..=824 => self.rekey(),
                825..=839 => {
                    let i = self.rng.below(n) as usize;
                    self.leave(i);
                }
                _ => {}
            }
            let dt = 10 + self.rng.below(200);
            self.step(dt)?;
        }
        self.settle()?;
        self.stats.crashes = self.sim.crashes as u64;
        Ok(self.stats)
    }

    /// The attacker leaves and the network is repaired: every member that was not removed must
    /// get back into the group's current epoch and receive every live sender's records.
    fn settle(&mut self) -> Result<(), String> {
        self.note("attacker gone, network repaired".to_string());
        self.sim.params = NetParams::PERFECT;
        self.run_for(1_000)?;
        let live = self.live();
        let limit = self.sim.now + 180_000;
        loop {
            for &i in &live {
                if !self.sim.nodes[i].member.is_joined()
                    && self.sim.nodes[i].member.poll_timeout().is_none()
                {
                    self.join(i);
                }
            }
            if self.sim.converged(&live) {
                break;
            }
            if self.sim.now > limit {
                let states: Vec<_> = live
                    .iter()
                    .map(|&i| {
                        let m = &self.sim.nodes[i].member;
                        (
                            i,
                            m.state(),
                            m.group().and_then(|g| g.current_epoch()),
                            self.sim
                                .server
                                .as_ref()
                                .map(|s| s.is_pending(self.sim.nodes[i].id, GID)),
                        )
                    })
                    .collect();
                return Err(self.fail(format!(
                    "members {live:?} did not converge in 180 s after the attack: server epochs {:?}, \
                     members (index, state, current epoch, pending) {states:?}",
                    self.sim.server.as_ref().and_then(|s| s.epochs(GID))
                )));
            }
            let next = self.sim.next_event();
            let dt = next.saturating_sub(self.sim.now).clamp(10, 2_000);
            self.step(dt)?;
        }
        // Let the activation delay and grace periods pass, then every live sender speaks once.
        self.run_for(6_000)?;
        for &from in &live {
            let before: Vec<usize> = live.iter().map(|&i| self.delivered[i].len()).collect();
            let payload = format!("seed {} final from {from}", self.seed).into_bytes();
            let Ok(rec) = self.sim.seal(from, &payload) else {
                continue; // a listener
            };
            let h = RecordHeader::parse(&rec).map_err(|e| self.fail(format!("{e:?}")))?;
            let key = (h.epoch.0, h.sender_id.0, h.seq);
            if self.sealed.contains_key(&key) {
                return Err(self.fail(format!("nonce reused at the end: {key:?}")));
            }
            self.sealed.insert(
                key,
                Sealed {
                    device: from,
                    generation: self.generation[from],
                    payload,
                },
            );
            self.stats.sealed += 1;
            for (k, &to) in live.iter().enumerate() {
                if to == from {
                    continue;
                }
                self.open(Flight {
                    at: self.sim.now,
                    to,
                    bytes: rec.clone(),
                    intact: Some(key),
                })?;
                if self.delivered[to].len() != before[k] + 1 {
                    return Err(self.fail(format!(
                        "after the attack, node {to} did not receive node {from}'s record {key:?}"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64) -> Result<Stats, String> {
    catch_unwind(AssertUnwindSafe(|| Campaign::new(seed).run())).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("seed {seed} panicked: {msg}"))
    })
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn adversarial_campaign() {
    if let Some(seed) = env_u64("CAMPAIGN_SEED") {
        match run_seed(seed) {
            Ok(s) => println!(
                "seed {seed} passed: {} sealed, {} delivered",
                s.sealed, s.delivered
            ),
            Err(e) => panic!("{e}"),
        }
        return;
    }
    let seeds = env_u64("CAMPAIGN_SEEDS").unwrap_or(100);
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let totals = Mutex::new(Stats::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    // The simulation's own panics are caught per seed; keep the default hook quiet meanwhile.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds {
                        break;
                    }
                    match run_seed(seed) {
                        Ok(st) => {
                            let mut t = totals.lock().unwrap();
                            t.sealed += st.sealed;
                            t.delivered += st.delivered;
                            t.refused += st.refused;
                            t.attacks += st.attacks;
                            t.kd_replays += st.kd_replays;
                            t.crashes += st.crashes;
                            t.reboots += st.reboots;
                            t.revocations += st.revocations;
                            t.rekeys += st.rekeys;
                            t.leaves += st.leaves;
                        }
                        Err(e) => failures.lock().unwrap().push((seed, e)),
                    }
                }
            });
        }
    });
    std::panic::set_hook(hook);
    let t = totals.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|(s, _)| *s);
    println!(
        "campaign: {seeds} seeds in {:.1} s: {} records sealed, {} delivered, {} refused; \
         {} record attacks, {} key-distribution replays or edits, {} key-server crashes, {} \
         reboots, {} revocations, {} rekeys, {} leaves; {} failing seeds",
        started.elapsed().as_secs_f64(),
        t.sealed,
        t.delivered,
        t.refused,
        t.attacks,
        t.kd_replays,
        t.crashes,
        t.reboots,
        t.revocations,
        t.rekeys,
        t.leaves,
        failures.len()
    );
    for (_, e) in failures.iter() {
        println!("failure: {}", e.lines().next().unwrap_or_default());
    }
    for (seed, e) in failures.iter().take(3) {
        println!(
            "{e}\nreplay it: CAMPAIGN_SEED={seed} cargo test -p group-core --test campaign -- --nocapture\n"
        );
    }
    let list: Vec<u64> = failures.iter().map(|(s, _)| *s).collect();
    assert!(failures.is_empty(), "failing seeds: {list:?}");
}
