//! A user-space relay between two loopback multicast groups drops, duplicates and reorders
//! datagrams; receivers on the far group must show zero false accepts and zero rejects of
//! fresh in-window records. Bounded: 300 records, every wait has a deadline.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use group_core::group::{Admission, Group, GroupConfig};
use group_core::record::OpenError;
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::Suite;
use group_core::wire::{Epoch, RecordHeader, SenderId};
use group_std::endpoint::{Clock, GroupEndpoint};
use group_std::net::{MulticastConfig, MulticastSocket};

const RECORDS: u64 = 300;
const MAX_HELD: usize = 8; // reorder depth, well inside the 64-record window

fn addr(last: u8, offset: u16) -> SocketAddrV4 {
    let port = 21_000 + (std::process::id() % 15_000) as u16 + offset;
    SocketAddrV4::new(Ipv4Addr::new(239, 255, 44, last), port)
}

/// xorshift64*: a seeded, dependency-free RNG for the relay.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn member(sid: Option<u8>, group: SocketAddrV4) -> GroupEndpoint<MemorySequenceStore> {
    let keys = native_keys(8, Epoch(1), Suite::AES_128_CCM_8, &EpochSecret([4; 32])).unwrap();
    let mut cfg = GroupConfig::new(8).with_admission(Admission::Strict);
    cfg.own_sender_id = sid.map(SenderId);
    let mut g: Group = Group::new(cfg);
    let clock = Clock::new();
    g.install_and_activate(Epoch(1), &keys, clock.now())
        .unwrap();
    g.add_sender(SenderId(1)).unwrap();
    let sock = MulticastSocket::open(&MulticastConfig::loopback_v4(group)).unwrap();
    GroupEndpoint::new(sock, g, MemorySequenceStore::commissioned(), clock)
}

#[test]
fn relay_with_loss_duplication_and_reordering() {
    let (a, b) = (addr(1, 0), addr(2, 1));
    // Receivers read concurrently (a socket buffer would overflow otherwise) until told the
    // relay is done and their socket has gone quiet.
    let relay_done = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let mut r = member(None, b);
            let relay_done = relay_done.clone();
            thread::spawn(move || {
                let mut delivered = Vec::new();
                let mut drops: Vec<OpenError> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(40);
                while Instant::now() < deadline {
                    let done = relay_done.load(Ordering::SeqCst);
                    let (d, e) = r.recv().unwrap();
                    let quiet = d.is_empty() && e.is_empty();
                    delivered.extend(d.into_iter().map(|rec| (rec.seq, rec.plaintext)));
                    drops.extend(e);
                    if done && quiet {
                        break;
                    }
                }
                (delivered, drops, *r.group().counters())
            })
        })
        .collect();
    let mut sender = member(Some(1), a);

    // The relay: reads group A, writes group B with impairments; reports what it forwarded.
    let relay_in = MulticastSocket::open(&MulticastConfig::loopback_v4(a)).unwrap();
    let relay_out = MulticastSocket::open(&MulticastConfig::loopback_v4(b)).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let relay = thread::spawn(move || {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut held: Vec<Vec<u8>> = Vec::new();
        let mut forwarded: Vec<u64> = Vec::new();
        let (mut dropped, mut duplicated) = (0u32, 0u32);
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = 0u64;
        let forward = |d: &[u8], forwarded: &mut Vec<u64>| {
            relay_out.send(d).unwrap();
            forwarded.push(RecordHeader::parse(d).unwrap().seq);
        };
        while seen < RECORDS && Instant::now() < deadline {
            let Some((n, _)) = relay_in.recv(&mut buf).unwrap() else {
                continue;
            };
            seen += 1;
            let d = buf[..n].to_vec();
            if rng.chance(10) {
                dropped += 1;
                continue;
            }
            if rng.chance(10) {
                duplicated += 1;
                held.push(d.clone());
            }
            held.push(d);
            while held.len() > MAX_HELD || (!held.is_empty() && rng.chance(40)) {
                let i = (rng.next() % held.len() as u64) as usize;
                let d = held.swap_remove(i);
                forward(&d, &mut forwarded);
            }
        }
        for d in held.drain(..) {
            forward(&d, &mut forwarded);
        }
        done_tx.send((forwarded, dropped, duplicated)).unwrap();
    });

    let mut sent: HashMap<u64, Vec<u8>> = HashMap::new();
    for i in 0..RECORDS {
        let msg = format!("level {i}").into_bytes();
        let rec = sender.send(&msg).unwrap();
        sent.insert(RecordHeader::parse(&rec).unwrap().seq, msg);
        thread::sleep(Duration::from_micros(500));
    }
    let (forwarded, dropped, duplicated) = done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    relay.join().unwrap();
    assert!(dropped > 0 && duplicated > 0, "impairments exercised");
    let distinct: BTreeSet<u64> = forwarded.iter().copied().collect();
    let dups = forwarded.len() - distinct.len();
    assert!(dups > 0);
    // Reordering happened: the forwarded order is not sorted.
    assert!(forwarded.windows(2).any(|w| w[0] > w[1]));

    relay_done.store(true, Ordering::SeqCst);
    for r in receivers {
        let (delivered, drops, c) = r.join().unwrap();
        for (seq, plaintext) in &delivered {
            // Zero false accepts: every accepted record was sent, with this content.
            assert_eq!(sent.get(seq), Some(plaintext));
        }
        let got: BTreeSet<u64> = delivered.iter().map(|(s, _)| *s).collect();
        assert_eq!(got.len(), delivered.len(), "a record was delivered twice");
        // Zero rejects of fresh in-window records: everything the relay passed on arrives...
        assert_eq!(got, distinct);
        // ...and the only drops are the relay's duplicates, as replays.
        assert_eq!(drops.len(), dups);
        assert!(drops.iter().all(|e| *e == OpenError::Replay), "{drops:?}");
        assert_eq!(c.accepted as usize, distinct.len());
        assert_eq!(c.replay as usize, dups);
    }
}
