//! Key server at scale (issue 14): the key server's own time (and the bytes it sends) to admit
//! one device into a group, and to remove one member from a group, beside the raw per-member
//! public-key crypto times the number of key bundles it sent.
//!
//! Sizes: groups of 8, 32 and 63 members, what the key server supports today (the daemon's
//! `KeyServer<_, 64, 8, 16384>`: 64 devices, 8 groups; issue 16 lifts that, and 1,000 / 10,000
//! members wait for it).
//!
//! Everything runs in memory and synchronously: a `KeyServer` with a `MemoryServerStore`, one
//! `Member` per device (signed mode, AES-128-CCM group, default policy: rekey on join), messages
//! handed over directly. Only the key server's calls are timed (`handle_message`,
//! `handle_timeout`, `poll_transmit`, `revoke_device`, `admit_device`); the devices' work is not.
//! One round: remove a member (a group of N becomes N - 1: a new epoch, a bundle to each of the
//! N - 1 others), then admit a new device and let it join (N - 1 becomes N again: challenge,
//! then with rekey on join a bundle to each of the N), and time the anchor: the raw per-member
//! crypto of one bundle (an ephemeral P-256 key, ECDH with the member's key, and an ECDSA
//! signature of the message, with `p256` directly) repeated N times. The ratios are server time
//! / (raw per-bundle crypto x bundles sent), per round; medians over rounds.
//!
//! Run: `cargo bench -p group-bench --bench keyserver` (`BENCH_PAIRED_SECS` bounds the rounds
//! per size, default 2 s, at least 3 rounds).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use p256::ecdh;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use group_bench::{Report, paired_budget};
use group_core::keydist::{
    DeviceCredential, DeviceId, GroupSpec, KeyServer, Member, MemberConfig, MemberCredentials,
    MemoryServerStore, Message, Role, ServerCredentials, parse,
};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::time::Instant as Now;

type Srv = KeyServer<MemoryServerStore, 64, 8, 16384>;
type Mem = Member<MemorySequenceStore>;

const GROUP_ID: u32 = 21;

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
    messages: u64,
    bytes: u64,
    bundles: u64,
}

struct World {
    now: u64,
    rng: Rng,
    server_key: SigningKey,
    server: Srv,
    members: Vec<(DeviceId, Mem)>,
    next_id: u32,
}

impl World {
    fn new(n: usize) -> Self {
        let server_key = SigningKey::from_slice(&[0x33; 32]).unwrap();
        let mut rng = Rng(ChaCha20Rng::seed_from_u64(14));
        let mut server = Srv::open(
            ServerCredentials::new(server_key.clone()),
            MemoryServerStore::new(),
        )
        .unwrap();
        server
            .create_group(
                GroupSpec::new(GROUP_ID, Suite::AES_128_CCM),
                Now(1_000),
                &mut rng,
            )
            .unwrap();
        let mut w = Self {
            now: 1_000,
            rng,
            server_key,
            server,
            members: Vec::new(),
            next_id: 1,
        };
        for _ in 0..n {
            w.join_new();
        }
        w.settle();
        assert!(
            w.members.iter().all(|(_, m)| m.is_joined()),
            "not every member joined"
        );
        w
    }

    /// Admits a new device and runs its join; returns the key server's work.
    fn join_new(&mut self) -> Work {
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
                &[GROUP_ID],
            )
            .unwrap();
        work.time += t.elapsed();
        let mut member = Mem::new(
            MemberConfig::new(id, GROUP_ID, Role::Listener),
            MemberCredentials::signed(key, *self.server_key.verifying_key()),
            MemorySequenceStore::commissioned(),
        );
        member.join(Now(self.now)).unwrap();
        self.members.push((id, member));
        let w = self.settle();
        work.time += w.time;
        work.messages += w.messages;
        work.bytes += w.bytes;
        work.bundles += w.bundles;
        work
    }

    /// Removes the oldest member; returns the key server's work until every other member has
    /// its new keys.
    fn remove_one(&mut self) -> Work {
        let (id, _) = self.members.remove(0);
        let mut work = Work::default();
        let now = Now(self.now);
        let t = Instant::now();
        self.server.revoke_device(id, now, &mut self.rng).unwrap();
        work.time += t.elapsed();
        let w = self.settle();
        work.time += w.time;
        work.messages += w.messages;
        work.bytes += w.bytes;
        work.bundles += w.bundles;
        work
    }

    /// Delivers messages both ways and advances the clock until nothing moves (bounded).
    fn settle(&mut self) -> Work {
        let mut work = Work::default();
        let mut buf = [0u8; 1500];
        let mut quiet = 0;
        for _ in 0..2_000 {
            let now = Now(self.now);
            let mut moved = false;
            // Devices to the key server.
            for (_, m) in self.members.iter_mut() {
                m.handle_timeout(now);
                while let Some(n) = m.poll_transmit(now, &mut self.rng, &mut buf).unwrap() {
                    moved = true;
                    let t = Instant::now();
                    let r = self.server.handle_message(now, &mut self.rng, &buf[..n]);
                    work.time += t.elapsed();
                    r.unwrap();
                }
                while m.poll_event().is_some() {}
            }
            // The key server's timers and output, to the devices.
            let t = Instant::now();
            self.server.handle_timeout(now, &mut self.rng).unwrap();
            work.time += t.elapsed();
            loop {
                let t = Instant::now();
                let out = self
                    .server
                    .poll_transmit(now, &mut self.rng, &mut buf)
                    .unwrap();
                work.time += t.elapsed();
                let Some(tx) = out else { break };
                moved = true;
                let bytes = &buf[..tx.len];
                work.messages += 1;
                work.bytes += tx.len as u64;
                if matches!(parse(bytes).map(|p| p.message), Ok(Message::KeyBundle(_))) {
                    work.bundles += 1;
                }
                if let Some((_, m)) = self.members.iter_mut().find(|(d, _)| *d == tx.device_id) {
                    let _ = m.handle_message(now, bytes);
                }
            }
            while self.server.poll_event().is_some() {}
            if moved {
                quiet = 0;
            } else {
                quiet += 1;
                let all_current = self.members.iter().all(|(_, m)| m.is_joined());
                if quiet > 3
                    && all_current
                    && self
                        .server
                        .poll_timeout()
                        .is_none_or(|t| t.0 > self.now + 60_000)
                {
                    break;
                }
            }
            // Advance to the next deadline (at most 1 s at a time, at least 10 ms).
            let next = self
                .members
                .iter()
                .filter_map(|(_, m)| m.poll_timeout())
                .chain(self.server.poll_timeout())
                .map(|t| t.0)
                .min()
                .unwrap_or(self.now + 1_000);
            self.now = next.clamp(self.now + 10, self.now + 1_000);
        }
        work
    }
}

/// The raw per-bundle public-key crypto, `count` times: an ephemeral key, ECDH with the
/// member's static key, and an ECDSA signature over a message of a bundle's size.
fn raw_crypto(
    rng: &mut Rng,
    server: &SigningKey,
    members: &[VerifyingKey],
    count: usize,
) -> Duration {
    let msg = [0x42u8; 200];
    let t = Instant::now();
    for i in 0..count {
        let recipient = p256::PublicKey::from(&members[i % members.len()]);
        let eph = ecdh::EphemeralSecret::generate_from_rng(rng);
        let eph_pub = VerifyingKey::from(eph.public_key()).to_sec1_point(true);
        let shared = eph.diffie_hellman(&recipient);
        std::hint::black_box((eph_pub, shared.raw_secret_bytes()[0]));
        let sig: Signature = server.sign(&msg);
        std::hint::black_box(sig);
    }
    t.elapsed()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut report = Report::new("keyserver");
    println!(
        "| group size | operation | server time (median) | messages | bytes | bundles | raw crypto x bundles | ratio (median, range) | rounds |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let budget = paired_budget().max(Duration::from_millis(1));
    for n in [8usize, 32, 63] {
        let t0 = Instant::now();
        let mut world = World::new(n);
        let setup = t0.elapsed();
        let members: Vec<VerifyingKey> = (1..=64).map(|i| *device_key(i).verifying_key()).collect();
        let mut rng = Rng(ChaCha20Rng::seed_from_u64(99));
        let server = SigningKey::from_slice(&[0x33; 32]).unwrap();
        let mut rows: Vec<(&str, Vec<f64>, Vec<f64>, Work)> = vec![
            ("remove one", Vec::new(), Vec::new(), Work::default()),
            ("admit one", Vec::new(), Vec::new(), Work::default()),
        ];
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < 3 || start.elapsed() < budget {
            for (i, row) in rows.iter_mut().enumerate() {
                let w = if i == 0 {
                    world.remove_one()
                } else {
                    world.join_new()
                };
                let raw = raw_crypto(&mut rng, &server, &members, w.bundles.max(1) as usize);
                row.1.push(w.time.as_secs_f64() * 1e9);
                row.2.push(w.time.as_secs_f64() / raw.as_secs_f64());
                row.3 = w;
            }
            rounds += 1;
            if rounds >= 200 {
                break;
            }
        }
        for (op, times, ratios, w) in rows.iter_mut() {
            let t = median(times);
            let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().cloned().fold(0.0, f64::max);
            let r = median(ratios);
            println!(
                "| {n} | {op} | {} | {} | {} | {} | {} | {r:.3} ({lo:.3}..{hi:.3}) | {rounds} |",
                group_bench::fmt_ns(t),
                w.messages,
                w.bytes,
                w.bundles,
                group_bench::fmt_ns(t / r),
            );
            report.note(serde_json::json!({
                "size": n, "op": op, "server_ns": t, "messages": w.messages, "bytes": w.bytes,
                "bundles": w.bundles, "ratio_to_raw": r, "ratio_min": lo, "ratio_max": hi,
                "rounds": rounds, "setup_ms": setup.as_millis() as u64,
            }));
        }
    }
    report.finish();
}
