//! Record-layer cost against the raw AEAD, in the same run, on the same data.
//!
//! For each suite (AES-128-CCM_8, AES-128-CCM, AES-128-GCM) and plaintext size (64 and 1400
//! bytes), four measurements:
//!
//! - `seal_raw`: one `encrypt_inout_detached` of the RustCrypto AEAD (the type group-core uses)
//!   over the plaintext, in place, with a 12-byte nonce and the 13-byte record AAD;
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
//! Run: `cargo bench -p group-core --bench record`, then `python3 .ci/bench-ratios.py` prints
//! the ratios group / raw from `target/criterion` (see docs/performance.md).

use aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes::Aes128;
use aes_gcm::Aes128Gcm;
use ccm::Ccm;
use ccm::consts::{U8, U12, U16};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use group_core::group::{Group, GroupConfig};
use group_core::schedule::{EpochSecret, native_keys};
use group_core::sequence::MemorySequenceStore;
use group_core::suite::{RecordKeys, Suite};
use group_core::time::Instant;
use group_core::wire::{Epoch, SenderId};

const SIZES: [usize; 2] = [64, 1400];
const GROUP_ID: u32 = 7;
/// Inputs per batch in the `open_*` measurements (same for raw and group).
const BATCH: BatchSize = BatchSize::NumIterations(256);
/// A record AAD as the record layer builds it (epoch 1, sid 1, seq 5, type 23, DTLS 1.2, n).
fn aad(n: usize) -> [u8; 13] {
    let [n0, n1] = u16::try_from(n).unwrap().to_be_bytes();
    [0, 1, 1, 0, 0, 0, 0, 5, 23, 0xfe, 0xfd, n0, n1]
}

fn nonce(keys: &RecordKeys) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(keys.iv());
    n[4..].copy_from_slice(&[0, 1, 1, 0, 0, 0, 0, 5]);
    n
}

fn groups(keys: &RecordKeys) -> (Group, Group) {
    let now = Instant(0);
    let mut switch: Group = Group::new(GroupConfig::new(GROUP_ID).with_sender_id(SenderId(1)));
    let mut light: Group = Group::new(GroupConfig::new(GROUP_ID));
    switch.install_and_activate(Epoch(1), keys, now).unwrap();
    light.install_and_activate(Epoch(1), keys, now).unwrap();
    (switch, light)
}

fn bench_suite<A: AeadInOut + KeyInit>(c: &mut Criterion, name: &str, suite: Suite) {
    let keys = native_keys(GROUP_ID, Epoch(1), suite, &EpochSecret([0x42; 32])).unwrap();
    let raw = A::new_from_slice(keys.key()).unwrap();
    let nonce_bytes = nonce(&keys);
    let raw_nonce = Nonce::<A>::try_from(nonce_bytes.as_slice()).unwrap();
    let now = Instant(0);

    let mut bg = c.benchmark_group(name);
    for n in SIZES {
        bg.throughput(Throughput::Bytes(n as u64));
        let aad = aad(n);
        let plaintext: Vec<u8> = (0..n).map(|i| i as u8).collect();

        // --- seal ---
        let mut buf = plaintext.clone();
        bg.bench_with_input(BenchmarkId::new("seal_raw", n), &n, |b, _| {
            b.iter(|| raw.encrypt_inout_detached(&raw_nonce, &aad, buf.as_mut_slice().into()))
        });

        let (mut switch, mut light) = groups(&keys);
        let mut store = MemorySequenceStore::commissioned();
        let offset = switch.payload_offset().unwrap();
        let mut rec = vec![0u8; switch.record_len(n).unwrap()];
        rec[offset..offset + n].copy_from_slice(&plaintext);
        bg.bench_with_input(BenchmarkId::new("seal_group", n), &n, |b, _| {
            b.iter(|| switch.seal_in_place(now, &mut store, &mut rec, n))
        });
        // Every seal succeeded, and the last record opens to what it held (the plaintext was
        // encrypted in place over and over, as the raw seal does).
        let sealed = switch.counters().sealed;
        let last = switch.next_send_seq().unwrap().1 - 1;
        assert_eq!(sealed, last + 1, "{name}/{n}: a seal failed");
        light.open(now, &mut rec).unwrap();

        // --- open ---
        let mut ct = plaintext.clone();
        let tag: Tag<A> = raw
            .encrypt_inout_detached(&raw_nonce, &aad, ct.as_mut_slice().into())
            .unwrap();
        let mut check = ct.clone();
        raw.decrypt_inout_detached(&raw_nonce, &aad, check.as_mut_slice().into(), &tag)
            .unwrap();
        assert_eq!(check, plaintext);
        bg.bench_with_input(BenchmarkId::new("open_raw", n), &n, |b, _| {
            b.iter_batched_ref(
                || ct.clone(),
                |input| {
                    raw.decrypt_inout_detached(&raw_nonce, &aad, input.as_mut_slice().into(), &tag)
                },
                BATCH,
            )
        });

        let (mut switch, mut light) = groups(&keys);
        let mut store = MemorySequenceStore::commissioned();
        bg.bench_with_input(BenchmarkId::new("open_group", n), &n, |b, _| {
            b.iter_batched_ref(
                || {
                    let mut r = vec![0u8; switch.record_len(n).unwrap()];
                    switch.seal(now, &mut store, &plaintext, &mut r).unwrap();
                    r
                },
                |input| light.open(now, input).map(|d| d.plaintext.len()),
                BATCH,
            )
        });
        let (sent, got) = (switch.counters().sealed, light.counters());
        assert_eq!(got.dropped(), 0, "{name}/{n}: records dropped: {got:?}");
        assert_eq!(
            got.accepted, sent,
            "{name}/{n}: not every record was opened"
        );
    }
    bg.finish();
}

fn record(c: &mut Criterion) {
    bench_suite::<Ccm<Aes128, U8, U12>>(c, "ccm8", Suite::AES_128_CCM_8);
    bench_suite::<Ccm<Aes128, U16, U12>>(c, "ccm", Suite::AES_128_CCM);
    bench_suite::<Aes128Gcm>(c, "gcm", Suite::AES_128_GCM);
}

criterion_group!(benches, record);
criterion_main!(benches);
