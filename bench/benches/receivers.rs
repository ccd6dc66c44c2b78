//! Two receive-side benchmarks of issue 14, in one binary:
//!
//! - **Signed records**: `Group::open` of a fresh signed record (AES-128-CCM, 64 and 1400
//!   bytes) beside the raw `p256` `VerifyingKey::verify` of the same signed bytes with the same
//!   signature (the anchor). Goal: open / verify ≤ 1.05.
//! - **Receivers at scale**: `Group::open` of fresh in-order records (AES-128-CCM, 64 bytes)
//!   by a receiver that tracks 1, 32 or 255 senders, each record from the next sender in turn,
//!   with replay windows of 64 (`Group<255, 2>`) and 1024 (`Group<255, 32>`) records. The anchor
//!   is 1 sender with the same window. Goal: flat in the number of senders.
//!
//! Run: `cargo bench -p group-bench --bench receivers` (`BENCH_CRITERION=0` for the paired
//! tables alone).

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use group_bench::{Report, Variant, criterion_enabled, criterion_group};
use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::signature::SIGNATURE_LEN;
use group_core::suite::Suite;
use group_core::time::Instant as Now;
use group_core::wire::{Epoch, SenderId};

const GROUP_ID: u32 = 7;
const NOW: Now = Now(0);
const SUITE: Suite = Suite::AES_128_CCM;

fn keys() -> group_core::suite::RecordKeys {
    native_keys(GROUP_ID, Epoch(1), SUITE, &EpochSecret([0x42; 32])).unwrap()
}

/// A sender of the signed group.
struct SignedSender {
    group: Group,
    store: MemorySequenceStore,
    plaintext: Vec<u8>,
    len: usize,
}

impl SignedSender {
    fn new(n: usize, key: &SigningKey) -> Self {
        let mut group: Group = Group::new(
            GroupConfig::new(GROUP_ID)
                .with_sender_id(SenderId(1))
                .with_signatures(),
        );
        group.install_and_activate(Epoch(1), &keys(), NOW).unwrap();
        group.set_signing_key(key.clone());
        let len = group.record_len(n).unwrap();
        Self {
            group,
            store: MemorySequenceStore::commissioned(),
            plaintext: (0..n).map(|i| i as u8).collect(),
            len,
        }
    }

    fn next(&mut self, out: &mut Vec<u8>) {
        out.resize(self.len, 0);
        let n = self
            .group
            .seal(NOW, &mut self.store, &self.plaintext, out)
            .unwrap();
        assert_eq!(n, self.len);
    }
}

fn signed_variants(n: usize) -> Vec<Variant<'static>> {
    let sk = SigningKey::from_slice(&[0x17; 32]).unwrap();
    let vk = VerifyingKey::from(&sk);
    let mut out = Vec::new();
    {
        // Anchor: p256 verify of a signed record's bytes (everything before the signature).
        let mut sender = SignedSender::new(n, &sk);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        out.push(Variant::new("p256-verify", move |iters| {
            inputs.resize(iters as usize, Vec::new());
            for i in inputs.iter_mut() {
                sender.next(i);
            }
            let start = Instant::now();
            for i in &inputs {
                let (msg, sig) = i.split_at(i.len() - SIGNATURE_LEN);
                let sig = Signature::from_slice(sig).unwrap();
                vk.verify(black_box(msg), &sig).unwrap();
            }
            start.elapsed()
        }));
    }
    {
        let mut sender = SignedSender::new(n, &sk);
        let mut light: Group = Group::new(GroupConfig::new(GROUP_ID).with_signatures());
        light.install_and_activate(Epoch(1), &keys(), NOW).unwrap();
        light.set_sender_key(SenderId(1), vk).unwrap();
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        out.push(Variant::new("group-open", move |iters| {
            inputs.resize(iters as usize, Vec::new());
            for i in inputs.iter_mut() {
                sender.next(i);
            }
            let start = Instant::now();
            for i in inputs.iter_mut() {
                black_box(light.open(NOW, i).unwrap());
            }
            let t = start.elapsed();
            assert_eq!(light.counters().dropped(), 0);
            t
        }));
    }
    out
}

/// Senders 1..=count, each with its own sequence store.
struct Senders {
    groups: Vec<(Group, MemorySequenceStore)>,
    next: usize,
    plaintext: Vec<u8>,
    len: usize,
}

impl Senders {
    fn new(count: usize, n: usize) -> Self {
        let k = keys();
        let groups: Vec<_> = (1..=count)
            .map(|sid| {
                let mut g: Group =
                    Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(sid as u8)));
                g.install_and_activate(Epoch(1), &k, NOW).unwrap();
                (g, MemorySequenceStore::commissioned())
            })
            .collect();
        let len = groups[0].0.record_len(n).unwrap();
        Self {
            groups,
            next: 0,
            plaintext: (0..n).map(|i| i as u8).collect(),
            len,
        }
    }

    /// The next sender's next record (round robin).
    fn next(&mut self, out: &mut Vec<u8>) {
        out.resize(self.len, 0);
        let (g, store) = &mut self.groups[self.next];
        g.seal(NOW, store, &self.plaintext, out).unwrap();
        self.next = (self.next + 1) % self.groups.len();
    }
}

fn scale_variant<const W: usize>(senders: usize) -> Variant<'static> {
    let mut tx = Senders::new(senders, 64);
    let mut rx: Box<Group<255, W>> = Box::new(Group::new(GroupConfig::new(GROUP_ID)));
    rx.install_and_activate(Epoch(1), &keys(), NOW).unwrap();
    // Every sender known before measuring (one record each).
    let mut r = Vec::new();
    for _ in 0..senders {
        tx.next(&mut r);
        rx.open(NOW, &mut r).unwrap();
    }
    assert_eq!(rx.senders().count(), senders);
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    Variant::new(format!("{senders}-senders"), move |iters| {
        inputs.resize(iters as usize, Vec::new());
        for i in inputs.iter_mut() {
            tx.next(i);
        }
        let start = Instant::now();
        for i in inputs.iter_mut() {
            black_box(rx.open(NOW, i).unwrap());
        }
        let t = start.elapsed();
        assert_eq!(rx.counters().dropped(), 0);
        t
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut report = Report::new("receivers");
    println!("| case | variant: median per op (ratio to the first, quartiles) |");
    println!("|---|---|");
    for n in [64usize, 1400] {
        let mut v = signed_variants(n);
        if criterion_enabled() {
            criterion_group(&mut c, &format!("signed/{n}"), &mut v);
        }
        report.paired(&format!("signed ccm open {n}"), &mut v, 4);
    }
    for (window, mut v) in [
        (
            64,
            vec![
                scale_variant::<2>(1),
                scale_variant::<2>(32),
                scale_variant::<2>(255),
            ],
        ),
        (
            1024,
            vec![
                scale_variant::<32>(1),
                scale_variant::<32>(32),
                scale_variant::<32>(255),
            ],
        ),
    ] {
        if criterion_enabled() {
            criterion_group(&mut c, &format!("senders/window{window}"), &mut v);
        }
        report.paired(&format!("ccm open 64 B, window {window}"), &mut v, 256);
    }
    report.finish();
    c.final_summary();
}
