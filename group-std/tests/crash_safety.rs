//! Crash safety of sequence numbers: a `dtls-group send` process is killed with SIGKILL many
//! times mid-stream and restarted on the same sequence store. A capture socket records every
//! datagram on the group: no (epoch, sid, seq) may ever appear twice with different content,
//! and a receiver accepts every captured record exactly once. Loopback multicast only;
//! bounded in runs, records and time.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use group_core::group::{Group, GroupConfig};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::RecordKeys;
use group_core::suite::Suite;
use group_core::wire::{Epoch, RecordHeader};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

const KEY: &str = "00112233445566778899aabbccddeeff";
const IV: &str = "01020304";
const RUNS: usize = 12;

fn group_addr() -> SocketAddrV4 {
    let port = 36_000 + (std::process::id() % 20_000) as u16;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 46, 1), port)
}

#[test]
fn sigkill_mid_stream_never_reuses_a_sequence_number() {
    let dir = std::env::temp_dir().join(format!("dtls-group-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("switch.seq");
    let stop = Arc::new(AtomicBool::new(false));

    // Capture: every datagram on the group.
    let capture = MulticastSocket::open(&MulticastConfig::loopback_v4(group_addr())).unwrap();
    let stop_c = stop.clone();
    let capture = thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop_c.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Some((n, _)) = capture.recv(&mut buf).unwrap() {
                seen.push(buf[..n].to_vec());
            }
        }
        seen
    });
    // Receiver: a light with the same keys.
    let keys = RecordKeys::new(
        Suite::AES_128_CCM_8,
        &hex::decode(KEY).unwrap(),
        &hex::decode(IV).unwrap(),
    )
    .unwrap();
    let mut g: Group = Group::new(GroupConfig::new(0));
    let clock = Clock::new();
    g.install_and_activate(Epoch(2), &keys, clock.now())
        .unwrap();
    let sock = MulticastSocket::open(&MulticastConfig::loopback_v4(group_addr())).unwrap();
    let mut light = GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock);
    let stop_r = stop.clone();
    let receiver = thread::spawn(move || {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop_r.load(Ordering::SeqCst) && Instant::now() < deadline {
            let (d, _) = light.recv().unwrap();
            got.extend(d.into_iter().map(|r| (r.seq, r.plaintext)));
        }
        (got, *light.group().counters())
    });

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut killed = 0;
    for run in 0..RUNS {
        let messages: Vec<String> = (0..400)
            .map(|i| hex::encode(format!("run{run}-msg{i}")))
            .collect();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dtls-group"));
        cmd.args([
            "send",
            "--group",
            &group_addr().to_string(),
            "--suite",
            "ccm8",
        ])
        .args(["--key", KEY, "--iv", IV, "--epoch", "2", "--sender-id", "9"])
        .args(["--reserve-step", "16", "--interval", "1", "--seq-store"])
        .arg(&store)
        .args(&messages)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if run == 0 {
            cmd.arg("--init-seq-store");
        }
        let mut child = cmd.spawn().unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        thread::sleep(Duration::from_millis(30 + rng % 120));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        if status.code().is_some() {
            assert!(status.success(), "send failed: {status:?}");
        }
    }
    thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let captured = capture.join().unwrap();
    let (delivered, counters) = receiver.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    assert!(
        killed >= RUNS / 2,
        "only {killed} of {RUNS} runs were killed mid-stream"
    );
    // No (epoch, sid, seq) with two different contents on the wire.
    let mut by_nonce: BTreeMap<(u16, u8, u64), BTreeSet<Vec<u8>>> = BTreeMap::new();
    for d in &captured {
        let h = RecordHeader::parse(d).unwrap();
        by_nonce
            .entry((h.epoch.0, h.sender_id.0, h.seq))
            .or_default()
            .insert(d.clone());
    }
    assert!(
        by_nonce.len() > RUNS * 5,
        "too few records: {}",
        by_nonce.len()
    );
    for (nonce, contents) in &by_nonce {
        assert_eq!(
            contents.len(),
            1,
            "nonce {nonce:?} used for different records"
        );
    }
    // The receiver accepted every captured record exactly once.
    let seqs: Vec<u64> = delivered.iter().map(|(s, _)| *s).collect();
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), seqs.len(), "a record was accepted twice");
    let captured_seqs: BTreeSet<u64> = by_nonce.keys().map(|k| k.2).collect();
    assert_eq!(distinct, captured_seqs);
    assert_eq!(counters.accepted as usize, captured_seqs.len());
    println!(
        "{} runs, {killed} killed, {} records on the wire, highest seq {}",
        RUNS,
        captured.len(),
        captured_seqs.iter().max().unwrap()
    );
}
