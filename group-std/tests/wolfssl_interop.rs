//! Live interoperability with wolfSSL 5.5.4's DTLS multicast (Debian `libwolfssl-dev`), the only
//! shipping implementation of the group record layout.
//!
//! wolfSSL members are processes of the harness `interop/wolfssl/wolfssl_member.c` (built here
//! with `interop/wolfssl/build.sh`, or taken from `$DTLS_GROUP_WOLFSSL_MEMBER`), driven by line
//! commands and reporting JSON lines: every datagram handed to wolfSSL (`rx`), every record
//! `wolfSSL_mcast_read` delivered (`record`, with the peer ID), every datagram it sent (`tx`).
//! Project members are [`GroupEndpoint`]s and [`Group`]s. Everyone shares one IPv4 multicast
//! group on loopback (interface 127.0.0.1, TTL 1); every wait is bounded and every wolfSSL
//! process has a hard run-time bound.
//!
//! Keys: both sides derive them from one pre-master secret and two randoms, wolfSSL with
//! `wolfSSL_set_secret`, the project with [`wolfssl_keys`]. The suite never goes on the wire;
//! wolfSSL's 0xC0AE, 0xC0AC, 0xC02B and 0xCCA9 protect records as the project's AES-128-CCM_8,
//! AES-128-CCM, AES-128-GCM and ChaCha20-Poly1305.
//!
//! If the harness can't be built (no C compiler or no libwolfssl-dev), every test here fails,
//! unless `DTLS_GROUP_SKIP_WOLFSSL=1` is set: then each prints `SKIP` and passes.
//!
//! See `docs/interop.md`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant as StdInstant};

use group_core::counters::Counters;
use group_core::group::{Group, GroupConfig};
use group_core::record::NonceProfile;
use group_core::schedule::wolfssl_keys;
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, HEADER_LEN, SenderId};
use group_std::endpoint::{Clock, GroupEndpoint, Received};
use group_std::net::{MulticastConfig, MulticastSocket};
use serde_json::Value;

const SKIP_ENV: &str = "DTLS_GROUP_SKIP_WOLFSSL";
const MEMBER_ENV: &str = "DTLS_GROUP_WOLFSSL_MEMBER";
/// Every wait for a datagram, a record or a reply.
const WAIT: Duration = Duration::from_secs(10);
/// Hard bound on each wolfSSL process.
const MEMBER_LIFETIME_MS: u32 = 60_000;

// ------------------------------------------------------------------------------------------
// The harness binary

fn harness() -> Option<&'static Path> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(build_harness) {
        Ok(p) => Some(p.as_path()),
        Err(e) if std::env::var(SKIP_ENV).as_deref() == Ok("1") => {
            eprintln!("SKIP wolfSSL interop ({SKIP_ENV}=1): {e}");
            None
        }
        Err(e) => panic!(
            "the wolfSSL harness is not available: {e}\n\
             Install a C compiler and libwolfssl-dev (.ci/wolfssl.sh does), or set {SKIP_ENV}=1 \
             to skip these tests explicitly."
        ),
    }
}

fn build_harness() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(MEMBER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{MEMBER_ENV}={} is not a file", p.display()))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/wolfssl/build.sh");
    // Built under a per-process name, then renamed: concurrent test runs sharing a target
    // directory never write over a binary another run is executing.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let tmp = dir.join(format!("wolfssl_member.{}", std::process::id()));
    let out = dir.join("wolfssl_member");
    let o = Command::new("sh")
        .arg(&script)
        .arg(&tmp)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !o.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Suites and secrets

#[derive(Clone, Copy, Debug)]
struct Case {
    /// The project's suite.
    suite: Suite,
    /// The wolfSSL suite with the same record protection (and SHA-256 PRF).
    wolf: u16,
    /// Keeps the tests' multicast groups apart.
    index: u8,
}

const CCM8: Case = Case {
    suite: Suite::AES_128_CCM_8,
    wolf: 0xC0AE,
    index: 1,
};
const CCM: Case = Case {
    suite: Suite::AES_128_CCM,
    wolf: 0xC0AC,
    index: 2,
};
const GCM: Case = Case {
    suite: Suite::AES_128_GCM,
    wolf: 0xC02B,
    index: 3,
};
#[cfg(feature = "chacha20")]
const CHACHA: Case = Case {
    suite: Suite::CHACHA20_POLY1305,
    wolf: 0xCCA9,
    index: 4,
};

impl Case {
    fn explicit_nonce(&self) -> bool {
        self.suite != Suite::CHACHA20_POLY1305
    }

    fn is_ccm(&self) -> bool {
        self.suite == Suite::AES_128_CCM_8 || self.suite == Suite::AES_128_CCM
    }
}

/// What `wolfSSL_set_secret` takes (besides epoch and suite).
struct Secret {
    pms: Vec<u8>,
    client_random: [u8; 32],
    server_random: [u8; 32],
}

/// Epoch 1: the group secret of the recorded fixtures (`group-core/tests/fixtures`).
fn secret_epoch1() -> Secret {
    Secret {
        pms: hex::decode(
            "9c7f1e2d3b4a59687786a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\
             a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff00",
        )
        .unwrap(),
        client_random: hex32("c1c1c1c10123456789abcdef0123456789abcdef0123456789abcdef01234567"),
        server_random: hex32("5e5e5e5efedcba9876543210fedcba9876543210fedcba9876543210fedcba98"),
    }
}

/// Epoch 2: fresh material, as a key server would hand out at a rekey.
fn secret_epoch2() -> Secret {
    Secret {
        pms: (0u8..48).map(|i| i.wrapping_mul(37) ^ 0xa5).collect(),
        client_random: [0x2c; 32],
        server_random: [0x5d; 32],
    }
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn keys(case: Case, s: &Secret) -> RecordKeys {
    wolfssl_keys(case.suite, &s.pms, &s.client_random, &s.server_random)
        .unwrap()
        .keys
}

/// One group per test and suite; the port keeps parallel runs of the suite apart.
fn group_addr(case: Case, test: u8) -> SocketAddrV4 {
    let port = 30_000 + (std::process::id() % 20_000) as u16;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, case.index * 16 + test), port)
}

// ------------------------------------------------------------------------------------------
// A wolfSSL member process

struct WolfMember {
    id: u8,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    /// Every event so far, in order.
    seen: Vec<Value>,
}

impl WolfMember {
    /// Starts member `id` in epoch 1 with these peers; `prime` calls `wolfSSL_connect()` before
    /// `wolfSSL_set_secret` (see [`unprimed`]).
    fn spawn(
        bin: &Path,
        case: Case,
        id: u8,
        peers: &[u8],
        group: SocketAddrV4,
        secret: &Secret,
        prime: bool,
    ) -> Self {
        let peers: Vec<String> = peers.iter().map(u8::to_string).collect();
        let mut cmd = Command::new(bin);
        cmd.args(["--id", &id.to_string()])
            .args(["--group", &group.to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--suite", &format!("{:04X}", case.wolf)])
            .args(["--epoch", "1"])
            .args(["--pms", &hex::encode(&secret.pms)])
            .args(["--client-random", &hex::encode(secret.client_random)])
            .args(["--server-random", &hex::encode(secret.server_random)])
            .args(["--timeout-ms", &MEMBER_LIFETIME_MS.to_string()]);
        if !prime {
            cmd.arg("--no-prime");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut m = Self {
            id,
            child,
            stdin,
            events,
            seen: Vec::new(),
        };
        let ready = m.wait_event("ready", |_| true);
        // The quirks these tests pin down are those of Debian 12's wolfSSL.
        assert_eq!(
            ready["version"], "5.5.4",
            "these tests document wolfSSL 5.5.4 (Debian 12 libwolfssl-dev): {ready}"
        );
        assert_eq!(ready["max_peers"], 100, "{ready}");
        m
    }

    fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("member stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the next event of kind `ev` that `pred` accepts, keeping everything seen.
    fn wait_event(&mut self, ev: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = StdInstant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(StdInstant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["ev"] == "fatal" || v["ev"] == "read_error" || v["ev"] == "bad_command" {
                        panic!("wolfSSL member {}: {v}", self.id);
                    }
                    if v["ev"] == ev && pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "wolfSSL member {}: no {ev:?} event within {WAIT:?}; events: {:#?}",
                    self.id,
                    self.seen.iter().rev().take(20).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// `wolfSSL_write`s one record; returns the datagram wolfSSL sent, or `None` if the write
    /// failed (its return value is then checked by the caller through `last_sent`).
    fn send(&mut self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let before = self.count("tx");
        self.command(&format!("send {}", hex::encode(plaintext)));
        let sent = self.wait_event("sent", |_| true);
        if sent["ret"].as_i64() != Some(plaintext.len() as i64) {
            assert_eq!(self.count("tx"), before, "a failed write sent nothing");
            return None;
        }
        assert_eq!(self.count("tx"), before + 1, "one datagram per record");
        let tx = self.seen.iter().rev().find(|v| v["ev"] == "tx").unwrap();
        Some(hex::decode(tx["hex"].as_str().unwrap()).unwrap())
    }

    fn sent_ok(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.send(plaintext).unwrap_or_else(|| {
            panic!(
                "wolfSSL member {} could not send: {}",
                self.id,
                self.seen.last().unwrap()
            )
        })
    }

    /// A further `wolfSSL_set_secret` (epoch change).
    fn set_secret(&mut self, case: Case, epoch: u16, s: &Secret) {
        self.command(&format!(
            "secret {epoch} {} {} {} {:04X}",
            hex::encode(&s.pms),
            hex::encode(s.client_random),
            hex::encode(s.server_random),
            case.wolf
        ));
        let ack = self.wait_event("secret", |v| v["epoch"] == epoch);
        assert_eq!(ack["ret"], 1, "wolfSSL_set_secret failed: {ack}");
    }

    fn count(&self, ev: &str) -> usize {
        self.seen.iter().filter(|v| v["ev"] == ev).count()
    }

    /// Waits until `n` datagrams were handed to wolfSSL and wolfSSL has processed them (the
    /// `stats` reply comes after the harness has read everything wolfSSL could deliver).
    fn sync_rx(&mut self, n: usize) {
        let deadline = StdInstant::now() + WAIT;
        while self.count("rx") < n {
            assert!(
                StdInstant::now() < deadline,
                "wolfSSL member {}: {} of {n} datagrams",
                self.id,
                self.count("rx")
            );
            let _ = self.wait_event("rx", |_| true);
        }
        assert_eq!(
            self.count("rx"),
            n,
            "wolfSSL member {}: extra datagrams",
            self.id
        );
        self.command("stats");
        let stats = self.wait_event("stats", |_| true);
        assert_eq!(stats["rx"], n as u64);
    }

    /// `(peer ID, plaintext)` of every record `wolfSSL_mcast_read` delivered so far.
    fn records(&self) -> Vec<(u8, Vec<u8>)> {
        self.seen
            .iter()
            .filter(|v| v["ev"] == "record")
            .map(|v| {
                (
                    u8::try_from(v["peer"].as_u64().unwrap()).unwrap(),
                    hex::decode(v["data"].as_str().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    fn quit(&mut self) {
        self.command("quit");
        let _ = self.wait_event("exit", |_| true);
        self.stdin = None;
        let deadline = StdInstant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "wolfSSL member {}: {status}", self.id);
                return;
            }
            assert!(StdInstant::now() < deadline, "wolfSSL member did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WolfMember {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ------------------------------------------------------------------------------------------
// Project members, the capture socket and the injector

/// A project member on the group, with everything it delivered.
struct Project {
    ep: GroupEndpoint<MemorySequenceStore>,
    got: Vec<Received>,
}

impl Project {
    fn new(group: SocketAddrV4, sid: Option<u8>, profile: NonceProfile, keys: &RecordKeys) -> Self {
        let mut cfg = GroupConfig::new(0).with_nonce_profile(profile);
        cfg.own_sender_id = sid.map(SenderId);
        let mut g: Group = Group::new(cfg);
        let clock = Clock::new();
        g.install_and_activate(Epoch(1), keys, clock.now()).unwrap();
        let mut mc = MulticastConfig::loopback_v4(group);
        mc.read_timeout = Some(Duration::from_millis(50));
        let sock = MulticastSocket::open(&mc).unwrap();
        Self {
            ep: GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock),
            got: Vec::new(),
        }
    }

    fn counters(&self) -> Counters {
        *self.ep.group().counters()
    }

    fn processed(&self) -> u64 {
        let c = self.counters();
        c.accepted + c.dropped()
    }

    /// Receives until `n` records in all were accepted or dropped, then checks nothing more is
    /// queued.
    fn sync(&mut self, n: u64, who: &str) {
        let deadline = StdInstant::now() + WAIT;
        while self.processed() < n && StdInstant::now() < deadline {
            let (d, _) = self.ep.recv().unwrap();
            self.got.extend(d);
        }
        assert_eq!(self.processed(), n, "{who}: {:?}", self.counters());
    }

    /// Stages and activates the next epoch.
    fn rekey(&mut self, epoch: u16, keys: &RecordKeys) {
        let now = self.ep.clock().now();
        let g = self.ep.group_mut();
        g.install_epoch(Epoch(epoch), keys).unwrap();
        g.activate_epoch(Epoch(epoch), now).unwrap();
    }
}

/// Asserts the accepted count and every drop reason (reasons not named must be 0).
fn assert_counters(who: &str, c: &Counters, accepted: u64, drops: &[(&str, u64)]) {
    let want: BTreeMap<&str, u64> = drops.iter().copied().collect();
    let got: BTreeMap<&str, u64> = c
        .drop_reasons()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let want: BTreeMap<&str, u64> = want.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!((c.accepted, got), (accepted, want), "{who}: {c:?}");
}

/// A plain socket that sends to the group through 127.0.0.1 with TTL 1 (replays, tampered
/// records, and records held back by the test).
fn injector() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    s.into()
}

fn capture_socket(group: SocketAddrV4) -> MulticastSocket {
    let mut mc = MulticastConfig::loopback_v4(group);
    mc.read_timeout = Some(Duration::from_millis(50));
    MulticastSocket::open(&mc).unwrap()
}

/// The next `n` datagrams on the capture socket.
fn capture(cap: &MulticastSocket, n: usize) -> Vec<Vec<u8>> {
    let deadline = StdInstant::now() + WAIT;
    let mut buf = vec![0u8; 65_535];
    let mut out = Vec::new();
    while out.len() < n && StdInstant::now() < deadline {
        if let Some((len, _)) = cap.recv(&mut buf).unwrap() {
            out.push(buf[..len].to_vec());
        }
    }
    assert_eq!(out.len(), n, "captured datagrams");
    out
}

/// Header fields of one record: (epoch, sid, seq).
fn header(record: &[u8]) -> (u16, u8, u64) {
    let h = group_core::wire::RecordHeader::parse(record).unwrap();
    (h.epoch.0, h.sender_id.0, h.seq)
}

fn explicit_nonce(record: &[u8]) -> [u8; 8] {
    record[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap()
}

/// `epoch || sid || seq`, the explicit nonce the strict profile requires.
fn strict_nonce(record: &[u8]) -> [u8; 8] {
    record[3..11].try_into().unwrap()
}

/// The tampered variants of a fresh record the test sends before the genuine one: each must
/// fail authentication (wolfSSL) and leave the receiver's state as it was.
fn tampered(case: Case, record: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let body = HEADER_LEN + if case.explicit_nonce() { 8 } else { 0 };
    let mut t = record.to_vec();
    t[body] ^= 0x01;
    out.push(("ciphertext bit", t));
    let mut t = record.to_vec();
    *t.last_mut().unwrap() ^= 0x80;
    out.push(("tag bit", t));
    // The header's sequence number moved far ahead (AAD mismatch). A receiver that moved its
    // window before authenticating would then refuse the genuine record as too old.
    let mut t = record.to_vec();
    t[10] = 100;
    out.push(("header seq 100", t));
    // One byte cut off, length field fixed up.
    let mut t = record[..record.len() - 1].to_vec();
    let len = u16::try_from(t.len() - HEADER_LEN).unwrap();
    t[11..13].copy_from_slice(&len.to_be_bytes());
    out.push(("truncated", t));
    if case.explicit_nonce() {
        let mut t = record.to_vec();
        t[HEADER_LEN + 7] ^= 0x01;
        out.push(("explicit nonce bit", t));
    }
    out
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

// ------------------------------------------------------------------------------------------
// The mesh: two wolfSSL members and project members in one group, both directions, replays,
// tampering and an epoch change.

/// wolfSSL members 1 and 2 (peers: each other, 7 and 8); project member 7 (a
/// [`GroupEndpoint`], compatibility profile); project member 8 (a [`Group`] whose records the
/// test holds back, tampers with and sends); a strict-profile project listener; a capture
/// socket.
fn mesh(case: Case) {
    let Some(bin) = harness() else { return };
    let group = group_addr(case, 1);
    let (s1, s2) = (secret_epoch1(), secret_epoch2());
    let (k1, k2) = (keys(case, &s1), keys(case, &s2));
    let cap = capture_socket(group);
    let inj = injector();
    let mut p7 = Project::new(group, Some(7), NonceProfile::Compatibility, &k1);
    let mut strict = Project::new(group, None, NonceProfile::Strict, &k1);
    let mut m8: Group = Group::new(GroupConfig::new(0).with_sender_id(SenderId(8)));
    m8.install_and_activate(Epoch(1), &k1, Instant(0)).unwrap();
    let mut m8_store = MemorySequenceStore::commissioned();
    let mut m8_seal = |m8: &mut Group, msg: &str| {
        let mut buf = vec![0u8; 512];
        let n = m8
            .seal(Instant(0), &mut m8_store, msg.as_bytes(), &mut buf)
            .unwrap();
        buf.truncate(n);
        buf
    };
    let mut w1 = WolfMember::spawn(bin, case, 1, &[2, 7, 8], group, &s1, true);
    let mut w2 = WolfMember::spawn(bin, case, 2, &[1, 7, 8], group, &s1, true);
    // Datagrams on the group so far, and those each wolfSSL member sent (it does not hear its
    // own).
    let mut on_wire = 0u64;
    let mut w_tx = [0u64; 2];

    // 1. wolfSSL -> project: three records from each wolfSSL member.
    let mut wolf_records = Vec::new();
    for k in 0..3 {
        for (i, w) in [&mut w1, &mut w2].into_iter().enumerate() {
            let r = w.sent_ok(format!("w{} e1 #{k}", w.id).as_bytes());
            assert_eq!(header(&r), (1, w.id, k), "wolfSSL's header");
            wolf_records.push(r);
            on_wire += 1;
            w_tx[i] += 1;
        }
    }
    p7.sync(on_wire, "member 7");
    strict.sync(on_wire, "strict listener");
    assert_eq!(
        capture(&cap, 6),
        wolf_records,
        "the capture saw what wolfSSL sent"
    );
    let want: Vec<_> = (0..3u64)
        .flat_map(|k| {
            [1u8, 2].map(|id| (SenderId(id), Epoch(1), k, text(&format!("w{id} e1 #{k}"))))
        })
        .collect();
    let got: Vec<_> = p7
        .got
        .iter()
        .map(|r| (r.sender_id, r.epoch, r.seq, r.plaintext.clone()))
        .collect();
    assert_eq!(
        sorted(got),
        sorted(want),
        "member 7 delivered wolfSSL's records"
    );
    assert_counters("member 7", &p7.counters(), 6, &[]);
    // The explicit nonces wolfSSL chose.
    for r in &wolf_records {
        if case.explicit_nonce() {
            assert_ne!(
                explicit_nonce(r),
                strict_nonce(r),
                "wolfSSL's nonce is not epoch||sid||seq"
            );
        } else {
            // ChaCha20-Poly1305: no explicit nonce, 16-byte tag.
            assert_eq!(r.len(), HEADER_LEN + "w1 e1 #0".len() + 16);
        }
    }
    if case.is_ccm() {
        // AES-CCM: both members count the explicit nonce from 0: (member 1, seq k) and
        // (member 2, seq k) use the same nonce under the same key.
        for (k, pair) in wolf_records.chunks(2).enumerate() {
            assert_eq!(explicit_nonce(&pair[0]), (k as u64).to_be_bytes());
            assert_eq!(explicit_nonce(&pair[0]), explicit_nonce(&pair[1]));
        }
    }
    if case.explicit_nonce() {
        // The strict profile refuses every one of them.
        assert_counters(
            "strict listener",
            &strict.counters(),
            0,
            &[("nonce_mismatch", 6)],
        );
    } else {
        assert_counters("strict listener", &strict.counters(), 6, &[]);
    }
    w1.sync_rx((on_wire - w_tx[0]) as usize);
    w2.sync_rx((on_wire - w_tx[1]) as usize);

    // 2. Replays of wolfSSL's records, and one with its header seq moved (AAD mismatch).
    for r in &wolf_records {
        inj.send_to(r, group).unwrap();
    }
    let mut moved = wolf_records[4].clone(); // member 1, seq 2
    moved[10] = 50;
    inj.send_to(&moved, group).unwrap();
    on_wire += 7;
    p7.sync(on_wire, "member 7");
    strict.sync(on_wire, "strict listener");
    assert_counters(
        "member 7",
        &p7.counters(),
        6,
        &[("replay", 6), ("authentication_failed", 1)],
    );
    if case.explicit_nonce() {
        assert_counters(
            "strict listener",
            &strict.counters(),
            0,
            &[("nonce_mismatch", 13)],
        );
    } else {
        assert_counters(
            "strict listener",
            &strict.counters(),
            6,
            &[("replay", 6), ("authentication_failed", 1)],
        );
    }

    // 3a. project -> wolfSSL: member 7 sends three records through its endpoint.
    let mut p7_records = Vec::new();
    for k in 0..3 {
        let r = p7.ep.send(format!("p7 e1 #{k}").as_bytes()).unwrap();
        if case.explicit_nonce() {
            assert_eq!(explicit_nonce(&r), strict_nonce(&r), "the project's nonce");
        }
        p7_records.push(r);
    }
    on_wire += 3;
    // 3b. Replays of them.
    for r in &p7_records {
        inj.send_to(r, group).unwrap();
    }
    on_wire += 3;
    // 3c. Member 8's first record is held back: its tampered copies go first, then the genuine
    // record, a replay, the next two, another replay.
    let m8_records: Vec<Vec<u8>> = (0..3)
        .map(|k| m8_seal(&mut m8, &format!("m8 e1 #{k}")))
        .collect();
    let tampers = tampered(case, &m8_records[0]);
    for (_, t) in &tampers {
        inj.send_to(t, group).unwrap();
    }
    for r in [
        &m8_records[0],
        &m8_records[0],
        &m8_records[1],
        &m8_records[2],
        &m8_records[1],
    ] {
        inj.send_to(r, group).unwrap();
    }
    let nt = tampers.len() as u64;
    on_wire += nt + 5;
    p7.sync(on_wire, "member 7");
    strict.sync(on_wire, "strict listener");
    w1.sync_rx((on_wire - w_tx[0]) as usize);
    w2.sync_rx((on_wire - w_tx[1]) as usize);
    assert_eq!(
        capture(&cap, (7 + 6 + nt + 5) as usize)[7..10],
        p7_records[..]
    );
    // Member 7 hears its own records (and their replays) and drops them.
    assert_counters(
        "member 7",
        &p7.counters(),
        9,
        &[
            ("replay", 8),
            ("authentication_failed", 1 + nt),
            ("own_sender_id", 6),
        ],
    );
    if case.explicit_nonce() {
        // Member 7's and 8's records carry epoch||sid||seq: strict accepts them. Of the
        // tampered copies, those whose nonce no longer matches the header are refused before
        // decryption.
        assert_counters(
            "strict listener",
            &strict.counters(),
            6,
            &[
                ("nonce_mismatch", 15),
                ("replay", 5),
                ("authentication_failed", 3),
            ],
        );
    } else {
        assert_counters(
            "strict listener",
            &strict.counters(),
            12,
            &[("replay", 11), ("authentication_failed", 1 + nt)],
        );
    }

    // 4. Epoch change: new pms and randoms under epoch 2. Project members stage the new keys
    // (receivable at once), wolfSSL members switch, then project members send in epoch 2.
    let late = m8_seal(&mut m8, "m8 e1 #3 late"); // sealed in epoch 1, sent after the switch
    for p in [&mut p7, &mut strict] {
        p.ep.group_mut().install_epoch(Epoch(2), &k2).unwrap();
    }
    w1.set_secret(case, 2, &s2);
    w2.set_secret(case, 2, &s2);
    p7.rekey(2, &k2);
    strict.rekey(2, &k2);
    m8.install_and_activate(Epoch(2), &k2, Instant(0)).unwrap();
    let mut wolf_e2 = Vec::new();
    for k in 0..2 {
        for (i, w) in [&mut w1, &mut w2].into_iter().enumerate() {
            let r = w.sent_ok(format!("w{} e2 #{k}", w.id).as_bytes());
            // wolfSSL keeps counting its sequence numbers across the epoch change.
            assert_eq!(
                header(&r),
                (2, w.id, 3 + k),
                "wolfSSL's header after the change"
            );
            if case.is_ccm() {
                // ... but its AES-CCM explicit nonce starts again at 0 under the new key.
                assert_eq!(explicit_nonce(&r), k.to_be_bytes());
            }
            wolf_e2.push(r);
            on_wire += 1;
            w_tx[i] += 1;
        }
    }
    if case.explicit_nonce() && !case.is_ccm() {
        // AES-GCM: a fresh random start under the new key, then counting up.
        let n = |r: &Vec<u8>| u64::from_be_bytes(explicit_nonce(r));
        for i in 0..2 {
            let last_e1 = n(&wolf_records[4 + i]);
            assert_eq!(n(&wolf_e2[2 + i]), n(&wolf_e2[i]) + 1);
            assert_ne!(n(&wolf_e2[i]), last_e1 + 1);
        }
    }
    for k in 0..2 {
        let r = p7.ep.send(format!("p7 e2 #{k}").as_bytes()).unwrap();
        assert_eq!(header(&r), (2, 7, k));
    }
    let m8_e2 = m8_seal(&mut m8, "m8 e2 #0");
    assert_eq!(header(&m8_e2), (2, 8, 0));
    inj.send_to(&late, group).unwrap();
    inj.send_to(&m8_e2, group).unwrap();
    on_wire += 4;
    p7.sync(on_wire, "member 7");
    strict.sync(on_wire, "strict listener");
    // An epoch-1 record of wolfSSL member 1, replayed after the change.
    inj.send_to(&wolf_records[0], group).unwrap();
    on_wire += 1;
    p7.sync(on_wire, "member 7");
    strict.sync(on_wire, "strict listener");
    w1.sync_rx((on_wire - w_tx[0]) as usize);
    w2.sync_rx((on_wire - w_tx[1]) as usize);
    w1.quit();
    w2.quit();

    // What the project delivered: everything fresh and authentic, including member 8's late
    // epoch-1 record (the previous epoch is held for a grace period).
    let mut want: Vec<(u8, u16, u64, String)> = Vec::new();
    for k in 0..3u64 {
        want.push((1, 1, k, format!("w1 e1 #{k}")));
        want.push((2, 1, k, format!("w2 e1 #{k}")));
        want.push((8, 1, k, format!("m8 e1 #{k}")));
    }
    for k in 0..2u64 {
        want.push((1, 2, 3 + k, format!("w1 e2 #{k}")));
        want.push((2, 2, 3 + k, format!("w2 e2 #{k}")));
    }
    want.push((8, 1, 3, "m8 e1 #3 late".into()));
    want.push((8, 2, 0, "m8 e2 #0".into()));
    let got: Vec<_> = p7
        .got
        .iter()
        .map(|r| {
            (
                r.sender_id.0,
                r.epoch.0,
                r.seq,
                String::from_utf8(r.plaintext.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(sorted(got), sorted(want), "member 7 delivered");
    assert_counters(
        "member 7",
        &p7.counters(),
        15,
        &[
            ("replay", 9),
            ("authentication_failed", 1 + nt),
            ("own_sender_id", 8),
        ],
    );
    if case.explicit_nonce() {
        assert_counters(
            "strict listener",
            &strict.counters(),
            10,
            &[
                ("nonce_mismatch", 20),
                ("replay", 5),
                ("authentication_failed", 3),
            ],
        );
    } else {
        assert_counters(
            "strict listener",
            &strict.counters(),
            20,
            &[("replay", 12), ("authentication_failed", 1 + nt)],
        );
    }

    // What wolfSSL delivered: exactly the fresh authentic records of its peers, in the epoch it
    // holds; no replay, no tampered copy, not member 8's late epoch-1 record (wolfSSL holds
    // one key set: after wolfSSL_set_secret the old epoch's records fail authentication).
    for w in [&w1, &w2] {
        let other = 3 - w.id;
        let mut want: Vec<(u8, Vec<u8>)> = Vec::new();
        for k in 0..3 {
            want.push((other, text(&format!("w{other} e1 #{k}"))));
            want.push((7, text(&format!("p7 e1 #{k}"))));
            want.push((8, text(&format!("m8 e1 #{k}"))));
        }
        for k in 0..2 {
            want.push((other, text(&format!("w{other} e2 #{k}"))));
            want.push((7, text(&format!("p7 e2 #{k}"))));
        }
        want.push((8, text("m8 e2 #0")));
        assert_eq!(
            sorted(w.records()),
            sorted(want),
            "wolfSSL member {} delivered",
            w.id
        );
    }
}

#[test]
fn mesh_aes128_ccm8() {
    mesh(CCM8);
}

#[test]
fn mesh_aes128_ccm() {
    mesh(CCM);
}

#[test]
fn mesh_aes128_gcm() {
    mesh(GCM);
}

#[cfg(feature = "chacha20")]
#[test]
fn mesh_chacha20_poly1305() {
    mesh(CHACHA);
}

// ------------------------------------------------------------------------------------------
// The strict profile and wolfSSL's explicit nonces

/// Three wolfSSL members send two records each, project member 7 sends two; a strict-profile
/// and a compatibility-profile project listener hear all of them.
fn strict_profile(case: Case) {
    let Some(bin) = harness() else { return };
    let group = group_addr(case, 2);
    let s1 = secret_epoch1();
    let k1 = keys(case, &s1);
    let mut strict = Project::new(group, None, NonceProfile::Strict, &k1);
    let mut compat = Project::new(group, None, NonceProfile::Compatibility, &k1);
    let mut p7 = Project::new(group, Some(7), NonceProfile::Strict, &k1);
    let mut members: Vec<WolfMember> = [1u8, 2, 3]
        .iter()
        .map(|&id| {
            let peers: Vec<u8> = [1, 2, 3, 7].into_iter().filter(|&p| p != id).collect();
            WolfMember::spawn(bin, case, id, &peers, group, &s1, true)
        })
        .collect();
    // records[id - 1][k]: member id's record k; plaintexts of equal length.
    let plaintext = |id: u8, k: u64| {
        text(&format!(
            "member {id} says {} #{k}",
            ["on ", "dim", "off"][usize::from(id - 1)]
        ))
    };
    let mut records: Vec<Vec<Vec<u8>>> = vec![Vec::new(); 3];
    for k in 0..2 {
        for w in members.iter_mut() {
            let r = w.sent_ok(&plaintext(w.id, k));
            records[usize::from(w.id - 1)].push(r);
        }
    }
    for k in 0..2 {
        p7.ep.send(format!("p7 #{k}").as_bytes()).unwrap();
    }
    strict.sync(8, "strict listener");
    compat.sync(8, "compatibility listener");
    assert_counters("compatibility listener", &compat.counters(), 8, &[]);
    let from_wolfssl: Vec<_> = compat
        .got
        .iter()
        .filter(|r| r.sender_id != SenderId(7))
        .map(|r| (r.sender_id.0, r.seq, r.plaintext.clone()))
        .collect();
    let want: Vec<_> = (0..2u64)
        .flat_map(|k| [1u8, 2, 3].map(|id| (id, k, plaintext(id, k))))
        .collect();
    assert_eq!(sorted(from_wolfssl), sorted(want));
    // Member 7's records carry epoch||sid||seq.
    let strict_got: Vec<_> = strict
        .got
        .iter()
        .map(|r| (r.sender_id.0, r.plaintext.clone()))
        .collect();
    let nonces: Vec<Vec<[u8; 8]>> = records
        .iter()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    if case.explicit_nonce() {
                        explicit_nonce(r)
                    } else {
                        [0; 8]
                    }
                })
                .collect()
        })
        .collect();
    if case.explicit_nonce() {
        assert_counters(
            "strict listener",
            &strict.counters(),
            2,
            &[("nonce_mismatch", 6)],
        );
        assert_eq!(strict_got, vec![(7, text("p7 #0")), (7, text("p7 #1"))]);
        for rs in &records {
            for r in rs {
                assert_ne!(explicit_nonce(r), strict_nonce(r));
            }
        }
    } else {
        // ChaCha20-Poly1305: the nonce is write_iv XOR epoch||sid||seq, unique per member.
        assert_counters("strict listener", &strict.counters(), 8, &[]);
    }
    if case.is_ccm() {
        // Every member's k-th record uses explicit nonce k: one nonce, one key, three members.
        for k in 0..2 {
            let want = (k as u64).to_be_bytes();
            assert!(nonces.iter().all(|n| n[k] == want), "{nonces:?}");
        }
        // So AES-CTR's keystream repeats: anyone who knows member 1's plaintext reads member 2's
        // from the two ciphertexts alone, without any key.
        let body = HEADER_LEN + 8;
        for k in 0..2 {
            let (c1, c2) = (&records[0][k as usize], &records[1][k as usize]);
            let p1 = plaintext(1, k);
            let recovered: Vec<u8> = (0..p1.len())
                .map(|i| c1[body + i] ^ c2[body + i] ^ p1[i])
                .collect();
            assert_eq!(recovered, plaintext(2, k), "keystream reuse across members");
        }
    } else if case.explicit_nonce() {
        // AES-GCM: each member counts up from a random start: no reuse across members here.
        let all: Vec<[u8; 8]> = nonces.concat();
        assert_eq!(
            sorted(all.clone())
                .windows(2)
                .filter(|w| w[0] == w[1])
                .count(),
            0,
            "{all:?}"
        );
        for n in &nonces {
            assert_eq!(u64::from_be_bytes(n[1]), u64::from_be_bytes(n[0]) + 1);
        }
    }
    for w in members.iter_mut() {
        w.sync_rx(6);
        w.quit();
        let got = sorted(w.records());
        let mut want: Vec<(u8, Vec<u8>)> = (0..2u64)
            .flat_map(|k| [1u8, 2, 3].map(|id| (id, plaintext(id, k))))
            .filter(|(id, _)| *id != w.id)
            .collect();
        want.extend([(7, text("p7 #0")), (7, text("p7 #1"))]);
        assert_eq!(got, sorted(want), "wolfSSL member {}", w.id);
    }
}

#[test]
fn strict_profile_refuses_wolfssl_ccm8_records_nonce_reuse_across_members() {
    strict_profile(CCM8);
}

#[test]
fn strict_profile_refuses_wolfssl_ccm_records_nonce_reuse_across_members() {
    strict_profile(CCM);
}

#[test]
fn strict_profile_refuses_wolfssl_gcm_records_random_explicit_nonces() {
    strict_profile(GCM);
}

#[cfg(feature = "chacha20")]
#[test]
fn strict_profile_accepts_wolfssl_chacha20_records() {
    strict_profile(CHACHA);
}

// ------------------------------------------------------------------------------------------
// wolfSSL 5.5.4 quirk: an AES member must call wolfSSL_connect() once before wolfSSL_set_secret

fn unprimed(case: Case) {
    let Some(bin) = harness() else { return };
    let group = group_addr(case, 3);
    let s1 = secret_epoch1();
    let k1 = keys(case, &s1);
    let mut p7 = Project::new(group, Some(7), NonceProfile::Compatibility, &k1);
    let mut w = WolfMember::spawn(bin, case, 1, &[7], group, &s1, false);
    let sent = w.send(b"unprimed");
    let mut on_wire = 0;
    if case.explicit_nonce() {
        // wolfSSL_write returns -1 and sends nothing (its RNG was freed by set_secret).
        assert_eq!(sent, None);
        let last = w.seen.last().unwrap();
        assert_eq!(last["ret"], -1, "{last}");
    } else {
        assert!(sent.is_some(), "ChaCha20-Poly1305 needs no RNG to send");
        on_wire += 1;
    }
    // Receiving works either way.
    p7.ep.send(b"to the unprimed member").unwrap();
    on_wire += 1;
    p7.sync(on_wire, "member 7");
    w.sync_rx(1);
    w.quit();
    assert_eq!(w.records(), vec![(7, text("to the unprimed member"))]);
    let from_wolf: Vec<_> = p7.got.iter().map(|r| r.plaintext.clone()).collect();
    let want = if sent.is_some() {
        vec![text("unprimed")]
    } else {
        vec![]
    };
    assert_eq!(from_wolf, want);
}

#[test]
fn unprimed_wolfssl_members_receive_but_aes_members_cannot_send() {
    for case in [CCM8, CCM, GCM] {
        unprimed(case);
    }
    #[cfg(feature = "chacha20")]
    unprimed(CHACHA);
}

// ------------------------------------------------------------------------------------------
// The same with the command-line tool: `dtls-group keys wolfssl`, `listen`, `send`

const DTLS_GROUP: &str = env!("CARGO_BIN_EXE_dtls-group");

fn dtls_group(args: &[&str]) -> std::process::Output {
    Command::new(DTLS_GROUP).args(args).output().unwrap()
}

fn suite_name(case: Case) -> &'static str {
    case.suite.name().unwrap()
}

/// A `dtls-group listen` process, killed if the test ends before it stopped.
struct Listener(Option<Child>);

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `dtls-group listen` with a control socket and waits until it answers (it is then
/// joined and receiving).
fn cli_listener(dir: &Path, name: &str, args: &[&str]) -> Listener {
    let control = dir.join(format!("{name}.sock"));
    let listener = Listener(Some(
        Command::new(DTLS_GROUP)
            .arg("listen")
            .args(args)
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    ));
    let deadline = StdInstant::now() + WAIT;
    loop {
        let out = Command::new(DTLS_GROUP)
            .arg("status")
            .arg(&control)
            .output()
            .unwrap();
        if out.status.success() {
            return listener;
        }
        assert!(
            StdInstant::now() < deadline,
            "listener {name} never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The JSON lines a listener printed once it stopped by itself (count or timeout).
fn cli_lines(mut listener: Listener) -> Vec<Value> {
    let deadline = StdInstant::now() + WAIT;
    let child = listener.0.as_mut().unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(StdInstant::now() < deadline, "listener did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = listener.0.take().unwrap().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// An AES suite (the strict listener stops after the project's records).
fn cli(case: Case) {
    assert!(case.explicit_nonce());
    let Some(bin) = harness() else { return };
    let group = group_addr(case, 4).to_string();
    let s1 = secret_epoch1();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "wolfssl-cli-{:04x}-{}",
        case.wolf,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let suite = suite_name(case);

    // The keys wolfSSL will derive in wolfSSL_set_secret.
    let out = dtls_group(&[
        "keys",
        "wolfssl",
        "--suite",
        suite,
        "--pms",
        &hex::encode(&s1.pms),
        "--client-random",
        &hex::encode(s1.client_random),
        "--server-random",
        &hex::encode(s1.server_random),
    ]);
    assert!(out.status.success());
    let k: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (key, iv) = (k["key"].as_str().unwrap(), k["iv"].as_str().unwrap());
    let k1 = keys(case, &s1);
    assert_eq!((key, iv), (&*hex::encode(k1.key()), &*hex::encode(k1.iv())));

    let common = [
        "--group", &group, "--suite", suite, "--key", key, "--iv", iv, "--epoch", "1",
    ];
    // --compat: stops after wolfSSL's three records. Strict: stops after dtls-group send's two.
    let compat_args: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--compat", "--count", "3", "--timeout", "20"])
        .collect();
    let strict_args: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--count", "2", "--timeout", "20"])
        .collect();
    let compat = cli_listener(&dir, "compat", &compat_args);
    let strict = cli_listener(&dir, "strict", &strict_args);

    let mut w = WolfMember::spawn(bin, case, 1, &[7], group.parse().unwrap(), &s1, true);
    for m in ["on", "dim 40", "off"] {
        w.sent_ok(m.as_bytes());
    }
    let store = dir.join("s7.seq");
    let send_args: Vec<&str> = common
        .iter()
        .copied()
        .chain(["--sender-id", "7", "--seq-store", store.to_str().unwrap()])
        .chain(["--init-seq-store", "6f6e", "6f6666"])
        .collect();
    let out = dtls_group(&[&["send"], &send_args[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.sync_rx(2);
    w.quit();
    assert_eq!(w.records(), vec![(7, text("on")), (7, text("off"))]);

    let lines = cli_lines(compat);
    let got: Vec<(u64, u64, String)> = lines[..3]
        .iter()
        .map(|v| {
            let p = hex::decode(v["plaintext"].as_str().unwrap()).unwrap();
            (
                v["sender_id"].as_u64().unwrap(),
                v["seq"].as_u64().unwrap(),
                String::from_utf8(p).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(1, 0, "on"), (1, 1, "dim 40"), (1, 2, "off")].map(|(s, q, t)| (s, q, t.to_string()))
    );
    assert_eq!(lines[3]["summary"]["accepted"], 3, "{}", lines[3]);
    assert_eq!(lines.len(), 4);

    let lines = cli_lines(strict);
    let senders: Vec<_> = lines[..2].iter().map(|v| v["sender_id"].as_u64()).collect();
    assert_eq!(senders, [Some(7), Some(7)]);
    let summary = &lines[2]["summary"];
    assert_eq!(summary["accepted"], 2, "{summary}");
    // wolfSSL's AES records: refused by the strict listener.
    assert_eq!(summary["dropped"]["nonce_mismatch"], 3, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cli_listen_and_send_with_wolfssl_ccm8() {
    cli(CCM8);
}
