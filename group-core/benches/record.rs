//! Record-layer cost against the raw AEAD, in the same run, on the same data.
//!
//! For each suite (AES-128-CCM_8, AES-128-CCM, AES-128-GCM) and plaintext size (64 and 1400
//! bytes), four operations:
//!
//! - `seal_raw`: one `encrypt_inout_detached` of the RustCrypto AEAD (the type group-core uses)
//!   over the plaintext, in place, with a 12-byte nonce and the 13-byte record AAD. The raw
//!   operations work on record-shaped buffers (the payload at the record's payload offset), so
//!   that both sides process the same bytes at the same place and alignment;
//! - `seal_group`: [`Group::seal_in_place`] of the same plaintext size: sequence counter (with
//!   its store reservation every K records), header, explicit nonce, nonce and AAD, the same
//!   AEAD call, tag placement, counters;
//! - `open_raw`: one `decrypt_inout_detached` of a valid ciphertext and tag, in place;
//! - `open_group`: [`Group::open`] of a fresh, valid record: parse, epoch and sender lookup,
//!   replay pre-check, the same AEAD call, replay commit, counters.
//!
//! Opening consumes its input (it decrypts in place, and the replay window refuses a record
//! twice), so both `open_*` use `iter_batched_ref` with the same batch size: the untimed setup
//! makes a fresh input per iteration (the raw side copies a sealed ciphertext; the group side
//! seals the sender's next record, so every record the receiver sees is new and in order), and
//! only the open itself is timed. After each group measurement the bench checks that every
//! record it opened was accepted and none dropped, so a fast rejection can't pass for an open.
//!
//! Two measurements of the same operations:
//!
//! 1. criterion's, one benchmark per operation (`<suite>/<op>_{raw,group}/<bytes>`), with its
//!    statistics in `target/criterion`;
//! 2. a paired one, after criterion's: rounds of 64 raw operations then 64 group operations
//!    (the order alternates between rounds), each chunk timed on its own, so that both sides of
//!    each round ran under the same machine load. The ratio group / raw is taken per round and
//!    its median reported. This is the figure to trust on a shared machine, where the load can
//!    change between two criterion benchmarks. Its budget is `RECORD_PAIRED_SECS` seconds per
//!    comparison (default 2; 0 skips it). It prints a table and writes
//!    `target/criterion/record-paired.json`.
//!
//! Run: `cargo bench -p group-core --bench record`, then `python3 .ci/bench-ratios.py` prints
//! both sets of ratios (see docs/performance.md).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant as Clock};

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes::Aes128;
use aes_gcm::Aes128Gcm;
use ccm::Ccm;
use ccm::consts::{U8, U12, U16};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const SIZES: [usize; 2] = [64, 1400];
const GROUP_ID: u32 = 7;
/// Inputs per batch in the criterion `open_*` measurements (same for raw and group).
const BATCH: BatchSize = BatchSize::NumIterations(256);
/// Operations per timed chunk in the paired measurement.
const CHUNK: usize = 64;
const NOW: Instant = Instant(0);

/// A record AAD as the record layer builds it (epoch 1, sid 1, seq 5, type 23, DTLS 1.2, n).
fn aad(n: usize) -> [u8; 13] {
    let [n0, n1] = u16::try_from(n).unwrap().to_be_bytes();
    [0, 1, 1, 0, 0, 0, 0, 5, 23, 0xfe, 0xfd, n0, n1]
}

/// The record layer's nonce for that record: write_iv[4] || epoch || sid || seq.
fn nonce(keys: &RecordKeys) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(keys.iv());
    n[4..].copy_from_slice(&[0, 1, 1, 0, 0, 0, 0, 5]);
    n
}

/// Everything one (suite, size) comparison needs: the raw AEAD and a sender / receiver pair.
struct Fixture<A: AeadInOut> {
    n: usize,
    raw: A,
    nonce: Nonce<A>,
    aad: [u8; 13],
    plaintext: Vec<u8>,
    /// Where the payload starts in a record (header and explicit nonce before it). The raw
    /// operations work on record-shaped buffers at this offset too, so that both sides touch
    /// the same bytes at the same alignment.
    offset: usize,
    /// A record-shaped buffer holding `plaintext` at `offset`.
    pt_buf: Vec<u8>,
    /// A record-shaped buffer holding a valid raw ciphertext of `plaintext` at `offset`, and
    /// its tag.
    ct_buf: Vec<u8>,
    tag: Tag<A>,
    switch: Group,
    light: Group,
    store: MemorySequenceStore,
    /// A record buffer with the plaintext at the payload offset, for in-place group seals.
    rec: Vec<u8>,
}

impl<A: AeadInOut + KeyInit> Fixture<A> {
    fn new(suite: Suite, n: usize) -> Self {
        let keys = native_keys(GROUP_ID, Epoch(1), suite, &EpochSecret([0x42; 32])).unwrap();
        let raw = A::new_from_slice(keys.key()).unwrap();
        let nonce = Nonce::<A>::try_from(nonce(&keys).as_slice()).unwrap();
        let aad = aad(n);
        let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();

        let mut switch: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(1)));
        let mut light: Group = Group::new(GroupConfig::new(GROUP_ID));
        switch.install_and_activate(Epoch(1), &keys, NOW).unwrap();
        light.install_and_activate(Epoch(1), &keys, NOW).unwrap();
        let offset = switch.payload_offset().unwrap();
        let mut rec = vec![0u8; switch.record_len(n).unwrap()];
        rec[offset..offset + n].copy_from_slice(&plaintext);

        let pt_buf = rec.clone();
        let mut ct_buf = rec.clone();
        let tag = raw
            .encrypt_inout_detached(&nonce, &aad, (&mut ct_buf[offset..offset + n]).into())
            .unwrap();
        let mut check = ct_buf.clone();
        raw.decrypt_inout_detached(&nonce, &aad, (&mut check[offset..offset + n]).into(), &tag)
            .unwrap();
        assert_eq!(check, rec);
        Self {
            n,
            raw,
            nonce,
            aad,
            plaintext,
            offset,
            pt_buf,
            ct_buf,
            tag,
            switch,
            light,
            store: MemorySequenceStore::commissioned(),
            rec,
        }
    }

    // The four operations, shared by both measurements.

    fn seal_raw(&self, buf: &mut [u8]) -> Result<Tag<A>, aead::Error> {
        let payload = &mut buf[self.offset..self.offset + self.n];
        self.raw
            .encrypt_inout_detached(&self.nonce, &self.aad, payload.into())
    }

    fn seal_group(&mut self, rec: &mut [u8]) -> Result<usize, group_core::record::SealError> {
        self.switch.seal_in_place(NOW, &mut self.store, rec, self.n)
    }

    fn open_raw(&self, buf: &mut [u8]) -> Result<(), aead::Error> {
        let payload = &mut buf[self.offset..self.offset + self.n];
        self.raw
            .decrypt_inout_detached(&self.nonce, &self.aad, payload.into(), &self.tag)
    }

    fn open_group(&mut self, rec: &mut [u8]) -> Result<usize, group_core::record::OpenError> {
        self.light.open(NOW, rec).map(|d| d.plaintext.len())
    }

    /// A fresh valid record: the sender's next one.
    fn next_record(&mut self) -> Vec<u8> {
        let mut r = vec![0u8; self.switch.record_len(self.n).unwrap()];
        self.switch
            .seal(NOW, &mut self.store, &self.plaintext, &mut r)
            .unwrap();
        r
    }

    /// Every seal took one sequence number and succeeded, every record sealed was opened and
    /// accepted, none dropped.
    fn assert_all_ok(&self, what: &str) {
        let sealed = self.switch.counters().sealed;
        let next = self.switch.next_send_seq().map_or(0, |(_, s)| s);
        assert_eq!(sealed, next, "{what}: a seal failed");
        let c = self.light.counters();
        assert_eq!(c.dropped(), 0, "{what}: records dropped: {c:?}");
    }
}

fn criterion_suite<A: AeadInOut + KeyInit>(c: &mut Criterion, name: &str, suite: Suite) {
    let mut bg = c.benchmark_group(name);
    for n in SIZES {
        bg.throughput(Throughput::Bytes(n as u64));
        let what = format!("{name}/{n}");

        // Seal: in place, over and over, on one buffer (each seal encrypts what the previous
        // one left; the work per call is the same).
        let mut f = Fixture::<A>::new(suite, n);
        let mut buf = f.pt_buf.clone();
        bg.bench_with_input(BenchmarkId::new("seal_raw", n), &n, |b, _| {
            b.iter(|| f.seal_raw(&mut buf))
        });
        let mut rec = std::mem::take(&mut f.rec);
        bg.bench_with_input(BenchmarkId::new("seal_group", n), &n, |b, _| {
            b.iter(|| f.seal_group(&mut rec))
        });
        f.assert_all_ok(&what);
        if f.switch.counters().sealed > 0 {
            // The last record is valid.
            f.open_group(&mut rec).unwrap();
        }

        // Open: a fresh input per iteration, made in the untimed setup.
        let f = Fixture::<A>::new(suite, n);
        let ct = f.ct_buf.clone();
        bg.bench_with_input(BenchmarkId::new("open_raw", n), &n, |b, _| {
            b.iter_batched_ref(|| ct.clone(), |input| f.open_raw(input), BATCH)
        });
        let f = std::cell::RefCell::new(f);
        bg.bench_with_input(BenchmarkId::new("open_group", n), &n, |b, _| {
            b.iter_batched_ref(
                || f.borrow_mut().next_record(),
                |input| f.borrow_mut().open_group(input),
                BATCH,
            )
        });
        let f = f.into_inner();
        f.assert_all_ok(&what);
        assert_eq!(f.light.counters().accepted, f.switch.counters().sealed);
    }
    bg.finish();
}

/// One paired comparison: per round, `CHUNK` raw operations and `CHUNK` group operations, each
/// chunk timed, in alternating order; inputs made before each chunk, untimed.
struct Paired {
    raw_ns: f64,
    group_ns: f64,
    ratio: f64,
    ratio_q1: f64,
    ratio_q3: f64,
    rounds: usize,
}

fn median(v: &mut [f64]) -> f64 {
    quantile(v, 0.5)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i]
}

fn paired<F>(
    budget: Duration,
    f: &mut F,
    mut raw_input: impl FnMut(&mut F) -> Vec<u8>,
    mut raw_op: impl FnMut(&mut F, &mut [u8]),
    mut group_input: impl FnMut(&mut F) -> Vec<u8>,
    mut group_op: impl FnMut(&mut F, &mut [u8]),
) -> Paired {
    let mut time_chunk = |f: &mut F, make: &mut dyn FnMut(&mut F) -> Vec<u8>, group: bool| {
        let mut inputs: Vec<Vec<u8>> = (0..CHUNK).map(|_| make(f)).collect();
        let start = Clock::now();
        for input in &mut inputs {
            if group {
                group_op(f, input);
            } else {
                raw_op(f, input);
            }
        }
        let t = start.elapsed();
        black_box(inputs);
        t.as_secs_f64() * 1e9 / CHUNK as f64
    };
    // Warm up both sides.
    for _ in 0..20 {
        time_chunk(f, &mut raw_input, false);
        time_chunk(f, &mut group_input, true);
    }
    let (mut raws, mut groups, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let start = Clock::now();
    while start.elapsed() < budget || ratios.len() < 50 {
        let (r, g) = if ratios.len() % 2 == 0 {
            let r = time_chunk(f, &mut raw_input, false);
            (r, time_chunk(f, &mut group_input, true))
        } else {
            let g = time_chunk(f, &mut group_input, true);
            (time_chunk(f, &mut raw_input, false), g)
        };
        raws.push(r);
        groups.push(g);
        ratios.push(g / r);
    }
    Paired {
        raw_ns: median(&mut raws),
        group_ns: median(&mut groups),
        ratio: median(&mut ratios),
        ratio_q1: quantile(&mut ratios, 0.25),
        ratio_q3: quantile(&mut ratios, 0.75),
        rounds: ratios.len(),
    }
}

fn paired_suite<A: AeadInOut + KeyInit>(
    budget: Duration,
    name: &str,
    suite: Suite,
    out: &mut Vec<String>,
) {
    for n in SIZES {
        let mut f = Fixture::<A>::new(suite, n);
        let seal = paired(
            budget,
            &mut f,
            |f| f.pt_buf.clone(),
            |f, buf| {
                black_box(f.seal_raw(buf)).unwrap();
            },
            |f| f.rec.clone(),
            |f, rec| {
                black_box(f.seal_group(rec)).unwrap();
            },
        );
        f.assert_all_ok(&format!("paired {name}/seal/{n}"));
        let mut f = Fixture::<A>::new(suite, n);
        let open = paired(
            budget,
            &mut f,
            |f| f.ct_buf.clone(),
            |f, ct| black_box(f.open_raw(ct)).unwrap(),
            |f| f.next_record(),
            |f, rec| {
                black_box(f.open_group(rec)).unwrap();
            },
        );
        f.assert_all_ok(&format!("paired {name}/open/{n}"));
        for (op, p) in [("seal", seal), ("open", open)] {
            println!(
                "paired {name:4} {op} {n:4} B: raw {:8.1} ns  group {:8.1} ns  ratio {:.3} \
                 (quartiles {:.3}..{:.3}, {} rounds of {CHUNK})",
                p.raw_ns, p.group_ns, p.ratio, p.ratio_q1, p.ratio_q3, p.rounds
            );
            out.push(format!(
                "{{\"suite\":\"{name}\",\"op\":\"{op}\",\"bytes\":{n},\"raw_ns\":{:.2},\
                 \"group_ns\":{:.2},\"ratio\":{:.4},\"ratio_q1\":{:.4},\"ratio_q3\":{:.4},\
                 \"rounds\":{},\"chunk\":{CHUNK}}}",
                p.raw_ns, p.group_ns, p.ratio, p.ratio_q1, p.ratio_q3, p.rounds
            ));
        }
    }
}

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// `criterion` directory of the target directory this bench runs from.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(h.into());
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(t).join("criterion"));
    }
    // <target>/<profile>/deps/record-<hash>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

fn run_paired() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let other_mode = args
        .iter()
        .any(|a| ["--test", "--list", "--profile-time"].contains(&a.as_str()));
    let secs: f64 = std::env::var("RECORD_PAIRED_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    if !bench_mode || other_mode || secs <= 0.0 {
        return;
    }
    let budget = Duration::from_secs_f64(secs);
    println!("\npaired measurement ({secs} s per comparison)");
    let mut out = Vec::new();
    paired_suite::<Ccm<Aes128, U8, U12>>(budget, "ccm8", Suite::AES_128_CCM_8, &mut out);
    paired_suite::<Ccm<Aes128, U16, U12>>(budget, "ccm", Suite::AES_128_CCM, &mut out);
    paired_suite::<Aes128Gcm>(budget, "gcm", Suite::AES_128_GCM, &mut out);
    if let Some(dir) = criterion_dir() {
        let path = dir.join("record-paired.json");
        let json = format!("[\n{}\n]\n", out.join(",\n"));
        match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, json)) {
            Ok(()) => println!("paired results written to {}", path.display()),
            Err(e) => eprintln!("could not write {}: {e}", path.display()),
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_suite::<Ccm<Aes128, U8, U12>>(&mut c, "ccm8", Suite::AES_128_CCM_8);
    criterion_suite::<Ccm<Aes128, U16, U12>>(&mut c, "ccm", Suite::AES_128_CCM);
    criterion_suite::<Aes128Gcm>(&mut c, "gcm", Suite::AES_128_GCM);
    c.final_summary();
    run_paired();
}
