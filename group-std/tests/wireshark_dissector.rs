//! The Wireshark dissector (`contrib/wireshark/dtls-group.lua`) run by the real `tshark` on a
//! capture of real traffic: `dtls-group send` records and a key server with two `member`s
//! (a light and a switch). The test captures by itself, on loopback: a socket joined to the
//! multicast group receives every record, and a UDP relay between each member and the key
//! server forwards and records every key-distribution datagram; it writes them as a pcap file
//! (IPv4, the real addresses and ports) and asserts that every field tshark shows equals what
//! was sent: the records' header fields, explicit nonce and tag against the bytes and the
//! senders' own output, and each key-distribution message's kind, version, mode, device,
//! counter, epoch and sender list against `group_core::keydist::parse` of the same bytes and
//! the members' output.
//!
//! Loopback only (multicast on 127.0.0.1, TTL 1); every process has a `--timeout` and is
//! killed at the end; every wait has a deadline. Without tshark the test fails, unless
//! `DTLS_GROUP_SKIP_TSHARK=1` asks to skip it (it then says so).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use group_core::keydist::Message;
use group_std::net::{MulticastConfig, MulticastSocket};
use serde_json::Value;

mod common;

use common::{BIN, Proc};

/// How long a wait for a member's output lasts.
const WAIT: Duration = Duration::from_secs(30);
const LUA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../contrib/wireshark/dtls-group.lua"
);

/// One captured datagram.
#[derive(Clone, Debug)]
struct Datagram {
    at: SystemTime,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: Vec<u8>,
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// A pcap file (LINKTYPE_RAW: each packet an IPv4 header, a UDP header and the payload).
fn write_pcap(path: &Path, packets: &[Datagram]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&101u32.to_le_bytes()); // LINKTYPE_RAW
    for p in packets {
        let udp_len = 8 + p.payload.len();
        let total = 20 + udp_len;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
        // TTL: 1 for multicast (as sent), 64 for unicast.
        let ttl = if p.dst.ip().is_multicast() { 1 } else { 64 };
        ip.extend_from_slice(&[0, 0, 0, 0, ttl, 17, 0, 0]);
        ip.extend_from_slice(&p.src.ip().octets());
        ip.extend_from_slice(&p.dst.ip().octets());
        let mut sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let check = !(sum as u16);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
        ip.extend_from_slice(&p.src.port().to_be_bytes());
        ip.extend_from_slice(&p.dst.port().to_be_bytes());
        ip.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
        ip.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
        ip.extend_from_slice(&p.payload);
        let t = p.at.duration_since(UNIX_EPOCH).unwrap();
        out.extend_from_slice(&u32::try_from(t.as_secs()).unwrap().to_le_bytes());
        out.extend_from_slice(&t.subsec_micros().to_le_bytes());
        out.extend_from_slice(&u32::try_from(ip.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(ip.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&ip);
    }
    std::fs::write(path, out).unwrap();
}

type Log = Arc<Mutex<Vec<Datagram>>>;

/// Receives the multicast group (joined on 127.0.0.1) until `stop`, recording every datagram.
fn capture_group(
    group: SocketAddrV4,
    log: Log,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let socket = MulticastSocket::open(&MulticastConfig::loopback_v4(group)).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(Some((n, from))) = socket.recv(&mut buf) {
                log.lock().unwrap().push(Datagram {
                    at: SystemTime::now(),
                    src: v4(from),
                    dst: group,
                    payload: buf[..n].to_vec(),
                });
            }
        }
    })
}

/// A UDP relay between one member and the key server: the member is told the relay's address
/// as `--server`; every datagram is forwarded and recorded (relay ↔ key server, as the key
/// server sees it). Returns the relay's address.
fn relay(ks: SocketAddrV4, log: Log, stop: Arc<AtomicBool>) -> SocketAddrV4 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = v4(socket.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut member: Option<SocketAddr> = None;
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let payload = buf[..n].to_vec();
            if from == SocketAddr::V4(ks) {
                log.lock().unwrap().push(Datagram {
                    at: SystemTime::now(),
                    src: ks,
                    dst: me,
                    payload: payload.clone(),
                });
                if let Some(m) = member {
                    let _ = socket.send_to(&payload, m);
                }
            } else {
                member = Some(from);
                log.lock().unwrap().push(Datagram {
                    at: SystemTime::now(),
                    src: me,
                    dst: ks,
                    payload: payload.clone(),
                });
                let _ = socket.send_to(&payload, ks);
            }
        }
    });
    me
}

/// A free UDP port below the ephemeral range (so below every relay's port): Wireshark's UDP
/// dissector tries the lower port's dissector first, and an ephemeral port may belong to some
/// other protocol's dissector.
fn low_free_port() -> u16 {
    let base = 20_000 + (std::process::id() % 5_000) as u16;
    (0..2_000u16)
        .map(|i| base + i * 3)
        .find(|p| UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .unwrap()
}

/// Runs tshark with the dissector on `pcap`, one line per packet matching `filter`, the
/// `fields` separated by tabs (repeated fields joined by commas).
fn tshark_fields(
    pcap: &Path,
    ports: (u16, u16),
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{LUA}"))
        .args(["-o", &format!("dtlsgroup.record_ports:{}", ports.0)])
        .args(["-o", &format!("dtlsgroup_kd.ports:{}", ports.1)])
        .args(["-o", "dtlsgroup.suite:2"]) // AES-128-CCM: 8-byte nonce, 16-byte tag
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-E",
            "separator=/t",
            "-E",
            "aggregator=,",
        ]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tshark failed: {stderr}\n(if it does not know the dtlsgroup fields, the Lua script was \
         not loaded: Lua disabled, or running as root with run_user_scripts_when_superuser = \
         false in Wireshark's init.lua)"
    );
    assert!(
        !stderr.contains("Lua: Error") && !stderr.contains("lua_script"),
        "the dissector did not load: {stderr}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

fn kind_index(m: &Message) -> u8 {
    match m {
        Message::JoinRequest(_) => 0,
        Message::KeyBundle(_) => 1,
        Message::Ack(_) => 2,
        Message::Leave(_) => 3,
        Message::RekeyNeeded(_) => 4,
        Message::Removed(_) => 5,
        Message::JoinChallenge(_) => 6,
        Message::SenderKeys(_) => 7,
    }
}

/// (device, counter, epoch, senders) as tshark shows them ("" for absent).
fn expected_kd(m: &Message) -> (String, String, String, String) {
    let s = |v: &dyn std::fmt::Display| v.to_string();
    match m {
        Message::JoinRequest(r) => (
            s(&r.header.device_id.0),
            s(&r.header.counter),
            "".into(),
            "".into(),
        ),
        Message::KeyBundle(b) => (
            s(&b.header.device_id.0),
            s(&b.header.counter),
            s(&b.epoch),
            b.senders
                .iter()
                .map(|e| e.sender_id.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        Message::Ack(a) => (
            s(&a.header.device_id.0),
            s(&a.header.counter),
            s(&a.epoch),
            "".into(),
        ),
        Message::Leave(l) => (
            s(&l.header.device_id.0),
            s(&l.header.counter),
            "".into(),
            "".into(),
        ),
        Message::RekeyNeeded(r) => (
            s(&r.header.device_id.0),
            s(&r.header.counter),
            s(&r.epoch),
            "".into(),
        ),
        Message::Removed(r) => (
            s(&r.header.device_id.0),
            s(&r.header.counter),
            "".into(),
            "".into(),
        ),
        Message::JoinChallenge(c) => (s(&c.device_id.0), "".into(), "".into(), "".into()),
        Message::SenderKeys(p) => (
            s(&p.header.device_id.0),
            s(&p.header.counter),
            s(&p.epoch),
            "".into(),
        ),
    }
}

fn num(v: &str) -> Option<u64> {
    v.parse().ok()
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "True" | "TRUE" | "true")
}

#[test]
fn tshark_shows_records_and_key_distribution_as_sent() {
    if !common::have_tool("tshark", "tshark", "DTLS_GROUP_SKIP_TSHARK") {
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("dtls-group-wireshark-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let ks_port = low_free_port();
    let ks = SocketAddrV4::new(Ipv4Addr::LOCALHOST, ks_port);
    let group_port = 30_000 + (std::process::id() % 20_000) as u16;
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 255, 53, 1), group_port);
    for n in ["server", "switch", "light"] {
        let out = Command::new(BIN)
            .args(["keygen", "--out", &p(n)])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    std::fs::write(
        dir.join("ks.toml"),
        format!(
            "listen = \"{ks}\"\nstate = \"ks.redb\"\nserver_key = \"server.key\"\n\n\
             [[group]]\nid = 1\nsuite = \"ccm\"\nmulticast = \"{group}\"\nactivation_delay_ms = 200\n\n\
             [[device]]\nid = 1\nname = \"switch\"\npublic_key = \"switch.pub\"\nrole = \"sender\"\ngroups = [1]\n\n\
             [[device]]\nid = 2\nname = \"light\"\npublic_key = \"light.pub\"\nrole = \"listener\"\ngroups = [1]\n"
        ),
    )
    .unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let capture = capture_group(group, log.clone(), stop.clone());
    let ks_proc = Proc::spawn(
        "keyserver",
        &[
            "keyserver",
            "--config",
            &p("ks.toml"),
            "--init",
            "--timeout",
            "60",
        ]
        .map(String::from),
        false,
    );
    let member = |id: u32, name: &str, role: &str, extra: &[&str]| {
        let via = relay(ks, log.clone(), stop.clone());
        let mut a: Vec<String> = [
            "member",
            "--server",
            &via.to_string(),
            "--server-key",
            &p("server.pub"),
            "--device-key",
            &p(&format!("{name}.key")),
            "--device-id",
            &id.to_string(),
            "--group-id",
            "1",
            "--group",
            &group.to_string(),
            "--role",
            role,
            "--timeout",
            "60",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(name, &a, false)
    };
    let light = member(2, "light", "listener", &[]);
    light.wait_for("its first epoch", |v| v["event"] == "epoch_activated", WAIT);
    let switch = member(
        1,
        "switch",
        "sender",
        &[
            "--seq-store",
            &p("switch.seq"),
            "--init-seq-store",
            "--send",
            "6f6e",
            "--send",
            "6f6666",
            "--interval",
            "100",
        ],
    );
    let off = hex::encode("off");
    light.wait_for(
        "the switch's second record",
        |v| v["plaintext"] == off.as_str(),
        WAIT,
    );
    // Static-key records from `dtls-group send` on the same group.
    for (n, v) in [
        ("k", "0f0e0d0c0b0a09080706050403020100"),
        ("iv", "a1a2a3a4"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(dir.join(n), v).unwrap();
        std::fs::set_permissions(dir.join(n), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let sent = Command::new(BIN)
        .args(["send", "--group", &group.to_string(), "--suite", "ccm"])
        .args([
            "--key-file",
            &p("k"),
            "--iv-file",
            &p("iv"),
            "--epoch",
            "9",
            "--sender-id",
            "12",
        ])
        .args([
            "--seq-store",
            &p("s12.seq"),
            "--init-seq-store",
            "6c696768742f31206f6e",
            "6f6666",
        ])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let send_lines: Vec<Value> = String::from_utf8(sent.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(send_lines.len(), 2);
    // Everything sent is captured: the switch's two records and send's two.
    let deadline = Instant::now() + Duration::from_secs(10);
    while log
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.dst == group)
        .count()
        < 4
    {
        assert!(Instant::now() < deadline, "records not captured");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    capture.join().unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the relays stop within 50 ms
    let packets = log.lock().unwrap().clone();
    let pcap = dir.join("capture.pcap");
    write_pcap(&pcap, &packets);
    println!("capture: {} datagrams in {}", packets.len(), pcap.display());

    // --- records: every field against the bytes ---
    let rows = tshark_fields(
        &pcap,
        (group_port, ks_port),
        "dtlsgroup",
        &[
            "frame.number",
            "dtlsgroup.content_type",
            "dtlsgroup.version",
            "dtlsgroup.epoch",
            "dtlsgroup.sender_id",
            "dtlsgroup.seq",
            "dtlsgroup.length",
            "dtlsgroup.nonce",
            "dtlsgroup.nonce_matches",
            "dtlsgroup.tag",
            "dtlsgroup.plaintext_length",
        ],
    );
    let records: Vec<(usize, &Datagram)> = packets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.dst == group)
        .map(|(i, d)| (i + 1, d))
        .collect();
    assert_eq!(rows.len(), records.len(), "tshark rows: {rows:?}");
    for (row, (frame, d)) in rows.iter().zip(&records) {
        let b = &d.payload;
        let h = group_core::wire::RecordHeader::parse(b).unwrap();
        let len = u16::from_be_bytes([b[11], b[12]]) as usize;
        assert_eq!(b.len(), 13 + len, "one record per datagram");
        let expect = vec![
            frame.to_string(),
            "23".into(),
            "0xfefd".into(),
            h.epoch.0.to_string(),
            h.sender_id.0.to_string(),
            h.seq.to_string(),
            len.to_string(),
            hex::encode(&b[13..21]),
            "1".into(),
            hex::encode(&b[b.len() - 16..]),
            (len - 8 - 16).to_string(),
        ];
        let mut got = row.clone();
        got[8] = if truthy(&got[8]) {
            "1".into()
        } else {
            "0".into()
        };
        assert_eq!(got, expect, "frame {frame}");
    }
    // ... and against what the senders said they sent.
    for l in &send_lines {
        let rec = hex::decode(l["record"].as_str().unwrap()).unwrap();
        let row = rows
            .iter()
            .find(|r| r[3] == "9" && r[4] == "12" && num(&r[5]) == l["seq"].as_u64())
            .unwrap_or_else(|| panic!("send's record {l} not shown: {rows:?}"));
        assert_eq!(row[7], hex::encode(&rec[13..21]));
        assert_eq!(row[9], hex::encode(&rec[rec.len() - 16..]));
    }
    for l in switch.lines().iter().filter(|l| l.get("sent").is_some()) {
        let s = &l["sent"];
        assert!(
            rows.iter().any(|r| num(&r[3]) == s["epoch"].as_u64()
                && num(&r[4]) == s["sender_id"].as_u64()
                && num(&r[5]) == s["seq"].as_u64()),
            "the switch's record {s} not shown: {rows:?}"
        );
    }

    // --- key distribution: every message against group-core's parser ---
    let rows = tshark_fields(
        &pcap,
        (group_port, ks_port),
        "dtlsgroup_kd",
        &[
            "frame.number",
            "dtlsgroup_kd.kind",
            "dtlsgroup_kd.version",
            "dtlsgroup_kd.mode",
            "dtlsgroup_kd.device_id",
            "dtlsgroup_kd.counter",
            "dtlsgroup_kd.epoch",
            "dtlsgroup_kd.sender",
            "_ws.expert",
        ],
    );
    let kd: Vec<(usize, &Datagram)> = packets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.dst != group)
        .map(|(i, d)| (i + 1, d))
        .collect();
    assert_eq!(rows.len(), kd.len(), "tshark rows: {rows:?}");
    let mut kinds = std::collections::BTreeSet::new();
    for (row, (frame, d)) in rows.iter().zip(&kd) {
        let parsed = group_core::keydist::parse(&d.payload).unwrap();
        let (device, counter, epoch, senders) = expected_kd(&parsed.message);
        kinds.insert(kind_index(&parsed.message));
        let expect = vec![
            frame.to_string(),
            kind_index(&parsed.message).to_string(),
            d.payload[0].to_string(),
            d.payload[1].to_string(),
            device,
            counter,
            epoch,
            senders,
            String::new(), // no expert info: the body decoded exactly
        ];
        assert_eq!(row, &expect, "frame {frame}");
    }
    // The conversation had every step of a join: request, challenge, bundle, ack.
    for k in [0u8, 6, 1, 2] {
        assert!(kinds.contains(&k), "kind {k} not captured: {kinds:?}");
    }
    // The light's newest bundle: its epoch and the switch in its sender list, as the light
    // and the switch reported them.
    let light_epoch = light
        .lines()
        .iter()
        .filter(|v| v["event"] == "bundle_installed")
        .map(|v| v["epoch"].to_string())
        .next_back()
        .unwrap();
    let switch_sid = switch
        .lines()
        .iter()
        .find(|v| v["event"] == "bundle_installed")
        .map(|v| v["sender_id"].to_string())
        .unwrap();
    assert!(
        rows.iter()
            .any(|r| r[1] == "1" && r[4] == "2" && r[6] == light_epoch && r[7] == switch_sid),
        "no bundle to the light for epoch {light_epoch} listing sender {switch_sid}: {rows:?}"
    );
    drop((light, switch, ks_proc));
}
