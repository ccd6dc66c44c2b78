//! Shared helpers of the key-distribution tests: a seeded RNG (rand_core 0.10), fixed keys.
#![allow(dead_code)]

use core::convert::Infallible;

use p256::ecdsa::SigningKey;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// A seeded ChaCha20 RNG exposed through rand_core 0.10's traits (deterministic tests only).
pub struct TestRng(pub ChaCha20Rng);

impl TestRng {
    pub fn seeded(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.0.next_u64() as f64 / u64::MAX as f64) < p
    }
}

impl rand_core::TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.next_u32())
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.next_u64())
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

/// A fixed P-256 key: `tag` repeated, with a leading 0x01 so the scalar is in range.
pub fn key(tag: u8) -> SigningKey {
    let mut b = [tag; 32];
    b[0] = 0x01;
    SigningKey::from_slice(&b).unwrap()
}

// ---- an in-memory network with a virtual clock ---------------------------------------------

use std::collections::{BTreeMap, HashMap, HashSet};

use group_core::keydist::{
    DeviceCredential, DeviceId, Error, GroupSpec, KeyBundle, KeyMaterial, KeyServer, Member,
    MemberConfig, MemberCredentials, MemoryServerStore, Message, Role, ServerCredentials,
    open_bundle_secret, parse,
};
use group_core::record::OpenError;
use group_core::sequence::{MemorySequenceStore, StoreError};
use group_core::time::Instant;
use group_core::wire::Epoch;

pub type Srv = KeyServer<MemoryServerStore>;
pub type Mem = Member<MemorySequenceStore>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum To {
    Server,
    Device(DeviceId),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Kd,
    Record,
}

#[derive(Clone, Debug)]
pub struct Packet {
    pub at: u64,
    pub seq: u64,
    pub to: To,
    pub kind: Kind,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
pub struct NetParams {
    pub loss: f64,
    pub dup: f64,
    pub min_delay: u64,
    pub max_delay: u64,
}

impl NetParams {
    pub const PERFECT: Self = Self {
        loss: 0.0,
        dup: 0.0,
        min_delay: 1,
        max_delay: 1,
    };
}

/// A device's credential in the simulation.
#[derive(Clone)]
pub enum Cred {
    Signed(SigningKey),
    #[cfg(feature = "psk")]
    Psk(group_core::keydist::Psk),
}

impl Cred {
    fn member(&self, server: &SigningKey) -> MemberCredentials {
        match self {
            Cred::Signed(k) => MemberCredentials::signed(k.clone(), *server.verifying_key()),
            #[cfg(feature = "psk")]
            Cred::Psk(p) => MemberCredentials::Psk(p.clone()),
        }
    }
    fn server(&self) -> DeviceCredential {
        match self {
            Cred::Signed(k) => DeviceCredential::public_key(k.verifying_key()),
            #[cfg(feature = "psk")]
            Cred::Psk(p) => DeviceCredential::Psk(p.clone()),
        }
    }
    fn open(&self, b: &KeyBundle) -> Result<KeyMaterial, Error> {
        match self {
            Cred::Signed(k) => open_bundle_secret(k, b),
            #[cfg(feature = "psk")]
            Cred::Psk(p) => group_core::keydist::open_bundle_secret_psk(p, b),
        }
    }
}

pub struct Node {
    pub id: DeviceId,
    pub cred: Cred,
    pub member: Mem,
    /// Key-distribution packets to this node are delivered (false: it never hears again).
    pub hears_kd: bool,
    /// Records this node accepted: (epoch, sid, seq, payload).
    pub delivered: Vec<(u16, u8, u64, Vec<u8>)>,
    pub refused: Vec<OpenError>,
    pub kd_errors: Vec<Error>,
}

/// Everything the key server handed out, decrypted with the device keys.
#[derive(Default)]
pub struct Tap {
    /// (group, epoch) -> secret.
    pub secrets: HashMap<(u32, u16), [u8; 32]>,
    /// (group, epoch, sid) -> device.
    pub sids: HashMap<(u32, u16, u8), DeviceId>,
    /// Bundles per (device, epoch).
    pub bundles: BTreeMap<(u32, u16), usize>,
    pub counters: Vec<u64>,
    pub violations: Vec<String>,
    pub removed_notices: usize,
    pub challenges: usize,
}

impl Tap {
    pub fn observe(&mut self, bytes: &[u8], to: DeviceId, key: Option<&Cred>) {
        let pm = parse(bytes).expect("server emitted an unparsable message");
        if let Some(h) = pm.message.server_header() {
            if let Some(&last) = self.counters.last()
                && h.counter <= last
            {
                self.violations
                    .push(format!("counter {} after {}", h.counter, last));
            }
            self.counters.push(h.counter);
        }
        match pm.message {
            Message::KeyBundle(b) => {
                assert_eq!(b.header.device_id, to);
                *self.bundles.entry((to.0, b.epoch)).or_default() += 1;
                if let Some(k) = key {
                    self.note_bundle(&b, k);
                }
            }
            Message::Removed(_) => self.removed_notices += 1,
            Message::JoinChallenge(c) => {
                assert_eq!(c.device_id, to);
                self.challenges += 1;
            }
            _ => self.violations.push("server sent a device message".into()),
        }
    }

    fn note_bundle(&mut self, b: &KeyBundle, key: &Cred) {
        let m = key.open(b).expect("tap can't open a bundle");
        // The epoch's secret, or for the wolfSSL schedule the first half of its pre-master
        // secret (two different draws differ there too).
        let secret: [u8; 32] = match &m {
            KeyMaterial::Native { secret } => *secret,
            KeyMaterial::WolfSsl { pms, .. } => pms.0[..32].try_into().unwrap(),
        };
        let g = b.header.group_id;
        if let Some(old) = self.secrets.insert((g, b.epoch), secret)
            && old != secret
        {
            self.violations
                .push(format!("epoch {} handed out with two secrets", b.epoch));
        }
        if let Some(sid) = b.sender_id {
            let dev = b.header.device_id;
            if let Some(old) = self.sids.insert((g, b.epoch, sid), dev)
                && old != dev
            {
                self.violations.push(format!(
                    "sid {sid} in epoch {} given to {old:?} and {dev:?}",
                    b.epoch
                ));
            }
        }
    }

    pub fn bundles_to(&self, dev: DeviceId, epoch: u16) -> usize {
        self.bundles.get(&(dev.0, epoch)).copied().unwrap_or(0)
    }
}

pub struct Sim {
    pub now: u64,
    pub rng: TestRng,
    pub net_rng: TestRng,
    pub params: NetParams,
    pub server_key: SigningKey,
    pub server: Option<Srv>,
    pub nodes: Vec<Node>,
    pub inflight: Vec<Packet>,
    pub packet_seq: u64,
    pub tap: Tap,
    /// Devices whose key-distribution traffic is dropped both ways.
    pub cut: HashSet<DeviceId>,
    pub server_errors: Vec<Error>,
    pub crashes: usize,
    pub group_id: u32,
    /// New devices get PSK credentials.
    pub psk_mode: bool,
    pub server_events: Vec<(u64, group_core::keydist::ServerEvent)>,
    /// Crash the key server right after its k-th durable event (a save or an emission) counted
    /// from when this is set: after a save, the output of the call that made it is lost; after an
    /// emission, the message is out.
    pub crash_at: Option<u64>,
    /// Durable events counted towards `crash_at`.
    pub events: u64,
}

impl Sim {
    pub fn new(seed: u64, params: NetParams, group_id: u32) -> Self {
        let server_key = key(0xEE);
        let server = Srv::open(
            ServerCredentials::new(server_key.clone()),
            MemoryServerStore::new(),
        )
        .unwrap();
        Self {
            now: 1_000,
            rng: TestRng::seeded(seed),
            net_rng: TestRng::seeded(seed ^ 0x5eed),
            params,
            server_key,
            server: Some(server),
            nodes: Vec::new(),
            inflight: Vec::new(),
            packet_seq: 0,
            tap: Tap::default(),
            cut: HashSet::new(),
            server_errors: Vec::new(),
            crashes: 0,
            group_id,
            psk_mode: false,
            server_events: Vec::new(),
            crash_at: None,
            events: 0,
        }
    }

    pub fn server(&mut self) -> &mut Srv {
        self.server.as_mut().unwrap()
    }

    pub fn now(&self) -> Instant {
        Instant(self.now)
    }

    pub fn create_group(&mut self, spec: GroupSpec) {
        let now = self.now();
        let (server, rng) = (self.server.as_mut().unwrap(), &mut self.rng);
        server.create_group(spec, now, rng).unwrap();
    }

    /// Admits a device and makes its node (not joined yet). Returns its index.
    pub fn add_device(&mut self, id: u32, role: Role) -> usize {
        let cred = if self.psk_mode {
            #[cfg(feature = "psk")]
            {
                Cred::Psk(group_core::keydist::Psk([id as u8; 16]))
            }
            #[cfg(not(feature = "psk"))]
            unreachable!("psk mode needs the psk feature")
        } else {
            Cred::Signed(key(id as u8))
        };
        let gid = self.group_id;
        self.server()
            .admit_device(DeviceId(id), cred.server(), role, &[gid])
            .unwrap();
        let member = Mem::new(
            MemberConfig::new(DeviceId(id), gid, role),
            cred.member(&self.server_key),
            MemorySequenceStore::commissioned(),
        );
        self.nodes.push(Node {
            id: DeviceId(id),
            cred,
            member,
            hears_kd: true,
            delivered: Vec::new(),
            refused: Vec::new(),
            kd_errors: Vec::new(),
        });
        self.nodes.len() - 1
    }

    /// Revokes a device at the key server (a crash point like any other server call).
    pub fn revoke(&mut self, id: DeviceId) {
        let now = self.now();
        let before = self.saves();
        let r = {
            let (server, rng) = (self.server.as_mut().unwrap(), &mut self.rng);
            server.revoke_device(id, now, rng)
        };
        if !self.count(self.saves() - before) {
            r.unwrap();
        }
    }

    /// The device reboots: its member state is gone; its sequence store survives or is lost.
    pub fn reboot(&mut self, i: usize, store_lost: bool) {
        let store = if store_lost {
            MemorySequenceStore::lost()
        } else {
            self.nodes[i].member.store().clone()
        };
        self.reboot_with_store(i, store);
    }

    /// The device reboots with `store` as its sequence store (e.g. one re-created empty).
    pub fn reboot_with_store(&mut self, i: usize, store: MemorySequenceStore) {
        let n = &mut self.nodes[i];
        let role = if n
            .member
            .group()
            .and_then(|g| g.config().own_sender_id)
            .is_some()
        {
            Role::Sender
        } else {
            Role::Listener
        };
        n.member = Mem::new(
            MemberConfig::new(n.id, self.group_id, role),
            n.cred.member(&self.server_key),
            store,
        );
    }

    pub fn index(&self, id: DeviceId) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap()
    }

    fn send(&mut self, to: To, kind: Kind, bytes: Vec<u8>) {
        if let To::Device(d) = to
            && kind == Kind::Kd
            && self.cut.contains(&d)
        {
            return;
        }
        let p = self.params;
        if self.net_rng.chance(p.loss) {
            return;
        }
        let copies = if self.net_rng.chance(p.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = p.min_delay + self.net_rng.below(p.max_delay - p.min_delay + 1);
            self.packet_seq += 1;
            self.inflight.push(Packet {
                at: self.now + delay,
                seq: self.packet_seq,
                to,
                kind,
                bytes: bytes.clone(),
            });
        }
    }

    /// Broadcasts a record from node `from` over the lossy network.
    pub fn multicast(&mut self, from: usize, record: &[u8]) {
        for i in 0..self.nodes.len() {
            if i != from {
                let to = To::Device(self.nodes[i].id);
                self.send(to, Kind::Record, record.to_vec());
            }
        }
    }

    /// Seals `payload` at node `from`.
    pub fn seal(
        &mut self,
        from: usize,
        payload: &[u8],
    ) -> Result<Vec<u8>, group_core::record::SealError> {
        let now = self.now();
        let mut buf = vec![0u8; 512];
        let n = self.nodes[from].member.seal(now, payload, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Opens a copy of `record` at node `at` (synchronously).
    pub fn open(&mut self, at: usize, record: &[u8]) -> Result<Vec<u8>, OpenError> {
        let now = self.now();
        let mut r = record.to_vec();
        self.nodes[at]
            .member
            .open(now, &mut r)
            .map(|d| d.plaintext.to_vec())
    }

    fn restart_server(&mut self) {
        let store = self.server.take().unwrap().into_store();
        let mut store = store;
        store.restore_power();
        self.server = Some(
            Srv::open(ServerCredentials::new(self.server_key.clone()), store)
                .expect("server state did not reload"),
        );
        self.crashes += 1;
    }

    fn saves(&self) -> u64 {
        self.server.as_ref().unwrap().store().saves()
    }

    /// Counts `n` durable events; crashes (restarts the server) if the crash point is reached.
    fn count(&mut self, n: u64) -> bool {
        self.events += n;
        if self.crash_at.is_some_and(|k| self.events >= k) {
            self.crash_at = None;
            self.restart_server();
            return true;
        }
        false
    }

    /// A server call failed: a store failure is a crash (restart from the store).
    fn server_failed(&mut self, e: Error) {
        if e == Error::Store(StoreError::Io) {
            self.restart_server();
        } else {
            self.server_errors.push(e);
        }
    }

    /// Simulated power loss of the key server after `n` more saves.
    pub fn crash_server_after(&mut self, n: u64) {
        let store = self.server.take().unwrap().into_store();
        let mut store = store;
        store.crash_after(n);
        self.server =
            Some(Srv::open(ServerCredentials::new(self.server_key.clone()), store).unwrap());
    }

    /// Advances the clock by one step of `dt` ms, delivering and emitting everything due.
    pub fn step(&mut self, dt: u64) {
        self.now += dt;
        let now = self.now();
        // Deliver in arrival order.
        self.inflight.sort_by_key(|p| (p.at, p.seq));
        let due: Vec<Packet> = {
            let split = self.inflight.partition_point(|p| p.at <= self.now);
            self.inflight.drain(..split).collect()
        };
        for p in due {
            match (p.to, p.kind) {
                (To::Server, _) => {
                    let before = self.saves();
                    let r = {
                        let (server, rng) = (self.server.as_mut().unwrap(), &mut self.rng);
                        server.handle_message(now, rng, &p.bytes)
                    };
                    if self.count(self.saves() - before) {
                        continue;
                    }
                    if let Err(e) = r {
                        self.server_failed(e);
                    }
                }
                (To::Device(d), Kind::Kd) => {
                    let i = self.index(d);
                    if !self.nodes[i].hears_kd {
                        continue;
                    }
                    if let Err(e) = self.nodes[i].member.handle_message(now, &p.bytes) {
                        self.nodes[i].kd_errors.push(e);
                    }
                }
                (To::Device(d), Kind::Record) => {
                    let i = self.index(d);
                    let mut r = p.bytes.clone();
                    match self.nodes[i].member.open(now, &mut r) {
                        Ok(del) => {
                            let v = (
                                del.epoch.0,
                                del.sender_id.0,
                                del.seq,
                                del.plaintext.to_vec(),
                            );
                            self.nodes[i].delivered.push(v);
                        }
                        Err(e) => self.nodes[i].refused.push(e),
                    }
                }
            }
        }
        // Timers.
        let before = self.saves();
        let r = {
            let (server, rng) = (self.server.as_mut().unwrap(), &mut self.rng);
            server.handle_timeout(now, rng)
        };
        if !self.count(self.saves() - before)
            && let Err(e) = r
        {
            self.server_failed(e);
        }
        for n in self.nodes.iter_mut() {
            n.member.handle_timeout(now);
        }
        // Transmissions.
        let mut buf = [0u8; 1500];
        loop {
            let before = self.saves();
            let r = {
                let (server, rng) = (self.server.as_mut().unwrap(), &mut self.rng);
                server.poll_transmit(now, rng, &mut buf)
            };
            if self.count(self.saves() - before) {
                break;
            }
            match r {
                Ok(Some(t)) => {
                    let bytes = buf[..t.len].to_vec();
                    let key = self
                        .nodes
                        .iter()
                        .find(|n| n.id == t.device_id)
                        .map(|n| n.cred.clone());
                    self.tap.observe(&bytes, t.device_id, key.as_ref());
                    self.send(To::Device(t.device_id), Kind::Kd, bytes);
                    if self.count(1) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.server_failed(e);
                    break;
                }
            }
        }
        while let Some(e) = self.server.as_mut().unwrap().poll_event() {
            self.server_events.push((self.now, e));
        }
        for i in 0..self.nodes.len() {
            loop {
                let r = {
                    let (node, rng) = (&mut self.nodes[i], &mut self.rng);
                    node.member.poll_transmit(now, rng, &mut buf)
                };
                match r.unwrap() {
                    Some(n) => {
                        let id = self.nodes[i].id;
                        if self.cut.contains(&id) || !self.nodes[i].hears_kd {
                            continue;
                        }
                        self.send(To::Server, Kind::Kd, buf[..n].to_vec());
                    }
                    None => break,
                }
            }
            while self.nodes[i].member.poll_event().is_some() {}
        }
    }

    /// The next time anything has work to do.
    pub fn next_event(&self) -> u64 {
        let mut t = u64::MAX;
        for p in &self.inflight {
            t = t.min(p.at);
        }
        if let Some(i) = self.server.as_ref().unwrap().poll_timeout() {
            t = t.min(i.0);
        }
        for n in &self.nodes {
            if let Some(i) = n.member.poll_timeout() {
                t = t.min(i.0);
            }
        }
        t
    }

    /// One step of 10 ms, or a jump to the next event if nothing happens before (at most 5 s).
    fn advance(&mut self, end: u64) {
        let next = self.next_event();
        let dt = if next > self.now + 10 {
            (next - self.now)
                .min(5_000)
                .min(end.saturating_sub(self.now))
                .max(10)
        } else {
            10
        };
        self.step(dt);
    }

    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.advance(end);
        }
    }

    /// Runs until `done` holds (checked every step); panics after `limit` ms.
    pub fn run_until(&mut self, limit: u64, what: &str, done: impl Fn(&Sim) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(self.now < end, "not {what} after {limit} ms");
            self.advance(end);
        }
    }

    /// Whether the nodes `which` all hold the server's current epoch as current, nothing is
    /// staged or pending, and nothing is in flight.
    pub fn converged(&self, which: &[usize]) -> bool {
        let server = self.server.as_ref().unwrap();
        let Some((Some(cur), None)) = server.epochs(self.group_id) else {
            return false;
        };
        which.iter().all(|&i| {
            let n = &self.nodes[i];
            n.member.is_joined()
                && n.member.group().and_then(|g| g.current_epoch()) == Some(Epoch(cur))
                && n.member.group().and_then(|g| g.epochs().staged()).is_none()
                && !server.is_pending(n.id, self.group_id)
        })
    }

    pub fn current_epoch(&self) -> u16 {
        self.server
            .as_ref()
            .unwrap()
            .epochs(self.group_id)
            .and_then(|(c, _)| c)
            .unwrap()
    }
}
