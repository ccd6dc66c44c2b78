//! Key server at scale (issues 14 and 16): the key server's own time (and the bytes it sends)
//! to admit one device and let it join, and to remove one member, beside the raw per-member
//! public-key crypto times the number of members it served.
//!
//! Two views, each at 10, 100, 1,000 and 10,000 devices:
//! - **group**: one group of N members. A removal rekeys it (a bundle to each of the N - 1
//!   others, each acknowledged); a join with rekey on join does the same for N. The anchor is
//!   the raw per-member crypto of one bundle and its acknowledgement (an ephemeral P-256 key,
//!   ECDH with the member's key, an ECDSA signature of the bundle, and the verification of the
//!   member's signed acknowledgement, with `p256` directly) times the bundles sent.
//! - **building**: N devices in groups of 10 (N / 10 groups, every device joined); the same
//!   operations in one group of 10. The server time should not depend on N.
//!
//! Everything runs in memory and synchronously: the daemon's key server type (unbounded
//! `StdTables`, devices in up to 32 groups) over an in-memory row store (`MemRowStore`: the
//! rows a redb commit would write, without the disk), one `Member` per device (signed mode,
//! AES-128-CCM, rekey on join), messages handed over directly. Only the key server's calls are
//! timed (`handle_message`, `handle_timeout`, `poll_transmit`, `revoke_device`,
//! `admit_device`). Ratios are server time / anchor, per round; medians over rounds.
//!
//! Each operation is measured twice: polling the server one message at a time
//! (`poll_transmit`), and as the daemon does, in batches whose bundles are sealed on one
//! worker thread per CPU (`group_std::keyserver::poll_batch`, rows "parallel sealing"; their
//! ratio to the single-threaded anchor shows the gain).
//!
//! Run: `cargo bench -p group-bench --bench keyserver` (`BENCH_PAIRED_SECS` bounds the rounds
//! per size, default 2 s, at least 3 rounds; `KEYSERVER_BENCH_SIZES=10,100` and
//! `KEYSERVER_BENCH_VIEWS=startup,group,building` pick sizes and parts;
//! `KEYSERVER_BENCH_PARALLEL=0` leaves out the parallel rows).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use p256::ecdh;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use group_bench::{Report, paired_budget};
use std::collections::HashMap;

use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    Message, Role, ServerCredentials, parse,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant as Now;
use group_std::keyserver::{MemRowStore, SealingConfig, StdTables, TXN_GROUPS, poll_batch};

type Srv = KeyServer<MemRowStore, TXN_GROUPS, StdTables, 65536>;
type Mem = Member<MemorySequenceStore>;

/// The group the operations are measured in.
const GROUP_ID: u32 = 1;
/// The activation delay of every group (ms).
const DELAY_MS: u64 = 2_000;

/// A seeded ChaCha20 RNG behind rand_core 0.10's traits.
struct Rng(ChaCha20Rng);

impl rand_core::TryRng for Rng {
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

impl rand_core::TryCryptoRng for Rng {}

fn device_key(id: u32) -> SigningKey {
    let mut b = [0u8; 32];
    b[0] = 0x01;
    b[28..].copy_from_slice(&id.to_be_bytes());
    b[1] = 0x5a;
    SigningKey::from_slice(&b).unwrap()
}

/// What the key server did in one timed operation.
#[derive(Default, Clone, Copy)]
struct Work {
    time: Duration,
    /// Of `time`, polling the output (for bundles: their sealing and signing).
    poll: Duration,
    messages: u64,
    bytes: u64,
    bundles: u64,
}

impl Work {
    fn add(&mut self, o: Work) {
        self.time += o.time;
        self.poll += o.poll;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.bundles += o.bundles;
    }
}

struct World {
    now: u64,
    rng: Rng,
    server_key: SigningKey,
    server: Srv,
    /// The members of the measured group, oldest first.
    order: Vec<DeviceId>,
    /// Every member.
    members: HashMap<DeviceId, Mem>,
    next_id: u32,
    /// `Some`: the server's output is polled in batches whose bundles are sealed on worker
    /// threads (`group_std::keyserver::poll_batch`, as the daemon does); `None`: one message
    /// at a time with `poll_transmit`.
    sealing: Option<SealingConfig>,
}

impl World {
    /// `devices` devices in groups of `group_size` (one group if they are equal), all joined.
    fn new(devices: usize, group_size: usize) -> Self {
        let server_key = SigningKey::from_slice(&[0x33; 32]).unwrap();
        let mut rng = Rng(ChaCha20Rng::seed_from_u64(14));
        let mut server = Srv::open(
            ServerCredentials::new(server_key.clone()),
            MemRowStore::new(),
        )
        .unwrap();
        let groups = devices.div_ceil(group_size);
        for g in 1..=groups as u32 {
            server
                .create_group(
                    GroupSpec::new(g, Suite::AES_128_CCM).with_activation_delay_ms(DELAY_MS as u32),
                    Now(1_000),
                    &mut rng,
                )
                .unwrap();
        }
        let mut w = Self {
            now: 1_000,
            rng,
            server_key,
            server,
            order: Vec::new(),
            members: HashMap::new(),
            next_id: 1,
            sealing: None,
        };
        // Joins share the epoch staged by the first one while the clock stands still: the
        // set-up costs a bundle per device, not per device and member.
        // Every member stays: a later rekey of its group reaches it and it acknowledges.
        for i in 0..devices {
            let g = (i / group_size) as u32 + 1;
            w.join_new(g);
        }
        w.settle();
        assert!(
            w.members.values().all(|m| m.is_joined()),
            "not every member joined"
        );
        w
    }

    /// Admits a new device into group `g` and runs its join; returns the key server's work.
    fn join_new(&mut self, g: u32) -> Work {
        let id = DeviceId(self.next_id);
        self.next_id += 1;
        let key = device_key(id.0);
        let mut work = Work::default();
        let t = Instant::now();
        self.server
            .admit_device(
                id,
                DeviceCredential::public_key(key.verifying_key()),
                Role::Listener,
                &[g],
            )
            .unwrap();
        work.time += t.elapsed();
        let mut member = Mem::new(
            MemberConfig::new(id, g, Role::Listener),
            MemberCredentials::signed(key, *self.server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        member.join(Now(self.now)).unwrap();
        self.members.insert(id, member);
        if g == GROUP_ID {
            self.order.push(id);
        }
        work.add(self.exchange(id));
        work
    }

    /// Removes the oldest member of the measured group; returns the key server's work until
    /// every other member has its new keys.
    fn remove_one(&mut self) -> Work {
        let id = self.order.remove(0);
        self.members.remove(&id);
        let mut work = Work::default();
        let now = Now(self.now);
        let t = Instant::now();
        self.server.revoke_device(id, now, &mut self.rng).unwrap();
        work.time += t.elapsed();
        work.add(self.settle());
        work
    }

    /// Delivers what member `id` sends and what the server sends back, until both are quiet.
    fn exchange(&mut self, id: DeviceId) -> Work {
        let mut work = Work::default();
        let mut buf = [0u8; 1500];
        let now = Now(self.now);
        let Some(m) = self.members.get_mut(&id) else {
            return work;
        };
        while let Some(n) = m.poll_transmit(now, &mut self.rng, &mut buf).unwrap() {
            let t = Instant::now();
            let r = self.server.handle_message(now, &mut self.rng, &buf[..n]);
            work.time += t.elapsed();
            r.unwrap();
        }
        work.add(self.drain());
        work
    }

    /// The key server's output, delivered, and the members' answers, until nothing moves.
    fn drain(&mut self) -> Work {
        let mut work = Work::default();
        let mut buf = [0u8; 1500];
        let now = Now(self.now);
        loop {
            let t = Instant::now();
            let out: Vec<(DeviceId, Vec<u8>)> = match &self.sealing {
                None => self
                    .server
                    .poll_transmit(now, &mut self.rng, &mut buf)
                    .unwrap()
                    .map(|tx| vec![(tx.device_id, buf[..tx.len].to_vec())])
                    .unwrap_or_default(),
                Some(cfg) => {
                    let batch = poll_batch(&mut self.server, now, &mut self.rng, cfg);
                    assert!(batch.stopped.is_none());
                    batch
                        .messages
                        .into_iter()
                        .map(|m| {
                            let m = m.unwrap();
                            (m.transmit.device_id, m.bytes)
                        })
                        .collect()
                }
            };
            work.time += t.elapsed();
            work.poll += t.elapsed();
            if out.is_empty() {
                break;
            }
            for (device, bytes) in out {
                work.add(self.deliver(now, device, &bytes));
            }
        }
        while self.server.poll_event().is_some() {}
        work
    }

    /// Hands one message of the server to its member and the member's answers to the server.
    fn deliver(&mut self, now: Now, device: DeviceId, bytes: &[u8]) -> Work {
        let mut work = Work {
            messages: 1,
            bytes: bytes.len() as u64,
            ..Work::default()
        };
        let mut reply = [0u8; 1500];
        if matches!(parse(bytes).map(|p| p.message), Ok(Message::KeyBundle(_))) {
            work.bundles += 1;
        }
        if let Some(m) = self.members.get_mut(&device) {
            let _ = m.handle_message(now, bytes);
            while let Some(n) = m.poll_transmit(now, &mut self.rng, &mut reply).unwrap() {
                let t = Instant::now();
                let r = self.server.handle_message(now, &mut self.rng, &reply[..n]);
                work.time += t.elapsed();
                r.unwrap();
            }
            while m.poll_event().is_some() {}
        }
        work
    }

    /// Drains, then lets staged epochs activate (the clock moves past the activation delay),
    /// so that the next join needs a fresh epoch.
    fn settle(&mut self) -> Work {
        let mut work = self.drain();
        self.now += DELAY_MS + 1;
        let now = Now(self.now);
        for m in self.members.values_mut() {
            m.handle_timeout(now);
            while m.poll_event().is_some() {}
        }
        let t = Instant::now();
        self.server.handle_timeout(now, &mut self.rng).unwrap();
        work.time += t.elapsed();
        work.add(self.drain());
        work
    }
}

/// The raw per-member public-key crypto, `count` times: an ephemeral key, ECDH with the
/// member's static key, an ECDSA signature over a message of a bundle's size, and the
/// verification of a signed acknowledgement.
fn raw_crypto(
    rng: &mut Rng,
    server: &SigningKey,
    members: &[VerifyingKey],
    count: usize,
) -> Duration {
    let msg = [0x42u8; 200];
    let ack = [0x24u8; 40];
    let member_key = device_key(1);
    let ack_sig: Signature = member_key.sign(&ack);
    let ack_key = *member_key.verifying_key();
    let t = Instant::now();
    for i in 0..count {
        let recipient = p256::PublicKey::from(&members[i % members.len()]);
        let eph = ecdh::EphemeralSecret::generate_from_rng(rng);
        let eph_pub = VerifyingKey::from(eph.public_key()).to_sec1_point(true);
        let shared = eph.diffie_hellman(&recipient);
        std::hint::black_box((eph_pub, shared.raw_secret_bytes()[0]));
        let sig: Signature = server.sign(&msg);
        std::hint::black_box(sig);
        use p256::ecdsa::signature::Verifier;
        std::hint::black_box(ack_key.verify(&ack, &ack_sig).is_ok());
    }
    t.elapsed()
}

/// One operation's results over the rounds: name, server times (ns), ratios to the anchor,
/// the last round's work, polling times (ns).
type Row = (&'static str, Vec<f64>, Vec<f64>, Work, Vec<f64>);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Start-up at scale: a redb state of `devices` devices in `devices / 10` groups, every device
/// admitted (none joined), written with the daemon's store; then the time to open it (redb
/// store and key server: every record read and indexed) and to answer a first join (challenge,
/// then the bundle), with the key server's calls timed.
fn startup(report: &mut Report, devices: u32) {
    use group_std::keyserver::{RedbServerStore, ServerType};
    let dir = std::env::temp_dir().join(format!("keyserver-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ks.redb");
    let server_key = SigningKey::from_slice(&[0x33; 32]).unwrap();
    let mut rng = Rng(ChaCha20Rng::seed_from_u64(16));
    let groups = devices.div_ceil(10);
    {
        let store = RedbServerStore::create_new(&path).unwrap();
        store.defer_durability();
        let mut s: ServerType =
            KeyServer::open(ServerCredentials::new(server_key.clone()), store).unwrap();
        for g in 1..=groups {
            s.create_group(GroupSpec::new(g, Suite::AES_128_CCM), Now(1_000), &mut rng)
                .unwrap();
        }
        for id in 1..=devices {
            s.admit_device(
                DeviceId(id),
                DeviceCredential::public_key(device_key(id).verifying_key()),
                Role::Listener,
                &[(id - 1) % groups + 1],
            )
            .unwrap();
        }
        s.store().make_durable().unwrap();
    }
    let t = Instant::now();
    let store = RedbServerStore::open(&path).unwrap();
    let mut s: ServerType =
        KeyServer::open(ServerCredentials::new(server_key.clone()), store).unwrap();
    let opened = t.elapsed();
    assert_eq!(s.device_count(), devices as usize);
    let id = DeviceId(devices);
    let mut m = Mem::new(
        MemberConfig::new(id, (devices - 1) % groups + 1, Role::Listener),
        MemberCredentials::signed(device_key(id.0), *server_key.verifying_key()),
        MemorySequenceStore::commissioned(),
    );
    let now = Now(2_000);
    m.join(now).unwrap();
    let mut buf = [0u8; 1500];
    let mut server_time = Duration::ZERO;
    let t_join = Instant::now();
    for _ in 0..4 {
        while let Some(n) = m.poll_transmit(now, &mut rng, &mut buf).unwrap() {
            let t = Instant::now();
            s.handle_message(now, &mut rng, &buf[..n]).unwrap();
            server_time += t.elapsed();
        }
        loop {
            let t = Instant::now();
            let out = s.poll_transmit(now, &mut rng, &mut buf).unwrap();
            server_time += t.elapsed();
            let Some(tx) = out else { break };
            let _ = m.handle_message(now, &buf[..tx.len]);
        }
        if m.is_joined() {
            break;
        }
    }
    let join_wall = t_join.elapsed();
    assert!(m.is_joined(), "the first join was not answered");
    println!(
        "| startup | {devices} | {groups} groups | open the state, then a first join | open {} + first join {} (key server) = {} | join with the member's side: {} |",
        group_bench::fmt_ns(opened.as_secs_f64() * 1e9),
        group_bench::fmt_ns(server_time.as_secs_f64() * 1e9),
        group_bench::fmt_ns((opened + server_time).as_secs_f64() * 1e9),
        group_bench::fmt_ns(join_wall.as_secs_f64() * 1e9),
    );
    report.note(serde_json::json!({
        "view": "startup", "devices": devices, "groups": groups,
        "open_ns": opened.as_secs_f64() * 1e9, "first_join_server_ns": server_time.as_secs_f64() * 1e9,
        "first_join_wall_ns": join_wall.as_secs_f64() * 1e9,
    }));
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut report = Report::new("keyserver");
    let views: Vec<String> = std::env::var("KEYSERVER_BENCH_VIEWS")
        .ok()
        .map(|s| s.split(',').map(|v| v.trim().to_owned()).collect())
        .unwrap_or_else(|| vec!["startup".into(), "group".into(), "building".into()]);
    if views.iter().any(|v| v == "startup") {
        for devices in [1_000u32, 10_000] {
            startup(&mut report, devices);
        }
    }
    println!(
        "| view | devices | group size | operation | server time (median) | of which polling and sealing | messages | bytes | bundles | raw crypto x bundles | ratio (median, range) | rounds |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let budget = paired_budget().max(Duration::from_millis(1));
    let sizes: Vec<usize> = std::env::var("KEYSERVER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10, 100, 1_000, 10_000]);
    // KEYSERVER_BENCH_PARALLEL=0 leaves out the rows with parallel sealing.
    let with_parallel = std::env::var("KEYSERVER_BENCH_PARALLEL").map_or(true, |v| v != "0");
    let members: Vec<VerifyingKey> = (1..=64).map(|i| *device_key(i).verifying_key()).collect();
    let server = SigningKey::from_slice(&[0x33; 32]).unwrap();
    for view in ["group", "building"] {
        if !views.iter().any(|v| v == view) {
            continue;
        }
        for &n in &sizes {
            let group_size = if view == "group" { n } else { 10.min(n) };
            let t0 = Instant::now();
            let mut world = World::new(n, group_size);
            let setup = t0.elapsed();
            let mut rng = Rng(ChaCha20Rng::seed_from_u64(99));
            let parallel = SealingConfig::from_machine();
            let mut rows: Vec<Row> = [
                "remove one",
                "admit and join one",
                "remove one, parallel sealing",
                "admit and join one, parallel sealing",
            ]
            .into_iter()
            .filter(|op| with_parallel || !op.ends_with("parallel sealing"))
            .map(|op| (op, Vec::new(), Vec::new(), Work::default(), Vec::new()))
            .collect();
            let start = Instant::now();
            let mut rounds = 0;
            while rounds < 3 || start.elapsed() < budget {
                for (i, row) in rows.iter_mut().enumerate() {
                    world.sealing = (i >= 2).then_some(parallel);
                    let w = if i % 2 == 0 {
                        world.remove_one()
                    } else {
                        let mut w = world.join_new(GROUP_ID);
                        w.add(world.settle());
                        w
                    };
                    let raw = raw_crypto(&mut rng, &server, &members, w.bundles.max(1) as usize);
                    row.1.push(w.time.as_secs_f64() * 1e9);
                    row.2.push(w.time.as_secs_f64() / raw.as_secs_f64());
                    row.4.push(w.poll.as_secs_f64() * 1e9);
                    row.3 = w;
                }
                rounds += 1;
                if rounds >= 200 {
                    break;
                }
            }
            for (op, times, ratios, w, polls) in rows.iter_mut() {
                let t = median(times);
                let p = median(polls);
                let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = ratios.iter().cloned().fold(0.0, f64::max);
                let r = median(ratios);
                println!(
                    "| {view} | {n} | {group_size} | {op} | {} | {} | {} | {} | {} | {} | {r:.3} ({lo:.3}..{hi:.3}) | {rounds} |",
                    group_bench::fmt_ns(t),
                    group_bench::fmt_ns(p),
                    w.messages,
                    w.bytes,
                    w.bundles,
                    group_bench::fmt_ns(t / r),
                );
                report.note(serde_json::json!({
                    "view": view, "devices": n, "group_size": group_size, "op": op,
                    "server_ns": t, "poll_ns": p, "messages": w.messages, "bytes": w.bytes,
                    "bundles": w.bundles, "ratio_to_raw": r, "ratio_min": lo, "ratio_max": hi,
                    "rounds": rounds, "setup_ms": setup.as_millis() as u64,
                }));
            }
        }
    }
    report.finish();
}
