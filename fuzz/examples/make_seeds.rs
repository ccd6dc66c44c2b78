//! Writes the seed inputs of the fuzz targets into `fuzz/corpus/TARGET/` (before `cargo fuzz
//! cmin` minimizes them). Run from `fuzz/`: `cargo +nightly run --example make_seeds`.

use std::fs;
use std::path::Path;

use dtls_group_fuzz::model::{self, Op};
use dtls_group_fuzz::open_fixture::{OpenConfig, sealed};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn group_open() {
    for b in [0u8, 1, 2, 3, 0x44, 8, 16, 32, 0x5d, 0x6e] {
        let cfg = OpenConfig::from_byte(b);
        let records = sealed(cfg);
        for (i, r) in records.iter().enumerate().step_by(3) {
            let mut seed = vec![b];
            seed.extend_from_slice(&r.bytes);
            write("group_open", &format!("cfg{b:02x}-rec{i}"), &seed);
        }
        // Three records in one datagram, the first one twice (a replay inside the datagram).
        let mut seed = vec![b];
        for r in [&records[0], &records[0], &records[7]] {
            seed.extend_from_slice(&r.bytes);
        }
        write("group_open", &format!("cfg{b:02x}-datagram"), &seed);
    }
}

fn wire_roundtrip() {
    let cfg = OpenConfig::from_byte(0);
    for (i, r) in sealed(cfg).iter().enumerate().take(4) {
        write("wire_roundtrip", &format!("record{i}"), &r.bytes);
    }
    write(
        "wire_roundtrip",
        "bad-version",
        &[23, 0xfe, 0xff, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    write(
        "wire_roundtrip",
        "too-long",
        &[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0x48, 1],
    );
    write(
        "wire_roundtrip",
        "max-seq",
        &[
            23, 0xfe, 0xfd, 0, 1, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 3, 1, 2, 3,
        ],
    );
}

fn ops(target: &str, name: &str, ops: &[Op]) {
    let bytes = model::encode(ops);
    assert_eq!(
        model::decode(&bytes),
        ops,
        "{name}: encoding does not decode back"
    );
    write(target, name, &bytes);
}

/// Senders 0..=3 (sids 1, 2, 33, 200); receivers 0..=2; nodes 0..=3 senders, 4..=6 receivers.
fn record_model() {
    use Op::*;
    let t = "record_model";
    // Issue 10, finding 8: a replay accepted after a "dead" slot is reused. Receiver 0 (two
    // slots) evicts A (sid 1) in E1; A sends its first record in E2, staged at the receiver;
    // E2 is replaced by E3 before activation, so A's state covers only an epoch not held; D's
    // E1 record takes that dead slot without blocking A; A's E1 record, replayed, is
    // delivered a second time.
    ops(
        t,
        "finding8-dead-slot-reuse",
        &[
            Seal { sender: 0, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Seal { sender: 1, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Seal { sender: 2, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Rekey,
            Stage { node: 4 },
            Stage { node: 0 },
            Activate { node: 0 },
            Seal { sender: 0, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Rekey,
            Stage { node: 4 },
            Seal { sender: 3, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Deliver { pkt: 4, rx: 0 },
        ],
    );
    // Issue 10, finding 5: an evicted sender that is listed again (add_sender, as a bundle
    // does) gets a fresh window in the epoch it was evicted in, and its old record is
    // delivered again. Receiver 0: A evicted by C, B removed to make room, A re-listed.
    ops(
        t,
        "finding5-evicted-relisted",
        &[
            Seal { sender: 0, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Seal { sender: 1, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Seal { sender: 2, len: 5 },
            Deliver { pkt: 0, rx: 0 },
            Remove { rx: 0, sender: 1 },
            Add { rx: 0, sender: 0 },
            Deliver { pkt: 2, rx: 0 },
        ],
    );
    // The same through a removal: removed in E1, re-listed in E1.
    ops(
        t,
        "finding5-removed-relisted",
        &[
            Seal { sender: 0, len: 5 },
            Deliver { pkt: 0, rx: 1 },
            Remove { rx: 1, sender: 0 },
            Add { rx: 1, sender: 0 },
            Deliver { pkt: 0, rx: 1 },
        ],
    );
    // Ordinary traffic: every receiver, replays, corruption, a staged rekey, grace expiry.
    ops(
        t,
        "traffic-rekey",
        &[
            Add { rx: 2, sender: 0 },
            Add { rx: 2, sender: 1 },
            Seal { sender: 0, len: 3 },
            Seal { sender: 1, len: 9 },
            Deliver { pkt: 0, rx: 0 },
            Deliver { pkt: 1, rx: 0 },
            Deliver { pkt: 1, rx: 1 },
            Deliver { pkt: 0, rx: 2 },
            Deliver { pkt: 0, rx: 2 },
            Corrupt {
                pkt: 1,
                rx: 2,
                pos: 20,
                xor: 4,
            },
            Rekey,
            Stage { node: 0 },
            Stage { node: 4 },
            Stage { node: 5 },
            Stage { node: 6 },
            Activate { node: 0 },
            Seal { sender: 0, len: 1 },
            Deliver { pkt: 0, rx: 0 },
            Deliver { pkt: 0, rx: 1 },
            Deliver { pkt: 0, rx: 2 },
            Activate { node: 4 },
            Activate { node: 5 },
            Activate { node: 6 },
            Deliver { pkt: 2, rx: 0 },
            Advance { ms: 200 },
            Deliver { pkt: 2, rx: 1 },
        ],
    );
    // Restarts: with the store (resume above the reservation), without it (refuse, then
    // recover in a new epoch), failing store writes.
    ops(
        t,
        "reboots",
        &[
            Seal { sender: 1, len: 2 },
            Seal { sender: 1, len: 2 },
            Deliver { pkt: 0, rx: 0 },
            Reboot {
                sender: 1,
                lose: false,
            },
            Seal { sender: 1, len: 2 },
            Deliver { pkt: 0, rx: 0 },
            Deliver { pkt: 2, rx: 0 },
            Reboot {
                sender: 1,
                lose: true,
            },
            Seal { sender: 1, len: 2 },
            Recover { sender: 1 },
            Rekey,
            Stage { node: 1 },
            Activate { node: 1 },
            Recover { sender: 1 },
            Seal { sender: 1, len: 2 },
            Stage { node: 4 },
            Deliver { pkt: 0, rx: 0 },
            FailSaves {
                sender: 1,
                fail: true,
            },
            Seal { sender: 1, len: 2 },
            Seal { sender: 1, len: 2 },
            Seal { sender: 1, len: 2 },
            FailSaves {
                sender: 1,
                fail: false,
            },
            Seal { sender: 1, len: 2 },
            Deliver { pkt: 0, rx: 0 },
        ],
    );
    // Evictions with every sender on the two-slot receiver, across a rekey.
    ops(
        t,
        "evictions",
        &[
            Seal { sender: 0, len: 1 },
            Seal { sender: 1, len: 1 },
            Seal { sender: 2, len: 1 },
            Seal { sender: 3, len: 1 },
            Deliver { pkt: 3, rx: 0 },
            Deliver { pkt: 2, rx: 0 },
            Deliver { pkt: 1, rx: 0 },
            Deliver { pkt: 0, rx: 0 },
            Deliver { pkt: 3, rx: 0 },
            Deliver { pkt: 2, rx: 0 },
            Rekey,
            Stage { node: 4 },
            Stage { node: 2 },
            Activate { node: 2 },
            Seal { sender: 2, len: 1 },
            Deliver { pkt: 0, rx: 0 },
            Activate { node: 4 },
            Deliver { pkt: 1, rx: 0 },
            Deliver { pkt: 3, rx: 0 },
        ],
    );
}

/// `keydist_server` / `keydist_member`: each captured message as is, replayed twice, and
/// edited; for both modes (and, for the member, both members).
fn keydist_handlers() {
    for signed in [false, true] {
        let n = dtls_group_fuzz::keydist_fixture::setup(signed)
            .captured
            .len() as u8;
        for (target, cfgs) in [
            ("keydist_server", &[0u8][..]),
            ("keydist_member", &[0u8, 2][..]),
        ] {
            for &c in cfgs {
                let cfg = if signed { c | 0xe0 } else { c };
                for k in 0..n {
                    let m = 2 * k + 1;
                    write(target, &format!("cfg{cfg}-msg{k}"), &[cfg, m, 0, m, 0]);
                    write(
                        target,
                        &format!("cfg{cfg}-msg{k}-edit"),
                        &[cfg, m, 2, 1, 0x40, 9, 1],
                    );
                }
                write(target, &format!("cfg{cfg}-raw"), &[cfg, 0, 4, 1, 1, 0, 0]);
            }
        }
    }
}

fn cli_parsers() {
    let t = "cli_parsers";
    let seed = |name: &str, sel: u8, text: &str| {
        let mut b = vec![sel];
        b.extend_from_slice(text.as_bytes());
        write(t, name, &b);
    };
    seed("secret-hex", 0, "000102030405060708090a0b0c0d0e0f\n");
    seed("secret-bad", 0, "  0g0102\n");
    let k = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("scalar");
    let vk = k.verifying_key();
    seed(
        "public-compressed",
        1,
        &hex_str(vk.to_sec1_point(true).as_bytes()),
    );
    seed(
        "public-uncompressed",
        1,
        &hex_str(vk.to_sec1_point(false).as_bytes()),
    );
    seed("hex-arg", 2, "00ff10AB");
    seed("hex-array", 3, "000102030405060708090a0b0c0d0e0f");
    for (i, name) in ["ccm8", "ccm", "gcm", "chacha20", "aes"].iter().enumerate() {
        seed(&format!("suite{i}"), 4, name);
    }
    seed(
        "config",
        5,
        &format!(
            r#"listen = "127.0.0.1:47000"
state = "keyserver.redb"
server_key = "server.key"

[[group]]
id = 1
suite = "ccm"
multicast = "239.255.0.1:40000"
admission = "trust-first"
signatures = false
grace_ms = 5000
activation_delay_ms = 1000
rotation_interval_ms = 0
rekey_on_join = true

[[group]]
id = 2
suite = "gcm"
admission = "strict"
signatures = true

[[device]]
id = 1
name = "switch-a"
public_key = "switch-a.pub"
role = "sender"
groups = [1]

[[device]]
id = 2
public_key = "{}"
role = "listener"
groups = [1, 2]
"#,
            hex_str(vk.to_sec1_point(true).as_bytes())
        ),
    );
    seed("config-bad", 5, "listen = \"x\"\n[[device]]\nid = 1\n");
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |t: &str| only.is_empty() || only.iter().any(|o| o == t);
    if run("wire_roundtrip") {
        wire_roundtrip();
    }
    if run("record_model") {
        record_model();
    }
    if run("keydist_server") || run("keydist_member") {
        keydist_handlers();
    }
    if run("cli_parsers") {
        cli_parsers();
    }
    if run("group_open") {
        group_open();
    }
}
